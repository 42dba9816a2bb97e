//! Token + position embedding (`shaders/embedding.wgsl`).

use bytemuck::{Pod, Zeroable};

use super::matmul_bt::upload_wte;
use super::Pipelines;
use super::{submit_pass, KernelOp};
use crate::error::Result;
use crate::gpu::{buffers, grid_1d, GpuContext};

/// Mirrors `EmbeddingParams` in the WGSL.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct EmbeddingParams {
    pub t: u32,
    pub c4: u32,
    pub row_start: u32,
    pub rows: u32,
    /// 1: add the learned position embedding.
    pub learned: u32,
    /// The token embedding's factor (1; Gemma's √hidden).
    pub scale: f32,
    pub _pad: [u32; 2],
}

/// Op over one wte chunk: bindings ids, wte chunk, wpe (any buffer without learned
/// positions), out, positions (u32 per row).
/// `variant` is `embedding`, or `embedding_f16` for a half-float wte.
#[allow(clippy::too_many_arguments)]
pub fn embedding_op(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
    ids: &wgpu::Buffer,
    wte_chunk: &wgpu::Buffer,
    wpe: &wgpu::Buffer,
    out: &wgpu::Buffer,
    positions: &wgpu::Buffer,
) -> KernelOp {
    KernelOp::new::<EmbeddingParams>(
        ctx,
        pipelines,
        variant,
        &[ids, wte_chunk, wpe, out, positions],
    )
}

/// Record the embedding of `t` tokens for the chunk holding rows `[row_start, row_start
/// + rows)`, times `scale`, plus their learned positions when `learned`.
pub fn encode_embedding(
    pass: &mut wgpu::ComputePass<'_>,
    op: &KernelOp,
    t: usize,
    c: usize,
    (row_start, rows): (usize, usize),
    (learned, scale): (bool, f32),
) {
    let p = EmbeddingParams {
        t: t as u32,
        c4: (c / 4) as u32,
        row_start: row_start as u32,
        rows: rows as u32,
        learned: u32::from(learned),
        scale,
        _pad: [0; 2],
    };
    let (x, y) = grid_1d(t * c / 4);
    op.encode(pass, &p, (x, y, 1));
}

/// Upload, run, read back: `out[T, C]` for tokens `ids` at `positions` (the position
/// table `wpe`, or none), the token embedding times `scale`. `rows_per_chunk` splits
/// wte as the model would.
#[allow(clippy::too_many_arguments)]
pub fn run_embedding(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
    ids: &[u32],
    positions: &[u32],
    wte: &[f32],
    (wpe, scale): (Option<&[f32]>, f32),
    c: usize,
    rows_per_chunk: usize,
) -> Result<Vec<f32>> {
    let t = ids.len();
    let ids_buf = buffers::upload(ctx, "ids", bytemuck::cast_slice(ids));
    let wte = upload_wte(ctx, variant, wte, wte.len() / c, c, rows_per_chunk);
    let wpe_buf = buffers::upload(ctx, "wpe", wpe.unwrap_or(&[0.0; 4]));
    let pos_buf = buffers::upload(ctx, "positions", bytemuck::cast_slice(positions));
    let out = buffers::storage(ctx, "out", t * c);
    let ops: Vec<_> = wte
        .chunks
        .iter()
        .map(|ch| {
            embedding_op(
                ctx, pipelines, variant, &ids_buf, &ch.buffer, &wpe_buf, &out, &pos_buf,
            )
        })
        .collect();
    submit_pass(ctx, "embedding", |pass| {
        for (op, ch) in ops.iter().zip(&wte.chunks) {
            let rows = (ch.row_start, ch.rows);
            encode_embedding(pass, op, t, c, rows, (wpe.is_some(), scale));
        }
    })?;
    buffers::read_floats(ctx, &out, 0, t * c)
}
