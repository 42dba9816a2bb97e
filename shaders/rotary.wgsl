// Rotary position embedding in place, as Hugging Face's Llama applies it (rotate_half:
// dimension i of a head pairs with i + HS/2):
//   x[i]        = x[i] · cos(θ_i p) - x[i + HS/2] · sin(θ_i p)
//   x[i + HS/2] = x[i + HS/2] · cos(θ_i p) + x[i] · sin(θ_i p)      for i < HS/2
// over the first `heads` heads of each row of `qkv` (the query heads, then the key
// heads: [q | k | v] rows, v untouched), at the row's position `positions[row]` (0 .. T
// in a forward, each generation's own in a decode batch). cos and sin come from tables
// `[positions, HS/2]` the host computed once per model (the angles in f32 as Hugging
// Face computes them, whatever the scaling). One invocation per (row, head, 4 pairs).

struct RotaryParams {
    t: u32,      // rows
    row4: u32,   // vec4s in a row of qkv
    heads: u32,  // rotated heads per row (query heads + key heads)
    half4: u32,  // HS / 8: vec4s in half a head
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: RotaryParams;
@group(0) @binding(1) var<storage, read_write> qkv: array<vec4<f32>>; // [T, row]
@group(0) @binding(2) var<storage, read> cos_table: array<vec4<f32>>; // [positions, HS/2]
@group(0) @binding(3) var<storage, read> sin_table: array<vec4<f32>>; // [positions, HS/2]
@group(0) @binding(4) var<storage, read> positions: array<u32>;       // [T]

@compute @workgroup_size(WG)
fn rotary(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * WG;
    let per_row = p.heads * p.half4;
    if (idx >= p.t * per_row) {
        return;
    }
    let row = idx / per_row;
    let head = (idx % per_row) / p.half4;
    let i = idx % p.half4;
    let lo = row * p.row4 + head * 2u * p.half4 + i;
    let hi = lo + p.half4;
    let at = positions[row] * p.half4 + i;
    let c = cos_table[at];
    let s = sin_table[at];
    let x1 = qkv[lo];
    let x2 = qkv[hi];
    qkv[lo] = x1 * c - x2 * s;
    qkv[hi] = x2 * c + x1 * s;
}
