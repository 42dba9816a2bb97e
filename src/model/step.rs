//! One model traversal on the device: how rows reach the linears (matmul or
//! matrix-vector), the kinds of step (forward, prefill chunk, decode batch), the
//! encoders that record every dispatch of a block into one compute pass, and the
//! submission that reads back only what the step needs.

use super::kv_pool::PAGE;
use super::{Linear, MlpOps, Model, MoeGating, Staged};
use crate::config::Activation;
use crate::error::Result;
use crate::gpu::buffers;
use crate::kernels::attention::{
    encode_attention, encode_attention_paged, encode_attention_weights, runs_chunk, KvLayout,
};
use crate::kernels::embedding::encode_embedding;
use crate::kernels::layer_norm::{encode_layer_norm, encode_norm_add, Norm};
use crate::kernels::logit_cap::encode_logit_cap;
use crate::kernels::logit_lens::{
    encode_copy_rows, encode_gather_rows, encode_top_k_rows, top_k_windows,
};
use crate::kernels::matmul::{
    encode_matmul, encode_matmul_fused, ACCUMULATE, BIAS, GATED, GELU, GELU_ERF,
};
use crate::kernels::matmul_bt::encode_matmul_bt;
use crate::kernels::matvec::{encode_matvec_fused, Fusion, Rope};
use crate::kernels::matvec_bt::{encode_matvec_bt, encode_matvec_bt_normed};
use crate::kernels::moe::{
    encode_moe_combine, encode_moe_gate, encode_moe_matmul, encode_moe_norm_gate, encode_moe_route,
    grouped_rows, swiglu_in_fc, GATHER, RELU, SILU, SWIGLU_OUT,
};
use crate::kernels::row_norm::encode_row_norm;
use crate::kernels::sample::encode_sample;
use crate::kernels::swiglu::{encode_swiglu, GELU_GATE, SCALED};
use crate::kernels::token_rank::{encode_token_rank, encode_token_target};

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

/// The actual next token's log-probability and rank under the final logits or, with
/// the logit lens, under each layer's (`target[l][chunk]`, `rank[l][chunk]`; l over
/// the lens's layers, or the one final): target logits to `tv` (`[l][row]`), each
/// chunk's count and log-sum-exp to `out` (`[l][chunk][row][2]`).
pub(super) struct RankTaps {
    pub target: Vec<Vec<crate::kernels::KernelOp>>,
    pub rank: Vec<Vec<crate::kernels::KernelOp>>,
    pub tv: wgpu::Buffer,
    pub out: wgpu::Buffer,
    /// Each row's next token (the last row: none); bound by the ops, held with them.
    pub _targets: wgpu::Buffer,
}

impl RankTaps {
    /// Record layer `l`'s ranks from the logits now in the LM head's chunks (every
    /// chunk's target logit first: a chunk counts against a logit another may hold).
    fn encode(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        l: usize,
        t: usize,
        chunks: &[buffers::Chunk],
    ) {
        for (op, ch) in self.target[l].iter().zip(chunks) {
            encode_token_target(pass, op, t, ch.rows, ch.row_start, l * t);
        }
        for (i, (op, ch)) in self.rank[l].iter().zip(chunks).enumerate() {
            let out0 = (l * chunks.len() + i) * t * 2;
            encode_token_rank(pass, op, t, ch.rows, ch.row_start, l * t, out0);
        }
    }
}

/// Each token's chosen experts and their gate weights in the MoE layers of a captured
/// forward, copied after each MoE layer's gate (`ids[i]`, `weights[i]` for the i-th
/// MoE layer) to `out`: per MoE layer, the ids then the weights, each `stride` floats
/// (T·K rounded up to whole vec4s).
pub(super) struct RoutingTaps {
    pub ids: Vec<crate::kernels::KernelOp>,
    pub weights: Vec<crate::kernels::KernelOp>,
    pub stride: usize,
    pub out: wgpu::Buffer,
}

/// What a traversal of shared forwards leaves ([`StepKind::Forwards`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ForwardsOut {
    /// Each forward's last row's logits, gathered to rows 0.. of the logits as a
    /// prefill's are.
    LastLogits,
    /// The logits of every row (as a forward alone).
    EveryLogits,
    /// No LM head: every row after the final norm, in `ln` (embeddings).
    Hidden,
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
        ranks: Option<&'a RankTaps>,
        routing: Option<&'a RoutingTaps>,
    },
    /// Up to [`MAX_PREFILL_PARTS`] forwards without statistics sharing the traversal:
    /// each attends within its own rows (`row0 ..`, positions from 0), and leaves what
    /// `out` says.
    Forwards {
        parts: &'a [ChunkRows],
        out: ForwardsOut,
    },
    /// Chunks of up to [`MAX_PREFILL_PARTS`] prompts (rows, slots and tables already
    /// written): their keys and values go to the pool, each prompt is attended by the
    /// forward's kernel through its page table (with the hardware kernels, a burst of
    /// short prompts by one dispatch over every row: `Model::burst`), the logits of
    /// each last row asked for
    /// are gathered to rows 0.. of the logits; with `argmax`, their largest logits
    /// are taken on the device as in a decode step. A mixed step's first `decode` rows
    /// are decode rows (one a generation, each with its logits, gathered before the
    /// prompts'): only on the deferred blocks, where every row takes the same
    /// dispatches, and with the hardware LM head a decode step takes.
    Prefill {
        parts: &'a [ChunkRows],
        decode: usize,
        argmax: bool,
        sample: bool,
    },
    /// A decode step: one row per generation, each attending to its own pages
    /// (`attention_paged`); the logits of every row, and with `argmax` each row's
    /// largest logit taken on the device (`top_k_rows` with k = 1 per wte chunk in
    /// windows of [`ARGMAX_SPAN`], to `top1`), so greedy rows need not read their
    /// logits back; with `sample`, each row's draw (its spec in `sample_specs`) taken
    /// on the device (`sample_rows`, to `picked`).
    Decode { argmax: bool, sample: bool },
}

impl StepKind<'_> {
    /// The row path of the linears: the matmul for a forward's and a prompt's rows, the
    /// matrix-vector kernels for a decode step's.
    pub(super) fn path(&self) -> RowPath {
        match self {
            StepKind::Decode { .. } => RowPath::Matvec,
            StepKind::Forward { .. } | StepKind::Forwards { .. } | StepKind::Prefill { .. } => {
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
        pass: &mut wgpu::ComputePass<'_>,
        t: usize,
        path: RowPath,
        flags: u32,
    ) {
        self.encode_fused(pass, t, path, flags, Fusion::default());
    }

    /// [`Linear::encode`] with `fusion`: its norm through the `normed` or the
    /// [`Staged::Normed`] op (the residual stream in, the norm before this linear
    /// folded in), SwiGLU (flag [`GATED`]) through the [`Staged::Gated`] op, its KV
    /// store through an op bound with the pool (a qkv projection).
    fn encode_fused(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        t: usize,
        path: RowPath,
        flags: u32,
        fusion: Fusion,
    ) {
        let (n, k) = (self.n, self.k);
        // the ops without the norm folded in (the rest of `fusion` still applies)
        let unnormed = Fusion {
            norm: None,
            ..fusion
        };
        match (path, &self.normed, &self.staged) {
            (RowPath::Matmul, _, Some(Staged::Normed(op))) if fusion.norm.is_some() => {
                encode_matmul_fused(pass, op, (t, n, k), flags, fusion)
            }
            (RowPath::Matmul, _, Some(Staged::Gated(op))) if flags & GATED != 0 => {
                encode_matmul_fused(pass, op, (t, n, k), flags, unnormed)
            }
            (RowPath::Matmul, _, _) => {
                encode_matmul_fused(pass, &self.matmul, (t, n, k), flags, unnormed)
            }
            (RowPath::Matvec, Some(op), _) if fusion.norm.is_some() => {
                encode_matvec_fused(pass, op, t, n, k, flags, fusion)
            }
            (RowPath::Matvec, _, _) => {
                encode_matvec_fused(pass, &self.matvec, t, n, k, flags, unnormed)
            }
        }
    }

    /// Whether this linear takes SwiGLU's gating in its staging on `path` (a down
    /// projection's [`Staged::Gated`], flag [`GATED`]).
    fn gates(&self, path: RowPath) -> bool {
        path == RowPath::Matmul && matches!(self.staged, Some(Staged::Gated(_)))
    }

    /// The norm this linear folds in on `path`: `norm` when its steps on that path read
    /// the residual stream (the `normed` op of the matrix-vector path,
    /// [`Staged::Normed`] of the matmul's), else `None` (the norm is dispatched).
    fn folds(&self, path: RowPath, norm: Norm) -> Option<Norm> {
        let folded = match path {
            RowPath::Matvec => self.normed.is_some(),
            RowPath::Matmul => matches!(self.staged, Some(Staged::Normed(_))),
        };
        folded.then_some(norm)
    }
}

impl Model {
    /// The norm of every block and of the final layer: RMSNorm for the Llama families,
    /// LayerNorm (with bias when the model has biases) for GPT-2.
    pub(super) fn norm(&self) -> Norm {
        super::block_norm(&self.config)
    }

    /// The flag of a block's output and down projections: add into the residual stream
    /// ([`ACCUMULATE`]), or none where they write `ln` for a post-norm to add (Gemma).
    fn adds(&self) -> u32 {
        match self.config.architecture.post_norms() {
            true => 0,
            false => ACCUMULATE,
        }
    }

    /// The heads layer `l`'s qkv projection's epilogue rotates (the rotary families;
    /// none in SmolLM3's layers without positions).
    pub(super) fn rope(&self, l: usize) -> Option<Rope> {
        let heads = self.config.heads();
        let nope = self.config.nope_layers.contains(&l);
        self.weights
            .rope
            .as_ref()
            .filter(|_| !nope)
            .map(|_| Rope::of(heads))
    }

    /// What a qkv projection's epilogue does besides its product: store the keys and
    /// values (`pooled`: a prefill chunk's or a decode step's; `(Q, KV)`) and rotate the
    /// queries and keys. Neither in a block with a head norm (`head_norm`, Qwen3): its
    /// dispatch after the projection does both, after the norm.
    pub(super) fn qkv_epilogue(
        &self,
        (l, head_norm): (usize, Option<&crate::kernels::KernelOp>),
        pooled: bool,
    ) -> (Option<(usize, usize)>, Option<Rope>) {
        let heads = self.config.heads();
        match head_norm {
            Some(_) => (None, None),
            None => (
                pooled.then_some((heads.q_width(), heads.kv_width())),
                self.rope(l),
            ),
        }
    }

    /// Record a block's head norm over `t` rows of qkv, if it has one, with the rotation
    /// and (`pooled`) the KV store its projection left to it.
    pub(super) fn encode_head_norm(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        (l, head_norm): (usize, Option<&crate::kernels::KernelOp>),
        t: usize,
        pooled: bool,
    ) {
        if let Some(op) = head_norm {
            use crate::kernels::head_norm::{encode_head_norm, HeadNormSpan};
            let span = match self.config.architecture.whole_head_norm() {
                true => HeadNormSpan::Whole,
                false => HeadNormSpan::Head,
            };
            let (heads, eps) = (self.config.heads(), self.config.norm_eps);
            encode_head_norm(pass, op, t, heads, (eps, span), pooled, self.rope(l));
        }
    }

    /// A matmul-path prefill step of several short prompts (a burst of clients
    /// arriving together) whose attention the hardware kernels take in one dispatch
    /// over every row (`attention_paged_workgroup`, the walk a short prompt's rows take
    /// alone) instead of one a prompt: on a GPU each of those is a latency-bound
    /// launch (16 prompts: 16 a block).
    fn burst(&self, parts: &[ChunkRows]) -> bool {
        self.hardware_kernels
            && parts.len() > 1
            && parts
                .iter()
                .all(|p| p.rows <= super::partials::PREFILL_ROWS)
    }

    /// Record `x += mlp(ln_2(x))` of block `l` for `t` rows: ln_2 dispatched, or folded
    /// into the up projection of a decode step (the hardware kernels, a dense MLP).
    fn encode_mlp(&self, pass: &mut wgpu::ComputePass<'_>, l: usize, t: usize, path: RowPath) {
        let cfg = &self.config;
        let (c, h) = (cfg.n_embed, cfg.ffn_hidden());
        let b = if cfg.has_mlp_bias() { BIAS } else { 0 };
        let blk = &self.ops.blocks[l];
        let folded = match &blk.mlp {
            MlpOps::Dense { c_fc, .. } => c_fc.folds(path, self.norm()),
            MlpOps::Moe { gating, .. } => {
                matches!(gating, MoeGating::Normed(_)).then_some(self.norm())
            }
        };
        // (a parallel block's MLP reads ln_1's output, still in `ln`; an encoder's ln_2
        // normalises the stream after the attention, the MLP's input and residual)
        let arch = cfg.architecture;
        if folded.is_none() && !arch.parallel_block() && (arch.pre_norms() || arch.encoder()) {
            encode_layer_norm(pass, &blk.ln_2, t, c, self.norm());
        }
        let gelu = match arch.encoder() {
            true => GELU_ERF,
            false => GELU,
        };
        let up = Fusion {
            norm: folded,
            ..Default::default()
        };
        match &blk.mlp {
            MlpOps::Dense {
                c_fc,
                swiglu: None,
                fc_proj,
            } => {
                c_fc.encode_fused(pass, t, path, b | gelu, up);
                fc_proj.encode(pass, t, path, b | self.adds());
            }
            MlpOps::Dense {
                c_fc,
                swiglu: Some(swiglu),
                fc_proj,
            } => {
                // down(silu(gate(x)) · up(x)): gate | up in one matmul; the tile
                // matmuls fold SwiGLU into the down projection's staging
                c_fc.encode_fused(pass, t, path, b, up);
                if fc_proj.gates(path) {
                    fc_proj.encode(pass, t, path, b | self.adds() | GATED);
                } else {
                    let gelu = cfg.architecture.gelu_gate();
                    encode_swiglu(pass, swiglu, t, h, if gelu { GELU_GATE } else { 0 });
                    fc_proj.encode(pass, t, path, b | self.adds());
                }
            }
            MlpOps::Moe {
                gating,
                route,
                fc,
                swiglu,
                proj,
                combine,
                shared,
            } => {
                // probabilities over experts, top-k, tokens grouped per expert, the
                // experts' MLPs over the grouped rows (SwiGLU experts: gate | up, then
                // the gated rows), weighted sum back into x
                let (e, k, he) = (cfg.moe_num_experts, cfg.moe_top_k, cfg.moe_hidden());
                let rows = grouped_rows(t, e, k);
                let act = match cfg.moe_activation {
                    Activation::Gelu => GELU,
                    Activation::Relu => RELU,
                    Activation::Silu => SILU,
                };
                let renorm = cfg.moe_norm_topk_prob;
                match gating {
                    MoeGating::Separate { router, gate } => {
                        router.encode(pass, t, path, 0);
                        encode_moe_gate(pass, gate, t, (e, k), renorm);
                    }
                    MoeGating::Normed(gate) => encode_moe_norm_gate(
                        pass,
                        gate,
                        (t, c),
                        (e, k),
                        renorm,
                        self.norm(),
                        shared.is_some(),
                    ),
                }
                encode_moe_route(pass, route, t, e, k);
                match swiglu {
                    // every tile few-row: SwiGLU in the gate | up projection
                    Some(sw) if swiglu_in_fc(t) => {
                        encode_moe_matmul(
                            pass,
                            &sw.fc_gated,
                            (t, rows),
                            2 * he,
                            c,
                            b | GATHER | SWIGLU_OUT,
                        );
                    }
                    Some(sw) => {
                        encode_moe_matmul(pass, fc, (t, rows), 2 * he, c, b | GATHER);
                        encode_swiglu(pass, &sw.swiglu, rows, he, 0);
                    }
                    None => encode_moe_matmul(pass, fc, (t, rows), he, c, b | GATHER | act),
                }
                encode_moe_matmul(pass, proj, (t, rows), c, he, b);
                encode_moe_combine(pass, combine, t, c, k);
                // x += sigmoid(ln · w_gate) · down(silu(gate(ln)) · up(ln)) (Qwen2-MoE)
                if let Some(sh) = shared {
                    let hs = cfg.moe_shared_expert_size.unwrap_or(0);
                    sh.c_fc.encode(pass, t, path, 0);
                    if let Some(gate) = &sh.gate {
                        encode_matmul(pass, gate, t, 4, c, 0);
                    }
                    encode_swiglu(pass, &sh.swiglu, t, hs, SCALED);
                    sh.fc_proj.encode(pass, t, path, ACCUMULATE);
                }
            }
        }
    }

    /// Record one traversal of the model for `t` rows (ids and positions already
    /// written): the forward, a prefill chunk and a (batched) decode step are this same
    /// code, differing in the row path of the linears ([`StepKind::path`]) and in where
    /// keys and values live. With the hardware kernels a decode step's blocks, and a
    /// short prefill chunk's, take the deferred dispatches instead (`partials.rs`: three
    /// a GPT-2 block), then the stream is made whole for the LM head.
    pub(super) fn encode_step(&self, pass: &mut wgpu::ComputePass<'_>, t: usize, kind: StepKind) {
        let cfg = &self.config;
        let c = cfg.n_embed;
        let norm = self.norm();
        let qkv_b = if cfg.has_qkv_bias() { BIAS } else { 0 };
        let o_b = if cfg.has_o_bias() { BIAS } else { 0 };
        let learned = self.weights.wpe.is_some();
        let ops = &self.ops;
        let (capture, taps, lens, ranks, routing) = match kind {
            StepKind::Forward {
                capture,
                taps,
                lens,
                ranks,
                routing,
            } => (capture, taps, lens, ranks, routing),
            _ => (false, &[][..], None, None, None),
        };
        let path = kind.path();

        // a decode step's blocks with their residual adds deferred (hardware kernels),
        // and a short prefill chunk's
        let short = |decode: usize| {
            self.mixed_rows()
                .is_some_and(|m| t - decode <= m.prompt && t <= m.total)
        };
        let deferred = match kind {
            StepKind::Decode { .. } => ops.partials.as_ref(),
            StepKind::Prefill { decode, .. } if short(decode) => ops.partials.as_ref(),
            _ => None,
        };
        // x = wte(idx) + wpe(pos) (the rotary families: wte(idx)); the deferred blocks'
        // first projection reads it from wte and wpe itself where wte is one binding
        if !deferred.is_some_and(|d| d.embeds) {
            for (op, ch) in ops.embedding.iter().zip(&self.weights.wte.chunks) {
                let scale = cfg.embed_scale();
                encode_embedding(pass, op, t, c, (ch.row_start, ch.rows), (learned, scale));
            }
        }
        // an encoder's embedding, in `ln`, normalised into `x`
        if let Some(ln_e) = &ops.ln_e {
            encode_layer_norm(pass, ln_e, t, c, norm);
        }
        if capture {
            encode_row_norm(pass, &ops.embed_norm, t, c, 0);
        }
        // a prefill chunk's and a decode step's keys and values go to the pool from the
        // qkv projection's epilogue (or its head norm's), the rotary families' queries and
        // keys rotated first
        let pooled = matches!(kind, StepKind::Prefill { .. } | StepKind::Decode { .. });
        // a burst's rows attend row by row, as a decode step's (decided once a step)
        let burst = matches!(kind, StepKind::Prefill { parts, .. } if self.burst(parts));
        for (l, blk) in ops.blocks.iter().enumerate() {
            // this layer's window (Gemma's global layers between windowed ones: none)
            let heads = cfg.layer_heads(l);
            if let Some(d) = deferred {
                self.encode_block_deferred(pass, d, (l, blk.head_norm.as_ref()), t);
                continue;
            }
            // x = x + attn(ln_1(x)), rotary positions on q and k; ln_1 dispatched, or
            // folded into the qkv projection of a decode step (hardware kernels)
            let folded = blk.c_attn.folds(path, norm);
            if folded.is_none() && cfg.architecture.pre_norms() {
                encode_layer_norm(pass, &blk.ln_1, t, c, norm);
            }
            let (kv, rope) = self.qkv_epilogue((l, blk.head_norm.as_ref()), pooled);
            let qkv = Fusion {
                kv,
                norm: folded,
                rope,
                ..Default::default()
            };
            blk.c_attn.encode_fused(pass, t, path, qkv_b, qkv);
            self.encode_head_norm(pass, (l, blk.head_norm.as_ref()), t, pooled);
            for tap in taps.iter().filter(|tap| tap.layer == l) {
                let block = self.attention_block();
                encode_attention_weights(pass, &tap.op, t, heads, block, tap.w0);
            }
            match kind {
                StepKind::Forward { .. } => encode_attention(
                    pass,
                    &blk.attn,
                    t,
                    heads,
                    KvLayout::fused(heads),
                    self.attention_block(),
                ),
                StepKind::Forwards { parts, .. } => {
                    for (op, part) in blk.attn_parts.iter().zip(parts.iter()) {
                        encode_attention(
                            pass,
                            op,
                            part.rows,
                            heads,
                            KvLayout::fused(heads).at(part.row0, part.row0),
                            self.attention_block(),
                        );
                    }
                }
                StepKind::Prefill { parts, .. } if !burst => {
                    let block = self.attention_block();
                    for (i, part) in parts.iter().enumerate() {
                        let op = match &blk.attn_prefill_unaligned {
                            Some(ops)
                                if !runs_chunk(
                                    &self.ctx,
                                    "sparse_attention_subgroup",
                                    block,
                                    part.pos,
                                ) =>
                            {
                                &ops[i]
                            }
                            _ => &blk.attn_prefill[i],
                        };
                        encode_attention(
                            pass,
                            op,
                            part.rows,
                            heads,
                            KvLayout::paged(heads, part.pos, PAGE).at(part.row0, part.table0),
                            self.attention_block(),
                        );
                    }
                }
                // every row through its own page table and position, in one dispatch: a
                // decode step's rows, a burst's (as a short prompt's rows alone)
                StepKind::Prefill { .. } | StepKind::Decode { .. } => {
                    encode_attention_paged(
                        pass,
                        &blk.attn_paged,
                        t,
                        heads,
                        PAGE,
                        self.attention_block(),
                    );
                }
            }
            blk.c_proj.encode(pass, t, path, o_b | self.adds());
            if let Some((post_attn, _)) = &blk.post_norms {
                encode_norm_add(pass, post_attn, t, c, norm);
            }
            // x = x + mlp(ln_2(x)), mlp = c_proj(gelu(c_fc(.))), SwiGLU, or the MoE
            self.encode_mlp(pass, l, t, path);
            if let Some((_, post_mlp)) = &blk.post_norms {
                encode_norm_add(pass, post_mlp, t, c, norm);
            }
            // an encoder's x = norm(ln + mlp(ln)) (the down projection added to `ln`)
            if let Some(ln_3) = &blk.ln_3 {
                encode_layer_norm(pass, ln_3, t, c, norm);
            }
            if let Some(r) = routing.filter(|_| cfg.is_moe_layer(l)) {
                // the i-th MoE layer: the layers before it that route
                let i = (0..l).filter(|&j| cfg.is_moe_layer(j)).count();
                encode_copy_rows(pass, &r.ids[i], r.stride, 0, 2 * i * r.stride);
                encode_copy_rows(pass, &r.weights[i], r.stride, 0, (2 * i + 1) * r.stride);
            }
            if capture {
                encode_row_norm(pass, &blk.norm, t, c, (l + 1) * t);
            }
            if let Some(lens) = lens {
                encode_copy_rows(pass, &lens.save[l], t * c, 0, l * t * c);
            }
        }
        if let Some(d) = deferred {
            self.encode_stream_whole(pass, d, t);
        }
        // logits = lm_head(ln_f(x)), lm_head tied to wte or its own; a decode step's
        // hardware LM head folds ln_f in, and takes a prefill step's asked rows
        let lm_head_normed = match kind {
            StepKind::Decode { .. } | StepKind::Prefill { .. } => ops.lm_head_normed.as_ref(),
            _ => None,
        };
        if lm_head_normed.is_none() && !cfg.architecture.encoder() {
            encode_layer_norm(pass, &ops.ln_f, t, c, norm);
        }
        let chunks = &self.weights.wte.chunks;
        match kind {
            StepKind::Forwards {
                parts,
                out: ForwardsOut::LastLogits,
            } => {
                self.encode_last_rows_head(pass, 0, parts, None);
            }
            StepKind::Forwards {
                out: ForwardsOut::Hidden,
                ..
            } => {}
            StepKind::Forward { .. } | StepKind::Forwards { .. } => {
                for (i, (op, ch)) in ops.lm_head.iter().zip(chunks).enumerate() {
                    encode_matmul_bt(pass, op, t, ch.rows, c, 0);
                    self.encode_logit_cap(pass, i, t);
                }
                if let (Some(r), None) = (ranks, lens) {
                    r.encode(pass, 0, t, chunks);
                }
                if let Some(lens) = lens {
                    let per = t * (2 * lens.k + 1);
                    for (l, tops) in lens.top.iter().enumerate() {
                        encode_copy_rows(pass, &lens.restore[l], t * c, l * t * c, 0);
                        encode_layer_norm(pass, &ops.ln_f, t, c, norm);
                        for (i, (op, ch)) in ops.lm_head.iter().zip(chunks).enumerate() {
                            encode_matmul_bt(pass, op, t, ch.rows, c, 0);
                            self.encode_logit_cap(pass, i, t);
                            let out0 = (l * chunks.len() + i) * per;
                            encode_top_k_rows(
                                pass,
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
                        if let Some(r) = ranks {
                            r.encode(pass, l, t, chunks);
                        }
                    }
                }
            }
            StepKind::Prefill {
                parts,
                decode,
                argmax,
                sample,
            } => {
                let wanted = self.encode_last_rows_head(pass, decode, parts, lm_head_normed);
                if argmax {
                    self.encode_argmax(pass, wanted);
                }
                if sample {
                    self.encode_draws(pass, wanted);
                }
            }
            StepKind::Decode { argmax, sample } => {
                match lm_head_normed {
                    Some(normed) => {
                        for (op, ch) in normed.iter().zip(chunks) {
                            let rows = (0, t, 0);
                            encode_matvec_bt_normed(
                                pass,
                                op,
                                (ch.rows, c),
                                rows,
                                Some(norm),
                                false,
                            );
                        }
                    }
                    None => {
                        for (op, ch) in ops.lm_head_rows.iter().zip(chunks) {
                            encode_matvec_bt(pass, op, ch.rows, c, 0, t, 0);
                        }
                    }
                }
                (0..chunks.len()).for_each(|i| self.encode_logit_cap(pass, i, t));
                if argmax {
                    self.encode_argmax(pass, t);
                }
                if sample {
                    self.encode_draws(pass, t);
                }
            }
        }
    }

    /// Record the logits of the first `decode` rows and of the last row of each part
    /// asking for them (`logits`), in that order to logits rows 0.., through their list
    /// (written now: each traversal is its own submission) and the LM head over them
    /// in one dispatch (a row's logits are the same in any batch): the `normed` head,
    /// ln_f folded in, reading the listed rows of x where they lie, or the plain one
    /// over the rows gathered into `att` after ln_f (no decode rows). Returns how many.
    fn encode_last_rows_head(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        decode: usize,
        parts: &[ChunkRows],
        normed: Option<&Vec<crate::kernels::RowsOp>>,
    ) -> usize {
        let (c, ops) = (self.config.n_embed, &self.ops);
        let asked: Vec<u32> = (0..decode)
            .chain(
                parts
                    .iter()
                    .filter(|p| p.logits)
                    .map(|p| p.row0 + p.rows - 1),
            )
            .map(|r| r as u32)
            .collect();
        debug_assert!(decode == 0 || normed.is_some());
        let wanted = asked.len();
        if wanted > 0 {
            let list = bytemuck::cast_slice(&asked);
            self.ctx.queue.write_buffer(&self.act.gather_list, 0, list);
            let chunks = &self.weights.wte.chunks;
            match normed {
                Some(head) => {
                    for (op, ch) in head.iter().zip(chunks) {
                        let (rows, norm) = ((0, wanted, 0), Some(self.norm()));
                        encode_matvec_bt_normed(pass, op, (ch.rows, c), rows, norm, true);
                    }
                }
                None => {
                    encode_gather_rows(pass, &ops.last_rows, wanted, c);
                    for (op, ch) in ops.lm_head_last.iter().zip(chunks) {
                        encode_matvec_bt(pass, op, ch.rows, c, 0, wanted, 0);
                    }
                }
            }
            (0..chunks.len()).for_each(|i| self.encode_logit_cap(pass, i, wanted));
        }
        wanted
    }

    /// Record the soft cap of logits rows `0 .. rows` of wte chunk `i`
    /// (`final_logit_softcapping`; nothing without one).
    fn encode_logit_cap(&self, pass: &mut wgpu::ComputePass<'_>, i: usize, rows: usize) {
        if let (Some(op), Some(cap)) = (
            self.ops.logit_cap.get(i),
            self.config.final_logit_softcapping,
        ) {
            let n = rows * self.weights.lm_head().chunks[i].rows;
            encode_logit_cap(pass, op, n, cap);
        }
    }

    /// Record the largest logit of each of logits rows `0 .. rows`, per window of
    /// [`ARGMAX_SPAN`] of every wte chunk, to `top1` (`[windows, rows, 3]`).
    fn encode_argmax(&self, pass: &mut wgpu::ComputePass<'_>, rows: usize) {
        let (_q, _pl) = (&self.ctx.queue, &*self.pipelines);
        let mut out0 = 0;
        for (op, ch) in self.ops.top1.iter().zip(&self.weights.wte.chunks) {
            let (n, span) = (ch.rows, ARGMAX_SPAN);
            encode_top_k_rows(pass, op, rows, n, 1, ch.row_start, out0, span, false);
            out0 += top_k_windows(n, span) * rows * 3;
        }
    }

    /// Record the device's draw for logits rows `0 .. rows` (those whose spec in
    /// `sample_specs` asks for one; logits in more chunks than the kernel reads: nothing
    /// is drawn, and the caller refused the rows).
    fn encode_draws(&self, pass: &mut wgpu::ComputePass<'_>, rows: usize) {
        if let Some(op) = &self.ops.sample {
            let widths = self.weights.lm_head().chunks.iter().map(|c| c.rows);
            encode_sample(pass, op, rows, widths);
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
        let (index, floats) =
            self.submit_traversal(label, StepIds::Host(ids), positions, kind, copy);
        let t0 = std::time::Instant::now();
        let out = buffers::map_read(&self.ctx, &self.act.readback, floats, Some(index));
        self.host_times_add(|t| t.wait_s += t0.elapsed().as_secs_f64());
        out
    }

    /// Record and submit a step's traversal of `positions.len()` rows (its ids as
    /// `ids` says), `copy` adding its read-back copies (returning the floats they
    /// fill); returns the submission, to wait for, and those floats.
    pub(super) fn submit_traversal(
        &self,
        label: &str,
        ids: StepIds,
        positions: &[u32],
        kind: StepKind,
        copy: impl FnOnce(&mut wgpu::CommandEncoder) -> usize,
    ) -> (wgpu::SubmissionIndex, usize) {
        let t0 = std::time::Instant::now();
        let q = &self.ctx.queue;
        let rows = positions.len();
        let (host0, host) = match ids {
            StepIds::Host(ids) => (0, ids),
            StepIds::Drawn(rest) => (rows - rest.len(), rest),
        };
        if !host.is_empty() {
            let at = host0 as u64 * 4;
            q.write_buffer(&self.act.ids, at, bytemuck::cast_slice(host));
        }
        q.write_buffer(&self.act.positions, 0, bytemuck::cast_slice(positions));
        let mut enc = self
            .ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) });
        if host0 > 0 {
            // after the previous step's draw, in queue order
            enc.copy_buffer_to_buffer(&self.act.picked, 0, &self.act.ids, 0, host0 as u64 * 4);
        }
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(label),
                timestamp_writes: None,
            });
            self.encode_step(&mut pass, rows, kind);
        }
        let floats = copy(&mut enc);
        let recorded = enc.finish();
        let t1 = std::time::Instant::now();
        let index = q.submit([recorded]);
        let t2 = std::time::Instant::now();
        self.host_times_add(|t| {
            t.steps += 1;
            t.record_s += (t1 - t0).as_secs_f64();
            t.submit_s += (t2 - t1).as_secs_f64();
        });
        (index, floats)
    }

    /// Add to the host's step times.
    pub(super) fn host_times_add(&self, f: impl FnOnce(&mut super::HostTimes)) {
        f(&mut self.host_times.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

/// Where a step's token ids come from.
#[derive(Clone, Copy)]
pub(super) enum StepIds<'a> {
    /// Written by the host.
    Host(&'a [u32]),
    /// The first rows' ids the model's last generation step drew (`picked`), row for
    /// row; the rows after them (a chained mixed step's prompts) these, from the host.
    Drawn(&'a [u32]),
}
