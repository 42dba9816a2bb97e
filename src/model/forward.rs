//! The forward pass, readable top to bottom like nanoGPT's `GPT.forward`: every
//! dispatch recorded into one compute pass, one submission, then only the numbers a
//! response needs are read back (last-row logits; capture statistics when asked).

use std::time::Instant;

use serde::Serialize;

use super::kv_pool::{KvPool, PAGE};
use super::{
    Activations, BlockOps, DeviceWeights, Linear, MlpOps, MlpWeights, Model, Ops, SparseAttention,
};
use crate::config::{Activation, Dtype, ModelConfig};
use crate::error::{Error, Result};
use crate::gpu::{buffers, GpuContext, Pipelines};
use crate::kernels::attention::{
    attention_op, attention_paged_op, attention_variant, attention_weights_op, encode_attention,
    encode_attention_paged, encode_attention_weights, paged_attention_variant, sparse_attention_op,
    KvLayout,
};
use crate::kernels::embedding::{embedding_op, encode_embedding};
use crate::kernels::kv_store::{encode_kv_store, kv_store_op};
use crate::kernels::layer_norm::{encode_layer_norm, layer_norm_op};
use crate::kernels::logit_lens::{
    copy_rows_op, encode_copy_rows, encode_top_k_rows, parse_top_k, top_k_rows_op, top_k_windows,
    MAX_LENS_K,
};
use crate::kernels::matmul::{encode_matmul, matmul_op, matmul_split_op, ACCUMULATE, BIAS, GELU};
use crate::kernels::matmul_bt::{encode_matmul_bt, matmul_bt_variant_op};
use crate::kernels::matvec::{self, encode_matvec, matvec_variant_op};
use crate::kernels::matvec_bt::{self, encode_matvec_bt, matvec_bt_op};
use crate::kernels::moe::{
    encode_moe_combine, encode_moe_gate, encode_moe_matmul, encode_moe_route, grouped_rows,
    moe_combine_op, moe_gate_op, moe_matmul_variant_op, moe_route_op, GATHER, RELU, SILU,
};
use crate::kernels::row_norm::{encode_row_norm, row_norm_op};

/// One of the most likely next tokens.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TokenProb {
    pub token_id: u32,
    pub probability: f32,
}

/// Statistics of one block, computed on the device.
#[derive(Clone, Debug, Serialize)]
pub struct LayerCapture {
    pub layer_idx: usize,
    /// Mean over query positions of the attention-row entropy (nats), per head.
    pub attention_entropy: Vec<f32>,
    /// Mean and max over positions of ‖x‖₂ of the residual stream after the block.
    pub residual_norm_mean: f32,
    pub residual_norm_max: f32,
    /// Block-sparse layers: the layout's block size and density over this sequence.
    pub sparse_block_size: Option<usize>,
    pub sparse_density: Option<f64>,
    /// MoE layers: routing statistics of this forward.
    pub moe: Option<MoeCapture>,
}

/// Routing statistics of one MoE layer, computed on the device.
#[derive(Clone, Debug, Serialize)]
pub struct MoeCapture {
    /// Share of the token→expert assignments that went to each expert (sums to 1).
    pub expert_usage: Vec<f32>,
    /// E · Σᵢ fᵢ · Pᵢ (1 = balanced, E = everything on one expert).
    pub load_balance_loss: f32,
}

/// What `capture_data` asks for.
#[derive(Clone, Debug, Serialize)]
pub struct Capture {
    /// Mean ‖x‖₂ of the embedding output (token + position) over positions.
    pub embedding_norm_mean: f32,
    pub layers: Vec<LayerCapture>,
}

/// A captured forward: its output (with statistics), the attention weights asked for
/// (`[NH, T, T]` per layer, in the order asked) and the logit lens (`[layer][position]`
/// the most likely tokens, best first; empty when not asked).
#[derive(Clone, Debug)]
pub struct CapturedForward {
    pub output: ForwardOutput,
    pub attention: Vec<Vec<f32>>,
    pub logit_lens: Vec<Vec<Vec<TokenProb>>>,
}

/// Result of one forward.
#[derive(Clone, Debug)]
pub struct ForwardOutput {
    /// Tokens that went through the model (T).
    pub tokens: usize,
    /// Width of the logits (V).
    pub vocab: usize,
    /// Most likely next tokens after the last position, most likely first.
    pub top: Vec<TokenProb>,
    pub capture: Option<Capture>,
    /// Seconds from recording to the read-back finishing.
    pub seconds: f64,
}

/// Bind every dispatch once, at model build: the forward's, and the generation
/// steps' (the same modules, with the matrix-vector kernels and the paged KV pool).
pub(super) fn bind_ops(
    ctx: &GpuContext,
    pl: &Pipelines,
    w: &DeviceWeights,
    a: &Activations,
    kv: &KvPool,
    sparse: Option<&SparseAttention>,
    cfg: &ModelConfig,
) -> Ops {
    let hs = cfg.head_size();
    let half_weights = cfg.dtype == Dtype::Float16;
    let hardware = cfg.kernels.hardware(ctx.details.is_software());
    let (c, hidden) = (cfg.n_embed, cfg.ffn_hidden());
    // kernels with a GPU-shaped twin: layer norm, the decode attention and the
    // matrix-vector products
    let ln = if hardware {
        "layer_norm_workgroup"
    } else {
        "layer_norm"
    };
    let paged = paged_attention_variant(pl, hs, hardware);
    // kernels reading wte (embedding, LM head) and the blocks' linears: f32 weights,
    // or half floats (dtype float16)
    let (embed, lm_head, lm_head_rows, lin, moe_lin) = if half_weights {
        (
            "embedding_f16",
            pl.best("matmul_bt_f16"),
            matvec_bt::best_f16_variant(pl, c),
            crate::kernels::matmul::variant_for(pl, hardware, true),
            pl.best("moe_matmul_f16"),
        )
    } else {
        (
            "embedding",
            pl.best("matmul_bt"),
            "matvec_bt",
            crate::kernels::matmul::variant_for(pl, hardware, false),
            pl.best("moe_matmul"),
        )
    };
    let or_dummy =
        |b: &Option<wgpu::Buffer>| -> wgpu::Buffer { b.clone().unwrap_or_else(|| a.dummy.clone()) };
    // a linear x[., k] -> out[., n] with both row paths
    let linear = |x: &wgpu::Buffer,
                  wt: &wgpu::Buffer,
                  b: &Option<wgpu::Buffer>,
                  out: &wgpu::Buffer,
                  n: usize,
                  k: usize| {
        let bias = or_dummy(b);
        Linear {
            matmul: matmul_split_op(
                ctx,
                pl,
                lin,
                x,
                wt,
                &bias,
                out,
                Some(&a.split),
                a.split_rows,
            ),
            matvec: matvec_variant_op(
                ctx,
                pl,
                matvec::variant_for(pl, hardware, half_weights, n),
                x,
                wt,
                &bias,
                out,
            ),
            n,
            k,
        }
    };
    let (ro, cols) = match sparse {
        Some(sp) => (&sp.row_offsets, &sp.cols),
        None => (&a.dummy, &a.dummy),
    };
    // the attention of a forward and of a prefill chunk (keys and values in qkv, or in
    // the pool through the page table): the kernel this adapter and layout get
    let best_attention = match sparse {
        Some(sp) => sp.variant,
        None => attention_variant(pl, hs, hardware),
    };
    let attn_op = |ent: &wgpu::Buffer,
                   k: &wgpu::Buffer,
                   v: &wgpu::Buffer,
                   tables: &wgpu::Buffer,
                   variant: &'static str| {
        match sparse {
            Some(sp) => sparse_attention_op(
                ctx,
                pl,
                variant,
                &a.qkv,
                k,
                v,
                &a.att,
                ent,
                &sp.row_offsets,
                &sp.cols,
                tables,
            ),
            None => attention_op(ctx, pl, variant, &a.qkv, k, v, &a.att, ent, tables),
        }
    };
    let blocks = w
        .blocks
        .iter()
        .zip(&a.entropy)
        .enumerate()
        .map(|(l, (b, ent))| BlockOps {
            ln_1: layer_norm_op(ctx, pl, ln, &a.x, &b.ln_1_w, &or_dummy(&b.ln_1_b), &a.ln),
            c_attn: linear(&a.ln, &b.attn_w, &b.attn_b, &a.qkv, 3 * c, c),
            attn: attn_op(ent, &a.qkv, &a.qkv, &a.dummy, best_attention),
            attn_parts: (0..MAX_PREFILL_PARTS)
                .map(|_| attn_op(ent, &a.qkv, &a.qkv, &a.dummy, best_attention))
                .collect(),
            attn_prefill: (0..MAX_PREFILL_PARTS)
                .map(|_| attn_op(ent, &kv.k[l], &kv.v[l], &a.kv_tables, best_attention))
                .collect(),
            // the sparse subgroup kernel needs a subgroup's queries in one block: chunks
            // starting off a subgroup boundary take the portable kernel
            attn_prefill_unaligned: (best_attention == "sparse_attention_subgroup").then(|| {
                (0..MAX_PREFILL_PARTS)
                    .map(|_| attn_op(ent, &kv.k[l], &kv.v[l], &a.kv_tables, "sparse_attention"))
                    .collect()
            }),
            kv_store: kv_store_op(ctx, pl, &a.qkv, &kv.k[l], &kv.v[l], &a.kv_slots),
            attn_paged: attention_paged_op(
                ctx,
                pl,
                paged,
                &a.qkv,
                &kv.k[l],
                &kv.v[l],
                &a.att,
                &a.kv_rows,
                &a.kv_tables,
                ro,
                cols,
            ),
            c_proj: linear(&a.att, &b.proj_w, &b.proj_b, &a.x, c, c),
            ln_2: layer_norm_op(ctx, pl, ln, &a.x, &b.ln_2_w, &or_dummy(&b.ln_2_b), &a.ln),
            mlp: match (&b.mlp, &a.moe) {
                (
                    MlpWeights::Moe {
                        router,
                        fc_w,
                        fc_b,
                        fc_proj_w,
                        fc_proj_b,
                    },
                    Some(m),
                ) => MlpOps::Moe {
                    router: matmul_op(ctx, pl, &a.ln, router, &a.dummy, &m.router_logits),
                    gate: moe_gate_op(ctx, pl, &m.router_logits, &m.probs, &m.sel_e, &m.sel_w),
                    route: moe_route_op(
                        ctx,
                        pl,
                        &m.sel_e,
                        &m.probs,
                        &m.row_token,
                        &m.row_expert,
                        &m.slot,
                        &m.stats[l],
                    ),
                    fc: moe_matmul_variant_op(
                        ctx,
                        pl,
                        moe_lin,
                        &a.ln,
                        fc_w,
                        &or_dummy(fc_b),
                        &m.hidden,
                        &m.row_token,
                        &m.row_expert,
                    ),
                    proj: moe_matmul_variant_op(
                        ctx,
                        pl,
                        moe_lin,
                        &m.hidden,
                        fc_proj_w,
                        &or_dummy(fc_proj_b),
                        &m.out,
                        &m.row_token,
                        &m.row_expert,
                    ),
                    combine: moe_combine_op(ctx, pl, &m.out, &m.sel_w, &m.slot, &a.x),
                },
                (
                    MlpWeights::Dense {
                        fc_w,
                        fc_b,
                        fc_proj_w,
                        fc_proj_b,
                    },
                    _,
                ) => MlpOps::Dense {
                    c_fc: linear(&a.ln, fc_w, fc_b, &a.hidden, hidden, c),
                    fc_proj: linear(&a.hidden, fc_proj_w, fc_proj_b, &a.x, c, hidden),
                },
                (MlpWeights::Moe { .. }, None) => {
                    unreachable!("MoE weights come with MoE activations")
                }
            },
            norm: row_norm_op(ctx, pl, &a.x, &a.norms),
        })
        .collect();
    // the matrix-vector LM head (per wte chunk) over rows of `rows`
    let lm_head_over = |rows: &wgpu::Buffer| -> Vec<_> {
        w.wte
            .chunks
            .iter()
            .zip(&a.logits)
            .map(|(ch, out)| matvec_bt_op(ctx, pl, lm_head_rows, rows, &ch.buffer, out))
            .collect()
    };
    Ops {
        embedding: w
            .wte
            .chunks
            .iter()
            .map(|ch| {
                embedding_op(
                    ctx,
                    pl,
                    embed,
                    &a.ids,
                    &ch.buffer,
                    &w.wpe,
                    &a.x,
                    &a.positions,
                )
            })
            .collect(),
        embed_norm: row_norm_op(ctx, pl, &a.x, &a.norms),
        blocks,
        ln_f: layer_norm_op(ctx, pl, ln, &a.x, &w.ln_f_w, &or_dummy(&w.ln_f_b), &a.ln),
        lm_head: w
            .wte
            .chunks
            .iter()
            .zip(&a.logits)
            .map(|(ch, out)| matmul_bt_variant_op(ctx, pl, lm_head, &a.ln, &ch.buffer, out))
            .collect(),
        lm_head_rows: lm_head_over(&a.ln),
        top1: a
            .logits
            .iter()
            .map(|lg| top_k_rows_op(ctx, pl, lg, &a.top1))
            .collect(),
        // the prompts' last rows gathered into `att`, free once the blocks are done
        last_rows: (0..MAX_PREFILL_PARTS)
            .map(|_| copy_rows_op(ctx, pl, &a.ln, &a.att))
            .collect(),
        lm_head_last: lm_head_over(&a.att),
    }
}

/// How the rows of a step reach the linears: the matmul (a forward, a prefill chunk)
/// or the matrix-vector kernels (a decode step, one row per generation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RowPath {
    Matmul,
    Matvec,
}

/// One prompt's rows in a prefill step: rows `row0 .. row0 + rows` of the step, at
/// positions `pos ..` of its sequence, whose page table starts at `table0` in the
/// step's tables; with `logits`, the logits of its last row are read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ChunkRows {
    pub row0: usize,
    pub rows: usize,
    pub pos: usize,
    pub table0: usize,
    pub logits: bool,
}

/// An `attention_weights` dispatch of a captured forward: after the qkv of `layer`,
/// its `[NH, T, T]` to float `w0` of the op's weights buffer.
pub(super) struct AttentionTap {
    pub layer: usize,
    pub op: crate::kernels::KernelOp,
    pub w0: usize,
}

/// The logit lens of a captured forward: the residual stream after each layer saved
/// (`save[l]`: x to `lens` at layer l's rows), then, after the forward's own logits,
/// each layer's rows put back in x (`restore[l]`), through the final layer norm and
/// the LM head, and the `k` best of each row taken per wte chunk (`top[l][chunk]`, to
/// `out`). The last layer goes last: x and the logits end as the forward's own.
pub(super) struct LensTaps {
    pub k: usize,
    pub save: Vec<crate::kernels::KernelOp>,
    pub restore: Vec<crate::kernels::KernelOp>,
    pub top: Vec<Vec<crate::kernels::KernelOp>>,
    pub out: wgpu::Buffer,
}

/// Where a step's keys and values live and which logits it computes.
#[derive(Clone, Copy)]
pub(super) enum StepKind<'a> {
    /// A forward: attention within the rows, logits of every row, statistics with
    /// `capture`, the attention weights of the `taps`' layers, the logit lens.
    Forward {
        capture: bool,
        taps: &'a [AttentionTap],
        lens: Option<&'a LensTaps>,
    },
    /// Up to [`MAX_PREFILL_PARTS`] forwards without statistics sharing the traversal:
    /// each attends within its own rows (`row0 ..`, positions from 0); logits of every
    /// row, as a forward alone.
    Forwards(&'a [ChunkRows]),
    /// Chunks of up to [`MAX_PREFILL_PARTS`] prompts (rows, slots and tables already
    /// written): their keys and values go to the pool, each prompt is attended by the
    /// forward's kernel through its page table, the logits of each last row asked for
    /// are gathered to rows 0.. of the logits; with `argmax`, their largest logits
    /// are taken on the device as in a decode step.
    Prefill {
        parts: &'a [ChunkRows],
        argmax: bool,
    },
    /// A decode step: one row per generation, each attending to its own pages
    /// (`attention_paged`); the logits of every row, and with `argmax` each row's
    /// largest logit taken on the device (`top_k_rows` with k = 1 per wte chunk in
    /// windows of [`ARGMAX_SPAN`], to `top1`), so greedy rows need not read their
    /// logits back.
    Decode { argmax: bool },
}

impl StepKind<'_> {
    /// The row path of the linears: the matmul for a forward's and a prompt's rows, the
    /// matrix-vector kernels for a decode step's.
    pub(super) fn path(&self) -> RowPath {
        match self {
            StepKind::Decode { .. } => RowPath::Matvec,
            StepKind::Forward { .. } | StepKind::Forwards(_) | StepKind::Prefill { .. } => {
                RowPath::Matmul
            }
        }
    }
}

/// Tokens a forward may have when its attention weights (`T x T` per head and layer)
/// or its logit lens are asked for.
pub const MAX_CAPTURE_TOKENS: usize = 256;

/// Logits one workgroup of a decode step's argmax takes (`top_k_rows` windows): a
/// row of GPT-2's 50,257 is taken by 25 workgroups, not one.
pub const ARGMAX_SPAN: usize = 2048;

/// Prompts one prefill step takes at most (each has its own attention and LM-head
/// dispatches, bound once).
pub const MAX_PREFILL_PARTS: usize = 16;

impl Linear {
    /// Record `out (=|+=) act(x · w + bias)` for `t` rows along `path`.
    pub(super) fn encode(
        &self,
        m: &Model,
        pass: &mut wgpu::ComputePass<'_>,
        t: usize,
        path: RowPath,
        flags: u32,
    ) {
        let (q, pl) = (&m.ctx.queue, &*m.pipelines);
        match path {
            RowPath::Matmul => encode_matmul(q, pass, pl, &self.matmul, t, self.n, self.k, flags),
            RowPath::Matvec => encode_matvec(q, pass, pl, &self.matvec, t, self.n, self.k, flags),
        }
    }
}

impl Model {
    /// Reject ids the model cannot embed and sequences longer than the context.
    pub fn check_ids(&self, ids: &[u32]) -> Result<()> {
        if ids.is_empty() {
            return Err(Error::InvalidInput("input text must not be empty".into()));
        }
        if ids.len() > self.config.context_size {
            return Err(Error::SequenceTooLong {
                len: ids.len(),
                max: self.config.context_size,
            });
        }
        if let Some((i, &id)) = ids
            .iter()
            .enumerate()
            .find(|(_, &id)| id as usize >= self.config.vocab_size)
        {
            return Err(Error::InvalidInput(format!(
                "token {id} at position {i} is outside the model's vocabulary (vocab_size {}): use a model with a larger vocab_size or a matching tokenizer",
                self.config.vocab_size
            )));
        }
        Ok(())
    }

    /// Record `x += mlp(ln)` of block `l` for `t` rows (ln_2 already applied).
    fn encode_mlp(&self, pass: &mut wgpu::ComputePass<'_>, l: usize, t: usize, path: RowPath) {
        let (q, pl, cfg) = (&self.ctx.queue, &*self.pipelines, &self.config);
        let (c, h) = (cfg.n_embed, cfg.ffn_hidden());
        let b = if cfg.bias { BIAS } else { 0 };
        match &self.ops.blocks[l].mlp {
            MlpOps::Dense { c_fc, fc_proj } => {
                c_fc.encode(self, pass, t, path, b | GELU);
                fc_proj.encode(self, pass, t, path, b | ACCUMULATE);
            }
            MlpOps::Moe {
                router,
                gate,
                route,
                fc,
                proj,
                combine,
            } => {
                // probabilities over experts, top-k, tokens grouped per expert, the
                // experts' MLPs over the grouped rows, weighted sum back into x
                let (e, k) = (cfg.moe_num_experts, cfg.moe_top_k);
                let rows = grouped_rows(t, e, k);
                let act = match cfg.moe_activation {
                    Activation::Gelu => GELU,
                    Activation::Relu => RELU,
                    Activation::Silu => SILU,
                };
                encode_matmul(q, pass, pl, router, t, e.div_ceil(4) * 4, c, 0);
                encode_moe_gate(q, pass, pl, gate, t, e, k);
                encode_moe_route(q, pass, pl, route, t, e, k);
                encode_moe_matmul(q, pass, pl, fc, rows, h, c, b | GATHER | act);
                encode_moe_matmul(q, pass, pl, proj, rows, c, h, b);
                encode_moe_combine(q, pass, pl, combine, t, c, k);
            }
        }
    }

    /// Record one traversal of the model for `t` rows (ids and positions already
    /// written): the forward, a prefill chunk and a (batched) decode step are this same
    /// code, differing in the row path of the linears ([`StepKind::path`]) and in where
    /// keys and values live.
    pub(super) fn encode_step(&self, pass: &mut wgpu::ComputePass<'_>, t: usize, kind: StepKind) {
        let (q, pl, cfg) = (&self.ctx.queue, &*self.pipelines, &self.config);
        let (c, nh, bias) = (cfg.n_embed, cfg.n_head, cfg.bias);
        let b = if bias { BIAS } else { 0 };
        let ops = &self.ops;
        let (capture, taps, lens) = match kind {
            StepKind::Forward {
                capture,
                taps,
                lens,
            } => (capture, taps, lens),
            _ => (false, &[][..], None),
        };
        let path = kind.path();

        // x = wte(idx) + wpe(pos)
        for (op, ch) in ops.embedding.iter().zip(&self.weights.wte.chunks) {
            encode_embedding(q, pass, pl, op, t, c, ch.row_start, ch.rows);
        }
        if capture {
            encode_row_norm(q, pass, pl, &ops.embed_norm, t, c, 0);
        }
        for (l, blk) in ops.blocks.iter().enumerate() {
            // x = x + attn(ln_1(x))
            encode_layer_norm(q, pass, pl, &blk.ln_1, t, c, bias);
            blk.c_attn.encode(self, pass, t, path, b);
            for tap in taps.iter().filter(|tap| tap.layer == l) {
                let block = self.attention_block();
                encode_attention_weights(q, pass, pl, &tap.op, t, c, nh, block, tap.w0);
            }
            match kind {
                StepKind::Forward { .. } => encode_attention(
                    q,
                    pass,
                    pl,
                    &blk.attn,
                    t,
                    c,
                    nh,
                    KvLayout::fused(c),
                    self.attention_block(),
                ),
                StepKind::Forwards(parts) => {
                    for (op, part) in blk.attn_parts.iter().zip(parts.iter()) {
                        encode_attention(
                            q,
                            pass,
                            pl,
                            op,
                            part.rows,
                            c,
                            nh,
                            KvLayout::fused(c).at(part.row0, part.row0),
                            self.attention_block(),
                        );
                    }
                }
                StepKind::Prefill { parts, .. } => {
                    encode_kv_store(q, pass, pl, &blk.kv_store, t, c);
                    let sg = self.ctx.subgroup_max_size.max(1) as usize;
                    for (i, part) in parts.iter().enumerate() {
                        let op = match &blk.attn_prefill_unaligned {
                            Some(ops) if !part.pos.is_multiple_of(sg) => &ops[i],
                            _ => &blk.attn_prefill[i],
                        };
                        encode_attention(
                            q,
                            pass,
                            pl,
                            op,
                            part.rows,
                            c,
                            nh,
                            KvLayout::paged(c, part.pos, PAGE).at(part.row0, part.table0),
                            self.attention_block(),
                        );
                    }
                }
                StepKind::Decode { .. } => {
                    encode_kv_store(q, pass, pl, &blk.kv_store, t, c);
                    encode_attention_paged(
                        q,
                        pass,
                        pl,
                        &blk.attn_paged,
                        t,
                        c,
                        nh,
                        PAGE,
                        self.attention_block(),
                    );
                }
            }
            blk.c_proj.encode(self, pass, t, path, b | ACCUMULATE);
            // x = x + mlp(ln_2(x)), mlp = c_proj(gelu(c_fc(.))), or the MoE of the block
            encode_layer_norm(q, pass, pl, &blk.ln_2, t, c, bias);
            self.encode_mlp(pass, l, t, path);
            if capture {
                encode_row_norm(q, pass, pl, &blk.norm, t, c, (l + 1) * t);
            }
            if let Some(lens) = lens {
                encode_copy_rows(q, pass, pl, &lens.save[l], t * c, 0, l * t * c);
            }
        }
        // logits = lm_head(ln_f(x)), lm_head tied to wte
        encode_layer_norm(q, pass, pl, &ops.ln_f, t, c, bias);
        let chunks = &self.weights.wte.chunks;
        match kind {
            StepKind::Forward { .. } | StepKind::Forwards(_) => {
                for (op, ch) in ops.lm_head.iter().zip(chunks) {
                    encode_matmul_bt(q, pass, pl, op, t, ch.rows, c, 0);
                }
                if let Some(lens) = lens {
                    let per = t * (2 * lens.k + 1);
                    for (l, tops) in lens.top.iter().enumerate() {
                        encode_copy_rows(q, pass, pl, &lens.restore[l], t * c, l * t * c, 0);
                        encode_layer_norm(q, pass, pl, &ops.ln_f, t, c, bias);
                        for (i, (op, ch)) in ops.lm_head.iter().zip(chunks).enumerate() {
                            encode_matmul_bt(q, pass, pl, op, t, ch.rows, c, 0);
                            let out0 = (l * chunks.len() + i) * per;
                            encode_top_k_rows(
                                q,
                                pass,
                                pl,
                                &tops[i],
                                t,
                                ch.rows,
                                lens.k,
                                ch.row_start,
                                out0,
                                ch.rows,
                                true,
                            );
                        }
                    }
                }
            }
            StepKind::Prefill { parts, argmax } => {
                // the last row of prompt j to row j, then the LM head over those rows
                // in one dispatch (a row's logits are the same in any batch)
                let mut wanted = 0;
                for (j, part) in parts.iter().filter(|p| p.logits).enumerate() {
                    let last = part.row0 + part.rows - 1;
                    encode_copy_rows(q, pass, pl, &ops.last_rows[j], c, last * c, j * c);
                    wanted = j + 1;
                }
                if wanted > 0 {
                    for (op, ch) in ops.lm_head_last.iter().zip(chunks) {
                        encode_matvec_bt(q, pass, pl, op, ch.rows, c, 0, wanted, 0);
                    }
                }
                if argmax {
                    self.encode_argmax(pass, wanted);
                }
            }
            StepKind::Decode { argmax } => {
                for (op, ch) in ops.lm_head_rows.iter().zip(chunks) {
                    encode_matvec_bt(q, pass, pl, op, ch.rows, c, 0, t, 0);
                }
                if argmax {
                    self.encode_argmax(pass, t);
                }
            }
        }
    }

    /// Record the largest logit of each of logits rows `0 .. rows`, per window of
    /// [`ARGMAX_SPAN`] of every wte chunk, to `top1` (`[windows, rows, 3]`).
    fn encode_argmax(&self, pass: &mut wgpu::ComputePass<'_>, rows: usize) {
        let (q, pl) = (&self.ctx.queue, &*self.pipelines);
        let mut out0 = 0;
        for (op, ch) in self.ops.top1.iter().zip(&self.weights.wte.chunks) {
            let (n, span) = (ch.rows, ARGMAX_SPAN);
            encode_top_k_rows(q, pass, pl, op, rows, n, 1, ch.row_start, out0, span, false);
            out0 += top_k_windows(n, span) * rows * 3;
        }
    }

    /// A step's one submission: write its ids and positions, record the traversal of
    /// its rows as `kind`, let `copy` add the copies into the staging buffer (it returns
    /// the floats they fill), submit and read those back. Call inside an error scope.
    pub(super) fn submit_step(
        &self,
        label: &str,
        ids: &[u32],
        positions: &[u32],
        kind: StepKind,
        copy: impl FnOnce(&mut wgpu::CommandEncoder) -> usize,
    ) -> Result<Vec<f32>> {
        let q = &self.ctx.queue;
        q.write_buffer(&self.act.ids, 0, bytemuck::cast_slice(ids));
        q.write_buffer(&self.act.positions, 0, bytemuck::cast_slice(positions));
        let mut enc = self
            .ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(label),
                timestamp_writes: None,
            });
            self.encode_step(&mut pass, ids.len(), kind);
        }
        let floats = copy(&mut enc);
        q.submit([enc.finish()]);
        buffers::map_read(&self.ctx, &self.act.readback, floats)
    }

    /// Several forwards without statistics (`(ids, top_k)` each) in one traversal and
    /// one submission: the rows of each follow the previous one's, each attends within
    /// its own rows at positions from 0, the LM head runs over every row as for a
    /// forward alone, and the last row of each is read back. Every kernel computes a row
    /// by the same expression whatever rows surround it, so each result equals the
    /// forward alone. At most [`MAX_PREFILL_PARTS`] forwards and the context's tokens
    /// together (the activations' rows).
    pub fn forward_many(&self, batch: &[(&[u32], usize)]) -> Result<Vec<ForwardOutput>> {
        if batch.is_empty() || batch.len() > MAX_PREFILL_PARTS {
            return Err(Error::InvalidInput(format!(
                "a shared forward takes 1 to {MAX_PREFILL_PARTS} texts"
            )));
        }
        for (ids, _) in batch {
            self.check_ids(ids)?;
        }
        let t: usize = batch.iter().map(|(ids, _)| ids.len()).sum();
        if t > self.config.context_size {
            return Err(Error::SequenceTooLong {
                len: t,
                max: self.config.context_size,
            });
        }
        let start = Instant::now();
        let mut ids_all = Vec::with_capacity(t);
        let mut positions = Vec::with_capacity(t);
        let mut parts = Vec::with_capacity(batch.len());
        for (ids, _) in batch {
            parts.push(ChunkRows {
                row0: ids_all.len(),
                rows: ids.len(),
                pos: 0,
                table0: 0,
                logits: true,
            });
            ids_all.extend_from_slice(ids);
            positions.extend(0..ids.len() as u32);
        }
        let v = self.config.vocab_size;
        let values = self.ctx.scoped("forward", || {
            self.submit_step(
                "forwards",
                &ids_all,
                &positions,
                StepKind::Forwards(&parts),
                |enc| {
                    // the last row's logits of forward j to row j of the staging buffer
                    let rb = &self.act.readback;
                    for (j, part) in parts.iter().enumerate() {
                        let last = (part.row0 + part.rows - 1) as u64;
                        for (buf, ch) in self.act.logits.iter().zip(&self.weights.wte.chunks) {
                            let (rows, at) = (ch.rows as u64, (j * v + ch.row_start) as u64);
                            enc.copy_buffer_to_buffer(buf, last * rows * 4, rb, at * 4, rows * 4);
                        }
                    }
                    batch.len() * v
                },
            )
        })?;
        let seconds = start.elapsed().as_secs_f64();
        Ok(batch
            .iter()
            .zip(values.chunks(v))
            .map(|((ids, top_k), logits)| ForwardOutput {
                tokens: ids.len(),
                vocab: v,
                top: top_k_softmax(logits, *top_k),
                capture: None,
                seconds,
            })
            .collect())
    }

    /// Run the forward on `ids` with one submission; read back the last position's
    /// logits (for the `top_k` predictions) and, with `capture`, the statistics.
    pub fn forward(&self, ids: &[u32], top_k: usize, capture: bool) -> Result<ForwardOutput> {
        if !capture {
            // the traversal several forwards share, with one text
            let mut one = self.forward_many(&[(ids, top_k)])?;
            return Ok(one.remove(0));
        }
        Ok(self.forward_captured(ids, top_k, &[], 0)?.output)
    }

    /// A forward with its statistics, the attention weights `[NH, T, T]` of each layer
    /// in `attention_layers` (computed in the same pass from the layer's q and k: the
    /// matrix its attention multiplies V by) and, with `lens_k` > 0, the logit lens:
    /// for each layer and position the `lens_k` most likely tokens of the residual
    /// stream after that layer read through the final layer norm and the LM head. At
    /// most [`MAX_CAPTURE_TOKENS`] tokens when either is asked for.
    pub fn forward_captured(
        &self,
        ids: &[u32],
        top_k: usize,
        attention_layers: &[usize],
        lens_k: usize,
    ) -> Result<CapturedForward> {
        self.check_ids(ids)?;
        let start = Instant::now();
        let t = ids.len();
        let cfg = &self.config;
        let (v, c, nh, nl) = (cfg.vocab_size, cfg.n_embed, cfg.n_head, cfg.n_layer);
        if (!attention_layers.is_empty() || lens_k > 0) && t > MAX_CAPTURE_TOKENS {
            let what = if attention_layers.is_empty() {
                "capture_logit_lens returns a layer x position table"
            } else {
                "capture_attention returns T x T weights"
            };
            return Err(Error::InvalidInput(format!(
                "{what} for at most {MAX_CAPTURE_TOKENS} tokens; this text has {t}: shorten it or set max_length"
            )));
        }
        if lens_k > MAX_LENS_K {
            return Err(Error::InvalidInput(format!(
                "capture_logit_lens lists at most {MAX_LENS_K} tokens per layer and position; top_k is {lens_k}"
            )));
        }
        let chunks = &self.weights.wte.chunks;
        let lens = (lens_k > 0).then(|| {
            let saved = buffers::storage(&self.ctx, "logit lens rows", nl * t * c);
            let out = buffers::storage(
                &self.ctx,
                "logit lens",
                nl * chunks.len() * t * (2 * lens_k + 1),
            );
            let (ctx, pl) = (&self.ctx, &*self.pipelines);
            LensTaps {
                k: lens_k,
                save: (0..nl)
                    .map(|_| copy_rows_op(ctx, pl, &self.act.x, &saved))
                    .collect(),
                restore: (0..nl)
                    .map(|_| copy_rows_op(ctx, pl, &saved, &self.act.x))
                    .collect(),
                top: (0..nl)
                    .map(|_| {
                        self.act
                            .logits
                            .iter()
                            .map(|lg| top_k_rows_op(ctx, pl, lg, &out))
                            .collect()
                    })
                    .collect(),
                out,
            }
        });
        if let Some(&l) = attention_layers.iter().find(|&&l| l >= nl) {
            return Err(Error::InvalidInput(format!(
                "capture_attention layer {l} does not exist (the model has {nl} layers, 0..{})",
                nl - 1
            )));
        }
        let per_layer = nh * t * t;
        let weights = (!attention_layers.is_empty()).then(|| {
            buffers::storage(
                &self.ctx,
                "attention weights",
                attention_layers.len() * per_layer,
            )
        });
        let taps: Vec<AttentionTap> = match &weights {
            None => Vec::new(),
            Some(w) => {
                let (ro, cols) = match &self.sparse {
                    Some(sp) => (&sp.row_offsets, &sp.cols),
                    None => (&self.act.dummy, &self.act.dummy),
                };
                attention_layers
                    .iter()
                    .enumerate()
                    .map(|(i, &layer)| AttentionTap {
                        layer,
                        op: attention_weights_op(
                            &self.ctx,
                            &self.pipelines,
                            &self.act.qkv,
                            w,
                            ro,
                            cols,
                            &self.act.kv_tables,
                        ),
                        w0: i * per_layer,
                    })
                    .collect()
            }
        };
        let positions: Vec<u32> = (0..t as u32).collect();
        let kind = StepKind::Forward {
            capture: true,
            taps: &taps,
            lens: lens.as_ref(),
        };
        let (values, attention, lens_rows) = self.ctx.scoped("forward", || {
            let values = self.submit_step("forward", ids, &positions, kind, |enc| {
                // last-row logits, then the statistics
                let rb = &self.act.readback;
                let mut at = 0u64;
                for (buf, ch) in self.act.logits.iter().zip(&self.weights.wte.chunks) {
                    let bytes = (ch.rows * 4) as u64;
                    enc.copy_buffer_to_buffer(buf, ((t - 1) * ch.rows * 4) as u64, rb, at, bytes);
                    at += bytes;
                }
                for e in &self.act.entropy {
                    enc.copy_buffer_to_buffer(e, 0, rb, at, (nh * t * 4) as u64);
                    at += (nh * t * 4) as u64;
                }
                enc.copy_buffer_to_buffer(&self.act.norms, 0, rb, at, ((nl + 1) * t * 4) as u64);
                at += ((nl + 1) * t * 4) as u64;
                let mut floats = v + nl * nh * t + (nl + 1) * t;
                if let Some(m) = &self.act.moe {
                    let per = (2 * cfg.moe_num_experts + 1) * 4;
                    for s in &m.stats {
                        enc.copy_buffer_to_buffer(s, 0, rb, at, per as u64);
                        at += per as u64;
                    }
                    floats += nl * (2 * cfg.moe_num_experts + 1);
                }
                floats
            })?;
            // the weights are read after the step's submission (their own map)
            let attention = match &weights {
                Some(w) => {
                    buffers::read_floats(&self.ctx, w, 0, attention_layers.len() * per_layer)?
                        .chunks(per_layer)
                        .map(<[f32]>::to_vec)
                        .collect()
                }
                None => Vec::new(),
            };
            let lens_rows = match &lens {
                Some(lens) => {
                    let n = nl * chunks.len() * t * (2 * lens_k + 1);
                    buffers::read_floats(&self.ctx, &lens.out, 0, n)?
                }
                None => Vec::new(),
            };
            Ok((values, attention, lens_rows))
        })?;
        // the chunks' candidates of each (layer, position) merged: the k best overall,
        // probabilities against the log-sum-exp over every chunk
        let logit_lens: Vec<Vec<Vec<TokenProb>>> = if lens_k == 0 {
            Vec::new()
        } else {
            let parsed = parse_top_k(&lens_rows, nl * chunks.len() * t, lens_k);
            (0..nl)
                .map(|l| {
                    (0..t)
                        .map(|pos| {
                            let parts: Vec<_> = (0..chunks.len())
                                .map(|i| &parsed[(l * chunks.len() + i) * t + pos])
                                .collect();
                            let top = parts
                                .iter()
                                .map(|(_, lse)| *lse as f64)
                                .fold(f64::NEG_INFINITY, f64::max);
                            let lse = top
                                + parts
                                    .iter()
                                    .map(|(_, x)| (*x as f64 - top).exp())
                                    .sum::<f64>()
                                    .ln();
                            let mut best: Vec<(u32, f32)> =
                                parts.iter().flat_map(|(b, _)| b.iter().copied()).collect();
                            best.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                            best.truncate(lens_k);
                            best.into_iter()
                                .map(|(id, x)| TokenProb {
                                    token_id: id,
                                    probability: (x as f64 - lse).exp() as f32,
                                })
                                .collect()
                        })
                        .collect()
                })
                .collect()
        };
        let top = top_k_softmax(&values[..v], top_k);
        let capture = Some({
            let ent = &values[v..v + nl * nh * t];
            let norms = &values[v + nl * nh * t..v + nl * nh * t + (nl + 1) * t];
            let moe_stats = &values[v + nl * nh * t + (nl + 1) * t..];
            let e = cfg.moe_num_experts;
            let mean = |xs: &[f32]| {
                xs.iter().map(|&x| x as f64).sum::<f64>() as f32 / xs.len().max(1) as f32
            };
            Capture {
                embedding_norm_mean: mean(&norms[..t]),
                layers: (0..nl)
                    .map(|l| {
                        let row = &norms[(l + 1) * t..(l + 2) * t];
                        LayerCapture {
                            layer_idx: l,
                            attention_entropy: (0..nh)
                                .map(|hd| mean(&ent[(l * nh + hd) * t..(l * nh + hd + 1) * t]))
                                .collect(),
                            residual_norm_mean: mean(row),
                            residual_norm_max: row.iter().cloned().fold(0.0, f32::max),
                            sparse_block_size: self.sparse.as_ref().map(|s| s.layout.block),
                            sparse_density: self.sparse.as_ref().map(|s| s.layout.density(t)),
                            moe: self.act.moe.as_ref().map(|_| {
                                let st = &moe_stats[l * (2 * e + 1)..(l + 1) * (2 * e + 1)];
                                MoeCapture {
                                    expert_usage: st[..e].to_vec(),
                                    load_balance_loss: st[2 * e],
                                }
                            }),
                        }
                    })
                    .collect(),
            }
        });
        Ok(CapturedForward {
            output: ForwardOutput {
                tokens: t,
                vocab: v,
                top,
                capture,
                seconds: start.elapsed().as_secs_f64(),
            },
            attention,
            logit_lens,
        })
    }

    /// The full logits `[T, V]` (tests and tools; responses never need them all).
    pub fn forward_logits(&self, ids: &[u32]) -> Result<Vec<f32>> {
        self.forward(ids, 0, false)?;
        let t = ids.len();
        let ranges: Vec<_> = self
            .act
            .logits
            .iter()
            .zip(&self.weights.wte.chunks)
            .map(|(b, ch)| (b, 0, t * ch.rows))
            .collect();
        let parts = buffers::read_many(&self.ctx, &ranges)?;
        let v = self.config.vocab_size;
        let mut out = vec![0.0; t * v];
        for (part, ch) in parts.iter().zip(&self.weights.wte.chunks) {
            for r in 0..t {
                out[r * v + ch.row_start..r * v + ch.row_start + ch.rows]
                    .copy_from_slice(&part[r * ch.rows..(r + 1) * ch.rows]);
            }
        }
        Ok(out)
    }
}

/// Softmax over `logits` (max subtracted) and the `k` most likely ids, ties to the lower id.
pub fn top_k_softmax(logits: &[f32], k: usize) -> Vec<TokenProb> {
    if k == 0 || logits.is_empty() {
        return Vec::new();
    }
    let (max, sum) = exp_sum(logits);
    top_k_ids(logits, k)
        .into_iter()
        .map(|i| TokenProb {
            token_id: i as u32,
            probability: ((logits[i] as f64 - max).exp() / sum) as f32,
        })
        .collect()
}

/// The largest logit and Σ exp(logit − largest): one pass, f32 exps (each within
/// f32's precision; an f64 exp of 50,257 logits costs several times more) summed in f64.
pub fn exp_sum(logits: &[f32]) -> (f64, f64) {
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let sum = logits.iter().map(|&x| (x - max).exp() as f64).sum();
    (max as f64, sum)
}

/// The ids of the `k` largest logits, largest first, ties to the lower id (selected,
/// then only those sorted).
pub fn top_k_ids(logits: &[f32], k: usize) -> Vec<usize> {
    let mut idx = top_k_unordered(logits, k);
    idx.sort_by(|a, b| by_rank(logits, *a, *b));
    idx
}

/// The ids of the `k` largest logits (ties to the lower id), in no particular order.
pub fn top_k_unordered(logits: &[f32], k: usize) -> Vec<usize> {
    let k = k.min(logits.len());
    if k == 0 {
        return Vec::new();
    }
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.select_nth_unstable_by(k - 1, |a, b| by_rank(logits, *a, *b));
    idx.truncate(k);
    idx
}

/// Rank order of ids `a` and `b`: the larger logit first, ties to the lower id.
pub fn by_rank(logits: &[f32], a: usize, b: usize) -> std::cmp::Ordering {
    logits[b].total_cmp(&logits[a]).then(a.cmp(&b))
}
