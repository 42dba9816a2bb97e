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

/// The model family: the block every layer is (see `model::family` for what each
/// differs in). `gpt2` is the v1 contract's model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// LayerNorm, learned positions, GELU MLP (`GPT2LMHeadModel`).
    #[default]
    Gpt2,
    /// RMSNorm, rotary positions, grouped-query attention, SwiGLU MLP
    /// (`LlamaForCausalLM`: Llama 2/3, SmolLM).
    Llama,
    /// The Llama block with biases on q, k and v (`Qwen2ForCausalLM`).
    Qwen2,
    /// The Llama block with a sliding attention window (`MistralForCausalLM`).
    Mistral,
    /// Mistral's block with a Mixture-of-Experts MLP (`MixtralForCausalLM`).
    Mixtral,
    /// Qwen2's block with a Mixture-of-Experts MLP and a shared expert
    /// (`Qwen2MoeForCausalLM`).
    Qwen2Moe,
    /// The Llama block with an RMSNorm on each query and key head before the rotation
    /// (`Qwen3ForCausalLM`).
    Qwen3,
    /// Qwen3's block with a Mixture-of-Experts MLP (`Qwen3MoeForCausalLM`).
    Qwen3Moe,
    /// The Llama block with q, k and v in one projection and gate and up in one, and a
    /// sliding window (`Phi3ForCausalLM`: Phi-3, Phi-3.5-mini, Phi-4-mini).
    Phi3,
    /// Qwen3's heads (an RMSNorm on each query and key head) in a block with norms after
    /// its attention and its MLP too, GELU-gated MLP, the embedding scaled by
    /// √hidden, sliding-window layers between global ones with their own rotary base
    /// (`Gemma3ForCausalLM`: Gemma 3's text models).
    Gemma3,
    /// Gemma 3's block without the head norms, every other layer windowed, one rotary
    /// base, the scores and the logits soft-capped (`Gemma2ForCausalLM`).
    Gemma2,
    /// The Llama block with Gemma's (1 + w) RMSNorms, GELU-gated MLP and the embedding
    /// scaled by √hidden (`GemmaForCausalLM`: Gemma 1, CodeGemma).
    Gemma,
    /// The Llama block with q/k/v biases, gate and up in one projection, and half of
    /// each query and key head rotated in adjacent pairs (`GlmForCausalLM`:
    /// GLM-4-9B-chat).
    Glm,
    /// GLM's block with norms after its attention and its MLP too
    /// (`Glm4ForCausalLM`: GLM-4-0414, GLM-Z1).
    Glm4,
    /// Rotary positions and grouped-query attention with GPT-2's LayerNorms and GELU
    /// MLP, biases on every linear and norm, a sliding window (`Starcoder2ForCausalLM`:
    /// StarCoder2 3B, 7B, 15B).
    Starcoder2,
    /// The Llama block made parallel: one LayerNorm (no bias) before both the attention
    /// and the MLP, whose outputs are both added to the stream; rotary positions in
    /// adjacent pairs; the logits scaled (`CohereForCausalLM`: Command-R, Aya 23, Aya
    /// Expanse).
    Cohere,
    /// Cohere's block with windowed layers rotated and every fourth layer global and
    /// without positions (`Cohere2ForCausalLM`: Command R7B, Command A).
    Cohere2,
    /// The Llama block with norms only after the attention and the MLP (none before),
    /// and one RMSNorm over all the query heads and one over all the key heads
    /// (`Olmo2ForCausalLM`: OLMo 2).
    Olmo2,
    /// The Llama block with its scalars: the embedding, the scores, each residual add
    /// and the logits multiplied by constants of the config (`GraniteForCausalLM`:
    /// IBM Granite 3).
    Granite,
    /// The Llama block, every fourth layer without rotary positions
    /// (`SmolLM3ForCausalLM`).
    Smollm3,
    /// An encoder (`BertModel`, `XLMRobertaModel`: the sentence-embedding models
    /// all-MiniLM, bge, e5, gte): every query sees every key of its text; the learned
    /// positions and the embedding's LayerNorm; LayerNorms after the attention and the
    /// MLP normalise the stream itself (post-LN); exact (erf) GELU; no LM head, so it
    /// serves embeddings only.
    Bert,
}

impl Family {
    /// The families whose blocks are Llama-shaped (RMSNorm, rotary, SwiGLU).
    pub fn llama_like(self) -> bool {
        !matches!(self, Family::Gpt2 | Family::Bert)
    }

    /// The encoder families: attention in both directions, the stream normalised after
    /// the attention and after the MLP (post-LN), the embedding normalised, exact GELU.
    pub fn encoder(self) -> bool {
        self == Family::Bert
    }

    /// The families whose norms are RMSNorms (the others': LayerNorm).
    pub fn rms_norm(self) -> bool {
        self.llama_like() && !matches!(self, Family::Starcoder2 | Family::Cohere | Family::Cohere2)
    }

    /// The families whose attention and MLP both read the block's one norm of the
    /// stream and add to it side by side (`x + attn(ln(x)) + mlp(ln(x))`).
    pub fn parallel_block(self) -> bool {
        matches!(self, Family::Cohere | Family::Cohere2)
    }

    /// The families whose MLP is gated (`down(act(gate(x)) · up(x))`; the others':
    /// `c_proj(gelu(c_fc(x)))`).
    pub fn gated_mlp(self) -> bool {
        self.llama_like() && self != Family::Starcoder2
    }

    /// The families whose every block's MLP may be a Mixture of Experts.
    pub fn moe(self) -> bool {
        matches!(self, Family::Mixtral | Family::Qwen2Moe | Family::Qwen3Moe)
    }

    /// The families that normalise their query and key heads (`q_norm`, `k_norm`).
    pub fn head_norm(self) -> bool {
        matches!(
            self,
            Family::Qwen3 | Family::Qwen3Moe | Family::Gemma3 | Family::Olmo2
        )
    }

    /// The families whose `q_norm` spans all the query heads (and `k_norm` all the key
    /// heads), a weight a channel, rather than each head (OLMo 2's).
    pub fn whole_head_norm(self) -> bool {
        self == Family::Olmo2
    }

    /// The families that normalise the stream before the attention and the MLP (all
    /// but OLMo 2, which normalises only their outputs, and the encoders, which
    /// normalise the stream after them).
    pub fn pre_norms(self) -> bool {
        !matches!(self, Family::Olmo2 | Family::Bert)
    }

    /// The families whose blocks normalise the attention's and the MLP's outputs
    /// before adding them to the residual stream (Gemma's `post_attention_layernorm`,
    /// `post_feedforward_layernorm`).
    pub fn post_norms(self) -> bool {
        matches!(
            self,
            Family::Gemma2 | Family::Gemma3 | Family::Glm4 | Family::Olmo2
        )
    }

    /// The families whose rotary positions turn adjacent pairs of a head's dimensions
    /// (`2i`, `2i + 1`: GPT-J's and GLM's) rather than its two halves (`i`, `i + HS/2`:
    /// Llama's); the first is the device's layout, so their heads load as they are.
    pub fn rotates_adjacent_pairs(self) -> bool {
        matches!(
            self,
            Family::Glm | Family::Glm4 | Family::Cohere | Family::Cohere2
        )
    }

    /// The families whose MLP's gate and up projections are one tensor
    /// (`gate_up_proj`, the gate first).
    pub fn fused_gate_up(self) -> bool {
        matches!(self, Family::Phi3 | Family::Glm | Family::Glm4)
    }

    /// The Gemma families: their RMSNorms multiply by `1 + weight` (folded in at load),
    /// their MLPs gate with GELU, their embedding is scaled by √hidden.
    pub fn gemma(self) -> bool {
        matches!(self, Family::Gemma | Family::Gemma2 | Family::Gemma3)
    }

    /// The families whose gated MLP gates with GELU (tanh approximation) instead of
    /// SiLU: `down(gelu(gate(x)) · up(x))`.
    pub fn gelu_gate(self) -> bool {
        self.gemma()
    }

    /// The factor of the token embedding by family: √hidden rounded to bfloat16, as
    /// Gemma computes it in its dtype; 1 for the others (see
    /// [`ModelConfig::embed_scale`]).
    pub fn embed_scale(self, hidden: usize) -> f32 {
        match self {
            Family::Gemma | Family::Gemma2 | Family::Gemma3 => {
                half::bf16::from_f32((hidden as f32).sqrt()).to_f32()
            }
            _ => 1.0,
        }
    }
}

/// How the rotary inverse frequencies are scaled for contexts longer than training's
/// (`rope_scaling` / `rope_parameters` of a Hugging Face config, by `rope_type`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "rope_type", rename_all = "lowercase", deny_unknown_fields)]
pub enum RopeScaling {
    /// `default`: no scaling.
    #[default]
    #[serde(rename = "default")]
    None,
    /// Every inverse frequency divided by `factor`.
    Linear { factor: f32 },
    /// Llama 3.1 / 3.2: low frequencies divided by `factor`, high ones kept, the band
    /// between blended smoothly.
    Llama3 {
        factor: f32,
        low_freq_factor: f32,
        high_freq_factor: f32,
        original_max_position_embeddings: usize,
    },
    /// Phi-3's `longrope` (Phi-3-128k, Phi-3.5, Phi-4-mini): each frequency divided by a
    /// factor of its own, `short_factor`'s for a context (`context_size`) within
    /// `original_max_position_embeddings` and `long_factor`'s beyond it, and the rotated
    /// dimensions' cos and sin scaled by `attention_factor`.
    #[serde(rename = "longrope")]
    LongRope {
        short_factor: Vec<f32>,
        long_factor: Vec<f32>,
        original_max_position_embeddings: usize,
        #[serde(default = "one")]
        attention_factor: f32,
    },
    /// YaRN (Qwen2.5 and Qwen3's long-context configs, DeepSeek, …): each frequency a
    /// blend of itself and itself divided by `factor`, by where its wavelength falls
    /// between `beta_fast` and `beta_slow` rotations over the original context, and
    /// cos and sin scaled by `attention_factor` (`0.1 ln factor + 1` when absent).
    Yarn {
        factor: f32,
        original_max_position_embeddings: usize,
        #[serde(default = "beta_fast")]
        beta_fast: f32,
        #[serde(default = "one")]
        beta_slow: f32,
        #[serde(default)]
        attention_factor: Option<f32>,
        /// Round the blend's band to whole dimensions (transformers' default).
        #[serde(default = "yes")]
        truncate: bool,
    },
}

fn one() -> f32 {
    1.0
}

fn beta_fast() -> f32 {
    32.0
}

fn yes() -> bool {
    true
}

/// The shape of a block's attention: query heads, key/value heads (grouped-query
/// attention when fewer), head size, and the sliding window (keys older than `window`
/// positions are masked; 0 = none). A qkv row is the `nh` query heads, then `nkv` key
/// heads, then `nkv` value heads; query head `h` reads key/value head
/// `h / (nh / nkv)`. With `softcap` > 0 each scaled score `s` becomes
/// `softcap · tanh(s / softcap)` before the softmax (Gemma 2's
/// `attn_logit_softcapping`; 0: none). A `bidirectional` attention (an encoder's) lets
/// every query of a text see every key of it, not only those up to its own position.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Heads {
    pub nh: usize,
    pub nkv: usize,
    pub hs: usize,
    pub window: usize,
    pub softcap: f32,
    pub bidirectional: bool,
}

impl Heads {
    /// Multi-head attention of `nh` heads over width `c`, no window (GPT-2).
    pub fn mha(c: usize, nh: usize) -> Self {
        Heads {
            nh,
            nkv: nh,
            hs: c / nh,
            window: 0,
            softcap: 0.0,
            bidirectional: false,
        }
    }

    /// With `nkv` key/value heads.
    pub fn grouped(self, nkv: usize) -> Self {
        Heads { nkv, ..self }
    }

    /// With a sliding window of `window` positions (0: none).
    pub fn window(self, window: usize) -> Self {
        Heads { window, ..self }
    }

    /// With the scores soft-capped at `softcap` (0: none).
    pub fn softcap(self, softcap: f32) -> Self {
        Heads { softcap, ..self }
    }

    /// Every query seeing every key of its text (an encoder's attention).
    pub fn bidirectional(self) -> Self {
        Heads {
            bidirectional: true,
            ..self
        }
    }

    /// A scaled score as the softmax takes it: soft-capped when `softcap` > 0.
    pub fn capped(&self, s: f64) -> f64 {
        match self.softcap > 0.0 {
            true => self.softcap as f64 * (s / self.softcap as f64).tanh(),
            false => s,
        }
    }

    /// Floats of the queries (and of the attention's output) in a row.
    pub fn q_width(&self) -> usize {
        self.nh * self.hs
    }

    /// Floats of the keys (or of the values) in a row.
    pub fn kv_width(&self) -> usize {
        self.nkv * self.hs
    }

    /// Floats in a row of the fused qkv.
    pub fn qkv_width(&self) -> usize {
        self.q_width() + 2 * self.kv_width()
    }

    /// Whether the query at position `i` sees the key at position `j`: causal, and
    /// within the window.
    pub fn sees(&self, i: usize, j: usize) -> bool {
        (self.bidirectional || j <= i) && (self.window == 0 || i < j + self.window)
    }
}

/// The MLP widths of a config in exact arithmetic ([`ModelConfig::widths`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Widths {
    pub dense: u128,
    pub expert: u128,
    pub shared: u128,
    /// SwiGLU MLPs: the first projection writes gate and up.
    pub swiglu: bool,
}

impl Widths {
    /// Floats the first projection of an MLP of hidden width `h` writes a row.
    pub fn first(&self, h: u128) -> u128 {
        if self.swiglu {
            2 * h
        } else {
            h
        }
    }
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

/// Element type of the paged KV cache: `auto` follows `dtype` (half floats with
/// float16 weights); `float16` halves the cache's bytes (twice the positions in the same
/// `--kv-pool-bytes`) and decode attention's reads, rounding each key and value to a
/// half float (a forward, which reads its own keys, is unaffected).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KvCacheDtype {
    Auto,
    Float32,
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

/// How a decode step's blocks reach the residual stream with the hardware kernels:
/// `auto` defers the residual adds of attention's output projection and of the MLP's
/// down projection as partial rows that the next kernel sums (a GPT-2 block in three
/// dispatches: qkv, attention with its projection, the whole MLP) where the model
/// allows it (a dense MLP, `n_embed` ≤ 2048, at most 32 heads, a hidden width split
/// into at most 32 chunks); `per_linear` keeps one dispatch per linear, each adding
/// its output in its epilogue (a GPT-2 block in five). The software kernels always
/// take one dispatch per linear.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecodeBlocks {
    Auto,
    PerLinear,
}

/// Whether the tile matmuls (the hardware kernels' prefill chunks and forwards) take
/// the op before a linear in their staging of its input: `auto` folds the norm before
/// a projection (by linearity: the rows' statistics summed from the values the tiles
/// stage, the epilogue normalising; prelude norm_fold) and
/// SwiGLU before the Llama MLP's down projection, a dispatch and a round trip of the
/// `[T, C]` or `[T, H]` rows fewer each; `separate` keeps both as their own dispatches.
/// The numbers agree to f32 rounding. The software kernels always keep them separate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MatmulFusion {
    Auto,
    Separate,
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
    /// Extension: the KV cache's element type (`auto`, `float32`, `float16`).
    pub kv_cache_dtype: KvCacheDtype,
    /// Extension: how the hardware kernels' decode step adds to the residual stream
    /// (`auto`: deferred partial rows where the model allows; `per_linear`).
    pub decode_blocks: DecodeBlocks,
    /// Extension: whether the hardware kernels' tile matmuls fold the norm before a
    /// projection and SwiGLU into their staging (`auto`; `separate`).
    pub matmul_fusion: MatmulFusion,
    /// Extension: the model family (`gpt2`, `llama`, `qwen2`, `mistral`, …); with
    /// `model` the directory's `config.json` decides it.
    pub architecture: Family,
    /// Extension: a Hugging Face model directory (`config.json`, safetensors weights,
    /// `tokenizer.json`, …) that decides every dimension.
    pub model: Option<String>,
    /// Extension (Llama families): key/value heads of grouped-query attention
    /// (default: `n_head`).
    pub n_kv_head: Option<usize>,
    /// Extension: head size (default: `n_embed / n_head`).
    pub head_dim: Option<usize>,
    /// Extension: MLP hidden width (default: `ffn_hidden_multiplier · n_embed`).
    pub intermediate_size: Option<usize>,
    /// Extension (rotary families): the base of the rotary frequencies.
    pub rope_theta: f32,
    /// Extension (rotary families): `{"rope_type": "default" | "linear" | "llama3" |
    /// "longrope", …}`.
    pub rope_scaling: RopeScaling,
    /// Extension (rotary families): the fraction of each query and key head rotated (its
    /// first `⌊head size · factor⌋` dimensions; Phi-4-mini's 0.75), the rest passed as
    /// they are.
    pub partial_rotary_factor: f32,
    /// Extension: the norms' epsilon (`layer_norm_epsilon`, `rms_norm_eps`).
    pub norm_eps: f32,
    /// Extension: keys older than this many positions are masked (Mistral).
    pub sliding_window: Option<usize>,
    /// Extension (Gemma): with `sliding_window`, every this-many-th layer attends to
    /// every key (layer l when `(l + 1) % pattern == 0`), the others in the window
    /// (1: every layer in the window).
    pub sliding_window_pattern: usize,
    /// Extension (Gemma): the rotary base of the windowed layers (`rope_local_base_freq`,
    /// without `rope_scaling`); `null`: `rope_theta` for every layer.
    pub rope_local_theta: Option<f32>,
    /// Extension (Gemma): attention scores are scaled by `1 / √this` instead of
    /// `1 / √head size` (folded into the queries).
    pub query_pre_attn_scalar: Option<f32>,
    /// Extension (Gemma 2): each scaled attention score `s` becomes
    /// `cap · tanh(s / cap)` before the softmax.
    pub attn_logit_softcapping: Option<f32>,
    /// Extension (Gemma 2): each logit `z` becomes `cap · tanh(z / cap)`.
    pub final_logit_softcapping: Option<f32>,
    /// Extension (SmolLM3): the layers whose queries and keys are not rotated (no
    /// positions: "NoPE").
    pub nope_layers: Vec<usize>,
    /// Extension (Granite): the token embedding times this (`embedding_multiplier`).
    pub embedding_multiplier: Option<f32>,
    /// Extension (Granite): attention scores times this instead of `1 / √head size`
    /// (`attention_multiplier`; folded into the queries).
    pub attention_multiplier: Option<f32>,
    /// Extension (Granite): each block's attention and MLP outputs times this before
    /// their residual adds (`residual_multiplier`; folded into the output and down
    /// projections).
    pub residual_multiplier: Option<f32>,
    /// Extension (Granite): the logits divided by this (`logits_scaling`; folded into
    /// the final norm).
    pub logits_scaling: Option<f32>,
    /// Extension: the LM head is the token embedding (`false`: an `lm_head` of its own).
    pub tie_word_embeddings: bool,
    /// Extension (Llama families): biases on q, k and v only (Qwen2: default `true`;
    /// others: `bias`, which for these families is Llama's `attention_bias`: q, k, v
    /// and o).
    pub qkv_bias: Option<bool>,
    /// Extension (MoE): each expert's hidden width (default: the MLP's).
    pub moe_intermediate_size: Option<usize>,
    /// Extension (MoE): renormalise the chosen experts' probabilities to sum to 1
    /// (Mixtral and GPT-2 MoE: true; Qwen2-MoE's `norm_topk_prob`, default false there).
    pub moe_norm_topk_prob: bool,
    /// Extension (MoE, Qwen2-MoE): a shared expert of this hidden width every token
    /// takes, scaled by a sigmoid gate.
    pub moe_shared_expert_size: Option<usize>,
    /// Extension (MoE): layer l has the MoE MLP when (l + 1) is a multiple of this and
    /// it is not in `moe_mlp_only_layers` (those keep the dense MLP).
    pub moe_decoder_sparse_step: usize,
    pub moe_mlp_only_layers: Vec<usize>,
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
            kv_cache_dtype: KvCacheDtype::Auto,
            decode_blocks: DecodeBlocks::Auto,
            matmul_fusion: MatmulFusion::Auto,
            architecture: Family::Gpt2,
            model: None,
            n_kv_head: None,
            head_dim: None,
            intermediate_size: None,
            rope_theta: 10_000.0,
            rope_scaling: RopeScaling::None,
            partial_rotary_factor: 1.0,
            norm_eps: 1e-5,
            sliding_window: None,
            sliding_window_pattern: 1,
            rope_local_theta: None,
            query_pre_attn_scalar: None,
            attn_logit_softcapping: None,
            final_logit_softcapping: None,
            nope_layers: Vec::new(),
            embedding_multiplier: None,
            attention_multiplier: None,
            residual_multiplier: None,
            logits_scaling: None,
            tie_word_embeddings: true,
            qkv_bias: None,
            moe_intermediate_size: None,
            moe_norm_topk_prob: true,
            moe_shared_expert_size: None,
            moe_decoder_sparse_step: 1,
            moe_mlp_only_layers: Vec::new(),
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
pub const MAX_HEAD_SIZE: usize = 256;

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
        let given = |k: &str| value.get(k).is_some();
        let (bias_given, moe_given, norm_given) =
            (given("bias"), given("use_moe"), given("moe_norm_topk_prob"));
        let mut cfg: ModelConfig =
            serde_json::from_value(value).map_err(|e| Error::Config(format!("{e}")))?;
        cfg.family_defaults(bias_given);
        if cfg.architecture.moe() {
            if moe_given && !cfg.use_moe {
                return Err(Error::Config(format!(
                    "use_moe (false) contradicts architecture {:?}, a Mixture-of-Experts family",
                    cfg.architecture
                )));
            }
            cfg.use_moe = true;
            if matches!(cfg.architecture, Family::Qwen2Moe | Family::Qwen3Moe) && !norm_given {
                cfg.moe_norm_topk_prob = false;
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Defaults that depend on the family: the Llama families have no biases unless
    /// asked (`bias` defaults to `true` for GPT-2 only).
    pub fn family_defaults(&mut self, bias_given: bool) {
        if self.architecture.llama_like() && !bias_given {
            self.bias = false;
        }
    }

    /// Head size HS: `head_dim`, else C / NH.
    pub fn head_size(&self) -> usize {
        self.head_dim.unwrap_or(self.n_embed / self.n_head.max(1))
    }

    /// The dimensions of each query and key head that are rotated (rotary families):
    /// `⌊head size · partial_rotary_factor⌋`, as `transformers` takes it.
    pub fn rotary_dim(&self) -> usize {
        (self.head_size() as f64 * f64::from(self.partial_rotary_factor) + 1e-6).floor() as usize
    }

    /// Key/value heads: `n_kv_head`, else `n_head`.
    pub fn kv_heads(&self) -> usize {
        self.n_kv_head.unwrap_or(self.n_head)
    }

    /// Whether the paged KV cache holds half floats (`kv_cache_dtype`; `auto`: with
    /// float16 weights).
    pub fn kv_half(&self) -> bool {
        match self.kv_cache_dtype {
            KvCacheDtype::Auto => self.dtype == Dtype::Float16,
            KvCacheDtype::Float32 => false,
            KvCacheDtype::Float16 => true,
        }
    }

    /// Whether layer `l` attends within `sliding_window` (every layer but each
    /// `sliding_window_pattern`-th one).
    pub fn windowed_layer(&self, l: usize) -> bool {
        self.sliding_window.is_some()
            && (self.sliding_window_pattern <= 1
                || !(l + 1).is_multiple_of(self.sliding_window_pattern))
    }

    /// The heads of layer `l`: [`ModelConfig::heads`] with its window, or none for a
    /// global layer between windowed ones.
    pub fn layer_heads(&self, l: usize) -> Heads {
        let heads = self.heads();
        match self.windowed_layer(l) {
            true => heads,
            false => Heads { window: 0, ..heads },
        }
    }

    /// The token embedding's factor: `embedding_multiplier`, else the family's.
    pub fn embed_scale(&self) -> f32 {
        self.embedding_multiplier
            .unwrap_or_else(|| self.architecture.embed_scale(self.n_embed))
    }

    /// What the queries are multiplied by so that the kernels' `1 / √head size`
    /// makes the model's score scale (`query_pre_attn_scalar`'s `1 / √s`, or
    /// `attention_multiplier`), folded into the weights at load; `None`: the kernels'.
    pub fn query_scale(&self) -> Option<f32> {
        let root = (self.head_size() as f32).sqrt();
        match (self.attention_multiplier, self.query_pre_attn_scalar) {
            (Some(m), _) => Some(m * root),
            (None, Some(s)) => Some(root / s.sqrt()),
            (None, None) => None,
        }
    }

    /// Whether the windowed layers rotate with a base of their own (`rope_local_theta`).
    pub fn local_rope(&self) -> bool {
        self.rope_local_theta.is_some() && self.sliding_window.is_some()
    }

    /// The attention's heads, head size and window.
    pub fn heads(&self) -> Heads {
        Heads {
            nh: self.n_head,
            nkv: self.kv_heads(),
            hs: self.head_size(),
            window: self.sliding_window.unwrap_or(0),
            softcap: self.attn_logit_softcapping.unwrap_or(0.0),
            bidirectional: self.architecture.encoder(),
        }
    }

    /// MLP hidden width: `intermediate_size`, else `ffn_hidden_multiplier · n_embed`.
    pub fn ffn_hidden(&self) -> usize {
        self.intermediate_size
            .unwrap_or(self.ffn_hidden_multiplier.saturating_mul(self.n_embed))
    }

    /// Whether block `layer` has the Mixture-of-Experts MLP.
    pub fn is_moe_layer(&self, layer: usize) -> bool {
        self.use_moe
            && (layer + 1).is_multiple_of(self.moe_decoder_sparse_step.max(1))
            && !self.moe_mlp_only_layers.contains(&layer)
    }

    /// MoE layers among the blocks (exact, without walking them).
    pub fn moe_layer_count(&self) -> usize {
        if !self.use_moe {
            return 0;
        }
        let step = self.moe_decoder_sparse_step.max(1);
        let mut only: Vec<usize> = self
            .moe_mlp_only_layers
            .iter()
            .copied()
            .filter(|&l| l < self.n_layer && (l + 1).is_multiple_of(step))
            .collect();
        only.sort_unstable();
        only.dedup();
        self.n_layer / step - only.len()
    }

    /// Whether some block keeps the dense MLP.
    pub fn has_dense_layers(&self) -> bool {
        self.moe_layer_count() < self.n_layer
    }

    /// Each expert's hidden width.
    pub fn moe_hidden(&self) -> usize {
        self.moe_intermediate_size
            .unwrap_or_else(|| self.ffn_hidden())
    }

    /// Floats of a row the MLP's first projection writes: gate and up (SwiGLU), or
    /// the hidden width.
    pub fn ffn_first_width(&self) -> usize {
        if self.architecture.gated_mlp() {
            2 * self.ffn_hidden()
        } else {
            self.ffn_hidden()
        }
    }

    /// `(outputs, inputs)` of a block's linears that take the tiled matmul: qkv, the
    /// attention's output projection, and with a dense MLP its two projections (exact
    /// arithmetic, for the memory estimate).
    pub fn linear_shapes(&self) -> Vec<(u128, u128)> {
        let n = |x: usize| x as u128;
        let hd = self.heads();
        let c = n(self.n_embed);
        let w = self.widths();
        let mut shapes = vec![(n(hd.qkv_width()), c), (c, n(hd.q_width()))];
        if self.has_dense_layers() {
            shapes.extend([(w.first(w.dense), c), (c, w.dense)]);
        }
        if w.shared > 0 {
            shapes.extend([(w.first(w.shared), c), (c, w.shared), (4, c)]);
        }
        shapes
    }

    /// Biases on q, k and v.
    pub fn has_qkv_bias(&self) -> bool {
        match self.architecture {
            Family::Gpt2 => self.bias,
            Family::Qwen2 | Family::Qwen2Moe => self.qkv_bias.unwrap_or(true),
            _ => self.qkv_bias.unwrap_or(self.bias),
        }
    }

    /// A bias on the attention's output projection.
    pub fn has_o_bias(&self) -> bool {
        match self.architecture {
            Family::Qwen2 | Family::Qwen2Moe => false,
            _ => self.bias,
        }
    }

    /// Biases on the MLP's projections (GPT-2's and StarCoder2's, with `bias`).
    pub fn has_mlp_bias(&self) -> bool {
        !self.architecture.gated_mlp() && self.bias
    }

    /// Biases on the LayerNorms (GPT-2's and StarCoder2's, with `bias`).
    pub fn has_norm_bias(&self) -> bool {
        !self.architecture.rms_norm() && self.bias
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
        if self.head_dim.is_none() && !self.n_embed.is_multiple_of(self.n_head) {
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
        let hs_rule = if self.architecture.llama_like() { 8 } else { 4 };
        if hs == 0 || !hs.is_multiple_of(hs_rule) || hs > MAX_HEAD_SIZE {
            let what = if self.head_dim.is_some() {
                "head_dim"
            } else {
                "head size n_embed/n_head"
            };
            return Err(Error::Config(format!(
                "{what} ({hs}) must be a multiple of {hs_rule} and at most {MAX_HEAD_SIZE}{}",
                if hs_rule == 8 {
                    " (rotary pairs are loaded as vec4s)"
                } else {
                    ""
                }
            )));
        }
        let nkv = self.kv_heads();
        if nkv == 0 || !self.n_head.is_multiple_of(nkv) {
            return Err(Error::Config(format!(
                "n_head ({}) must be a multiple of n_kv_head ({nkv})",
                self.n_head
            )));
        }
        if self.n_head / nkv > 64 {
            return Err(Error::Config(format!(
                "n_head / n_kv_head ({} / {nkv}) must be at most 64 query heads a key/value head",
                self.n_head
            )));
        }
        if nkv != self.n_head && !self.architecture.llama_like() {
            return Err(Error::Config(format!(
                "n_kv_head ({nkv}) differs from n_head ({}): grouped-query attention is for the Llama families (architecture \"llama\", …), not gpt2",
                self.n_head
            )));
        }
        let hidden = self.ffn_hidden();
        if hidden == 0 || !hidden.is_multiple_of(4) {
            return Err(Error::Config(format!(
                "intermediate_size ({hidden}) must be a positive multiple of 4"
            )));
        }
        if self.sliding_window == Some(0) {
            return Err(Error::Config(
                "sliding_window (0) must be at least 1, or null for none".into(),
            ));
        }
        if !(self.norm_eps > 0.0 && self.norm_eps < 1.0) {
            return Err(Error::Config(format!(
                "norm_eps ({}) must be in (0, 1)",
                self.norm_eps
            )));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 1.0) {
            return Err(Error::Config(format!(
                "rope_theta ({}) must be a number above 1",
                self.rope_theta
            )));
        }
        self.validate_extensions()?;
        for (key, width) in [
            ("moe_intermediate_size", self.moe_intermediate_size),
            ("moe_shared_expert_size", self.moe_shared_expert_size),
        ] {
            if let Some(w) = width {
                if w == 0 || !w.is_multiple_of(4) {
                    return Err(Error::Config(format!(
                        "{key} ({w}) must be a positive multiple of 4"
                    )));
                }
            }
        }
        if self.moe_decoder_sparse_step == 0 {
            return Err(Error::Config(
                "moe_decoder_sparse_step (0) must be at least 1".into(),
            ));
        }
        if self.moe_shared_expert_size.is_some() && !self.architecture.llama_like() {
            return Err(Error::Config(
                "moe_shared_expert_size is for the Llama families' SwiGLU experts (architecture qwen2_moe)".into(),
            ));
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

    /// The extension keys of the Llama-shaped families: the layer pattern, the score
    /// and residual scalars, the layers without positions, the rotated part of a head
    /// and the rotary scaling's parameters.
    fn validate_extensions(&self) -> Result<()> {
        // an encoder's attention sees both ways over whole texts: no block-sparse
        // layout, window or experts
        if self.architecture.encoder() {
            let refused = [
                ("use_sparse_attention", self.use_sparse_attention),
                ("use_moe", self.use_moe),
                ("sliding_window", self.sliding_window.is_some()),
            ];
            if let Some((key, _)) = refused.iter().find(|(_, on)| *on) {
                return Err(Error::Config(format!(
                    "{key} is not supported for an encoder (architecture bert)"
                )));
            }
        }
        if let Some(l) = self.nope_layers.iter().find(|&&l| l >= self.n_layer) {
            return Err(Error::Config(format!(
                "nope_layers: layer {l} does not exist (n_layer {})",
                self.n_layer
            )));
        }
        if self.sliding_window_pattern == 0 {
            return Err(Error::Config(
                "sliding_window_pattern (0) must be at least 1".into(),
            ));
        }
        if let Some(t) = self.rope_local_theta {
            if !(t.is_finite() && t > 1.0) {
                return Err(Error::Config(format!(
                    "rope_local_theta ({t}) must be a number above 1"
                )));
            }
        }
        for (key, v) in [
            ("query_pre_attn_scalar", self.query_pre_attn_scalar),
            ("attn_logit_softcapping", self.attn_logit_softcapping),
            ("final_logit_softcapping", self.final_logit_softcapping),
            ("embedding_multiplier", self.embedding_multiplier),
            ("attention_multiplier", self.attention_multiplier),
            ("residual_multiplier", self.residual_multiplier),
            ("logits_scaling", self.logits_scaling),
        ] {
            if let Some(s) = v {
                if !(s.is_finite() && s > 0.0) {
                    return Err(Error::Config(format!(
                        "{key} ({s}) must be a positive number"
                    )));
                }
            }
        }

        let f = self.partial_rotary_factor;
        if !(f > 0.0 && f <= 1.0) {
            return Err(Error::Config(format!(
                "partial_rotary_factor ({f}) must be in (0, 1]"
            )));
        }
        let (hs, rot) = (self.head_size(), self.rotary_dim());
        if f != 1.0 && (rot < 2 || !rot.is_multiple_of(2)) {
            return Err(Error::Config(format!(
                "partial_rotary_factor ({f}) rotates {rot} of a head's {hs} dimensions: that must be an even number, at least 2"
            )));
        }
        let factor_ok = |x: f32| x.is_finite() && x > 0.0;
        match &self.rope_scaling {
            RopeScaling::None => {}
            RopeScaling::Linear { factor } if !factor_ok(*factor) => {
                return Err(Error::Config(format!(
                    "rope_scaling factor ({factor}) must be a positive number"
                )));
            }
            RopeScaling::Linear { .. } | RopeScaling::Llama3 { .. } => {}
            RopeScaling::Yarn {
                factor,
                original_max_position_embeddings,
                beta_fast,
                beta_slow,
                attention_factor,
                ..
            } => {
                let ok = [
                    *factor,
                    *beta_fast,
                    *beta_slow,
                    attention_factor.unwrap_or(1.0),
                ]
                .into_iter()
                .all(factor_ok);
                if !ok || *original_max_position_embeddings == 0 {
                    return Err(Error::Config(
                        "rope_scaling yarn: factor, beta_fast, beta_slow, attention_factor and original_max_position_embeddings must be positive".into(),
                    ));
                }
            }
            RopeScaling::LongRope {
                short_factor,
                long_factor,
                original_max_position_embeddings,
                attention_factor,
            } => {
                for (key, factors) in [("short_factor", short_factor), ("long_factor", long_factor)]
                {
                    if factors.len() != rot / 2 || !factors.iter().all(|&x| factor_ok(x)) {
                        return Err(Error::Config(format!(
                            "rope_scaling {key} must hold {} positive numbers (one per rotated pair of a head's dimensions), not {}",
                            rot / 2,
                            factors.len()
                        )));
                    }
                }
                if *original_max_position_embeddings == 0 || !factor_ok(*attention_factor) {
                    return Err(Error::Config(format!(
                        "rope_scaling original_max_position_embeddings ({original_max_position_embeddings}) and attention_factor ({attention_factor}) must be positive"
                    )));
                }
            }
        }
        Ok(())
    }

    /// [`ModelConfig::parameter_count`] without overflow.
    pub(crate) fn parameter_count_wide(&self) -> u128 {
        let n = |x: usize| x as u128;
        let c = n(self.n_embed);
        let w = self.widths();
        let hd = self.heads();
        let (q, kv) = (n(hd.q_width()), n(hd.kv_width()));
        let qkv = q + 2 * kv;
        let bias = |on: bool| n(usize::from(on));
        let (bn, bqkv, bo, bm) = (
            bias(self.has_norm_bias()),
            bias(self.has_qkv_bias()),
            bias(self.has_o_bias()),
            bias(self.has_mlp_bias()),
        );
        let ln = c + bn * c;
        // Qwen3's norms of the query and key heads: a weight a dimension of a head each
        let head_norm = match (
            self.architecture.head_norm(),
            self.architecture.whole_head_norm(),
        ) {
            (true, false) => 2 * n(hd.hs),
            (true, true) => q + kv,
            (false, _) => 0,
        };
        let attn = c * qkv + bqkv * qkv + head_norm + q * c + bo * c;
        // an MLP of hidden width h: its first projection writes `first(h)` floats
        let mlp = |h: u128| c * w.first(h) + bm * w.first(h) + h * c + bm * c;
        let e = n(self.moe_num_experts);
        let shared = if w.shared > 0 { mlp(w.shared) + c } else { 0 };
        let moe = c * e + e * mlp(w.expert) + shared;
        let moe_layers = n(self.moe_layer_count());
        // Gemma's norms after the attention and the MLP
        let post = if self.architecture.post_norms() {
            2 * c
        } else {
            0
        };
        // (a parallel block has one norm, OLMo 2's none before its attention and MLP)
        let norms = match (
            self.architecture.pre_norms(),
            self.architecture.parallel_block(),
        ) {
            (false, _) => 0,
            (true, true) => 1,
            (true, false) => 2,
        };
        let blocks = n(self.n_layer) * (norms * ln + attn + post)
            + moe_layers * moe
            + (n(self.n_layer) - moe_layers) * mlp(w.dense);
        let positions = if self.architecture.llama_like() {
            0
        } else {
            n(self.context_size) * c
        };
        let head = if self.tie_word_embeddings {
            0
        } else {
            n(self.vocab_size) * c
        };
        n(self.vocab_size) * c + positions + head + blocks + ln
    }

    /// The MLP widths in exact arithmetic: the dense MLP's, each expert's and the
    /// shared expert's (0: none).
    pub(crate) fn widths(&self) -> Widths {
        let n = |x: usize| x as u128;
        let dense = self
            .intermediate_size
            .map_or(n(self.ffn_hidden_multiplier) * n(self.n_embed), n);
        Widths {
            dense,
            expert: self.moe_intermediate_size.map_or(dense, n),
            shared: self.moe_shared_expert_size.map_or(0, n),
            swiglu: self.architecture.gated_mlp(),
        }
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
    fn partial_rotations_and_longrope_factors_are_checked() {
        let base = r#""architecture": "phi3", "n_embed": 64, "n_head": 4"#;
        let cfg = |extra: &str| ModelConfig::from_json(&format!("{{{base}, {extra}}}"));
        let c = cfg(r#""partial_rotary_factor": 0.75"#).unwrap();
        assert_eq!((c.head_size(), c.rotary_dim()), (16, 12));
        for (extra, says) in [
            (r#""partial_rotary_factor": 0.0"#, "must be in (0, 1]"),
            (
                r#""partial_rotary_factor": 0.1"#,
                "rotates 1 of a head's 16",
            ),
            (
                r#""rope_scaling": {"rope_type": "longrope", "short_factor": [1, 1],
                    "long_factor": [1, 1], "original_max_position_embeddings": 8}"#,
                "short_factor must hold 8 positive numbers",
            ),
            (
                r#""partial_rotary_factor": 0.75, "rope_scaling": {"rope_type": "longrope",
                    "short_factor": [1, 1, 1, 1, 1, 1], "long_factor": [1, 1, 1, 1, 1, -1],
                    "original_max_position_embeddings": 8}"#,
                "long_factor must hold 6 positive numbers",
            ),
            (
                r#""rope_scaling": {"rope_type": "linear", "factor": 0}"#,
                "factor (0) must be a positive number",
            ),
        ] {
            let e = cfg(extra).unwrap_err().to_string();
            assert!(e.contains(says), "{extra}: {e}");
        }
    }

    #[test]
    fn score_scales_fold_into_a_query_factor() {
        let cfg = |extra: &str| {
            ModelConfig::from_json(&format!(
                r#"{{"architecture": "gemma3", "n_embed": 64, "n_head": 2, {extra}}}"#
            ))
            .unwrap()
        };
        // heads of 32: the kernels' 1/√32; Gemma 27B's 1/√168 over heads of 128
        assert_eq!(cfg(r#""head_dim": 32"#).query_scale(), None);
        let g = cfg(r#""head_dim": 128, "query_pre_attn_scalar": 168"#);
        assert!((g.query_scale().unwrap() - (128f32 / 168.0).sqrt()).abs() < 1e-6);
        // Granite's multiplier of 1/64 over heads of 16: the queries times √16 / 64
        let m = cfg(r#""head_dim": 16, "attention_multiplier": 0.015625"#);
        assert_eq!(m.query_scale(), Some(0.0625));
        assert_eq!(
            m.embed_scale(),
            8.0,
            "gemma's √64 unless embedding_multiplier"
        );
        let e = ModelConfig::from_json(r#"{"residual_multiplier": -1}"#).unwrap_err();
        assert!(e.to_string().contains("residual_multiplier (-1)"), "{e}");
        // Gemma 2's soft caps: the attention's reaches every layer's heads
        let g = ModelConfig::from_json(
            r#"{"architecture": "gemma2", "n_embed": 64, "n_head": 2,
                "sliding_window": 4, "sliding_window_pattern": 2,
                "attn_logit_softcapping": 50.0}"#,
        )
        .unwrap();
        assert_eq!(
            (g.layer_heads(1).softcap, g.final_logit_softcapping),
            (50.0, None)
        );
        for key in ["attn_logit_softcapping", "final_logit_softcapping"] {
            let e = ModelConfig::from_json(&format!(r#"{{"{key}": 0}}"#)).unwrap_err();
            assert!(
                e.to_string()
                    .contains(&format!("{key} (0) must be a positive")),
                "{e}"
            );
        }
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
