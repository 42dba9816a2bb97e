// Matrix-vector product for hardware GPUs (decode steps):
// out[R, N] (=|+=) act(x[R, K] · w[K, N] + bias[N]) for the R rows of a batch, one row
// per workgroup y (row row0 + workgroup y), all rows in one dispatch. A decode step's
// weights are small next to the GPU's cache and its time is latency, not bandwidth:
// measured on an H200, 16 rows as 96 workgroups of 8 rows (weights read twice) took
// 0.104 ms for 3072→768, as 192 of 4 rows 0.065 ms; one row a workgroup gives the GPU
// the most independent work and leaves no idle rows for one generation. Epilogue flags
// as matmul (bit 0 bias, bit 1 GELU, bit 2 accumulate, ROTARY), and KV_STORE
// (matvec_params). Preludes: matvec_params, the weight type `W` / `load_w4` (f32, or
// packed half floats for `matvec_f16_splitk`), gelu, epilogue, workgroup_reduce,
// norm_prologue, splitk_reduce. Each row is computed by the same code, so its numbers
// do not depend on its batch.
//
// A workgroup owns COLS4 vec4 columns and splits the K rows across its WG / COLS4
// lane groups: the COLS4 lanes of a group read adjacent vec4s of one weight row (one
// coalesced segment), group g walks rows g, g + groups, ..., and the partial sums meet
// in workgroup memory. N / (4 · COLS4) workgroups per row: 48 for N = 768, enough to
// spread the reads over the GPU, where `matvec` (one lane per output vec4 walking all
// of K) leaves most of it idle.
//
// w is stored in column panels as for `matvec`: N / P panels of P columns, each
// [K, P] row-major (P = 64 when N % 64 == 0, else P = N); p4 = P / 4.
//
// With p.norm, the norm before the projection is folded in (prelude norm_prologue: x is
// the residual stream, normalised on the way in). The row comes through `x_begin` /
// `x_at`: prelude matvec_x reads x as it is; `matvec_staged` / `matvec_f16_staged`
// (prelude stage_x) read the residual stream with deferred terms (base x + bias + the
// partial rows `parts`, prelude residual_parts) staged in workgroup memory, and write
// it whole to `x_out` from the row's first workgroup.

// WG a power of two, at most 256 (the size of `part`); COLS4 (declared by the x
// source's prelude: 4 reading x, 16 staging the stream, whose sum each workgroup pays
// for) a power of two dividing WG and 16 (so a workgroup's columns lie in one panel).
override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: MatvecParams;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;       // [R, K]
@group(0) @binding(2) var<storage, read> w: array<W>;               // [K, N]
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;    // [N] (or a dummy)
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>; // [R, N]
// bindings 5-9 (the KV pool and slots, the rows' positions, the rotary table): prelude
// matvec_params
@group(0) @binding(10) var<storage, read> norm_w: array<vec4<f32>>;  // [K] (p.norm; or a dummy)
@group(0) @binding(11) var<storage, read> norm_b: array<vec4<f32>>;  // [K] (NORM_BIAS; or a dummy)
// the staged variants (prelude stage_x)
@group(0) @binding(12) var<storage, read> parts: array<vec4<f32>>;  // [R, P, K]
@group(0) @binding(13) var<storage, read> res_bias: array<vec4<f32>>; // [K] (STAGE_BIAS; or a dummy)
@group(0) @binding(14) var<storage, read_write> x_out: array<vec4<f32>>; // [R, K]

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
    let row = p.row0 + wg.y;
    let st = x_begin(row, lid, wg.x == 0u); // prelude matvec_x or stage_x
    var acc = vec4<f32>(0.0);
    if (live) {
        let base = (col / p4) * (4u * p.k4 * p4) + col % p4; // this column's panel
        for (var r = g; r < 4u * p.k4; r += groups) {
            acc += x_at(row, r, st) * load_w4(w[base + r * p4]);
        }
    }
    let sum = sum_groups(lid, COLS4, acc); // prelude splitk_reduce
    if (g == 0u && live) {
        store_row(sum, col, row); // prelude matvec_params
    }
}
