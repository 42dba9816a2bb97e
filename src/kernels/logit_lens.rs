//! The logit lens of a captured forward: `copy_rows` (the residual stream after each
//! layer into a buffer, and back, inside the pass) and `top_k_rows` (the k largest
//! logits of each row of a wte chunk and the row's log-sum-exp).

use bytemuck::{Pod, Zeroable};

use super::Pipelines;
use super::{submit_pass, KernelOp};
use crate::error::Result;
use crate::gpu::{buffers, grid_1d, GpuContext};

/// Mirrors `CopyParams` in the WGSL.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct CopyParams {
    pub n4: u32,
    pub src0: u32,
    pub dst0: u32,
    /// 0: a copy; else a gather of rows of `c4` vec4s.
    pub c4: u32,
}

/// Mirrors `TopKParams` in the WGSL.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct TopKParams {
    pub rows: u32,
    pub n: u32,
    pub k: u32,
    pub row_start: u32,
    pub out0: u32,
    pub span: u32,
    /// 0: skip the log-sum-exp (written as 0)
    pub lse: u32,
    pub _pad: u32,
}

/// Largest k `top_k_rows` takes (its per-lane lists).
pub const MAX_LENS_K: usize = 20;

/// Op: bindings src, dst (the gather list a stand-in).
pub fn copy_rows_op(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
) -> KernelOp {
    gather_rows_op(ctx, pipelines, src, dst, &ctx.stand_ins().read)
}

/// Record `dst[dst0 + i] = src[src0 + i]` for `n` floats (offsets and `n` multiples
/// of 4).
pub fn encode_copy_rows(
    pass: &mut wgpu::ComputePass<'_>,
    op: &KernelOp,
    n: usize,
    src0: usize,
    dst0: usize,
) {
    let p = CopyParams {
        n4: (n / 4) as u32,
        src0: (src0 / 4) as u32,
        dst0: (dst0 / 4) as u32,
        c4: 0,
    };
    let (x, y) = grid_1d(n / 4);
    op.encode(pass, &p, (x, y, 1));
}

/// Op: bindings src, dst, the list of rows (`u32`s).
pub fn gather_rows_op(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
    rows: &wgpu::Buffer,
) -> KernelOp {
    KernelOp::new::<CopyParams>(ctx, pipelines, "copy_rows", &[src, dst, rows])
}

/// Record `dst` row i = `src` row `rows[i]` for the first `n` rows of the list, rows
/// of `c` floats (a multiple of 4; an op of [`gather_rows_op`]).
pub fn encode_gather_rows(pass: &mut wgpu::ComputePass<'_>, op: &KernelOp, n: usize, c: usize) {
    let p = CopyParams {
        n4: (n * c / 4) as u32,
        src0: 0,
        dst0: 0,
        c4: (c / 4) as u32,
    };
    let (x, y) = grid_1d(n * c / 4);
    op.encode(pass, &p, (x, y, 1));
}

/// Op: bindings x (a chunk of logits `[R, N]`), out.
pub fn top_k_rows_op(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    x: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> KernelOp {
    KernelOp::new::<TopKParams>(ctx, pipelines, "top_k_rows", &[x, out])
}

/// Record the `k` largest values (ids from `row_start`) and, with `lse`, the
/// log-sum-exp of each of `rows` rows of `n` values, in windows of `span` columns (`n`
/// for one), to `out[out0 + (window · rows + r) (2k + 1) ..]`: [`top_k_windows`]
/// results in all.
#[allow(clippy::too_many_arguments)]
pub fn encode_top_k_rows(
    pass: &mut wgpu::ComputePass<'_>,
    op: &KernelOp,
    rows: usize,
    n: usize,
    k: usize,
    row_start: usize,
    out0: usize,
    span: usize,
    lse: bool,
) {
    let span = span.clamp(1, n.max(1));
    let p = TopKParams {
        rows: rows as u32,
        n: n as u32,
        k: k.clamp(1, MAX_LENS_K) as u32,
        row_start: row_start as u32,
        out0: out0 as u32,
        span: span as u32,
        lse: lse as u32,
        _pad: 0,
    };
    op.encode(pass, &p, (rows as u32, top_k_windows(n, span) as u32, 1));
}

/// Windows of `span` columns a row of `n` values is taken in.
pub fn top_k_windows(n: usize, span: usize) -> usize {
    n.div_ceil(span.clamp(1, n.max(1))).max(1)
}

/// One row's result: `(id, value)` of the k largest, best first (ids past the chunk
/// left out), and the log-sum-exp.
pub type TopK = (Vec<(u32, f32)>, f32);

/// Parse `rows` results of `top_k_rows` with this `k`.
pub fn parse_top_k(out: &[f32], rows: usize, k: usize) -> Vec<TopK> {
    (0..rows)
        .map(|r| {
            let o = &out[r * (2 * k + 1)..(r + 1) * (2 * k + 1)];
            let best = (0..k)
                .map(|i| (o[2 * i].to_bits(), o[2 * i + 1]))
                .filter(|&(id, _)| id != u32::MAX)
                .collect();
            (best, o[2 * k])
        })
        .collect()
}

/// CPU reference of `top_k_rows` for one row.
pub fn top_k_reference(row: &[f32], k: usize, row_start: usize) -> TopK {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
    let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
    (
        idx.into_iter()
            .take(k)
            .map(|i| ((row_start + i) as u32, row[i]))
            .collect(),
        (max + sum.ln()) as f32,
    )
}

/// Upload `x [R, N]`, run `top_k_rows` in windows of `span` columns (with the
/// log-sum-exp when `lse`), parse the results (`[window][row]`, flat).
#[allow(clippy::too_many_arguments)]
pub fn run_top_k_rows(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    x: &[f32],
    n: usize,
    k: usize,
    row_start: usize,
    span: usize,
    lse: bool,
) -> Result<Vec<TopK>> {
    let results = x.len() / n * top_k_windows(n, span);
    let xb = buffers::upload(ctx, "x", x);
    let out = buffers::storage(ctx, "top k", results * (2 * k + 1));
    let op = top_k_rows_op(ctx, pipelines, &xb, &out);
    submit_pass(ctx, "top_k_rows", |pass| {
        encode_top_k_rows(pass, &op, x.len() / n, n, k, row_start, 0, span, lse)
    })?;
    let got = buffers::read_floats(ctx, &out, 0, results * (2 * k + 1))?;
    Ok(parse_top_k(&got, results, k))
}

/// Upload `src`, copy `n` floats from `src0` into a zeroed buffer of `len` at `dst0`,
/// read it back.
pub fn run_copy_rows(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    src: &[f32],
    len: usize,
    n: usize,
    src0: usize,
    dst0: usize,
) -> Result<Vec<f32>> {
    let s = buffers::upload(ctx, "src", src);
    let d = buffers::storage(ctx, "dst", len);
    let op = copy_rows_op(ctx, pipelines, &s, &d);
    submit_pass(ctx, "copy_rows", |pass| {
        encode_copy_rows(pass, &op, n, src0, dst0)
    })?;
    buffers::read_floats(ctx, &d, 0, len)
}

/// Upload `src` (rows of `c`), gather its rows `rows` into a buffer, read it back.
pub fn run_gather_rows(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    src: &[f32],
    c: usize,
    rows: &[u32],
) -> Result<Vec<f32>> {
    let s = buffers::upload(ctx, "src", src);
    let d = buffers::storage(ctx, "dst", rows.len() * c);
    let list = buffers::upload(ctx, "rows", bytemuck::cast_slice(rows));
    let op = gather_rows_op(ctx, pipelines, &s, &d, &list);
    submit_pass(ctx, "gather_rows", |pass| {
        encode_gather_rows(pass, &op, rows.len(), c)
    })?;
    buffers::read_floats(ctx, &d, 0, rows.len() * c)
}
