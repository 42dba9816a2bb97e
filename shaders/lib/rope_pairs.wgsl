// Rotary positions in the epilogue of the split-K matrix-vector kernels (flag ROTARY:
// the qkv projection of the rotary families). Hugging Face's rotate_half pairs
// dimension d of a head with d + HS/2, so with the flag a workgroup's COLS4 output
// vec4s are COLS4 / 2 pairs, vec4 i of a head's first half and vec4 i of its second
// half; both sums meet in workgroup memory (prelude splitk_reduce), and the `rotary`
// kernel's expressions rotate them before the store and the KV store: the rotation has
// no dispatch of its own. Columns past the query and key heads (the values) are stored
// as they are. The kernel declares `p` (MatvecParams: `half4` = HS / 8, `rot4` = the
// vec4s rotated), `out` and `COLS4` (a multiple of 2); preludes matvec_params,
// epilogue, splitk_reduce.

// Flag (`kernels::matmul::ROTARY`): rotate the query and key heads.
const ROTARY: u32 = 64u;

// the rows' positions (ROTARY, or the first block's embedding, prelude residual_embed)
@group(0) @binding(10) var<storage, read> positions: array<u32>; // [R] (or a dummy)
// cos and sin of each position's angles, `[positions, 2, HS/2]` (or a dummy)
@group(0) @binding(11) var<storage, read> rope: array<vec4<f32>>;

// The column of the workgroup's output vec4 `s` (workgroup `wx`).
fn out_col(wx: u32, s: u32) -> u32 {
    if ((p.flags & ROTARY) == 0u) {
        return wx * COLS4 + s;
    }
    let pairs = COLS4 / 2u;
    let pair = wx * pairs + s % pairs;
    let h = p.half4;
    return (pair / h) * 2u * h + pair % h + (s / pairs) * h;
}

// Store the sum of output vec4 `s` (column `col`) of row `row` through the epilogue,
// rotated with its pair's sum first where it is a query or key vec4. Call after
// sum_groups.
fn store_col(sum: vec4<f32>, s: u32, col: u32, row: u32) {
    if ((p.flags & ROTARY) == 0u || col >= p.rot4) {
        store_row(sum, col, row);
        return;
    }
    if (row >= p.row_end) {
        return;
    }
    let h = p.half4;
    let i = col % (2u * h);
    let first = i < h;
    let x = biased(sum, col);
    let y = biased(group_sum((s + COLS4 / 2u) % COLS4), select(col - h, col + h, first));
    let at = positions[row] * 2u * h + i % h;
    let c = rope[at];
    let sn = rope[at + h];
    var o = x * c + y * sn;
    if (first) {
        o = x * c - y * sn;
    }
    out[row * p.n4 + col] = o;
    store_kv(o, col, row);
}
