// The norm before a projection folded into the projection's kernel (the hardware
// matrix-vector kernels, flags `p.norm`): x is then the residual stream, and the
// kernel takes its row's statistics across the workgroup as `layer_norm_workgroup`
// takes them (the same strided shares and tree, WG = 256 both: the same mean and
// rstd), then normalises each vec4 of x it reads — LayerNorm (x - mean) · rstd · w
// (+ b), or RMSNorm x · rstd · w. A decode step then has no norm dispatch and no `ln`
// round trip. The kernel declares `p` (with `norm` and `eps`), `norm_w`, `norm_b`,
// `WG` and `norm_src(i)`, vec4 i of what the statistics are taken over (x, or a row
// staged in workgroup memory: prelude `stage_x`); preludes workgroup_reduce, row_stats,
// norm_flags, norm_apply (the flags, `norm4`).

// (mean, rstd) of the `k4` vec4s of norm_src from vec4 `xr` (prelude row_stats); (0, 1)
// without a norm. Call from uniform control flow (it holds barriers).
fn norm_stats(xr: u32, k4: u32, lid: u32) -> vec2<f32> {
    if ((p.norm & NORM_ON) == 0u) {
        return vec2<f32>(0.0, 1.0);
    }
    return row_stats(xr, k4, lid, (p.norm & NORM_RMS) != 0u, p.eps);
}
