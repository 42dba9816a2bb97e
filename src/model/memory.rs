//! The memory estimate: device bytes a config needs (weights, activations sized for
//! the full context, the KV pool), computed before anything is allocated so that an
//! absurd config is refused at once. It mirrors the buffers `build.rs` allocates.

use crate::config::{human_bytes, Dtype, ModelConfig};
use crate::error::{Error, Result};
use crate::kernels::matmul::{split_row_floats, SPLIT_MAX_ROWS};

/// Device memory a config needs, by part (bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryEstimate {
    pub weights: u128,
    /// Activation buffers sized for the full context.
    pub activations: u128,
    /// The paged KV cache (all generations).
    pub kv_cache: u128,
}

impl MemoryEstimate {
    pub fn total(&self) -> u128 {
        self.weights + self.activations + self.kv_cache
    }

    /// `Err(Config)` naming the figures when the total exceeds `budget`.
    pub fn check(&self, budget: u64) -> Result<()> {
        if self.total() <= budget as u128 {
            return Ok(());
        }
        Err(Error::Config(format!(
            "this config needs about {} of device memory (weights {}, activations {}, KV cache {}), more than the memory budget of {} (--max-model-bytes): make the model smaller",
            human_bytes(self.total()),
            human_bytes(self.weights),
            human_bytes(self.activations),
            human_bytes(self.kv_cache),
            human_bytes(budget as u128)
        )))
    }
}

impl ModelConfig {
    /// Bytes this config needs on the device, computed before anything is allocated
    /// (exact arithmetic in u128, so absurd configs give absurd figures, not overflows).
    /// `kv_pool`: bytes of the paged KV cache the model is built with; `max_batch`: the
    /// decode rows a step may have (`--max-batch`).
    pub fn memory_estimate(&self, kv_pool: u128, max_batch: usize) -> MemoryEstimate {
        let n = |x: usize| x as u128;
        let (v, t, l, nh) = (
            n(self.vocab_size),
            n(self.context_size),
            n(self.n_layer),
            n(self.n_head),
        );
        let c = n(self.n_embed);
        let w = self.widths();
        let hd = self.heads();
        let (q, qkv) = (n(hd.q_width()), n(hd.qkv_width()));
        let (gated_mlp, rotary) = (
            self.architecture.gated_mlp(),
            self.architecture.llama_like(),
        );
        let (e, k) = (n(self.moe_num_experts), n(self.moe_top_k));
        let moe_layers = n(self.moe_layer_count());
        let half = self.dtype == Dtype::Float16;
        // weights: the embedding, an untied head and the blocks' linear weights
        // (experts and a shared expert included) are halved with float16
        let wide = if half { 2 } else { 4 };
        let mlp = |h: u128| c * w.first(h) + h * c;
        let moe_mlp = e * mlp(w.expert) + if w.shared > 0 { mlp(w.shared) } else { 0 };
        let linear = l * (c * qkv + q * c) + moe_layers * moe_mlp + (l - moe_layers) * mlp(w.dense);
        let embeddings = v * c * if self.tie_word_embeddings { 1 } else { 2 };
        let params = self.parameter_count_wide();
        let weights = (embeddings + linear) * wide + (params - embeddings - linear) * 4;
        // activations at the full context (model/mod.rs `Activations`): the MLP
        // buffers hold the widest of the dense MLP and the shared expert
        let (first, gated) = (
            w.first(w.dense).max(w.first(w.shared)),
            if gated_mlp { w.dense.max(w.shared) } else { 0 },
        );
        let mut act = t * (1 + 2 * c + qkv + q.max(c) + first + gated) // ids, x, ln, qkv, att, hidden
            + t * v // logits
            + l * nh * t + (l + 1) * t // entropies, residual norms
            + v + l * nh * t + (l + 1) * t + l * (2 * e + 1); // readback
        if self.use_moe {
            let rows = t * k + e * 16;
            let expert_gated = if gated_mlp { w.expert } else { 0 };
            act += t * (e + 4 + e + 3 * k)
                + rows * (2 + w.first(w.expert) + expert_gated + c)
                + l * (2 * e + 1)
                + 4 * t; // the shared expert's gate
        }
        // the split tiled matmuls' scratch (GPU kernels; counted on every adapter)
        let split_rows = n(SPLIT_MAX_ROWS).min(t);
        act += split_rows * split_row_floats(&self.linear_shapes());
        if rotary {
            // the rotary table: cos and sin, each pair's twice (Gemma: two tables)
            act += 2 * t * n(hd.hs) * if self.local_rope() { 2 } else { 1 };
        }
        // the tile matmuls' norm folds (GPU kernels, `matmul_fusion` auto; counted on
        // every adapter): g · w and bias + b · w of each qkv and dense up projection
        act += 2 * (l * qkv + (l - moe_layers) * w.first(w.dense));
        // the deferred decode blocks' scratch (GPU kernels; counted on every adapter) for
        // steps of up to a short prefill chunk's rows beside a decode batch (build.rs)
        if let Some(s) = super::partials::mlp_shape(self, true) {
            let rows = n(super::partials::PREFILL_ROWS.saturating_add(max_batch)).min(t);
            act += rows * (1 + nh + n(s.parts())) * c;
        }
        let activations = act * 4;
        MemoryEstimate {
            weights,
            activations,
            kv_cache: kv_pool,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::partials::{mlp_shape, PREFILL_ROWS};

    #[test]
    fn the_deferred_scratch_grows_with_the_decode_batch() {
        let cfg = ModelConfig::default(); // GPT-2 small: 12 heads, 24 MLP chunks
        let s = mlp_shape(&cfg, true).expect("GPT-2 small takes the deferred blocks");
        let row = (1 + cfg.n_head + s.parts()) as u128 * cfg.n_embed as u128 * 4;
        let at = |batch| cfg.memory_estimate(0, batch).activations;
        assert_eq!(at(64) - at(16), 48 * row);
        // never more rows than the context holds
        let rows = (cfg.context_size - PREFILL_ROWS) as u128;
        assert_eq!(at(usize::MAX) - at(0), rows * row);
        assert_eq!(cfg.memory_estimate(1 << 30, 16).kv_cache, 1 << 30);
    }
}
