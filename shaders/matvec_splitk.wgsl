// Matrix-vector product for hardware GPUs (decode steps):
// out[R, N] (=|+=) act(x[R, K] · w[K, N] + bias[N]) for the R rows of a batch, ROWS
// rows per workgroup y (an override: 1, 4 or 8, `gpu::BATCH_ROWS`; rows r0 .. r0 + ROWS
// with r0 = row0 + ROWS · workgroup y, the host covering a batch with groups of 8, then
// 4, then single rows): each weight load serves ROWS rows, so 16 generations read the
// weights twice, not 16 times, and one generation carries no idle rows. Epilogue flags
// as matmul (bit 0 bias, bit 1 GELU, bit 2 accumulate). Preludes: matvec_params, the
// weight type `W` / `load_w4` (f32, or packed half floats for `matvec_f16_splitk`),
// gelu, epilogue. Each row is computed by the same code in every variant (the same
// fma sequence, the same reduction tree), so its numbers do not depend on its batch.
//
// A workgroup owns COLS4 vec4 columns and splits the K rows across its WG / COLS4
// lane groups: the COLS4 lanes of a group read adjacent vec4s of one weight row (one
// coalesced segment), group g walks rows g, g + groups, ..., and the partial sums meet
// in workgroup memory, 4 rows at a time. N / (4 · COLS4) workgroups per ROWS rows: 48
// for N = 768, enough to spread a decode step's reads over the GPU, where `matvec` (one
// lane per output vec4 walking all of K) leaves most of it idle.
//
// w is stored in column panels as for `matvec`: N / P panels of P columns, each
// [K, P] row-major (P = 64 when N % 64 == 0, else P = N); p4 = P / 4.

// WG a power of two, at most 256 (`part` holds 256 · 4 vec4s: 16 KiB, WebGPU's
// guaranteed workgroup memory); COLS4 a power of two dividing WG and 16 (so a
// workgroup's columns lie in one panel).
override WG: u32 = 256u;
override COLS4: u32 = 4u;
override ROWS: u32 = 1u; // at most 8 (the size of `acc`)

@group(0) @binding(0) var<uniform> p: MatvecParams;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;       // [R, K]
@group(0) @binding(2) var<storage, read> w: array<W>;               // [K, N]
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;    // [N] (or a dummy)
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>; // [R, N]

var<workgroup> part: array<vec4<f32>, 1024>; // [WG][4]

@compute @workgroup_size(WG)
fn matvec_splitk(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
) {
    let c = lid % COLS4;
    let g = lid / COLS4;
    let groups = WG / COLS4;
    let col = wg.x * COLS4 + c;
    let live = col < p.n4;
    let p4 = p.p4;
    let r0 = p.row0 + wg.y * ROWS;
    // ROWS is a pipeline constant: the loops over it unroll and `acc` stays in registers
    var acc: array<vec4<f32>, 8>;
    for (var i = 0u; i < ROWS; i++) {
        acc[i] = vec4<f32>(0.0);
    }
    if (live) {
        let base = (col / p4) * (4u * p.k4 * p4) + col % p4; // this column's panel
        for (var r = g; r < 4u * p.k4; r += groups) {
            let wv = load_w4(w[base + r * p4]);
            for (var i = 0u; i < ROWS; i++) {
                acc[i] += x[(r0 + i) * p.k4 + r / 4u][r % 4u] * wv;
            }
        }
    }
    for (var q = 0u; q < ROWS; q += 4u) {
        let nq = min(4u, ROWS - q);
        for (var i = 0u; i < nq; i++) {
            part[lid * 4u + i] = acc[q + i];
        }
        workgroupBarrier();
        for (var s = groups / 2u; s > 0u; s = s / 2u) {
            if (g < s) {
                for (var i = 0u; i < nq; i++) {
                    part[lid * 4u + i] += part[(lid + s * COLS4) * 4u + i];
                }
            }
            workgroupBarrier();
        }
        if (g == 0u && live) {
            for (var i = 0u; i < nq; i++) {
                store_epilogue(part[c * 4u + i], col, (r0 + q + i) * p.n4 + col);
            }
        }
        workgroupBarrier(); // `part` is free for the next 4 rows
    }
}
