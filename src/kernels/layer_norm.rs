//! Layer norm, eps 1e-5, bias optional: `layer_norm` (software adapters: one
//! invocation per row) and `layer_norm_workgroup` (hardware GPUs: one workgroup per
//! row, reduced in workgroup memory).

use bytemuck::{Pod, Zeroable};

use super::Pipelines;
use super::{submit_pass, KernelOp};
use crate::error::Result;
use crate::gpu::{buffers, grid_1d, grid_groups, GpuContext};

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

/// Op of `variant` (`layer_norm` or `layer_norm_workgroup`): bindings x, weight, bias
/// (any buffer when there is none), y.
pub fn layer_norm_op(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
    x: &wgpu::Buffer,
    weight: &wgpu::Buffer,
    bias: &wgpu::Buffer,
    y: &wgpu::Buffer,
) -> KernelOp {
    KernelOp::new::<LayerNormParams>(ctx, pipelines, variant, &[x, weight, bias, y])
}

/// Record a layer norm over `t` rows of width `c`.
pub fn encode_layer_norm(
    pass: &mut wgpu::ComputePass<'_>,
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
    let groups = match op.name {
        // one workgroup per row, folded so that neither dimension exceeds 65,535
        "layer_norm_workgroup" => grid_groups(t),
        _ => grid_1d(t),
    };
    op.encode(pass, &p, (groups.0, groups.1, 1));
}

/// Upload, run `variant`, read back `y[T, C]`.
pub fn run_layer_norm(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
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
    let op = layer_norm_op(ctx, pipelines, variant, &xb, &wb, &bb, &yb);
    submit_pass(ctx, "layer_norm", |pass| {
        encode_layer_norm(pass, &op, t, c, bias.is_some())
    })?;
    buffers::read_floats(ctx, &yb, 0, t * c)
}
