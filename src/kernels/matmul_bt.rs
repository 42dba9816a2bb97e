//! `out[M, N] = a[M, K] · b[N, K]ᵀ`, the tied LM head (`shaders/matmul_bt.wgsl`).

use bytemuck::{Pod, Zeroable};

use super::matmul::tile_rows;
use super::{submit_pass, words_per_row, KernelOp};
use crate::error::Result;
use crate::gpu::{buffers, GpuContext, Pipelines, WORKGROUP};

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
#[allow(clippy::too_many_arguments)]
pub fn encode_matmul_bt(
    queue: &wgpu::Queue,
    pass: &mut wgpu::ComputePass<'_>,
    pipelines: &Pipelines,
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
    let gy = m.div_ceil(tile_rows(op.name)) as u32;
    op.encode(queue, pass, pipelines, &p, (gx, gy, 1));
}

/// Upload, run `variant`, read back `out[M, N]`; `b` is split into row chunks of
/// `rows_per_chunk` as the model splits wte, and the result is reassembled.
#[allow(clippy::too_many_arguments)]
pub fn run_matmul_bt(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
    a: &[f32],
    b: &[f32],
    m: usize,
    n: usize,
    k: usize,
    rows_per_chunk: usize,
) -> Result<Vec<f32>> {
    let ab = buffers::upload(ctx, "a", a);
    let bt = buffers::RowChunked::upload(ctx, "b", b, words_per_row(variant, k), rows_per_chunk);
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
            encode_matmul_bt(&ctx.queue, pass, pipelines, op, m, ch.rows, k, 0);
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
