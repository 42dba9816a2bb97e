//! Decode-step matrix-vector path (`shaders/matvec.wgsl`): for the R rows of a batch
//! (one per generation), `out[R, N] (=|+=) act(x[R, K] · w[K, N] + bias)`, same
//! epilogue flags as matmul. A row's numbers do not depend on R.

use bytemuck::{Pod, Zeroable};

use super::layer_norm::Norm;
use super::matmul::{panel_width, store_weights};
use super::partials::HostResidual;
use super::Pipelines;
use super::{submit_pass, HostProduct, LinearBuffers, RowsOp};
use crate::error::Result;
use crate::gpu::{buffers, GpuContext};

/// Mirrors `MatvecParams` in the WGSL.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct MatvecParams {
    pub n4: u32,
    pub k4: u32,
    pub flags: u32,
    pub p4: u32,
    pub rows: u32,
    pub row0: u32,
    /// The batch's end: a `ROWS` group that passes it computes those rows and does
    /// not store them.
    pub row_end: u32,
    /// [`KV_STORE`]: vec4s of the queries before the keys in a row of `out`.
    pub kv_q4: u32,
    /// [`KV_STORE`]: vec4s of a pool row.
    pub kv4: u32,
    /// The norm prologue's flags ([`fuses_norm`] kernels; 0: x as it is).
    pub norm: u32,
    pub eps: f32,
    /// The staged kernels: partial rows per row of x (prelude `residual_parts`).
    pub parts: u32,
    /// [`ROTARY`]: vec4s in a head.
    pub head4: u32,
    /// [`ROTARY`]: vec4s of a row rotated (the query and key heads).
    pub rot4: u32,
    pub _pad: [u32; 2],
}

/// Epilogue flag: the output is a qkv projection whose keys and values also go to the
/// paged KV pool (`k_pool`, `v_pool` at each row's `slots` entry), in place of
/// `kv_store` (prelude `epilogue`, shared with the matmul kernels).
pub use super::matmul::KV_STORE;

/// Epilogue flag: rotary positions on a qkv projection's query and key heads
/// ([`super::rotary`], prelude `epilogue`).
pub use super::rotary::ROTARY;

pub use super::fusion::{Fusion, FusionBuffers, Rope};

/// Whether `variant` has the norm prologue (the hardware kernels: one workgroup a row
/// and output block, which takes the row's statistics across its lanes).
pub fn fuses_norm(variant: &str) -> bool {
    matches!(variant, "matvec_splitk" | "matvec_f16_splitk") || stages(variant)
}

/// Whether `variant` reads the residual stream with deferred terms, staged in
/// workgroup memory (`matvec_staged`, `matvec_f16_staged`: the qkv projection of the
/// hardware decode blocks in three dispatches, [`super::partials`]).
pub fn stages(variant: &str) -> bool {
    matches!(variant, "matvec_staged" | "matvec_f16_staged") || embeds(variant)
}

/// Whether `variant` is a staged kernel whose stream's base is the embedding
/// (`matvec_embed_staged`, `matvec_f16_embed_staged`: the first block of a decode step
/// with the embedding folded in, prelude `residual_embed`).
pub fn embeds(variant: &str) -> bool {
    matches!(variant, "matvec_embed_staged" | "matvec_f16_embed_staged")
}

/// Output vec4s one workgroup of the split-K kernels computes (their `COLS4`).
pub const SPLITK_COLS4: usize = 4;

/// The same for the staged kernels (prelude `stage_x`): every workgroup sums the row's
/// partial rows, so a workgroup takes 4 times the columns.
pub const STAGED_COLS4: usize = 16;

/// Workgroups of `variant` for `n` outputs when compiled with `wg` lanes.
fn workgroups(variant: &str, n: usize, wg: usize) -> usize {
    match variant {
        "matvec_splitk" | "matvec_f16_splitk" => (n / 4).div_ceil(SPLITK_COLS4),
        v if stages(v) => (n / 4).div_ceil(STAGED_COLS4),
        "matvec_f16_subgroup" => (n / 8).div_ceil(wg),
        _ => (n / 4).div_ceil(wg),
    }
}

/// The matrix-vector kernel for `n` outputs: the split-K kernels on hardware GPUs,
/// else the software ones (`matvec`, or for half floats the fastest of
/// [`best_f16_variant`]).
pub fn variant_for(pipelines: &Pipelines, hardware: bool, half: bool, n: usize) -> &'static str {
    match (hardware, half) {
        (true, false) => "matvec_splitk",
        (true, true) => "matvec_f16_splitk",
        (false, false) => "matvec",
        (false, true) => best_f16_variant(pipelines, n),
    }
}

/// The fastest half-float-weight variant for `n` outputs on this device:
/// `matvec_f16_subgroup` needs subgroups and `n % 8 == 0`.
pub fn best_f16_variant(pipelines: &Pipelines, n: usize) -> &'static str {
    if n.is_multiple_of(8) && pipelines.has("matvec_f16_subgroup") {
        "matvec_f16_subgroup"
    } else {
        "matvec_f16"
    }
}

/// Op for `variant`: `matvec` / `matvec_splitk`, or `matvec_f16` /
/// `matvec_f16_subgroup` / `matvec_f16_splitk` for half-float weights.
pub fn matvec_variant_op(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
    io: &LinearBuffers,
) -> RowsOp {
    matvec_fused_op(ctx, pipelines, variant, io, FusionBuffers::default())
}

/// [`matvec_variant_op`] with the buffers of its fusions (`dummy` where there are none:
/// the kernels bind the pool and, with the norm prologue, the norm's weights always).
pub fn matvec_fused_op(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
    io: &LinearBuffers,
    fused: FusionBuffers,
) -> RowsOp {
    let si = ctx.stand_ins();
    let (k, v, slots) = fused.kv.unwrap_or((&si.written, &si.written, &si.read));
    let mut all = vec![io.x, io.w, io.bias, io.out, k, v, slots];
    let positions = fused.positions.unwrap_or(&si.read);
    all.extend([positions, fused.rope.unwrap_or(&si.read)]);
    if fuses_norm(variant) {
        let (g, b) = fused.norm.unwrap_or((&si.read, &si.read));
        all.extend([g, b]);
    }
    if stages(variant) {
        let (parts, bias, x_out) = fused.deferred.unwrap_or((&si.read, &si.read, &si.written));
        all.extend([parts, bias, x_out]);
    }
    if embeds(variant) {
        let (ids, wte) = fused.embed.unwrap_or((&si.read, &si.read));
        all.extend([ids, wte]);
    }
    RowsOp::new::<MatvecParams>(ctx, pipelines, variant, fused.spec(), &all)
}

/// Record `out[r, n] (=|+=) act(x[r, k] · w[k, n] + bias)` for `rows` rows.
pub fn encode_matvec(
    pass: &mut wgpu::ComputePass<'_>,
    op: &RowsOp,
    rows: usize,
    n: usize,
    k: usize,
    flags: u32,
) {
    encode_matvec_fused(pass, op, rows, n, k, flags, Fusion::default())
}

/// [`encode_matvec`] with `fusion` (its norm only on a [`fuses_norm`] kernel's op bound
/// with the norm's weights; its KV store only on an op bound with the pool).
pub fn encode_matvec_fused(
    pass: &mut wgpu::ComputePass<'_>,
    op: &RowsOp,
    rows: usize,
    n: usize,
    k: usize,
    flags: u32,
    fusion: Fusion,
) {
    debug_assert!(fusion.norm.is_none() || fuses_norm(op.name));
    debug_assert!(fusion.deferred.is_none() || stages(op.name));
    debug_assert!(
        fusion.kv.is_none() && fusion.rope.is_none() || op.qkv(),
        "{}",
        op.name
    );
    let deferred = fusion.deferred.unwrap_or_default();
    let (rope, head4, rot4) = Rope::params(fusion.rope);
    let gx = workgroups(op.name, n, op.workgroup as usize);
    let (kv_q4, kv4) = fusion.kv.map_or((0, 0), |(q, kv)| (q / 4, kv / 4));
    for (o, row0, groups) in op.cover(rows) {
        let p = MatvecParams {
            n4: (n / 4) as u32,
            k4: (k / 4) as u32,
            flags: flags | rope | if fusion.kv.is_some() { KV_STORE } else { 0 },
            p4: (panel_width(n) / 4) as u32,
            rows: groups as u32,
            row0: row0 as u32,
            row_end: rows as u32,
            kv_q4: kv_q4 as u32,
            kv4: kv4 as u32,
            norm: deferred.flags(fusion.norm),
            eps: fusion.norm.map_or(0.0, |n| n.eps),
            parts: deferred.parts as u32,
            head4,
            rot4,
            _pad: [0; 2],
        };
        o.encode(pass, &p, (gx as u32, groups as u32, 1));
    }
}

/// Upload `p` (its weights `[K, N]` stored as `variant` reads them), run, read back
/// `out[R, N]` for the R rows of `p.x`.
pub fn run_matvec(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
    p: &HostProduct,
) -> Result<Vec<f32>> {
    let (rows, n, k) = (p.rows(), p.n, p.k);
    let x = buffers::upload(ctx, "x", p.x);
    let w = buffers::upload(ctx, "w", &store_weights(variant, p.w, k, n));
    let bias = buffers::upload(ctx, "bias", p.bias.unwrap_or(&[0.0; 4]));
    let out = match p.out_init {
        Some(o) => buffers::upload(ctx, "out", o),
        None => buffers::storage(ctx, "out", rows * n),
    };
    let io = LinearBuffers {
        x: &x,
        w: &w,
        bias: &bias,
        out: &out,
    };
    let op = matvec_variant_op(ctx, pipelines, variant, &io);
    submit_pass(ctx, "matvec", |pass| {
        encode_matvec(pass, &op, rows, n, k, p.flags)
    })?;
    buffers::read_floats(ctx, &out, 0, rows * n)
}

/// Upload, run `variant` of `matvec_staged` over the stream `r` normalised by `norm`
/// (weight, bias) and `p`'s weights (`p.x` unused), read back `(out [rows, n], the
/// rows written whole [rows, k])`.
pub fn run_matvec_staged(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
    r: &HostResidual,
    (norm, norm_w, norm_b): (Norm, &[f32], Option<&[f32]>),
    p: &HostProduct,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let (rows, n, k) = (r.x.len() / r.c, p.n, p.k);
    let (x, parts, res_bias) = r.upload(ctx);
    let w = buffers::upload(ctx, "w", &store_weights(variant, p.w, k, n));
    let bias = buffers::upload(ctx, "bias", p.bias.unwrap_or(&[0.0; 4]));
    let out = buffers::storage(ctx, "out", rows * n);
    let x_out = buffers::storage(ctx, "x_out", rows * k);
    let g = buffers::upload(ctx, "norm_w", norm_w);
    let nb = buffers::upload(ctx, "norm_b", norm_b.unwrap_or(&[0.0; 4]));
    let io = LinearBuffers {
        x: &x,
        w: &w,
        bias: &bias,
        out: &out,
    };
    let fused = FusionBuffers {
        kv: None,
        norm: Some((&g, &nb)),
        deferred: Some((&parts, &res_bias, &x_out)),
        ..Default::default()
    };
    let op = matvec_fused_op(ctx, pipelines, variant, &io, fused);
    let fusion = Fusion {
        norm: Some(norm),
        deferred: Some(r.deferred()),
        ..Default::default()
    };
    submit_pass(ctx, variant, |pass| {
        encode_matvec_fused(pass, &op, rows, n, k, p.flags, fusion)
    })?;
    let mut got = buffers::read_many(ctx, &[(&out, 0, rows * n), (&x_out, 0, rows * k)])?;
    let whole = got.pop().unwrap_or_default();
    Ok((got.pop().unwrap_or_default(), whole))
}
