// The uniform of the matrix-vector kernels: out[R, N] (=|+=) act(x[R, K] · w[K, N] + bias)
// for the R rows of a decode step (one per generation in the batch). Each row is
// computed by the same code whatever R is, so a generation's numbers do not depend
// on the batch it runs in.
struct MatvecParams {
    n4: u32,
    k4: u32,
    flags: u32, // bit 0 bias, bit 1 GELU, bit 2 accumulate, bit 3 KV_STORE, ROTARY
    p4: u32,    // panel width of w / 4
    rows: u32,  // workgroup rows of this dispatch (ROWS rows each)
    row0: u32,  // first row of this dispatch (the ROWS kernels)
    row_end: u32, // rows from here on are past the batch: computed, never stored
    kv_q4: u32, // KV_STORE: vec4s of the queries before the keys in a row of out
    kv4: u32,   // KV_STORE: vec4s of a pool row (the keys; the values follow them in out)
    norm: u32,  // the kernels with a norm prologue: NORM_* flags (0: x as it is)
    eps: f32,   // the norm's epsilon
    parts: u32, // the staged kernels: partial rows per row of x (prelude residual_parts)
    head4: u32, // ROTARY (prelude epilogue): HS / 4, vec4s in a head
    rot4: u32,  // ROTARY: vec4s of a row rotated (the query and key heads)
    _pad0: u32,
    _pad1: u32,
}

// the KV pool (prelude epilogue's KV_STORE)
@group(0) @binding(5) var<storage, read_write> k_pool: array<vec4<u32>>; // [pool rows, KV] (or a dummy)
@group(0) @binding(6) var<storage, read_write> v_pool: array<vec4<u32>>; // [pool rows, KV] (or a dummy)
@group(0) @binding(7) var<storage, read> slots: array<u32>;              // [R] (or a dummy)
// the rotation (prelude epilogue's ROTARY) and the first block's embedding (prelude
// residual_embed)
@group(0) @binding(8) var<storage, read> positions: array<u32>;  // [R] (or a dummy)
@group(0) @binding(9) var<storage, read> rope: array<vec4<f32>>; // [positions, 2, HS] (or a dummy)

// Store output vec4 `col` of batch row `r` through the epilogue (prelude epilogue,
// KV_STORE included), unless the row is past the batch (a ROWS group that covers the
// batch's end).
fn store_row(acc: vec4<f32>, col: u32, r: u32) {
    if (r < p.row_end) {
        store_epilogue(acc, col, r * p.n4 + col);
    }
}
