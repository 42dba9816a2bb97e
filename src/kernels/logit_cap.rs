//! Gemma 2's soft cap of the logits (`shaders/logit_cap.wgsl`): each logit `z` of a
//! chunk becomes `cap · tanh(z / cap)` in place, after the LM head.

use bytemuck::{Pod, Zeroable};

use super::{submit_pass, KernelOp, Pipelines};
use crate::error::Result;
use crate::gpu::{buffers, grid_1d, GpuContext};

/// Mirrors `CapParams` in the WGSL.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct CapParams {
    pub n: u32,
    pub cap: f32,
    pub _pad: [u32; 2],
}

/// Op: binding the logits chunk it caps in place.
pub fn logit_cap_op(ctx: &GpuContext, pipelines: &Pipelines, z: &wgpu::Buffer) -> KernelOp {
    KernelOp::new::<CapParams>(ctx, pipelines, "logit_cap", &[z])
}

/// Record the cap of the first `n` floats of the op's chunk.
pub fn encode_logit_cap(pass: &mut wgpu::ComputePass<'_>, op: &KernelOp, n: usize, cap: f32) {
    let p = CapParams {
        n: n as u32,
        cap,
        _pad: [0; 2],
    };
    let (x, y) = grid_1d(n);
    op.encode(pass, &p, (x, y, 1));
}

/// Upload `z`, cap its first `n` values at `cap`, read all of it back.
pub fn run_logit_cap(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    z: &[f32],
    n: usize,
    cap: f32,
) -> Result<Vec<f32>> {
    let buf = buffers::upload(ctx, "logits", z);
    let op = logit_cap_op(ctx, pipelines, &buf);
    submit_pass(ctx, "logit_cap", |pass| encode_logit_cap(pass, &op, n, cap))?;
    buffers::read_floats(ctx, &buf, 0, z.len())
}
