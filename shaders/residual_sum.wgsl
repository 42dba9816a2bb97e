// The residual stream of a decode step made whole, in place: x = x + bias + Σ partial
// rows (prelude residual_parts), for the kernels that read x as it is (the LM head
// after the hardware decode blocks in three dispatches).

override WG: u32 = 64u;

struct ResidualParams {
    k4: u32,    // vec4s of a row
    parts: u32, // partial rows per row
    norm: u32,  // STAGE_BIAS
    rows: u32,
}

@group(0) @binding(0) var<uniform> p: ResidualParams;
@group(0) @binding(1) var<storage, read_write> x: array<vec4<f32>>; // [R, K]
@group(0) @binding(2) var<storage, read> parts: array<vec4<f32>>;  // [R, P, K]
@group(0) @binding(3) var<storage, read> res_bias: array<vec4<f32>>; // [K] (STAGE_BIAS; or a dummy)

@compute @workgroup_size(WG)
fn residual_sum(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    let row = gid.y;
    if (c < p.k4 && row < p.rows) {
        x[row * p.k4 + c] = residual_at(row, c);
    }
}
