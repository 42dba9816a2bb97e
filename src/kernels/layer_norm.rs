//! The norms over a row: LayerNorm (GPT-2: eps 1e-5, bias optional) and RMSNorm
//! (Llama-family: no mean, no bias, the checkpoint's eps), one kernel pair for both:
//! `layer_norm` (software adapters: one invocation per row) and `layer_norm_workgroup`
//! (hardware GPUs: one workgroup per row, reduced in workgroup memory).

use bytemuck::{Pod, Zeroable};

use super::Pipelines;
use super::{submit_pass, KernelOp};
use crate::error::Result;
use crate::gpu::{buffers, grid_1d, grid_groups, GpuContext};

/// GPT-2's layer-norm epsilon.
pub const EPS: f32 = 1e-5;

/// Flag: add the bias.
pub const NORM_BIAS: u32 = 1;
/// Flag: RMSNorm (no mean subtracted).
pub const NORM_RMS: u32 = 2;
/// Flag: add the normed row into `y` (a post-norm with its residual add, Gemma).
pub const NORM_ADD: u32 = 4;

/// Mirrors `LayerNormParams` in the WGSL.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct LayerNormParams {
    pub t: u32,
    pub c4: u32,
    /// [`NORM_BIAS`] | [`NORM_RMS`] | [`NORM_ADD`].
    pub flags: u32,
    pub eps: f32,
}

/// Which norm a row gets.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Norm {
    /// RMSNorm (else LayerNorm).
    pub rms: bool,
    /// Add the bias (LayerNorm of models with biases).
    pub bias: bool,
    pub eps: f32,
}

/// A norm on the host's side of a test helper: the norm, its weight and its bias.
pub type HostNorm<'a> = (Norm, &'a [f32], Option<&'a [f32]>);

impl Norm {
    /// GPT-2's LayerNorm (eps 1e-5), with or without bias.
    pub fn layer(bias: bool) -> Self {
        Norm {
            rms: false,
            bias,
            eps: EPS,
        }
    }

    /// RMSNorm with the checkpoint's epsilon (`rms_norm_eps`).
    pub fn rms(eps: f32) -> Self {
        Norm {
            rms: true,
            bias: false,
            eps,
        }
    }

    fn flags(self) -> u32 {
        (if self.bias { NORM_BIAS } else { 0 }) | (if self.rms { NORM_RMS } else { 0 })
    }
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

/// Record `norm` over `t` rows of width `c`.
pub fn encode_layer_norm(
    pass: &mut wgpu::ComputePass<'_>,
    op: &KernelOp,
    t: usize,
    c: usize,
    norm: Norm,
) {
    encode_norm_flags(pass, op, (t, c), norm, 0);
}

/// Record `y += norm(x)` over `t` rows of width `c` (flag [`NORM_ADD`]): a post-norm
/// and its residual add in one dispatch.
pub fn encode_norm_add(
    pass: &mut wgpu::ComputePass<'_>,
    op: &KernelOp,
    t: usize,
    c: usize,
    norm: Norm,
) {
    encode_norm_flags(pass, op, (t, c), norm, NORM_ADD);
}

fn encode_norm_flags(
    pass: &mut wgpu::ComputePass<'_>,
    op: &KernelOp,
    (t, c): (usize, usize),
    norm: Norm,
    more: u32,
) {
    let p = LayerNormParams {
        t: t as u32,
        c4: (c / 4) as u32,
        flags: norm.flags() | more,
        eps: norm.eps,
    };
    let groups = match op.name {
        // one workgroup per row, folded so that neither dimension exceeds 65,535
        "layer_norm_workgroup" => grid_groups(t),
        _ => grid_1d(t),
    };
    op.encode(pass, &p, (groups.0, groups.1, 1));
}

/// Upload, run `variant` as GPT-2's LayerNorm (with `bias` when given), read back
/// `y[T, C]`.
pub fn run_layer_norm(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    c: usize,
) -> Result<Vec<f32>> {
    run_norm(
        ctx,
        pipelines,
        variant,
        (x, None, c),
        weight,
        bias,
        Norm::layer(bias.is_some()),
    )
}

/// Upload, run `variant` as RMSNorm with `eps`, read back `y[T, C]`.
pub fn run_rms_norm(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
    x: &[f32],
    weight: &[f32],
    c: usize,
    eps: f32,
) -> Result<Vec<f32>> {
    run_norm(
        ctx,
        pipelines,
        variant,
        (x, None, c),
        weight,
        None,
        Norm::rms(eps),
    )
}

/// Upload, run `variant` as RMSNorm with `eps` added into `y` (flag [`NORM_ADD`]),
/// read back `y + rms_norm(x)`.
pub fn run_rms_norm_add(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
    (x, y): (&[f32], &[f32]),
    weight: &[f32],
    c: usize,
    eps: f32,
) -> Result<Vec<f32>> {
    let norm = Norm::rms(eps);
    run_norm(ctx, pipelines, variant, (x, Some(y), c), weight, None, norm)
}

fn run_norm(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
    (x, add_to, c): (&[f32], Option<&[f32]>, usize),
    weight: &[f32],
    bias: Option<&[f32]>,
    norm: Norm,
) -> Result<Vec<f32>> {
    let t = x.len() / c;
    let xb = buffers::upload(ctx, "x", x);
    let wb = buffers::upload(ctx, "weight", weight);
    let bb = buffers::upload(ctx, "bias", bias.unwrap_or(&[0.0; 4]));
    let yb = match add_to {
        Some(y) => buffers::upload(ctx, "y", y),
        None => buffers::storage(ctx, "y", t * c),
    };
    let op = layer_norm_op(ctx, pipelines, variant, &xb, &wb, &bb, &yb);
    submit_pass(ctx, "layer_norm", |pass| match add_to {
        Some(_) => encode_norm_add(pass, &op, t, c, norm),
        None => encode_layer_norm(pass, &op, t, c, norm),
    })?;
    buffers::read_floats(ctx, &yb, 0, t * c)
}

/// The norm prologue's flags (`MatvecParams.norm`, `MatvecBtParams.norm`: prelude
/// `norm_prologue`).
pub(super) fn norm_flags(norm: Option<Norm>) -> u32 {
    norm.map_or(0, |n| {
        1 | (if n.rms { 2 } else { 0 }) | (if n.bias { 4 } else { 0 })
    })
}
