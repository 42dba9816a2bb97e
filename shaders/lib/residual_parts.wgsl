// The residual stream of a decode step with deferred terms (the hardware decode blocks
// in three dispatches): a kernel that ends in a residual add (attention's output
// projection, the MLP's down projection) does not add into x; each of its P
// workgroups per row leaves its share of the sum as a partial row, and the next kernel
// reads x as base + bias + Σ partials, the partials in order (the same numbers in
// every workgroup and batch). The kernel declares `p` (with `k4`: vec4s of a row,
// `parts`: partial rows per row, `norm`: STAGE_BIAS), `parts` (`[rows, P, K]`) and
// `res_bias` (`[K]`, the deferred linear's bias; or a dummy); the base row comes from
// `residual_base`: prelude `residual_x` (the rows of `x`) or, for the first block,
// prelude `residual_embed` (the embedding itself).

// p.norm: add res_bias (the deferred projection has a bias).
const STAGE_BIAS: u32 = 8u;

// Vec4 `c` of row `row` of the residual stream.
fn residual_at(row: u32, c: u32) -> vec4<f32> {
    var v = residual_base(row, c);
    if ((p.norm & STAGE_BIAS) != 0u) {
        v += res_bias[c];
    }
    for (var j = 0u; j < p.parts; j++) {
        v += parts[(row * p.parts + j) * p.k4 + c];
    }
    return v;
}
