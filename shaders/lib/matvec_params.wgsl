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
    _pad0: u32,
    _pad1: u32,
}
