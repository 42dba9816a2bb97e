// How the tile matmuls (`matmul_tiled`, `matmul_coop`) stage `a` (`stage_a`): as it
// is, shifted and scaled for a folded norm, or gated — the op before the product
// folded into its staging.
//
// The norm before a projection (flags `p.norm`, prelude norm_fold): `a` is then the
// residual stream, the staged value (x - s) · g with s the row's first value
// (`row_shift`; 0 for RMSNorm), and each staging lane adds Σ (x - s) and Σ (x - s)²
// of what it stages to its share; `row_lanes_sum` sums the `lanes` lanes of a row
// once a K slice is done, in lane order. The epilogue then normalises by linearity
// (`norm_fold`). A row's sums come from its own values by the same lanes and order
// whatever the rows around it: the same in any batch, split or not. A prefill chunk
// or a forward has no norm dispatch, no `ln` round trip and no pass of its own over
// the rows for their statistics.
//
// SwiGLU before the Llama MLP's down projection (flag GATED): `a` is then the up
// projection's gate | up rows (2 K wide), and the staged value is silu(gate) · up
// (prelude gelu's `silu_gate`, as the `swiglu` kernel computes it): no SwiGLU dispatch
// and no gated round trip.
//
// The kernel declares `p` (with `m`, `k4`, `flags`, `norm`), `a`, `norm_w`, WG ≤ 256;
// preludes norm_flags, gelu.

// p.flags: `a` holds gate | up rows; stage silu(gate) · up.
const GATED: u32 = 32u;

var<workgroup> row_shares: array<vec2<f32>, 256>;

// Σ of `x` over the `lanes` lanes of this lane's row (lanes lid - lid % lanes ..), in
// lane order. Call from uniform control flow (it holds barriers).
fn row_lanes_sum(lid: u32, lanes: u32, x: vec2<f32>) -> vec2<f32> {
    row_shares[lid] = x;
    workgroupBarrier();
    let first = lid - lid % lanes;
    var s = vec2<f32>(0.0);
    for (var i = 0u; i < lanes; i++) {
        s += row_shares[first + i];
    }
    workgroupBarrier();
    return s;
}

// The shift of row `row`'s statistics: its first value under a LayerNorm (it keeps
// the variance's subtraction small for a stream whose mean is far from 0), else 0.
fn row_shift(row: u32) -> f32 {
    if ((p.norm & (NORM_ON | NORM_RMS)) == NORM_ON && row < p.m) {
        return a[row * p.k4].x;
    }
    return 0.0;
}

// Vec4 `kq` of row `row` of the product's input as the tile kernels stage it; with a
// norm, (x - shift) · g, its Σ (x - shift) and Σ (x - shift)² added to `share`.
fn stage_a(row: u32, kq: u32, shift: f32, share: ptr<function, vec2<f32>>) -> vec4<f32> {
    if ((p.flags & GATED) != 0u) {
        let r = row * 2u * p.k4;
        return silu_gate(a[r + kq], a[r + p.k4 + kq]);
    }
    let v = a[row * p.k4 + kq];
    if ((p.norm & NORM_ON) == 0u) {
        return v;
    }
    let d = v - shift;
    *share += vec2<f32>(d.x + d.y + d.z + d.w, dot(d, d));
    return d * norm_w[kq];
}
