// How the tile matmuls (`matmul_tiled`, `matmul_coop`) stage `a` (`stage_a`): as it
// is, normalised, or gated — the op before the product folded into its staging.
//
// The norm before a projection (flags `p.norm` as prelude norm_apply): `a` is then the
// residual stream, and the `lanes` consecutive lanes that stage a row of the tile first
// take its statistics (`tile_row_stats`) and normalise each vec4 they stage. A prefill
// chunk or a forward then has no norm dispatch and no `ln` round trip. Every workgroup
// of a column of tiles (and every K slice of a split) takes its rows' statistics again,
// so they are taken in one pass: strided shares of Σ (x - s) and Σ (x - s)² about the
// row's first value s (the shift keeps the variance's subtraction small for a stream
// whose mean is far from 0), summed in lane order; rows past the last are skipped. A
// row's statistics come from its own values by the same lanes and order whatever the
// rows around it: the same in any batch, split or not.
//
// SwiGLU before the Llama MLP's down projection (flag GATED): `a` is then the up
// projection's gate | up rows (2 K wide), and the staged value is silu(gate) · up
// (prelude gelu's `silu_gate`, as the `swiglu` kernel computes it): no SwiGLU dispatch
// and no gated round trip.
//
// The kernel declares `p` (with `m`, `k4`, `flags`, `norm`, `eps`), `a`, `norm_w`,
// `norm_b`, WG ≤ 256; preludes norm_apply, gelu.

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

// (mean, rstd) of row `row` of `a` (past the last row: unused) taken by lane `j` of its
// `lanes`; (0, 1) without a norm. Call from uniform control flow.
fn tile_row_stats(row: u32, j: u32, lanes: u32, lid: u32) -> vec2<f32> {
    if ((p.norm & NORM_ON) == 0u) {
        return vec2<f32>(0.0, 1.0);
    }
    let k4 = p.k4;
    let rms = (p.norm & NORM_RMS) != 0u;
    var share = vec2<f32>(0.0); // Σ (x - s), Σ (x - s)² of this lane's vec4s
    var shift = 0.0;
    if (row < p.m) {
        let r = row * k4;
        if (!rms) {
            shift = a[r].x;
        }
        var s1 = vec4<f32>(0.0);
        var s2 = vec4<f32>(0.0);
        for (var c = j; c < k4; c += lanes) {
            let d = a[r + c] - shift;
            s1 += d;
            s2 += d * d;
        }
        share = vec2<f32>(s1.x + s1.y + s1.z + s1.w, s2.x + s2.y + s2.z + s2.w);
    }
    let n = f32(k4 * 4u);
    let tot = row_lanes_sum(lid, lanes, share) / n;
    if (rms) {
        return vec2<f32>(0.0, inverseSqrt(tot.y + p.eps));
    }
    // E[(x - s)²] - (E[x - s])², the mean s + E[x - s]
    let var_ = max(tot.y - tot.x * tot.x, 0.0);
    return vec2<f32>(shift + tot.x, inverseSqrt(var_ + p.eps));
}

// Vec4 `kq` of row `row` of the product's input as the tile kernels stage it (`st`: the
// row's `tile_row_stats`).
fn stage_a(row: u32, kq: u32, st: vec2<f32>) -> vec4<f32> {
    if ((p.flags & GATED) != 0u) {
        let r = row * 2u * p.k4;
        return silu_gate(a[r + kq], a[r + p.k4 + kq]);
    }
    return norm4(a[row * p.k4 + kq], kq, st);
}
