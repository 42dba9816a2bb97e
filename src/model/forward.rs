//! The forward pass, readable top to bottom like nanoGPT's `GPT.forward`: every
//! dispatch recorded into one compute pass, one submission, then only the numbers a
//! response needs are read back (last-row logits; capture statistics when asked).

use std::time::Instant;

use serde::Serialize;

use super::{
    Activations, BlockOps, DecodeOps, DeviceWeights, MlpOps, MlpWeights, Model, Ops,
    SparseAttention,
};
use crate::config::{Activation, Dtype, ModelConfig};
use crate::error::{Error, Result};
use crate::gpu::{buffers, GpuContext, Pipelines};
use crate::kernels::attention::{
    attention_op, attention_variant, encode_attention, sparse_attention_op, KvLayout,
};
use crate::kernels::embedding::{embedding_op, encode_embedding};
use crate::kernels::layer_norm::{encode_layer_norm, layer_norm_op};
use crate::kernels::matmul::{encode_matmul, matmul_op, matmul_variant_op, ACCUMULATE, BIAS, GELU};
use crate::kernels::matmul_bt::{encode_matmul_bt, matmul_bt_variant_op};
use crate::kernels::matvec::{self, encode_matvec, matvec_variant_op};
use crate::kernels::matvec_bt::{self, matvec_bt_op};
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

/// Bind every dispatch of the forward once, at model build.
pub(super) fn bind_ops(
    ctx: &GpuContext,
    pl: &Pipelines,
    w: &DeviceWeights,
    a: &Activations,
    sparse: Option<&SparseAttention>,
    cfg: &ModelConfig,
) -> Ops {
    let hs = cfg.head_size();
    let half_weights = cfg.dtype == Dtype::Float16;
    let hardware = cfg.kernels.hardware(ctx.details.is_software());
    let (c, hidden) = (cfg.n_embed, cfg.ffn_hidden());
    // kernels with a GPU-shaped twin: layer norm and the matrix-vector products
    let ln = if hardware {
        "layer_norm_workgroup"
    } else {
        "layer_norm"
    };
    // kernels of the blocks' linears: f32 weights, or half floats (dtype float16)
    // kernels reading wte (embedding, LM head) and the blocks' linears
    let (embed, lm_head, lm_head_one, lin, moe_lin) = if half_weights {
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
    // matrix-vector kernel for a linear with `n` outputs
    let vec = |n: usize| matvec::variant_for(pl, hardware, half_weights, n);
    let or_dummy =
        |b: &Option<wgpu::Buffer>| -> wgpu::Buffer { b.clone().unwrap_or_else(|| a.dummy.clone()) };
    let blocks = w
        .blocks
        .iter()
        .zip(&a.entropy)
        .enumerate()
        .map(|(l, (b, ent))| BlockOps {
            ln_1: layer_norm_op(ctx, pl, ln, &a.x, &b.ln_1_w, &or_dummy(&b.ln_1_b), &a.ln),
            c_attn: matmul_variant_op(ctx, pl, lin, &a.ln, &b.attn_w, &or_dummy(&b.attn_b), &a.qkv),
            attn: match sparse {
                Some(sp) => sparse_attention_op(
                    ctx,
                    pl,
                    sp.variant,
                    &a.qkv,
                    &a.qkv,
                    &a.qkv,
                    &a.att,
                    ent,
                    &sp.row_offsets,
                    &sp.cols,
                ),
                None => attention_op(
                    ctx,
                    pl,
                    attention_variant(pl, hs, hardware),
                    &a.qkv,
                    &a.qkv,
                    &a.qkv,
                    &a.att,
                    ent,
                ),
            },
            c_proj: matmul_variant_op(ctx, pl, lin, &a.att, &b.proj_w, &or_dummy(&b.proj_b), &a.x),
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
                    c_fc: matmul_variant_op(ctx, pl, lin, &a.ln, fc_w, &or_dummy(fc_b), &a.hidden),
                    fc_proj: matmul_variant_op(
                        ctx,
                        pl,
                        lin,
                        &a.hidden,
                        fc_proj_w,
                        &or_dummy(fc_proj_b),
                        &a.x,
                    ),
                },
                (MlpWeights::Moe { .. }, None) => {
                    unreachable!("MoE weights come with MoE activations")
                }
            },
            norm: row_norm_op(ctx, pl, &a.x, &a.norms),
        })
        .collect();
    Ops {
        embedding: w
            .wte
            .chunks
            .iter()
            .map(|ch| embedding_op(ctx, pl, embed, &a.ids, &ch.buffer, &w.wpe, &a.x))
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
        lm_head_one: w
            .wte
            .chunks
            .iter()
            .zip(&a.logits)
            .map(|(ch, out)| matvec_bt_op(ctx, pl, lm_head_one, &a.ln, &ch.buffer, out))
            .collect(),
        decode: w
            .blocks
            .iter()
            .map(|b| DecodeOps {
                c_attn: matvec_variant_op(
                    ctx,
                    pl,
                    vec(3 * c),
                    &a.ln,
                    &b.attn_w,
                    &or_dummy(&b.attn_b),
                    &a.qkv,
                ),
                c_proj: matvec_variant_op(
                    ctx,
                    pl,
                    vec(c),
                    &a.att,
                    &b.proj_w,
                    &or_dummy(&b.proj_b),
                    &a.x,
                ),
                mlp: match &b.mlp {
                    MlpWeights::Dense {
                        fc_w,
                        fc_b,
                        fc_proj_w,
                        fc_proj_b,
                    } => Some((
                        matvec_variant_op(
                            ctx,
                            pl,
                            vec(hidden),
                            &a.ln,
                            fc_w,
                            &or_dummy(fc_b),
                            &a.hidden,
                        ),
                        matvec_variant_op(
                            ctx,
                            pl,
                            vec(c),
                            &a.hidden,
                            fc_proj_w,
                            &or_dummy(fc_proj_b),
                            &a.x,
                        ),
                    )),
                    MlpWeights::Moe { .. } => None,
                },
            })
            .collect(),
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

    /// Record `x += mlp(ln)` of block `l` for `t` tokens (ln_2 already applied). With
    /// `one_token` a dense MLP takes the matrix-vector path.
    pub(super) fn encode_mlp(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        l: usize,
        t: usize,
        one_token: bool,
    ) {
        let (q, pl, cfg) = (&self.ctx.queue, &*self.pipelines, &self.config);
        let (c, h) = (cfg.n_embed, cfg.ffn_hidden());
        let b = if cfg.bias { BIAS } else { 0 };
        match (&self.ops.blocks[l].mlp, &self.ops.decode[l].mlp) {
            (MlpOps::Dense { .. }, Some((fc, proj))) if one_token => {
                encode_matvec(q, pass, pl, fc, h, c, b | GELU);
                encode_matvec(q, pass, pl, proj, c, h, b | ACCUMULATE);
            }
            (MlpOps::Dense { c_fc, fc_proj }, _) => {
                encode_matmul(q, pass, pl, c_fc, t, h, c, b | GELU);
                encode_matmul(q, pass, pl, fc_proj, t, c, h, b | ACCUMULATE);
            }
            (
                MlpOps::Moe {
                    router,
                    gate,
                    route,
                    fc,
                    proj,
                    combine,
                },
                _,
            ) => {
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

    /// Record the whole forward of `t` tokens (ids already written) into `pass`.
    /// With `capture`, the residual-stream norms are recorded too (capture only).
    fn encode_forward(&self, pass: &mut wgpu::ComputePass<'_>, t: usize, capture: bool) {
        let (q, pl, cfg) = (&self.ctx.queue, &*self.pipelines, &self.config);
        let (c, nh, bias) = (cfg.n_embed, cfg.n_head, cfg.bias);
        let b = if bias { BIAS } else { 0 };
        let ops = &self.ops;

        // x = wte(idx) + wpe(pos)
        for (op, ch) in ops.embedding.iter().zip(&self.weights.wte.chunks) {
            encode_embedding(q, pass, pl, op, t, c, ch.row_start, ch.rows, 0);
        }
        if capture {
            encode_row_norm(q, pass, pl, &ops.embed_norm, t, c, 0);
        }
        for (l, blk) in ops.blocks.iter().enumerate() {
            // x = x + attn(ln_1(x))
            encode_layer_norm(q, pass, pl, &blk.ln_1, t, c, bias);
            encode_matmul(q, pass, pl, &blk.c_attn, t, 3 * c, c, b);
            encode_attention(
                q,
                pass,
                pl,
                &blk.attn,
                t,
                c,
                nh,
                KvLayout::fused(c),
                self.attention_block(),
            );
            encode_matmul(q, pass, pl, &blk.c_proj, t, c, c, b | ACCUMULATE);
            // x = x + mlp(ln_2(x)), mlp = c_proj(gelu(c_fc(.))), or the MoE of the block
            encode_layer_norm(q, pass, pl, &blk.ln_2, t, c, bias);
            self.encode_mlp(pass, l, t, false);
            if capture {
                encode_row_norm(q, pass, pl, &blk.norm, t, c, (l + 1) * t);
            }
        }
        // logits = lm_head(ln_f(x)), lm_head tied to wte
        encode_layer_norm(q, pass, pl, &ops.ln_f, t, c, bias);
        for (op, ch) in ops.lm_head.iter().zip(&self.weights.wte.chunks) {
            encode_matmul_bt(q, pass, pl, op, t, ch.rows, c, 0);
        }
    }

    /// Run the forward on `ids` with one submission; read back the last position's
    /// logits (for the `top_k` predictions) and, with `capture`, the statistics.
    pub fn forward(&self, ids: &[u32], top_k: usize, capture: bool) -> Result<ForwardOutput> {
        self.check_ids(ids)?;
        let start = Instant::now();
        let t = ids.len();
        let cfg = &self.config;
        let (v, nh, nl) = (cfg.vocab_size, cfg.n_head, cfg.n_layer);
        let values = self.ctx.scoped("forward", || {
            self.ctx
                .queue
                .write_buffer(&self.act.ids, 0, bytemuck::cast_slice(ids));
            let mut enc = self
                .ctx
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("forward"),
                });
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("forward"),
                    timestamp_writes: None,
                });
                self.encode_forward(&mut pass, t, capture);
            }
            // Copies into the staging buffer: last-row logits, then capture data.
            let rb = &self.act.readback;
            let mut at = 0u64;
            for (buf, ch) in self.act.logits.iter().zip(&self.weights.wte.chunks) {
                let bytes = (ch.rows * 4) as u64;
                enc.copy_buffer_to_buffer(buf, ((t - 1) * ch.rows * 4) as u64, rb, at, bytes);
                at += bytes;
            }
            let mut floats = v;
            if capture {
                for e in &self.act.entropy {
                    enc.copy_buffer_to_buffer(e, 0, rb, at, (nh * t * 4) as u64);
                    at += (nh * t * 4) as u64;
                }
                enc.copy_buffer_to_buffer(&self.act.norms, 0, rb, at, ((nl + 1) * t * 4) as u64);
                at += ((nl + 1) * t * 4) as u64;
                floats += nl * nh * t + (nl + 1) * t;
                if let Some(m) = &self.act.moe {
                    let per = (2 * cfg.moe_num_experts + 1) * 4;
                    for s in &m.stats {
                        enc.copy_buffer_to_buffer(s, 0, rb, at, per as u64);
                        at += per as u64;
                    }
                    floats += nl * (2 * cfg.moe_num_experts + 1);
                }
            }
            self.ctx.queue.submit([enc.finish()]);
            buffers::map_read(&self.ctx, rb, floats)
        })?;
        let top = top_k_softmax(&values[..v], top_k);
        let capture = capture.then(|| {
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
        Ok(ForwardOutput {
            tokens: t,
            vocab: v,
            top,
            capture,
            seconds: start.elapsed().as_secs_f64(),
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
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&x| (x as f64 - max).exp()).sum();
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    let k = k.min(logits.len());
    let cmp = |a: &usize, b: &usize| logits[*b].total_cmp(&logits[*a]).then(a.cmp(b));
    idx.select_nth_unstable_by(k - 1, cmp);
    idx.truncate(k);
    idx.sort_by(cmp);
    idx.into_iter()
        .map(|i| TokenProb {
            token_id: i as u32,
            probability: ((logits[i] as f64 - max).exp() / sum) as f32,
        })
        .collect()
}
