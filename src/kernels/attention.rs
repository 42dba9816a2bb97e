//! Causal multi-head attention with per-row entropy (`shaders/attention.wgsl`).

use bytemuck::{Pod, Zeroable};

use super::{submit_pass, KernelOp};
use crate::error::Result;
use crate::gpu::{buffers, GpuContext, Pipelines, WORKGROUP};

/// Mirrors `AttentionParams` in the WGSL.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct AttentionParams {
    pub t: u32,
    pub c4: u32,
    pub hs4: u32,
    pub nh: u32,
    pub scale: f32,
    pub _pad: [u32; 3],
}

/// Op: bindings qkv `[T, 3C]`, out `[T, C]`, entropy `[NH, T]`.
pub fn attention_op(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    qkv: &wgpu::Buffer,
    out: &wgpu::Buffer,
    entropy: &wgpu::Buffer,
) -> KernelOp {
    KernelOp::new::<AttentionParams>(ctx, pipelines, "attention", &[qkv, out, entropy])
}

/// Record causal attention over `t` tokens, `nh` heads, width `c`.
pub fn encode_attention(
    queue: &wgpu::Queue,
    pass: &mut wgpu::ComputePass<'_>,
    pipelines: &Pipelines,
    op: &KernelOp,
    t: usize,
    c: usize,
    nh: usize,
) {
    let hs = c / nh;
    let p = AttentionParams {
        t: t as u32,
        c4: (c / 4) as u32,
        hs4: (hs / 4) as u32,
        nh: nh as u32,
        scale: 1.0 / (hs as f32).sqrt(),
        _pad: [0; 3],
    };
    let gx = t.div_ceil(WORKGROUP as usize) as u32;
    op.encode(queue, pass, pipelines, &p, (gx, nh as u32, 1));
}

/// Upload, run, read back `(out[T, C], entropy[NH, T])`.
pub fn run_attention(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    qkv: &[f32],
    c: usize,
    nh: usize,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let t = qkv.len() / (3 * c);
    let qkvb = buffers::upload(ctx, "qkv", qkv);
    let out = buffers::storage(ctx, "out", t * c);
    let ent = buffers::storage(ctx, "entropy", nh * t);
    let op = attention_op(ctx, pipelines, &qkvb, &out, &ent);
    submit_pass(ctx, "attention", |pass| {
        encode_attention(&ctx.queue, pass, pipelines, &op, t, c, nh)
    })?;
    let mut r = buffers::read_many(ctx, &[(&out, 0, t * c), (&ent, 0, nh * t)])?;
    let e = r.pop().unwrap_or_default();
    let o = r.pop().unwrap_or_default();
    Ok((o, e))
}
