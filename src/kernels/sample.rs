//! The next token of each row of logits drawn on the device (`shaders/sample_rows.wgsl`):
//! top-k, temperature, top-p, min-p and the draw, as `reference::sample` and the host sampler
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
    pub _pad: [u32; 2],
    /// Columns of each logits chunk (0 past the last).
    pub n: [u32; 4],
}

/// Logits chunks (bindings) the kernel reads a row from at most.
pub const MAX_CHUNKS: usize = 4;

/// Mirrors `Spec` in the WGSL: one row's draw (`inv_t` 0: not drawn on the device).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct SampleSpec {
    pub inv_t: f32,
    pub top_k: u32,
    pub top_p: f32,
    pub u: f32,
    pub min_p: f32,
}

impl SampleSpec {
    /// A row the kernel leaves alone.
    pub const SKIP: SampleSpec = SampleSpec {
        inv_t: 0.0,
        top_k: 0,
        top_p: 1.0,
        u: 0.0,
        min_p: 0.0,
    };

    /// A greedy row: the id of its largest logit ([`Draw::GREEDY`]).
    pub const GREEDY: SampleSpec = SampleSpec {
        inv_t: -1.0,
        top_k: 1,
        top_p: 1.0,
        u: 0.0,
        min_p: 0.0,
    };
}

impl From<Draw> for SampleSpec {
    fn from(d: Draw) -> Self {
        SampleSpec {
            inv_t: d.inv_t,
            top_k: d.top_k.min(u32::MAX as usize) as u32,
            top_p: d.top_p,
            u: d.u,
            min_p: d.min_p,
        }
    }
}

/// Op: bindings the rows' specs `[rows]`, picked ids `[rows]` (u32), then the logits
/// as column chunks of the vocabulary (`[rows, n_c]` each, 1 to [`MAX_CHUNKS`]).
pub fn sample_op(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    logits: &[&wgpu::Buffer],
    specs: &wgpu::Buffer,
    picked: &wgpu::Buffer,
) -> KernelOp {
    assert!((1..=MAX_CHUNKS).contains(&logits.len()));
    let read = &ctx.stand_ins().read;
    let mut all = vec![specs, picked];
    all.extend((0..MAX_CHUNKS).map(|c| logits.get(c).copied().unwrap_or(read)));
    KernelOp::new::<SampleParams>(ctx, pipelines, "sample_rows", &all)
}

/// Record the draw of rows `0 .. rows` whose logits are chunks of `widths` columns
/// (one workgroup a row).
pub fn encode_sample(
    pass: &mut wgpu::ComputePass<'_>,
    op: &KernelOp,
    rows: usize,
    widths: impl IntoIterator<Item = usize>,
) {
    let (mut n, mut v) = ([0u32; MAX_CHUNKS], 0);
    for (c, w) in widths.into_iter().enumerate() {
        if let Some(nc) = n.get_mut(c) {
            *nc = w as u32;
        }
        v += w;
    }
    let p = SampleParams {
        rows: rows as u32,
        v: v as u32,
        _pad: [0; 2],
        n,
    };
    op.encode(pass, &p, (rows as u32, 1, 1));
}

/// Upload `logits [rows, v]` as column chunks of at most `chunk` columns (as an LM head
/// over a vocabulary larger than a binding writes them), draw each row by its `draws`
/// entry (`None`: not drawn), read back the ids (`u32::MAX` where not drawn).
pub fn run_sample(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    (logits, v, chunk): (&[f32], usize, usize),
    draws: &[Option<Draw>],
) -> Result<Vec<u32>> {
    let rows = draws.len();
    let specs: Vec<SampleSpec> = draws
        .iter()
        .map(|d| d.map_or(SampleSpec::SKIP, SampleSpec::from))
        .collect();
    let widths: Vec<usize> = (0..v)
        .step_by(chunk.max(1))
        .map(|c0| chunk.min(v - c0))
        .collect();
    let chunks: Vec<wgpu::Buffer> = widths
        .iter()
        .scan(0, |c0, &w| {
            let part: Vec<f32> = (0..rows)
                .flat_map(|r| logits[r * v + *c0..r * v + *c0 + w].iter().copied())
                .collect();
            *c0 += w;
            Some(buffers::upload(ctx, "logits", &part))
        })
        .collect();
    let sb = buffers::upload(ctx, "specs", bytemuck::cast_slice(&specs));
    let none = vec![f32::from_bits(u32::MAX); rows];
    let pb = buffers::upload(ctx, "picked", &none);
    let refs: Vec<&wgpu::Buffer> = chunks.iter().collect();
    let op = sample_op(ctx, pipelines, &refs, &sb, &pb);
    submit_pass(ctx, "sample_rows", |pass| {
        encode_sample(pass, &op, rows, widths.iter().copied())
    })?;
    let ids = buffers::read_floats(ctx, &pb, 0, rows)?;
    Ok(ids.into_iter().map(f32::to_bits).collect())
}
