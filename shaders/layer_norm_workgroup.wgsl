// Layer norm for hardware GPUs: y = (x - mean) / sqrt(var + eps) * weight + bias, or
// RMSNorm (flag NORM_RMS: the mean is taken as 0 and its pass skipped).
// One workgroup per row, its statistics across the workgroup (prelude row_stats, which
// the kernels with a norm folded in share). The software kernel walks a whole row in one invocation, which on a GPU
// leaves all but a few lanes idle (0.34 ms a call on an H200 at T = 1).
// Preludes: `LayerNormParams` (shaders/lib/layer_norm_params.wgsl), `workgroup_sum`
// (shaders/lib/workgroup_reduce.wgsl) and `row_stats`.

// A power of two, at most 256 (the prelude's `red`).
override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: LayerNormParams;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;      // [T, C]
@group(0) @binding(2) var<storage, read> weight: array<vec4<f32>>; // [C]
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;   // [C] (or a dummy)
@group(0) @binding(4) var<storage, read_write> y: array<vec4<f32>>; // [T, C]

fn norm_src(i: u32) -> vec4<f32> {
    return x[i];
}

@compute @workgroup_size(WG)
fn layer_norm_workgroup(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let row = wg.x + wg.y * nwg.x;
    if (row >= p.t) {
        return;
    }
    let base = row * p.c4;
    let st = row_stats(base, p.c4, lid, (p.flags & NORM_RMS) != 0u, p.eps);
    let mean = st.x;
    let rstd = st.y;
    for (var c = lid; c < p.c4; c += WG) {
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
