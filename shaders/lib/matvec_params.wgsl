// The uniform of the matrix-vector kernels: out[R, N] (=|+=) act(x[R, K] · w[K, N] + bias)
// for the R rows of a decode step (one per generation in the batch). Each row is
// computed by the same code whatever R is, so a generation's numbers do not depend
// on the batch it runs in.
struct MatvecParams {
    n4: u32,
    k4: u32,
    flags: u32, // bit 0 bias, bit 1 GELU, bit 2 accumulate
    p4: u32,    // panel width of w / 4
    rows: u32,  // workgroup rows of this dispatch (ROWS rows each)
    row0: u32,  // first row of this dispatch (the ROWS kernels)
    row_end: u32, // rows from here on are past the batch: computed, never stored
    _pad1: u32,
}

// Store output vec4 `col` of batch row `r` through the epilogue (prelude epilogue),
// unless the row is past the batch (a ROWS group that covers the batch's end).
fn store_row(acc: vec4<f32>, col: u32, r: u32) {
    if (r < p.row_end) {
        store_epilogue(acc, col, r * p.n4 + col);
    }
}
