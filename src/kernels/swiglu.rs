//! SwiGLU (`shaders/swiglu.wgsl`): `silu(gate) · up` over rows of a fused gate/up
//! projection `[T, 2H]` (gate first), as the Llama family's MLP, or `gelu(gate) · up`
//! (flag [`GELU_GATE`], Gemma's); optionally each row scaled by the sigmoid of a
//! per-row gate logit (Qwen2-MoE's shared expert).

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
    /// [`SCALED`], [`GELU_GATE`].
    pub flags: u32,
    pub _pad: u32,
}

/// Flag: scale each row by the sigmoid of its gate logit (`gate[t * 4]`).
pub const SCALED: u32 = 1;

/// Flag: gate with GELU (tanh approximation) instead of SiLU (Gemma's MLP).
pub const GELU_GATE: u32 = 2;

/// Op: bindings gate_up `[T, 2H]`, out `[T, H]`, and the per-row gate logits `[T, 4]`
/// a scaled op reads (`None`: any buffer, the op is never scaled).
pub fn swiglu_op(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    gate_up: &wgpu::Buffer,
    out: &wgpu::Buffer,
    gate: Option<&wgpu::Buffer>,
) -> KernelOp {
    KernelOp::new::<SwigluParams>(
        ctx,
        pipelines,
        "swiglu",
        &[gate_up, out, gate.unwrap_or(gate_up)],
    )
}

/// Record `out[t, j] = silu(gate_up[t, j]) · gate_up[t, H + j]` for `t` rows, `h` a
/// multiple of 4 (with [`GELU_GATE`] in `flags`, `gelu` for `silu`); with
/// [`SCALED`], times `sigmoid(gate[t * 4])`.
pub fn encode_swiglu(
    pass: &mut wgpu::ComputePass<'_>,
    op: &KernelOp,
    t: usize,
    h: usize,
    flags: u32,
) {
    let p = SwigluParams {
        t: t as u32,
        h4: (h / 4) as u32,
        flags,
        _pad: 0,
    };
    let (gx, gy) = grid_1d(t * h / 4);
    op.encode(pass, &p, (gx, gy, 1));
}

/// Upload `gate_up [T, 2H]` (and the gate logits `[T, 4]` of a scaled run), run with
/// `flags` ([`GELU_GATE`]; [`SCALED`] added with a gate), read back `out [T, H]`.
pub fn run_swiglu(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    gate_up: &[f32],
    h: usize,
    gate: Option<&[f32]>,
    flags: u32,
) -> Result<Vec<f32>> {
    let t = gate_up.len() / (2 * h);
    let gb = buffers::upload(ctx, "gate_up", gate_up);
    let out = buffers::storage(ctx, "out", t * h);
    let sb = gate.map(|g| buffers::upload(ctx, "gate", g));
    let op = swiglu_op(ctx, pipelines, &gb, &out, sb.as_ref());
    submit_pass(ctx, "swiglu", |pass| {
        let scaled = if gate.is_some() { SCALED } else { 0 };
        encode_swiglu(pass, &op, t, h, flags | scaled)
    })?;
    buffers::read_floats(ctx, &out, 0, t * h)
}
