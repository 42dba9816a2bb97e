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
    /// `kv_pool`: bytes of the paged KV cache the model is built with.
    pub fn memory_estimate(&self, kv_pool: u128) -> MemoryEstimate {
        let n = |x: usize| x as u128;
        let (v, t, l, nh) = (
            n(self.vocab_size),
            n(self.context_size),
            n(self.n_layer),
            n(self.n_head),
        );
        let c = n(self.n_embed);
        let h = n(self.ffn_hidden_multiplier) * c;
        let (e, k) = (n(self.moe_num_experts), n(self.moe_top_k));
        let half = self.dtype == Dtype::Float16;
        // weights: wte and the blocks' linear weights are halved with float16
        let wide = if half { 2 } else { 4 };
        let mlp_linear = if self.use_moe {
            e * 2 * c * h
        } else {
            2 * c * h
        };
        let linear = l * (4 * c * c + mlp_linear);
        let params = self.parameter_count_wide();
        let weights = (v * c + linear) * wide + (params - v * c - linear) * 4;
        // activations at the full context (model/mod.rs `Activations`)
        let mut act = t * (1 + 6 * c + h) // ids, x, ln, qkv, att, hidden
            + t * v // logits
            + l * nh * t + (l + 1) * t // entropies, residual norms
            + v + l * nh * t + (l + 1) * t + l * (2 * e + 1); // readback
        if self.use_moe {
            let rows = t * k + e * 16;
            act += t * (e + 4 + e + 3 * k) + rows * (2 + h + c) + l * (2 * e + 1);
        }
        // the split tiled matmuls' scratch (GPU kernels; counted on every adapter)
        let split_rows = n(SPLIT_MAX_ROWS).min(t);
        act += split_rows
            * split_row_floats(
                self.n_embed,
                self.n_embed.saturating_mul(self.ffn_hidden_multiplier),
                !self.use_moe,
            );
        let activations = act * 4;
        MemoryEstimate {
            weights,
            activations,
            kv_cache: kv_pool,
        }
    }
}
