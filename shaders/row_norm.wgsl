// L2 norm of each row of x [T, C] (residual-stream norms for capture):
//   out[offset + t] = sqrt(Σ_c x[t, c]²)

struct RowNormParams {
    t: u32,
    c4: u32,
    offset: u32, // where row 0's norm goes in out
    _pad: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: RowNormParams;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;     // [T, C]
@group(0) @binding(2) var<storage, read_write> out: array<f32>;   // [.., T]

@compute @workgroup_size(WG)
fn row_norm(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.x;
    if (row >= p.t) {
        return;
    }
    var s = vec4<f32>(0.0);
    for (var c = 0u; c < p.c4; c++) {
        let v = x[row * p.c4 + c];
        s += v * v;
    }
    out[p.offset + row] = sqrt(s.x + s.y + s.z + s.w);
}
