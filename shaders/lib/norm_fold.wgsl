// The norm before a projection folded into the tile matmuls by linearity: with s the
// row's first value (LayerNorm; 0 for RMSNorm), the product takes (x - s) · g as `a`
// while the lanes staging it sum Σ (x - s) and Σ (x - s)² (prelude stage_tile), and
//   Σ_k ((x_k - mean) · rstd · g_k + b_k) · w_kn
//     = rstd · (Σ_k (x_k - s) g_k w_kn - (mean - s) · gw_n) + Σ_k b_k w_kn,
// gw = g · w and b · w taken once when the model is built (`b · w` goes into the
// bias the epilogue adds). So the statistics cost no loads of their own: they come
// from the values staged anyway, in the same pass, and a split's K slices each sum
// their own share (`stats_at`), added in slice order as the whole product adds them.
// The kernel declares `p` (with `m`, `n4`, `k4`, `ks`, `norm`, `eps`), `part` and the
// norm's `norm_gw` [N]; prelude norm_flags.

// `acc`, the product over (x - s) · g of output vec4 `col`, normalised: `sums` are the
// row's Σ (x - s), Σ (x - s)² over all of K (as it is without a norm).
fn norm_fold(acc: vec4<f32>, col: u32, sums: vec2<f32>) -> vec4<f32> {
    if ((p.norm & NORM_ON) == 0u) {
        return acc;
    }
    let e = sums / f32(p.k4 * 4u); // E[x - s], E[(x - s)²]
    if ((p.norm & NORM_RMS) != 0u) {
        return acc * inverseSqrt(e.y + p.eps);
    }
    let var_ = max(e.y - e.x * e.x, 0.0);
    return (acc - e.x * norm_gw[col]) * inverseSqrt(var_ + p.eps);
}

// Where K slice z of a split puts row `row`'s sums (.xy) in `part`: after the
// slices' products.
fn stats_at(z: u32, row: u32) -> u32 {
    let slices = (4u * p.k4 + p.ks - 1u) / p.ks;
    return slices * p.m * p.n4 + z * p.m + row;
}
