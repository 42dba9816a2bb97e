//! Layer norm (`shaders/layer_norm.wgsl`), eps 1e-5, bias optional.

use bytemuck::{Pod, Zeroable};

use super::{submit_pass, KernelOp};
use crate::error::Result;
use crate::gpu::{buffers, grid_1d, GpuContext, Pipelines};

/// GPT-2's layer-norm epsilon.
pub const EPS: f32 = 1e-5;

/// Mirrors `LayerNormParams` in the WGSL.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct LayerNormParams {
    pub t: u32,
    pub c4: u32,
    pub has_bias: u32,
    pub eps: f32,
}

/// Op: bindings x, weight, bias (any buffer when there is none), y.
pub fn layer_norm_op(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    x: &wgpu::Buffer,
    weight: &wgpu::Buffer,
    bias: &wgpu::Buffer,
    y: &wgpu::Buffer,
) -> KernelOp {
    KernelOp::new::<LayerNormParams>(ctx, pipelines, "layer_norm", &[x, weight, bias, y])
}

/// Record a layer norm over `t` rows of width `c`.
pub fn encode_layer_norm(
    queue: &wgpu::Queue,
    pass: &mut wgpu::ComputePass<'_>,
    pipelines: &Pipelines,
    op: &KernelOp,
    t: usize,
    c: usize,
    has_bias: bool,
) {
    let p = LayerNormParams {
        t: t as u32,
        c4: (c / 4) as u32,
        has_bias: u32::from(has_bias),
        eps: EPS,
    };
    let (x, _) = grid_1d(t);
    op.encode(queue, pass, pipelines, &p, (x, 1, 1));
}

/// Upload, run, read back `y[T, C]`.
pub fn run_layer_norm(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    c: usize,
) -> Result<Vec<f32>> {
    let t = x.len() / c;
    let xb = buffers::upload(ctx, "x", x);
    let wb = buffers::upload(ctx, "weight", weight);
    let bb = buffers::upload(ctx, "bias", bias.unwrap_or(&[0.0; 4]));
    let yb = buffers::storage(ctx, "y", t * c);
    let op = layer_norm_op(ctx, pipelines, &xb, &wb, &bb, &yb);
    submit_pass(ctx, "layer_norm", |pass| {
        encode_layer_norm(&ctx.queue, pass, pipelines, &op, t, c, bias.is_some())
    })?;
    buffers::read_floats(ctx, &yb, 0, t * c)
}
