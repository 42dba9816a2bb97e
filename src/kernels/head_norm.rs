//! Qwen3's RMSNorm of each query and key head (`q_norm`, `k_norm`), with the rotation
//! and the KV store a qkv projection's epilogue would have made (`shaders/head_norm.wgsl`,
//! prelude `epilogue`). A head's norm needs its whole sum of squares, which no lane of
//! a projection's epilogue has, so a model with these norms records its qkv projection
//! without [`ROTARY`] and [`KV_STORE`] and this dispatch after it: one more a block, on
//! every path (forward, prefill chunk, decode step, the deferred blocks).

use bytemuck::{Pod, Zeroable};

use super::rotary::Rope;
use super::{submit_pass, KernelOp, Pipelines, Spec};
use crate::config::Heads;
use crate::error::Result;
use crate::gpu::{buffers, grid_1d, GpuContext};

/// The epilogue's flag for the KV store (prelude `epilogue`).
pub use super::matmul::KV_STORE;

/// Mirrors `HeadNormParams` in the WGSL.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct HeadNormParams {
    pub t: u32,
    pub heads: u32,
    pub n4: u32,
    pub flags: u32,
    pub kv_q4: u32,
    pub kv4: u32,
    pub head4: u32,
    pub rot4: u32,
    pub eps: f32,
    /// 1: one norm over all the query heads, one over all the key heads (OLMo 2's).
    pub whole: u32,
    pub _pad1: u32,
    pub _pad2: u32,
}

/// Op: bindings qkv `[T, Q + 2 KV]` (normalised in place), g `[2, HS]` (the query
/// heads' weights, then the key heads', interleaved as the rotated heads are), the pool
/// `(k_pool, v_pool, slots)` when the keys and values are stored, and the rows'
/// positions with the rotary table. Stand-ins bind what is `None`.
pub fn head_norm_op(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    qkv: &wgpu::Buffer,
    g: &wgpu::Buffer,
    kv: Option<(&wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer)>,
    kv_half: bool,
    rope: Option<(&wgpu::Buffer, &wgpu::Buffer)>,
) -> KernelOp {
    let si = ctx.stand_ins();
    let (k, v, slots) = kv.unwrap_or((&si.written, &si.written, &si.read));
    let (positions, table) = rope.unwrap_or((&si.read, &si.read));
    KernelOp::with_spec::<HeadNormParams>(
        ctx,
        pipelines,
        "head_norm",
        Spec::projection(true, kv_half),
        &[qkv, g, k, v, slots, positions, table],
    )
}

/// How the query and key heads are normalised: each head over itself with weights
/// `[2, HS]` (Qwen3's, Gemma 3's), or all the query heads together and all the key
/// heads together with a weight a channel, `[Q + KV]` (OLMo 2's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadNormSpan {
    Head,
    Whole,
}

/// Record the norm of the query and key heads of `t` rows of qkv (`eps`: the norm's,
/// over `span`), then their rotation (`rope`) and the keys' and values' store to the
/// pool (`store`, an op bound with the pool).
#[allow(clippy::too_many_arguments)]
pub fn encode_head_norm(
    pass: &mut wgpu::ComputePass<'_>,
    op: &KernelOp,
    t: usize,
    heads: Heads,
    (eps, span): (f32, HeadNormSpan),
    store: bool,
    rope: Option<Rope>,
) {
    let (rotary, head4, rot4) = Rope::params(rope);
    debug_assert!(rope.is_none_or(|r| r.hs == heads.hs && head4 == (heads.hs / 4) as u32));
    let p = HeadNormParams {
        t: t as u32,
        heads: (heads.nh + 2 * heads.nkv) as u32,
        n4: (heads.qkv_width() / 4) as u32,
        flags: rotary | if store { KV_STORE } else { 0 },
        kv_q4: (heads.q_width() / 4) as u32,
        kv4: (heads.kv_width() / 4) as u32,
        head4: (heads.hs / 4) as u32,
        rot4,
        eps,
        whole: u32::from(span == HeadNormSpan::Whole),
        _pad1: 0,
        _pad2: 0,
    };
    let spans = match span {
        HeadNormSpan::Head => heads.nh + 2 * heads.nkv,
        HeadNormSpan::Whole => 2 + heads.nkv,
    };
    let (x, y) = grid_1d(t * spans);
    op.encode(pass, &p, (x, y, 1));
}

/// What [`run_head_norm`] reads back: qkv after the norm, and the pool's keys and
/// values (`[rows, KV]` each).
pub struct HeadNormRun {
    pub qkv: Vec<f32>,
    pub k_pool: Vec<f32>,
    pub v_pool: Vec<f32>,
}

/// Upload, run, read back: `qkv` (`[T, Q + 2 KV]`, the device's interleaved heads) with
/// its query and key heads normalised by `g`, rotated at `positions` by the device
/// table `rope_table` (`rotary::device_table`; empty: no rotation), and its keys and
/// values stored at pool rows `slots` of an f32 pool of `rows` rows.
#[allow(clippy::too_many_arguments)]
pub fn run_head_norm(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    qkv: &[f32],
    g: &[f32],
    heads: Heads,
    eps: (f32, HeadNormSpan),
    (positions, rope_table): (&[u32], &[f32]),
    (slots, rows): (&[u32], usize),
) -> Result<HeadNormRun> {
    let t = qkv.len() / heads.qkv_width();
    let c = heads.kv_width();
    let qkv_b = buffers::upload(ctx, "qkv", qkv);
    let g_b = buffers::upload(ctx, "head norm weights", g);
    let k_b = buffers::storage(ctx, "k_pool", rows * c);
    let v_b = buffers::storage(ctx, "v_pool", rows * c);
    let slots_b = buffers::upload(ctx, "slots", bytemuck::cast_slice(slots));
    let pos_b = buffers::upload(ctx, "positions", bytemuck::cast_slice(positions));
    let table_b = buffers::upload(ctx, "rope", rope_table);
    let rotates = !rope_table.is_empty();
    let op = head_norm_op(
        ctx,
        pipelines,
        &qkv_b,
        &g_b,
        Some((&k_b, &v_b, &slots_b)),
        false,
        Some((&pos_b, &table_b)),
    );
    let rope = rotates.then(|| Rope::of(heads));
    submit_pass(ctx, "head_norm", |pass| {
        encode_head_norm(pass, &op, t, heads, eps, !slots.is_empty(), rope)
    })?;
    let mut r = buffers::read_many(
        ctx,
        &[
            (&qkv_b, 0, qkv.len()),
            (&k_b, 0, rows * c),
            (&v_b, 0, rows * c),
        ],
    )?;
    let v_pool = r.pop().unwrap_or_default();
    let k_pool = r.pop().unwrap_or_default();
    let qkv = r.pop().unwrap_or_default();
    Ok(HeadNormRun {
        qkv,
        k_pool,
        v_pool,
    })
}
