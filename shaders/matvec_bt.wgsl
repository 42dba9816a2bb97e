// LM head for the rows of a decode step (and the last position of a prefill):
//   out[out_row0 + r, N] = a[a_row0 + r, :] · b[N, K]ᵀ (b is a row chunk of wte).
// One invocation per 4 outputs: each step loads one vec4 of each of 4 rows of `b`
// once for its ROWS rows, and their vec4s of `a` (uniform).
// ROWS (an override: 1, 4 or 8, `gpu::BATCH_ROWS`) rows of the batch per invocation,
// in separate accumulators (llvmpipe keeps arrays indexed by a variable in memory),
// rows ROWS · workgroup y ..; the host covers a batch
// with groups of 8 and one group of 4 or 8 over its end (`RowsOp::cover`: rows past
// the batch are computed, never stored), or single rows. Every row is computed by the same
// expression (`row_dot`) in every variant, so its numbers do not depend on the batch.
// Preludes: matvec_bt_params (MatvecBtParams, store4), the weight type `W` / `load_w4`
// (f32 here, packed half floats in `matvec_bt_f16`, which is this file with the f16
// prelude).

override WG: u32 = 64u;
override ROWS: u32 = 1u;

@group(0) @binding(0) var<uniform> p: MatvecBtParams;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;     // [a_row0 + R, K]
@group(0) @binding(2) var<storage, read> b: array<W>;     // [N, K]
@group(0) @binding(3) var<storage, read_write> out: array<f32>;   // [out_row0 + R, N]

// One row's step along K: its 4 values against the 4 rows of b.
fn row_dot(x: vec4<f32>, b0: vec4<f32>, b1: vec4<f32>, b2: vec4<f32>, b3: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(dot(x, b0), dot(x, b1), dot(x, b2), dot(x, b3));
}

@compute @workgroup_size(WG)
fn matvec_bt(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>) {
    let col0 = gid.x * 4u;
    if (col0 >= p.n) {
        return;
    }
    let k4 = p.k4;
    let last = p.n - 1u;
    let w0 = row_base(min(col0, last), k4);
    let w1 = row_base(min(col0 + 1u, last), k4);
    let w2 = row_base(min(col0 + 2u, last), k4);
    let w3 = row_base(min(col0 + 3u, last), k4);
    let a0 = p.a_row0 + wg.y * ROWS;
    var c0 = vec4<f32>(0.0);
    var c1 = vec4<f32>(0.0);
    var c2 = vec4<f32>(0.0);
    var c3 = vec4<f32>(0.0);
    var c4 = vec4<f32>(0.0);
    var c5 = vec4<f32>(0.0);
    var c6 = vec4<f32>(0.0);
    var c7 = vec4<f32>(0.0);
    for (var k = 0u; k < k4; k++) {
        let b0 = load_w4(b[w0 + col_step(k)]);
        let b1 = load_w4(b[w1 + col_step(k)]);
        let b2 = load_w4(b[w2 + col_step(k)]);
        let b3 = load_w4(b[w3 + col_step(k)]);
        let xk = a0 * k4 + k;
        c0 += row_dot(a[xk + 0u * k4], b0, b1, b2, b3);
        if (ROWS > 1u) {
            c1 += row_dot(a[xk + 1u * k4], b0, b1, b2, b3);
            c2 += row_dot(a[xk + 2u * k4], b0, b1, b2, b3);
            c3 += row_dot(a[xk + 3u * k4], b0, b1, b2, b3);
        }
        if (ROWS > 4u) {
            c4 += row_dot(a[xk + 4u * k4], b0, b1, b2, b3);
            c5 += row_dot(a[xk + 5u * k4], b0, b1, b2, b3);
            c6 += row_dot(a[xk + 6u * k4], b0, b1, b2, b3);
            c7 += row_dot(a[xk + 7u * k4], b0, b1, b2, b3);
        }
    }
    store4(c0, wg.y * ROWS + 0u, col0);
    if (ROWS > 1u) {
        store4(c1, wg.y * ROWS + 1u, col0);
        store4(c2, wg.y * ROWS + 2u, col0);
        store4(c3, wg.y * ROWS + 3u, col0);
    }
    if (ROWS > 4u) {
        store4(c4, wg.y * ROWS + 4u, col0);
        store4(c5, wg.y * ROWS + 5u, col0);
        store4(c6, wg.y * ROWS + 6u, col0);
        store4(c7, wg.y * ROWS + 7u, col0);
    }
}
