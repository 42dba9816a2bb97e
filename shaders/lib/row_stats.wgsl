// A row's LayerNorm / RMSNorm statistics across a workgroup: every lane sums a strided
// share of the row's vec4s and the shares meet in workgroup memory (prelude
// workgroup_reduce), first for the mean, then for the variance of x - mean (two
// passes, as the software kernel `layer_norm`, so all agree to rounding). The kernel
// declares `WG` and `norm_src(i)`, vec4 i of what the statistics are taken over.
// `layer_norm_workgroup` and every kernel with a norm folded in (prelude
// norm_prologue) take them here, so their normalised rows are the same bit for bit.

// (mean, rstd) of the `k4` vec4s of norm_src from vec4 `xr` (with `rms`, the mean is
// taken as 0 and its pass skipped). Call from uniform control flow with uniform `rms`
// (it holds barriers).
fn row_stats(xr: u32, k4: u32, lid: u32, rms: bool, eps: f32) -> vec2<f32> {
    let n = f32(k4 * 4u);
    var mean = 0.0;
    if (!rms) {
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
    return vec2<f32>(mean, inverseSqrt(workgroup_sum(lid, v.x + v.y + v.z + v.w) / n + eps));
}
