//! Matmul with bias / GELU / residual-accumulate epilogue (`shaders/matmul.wgsl`):
//! `out[M, N] (=|+=) act(a[M, K] · b[K, N] + bias)`, weights stored `[in, out]`.

use bytemuck::{Pod, Zeroable};

use super::{submit_pass, KernelOp};
use crate::error::Result;
use crate::gpu::{buffers, GpuContext, Pipelines, WORKGROUP};

/// Rows computed by one invocation (the shader's `TM`), by kernel variant.
pub fn tile_rows(kernel: &str) -> usize {
    if kernel.ends_with("_subgroup") {
        16
    } else {
        8
    }
}

/// Epilogue flags, shared with `matvec`.
pub const BIAS: u32 = 1;
pub const GELU: u32 = 2;
pub const ACCUMULATE: u32 = 4;

/// Mirrors `MatmulParams` in the WGSL.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct MatmulParams {
    pub m: u32,
    pub n4: u32,
    pub k4: u32,
    pub flags: u32,
}

/// Op with the best variant for the device: bindings a, b, bias (any buffer when unused), out.
pub fn matmul_op(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    a: &wgpu::Buffer,
    b: &wgpu::Buffer,
    bias: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> KernelOp {
    matmul_variant_op(ctx, pipelines, pipelines.best("matmul"), a, b, bias, out)
}

/// Op with an explicit variant (`matmul` or `matmul_subgroup`), for the bench.
pub fn matmul_variant_op(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
    a: &wgpu::Buffer,
    b: &wgpu::Buffer,
    bias: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> KernelOp {
    KernelOp::new::<MatmulParams>(ctx, pipelines, variant, &[a, b, bias, out])
}

/// Record `out[m, n] (=|+=) act(a[m, k] · b[k, n] + bias)`.
#[allow(clippy::too_many_arguments)]
pub fn encode_matmul(
    queue: &wgpu::Queue,
    pass: &mut wgpu::ComputePass<'_>,
    pipelines: &Pipelines,
    op: &KernelOp,
    m: usize,
    n: usize,
    k: usize,
    flags: u32,
) {
    let p = MatmulParams {
        m: m as u32,
        n4: (n / 4) as u32,
        k4: (k / 4) as u32,
        flags,
    };
    let gx = (n / 4).div_ceil(WORKGROUP as usize) as u32;
    let gy = m.div_ceil(tile_rows(op.name)) as u32;
    op.encode(queue, pass, pipelines, &p, (gx, gy, 1));
}

/// Upload, run `variant`, read back. `out_init` is the prior content of `out` (for ACCUMULATE).
#[allow(clippy::too_many_arguments)]
pub fn run_matmul(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
    a: &[f32],
    b: &[f32],
    bias: Option<&[f32]>,
    out_init: Option<&[f32]>,
    m: usize,
    n: usize,
    k: usize,
    flags: u32,
) -> Result<Vec<f32>> {
    let ab = buffers::upload(ctx, "a", a);
    let bb = buffers::upload(ctx, "b", b);
    let biasb = buffers::upload(ctx, "bias", bias.unwrap_or(&[0.0; 4]));
    let out = match out_init {
        Some(o) => buffers::upload(ctx, "out", o),
        None => buffers::storage(ctx, "out", m * n),
    };
    let op = matmul_variant_op(ctx, pipelines, variant, &ab, &bb, &biasb, &out);
    submit_pass(ctx, "matmul", |pass| {
        encode_matmul(&ctx.queue, pass, pipelines, &op, m, n, k, flags)
    })?;
    buffers::read_floats(ctx, &out, 0, m * n)
}
