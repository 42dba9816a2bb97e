// Rotary position embedding in place, as Hugging Face's Llama applies it (rotate_half:
// dimension i of a head pairs with i + HS/2):
//   x[i]        = x[i] · cos(θ_i p) - x[i + HS/2] · sin(θ_i p)
//   x[i + HS/2] = x[i + HS/2] · cos(θ_i p) + x[i] · sin(θ_i p)      for i < HS/2
// over the first `heads` heads of each row of `qkv` (the query heads, then the key
// heads: [q | k | v] rows, v untouched), at the row's position `positions[row]` (0 .. T
// in a forward, each generation's own in a decode batch). cos and sin come from a table
// `[positions, 2, HS/2]` (a position's cos, then its sin) the host computed once per
// model (the angles in f32 as Hugging Face computes them, whatever the scaling). One
// invocation per (row, head, 4 pairs). The split-K matrix-vector kernels do the same
// in their epilogue (prelude rope_pairs, flag ROTARY), with the same expressions.
// With p.store (a prefill chunk or a decode step), the rotated keys and the values
// also go to the paged KV pool, row t's to pool row slots[t] (the kv_store kernel's
// work): the invocations of key head j store its 4 pairs of keys and the same vec4s of
// value head j.

struct RotaryParams {
    t: u32,      // rows
    row4: u32,   // vec4s in a row of qkv
    heads: u32,  // rotated heads per row (query heads + key heads)
    half4: u32,  // HS / 8: vec4s in half a head
    store: u32,  // 1: keys and values to the pool as well; 2: as half floats (prelude kv_write)
    q_heads: u32, // the query heads before the key heads
    kv4: u32,    // vec4s of a pool row (the key heads; as many value heads follow them)
    _pad1: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: RotaryParams;
@group(0) @binding(1) var<storage, read_write> qkv: array<vec4<f32>>; // [T, row]
@group(0) @binding(2) var<storage, read> rope: array<vec4<f32>>;     // [positions, 2, HS/2]
@group(0) @binding(3) var<storage, read> positions: array<u32>;       // [T]
@group(0) @binding(4) var<storage, read_write> k_pool: array<vec4<u32>>; // [pool rows, KV] (or a dummy)
@group(0) @binding(5) var<storage, read_write> v_pool: array<vec4<u32>>; // [pool rows, KV] (or a dummy)
@group(0) @binding(6) var<storage, read> slots: array<u32>;              // [T] (or a dummy)

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
    let at = positions[row] * 2u * p.half4 + i;
    let c = rope[at];
    let s = rope[at + p.half4];
    let x1 = qkv[lo];
    let x2 = qkv[hi];
    let r1 = x1 * c - x2 * s;
    let r2 = x2 * c + x1 * s;
    qkv[lo] = r1;
    qkv[hi] = r2;
    if (p.store != 0u && head >= p.q_heads) {
        // key head j's vec4s i and i + half4, and value head j's, at the row's pool row
        let j = (head - p.q_heads) * 2u * p.half4 + i;
        let dst = slots[row] * p.kv4 + j;
        let half = p.store == 2u;
        put_key(dst, r1, half);
        put_key(dst + p.half4, r2, half);
        let v = row * p.row4 + p.q_heads * 2u * p.half4 + p.kv4 + j;
        put_value(dst, qkv[v], half);
        put_value(dst + p.half4, qkv[v + p.half4], half);
    }
}
