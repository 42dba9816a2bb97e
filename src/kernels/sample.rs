//! The next token of each row of logits drawn on the device (`shaders/sample_rows.wgsl`):
//! top-k, temperature, top-p and the draw, as `reference::sample` and the host sampler
//! draw it, so a sampled row reads back its token id instead of `V` logits.

use bytemuck::{Pod, Zeroable};

use super::Pipelines;
use super::{submit_pass, KernelOp};
use crate::error::Result;
use crate::gpu::{buffers, GpuContext};
use crate::reference::sample::Draw;

/// Mirrors `SampleParams` in the WGSL.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct SampleParams {
    pub rows: u32,
    pub v: u32,
    pub _pad1: u32,
    pub _pad2: u32,
}

/// Mirrors `Spec` in the WGSL: one row's draw (`inv_t` 0: not drawn on the device).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct SampleSpec {
    pub inv_t: f32,
    pub top_k: u32,
    pub top_p: f32,
    pub u: f32,
}

impl SampleSpec {
    /// A row the kernel leaves alone.
    pub const SKIP: SampleSpec = SampleSpec {
        inv_t: 0.0,
        top_k: 0,
        top_p: 1.0,
        u: 0.0,
    };
}

impl From<Draw> for SampleSpec {
    fn from(d: Draw) -> Self {
        SampleSpec {
            inv_t: d.inv_t,
            top_k: d.top_k.min(u32::MAX as usize) as u32,
            top_p: d.top_p,
            u: d.u,
        }
    }
}

/// Op: bindings logits `[rows, V]`, the rows' specs `[rows]`, picked ids `[rows]` (u32).
pub fn sample_op(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    logits: &wgpu::Buffer,
    specs: &wgpu::Buffer,
    picked: &wgpu::Buffer,
) -> KernelOp {
    KernelOp::new::<SampleParams>(ctx, pipelines, "sample_rows", &[logits, specs, picked])
}

/// Record the draw of rows `0 .. rows` of `v` logits each (one workgroup a row).
pub fn encode_sample(pass: &mut wgpu::ComputePass<'_>, op: &KernelOp, rows: usize, v: usize) {
    let p = SampleParams {
        rows: rows as u32,
        v: v as u32,
        _pad1: 0,
        _pad2: 0,
    };
    op.encode(pass, &p, (rows as u32, 1, 1));
}

/// Upload `logits [rows, v]`, draw each row by its `draws` entry (`None`: not drawn),
/// read back the ids (`u32::MAX` where not drawn).
pub fn run_sample(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    logits: &[f32],
    v: usize,
    draws: &[Option<Draw>],
) -> Result<Vec<u32>> {
    let rows = draws.len();
    let specs: Vec<SampleSpec> = draws
        .iter()
        .map(|d| d.map_or(SampleSpec::SKIP, SampleSpec::from))
        .collect();
    let lb = buffers::upload(ctx, "logits", logits);
    let sb = buffers::upload(ctx, "specs", bytemuck::cast_slice(&specs));
    let none = vec![f32::from_bits(u32::MAX); rows];
    let pb = buffers::upload(ctx, "picked", &none);
    let op = sample_op(ctx, pipelines, &lb, &sb, &pb);
    submit_pass(ctx, "sample_rows", |pass| encode_sample(pass, &op, rows, v))?;
    let ids = buffers::read_floats(ctx, &pb, 0, rows)?;
    Ok(ids.into_iter().map(f32::to_bits).collect())
}
