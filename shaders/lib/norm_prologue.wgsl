// The norm before a projection folded into the projection's kernel (the hardware
// matrix-vector kernels, flags `p.norm`): x is then the residual stream, and the
// kernel takes its row's statistics across the workgroup as `layer_norm_workgroup`
// takes them (the same strided shares and tree, WG = 256 both: the same mean and
// rstd), then normalises each vec4 of x it reads — LayerNorm (x - mean) · rstd · w
// (+ b), or RMSNorm x · rstd · w. A decode step then has no norm dispatch and no `ln`
// round trip. The kernel declares `p` (with `norm` and `eps`), `norm_w`, `norm_b`,
// `WG` and `norm_src(i)`, vec4 i of what the statistics are taken over (x, or a row
// staged in workgroup memory: prelude `stage_x`); prelude workgroup_reduce.

// p.norm: normalise x (LayerNorm unless NORM_RMS), add the norm's bias (NORM_BIAS).
const NORM_ON: u32 = 1u;
const NORM_RMS: u32 = 2u;
const NORM_BIAS: u32 = 4u;

// (mean, rstd) of the `k4` vec4s of norm_src from vec4 `xr`; (0, 1) without a norm. Call from
// uniform control flow (it holds barriers).
fn norm_stats(xr: u32, k4: u32, lid: u32) -> vec2<f32> {
    var mean = 0.0;
    var rstd = 1.0;
    if ((p.norm & NORM_ON) != 0u) {
        let n = f32(k4 * 4u);
        if ((p.norm & NORM_RMS) == 0u) {
            var s = vec4<f32>(0.0);
            for (var c = lid; c < k4; c += WG) {
                s += norm_src(xr + c);
            }
            mean = workgroup_sum(lid, s.x + s.y + s.z + s.w) / n;
        }
        var v = vec4<f32>(0.0);
        for (var c = lid; c < k4; c += WG) {
            let d = norm_src(xr + c) - mean;
            v += d * d;
        }
        rstd = inverseSqrt(workgroup_sum(lid, v.x + v.y + v.z + v.w) / n + p.eps);
    }
    return vec2<f32>(mean, rstd);
}

// Vec4 `c4` of the row, `v`, normalised with the statistics `st` (as it is without a
// norm).
fn norm4(v: vec4<f32>, c4: u32, st: vec2<f32>) -> vec4<f32> {
    if ((p.norm & NORM_ON) == 0u) {
        return v;
    }
    var o = (v - st.x) * st.y * norm_w[c4];
    if ((p.norm & NORM_BIAS) != 0u) {
        o += norm_b[c4];
    }
    return o;
}
