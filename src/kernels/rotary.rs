//! Rotary position embedding (`shaders/rotary.wgsl`), half-split as Hugging Face's
//! `rotate_half`: in place over the query and key heads of each row of `qkv`, at each
//! row's own position, with cos / sin tables the model computes once
//! (`model::rope::rope_table`) and uploads as one table ([`device_table`]). The
//! split-K matrix-vector kernels rotate in their epilogue the same way
//! (`matvec::Fusion::rope`).

use bytemuck::{Pod, Zeroable};

use super::Pipelines;
use super::{submit_pass, KernelOp};
use crate::error::Result;
use crate::gpu::{buffers, grid_1d, GpuContext};

/// Mirrors `RotaryParams` in the WGSL.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct RotaryParams {
    pub t: u32,
    pub row4: u32,
    pub heads: u32,
    pub half4: u32,
    pub store: u32,
    pub q_heads: u32,
    pub kv4: u32,
    pub _pad1: u32,
}

/// The cos and sin tables `[positions, HS/2]` each as the kernels read them:
/// `[positions, 2, HS/2]`, a position's cos row then its sin row (one binding, read
/// together).
pub fn device_table(cos: &[f32], sin: &[f32], hs: usize) -> Vec<f32> {
    let half = hs / 2;
    cos.chunks(half)
        .zip(sin.chunks(half))
        .flat_map(|(c, s)| c.iter().chain(s))
        .copied()
        .collect()
}

/// Op: bindings qkv `[T, row]` (rotated in place), the table [`device_table`], the
/// rows' positions `[T]` (u32), and where a step stores the keys and values
/// (`(k_pool, v_pool, slots)`; `None`: a forward's op, never storing).
pub fn rotary_op(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    qkv: &wgpu::Buffer,
    table: &wgpu::Buffer,
    positions: &wgpu::Buffer,
    pool: Option<(&wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer)>,
) -> KernelOp {
    let si = ctx.stand_ins();
    let (k, v, slots) = pool.unwrap_or((&si.written, &si.written, &si.read));
    let all = [qkv, table, positions, k, v, slots];
    KernelOp::new::<RotaryParams>(ctx, pipelines, "rotary", &all)
}

/// Record the rotation of the first `heads` heads (of `hs` dimensions, a multiple of 8)
/// of `t` rows of `row` floats; with `store = Some((q_heads, half))` (an op bound with
/// the pool), the rotated key heads (those after the `q_heads` query heads) and the
/// value heads after them go to each row's pool row as well (as half floats with
/// `half`).
pub fn encode_rotary(
    pass: &mut wgpu::ComputePass<'_>,
    op: &KernelOp,
    t: usize,
    row: usize,
    heads: usize,
    hs: usize,
    store: Option<(usize, bool)>,
) {
    let q_heads = store.map_or(heads, |s| s.0);
    let p = RotaryParams {
        t: t as u32,
        row4: (row / 4) as u32,
        heads: heads as u32,
        half4: (hs / 8) as u32,
        store: match store {
            None => 0,
            Some((_, false)) => 1,
            Some((_, true)) => 2,
        },
        q_heads: q_heads as u32,
        kv4: ((heads - q_heads.min(heads)) * hs / 4) as u32,
        _pad1: 0,
    };
    let (gx, gy) = grid_1d(t * heads * hs / 8);
    op.encode(pass, &p, (gx, gy, 1));
}

/// Upload `x [T, row]`, rotate its first `heads` heads of `hs` dimensions at
/// `positions` with the tables `(cos, sin)` (`[positions, hs/2]` each), read back.
pub fn run_rotary(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    (x, row): (&[f32], usize),
    (heads, hs): (usize, usize),
    (cos, sin): (&[f32], &[f32]),
    positions: &[u32],
) -> Result<Vec<f32>> {
    let t = positions.len();
    let xb = buffers::upload(ctx, "qkv", x);
    let table = buffers::upload(ctx, "rope", &device_table(cos, sin, hs));
    let pb = buffers::upload(ctx, "positions", bytemuck::cast_slice(positions));
    let op = rotary_op(ctx, pipelines, &xb, &table, &pb, None);
    submit_pass(ctx, "rotary", |pass| {
        encode_rotary(pass, &op, t, row, heads, hs, None)
    })?;
    buffers::read_floats(ctx, &xb, 0, t * row)
}
