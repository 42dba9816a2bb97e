// The uniform of the LM-head matrix-vector kernels (`matvec_bt*`):
//   out[out_row0 + r, N] = a[a_row0 + r, :] · b[N, K]ᵀ for the rows r of a dispatch.
struct MatvecBtParams {
    n: u32,        // rows of b = outputs
    k4: u32,       // K / 4
    a_row0: u32,   // first row of `a` of this dispatch
    out_row0: u32, // its row of `out`
}

// Store outputs col0 .. col0 + 3 (those below N) of the row starting at `at` (the
// kernel declares `p` and `out`).
fn store4(v: vec4<f32>, at: u32, col0: u32) {
    if (col0 < p.n) { out[at + col0] = v.x; }
    if (col0 + 1u < p.n) { out[at + col0 + 1u] = v.y; }
    if (col0 + 2u < p.n) { out[at + col0 + 2u] = v.z; }
    if (col0 + 3u < p.n) { out[at + col0 + 3u] = v.w; }
}
