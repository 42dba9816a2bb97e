// Layer norm over the last axis: y = (x - mean) / sqrt(var + eps) * weight + bias, or
// RMSNorm (flag NORM_RMS: the mean is taken as 0). One invocation per row; two passes
// over the row in vec4 steps (one for RMSNorm).
// The uniform `LayerNormParams` comes from the prelude shaders/lib/layer_norm_params.wgsl.

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: LayerNormParams;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;      // [T, C]
@group(0) @binding(2) var<storage, read> weight: array<vec4<f32>>; // [C]
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;   // [C] (or a dummy)
@group(0) @binding(4) var<storage, read_write> y: array<vec4<f32>>; // [T, C]

@compute @workgroup_size(WG)
fn layer_norm(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.x;
    if (row >= p.t) {
        return;
    }
    let base = row * p.c4;
    let n = f32(p.c4 * 4u);
    var mean = 0.0;
    if ((p.flags & NORM_RMS) == 0u) {
        var s = vec4<f32>(0.0);
        for (var c = 0u; c < p.c4; c++) {
            s += x[base + c];
        }
        mean = (s.x + s.y + s.z + s.w) / n;
    }
    var v = vec4<f32>(0.0);
    for (var c = 0u; c < p.c4; c++) {
        let d = x[base + c] - mean;
        v += d * d;
    }
    let rstd = inverseSqrt((v.x + v.y + v.z + v.w) / n + p.eps);
    for (var c = 0u; c < p.c4; c++) {
        var o = (x[base + c] - mean) * rstd * weight[c];
        if ((p.flags & NORM_BIAS) != 0u) {
            o += bias[c];
        }
        if ((p.flags & NORM_ADD) != 0u) {
            o += y[base + c];
        }
        y[base + c] = o;
    }
}
