//! Append new keys and values to the paged KV pool (`shaders/kv_store.wgsl`).

use bytemuck::{Pod, Zeroable};

use super::Pipelines;
use super::{submit_pass, KernelOp};
use crate::error::Result;
use crate::gpu::{buffers, grid_1d, GpuContext};

/// Mirrors `KvStoreParams` in the WGSL.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct KvStoreParams {
    pub t: u32,
    pub c4: u32,
    pub _pad: [u32; 2],
}

/// Op: bindings qkv `[T, 3C]`, k_pool, v_pool `[pool rows, C]`, slots `[T]` u32.
pub fn kv_store_op(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    qkv: &wgpu::Buffer,
    k_pool: &wgpu::Buffer,
    v_pool: &wgpu::Buffer,
    slots: &wgpu::Buffer,
) -> KernelOp {
    KernelOp::new::<KvStoreParams>(ctx, pipelines, "kv_store", &[qkv, k_pool, v_pool, slots])
}

/// Record the copy of the keys and values of `t` new rows to their pool rows.
pub fn encode_kv_store(pass: &mut wgpu::ComputePass<'_>, op: &KernelOp, t: usize, c: usize) {
    let p = KvStoreParams {
        t: t as u32,
        c4: (c / 4) as u32,
        _pad: [0; 2],
    };
    let (x, y) = grid_1d(t * c / 4);
    op.encode(pass, &p, (x, y, 1));
}

/// Upload, run, read back `(k_pool, v_pool)` of `rows` rows (initially zero) after
/// storing the rows of `qkv` at pool rows `slots`.
pub fn run_kv_store(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    qkv: &[f32],
    c: usize,
    slots: &[u32],
    rows: usize,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let t = qkv.len() / (3 * c);
    let qkvb = buffers::upload(ctx, "qkv", qkv);
    let kb = buffers::storage(ctx, "k_pool", rows * c);
    let vb = buffers::storage(ctx, "v_pool", rows * c);
    let sb = buffers::upload(ctx, "slots", bytemuck::cast_slice(slots));
    let op = kv_store_op(ctx, pipelines, &qkvb, &kb, &vb, &sb);
    submit_pass(ctx, "kv_store", |pass| encode_kv_store(pass, &op, t, c))?;
    let mut r = buffers::read_many(ctx, &[(&kb, 0, rows * c), (&vb, 0, rows * c)])?;
    let v = r.pop().unwrap_or_default();
    let k = r.pop().unwrap_or_default();
    Ok((k, v))
}
