//! Incremental decoding with a KV cache on the device. A [`Session`] owns the cache
//! of one generation (bounded by the context size): `extend` runs the new tokens
//! through the model at their positions, appends their keys and values to the
//! cache, and reads back only the logits of the last new token. One token uses the
//! matrix-vector path; several (the prompt) the matmul path.

use super::Model;
use crate::error::{Error, Result};
use crate::gpu::buffers;
use crate::kernels::attention::{
    attention_op, attention_variant, encode_attention, sparse_attention_op, KvLayout,
};
use crate::kernels::embedding::encode_embedding;
use crate::kernels::kv_store::{encode_kv_store, kv_store_op};
use crate::kernels::layer_norm::encode_layer_norm;
use crate::kernels::matmul::{encode_matmul, ACCUMULATE, BIAS};
use crate::kernels::matvec::encode_matvec;
use crate::kernels::matvec_bt::encode_matvec_bt;
use crate::kernels::KernelOp;

/// Per-layer keys and values of one generation, `[rows, C]` each.
pub struct KvCache {
    pub k: Vec<wgpu::Buffer>,
    pub v: Vec<wgpu::Buffer>,
    pub rows: usize,
}

impl KvCache {
    /// Device bytes held.
    pub fn bytes(&self) -> u64 {
        self.k.iter().chain(&self.v).map(|b| b.size()).sum()
    }
}

/// One generation's state on the device.
pub struct Session {
    pub cache: KvCache,
    /// Tokens already in the cache.
    pub pos: usize,
    kv_store: Vec<KernelOp>,
    attn: Vec<KernelOp>,
    attn_unaligned: Option<Vec<KernelOp>>,
}

impl Model {
    /// A session whose cache holds `rows` positions (at most the context size).
    pub fn session(&self, rows: usize) -> Result<Session> {
        let rows = rows.clamp(1, self.config.context_size);
        let (c, nl) = (self.config.n_embed, self.config.n_layer);
        if (rows * c * 4) as u64 > self.ctx.max_binding_bytes() {
            return Err(Error::Config(format!(
                "a KV cache of {rows} positions exceeds the adapter's binding limit"
            )));
        }
        self.ctx.scoped("KV cache allocation", || {
            let k: Vec<_> = (0..nl)
                .map(|l| buffers::storage(&self.ctx, &format!("k_cache[{l}]"), rows * c))
                .collect();
            let v: Vec<_> = (0..nl)
                .map(|l| buffers::storage(&self.ctx, &format!("v_cache[{l}]"), rows * c))
                .collect();
            let (pl, a) = (&*self.pipelines, &self.act);
            let kv_store = (0..nl)
                .map(|l| kv_store_op(&self.ctx, pl, &a.qkv, &k[l], &v[l]))
                .collect();
            let bind = |l: usize, variant: &'static str| match &self.sparse {
                Some(sp) => sparse_attention_op(
                    &self.ctx,
                    pl,
                    variant,
                    &a.qkv,
                    &k[l],
                    &v[l],
                    &a.att,
                    &a.entropy[l],
                    &sp.row_offsets,
                    &sp.cols,
                ),
                None => attention_op(
                    &self.ctx,
                    pl,
                    variant,
                    &a.qkv,
                    &k[l],
                    &v[l],
                    &a.att,
                    &a.entropy[l],
                ),
            };
            let best = match &self.sparse {
                Some(sp) => sp.variant,
                None => attention_variant(pl, self.config.head_size(), self.hardware_kernels),
            };
            let attn = (0..nl).map(|l| bind(l, best)).collect();
            // The sparse subgroup kernel needs the queries of a subgroup in one block;
            // several tokens added at an unaligned position take the portable kernel.
            let attn_unaligned = (best == "sparse_attention_subgroup")
                .then(|| (0..nl).map(|l| bind(l, "sparse_attention")).collect());
            Ok(Session {
                attn_unaligned,
                cache: KvCache { k, v, rows },
                pos: 0,
                kv_store,
                attn,
            })
        })
    }

    /// Run `ids` at positions `session.pos ..`, append them to the cache, and return
    /// the logits `[V]` after the last of them.
    pub fn extend(&self, session: &mut Session, ids: &[u32]) -> Result<Vec<f32>> {
        if ids.is_empty() {
            return Err(Error::InvalidInput(
                "nothing to extend the sequence with".into(),
            ));
        }
        let end = session.pos + ids.len();
        if end > session.cache.rows {
            return Err(Error::SequenceTooLong {
                len: end,
                max: session.cache.rows,
            });
        }
        if let Some(&id) = ids
            .iter()
            .find(|&&id| id as usize >= self.config.vocab_size)
        {
            return Err(Error::InvalidInput(format!(
                "token {id} is outside the model's vocabulary (vocab_size {})",
                self.config.vocab_size
            )));
        }
        let t = ids.len();
        let pos = session.pos;
        let cfg = &self.config;
        let (c, nh, v) = (cfg.n_embed, cfg.n_head, cfg.vocab_size);
        let b = if cfg.bias { BIAS } else { 0 };
        let sg = self.ctx.subgroup_max_size.max(1) as usize;
        let attn_ops: &[KernelOp] = match &session.attn_unaligned {
            Some(ops) if t > 1 && !pos.is_multiple_of(sg) => ops,
            _ => &session.attn,
        };
        let logits = self.ctx.scoped("decode step", || {
            let (q, pl, ops) = (&self.ctx.queue, &*self.pipelines, &self.ops);
            q.write_buffer(&self.act.ids, 0, bytemuck::cast_slice(ids));
            let mut enc = self
                .ctx
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("decode"),
                });
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("decode"),
                    timestamp_writes: None,
                });
                let pass = &mut pass;
                for (op, ch) in ops.embedding.iter().zip(&self.weights.wte.chunks) {
                    encode_embedding(q, pass, pl, op, t, c, ch.row_start, ch.rows, pos);
                }
                for (l, blk) in ops.blocks.iter().enumerate() {
                    let dec = &ops.decode[l];
                    encode_layer_norm(q, pass, pl, &blk.ln_1, t, c, cfg.bias);
                    if t == 1 {
                        encode_matvec(q, pass, pl, &dec.c_attn, 3 * c, c, b);
                    } else {
                        encode_matmul(q, pass, pl, &blk.c_attn, t, 3 * c, c, b);
                    }
                    encode_kv_store(q, pass, pl, &session.kv_store[l], t, c, pos);
                    encode_attention(
                        q,
                        pass,
                        pl,
                        attn_ops.get(l).unwrap_or(&session.attn[l]),
                        t,
                        c,
                        nh,
                        KvLayout::cache(c, pos),
                        self.attention_block(),
                    );
                    if t == 1 {
                        encode_matvec(q, pass, pl, &dec.c_proj, c, c, b | ACCUMULATE);
                    } else {
                        encode_matmul(q, pass, pl, &blk.c_proj, t, c, c, b | ACCUMULATE);
                    }
                    encode_layer_norm(q, pass, pl, &blk.ln_2, t, c, cfg.bias);
                    self.encode_mlp(pass, l, t, t == 1);
                }
                encode_layer_norm(q, pass, pl, &ops.ln_f, t, c, cfg.bias);
                // logits of the last new token only
                for (op, ch) in ops.lm_head_one.iter().zip(&self.weights.wte.chunks) {
                    encode_matvec_bt(q, pass, pl, op, ch.rows, c, t - 1);
                }
            }
            let mut at = 0u64;
            for (buf, ch) in self.act.logits.iter().zip(&self.weights.wte.chunks) {
                let bytes = (ch.rows * 4) as u64;
                enc.copy_buffer_to_buffer(buf, 0, &self.act.readback, at, bytes);
                at += bytes;
            }
            q.submit([enc.finish()]);
            buffers::map_read(&self.ctx, &self.act.readback, v)
        })?;
        session.pos = end;
        Ok(logits)
    }
}
