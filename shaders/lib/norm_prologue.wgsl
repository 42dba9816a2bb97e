// The norm before a projection folded into the projection's kernel (the hardware
// matrix-vector kernels, flags `p.norm`): x is then the residual stream, and the
// kernel takes its row's statistics across the workgroup as `layer_norm_workgroup`
// takes them (the same strided shares and tree, WG = 256 both: the same mean and
// rstd), then normalises each vec4 of x it reads — LayerNorm (x - mean) · rstd · w
// (+ b), or RMSNorm x · rstd · w. A decode step then has no norm dispatch and no `ln`
// round trip. The kernel declares `p` (with `norm` and `eps`), `norm_w`, `norm_b`,
// `WG` and `norm_src(i)`, vec4 i of what the statistics are taken over (x, or a row
// staged in workgroup memory: prelude `stage_x`); preludes workgroup_reduce, norm_flags, norm_apply
// (the flags, `norm4`).

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
