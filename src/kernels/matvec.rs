//! One-token matrix-vector path (`shaders/matvec.wgsl`):
//! `out[N] (=|+=) act(x[K] · w[K, N] + bias)`, same epilogue flags as matmul.

use bytemuck::{Pod, Zeroable};

use super::{submit_pass, KernelOp};
use crate::error::Result;
use crate::gpu::{buffers, GpuContext, Pipelines, WORKGROUP};

/// Mirrors `MatvecParams` in the WGSL.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct MatvecParams {
    pub n4: u32,
    pub k4: u32,
    pub flags: u32,
    pub _pad: u32,
}

/// Op: bindings x, w, bias (any buffer when unused), out.
pub fn matvec_op(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    x: &wgpu::Buffer,
    w: &wgpu::Buffer,
    bias: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> KernelOp {
    matvec_variant_op(ctx, pipelines, "matvec", x, w, bias, out)
}

/// Op with an explicit variant: `matvec`, or `matvec_f16` for half-float weights.
pub fn matvec_variant_op(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
    x: &wgpu::Buffer,
    w: &wgpu::Buffer,
    bias: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> KernelOp {
    KernelOp::new::<MatvecParams>(ctx, pipelines, variant, &[x, w, bias, out])
}

/// Record `out[n] (=|+=) act(x[k] · w[k, n] + bias)`.
pub fn encode_matvec(
    queue: &wgpu::Queue,
    pass: &mut wgpu::ComputePass<'_>,
    pipelines: &Pipelines,
    op: &KernelOp,
    n: usize,
    k: usize,
    flags: u32,
) {
    let p = MatvecParams {
        n4: (n / 4) as u32,
        k4: (k / 4) as u32,
        flags,
        _pad: 0,
    };
    let gx = (n / 4).div_ceil(WORKGROUP as usize) as u32;
    op.encode(queue, pass, pipelines, &p, (gx, 1, 1));
}

/// Upload, run, read back `out[N]`.
#[allow(clippy::too_many_arguments)]
pub fn run_matvec(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    out_init: Option<&[f32]>,
    n: usize,
    k: usize,
    flags: u32,
) -> Result<Vec<f32>> {
    let xb = buffers::upload(ctx, "x", x);
    let wb = buffers::upload(ctx, "w", w);
    let bb = buffers::upload(ctx, "bias", bias.unwrap_or(&[0.0; 4]));
    let out = match out_init {
        Some(o) => buffers::upload(ctx, "out", o),
        None => buffers::storage(ctx, "out", n),
    };
    let op = matvec_variant_op(ctx, pipelines, variant, &xb, &wb, &bb, &out);
    submit_pass(ctx, "matvec", |pass| {
        encode_matvec(&ctx.queue, pass, pipelines, &op, n, k, flags)
    })?;
    buffers::read_floats(ctx, &out, 0, n)
}
