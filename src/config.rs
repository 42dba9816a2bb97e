//! Model configuration: the 15 keys of the v1 contract with their original
//! defaults, plus our extension keys. `validate()` names the key and the rule.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Activation of the (expert) MLPs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Gelu,
    Relu,
    Silu,
}

/// Where the model runs: `auto`, `gpu`, `cpu` or a backend name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    Auto,
    Gpu,
    Cpu,
    Vulkan,
    Metal,
    Dx12,
    Gl,
}

/// Element type of weights and activations on the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Dtype {
    #[serde(rename = "float32")]
    Float32,
    /// The blocks' linear weights and the token embedding (the tied LM head) stored as
    /// IEEE half floats (position embedding, layer norms and biases stay f32;
    /// arithmetic is f32).
    #[serde(rename = "float16")]
    Float16,
}

/// Which kernel class serves the model: `auto` picks by adapter (hardware kernels on
/// GPUs, software kernels on lavapipe, llvmpipe, WARP); the other two force a class
/// (every kernel of both classes is correct on every adapter; only speed differs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KernelChoice {
    Auto,
    Software,
    Hardware,
}

impl KernelChoice {
    /// Whether the hardware kernels serve, on an adapter that is (or is not) software.
    pub fn hardware(self, software_adapter: bool) -> bool {
        match self {
            KernelChoice::Auto => !software_adapter,
            KernelChoice::Software => false,
            KernelChoice::Hardware => true,
        }
    }
}

/// The model configuration. Field order is the order clients see in the echo.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// V: rows of the token embedding (and width of the logits).
    pub vocab_size: usize,
    /// Maximum number of positions (rows of the position embedding).
    pub context_size: usize,
    /// Number of transformer blocks.
    pub n_layer: usize,
    /// NH: attention heads per block.
    pub n_head: usize,
    /// C: width of the residual stream.
    pub n_embed: usize,
    /// Accepted and echoed; inference runs in evaluation mode, so it has no effect.
    pub dropout: f64,
    /// Linear layers and layer norms carry a bias.
    pub bias: bool,
    /// MLP hidden width = ffn_hidden_multiplier · n_embed.
    pub ffn_hidden_multiplier: usize,
    pub use_sparse_attention: bool,
    pub use_moe: bool,
    pub moe_num_experts: usize,
    pub moe_top_k: usize,
    pub moe_activation: Activation,
    /// Accepted and echoed; no effect at inference.
    pub moe_dropout: Option<f64>,
    pub device: DeviceChoice,
    /// Extension: weights are a deterministic function of config + seed.
    pub seed: u64,
    /// Extension: local `.safetensors` checkpoint in the Hugging Face GPT-2 layout.
    pub checkpoint: Option<String>,
    /// Extension: local Hugging Face `tokenizer.json` (default: bundled GPT-2 BPE).
    pub tokenizer: Option<String>,
    /// Extension: element type on the device.
    pub dtype: Dtype,
    /// Extension: kernel class (`auto`, `software`, `hardware`).
    pub kernels: KernelChoice,
    /// Extension (block-sparse attention): tokens per block.
    pub sparse_block_size: usize,
    /// Extension: each query block sees the last `sparse_local_blocks` key blocks (itself included).
    pub sparse_local_blocks: usize,
    /// Extension: and the first `sparse_global_blocks` blocks of the sequence.
    pub sparse_global_blocks: usize,
    /// Extension: and every block whose distance is a multiple of this (0 = none).
    pub sparse_stride: usize,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            vocab_size: 50304,
            context_size: 1024,
            n_layer: 12,
            n_head: 12,
            n_embed: 768,
            dropout: 0.1,
            bias: true,
            ffn_hidden_multiplier: 4,
            use_sparse_attention: false,
            use_moe: false,
            moe_num_experts: 8,
            moe_top_k: 2,
            moe_activation: Activation::Gelu,
            moe_dropout: None,
            device: DeviceChoice::Auto,
            seed: 1337,
            checkpoint: None,
            tokenizer: None,
            dtype: Dtype::Float32,
            kernels: KernelChoice::Auto,
            sparse_block_size: 32,
            sparse_local_blocks: 4,
            sparse_global_blocks: 1,
            sparse_stride: 0,
        }
    }
}

/// `1234567` → `"1.2 MB (1234567 bytes)"`.
pub fn human_bytes(b: u128) -> String {
    let units = ["bytes", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut x = b as f64;
    let mut u = 0;
    while x >= 1000.0 && u + 1 < units.len() {
        x /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} bytes")
    } else {
        format!("{x:.1} {} ({b} bytes)", units[u])
    }
}

/// Largest head size the attention kernel keeps in registers.
pub const MAX_HEAD_SIZE: usize = 128;

impl ModelConfig {
    /// Parse a JSON object with any subset of the keys; missing keys take defaults.
    /// Unknown keys, wrong types and invalid values are `Error::Config`.
    pub fn from_json(text: &str) -> Result<Self> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| Error::Config(format!("config is not valid JSON: {e}")))?;
        Self::from_value(value)
    }

    /// Like [`ModelConfig::from_json`] for an already parsed value.
    pub fn from_value(value: serde_json::Value) -> Result<Self> {
        if !value.is_object() {
            return Err(Error::Config(
                "config must be a JSON object of config keys".into(),
            ));
        }
        let cfg: ModelConfig =
            serde_json::from_value(value).map_err(|e| Error::Config(format!("{e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Head size HS = C / NH.
    pub fn head_size(&self) -> usize {
        self.n_embed / self.n_head
    }

    /// MLP hidden width.
    pub fn ffn_hidden(&self) -> usize {
        self.ffn_hidden_multiplier * self.n_embed
    }

    /// Check every rule; the error names the key and the rule.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("context_size", self.context_size),
            ("n_layer", self.n_layer),
            ("n_head", self.n_head),
            ("n_embed", self.n_embed),
            ("ffn_hidden_multiplier", self.ffn_hidden_multiplier),
            ("moe_num_experts", self.moe_num_experts),
            ("moe_top_k", self.moe_top_k),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err(Error::Config(format!("{key} ({v}) must be positive")));
            }
        }
        if !self.n_embed.is_multiple_of(self.n_head) {
            return Err(Error::Config(format!(
                "n_embed ({}) must be divisible by n_head ({})",
                self.n_embed, self.n_head
            )));
        }
        if !self.n_embed.is_multiple_of(4) {
            return Err(Error::Config(format!(
                "n_embed ({}) must be a multiple of 4 (the kernels load vec4)",
                self.n_embed
            )));
        }
        let hs = self.head_size();
        if !hs.is_multiple_of(4) || hs > MAX_HEAD_SIZE {
            return Err(Error::Config(format!(
                "head size n_embed/n_head ({hs}) must be a multiple of 4 and at most {MAX_HEAD_SIZE}"
            )));
        }
        if self.moe_top_k > self.moe_num_experts {
            return Err(Error::Config(format!(
                "moe_top_k ({}) must not exceed moe_num_experts ({})",
                self.moe_top_k, self.moe_num_experts
            )));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::Config(format!(
                "dropout ({}) must be in [0, 1)",
                self.dropout
            )));
        }
        if let Some(d) = self.moe_dropout {
            if !(0.0..1.0).contains(&d) {
                return Err(Error::Config(format!(
                    "moe_dropout ({d}) must be in [0, 1)"
                )));
            }
        }
        if self.context_size > 65536 {
            return Err(Error::Config(format!(
                "context_size ({}) must be at most 65536",
                self.context_size
            )));
        }
        if self.sparse_block_size == 0 || self.sparse_block_size > 65536 {
            return Err(Error::Config(format!(
                "sparse_block_size ({}) must be between 1 and 65536",
                self.sparse_block_size
            )));
        }
        if self.sparse_local_blocks == 0 {
            return Err(Error::Config(
                "sparse_local_blocks (0) must be at least 1: every query block attends to itself"
                    .into(),
            ));
        }
        if self.moe_num_experts > 64 {
            return Err(Error::Config(format!(
                "moe_num_experts ({}) must be at most 64",
                self.moe_num_experts
            )));
        }
        Ok(())
    }

    /// [`ModelConfig::parameter_count`] without overflow.
    pub(crate) fn parameter_count_wide(&self) -> u128 {
        let n = |x: usize| x as u128;
        let c = n(self.n_embed);
        let h = n(self.ffn_hidden_multiplier) * c;
        let b = n(usize::from(self.bias));
        let ln = c + b * c;
        let attn = c * 3 * c + b * 3 * c + c * c + b * c;
        let mlp = if self.use_moe {
            let e = n(self.moe_num_experts);
            c * e + e * (c * h + b * h + h * c + b * c)
        } else {
            c * h + b * h + h * c + b * c
        };
        let block = 2 * ln + attn + mlp;
        n(self.vocab_size) * c + n(self.context_size) * c + n(self.n_layer) * block + ln
    }

    /// Number of learned parameters (tied embedding counted once).
    pub fn parameter_count(&self) -> usize {
        usize::try_from(self.parameter_count_wide()).unwrap_or(usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_parameter_count_matches_gpt2_small_with_padded_vocab() {
        assert_eq!(ModelConfig::default().parameter_count(), 124_475_904);
    }

    #[test]
    fn missing_keys_take_defaults() {
        let c = ModelConfig::from_json(r#"{"n_layer": 2}"#).unwrap();
        assert_eq!(c.n_layer, 2);
        assert_eq!(c.n_embed, 768);
    }

    #[test]
    fn errors_name_key_and_rule() {
        let e = ModelConfig::from_json(r#"{"n_embed": 770}"#)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "invalid config: n_embed (770) must be divisible by n_head (12)"
        );
        let e = ModelConfig::from_json(r#"{"bogus": 1}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bogus"), "{e}");
        let e = ModelConfig::from_json(r#"{"n_layer": "two"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid type"), "{e}");
        let e = ModelConfig::from_json(r#"{"n_layer": 0}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("n_layer (0) must be positive"), "{e}");
        let e = ModelConfig::from_json(r#"{"moe_top_k": 9}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("moe_top_k (9)"), "{e}");
        let e = ModelConfig::from_json(r#"{"kernels": "fast"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("fast") && e.contains("hardware"), "{e}");
        let e = ModelConfig::from_json(r#"{"moe_activation": "tanh"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("tanh"), "{e}");
        let e = ModelConfig::from_json("{not json").unwrap_err().to_string();
        assert!(e.contains("not valid JSON"), "{e}");
        let e = ModelConfig::from_json(r#"{"n_layer": -1}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid value"), "{e}");
    }

    #[test]
    fn echo_has_all_contract_keys() {
        let v = serde_json::to_value(ModelConfig::default()).unwrap();
        for k in [
            "vocab_size",
            "context_size",
            "n_layer",
            "n_head",
            "n_embed",
            "dropout",
            "bias",
            "ffn_hidden_multiplier",
            "use_sparse_attention",
            "use_moe",
            "moe_num_experts",
            "moe_top_k",
            "moe_activation",
            "moe_dropout",
            "device",
        ] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        assert_eq!(v["moe_activation"], "gelu");
        assert_eq!(v["kernels"], "auto");
        assert_eq!(v["device"], "auto");
        assert!(v["moe_dropout"].is_null());
    }
}
