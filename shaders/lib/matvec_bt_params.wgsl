// The uniform of the LM-head matrix-vector kernels (`matvec_bt*`):
//   out[out_row0 + r, N] = a[a_row0 + r, :] · b[N, K]ᵀ for the rows r of a dispatch.
struct MatvecBtParams {
    n: u32,        // rows of b = outputs
    k4: u32,       // K / 4
    a_row0: u32,   // first row of `a` of this dispatch
    out_row0: u32, // its row of `out`
    rows: u32,     // rows of the batch from a_row0 on: a ROWS group past them computes
                   // those rows and does not store them
    norm: u32,     // the kernels with a norm prologue: NORM_* flags (0: a as it is)
    eps: f32,      // the norm's epsilon
    gather: u32,   // `matvec_bt_groups`: 1: row r is row rows_list[a_row0 + r] of `a`
}

// Store outputs col0 .. col0 + 3 (those below N) of row `r` of this dispatch (the kernel
// declares `p` and `out`), unless the row is past the batch.
fn store4(v: vec4<f32>, r: u32, col0: u32) {
    if (r >= p.rows) {
        return;
    }
    let at = (p.out_row0 + r) * p.n;
    if (col0 < p.n) { out[at + col0] = v.x; }
    if (col0 + 1u < p.n) { out[at + col0 + 1u] = v.y; }
    if (col0 + 2u < p.n) { out[at + col0 + 2u] = v.z; }
    if (col0 + 3u < p.n) { out[at + col0 + 3u] = v.w; }
}
