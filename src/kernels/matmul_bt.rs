//! `out[M, N] = a[M, K] · b[N, K]ᵀ`, the tied LM head (`shaders/matmul_bt.wgsl`).

use bytemuck::{Pod, Zeroable};

use super::matmul::tile_rows;
use super::Pipelines;
use super::{submit_pass, HostProduct, KernelOp};
use crate::error::Result;
use crate::gpu::{buffers, GpuContext, WORKGROUP};

/// Rows per group in wte's layout ([`to_row_groups`]).
pub const ROW_GROUP: usize = 32;

/// `w [rows, k]` (wte) in the layout the LM-head and embedding kernels read: for every
/// group of [`ROW_GROUP`] rows and every 8 columns, the 8 values of each row of the group
/// (rows padded to a multiple of the group, columns to a multiple of 8, with zeros).
/// The 32 rows a subgroup reads side by side then lie side by side in memory: a
/// one-token LM head on lavapipe is about a third faster than over row-major wte.
/// The result is `[padded rows, padded k]`-sized, row groups in order, so a chunk of
/// whole groups is a contiguous slice.
pub fn to_row_groups(w: &[f32], rows: usize, k: usize) -> Vec<f32> {
    let (k8, groups) = (k.div_ceil(8), rows.div_ceil(ROW_GROUP));
    let mut out = vec![0.0; groups * ROW_GROUP * k8 * 8];
    for (r, row) in w.chunks_exact(k).take(rows).enumerate() {
        let (g, rr) = (r / ROW_GROUP, r % ROW_GROUP);
        for (c8, vals) in row.chunks(8).enumerate() {
            let at = ((g * k8 + c8) * ROW_GROUP + rr) * 8;
            out[at..at + vals.len()].copy_from_slice(vals);
        }
    }
    out
}

/// wte `[rows, k]` as kernel `variant` reads it: in row groups, packed as half floats
/// for the `*_f16` variants. One stored row is [`wte_words_per_row`] words.
pub fn store_wte(variant: &str, w: &[f32], rows: usize, k: usize) -> Vec<f32> {
    super::in_precision_of(variant, to_row_groups(w, rows, k))
}

/// 32-bit words per stored row of wte for kernel `variant` (columns padded to 8).
pub fn wte_words_per_row(variant: &str, k: usize) -> usize {
    let padded = k.div_ceil(8) * 8;
    if super::half_precision(variant) {
        padded / 2
    } else {
        padded
    }
}

/// wte `[rows, k]` uploaded for kernel `variant` in chunks of whole row groups, each
/// holding at most `rows_per_chunk` rows (rounded down to whole groups, at least one).
pub fn upload_wte(
    ctx: &GpuContext,
    variant: &str,
    w: &[f32],
    rows: usize,
    k: usize,
    rows_per_chunk: usize,
) -> buffers::RowChunked {
    buffers::RowChunked::upload_padded(
        ctx,
        "wte",
        &store_wte(variant, w, rows, k),
        wte_words_per_row(variant, k),
        rows,
        (rows_per_chunk / ROW_GROUP * ROW_GROUP).max(ROW_GROUP),
    )
}

/// Mirrors `MatmulBtParams` in the WGSL.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct MatmulBtParams {
    pub m: u32,
    pub n: u32,
    pub k4: u32,
    pub a_row0: u32,
}

/// Op with the best variant for the device: bindings a, b, out.
pub fn matmul_bt_op(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    a: &wgpu::Buffer,
    b: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> KernelOp {
    matmul_bt_variant_op(ctx, pipelines, pipelines.best("matmul_bt"), a, b, out)
}

/// Op with an explicit variant: `matmul_bt` or `matmul_bt_subgroup`, or their `_f16`
/// twins for a half-float wte.
pub fn matmul_bt_variant_op(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
    a: &wgpu::Buffer,
    b: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> KernelOp {
    KernelOp::new::<MatmulBtParams>(ctx, pipelines, variant, &[a, b, out])
}

/// Record `out[m, n] = a[a_row0 .. a_row0 + m, k] · b[n, k]ᵀ`.
pub fn encode_matmul_bt(
    pass: &mut wgpu::ComputePass<'_>,
    op: &KernelOp,
    m: usize,
    n: usize,
    k: usize,
    a_row0: usize,
) {
    let p = MatmulBtParams {
        m: m as u32,
        n: n as u32,
        k4: (k / 4) as u32,
        a_row0: a_row0 as u32,
    };
    let gx = n.div_ceil(4 * WORKGROUP as usize) as u32;
    let gy = m.div_ceil(tile_rows(op.kernel)) as u32;
    op.encode(pass, &p, (gx, gy, 1));
}

/// Upload, run `variant`, read back `out[M, N]` of `p.x · p.w^T`; `p.w` (`[N, K]`) is
/// stored as the model stores wte, in chunks of `rows_per_chunk` rows (rounded down to
/// row groups), and the result is reassembled.
pub fn run_matmul_bt(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
    p: &HostProduct,
    rows_per_chunk: usize,
) -> Result<Vec<f32>> {
    let (m, n, k) = (p.rows(), p.n, p.k);
    let ab = buffers::upload(ctx, "a", p.x);
    let bt = upload_wte(ctx, variant, p.w, n, k, rows_per_chunk);
    let outs: Vec<_> = bt
        .chunks
        .iter()
        .map(|ch| buffers::storage(ctx, "out", m * ch.rows))
        .collect();
    let ops: Vec<_> = bt
        .chunks
        .iter()
        .zip(&outs)
        .map(|(ch, o)| matmul_bt_variant_op(ctx, pipelines, variant, &ab, &ch.buffer, o))
        .collect();
    submit_pass(ctx, "matmul_bt", |pass| {
        for (op, ch) in ops.iter().zip(&bt.chunks) {
            encode_matmul_bt(pass, op, m, ch.rows, k, 0);
        }
    })?;
    let parts = buffers::read_many(
        ctx,
        &outs
            .iter()
            .zip(&bt.chunks)
            .map(|(o, ch)| (o, 0, m * ch.rows))
            .collect::<Vec<_>>(),
    )?;
    let mut out = vec![0.0; m * n];
    for (part, ch) in parts.iter().zip(&bt.chunks) {
        for r in 0..m {
            out[r * n + ch.row_start..r * n + ch.row_start + ch.rows]
                .copy_from_slice(&part[r * ch.rows..(r + 1) * ch.rows]);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_groups_interleave_rows_by_eight_columns_and_pad() {
        // 40 rows (a full group and 8 rows of a second), 12 columns (padded to 16)
        let (rows, k) = (40, 12);
        let w: Vec<f32> = (0..rows * k).map(|i| i as f32 + 1.0).collect();
        let g = to_row_groups(&w, rows, k);
        assert_eq!(g.len(), 2 * ROW_GROUP * 16);
        for r in 0..rows {
            for c in 0..k {
                let at = (((r / 32) * 2 + c / 8) * 32 + r % 32) * 8 + c % 8;
                assert_eq!(g[at], w[r * k + c], "row {r} col {c}");
            }
        }
        // everything else is zero padding
        let nonzero = g.iter().filter(|v| **v != 0.0).count();
        assert_eq!(nonzero, rows * k);
        assert_eq!(wte_words_per_row("matvec_bt", 12), 16);
        assert_eq!(wte_words_per_row("matvec_bt_f16", 12), 8);
    }
}
