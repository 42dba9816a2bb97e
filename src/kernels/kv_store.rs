//! Append new keys and values to a generation's KV cache (`shaders/kv_store.wgsl`).

use bytemuck::{Pod, Zeroable};

use super::{submit_pass, KernelOp};
use crate::error::Result;
use crate::gpu::{buffers, grid_1d, GpuContext, Pipelines};

/// Mirrors `KvStoreParams` in the WGSL.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct KvStoreParams {
    pub t: u32,
    pub c4: u32,
    pub pos: u32,
    pub _pad: u32,
}

/// Op: bindings qkv `[T, 3C]`, k_cache, v_cache `[context, C]`.
pub fn kv_store_op(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    qkv: &wgpu::Buffer,
    k_cache: &wgpu::Buffer,
    v_cache: &wgpu::Buffer,
) -> KernelOp {
    KernelOp::new::<KvStoreParams>(ctx, pipelines, "kv_store", &[qkv, k_cache, v_cache])
}

/// Record the copy of `t` new rows of K and V into the caches at row `pos`.
pub fn encode_kv_store(
    queue: &wgpu::Queue,
    pass: &mut wgpu::ComputePass<'_>,
    pipelines: &Pipelines,
    op: &KernelOp,
    t: usize,
    c: usize,
    pos: usize,
) {
    let p = KvStoreParams {
        t: t as u32,
        c4: (c / 4) as u32,
        pos: pos as u32,
        _pad: 0,
    };
    let (x, y) = grid_1d(t * c / 4);
    op.encode(queue, pass, pipelines, &p, (x, y, 1));
}

/// Upload, run, read back `(k_cache, v_cache)` of `rows` rows (initially zero).
pub fn run_kv_store(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    qkv: &[f32],
    c: usize,
    pos: usize,
    rows: usize,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let t = qkv.len() / (3 * c);
    let qkvb = buffers::upload(ctx, "qkv", qkv);
    let kb = buffers::storage(ctx, "k_cache", rows * c);
    let vb = buffers::storage(ctx, "v_cache", rows * c);
    let op = kv_store_op(ctx, pipelines, &qkvb, &kb, &vb);
    submit_pass(ctx, "kv_store", |pass| {
        encode_kv_store(&ctx.queue, pass, pipelines, &op, t, c, pos)
    })?;
    let mut r = buffers::read_many(ctx, &[(&kb, 0, rows * c), (&vb, 0, rows * c)])?;
    let v = r.pop().unwrap_or_default();
    let k = r.pop().unwrap_or_default();
    Ok((k, v))
}
