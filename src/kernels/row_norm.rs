//! Residual-stream row norms for capture (`shaders/row_norm.wgsl`).

use bytemuck::{Pod, Zeroable};

use super::Pipelines;
use super::{submit_pass, KernelOp};
use crate::error::Result;
use crate::gpu::{buffers, grid_1d, GpuContext};

/// Mirrors `RowNormParams` in the WGSL.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct RowNormParams {
    pub t: u32,
    pub c4: u32,
    pub offset: u32,
    pub _pad: u32,
}

/// Op: bindings x `[T, C]`, out.
pub fn row_norm_op(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    x: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> KernelOp {
    KernelOp::new::<RowNormParams>(ctx, pipelines, "row_norm", &[x, out])
}

/// Record `out[offset + t] = ‖x[t, :]‖₂` for `t` rows.
pub fn encode_row_norm(
    pass: &mut wgpu::ComputePass<'_>,
    op: &KernelOp,
    t: usize,
    c: usize,
    offset: usize,
) {
    let p = RowNormParams {
        t: t as u32,
        c4: (c / 4) as u32,
        offset: offset as u32,
        _pad: 0,
    };
    let (x, _) = grid_1d(t);
    op.encode(pass, &p, (x, 1, 1));
}

/// Upload, run, read back the `T` norms.
pub fn run_row_norm(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    x: &[f32],
    c: usize,
) -> Result<Vec<f32>> {
    let t = x.len() / c;
    let xb = buffers::upload(ctx, "x", x);
    let out = buffers::storage(ctx, "norms", t);
    let op = row_norm_op(ctx, pipelines, &xb, &out);
    submit_pass(ctx, "row_norm", |pass| encode_row_norm(pass, &op, t, c, 0))?;
    buffers::read_floats(ctx, &out, 0, t)
}
