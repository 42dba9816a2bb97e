//! Append new keys and values to the paged KV pool (`shaders/kv_store.wgsl`).

use bytemuck::{Pod, Zeroable};

use super::Pipelines;
use super::{submit_pass, KernelOp};
use crate::config::Heads;
use crate::error::Result;
use crate::gpu::{buffers, grid_1d, GpuContext};

/// Mirrors `KvStoreParams` in the WGSL.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct KvStoreParams {
    pub t: u32,
    pub kv4: u32,
    pub q4: u32,
    pub _pad1: u32,
}

/// Op: bindings qkv `[T, Q + 2 KV]`, k_pool, v_pool `[pool rows, KV]`, slots `[T]` u32
/// (Q, KV: the floats of the query and of the key heads in a row, [`Heads`]).
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
pub fn encode_kv_store(pass: &mut wgpu::ComputePass<'_>, op: &KernelOp, t: usize, heads: Heads) {
    let p = KvStoreParams {
        t: t as u32,
        kv4: (heads.kv_width() / 4) as u32,
        q4: (heads.q_width() / 4) as u32,
        _pad1: 0,
    };
    let (x, y) = grid_1d(t * heads.kv_width() / 4);
    op.encode(pass, &p, (x, y, 1));
}

/// Upload, run, read back `(k_pool, v_pool)` of `rows` rows (initially zero) after
/// storing the rows of `qkv` at pool rows `slots`.
pub fn run_kv_store(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    qkv: &[f32],
    heads: Heads,
    slots: &[u32],
    rows: usize,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let t = qkv.len() / heads.qkv_width();
    let c = heads.kv_width();
    let qkvb = buffers::upload(ctx, "qkv", qkv);
    let kb = buffers::storage(ctx, "k_pool", rows * c);
    let vb = buffers::storage(ctx, "v_pool", rows * c);
    let sb = buffers::upload(ctx, "slots", bytemuck::cast_slice(slots));
    let op = kv_store_op(ctx, pipelines, &qkvb, &kb, &vb, &sb);
    submit_pass(ctx, "kv_store", |pass| encode_kv_store(pass, &op, t, heads))?;
    let mut r = buffers::read_many(ctx, &[(&kb, 0, rows * c), (&vb, 0, rows * c)])?;
    let v = r.pop().unwrap_or_default();
    let k = r.pop().unwrap_or_default();
    Ok((k, v))
}
