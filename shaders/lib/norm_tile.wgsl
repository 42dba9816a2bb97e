// The norm before a projection folded into the tiled matmuls' staging of `a`
// (`matmul_tiled`, `matmul_coop`; flags `p.norm` as prelude norm_apply): `a` is then the
// residual stream, and the `lanes` consecutive lanes that stage a row of the tile first
// take its statistics — strided shares summed in lane order, two passes (the mean, then
// the squares about it) — and normalise each vec4 they stage (`norm4`). A prefill
// chunk or a forward then has no norm dispatch and no `ln` round trip. A row's
// statistics come from its own values by the same lanes and order whatever the rows
// around it: the same in any batch, split or not. The kernel declares `p` (with `m`,
// `k4`, `norm`, `eps`), `a`, `norm_w`, `norm_b`, WG ≤ 256; prelude norm_apply.

var<workgroup> row_shares: array<f32, 256>;

// Σ of `x` over the `lanes` lanes of this lane's row (lanes lid - lid % lanes ..), in
// lane order. Call from uniform control flow (it holds barriers).
fn row_lanes_sum(lid: u32, lanes: u32, x: f32) -> f32 {
    row_shares[lid] = x;
    workgroupBarrier();
    let first = lid - lid % lanes;
    var s = 0.0;
    for (var i = 0u; i < lanes; i++) {
        s += row_shares[first + i];
    }
    workgroupBarrier();
    return s;
}

// (mean, rstd) of row `row` of `a` (past the last row: the last row's, never stored)
// taken by lane `j` of its `lanes`; (0, 1) without a norm. Call from uniform control
// flow.
fn tile_row_stats(row: u32, j: u32, lanes: u32, lid: u32) -> vec2<f32> {
    var mean = 0.0;
    var rstd = 1.0;
    if ((p.norm & NORM_ON) != 0u) {
        let k4 = p.k4;
        let n = f32(k4 * 4u);
        let r = min(row, p.m - 1u) * k4;
        if ((p.norm & NORM_RMS) == 0u) {
            var s = vec4<f32>(0.0);
            for (var c = j; c < k4; c += lanes) {
                s += a[r + c];
            }
            mean = row_lanes_sum(lid, lanes, s.x + s.y + s.z + s.w) / n;
        }
        var v = vec4<f32>(0.0);
        for (var c = j; c < k4; c += lanes) {
            let d = a[r + c] - mean;
            v += d * d;
        }
        rstd = inverseSqrt(row_lanes_sum(lid, lanes, v.x + v.y + v.z + v.w) / n + p.eps);
    }
    return vec2<f32>(mean, rstd);
}
