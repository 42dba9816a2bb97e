//! Matmul with bias / GELU / residual-accumulate epilogue (`shaders/matmul.wgsl`):
//! `out[M, N] (=|+=) act(a[M, K] · b[K, N] + bias)`, weights stored `[in, out]`.

use bytemuck::{Pod, Zeroable};

use super::catalogue::Kernel;
use super::fusion::{Fusion, FusionBuffers};
use super::layer_norm::{norm_flags, HostNorm, Norm};
use super::Pipelines;
use super::{submit_pass, HostProduct, KernelOp, LinearBuffers};
use crate::error::Result;
use crate::gpu::{buffers, GpuContext, WORKGROUP};

/// Rows computed by one invocation (the shader's `TM`), by kernel variant.
pub fn tile_rows(kernel: &Kernel) -> usize {
    if kernel.subgroups {
        16
    } else {
        8
    }
}

/// Epilogue flags, shared with `matvec`.
pub const BIAS: u32 = 1;
pub const GELU: u32 = 2;
pub const ACCUMULATE: u32 = 4;
/// Epilogue flag: also store a qkv projection's keys and values in the KV pool
/// (prelude `epilogue`; the same bit in the matrix-vector kernels).
pub const KV_STORE: u32 = 8;
/// Staging flag of the tile kernels ([`fuses_staging`]): `a` holds gate | up rows of
/// 2 K, and the product takes silu(gate) · up (SwiGLU folded into the down projection).
pub const GATED: u32 = 32;
/// Exact (erf) GELU on the output instead of bit 1's tanh form (the encoders' MLP).
pub const GELU_ERF: u32 = 128;
/// Epilogue flag: rotary positions on a qkv projection's query and key heads
/// ([`super::rotary`], `Fusion::rope`).
pub use super::rotary::ROTARY;

/// Mirrors `MatmulParams` in the WGSL.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct MatmulParams {
    pub m: u32,
    pub n4: u32,
    pub k4: u32,
    pub flags: u32,
    pub p4: u32,
    pub ks: u32,
    pub split: u32,
    /// `KV_STORE` (`matvec::KV_STORE`): vec4s of the queries before the keys in a row.
    pub kv_q4: u32,
    /// `KV_STORE`: vec4s of a pool row.
    pub kv4: u32,
    /// The norm before the projection folded into the tiled kernels' staging
    /// ([`fuses_staging`]; flags as the norm prologue's, 0: `a` as it is).
    pub norm: u32,
    pub eps: f32,
    /// [`ROTARY`]: vec4s in a head.
    pub head4: u32,
    /// [`ROTARY`]: vec4s of a row rotated (the query and key heads).
    pub rot4: u32,
}

/// Rows up to which the tiled kernels split K across workgroups (a prefill chunk, a
/// short forward): their 64 × 64 tiles alone would leave most of a GPU idle (16 rows
/// of 3072 → 768 are 12 workgroups).
pub const SPLIT_MAX_ROWS: usize = 256;

/// Workgroups a split aims at for one 64-row tile of out.
const SPLIT_TARGET: usize = 256;

/// Whether `variant` is one of the 64 × 64 tile kernels, which walk K in slices that
/// they can split across workgroups.
pub fn splits_k(variant: &str) -> bool {
    matches!(variant, "matmul_tiled" | "matmul_f16_tiled" | "matmul_coop")
}

/// Whether `variant` can fold the op before its product into its staging of `a` (the
/// tile kernels, prelude `stage_tile`): the norm before a projection (`a` is then the
/// residual stream), or SwiGLU before the down projection ([`GATED`]).
pub fn fuses_staging(variant: &str) -> bool {
    splits_k(variant)
}

/// The shortest K slice of the tensor-core kernel, whose slice sums pass through
/// workgroup memory (a store and two barriers a slice).
const COOP_MIN_SLICE: usize = 256;

/// The K slices of the tiled kernels for a `[k, n]` weight: (slice length, a multiple
/// of 16 of at least 64, and count). Fixed by the shape alone, so a row's sums are
/// the same whether or not its step splits.
pub fn k_slices(n: usize, k: usize) -> (usize, usize) {
    let want = SPLIT_TARGET.div_ceil(n.div_ceil(64));
    let count = want.clamp(1, (k / 64).max(1));
    let len = k.div_ceil(count).div_ceil(16) * 16;
    (len, k.div_ceil(len))
}

/// [`k_slices`] as kernel `variant` walks them: the tensor-core kernel's are at least
/// [`COOP_MIN_SLICE`] long (so never more of them).
pub fn variant_slices(variant: &str, n: usize, k: usize) -> (usize, usize) {
    let (len, count) = k_slices(n, k);
    if variant == "matmul_coop" && len < COOP_MIN_SLICE {
        (COOP_MIN_SLICE, k.div_ceil(COOP_MIN_SLICE))
    } else {
        (len, count)
    }
}

/// Floats of the scratch a split of `rows` rows of a `[k, n]` weight fills (with any
/// variant): each K slice's products, then each slice's sums of a folded norm (a vec4
/// a row; prelude norm_fold's `stats_at`).
pub fn split_floats(n: usize, k: usize, rows: usize) -> usize {
    k_slices(n, k).1 * rows * (n + 4)
}

/// Floats a row of a split step needs in the scratch the blocks' linears share (width
/// `c`, MLP hidden `h`; the MLP's linears only when dense: MoE experts have their own
/// kernel). In u128, for the memory estimate of any config.
pub fn split_row_floats(shapes: &[(u128, u128)]) -> u128 {
    let fit = |x: u128| usize::try_from(x).unwrap_or(usize::MAX).min(usize::MAX / 4);
    shapes
        .iter()
        .map(|&(n, k)| k_slices(fit(n), fit(k)).1 as u128 * (n + 4))
        .max()
        .unwrap_or(1)
}

/// A matmul's dispatches: the kernel, and for the tiled kernels the sum of a split-K
/// step (`matmul_split_sum`) over the scratch bound to both, which holds the slices of
/// up to `split_rows` rows (0: never split).
pub struct MatmulOp {
    pub op: KernelOp,
    sum: Option<KernelOp>,
    split_rows: usize,
}

/// Columns per panel of a weight matrix with `n` columns when `n` is a multiple of it.
pub const PANEL: usize = 64;

/// Panel width of the `[K, N]` weights the matmul and matrix-vector kernels read:
/// [`PANEL`] columns when `n` is a multiple of it, else `n` (plain row-major).
pub fn panel_width(n: usize) -> usize {
    if n.is_multiple_of(PANEL) {
        PANEL
    } else {
        n
    }
}

/// Row-major `b [K, N]` rearranged into column panels (N / P panels of `[K, P]`,
/// P = [`panel_width`]), the layout the matmul and matrix-vector kernels read:
/// a workgroup walking K then reads contiguous memory, which CPU prefetchers follow
/// (a one-token step on lavapipe is 20 % faster than with row-major weights).
pub fn to_panels(b: &[f32], k: usize, n: usize) -> Vec<f32> {
    let pw = panel_width(n);
    if pw == n {
        return b.to_vec();
    }
    let mut out = Vec::with_capacity(b.len());
    for panel in 0..n / pw {
        for row in b.chunks_exact(n).take(k) {
            out.extend_from_slice(&row[panel * pw..(panel + 1) * pw]);
        }
    }
    out
}

/// Weights `b [K, N]` as kernel `variant` reads them: in panels, and packed as half
/// floats for the `*_f16` variants.
pub fn store_weights(variant: &str, b: &[f32], k: usize, n: usize) -> Vec<f32> {
    super::in_precision_of(variant, to_panels(b, k, n))
}

/// Op with the best variant for the device: bindings a, b, bias (any buffer when unused), out.
pub fn matmul_op(ctx: &GpuContext, pipelines: &Pipelines, b: &LinearBuffers) -> MatmulOp {
    matmul_variant_op(ctx, pipelines, pipelines.best("matmul"), b)
}

/// The matmul for the blocks' linears: on hardware GPUs the tensor-core kernel for
/// half-float weights where the adapter has cooperative matrices (and the kernel passed
/// its self-test), else the tiled kernels; on software adapters the best software
/// kernel for the device.
pub fn variant_for(pipelines: &Pipelines, hardware: bool, half: bool) -> &'static str {
    match (hardware, half) {
        (true, true) if pipelines.has("matmul_coop") => "matmul_coop",
        (true, false) => "matmul_tiled",
        (true, true) => "matmul_f16_tiled",
        (false, false) => pipelines.best("matmul"),
        (false, true) => pipelines.best("matmul_f16"),
    }
}

/// Op with an explicit variant (any kernel of the matmul op), never splitting K.
pub fn matmul_variant_op(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
    b: &LinearBuffers,
) -> MatmulOp {
    let none = splits_k(variant).then(|| buffers::storage(ctx, "split scratch", 4));
    matmul_split_op(ctx, pipelines, variant, b, none.as_ref().map(|n| (n, 0)))
}

/// Op with an explicit variant whose tiled kernels split K for steps of up to
/// `split_rows` rows through `part` (`split`: `(part, split_rows)`; at least
/// [`split_floats`] floats; a tiled kernel binds it whether or not it splits). Other
/// variants take neither.
pub fn matmul_split_op(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
    io: &LinearBuffers,
    split: Option<(&wgpu::Buffer, usize)>,
) -> MatmulOp {
    matmul_fused_op(ctx, pipelines, variant, io, split, FusionBuffers::default())
}

/// [`matmul_split_op`] for a qkv projection whose steps can store their keys and
/// values in the pool (`fused.kv`: `(k_pool, v_pool, slots)`) and rotate its queries
/// and keys (`fused.positions`, `fused.rope`), and whose rows `io.x` may be the
/// residual stream, normalised on the way in by the norm folded in (a
/// [`fuses_staging`] variant; `fused.norm`: its weight g and `g · w`, and `io.bias`
/// then the bias with the norm's carried through: [`NormFold`]); stand-ins for what
/// `fused` leaves out.
pub fn matmul_fused_op(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
    io: &LinearBuffers,
    split: Option<(&wgpu::Buffer, usize)>,
    fused: FusionBuffers,
) -> MatmulOp {
    let (pool, norm) = (fused.kv, fused.norm);
    debug_assert!(norm.is_none() || fuses_staging(variant));
    let LinearBuffers {
        x: a,
        w: b,
        bias,
        out,
    } = *io;
    let si = ctx.stand_ins();
    let (k, v, slots) = pool.unwrap_or((&si.written, &si.written, &si.read));
    let (norm_w, norm_gw) = norm.unwrap_or((&si.read, &si.read));
    let op = |name: &'static str, bufs: &[&wgpu::Buffer]| {
        let normed: &[&wgpu::Buffer] = if fuses_staging(name) {
            &[norm_w, norm_gw]
        } else if name == "matmul_split_sum" {
            &[norm_gw]
        } else {
            &[]
        };
        let rope = [fused.positions, fused.rope].map(|b| b.unwrap_or(&si.read));
        let all: Vec<&wgpu::Buffer> = bufs
            .iter()
            .copied()
            .chain([k, v, slots])
            .chain(normed.iter().copied())
            .chain(rope)
            .collect();
        KernelOp::with_spec::<MatmulParams>(ctx, pipelines, name, fused.spec(), &all)
    };
    match split.filter(|_| splits_k(variant)) {
        Some((part, split_rows)) => MatmulOp {
            op: op(variant, &[a, b, bias, out, part]),
            sum: (split_rows > 0).then(|| op("matmul_split_sum", &[part, bias, out])),
            split_rows,
        },
        None => MatmulOp {
            op: op(variant, &[a, b, bias, out]),
            sum: None,
            split_rows: 0,
        },
    }
}

/// Record `out[m, n] (=|+=) act(a[m, k] · b[k, n] + bias)`: with K split across
/// workgroups and summed by a second dispatch when the op can split `m` rows and the
/// weight has more than one K slice.
pub fn encode_matmul(
    pass: &mut wgpu::ComputePass<'_>,
    op: &MatmulOp,
    m: usize,
    n: usize,
    k: usize,
    flags: u32,
) {
    encode_matmul_fused(pass, op, (m, n, k), flags, Fusion::default())
}

/// [`encode_matmul`] of a qkv projection that also stores its keys and values in the
/// pool (`kv`: the floats of the queries and of the keys in a row; an op of
/// [`matmul_fused_op`] bound with the pool), and with the norm before the projection
/// folded in (`norm`: an op bound with its [`NormFold`]; its rows the residual stream).
pub fn encode_matmul_fused(
    pass: &mut wgpu::ComputePass<'_>,
    op: &MatmulOp,
    (m, n, k): (usize, usize, usize),
    flags: u32,
    fusion: Fusion,
) {
    let Fusion { kv, norm, rope, .. } = fusion;
    debug_assert!(fusion.deferred.is_none());
    let (rope, head4, rot4) = super::rotary::Rope::params(rope);
    debug_assert!((norm.is_none() && flags & GATED == 0) || fuses_staging(op.op.name));
    let (ks, slices) = variant_slices(op.op.name, n, k);
    let (kv_q4, kv4) = kv.map_or((0, 0), |(q, c)| (q / 4, c / 4));
    let flags = flags | rope | if kv.is_some() { KV_STORE } else { 0 };
    // a folded norm's bias reaches the product through the op's bias (`NormFold`)
    let flags = flags
        | if norm.is_some_and(|n| n.bias) {
            BIAS
        } else {
            0
        };
    debug_assert!(
        flags & (KV_STORE | ROTARY) == 0 || op.op.qkv,
        "{}",
        op.op.name
    );
    let sum = op.sum.as_ref().filter(|_| slices > 1 && m <= op.split_rows);
    let p = MatmulParams {
        m: m as u32,
        n4: (n / 4) as u32,
        k4: (k / 4) as u32,
        flags,
        p4: (panel_width(n) / 4) as u32,
        ks: ks as u32,
        split: u32::from(sum.is_some()),
        kv_q4: kv_q4 as u32,
        kv4: kv4 as u32,
        norm: norm_flags(norm),
        eps: norm.map_or(0.0, |n| n.eps),
        head4,
        rot4,
    };
    let (gx, gy) = if splits_k(op.op.name) {
        // 64 × 64 tiles of out
        (n.div_ceil(64) as u32, m.div_ceil(64) as u32)
    } else {
        (
            (n / 4).div_ceil(WORKGROUP as usize) as u32,
            m.div_ceil(tile_rows(op.op.kernel)) as u32,
        )
    };
    let gz = if sum.is_some() { slices as u32 } else { 1 };
    op.op.encode(pass, &p, (gx, gy, gz));
    if let Some(sum) = sum {
        let (sx, sy) = crate::gpu::grid_1d(m * n / 4);
        sum.encode(pass, &p, (sx, sy, 1));
    }
}

/// What a norm folded into a tile matmul needs of its weights `w` (prelude
/// norm_fold): `gw = g · w` (`[N]`; LayerNorm's mean term) and, when the norm has a
/// bias `b`, `bias = linear bias + b · w` (`[N]`), the op's bias in place of the
/// linear's. Taken on the device, once when the model is built, from the weights as
/// the kernels read them, in f32 (the tensor-core kernel's by `matmul_f16_tiled`,
/// which reads the same halves).
pub struct NormFold {
    pub gw: wgpu::Buffer,
    pub bias: Option<wgpu::Buffer>,
}

impl NormFold {
    /// For the `[k, n]` weight `w` as tile kernel `variant` reads it, the norm's weight
    /// and bias `(g, b)`, the linear's bias (`None`: none).
    pub fn new(
        ctx: &GpuContext,
        pipelines: &Pipelines,
        variant: &'static str,
        (w, n, k): (&wgpu::Buffer, usize, usize),
        norm: Norm,
        (g, b): (&wgpu::Buffer, Option<&wgpu::Buffer>),
        bias: Option<&wgpu::Buffer>,
    ) -> Result<NormFold> {
        let f32_variant = if variant == "matmul_coop" {
            "matmul_f16_tiled"
        } else {
            variant
        };
        let gw = buffers::storage(ctx, "g · w", n);
        // the norm's bias b and where bias + b · w goes
        let fold_bias = b
            .filter(|_| norm.bias)
            .map(|b| (b, buffers::storage(ctx, "bias + b · w", n)));
        let unused = &ctx.stand_ins().read;
        let product = |x: &wgpu::Buffer, out: &wgpu::Buffer| {
            matmul_variant_op(
                ctx,
                pipelines,
                f32_variant,
                &LinearBuffers {
                    x,
                    w,
                    bias: unused,
                    out,
                },
            )
        };
        let ops = (
            product(g, &gw),
            fold_bias.as_ref().map(|(b, out)| product(b, out)),
        );
        ctx.scoped("norm fold", || {
            let mut enc = ctx
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("norm fold"),
                });
            if let (Some((_, out)), Some(bias)) = (&fold_bias, bias) {
                enc.copy_buffer_to_buffer(bias, 0, out, 0, (n * 4) as u64);
            }
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("norm fold"),
                    timestamp_writes: None,
                });
                encode_matmul(&mut pass, &ops.0, 1, n, k, 0);
                if let Some(op) = &ops.1 {
                    encode_matmul(&mut pass, op, 1, n, k, ACCUMULATE);
                }
            }
            ctx.queue.submit([enc.finish()]);
            ctx.wait_idle()
        })?;
        Ok(NormFold {
            gw,
            bias: fold_bias.map(|(_, out)| out),
        })
    }
}

/// Upload `p` (its weights `[K, N]` stored as `variant` reads them), run `variant`,
/// read back `out[M, N]`. With `split`, a tiled kernel splits K as a prefill chunk's
/// rows do (when the shape has several slices).
pub fn run_matmul(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
    p: &HostProduct,
    split: bool,
) -> Result<Vec<f32>> {
    run_matmul_normed(ctx, pipelines, variant, p, split, None)
}

/// [`run_matmul`] with `p.x` the residual stream, normalised by `norm` (the norm, its
/// weight and bias) on the way in, or with [`GATED`] in `p.flags` gate | up rows of
/// 2 K: a [`fuses_staging`] variant.
pub fn run_matmul_normed(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
    p: &HostProduct,
    split: bool,
    norm: Option<HostNorm>,
) -> Result<Vec<f32>> {
    let gated = p.flags & GATED != 0;
    let (m, n, k) = (p.rows() / if gated { 2 } else { 1 }, p.n, p.k);
    let x = buffers::upload(ctx, "a", p.x);
    let w = buffers::upload(ctx, "b", &store_weights(variant, p.w, k, n));
    let bias = buffers::upload(ctx, "bias", p.bias.unwrap_or(&[0.0; 4]));
    let out = match p.out_init {
        Some(o) => buffers::upload(ctx, "out", o),
        None => buffers::storage(ctx, "out", m * n),
    };
    let part = buffers::storage(ctx, "split scratch", split_floats(n, k, m).max(4));
    let io = LinearBuffers {
        x: &x,
        w: &w,
        bias: &bias,
        out: &out,
    };
    let norm_bufs = norm.map(|(norm, g, b)| {
        let (g, b) = (
            buffers::upload(ctx, "norm_w", g),
            b.map(|b| buffers::upload(ctx, "norm_b", b)),
        );
        let has_bias = p.bias.is_some().then_some(&bias);
        NormFold::new(
            ctx,
            pipelines,
            variant,
            (&w, n, k),
            norm,
            (&g, b.as_ref()),
            has_bias,
        )
        .map(|fold| (g, fold))
    });
    let norm_bufs = norm_bufs.transpose()?;
    let io = LinearBuffers {
        bias: norm_bufs
            .as_ref()
            .and_then(|(_, f)| f.bias.as_ref())
            .unwrap_or(&bias),
        ..io
    };
    let fused = FusionBuffers {
        norm: norm_bufs.as_ref().map(|(g, f)| (g, &f.gw)),
        ..Default::default()
    };
    let split = Some((&part, if split { m } else { 0 }));
    let op = matmul_fused_op(ctx, pipelines, variant, &io, split, fused);
    let fusion = Fusion {
        norm: norm.map(|n| n.0),
        ..Default::default()
    };
    submit_pass(ctx, "matmul", |pass| {
        encode_matmul_fused(pass, &op, (m, n, k), p.flags, fusion)
    })?;
    buffers::read_floats(ctx, &out, 0, m * n)
}

/// Check kernel `variant` against the CPU reference on the device at hand (odd shapes,
/// every epilogue flag; for a kernel that splits K, a K of several slices split and
/// whole, which must agree bit for bit). Its inputs are taken at the kernel's
/// precision: half-float weights, and for the tensor-core kernel half-float
/// activations too.
pub fn self_test(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
) -> std::result::Result<(), String> {
    use crate::gpu::f16::round_to_f16;
    let seq = |len: usize, seed: u32| -> Vec<f32> {
        (0..len as u32)
            .map(|i| {
                ((i.wrapping_mul(2654435761).wrapping_add(seed) >> 8) % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    };
    for (m, n, k) in [(70, 192, 100), (40, 128, 1000)] {
        let (a, b, bias, init) = (seq(m * k, 1), seq(k * n, 2), seq(n, 3), seq(m * n, 4));
        let run = |split| {
            run_matmul(
                ctx,
                pipelines,
                variant,
                &HostProduct::new(&a, &b, n, k).epilogue(
                    Some(&bias),
                    Some(&init),
                    BIAS | GELU | ACCUMULATE,
                ),
                split,
            )
            .map_err(|e| e.to_string())
        };
        let got = run(false)?;
        let half = super::half_precision(variant);
        let b_seen = if half { round_to_f16(&b) } else { b.clone() };
        let a_seen = if variant == "matmul_coop" {
            round_to_f16(&a)
        } else {
            a.clone()
        };
        let want = crate::reference::matmul::matmul(
            &a_seen,
            &b_seen,
            Some(&bias),
            Some(&init),
            m,
            n,
            k,
            true,
        );
        crate::reference::compare(variant, &got, &want, 1e-3, 1e-3)?;
        if fuses_staging(variant) {
            // a LayerNorm with bias folded in (a prefill chunk's qkv and up projections)
            let (g, nb) = (seq(k, 5), seq(k, 6));
            let norm = Norm {
                eps: 1e-5,
                ..Norm::layer(true)
            };
            let got = run_matmul_normed(
                ctx,
                pipelines,
                variant,
                &HostProduct::new(&a, &b, n, k).epilogue(Some(&bias), Some(&init), BIAS | GELU),
                false,
                Some((norm, &g, Some(&nb))),
            )
            .map_err(|e| e.to_string())?;
            let a_seen = if variant == "matmul_coop" {
                crate::reference::layer_norm::folded_rows_f16(&a, &g, Some(&nb), k, false, 1e-5)
            } else {
                crate::reference::layer_norm::layer_norm(&a, &g, Some(&nb), k)
            };
            let want = crate::reference::matmul::matmul(
                &a_seen,
                &b_seen,
                Some(&bias),
                None,
                m,
                n,
                k,
                true,
            );
            crate::reference::compare(&format!("{variant} normed"), &got, &want, 1e-3, 1e-3)?;
        }
        if splits_k(variant) && variant_slices(variant, n, k).1 > 1 {
            let split = run(true)?;
            let differ = crate::reference::bits_differ(&split, &got);
            if differ > 0 {
                return Err(format!(
                    "{variant} {m}x{n}x{k}: {differ} values differ between split and whole K"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panels_reorder_columns_and_leave_other_widths_row_major() {
        // K = 3, N = 128: two panels of 64 columns, each [3, 64] row-major
        let (k, n) = (3, 128);
        let b: Vec<f32> = (0..k * n).map(|i| i as f32).collect();
        let p = to_panels(&b, k, n);
        assert_eq!(p.len(), b.len());
        for row in 0..k {
            for col in 0..n {
                let at = (col / 64) * k * 64 + row * 64 + col % 64;
                assert_eq!(p[at], b[row * n + col], "row {row} col {col}");
            }
        }
        // N = 64 is one panel, N = 96 is not a multiple: both stay row-major
        for n in [64, 96] {
            let b: Vec<f32> = (0..k * n).map(|i| i as f32).collect();
            assert_eq!(to_panels(&b, k, n), b);
        }
        assert_eq!(panel_width(3072), 64);
        assert_eq!(panel_width(100), 100);
    }
}
