//! The log-probability and rank of each position's actual next token, on the device:
//! `token_target` gathers each row's target logit from the wte chunk that holds it,
//! `token_rank` counts the ids ranked before it and the chunk's log-sum-exp. A
//! captured forward runs them on its final logits (`token_logprobs`) and, with the
//! logit lens, on each layer's (`logit_lens_ranks`).

use bytemuck::{Pod, Zeroable};

use super::Pipelines;
use super::{submit_pass, KernelOp};
use crate::error::Result;
use crate::gpu::{buffers, grid_1d, GpuContext};

/// Mirrors `TargetParams` in the WGSL.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct TargetParams {
    pub rows: u32,
    pub n: u32,
    pub row_start: u32,
    pub tv0: u32,
}

/// Mirrors `RankParams` in the WGSL.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct RankParams {
    pub rows: u32,
    pub n: u32,
    pub row_start: u32,
    pub tv0: u32,
    pub out0: u32,
    pub _pad: [u32; 3],
}

/// A row with no target (the last position).
pub const NO_TARGET: u32 = u32::MAX;

/// Op: bindings targets, x (a chunk of logits `[R, N]`), tv.
pub fn token_target_op(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    targets: &wgpu::Buffer,
    x: &wgpu::Buffer,
    tv: &wgpu::Buffer,
) -> KernelOp {
    KernelOp::new::<TargetParams>(ctx, pipelines, "token_target", &[targets, x, tv])
}

/// Op: bindings targets, x, tv, out.
pub fn token_rank_op(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    targets: &wgpu::Buffer,
    x: &wgpu::Buffer,
    tv: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> KernelOp {
    KernelOp::new::<RankParams>(ctx, pipelines, "token_rank", &[targets, x, tv, out])
}

/// Record `tv[tv0 + r]` = the logit of row r's target, for the `rows` rows of `n`
/// logits (ids from `row_start`) whose target is in this chunk.
pub fn encode_token_target(
    pass: &mut wgpu::ComputePass<'_>,
    op: &KernelOp,
    rows: usize,
    n: usize,
    row_start: usize,
    tv0: usize,
) {
    let p = TargetParams {
        rows: rows as u32,
        n: n as u32,
        row_start: row_start as u32,
        tv0: tv0 as u32,
    };
    let (x, y) = grid_1d(rows);
    op.encode(pass, &p, (x, y, 1));
}

/// Record, per row, the count of this chunk's ids ranked before the target and the
/// chunk's log-sum-exp, to `out[out0 + 2 r ..]`.
pub fn encode_token_rank(
    pass: &mut wgpu::ComputePass<'_>,
    op: &KernelOp,
    rows: usize,
    n: usize,
    row_start: usize,
    tv0: usize,
    out0: usize,
) {
    let p = RankParams {
        rows: rows as u32,
        n: n as u32,
        row_start: row_start as u32,
        tv0: tv0 as u32,
        out0: out0 as u32,
        _pad: [0; 3],
    };
    op.encode(pass, &p, (rows as u32, 1, 1));
}

/// `(rank, logprob)` of each row from the chunks' results (`out` as
/// `[chunk][row][count, lse]`) and the target logits `tv`.
pub fn merge_ranks(out: &[f32], tv: &[f32], rows: usize, chunks: usize) -> Vec<(usize, f32)> {
    (0..rows)
        .map(|r| {
            let part = |i: usize| &out[(i * rows + r) * 2..(i * rows + r) * 2 + 2];
            let rank: f64 = (0..chunks).map(|i| part(i)[0] as f64).sum();
            let top = (0..chunks)
                .map(|i| part(i)[1] as f64)
                .fold(f64::NEG_INFINITY, f64::max);
            let lse = top
                + (0..chunks)
                    .map(|i| (part(i)[1] as f64 - top).exp())
                    .sum::<f64>()
                    .ln();
            (rank as usize, (tv[r] as f64 - lse) as f32)
        })
        .collect()
}

/// Upload logits `x [R, V]` split into chunks of `chunk` columns (as wte chunks split
/// the vocabulary), run both kernels on each, and merge: `(rank, logprob)` per row of
/// its `targets` entry.
pub fn run_token_rank(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    x: &[f32],
    v: usize,
    chunk: usize,
    targets: &[u32],
) -> Result<Vec<(usize, f32)>> {
    let rows = targets.len();
    let starts: Vec<usize> = (0..v).step_by(chunk.max(1)).collect();
    let tb = buffers::upload(ctx, "targets", bytemuck::cast_slice(targets));
    let tv = buffers::storage(ctx, "target logits", rows);
    let out = buffers::storage(ctx, "ranks", starts.len() * rows * 2);
    let parts: Vec<(usize, usize, wgpu::Buffer)> = starts
        .iter()
        .map(|&s| {
            let n = chunk.min(v - s);
            let cols: Vec<f32> = (0..rows)
                .flat_map(|r| x[r * v + s..r * v + s + n].iter().copied())
                .collect();
            (s, n, buffers::upload(ctx, "logits chunk", &cols))
        })
        .collect();
    let ops: Vec<(KernelOp, KernelOp)> = parts
        .iter()
        .map(|(_, _, b)| {
            (
                token_target_op(ctx, pipelines, &tb, b, &tv),
                token_rank_op(ctx, pipelines, &tb, b, &tv, &out),
            )
        })
        .collect();
    submit_pass(ctx, "token_rank", |pass| {
        for ((s, n, _), (target, _)) in parts.iter().zip(&ops) {
            encode_token_target(pass, target, rows, *n, *s, 0);
        }
        for (i, ((s, n, _), (_, rank))) in parts.iter().zip(&ops).enumerate() {
            encode_token_rank(pass, rank, rows, *n, *s, 0, i * rows * 2);
        }
    })?;
    let got = buffers::read_floats(ctx, &out, 0, starts.len() * rows * 2)?;
    let tvs = buffers::read_floats(ctx, &tv, 0, rows)?;
    Ok(merge_ranks(&got, &tvs, rows, starts.len()))
}
