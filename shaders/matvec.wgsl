// Matrix-vector path for decode steps: out[R, N] (=|+=) act(x[R, K] · w[K, N] + bias[N])
// for the R rows of a batch (R = 1 for one generation). Same epilogue flags as matmul
// (bit 0 bias, bit 1 GELU, bit 2 accumulate). One invocation per output vec4; each
// weight vec4 is loaded once for its ROWS rows, and the loads of x are uniform.
// ROWS (an override: 1, 4 or 8, `gpu::BATCH_ROWS`) rows of the batch per invocation,
// in separate accumulators (llvmpipe keeps arrays indexed by a variable in memory),
// rows r0 .. r0 + ROWS with r0 = row0 + ROWS · workgroup y; the host covers a batch
// with groups of 8 and one group of 4 or 8 over its end (`RowsOp::cover`: rows past
// the batch are computed, never stored), or single rows. Every row is computed by the same
// expression (`row_fma`) in every variant, so its numbers do not depend on the batch.
// Preludes: matvec_params, the weight type `W` / `load_w4` (f32, or half floats for
// `matvec_f16`: this file with each vec4 of `w` loaded as two packed words), gelu,
// epilogue.

// w is stored in column panels: N / P panels of P columns, each [K, P] row-major
// (P = 64 when N % 64 == 0, else P = N, which is plain row-major [K, N]). A workgroup
// then walks K through contiguous memory, which the CPU's prefetchers follow; p4 = P / 4.

override WG: u32 = 64u;
override ROWS: u32 = 1u;

@group(0) @binding(0) var<uniform> p: MatvecParams;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;       // [R, K]
@group(0) @binding(2) var<storage, read> w: array<W>;               // [K, N]
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;    // [N] (or a dummy)
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>; // [R, N]

// One row's step along K: x[r, 4k .. 4k + 3] times the 4 weight rows.
fn row_fma(xv: vec4<f32>, w0: vec4<f32>, w1: vec4<f32>, w2: vec4<f32>, w3: vec4<f32>) -> vec4<f32> {
    return xv.x * w0 + xv.y * w1 + xv.z * w2 + xv.w * w3;
}

@compute @workgroup_size(WG)
fn matvec(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>) {
    let col = gid.x;
    if (col >= p.n4) {
        return;
    }
    let p4 = p.p4;
    let k4 = p.k4;
    let r0 = p.row0 + wg.y * ROWS;
    let base = (col / p4) * (4u * k4 * p4) + col % p4; // this column's panel
    var c0 = vec4<f32>(0.0);
    var c1 = vec4<f32>(0.0);
    var c2 = vec4<f32>(0.0);
    var c3 = vec4<f32>(0.0);
    var c4 = vec4<f32>(0.0);
    var c5 = vec4<f32>(0.0);
    var c6 = vec4<f32>(0.0);
    var c7 = vec4<f32>(0.0);
    for (var k = 0u; k < k4; k++) {
        let bi = base + 4u * k * p4;
        let w0 = load_w4(w[bi]);
        let w1 = load_w4(w[bi + p4]);
        let w2 = load_w4(w[bi + 2u * p4]);
        let w3 = load_w4(w[bi + 3u * p4]);
        let xk = r0 * k4 + k;
        c0 += row_fma(x[xk + 0u * k4], w0, w1, w2, w3);
        if (ROWS > 1u) {
            c1 += row_fma(x[xk + 1u * k4], w0, w1, w2, w3);
            c2 += row_fma(x[xk + 2u * k4], w0, w1, w2, w3);
            c3 += row_fma(x[xk + 3u * k4], w0, w1, w2, w3);
        }
        if (ROWS > 4u) {
            c4 += row_fma(x[xk + 4u * k4], w0, w1, w2, w3);
            c5 += row_fma(x[xk + 5u * k4], w0, w1, w2, w3);
            c6 += row_fma(x[xk + 6u * k4], w0, w1, w2, w3);
            c7 += row_fma(x[xk + 7u * k4], w0, w1, w2, w3);
        }
    }
    store_row(c0, col, r0 + 0u);
    if (ROWS > 1u) {
        store_row(c1, col, r0 + 1u);
        store_row(c2, col, r0 + 2u);
        store_row(c3, col, r0 + 3u);
    }
    if (ROWS > 4u) {
        store_row(c4, col, r0 + 4u);
        store_row(c5, col, r0 + 5u);
        store_row(c6, col, r0 + 6u);
        store_row(c7, col, r0 + 7u);
    }
}
