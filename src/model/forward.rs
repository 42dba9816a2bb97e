//! The forward entry points, readable top to bottom like nanoGPT's `GPT.forward`:
//! every dispatch recorded into one compute pass, one submission, then only the
//! numbers a response needs are read back (last-row logits; capture statistics when
//! asked). One forward, several in one traversal, and the captured (explorer) forward.

use std::time::Instant;

use super::logits::top_k_softmax;
use super::output::{Capture, CapturedForward, ForwardOutput, LayerCapture, MoeCapture, TokenProb};
use super::step::{
    AttentionTap, ChunkRows, ForwardsOut, LensTaps, RankTaps, RoutingTaps, StepKind,
    MAX_CAPTURE_TOKENS, MAX_PREFILL_PARTS,
};
use super::{Model, Pooling};
use crate::error::{Error, Result};
use crate::gpu::buffers;
use crate::kernels::attention::attention_weights_op;
use crate::kernels::logit_lens::{copy_rows_op, parse_top_k, top_k_rows_op, MAX_LENS_K};
use crate::kernels::token_rank::{merge_ranks, token_rank_op, token_target_op, NO_TARGET};

impl Model {
    /// Refuse what needs the LM head on a model without one ([`Model::headless`]).
    pub fn check_head(&self) -> Result<()> {
        match self.headless {
            true => Err(Error::InvalidInput(
                "the loaded model has no LM head (a base model's checkpoint, such as an embedding model's): it serves /v1/embeddings only".into(),
            )),
            false => Ok(()),
        }
    }

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

    /// Several forwards without statistics (`(ids, top_k)` each) in one traversal and
    /// one submission: the rows of each follow the previous one's, each attends within
    /// its own rows at positions from 0, and the LM head runs over the last row of each
    /// (gathered together, as a prefill's), which is read back. Every kernel computes a
    /// row by the same expression whatever rows surround it, so each result equals the
    /// forward alone. At most [`MAX_PREFILL_PARTS`] forwards and the context's tokens
    /// together (the activations' rows).
    pub fn forward_many(&self, batch: &[(&[u32], usize)]) -> Result<Vec<ForwardOutput>> {
        let texts: Vec<&[u32]> = batch.iter().map(|(ids, _)| *ids).collect();
        let (values, seconds) = self.forwards(&texts, None, ForwardsOut::LastLogits)?;
        let v = self.config.vocab_size;
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

    /// Each of several texts' hidden states after the final norm (what the LM head
    /// reads; an encoder's after its last block), pooled by [`Model::pooling`] into
    /// `[n_embed]` (not normalised): their forwards share one traversal as
    /// [`Model::forward_many`]'s do, without the LM head. Last-token pooling is the
    /// embedding of decoder embedding models (Qwen3-Embedding, e5-mistral), the first
    /// token's or the mean of the encoders' (bge; all-MiniLM, e5); each text's the same
    /// alone or with others. (Granite's are divided by its `logits_scaling`, folded
    /// into the final norm: the same direction.)
    pub fn embed_many(&self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let (values, _) = self.forwards(batch, None, ForwardsOut::Hidden)?;
        self.pooled(batch, values)
    }

    /// A cross-encoder's logits for each pair of texts (`(ids, start)`: the pair's
    /// tokens as the tokenizer's pair template gives them, and where its second text's
    /// tokens of type 1 start; `ids.len()` when the template types none): the pairs'
    /// forwards share traversals as [`Model::embed_many`]'s do, and the classification
    /// head reads each one's first hidden state.
    pub fn score_pairs(&self, batch: &[(&[u32], usize)]) -> Result<Vec<Vec<f32>>> {
        let Some(head) = &self.classifier else {
            return Err(Error::InvalidInput(
                "the loaded model has no classification head: scoring pairs needs a cross-encoder (BertForSequenceClassification, XLMRobertaForSequenceClassification)".into(),
            ));
        };
        let texts: Vec<&[u32]> = batch.iter().map(|(ids, _)| *ids).collect();
        let starts: Vec<usize> = batch.iter().map(|&(_, s)| s).collect();
        let (values, _) = self.forwards(&texts, Some(&starts), ForwardsOut::Hidden)?;
        Ok(self
            .pooled(&texts, values)?
            .iter()
            .map(|h| head.logits(h))
            .collect())
    }

    /// Each text's pooled hidden state from what [`Model::forwards`] read back.
    fn pooled(&self, batch: &[&[u32]], values: Vec<f32>) -> Result<Vec<Vec<f32>>> {
        let c = self.config.n_embed;
        if self.pooling != Pooling::Mean {
            return Ok(values.chunks(c).map(|h| h.to_vec()).collect());
        }
        // every row was read back: each text's mean
        let mut rows = values.chunks(c);
        Ok(batch
            .iter()
            .map(|ids| {
                let mut sum = vec![0f64; c];
                for row in rows.by_ref().take(ids.len()) {
                    sum.iter_mut().zip(row).for_each(|(s, &v)| *s += v as f64);
                }
                sum.iter().map(|s| (s / ids.len() as f64) as f32).collect()
            })
            .collect())
    }

    /// The traversal of [`Model::forward_many`] leaving `out`; reads back, per text, its
    /// last row's logits (`[V]`) or, for [`ForwardsOut::Hidden`], the row its
    /// [`Model::pooling`] takes after the final norm (`[n_embed]`; every row of it for
    /// [`Pooling::Mean`]), and the seconds it took. With
    /// [`ForwardsOut::EveryLogits`] every row's logits stay on the device for
    /// [`Model::forward_logits`].
    ///
    /// `second`: each text's first row of its second segment (a pair's), whose
    /// positions read the position table's type-1 half ([`Model::pair_offset`]).
    fn forwards(
        &self,
        batch: &[&[u32]],
        second: Option<&[usize]>,
        out: ForwardsOut,
    ) -> Result<(Vec<f32>, f64)> {
        if batch.is_empty() || batch.len() > MAX_PREFILL_PARTS {
            return Err(Error::InvalidInput(format!(
                "a shared forward takes 1 to {MAX_PREFILL_PARTS} texts"
            )));
        }
        for ids in batch {
            self.check_ids(ids)?;
        }
        let t: usize = batch.iter().map(|ids| ids.len()).sum();
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
        for ids in batch {
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
        if let (Some(second), Some(offset)) = (second, self.pair_offset) {
            for (part, &start) in parts.iter().zip(second) {
                for p in &mut positions[part.row0 + start.min(part.rows)..part.row0 + part.rows] {
                    *p += offset as u32;
                }
            }
        }
        let (v, c) = (self.config.vocab_size, self.config.n_embed);
        let values = self.ctx.scoped("forward", || {
            self.submit_step(
                "forwards",
                &ids_all,
                &positions,
                StepKind::Forwards { parts: &parts, out },
                |enc| {
                    let rb = &self.act.readback;
                    // the hidden states: after the final norm, in `ln`; an encoder's
                    // after its last block, in `x`
                    let hidden = match self.config.architecture.encoder() {
                        true => &self.act.x,
                        false => &self.act.ln,
                    };
                    let row = c as u64 * 4;
                    if out == ForwardsOut::Hidden && self.pooling == Pooling::Mean {
                        enc.copy_buffer_to_buffer(hidden, 0, rb, 0, t as u64 * row);
                        return t * c;
                    }
                    for (j, part) in parts.iter().enumerate() {
                        let own = (part.row0 + part.rows - 1) as u64;
                        if out == ForwardsOut::Hidden {
                            // the pooled row to row j
                            let at = match self.pooling {
                                Pooling::First => part.row0 as u64,
                                _ => own,
                            };
                            enc.copy_buffer_to_buffer(hidden, at * row, rb, j as u64 * row, row);
                            continue;
                        }
                        // the last row's logits of forward j (logits row j, or its own
                        // row with every row's) to row j of the staging buffer
                        let last = if out == ForwardsOut::EveryLogits {
                            own
                        } else {
                            j as u64
                        };
                        for (buf, ch) in self.act.logits.iter().zip(&self.weights.wte.chunks) {
                            let (rows, at) = (ch.rows as u64, (j * v + ch.row_start) as u64);
                            enc.copy_buffer_to_buffer(buf, last * rows * 4, rb, at * 4, rows * 4);
                        }
                    }
                    batch.len() * if out == ForwardsOut::Hidden { c } else { v }
                },
            )
        })?;
        Ok((values, start.elapsed().as_secs_f64()))
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
        // the actual next token of each row (the last row has none), ranked under the
        // final logits or, with the lens, under every layer's
        let rank_layers = if lens.is_some() { nl } else { 1 };
        let ranks = {
            let targets: Vec<u32> = ids[1..].iter().copied().chain([NO_TARGET]).collect();
            let targets = buffers::upload(&self.ctx, "next tokens", bytemuck::cast_slice(&targets));
            let tv = buffers::storage(&self.ctx, "next-token logits", rank_layers * t);
            let out = buffers::storage(
                &self.ctx,
                "next-token ranks",
                rank_layers * chunks.len() * t * 2,
            );
            let (ctx, pl) = (&self.ctx, &*self.pipelines);
            let per_layer = |f: &dyn Fn(&wgpu::Buffer) -> crate::kernels::KernelOp| {
                (0..rank_layers)
                    .map(|_| self.act.logits.iter().map(f).collect())
                    .collect()
            };
            RankTaps {
                target: per_layer(&|lg| token_target_op(ctx, pl, &targets, lg, &tv)),
                rank: per_layer(&|lg| token_rank_op(ctx, pl, &targets, lg, &tv, &out)),
                tv,
                out,
                _targets: targets,
            }
        };
        // each token's experts and gate weights, in the MoE layers
        let moe_layers: Vec<usize> = (0..nl).filter(|&l| cfg.is_moe_layer(l)).collect();
        let k = cfg.moe_top_k;
        let routing = self
            .act
            .moe
            .as_ref()
            .filter(|_| !moe_layers.is_empty())
            .map(|m| {
                let stride = (t * k).div_ceil(4) * 4;
                let out = buffers::storage(&self.ctx, "routing", 2 * moe_layers.len() * stride);
                let (ctx, pl) = (&self.ctx, &*self.pipelines);
                RoutingTaps {
                    ids: moe_layers
                        .iter()
                        .map(|_| copy_rows_op(ctx, pl, &m.sel_e, &out))
                        .collect(),
                    weights: moe_layers
                        .iter()
                        .map(|_| copy_rows_op(ctx, pl, &m.sel_w, &out))
                        .collect(),
                    stride,
                    out,
                }
            });
        let positions: Vec<u32> = (0..t as u32).collect();
        let kind = StepKind::Forward {
            capture: true,
            taps: &taps,
            lens: lens.as_ref(),
            ranks: Some(&ranks),
            routing: routing.as_ref(),
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
            let per = chunks.len() * t * 2;
            let counts = buffers::read_floats(&self.ctx, &ranks.out, 0, rank_layers * per)?;
            let tvs = buffers::read_floats(&self.ctx, &ranks.tv, 0, rank_layers * t)?;
            let next_token_ranks = (0..rank_layers)
                .map(|l| {
                    let mut r = merge_ranks(
                        &counts[l * per..(l + 1) * per],
                        &tvs[l * t..(l + 1) * t],
                        t,
                        chunks.len(),
                    );
                    r.truncate(t - 1); // the last position has no next token here
                    r
                })
                .collect::<Vec<_>>();
            let routed = match &routing {
                Some(r) => {
                    buffers::read_floats(&self.ctx, &r.out, 0, 2 * moe_layers.len() * r.stride)?
                }
                None => Vec::new(),
            };
            Ok((values, attention, (lens_rows, next_token_ranks, routed)))
        })?;
        let (lens_rows, next_token_ranks, routed) = lens_rows;
        // per MoE layer, per token: (expert, weight) as the model combined them
        let routing_of = |i: usize| -> Vec<Vec<(u32, f32)>> {
            let stride = (t * k).div_ceil(4) * 4;
            let (ids, ws) = (&routed[2 * i * stride..], &routed[(2 * i + 1) * stride..]);
            (0..t)
                .map(|tok| {
                    (0..k)
                        .map(|j| (ids[tok * k + j].to_bits(), ws[tok * k + j]))
                        .collect()
                })
                .collect()
        };
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
        let capture =
            Some({
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
                                moe: self.act.moe.as_ref().filter(|_| cfg.is_moe_layer(l)).map(
                                    |_| {
                                        let st = &moe_stats[l * (2 * e + 1)..(l + 1) * (2 * e + 1)];
                                        MoeCapture {
                                            expert_usage: st[..e].to_vec(),
                                            load_balance_loss: st[2 * e],
                                            routing: moe_layers
                                                .iter()
                                                .position(|&m| m == l)
                                                .map(routing_of)
                                                .unwrap_or_default(),
                                        }
                                    },
                                ),
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
            next_token_ranks,
        })
    }

    /// The full logits `[T, V]` (tests and tools; responses never need them all).
    pub fn forward_logits(&self, ids: &[u32]) -> Result<Vec<f32>> {
        self.forwards(&[ids], None, ForwardsOut::EveryLogits)?;
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
