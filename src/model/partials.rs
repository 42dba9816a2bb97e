//! A decode step's blocks with their residual adds deferred (`kernels::partials`; the
//! hardware kernels, config `decode_blocks` `auto`): a block is the qkv projection
//! reading the stream whole (`matvec_staged`: x + the previous MLP's partial rows,
//! ln_1 folded in, the rotary families' queries and keys rotated, keys and values to
//! the pool), attention with each head's share of the output projection
//! (`attention_proj`), and the whole MLP leaving each chunk's share of the down
//! projection (`mlp_partial`: x + the heads' partial rows, ln_2 folded in). The stream
//! alternates between `x` and `x2`: the qkv projection reads `x` and writes it whole to
//! `x2`, the MLP reads `x2` and writes `x`; after the last block `residual_sum` makes
//! `x` whole for the LM head. A step is then 3 dispatches a block. A prefill
//! chunk of at most [`PREFILL_ROWS`] rows takes the same dispatches (each row attends
//! through its own page table and position, as a decode row does): on a GPU a few rows
//! are latency-bound, and the split-K matrix-vector kernels took 16 rows of 3072 → 768
//! in 0.038 ms on the H200 against 0.22 ms for the tiled matmul.

use super::{
    BlockWeights, DeviceWeights, MlpWeights, Model, PartialActivations, PartialBlockOps, PartialOps,
};
use crate::config::{DecodeBlocks, ModelConfig};
use crate::gpu::{buffers, GpuContext};
use crate::kernels::attention::PagedBuffers;
use crate::kernels::matvec::{encode_matvec_fused, matvec_fused_op, Fusion, FusionBuffers};
use crate::kernels::partials::{
    attention_proj_op, attention_proj_variant, embed_staged_variant, encode_attention_proj,
    encode_mlp_partial, encode_residual_sum, mlp_chunk, mlp_partial_op, mlp_variant,
    residual_sum_op, staged_variant, Deferred, MlpAct, MlpBuffers, MlpShape, MAX_PARTS, MAX_STAGE,
};
use crate::kernels::{LinearBuffers, Pipelines};

/// Rows a prefill chunk may have to take the deferred blocks (larger chunks take the
/// matmul, which reads each weight once for many rows).
pub const PREFILL_ROWS: usize = 64;

/// The MLP shape of a model whose decode steps take the deferred blocks, or `None`
/// (software kernels, `decode_blocks` `per_linear`, an MoE model, a stream wider than
/// the staging kernels hold, more heads or hidden chunks than a kernel sums).
pub fn mlp_shape(cfg: &ModelConfig, hardware: bool) -> Option<MlpShape> {
    let (c, h, heads) = (cfg.n_embed, cfg.ffn_hidden(), cfg.heads());
    let fits = hardware
        && cfg.decode_blocks == DecodeBlocks::Auto
        && !cfg.use_moe
        && !cfg.architecture.post_norms()
        && !cfg.architecture.parallel_block()
        && c.is_multiple_of(4)
        && c <= MAX_STAGE
        && heads.nh <= MAX_PARTS
        && heads.hs.is_multiple_of(4)
        && heads.hs <= 128;
    let chunk = mlp_chunk(h).filter(|_| fits)?;
    Some(MlpShape {
        c,
        h,
        chunk,
        act: if cfg.architecture.gated_mlp() {
            MlpAct::SwiGlu
        } else {
            MlpAct::Gelu
        },
        up_bias: cfg.has_mlp_bias(),
    })
}

impl PartialActivations {
    /// Scratch for steps of up to `rows` rows.
    pub fn new(ctx: &GpuContext, cfg: &ModelConfig, shape: MlpShape, rows: usize) -> Self {
        let c = cfg.n_embed;
        PartialActivations {
            x2: buffers::storage(ctx, "x2", rows * c),
            attn: buffers::storage(ctx, "attention partial rows", rows * cfg.n_head * c),
            mlp: buffers::storage(ctx, "mlp partial rows", rows * shape.parts() * c),
            rows,
            shape,
        }
    }

    pub fn bytes(&self) -> u64 {
        self.x2.size() + self.attn.size() + self.mlp.size()
    }
}

/// What a block's deferred dispatches bind besides its weights.
pub struct PartialBinding<'a> {
    pub ctx: &'a GpuContext,
    pub pl: &'a Pipelines,
    pub act: &'a super::Activations,
    pub parts: &'a PartialActivations,
    pub kv: &'a super::kv_pool::KvPool,
    /// The block-sparse layout's CSR (or stand-ins).
    pub sparse: (&'a wgpu::Buffer, &'a wgpu::Buffer),
}

/// Bind the deferred dispatches of every block of `w` (dense MLPs: the scratch exists
/// only where [`mlp_shape`] allowed them).
pub fn bind(b: &PartialBinding, w: &DeviceWeights, cfg: &ModelConfig) -> PartialOps {
    let (a, p) = (b.act, b.parts);
    let shape = p.shape;
    let half = cfg.dtype == crate::config::Dtype::Float16;
    let or_dummy = |x: &Option<wgpu::Buffer>| x.clone().unwrap_or_else(|| a.dummy.clone());
    let down_bias = |blk: &BlockWeights| match &blk.mlp {
        MlpWeights::Dense { fc_proj_b, .. } => or_dummy(fc_proj_b),
        MlpWeights::Moe { .. } => unreachable!("deferred blocks have dense MLPs"),
    };
    let embed = match w.wte.chunks.as_slice() {
        [whole] => Some((&a.ids, &whole.buffer)),
        _ => None,
    };
    let embeds = embed.is_some();
    let blocks = w
        .blocks
        .iter()
        .enumerate()
        .map(|(l, blk)| {
            let MlpWeights::Dense {
                fc_w,
                fc_b,
                fc_proj_w,
                ..
            } = &blk.mlp
            else {
                unreachable!("deferred blocks have dense MLPs")
            };
            // the stream x + the previous block's MLP partial rows (its down bias)
            let prev_bias = match l {
                0 => a.dummy.clone(),
                _ => down_bias(&w.blocks[l - 1]),
            };
            let bias = or_dummy(&blk.attn_b);
            let ln_1_b = or_dummy(&blk.ln_1_b);
            let io = LinearBuffers {
                x: &a.x,
                w: &blk.attn_w,
                bias: &bias,
                out: &a.qkv,
            };
            // keys and values to the pool, the rotary families' rotated first
            let fused = FusionBuffers {
                kv: Some((&b.kv.k[l], &b.kv.v[l], &a.kv_slots)),
                kv_half: b.kv.half,
                norm: Some((&blk.ln_1_w, &ln_1_b)),
                deferred: Some((&p.mlp, &prev_bias, &p.x2)),
                positions: Some(&a.positions),
                rope: w.rope.as_ref(),
                embed: None,
            };
            let paged = PagedBuffers {
                qkv: &a.qkv,
                k_pool: &b.kv.k[l],
                v_pool: &b.kv.v[l],
                out: &p.attn,
                rows: &a.kv_rows,
                tables: &a.kv_tables,
                row_offsets: b.sparse.0,
                cols: b.sparse.1,
                half: b.kv.half,
                head_size: cfg.head_size(),
            };
            let mlp = MlpBuffers {
                x: &p.x2,
                parts: &p.attn,
                res_bias: &or_dummy(&blk.proj_b),
                x_out: &a.x,
                norm_w: &blk.ln_2_w,
                norm_b: &or_dummy(&blk.ln_2_b),
                w_up: fc_w,
                b_up: &or_dummy(fc_b),
                w_down: fc_proj_w,
                out: &p.mlp,
            };
            // the first block reads the embedding itself where wte fits one binding
            let qkv = match (l, &embed) {
                (0, Some(e)) => {
                    let wpe = w.wpe.as_ref().unwrap_or(&a.dummy);
                    let io = LinearBuffers { x: wpe, ..io };
                    let fused = FusionBuffers {
                        embed: Some(*e),
                        ..fused
                    };
                    matvec_fused_op(b.ctx, b.pl, embed_staged_variant(half), &io, fused)
                }
                _ => matvec_fused_op(b.ctx, b.pl, staged_variant(half), &io, fused),
            };
            PartialBlockOps {
                qkv,
                attn: attention_proj_op(
                    b.ctx,
                    b.pl,
                    attention_proj_variant(half),
                    &paged,
                    &blk.proj_w,
                ),
                mlp: mlp_partial_op(b.ctx, b.pl, mlp_variant(half), &mlp),
            }
        })
        .collect();
    let last = w.blocks.last().map_or_else(|| a.dummy.clone(), down_bias);
    PartialOps {
        shape,
        blocks,
        embeds,
        residual: residual_sum_op(b.ctx, b.pl, &a.x, &p.mlp, &last),
    }
}

impl Model {
    /// Record block `l` of a decode step of `t` rows through the deferred dispatches
    /// (`x` holds the stream's base, and after the first block the previous MLP's
    /// partial rows are pending).
    pub(super) fn encode_block_deferred(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        ops: &PartialOps,
        (l, head_norm): (usize, Option<&crate::kernels::KernelOp>),
        t: usize,
    ) {
        use crate::kernels::matmul::BIAS;
        let cfg = &self.config;
        let (c, heads, norm) = (cfg.n_embed, cfg.layer_heads(l), self.norm());
        let blk = &ops.blocks[l];
        let pending_mlp = Deferred {
            parts: if l == 0 { 0 } else { ops.shape.parts() },
            bias: l > 0 && cfg.has_mlp_bias(),
            wpe: l == 0 && ops.embeds && self.weights.wpe.is_some(),
        };
        // keys and values to the pool, the rotary families' rotated first (by the
        // head norm's dispatch after it, in a block with one)
        let (kv, rope) = self.qkv_epilogue((l, head_norm), true);
        let qkv = Fusion {
            kv,
            norm: Some(norm),
            deferred: Some(pending_mlp),
            rope,
        };
        let flags = if cfg.has_qkv_bias() { BIAS } else { 0 };
        encode_matvec_fused(pass, &blk.qkv, t, heads.qkv_width(), c, flags, qkv);
        self.encode_head_norm(pass, (l, head_norm), t, true);
        let page = (super::kv_pool::PAGE, self.attention_block());
        encode_attention_proj(pass, &blk.attn, t, heads, page, c);
        let pending_heads = Deferred {
            parts: heads.nh,
            bias: cfg.has_o_bias(),
            wpe: false,
        };
        encode_mlp_partial(pass, &blk.mlp, t, ops.shape, pending_heads, norm);
    }

    /// Record x made whole after the last deferred block.
    pub(super) fn encode_stream_whole(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        ops: &PartialOps,
        t: usize,
    ) {
        let pending = Deferred {
            parts: ops.shape.parts(),
            bias: self.config.has_mlp_bias(),
            wpe: false,
        };
        encode_residual_sum(pass, &ops.residual, t, self.config.n_embed, pending);
    }
}
