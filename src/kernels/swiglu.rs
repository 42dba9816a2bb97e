//! SwiGLU (`shaders/swiglu.wgsl`): `silu(gate) · up` over rows of a fused gate/up
//! projection `[T, 2H]` (gate first), as the Llama family's MLP.

use bytemuck::{Pod, Zeroable};

use super::Pipelines;
use super::{submit_pass, KernelOp};
use crate::error::Result;
use crate::gpu::{buffers, grid_1d, GpuContext};

/// Mirrors `SwigluParams` in the WGSL.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct SwigluParams {
    pub t: u32,
    pub h4: u32,
    pub _pad: [u32; 2],
}

/// Op: bindings gate_up `[T, 2H]`, out `[T, H]`.
pub fn swiglu_op(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    gate_up: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> KernelOp {
    KernelOp::new::<SwigluParams>(ctx, pipelines, "swiglu", &[gate_up, out])
}

/// Record `out[t, j] = silu(gate_up[t, j]) · gate_up[t, H + j]` for `t` rows, `h` a
/// multiple of 4.
pub fn encode_swiglu(pass: &mut wgpu::ComputePass<'_>, op: &KernelOp, t: usize, h: usize) {
    let p = SwigluParams {
        t: t as u32,
        h4: (h / 4) as u32,
        _pad: [0; 2],
    };
    let (gx, gy) = grid_1d(t * h / 4);
    op.encode(pass, &p, (gx, gy, 1));
}

/// Upload `gate_up [T, 2H]`, run, read back `out [T, H]`.
pub fn run_swiglu(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    gate_up: &[f32],
    h: usize,
) -> Result<Vec<f32>> {
    let t = gate_up.len() / (2 * h);
    let gb = buffers::upload(ctx, "gate_up", gate_up);
    let out = buffers::storage(ctx, "out", t * h);
    let op = swiglu_op(ctx, pipelines, &gb, &out);
    submit_pass(ctx, "swiglu", |pass| encode_swiglu(pass, &op, t, h))?;
    buffers::read_floats(ctx, &out, 0, t * h)
}
