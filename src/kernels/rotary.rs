//! Rotary position embedding (`shaders/rotary.wgsl`), half-split as Hugging Face's
//! `rotate_half`: in place over the query and key heads of each row of `qkv`, at each
//! row's own position, with cos / sin tables the model computes once
//! (`model::rope::rope_table`).

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
}

/// Op: bindings qkv `[T, row]` (rotated in place), the cos and sin tables
/// `[positions, HS/2]`, the rows' positions `[T]` (u32).
pub fn rotary_op(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    qkv: &wgpu::Buffer,
    (cos, sin): (&wgpu::Buffer, &wgpu::Buffer),
    positions: &wgpu::Buffer,
) -> KernelOp {
    KernelOp::new::<RotaryParams>(ctx, pipelines, "rotary", &[qkv, cos, sin, positions])
}

/// Record the rotation of the first `heads` heads (of `hs` dimensions, a multiple of 8)
/// of `t` rows of `row` floats.
pub fn encode_rotary(
    pass: &mut wgpu::ComputePass<'_>,
    op: &KernelOp,
    t: usize,
    row: usize,
    heads: usize,
    hs: usize,
) {
    let p = RotaryParams {
        t: t as u32,
        row4: (row / 4) as u32,
        heads: heads as u32,
        half4: (hs / 8) as u32,
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
    let cb = buffers::upload(ctx, "rope cos", cos);
    let sb = buffers::upload(ctx, "rope sin", sin);
    let pb = buffers::upload(ctx, "positions", bytemuck::cast_slice(positions));
    let op = rotary_op(ctx, pipelines, &xb, (&cb, &sb), &pb);
    submit_pass(ctx, "rotary", |pass| {
        encode_rotary(pass, &op, t, row, heads, hs)
    })?;
    buffers::read_floats(ctx, &xb, 0, t * row)
}
