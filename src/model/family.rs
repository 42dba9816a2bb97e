//! A model family as data: what a Hugging Face `config.json` says about the blocks
//! (norm, positions, attention heads, biases, MLP or MoE, sliding window, tied head),
//! for the families the service loads. Both config layouts real directories carry are
//! read: transformers 4 (`rope_theta`, `rope_scaling` with `type` or `rope_type`) and
//! transformers 5 (`rope_parameters`). Errors are `Error::Config` naming the key.

use serde_json::{Map, Value};

use super::rope::RopeScaling;
use crate::error::{Error, Result};

/// The `architectures` the service loads, with the family each is.
pub const SUPPORTED: &[(&str, Family)] = &[
    ("GPT2LMHeadModel", Family::Gpt2),
    ("LlamaForCausalLM", Family::Llama),
    ("Qwen2ForCausalLM", Family::Qwen2),
    ("MistralForCausalLM", Family::Mistral),
    ("MixtralForCausalLM", Family::Mixtral),
    ("Qwen2MoeForCausalLM", Family::Qwen2Moe),
    ("Qwen3ForCausalLM", Family::Qwen3),
    ("Qwen3MoeForCausalLM", Family::Qwen3Moe),
    ("Phi3ForCausalLM", Family::Phi3),
    ("GemmaForCausalLM", Family::Gemma),
    ("Gemma2ForCausalLM", Family::Gemma2),
    ("Gemma3ForCausalLM", Family::Gemma3),
    // its language model (`text_config`), without the vision tower
    ("Gemma3ForConditionalGeneration", Family::Gemma3),
    ("GraniteForCausalLM", Family::Granite),
    ("SmolLM3ForCausalLM", Family::Smollm3),
    ("GlmForCausalLM", Family::Glm),
    ("Glm4ForCausalLM", Family::Glm4),
    ("Starcoder2ForCausalLM", Family::Starcoder2),
    ("CohereForCausalLM", Family::Cohere),
    ("Cohere2ForCausalLM", Family::Cohere2),
    ("Olmo2ForCausalLM", Family::Olmo2),
    // base models (no LM head: embedding models such as e5-mistral, Qwen3-Embedding's
    // shape), their tensors without `model.`
    ("LlamaModel", Family::Llama),
    ("MistralModel", Family::Mistral),
    ("Qwen2Model", Family::Qwen2),
    ("Qwen3Model", Family::Qwen3),
    // encoders (sentence-embedding models: all-MiniLM, bge, e5, gte, multilingual-e5)
    ("BertModel", Family::Bert),
    ("XLMRobertaModel", Family::Bert),
    ("RobertaModel", Family::Bert),
    // cross-encoders (rerankers: ms-marco-MiniLM, bge-reranker): an encoder with a
    // classification head over its first token
    ("BertForSequenceClassification", Family::Bert),
    ("XLMRobertaForSequenceClassification", Family::Bert),
    ("RobertaForSequenceClassification", Family::Bert),
];

pub use crate::config::Family;

/// The norm of every block and of the final layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NormKind {
    /// LayerNorm with weight and bias (`layer_norm_epsilon`).
    Layer { eps: f32 },
    /// RMSNorm with weight only (`rms_norm_eps`).
    Rms { eps: f32 },
}

/// How positions enter the model.
#[derive(Clone, Debug, PartialEq)]
pub enum Positions {
    /// A learned table added to the embedding (GPT-2's wpe).
    Learned,
    /// Rotary embedding of queries and keys, half-split, over the `partial` fraction of
    /// each head (`partial_rotary_factor`; 1: all of it).
    Rotary {
        theta: f32,
        scaling: RopeScaling,
        partial: f32,
    },
}

/// The MLP of a block.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mlp {
    /// `c_proj(gelu(c_fc(x)))` (GPT-2).
    Gelu { hidden: usize },
    /// `down(silu(gate(x)) · up(x))` (Llama).
    SwiGlu { hidden: usize },
}

/// A Mixture-of-Experts MLP (SwiGLU experts).
#[derive(Clone, Debug, PartialEq)]
pub struct Moe {
    pub experts: usize,
    pub top_k: usize,
    /// Each expert's hidden width.
    pub hidden: usize,
    /// Renormalise the chosen experts' softmax weights to sum to 1 (Mixtral always;
    /// Qwen2-MoE's `norm_topk_prob`).
    pub norm_topk_prob: bool,
    /// Qwen2-MoE: a shared expert of this hidden width, gated by a sigmoid.
    pub shared_expert_hidden: Option<usize>,
    /// Qwen2-MoE: layer l is MoE when `(l + 1) % decoder_sparse_step == 0` and it is not
    /// in `mlp_only_layers` (those take the dense MLP of `Architecture::mlp`).
    pub decoder_sparse_step: usize,
    pub mlp_only_layers: Vec<usize>,
}

/// Everything about a model's shape that its `config.json` decides.
#[derive(Clone, Debug, PartialEq)]
pub struct Architecture {
    pub family: Family,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub n_layer: usize,
    pub n_head: usize,
    /// Key/value heads (grouped-query attention); `n_head` when absent.
    pub n_kv_head: usize,
    /// Head size; `hidden_size / n_head` when absent.
    pub head_dim: usize,
    pub max_positions: usize,
    pub norm: NormKind,
    pub positions: Positions,
    /// Biases on the q, k and v projections (Qwen2: always; Llama: `attention_bias`).
    pub qkv_bias: bool,
    /// Bias on the attention's output projection.
    pub o_bias: bool,
    /// Biases on the MLP's projections.
    pub mlp_bias: bool,
    pub mlp: Mlp,
    pub moe: Option<Moe>,
    /// Keys older than this many positions are masked (Mistral's `sliding_window`).
    pub sliding_window: Option<usize>,
    /// Gemma: every this-many-th layer is global, the others windowed (1: all windowed).
    pub sliding_window_pattern: usize,
    /// Gemma: the windowed layers' rotary base (`rope_local_base_freq`).
    pub rope_local_theta: Option<f32>,
    /// Gemma: scores scaled by `1 / √this` (`query_pre_attn_scalar`).
    pub query_pre_attn_scalar: Option<f32>,
    /// Gemma 2: the soft caps of the attention scores and of the logits
    /// (`attn_logit_softcapping`, `final_logit_softcapping`).
    pub softcaps: [Option<f32>; 2],
    /// SmolLM3: the layers without rotary positions (`no_rope_layers`' zeros).
    pub nope_layers: Vec<usize>,
    /// Granite's scalars: `embedding_multiplier`, `attention_multiplier`,
    /// `residual_multiplier`, `logits_scaling` (`None` for the other families).
    pub multipliers: [Option<f32>; 4],
    /// The LM head is the embedding (`tie_word_embeddings`).
    pub tied_head: bool,
}

impl Architecture {
    /// Whether block `layer` has the MoE MLP.
    pub fn is_moe_layer(&self, layer: usize) -> bool {
        self.moe.as_ref().is_some_and(|m| {
            (layer + 1).is_multiple_of(m.decoder_sparse_step.max(1))
                && !m.mlp_only_layers.contains(&layer)
        })
    }
}

fn bad(detail: String) -> Error {
    Error::Config(format!("config.json: {detail}"))
}

/// Reads the keys of one config object, naming the one at fault.
struct Keys<'a>(&'a Map<String, Value>);

impl Keys<'_> {
    fn usize_opt(&self, key: &str) -> Result<Option<usize>> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| bad(format!("{key} must be a non-negative integer, not {v}"))),
        }
    }
    fn usize(&self, key: &str) -> Result<usize> {
        self.usize_opt(key)?
            .ok_or_else(|| bad(format!("{key} is missing")))
    }
    fn f32_opt(&self, key: &str) -> Result<Option<f32>> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .map(|x| Some(x as f32))
                .ok_or_else(|| bad(format!("{key} must be a number, not {v}"))),
        }
    }
    fn f32_or(&self, key: &str, default: f32) -> Result<f32> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v
                .as_f64()
                .map(|x| x as f32)
                .ok_or_else(|| bad(format!("{key} must be a number, not {v}"))),
        }
    }
    fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| bad(format!("{key} must be true or false, not {v}"))),
        }
    }
}

/// The family of `config.json`'s `architectures` (or, without it, its `model_type`).
fn family_of(cfg: &Map<String, Value>) -> Result<Family> {
    let supported = || {
        SUPPORTED
            .iter()
            .map(|(a, _)| *a)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(archs) = cfg.get("architectures").and_then(Value::as_array) {
        let names: Vec<&str> = archs.iter().filter_map(Value::as_str).collect();
        return names
            .iter()
            .find_map(|n| SUPPORTED.iter().find(|(a, _)| a == n).map(|(_, f)| *f))
            .ok_or_else(|| {
                bad(format!(
                    "architectures {names:?}: not one this service runs (supported: {})",
                    supported()
                ))
            });
    }
    let by_type = [
        ("gpt2", Family::Gpt2),
        ("llama", Family::Llama),
        ("qwen2", Family::Qwen2),
        ("mistral", Family::Mistral),
        ("mixtral", Family::Mixtral),
        ("qwen2_moe", Family::Qwen2Moe),
        ("qwen3", Family::Qwen3),
        ("qwen3_moe", Family::Qwen3Moe),
        ("phi3", Family::Phi3),
        ("gemma", Family::Gemma),
        ("gemma2", Family::Gemma2),
        ("gemma3_text", Family::Gemma3),
        ("granite", Family::Granite),
        ("smollm3", Family::Smollm3),
        ("glm", Family::Glm),
        ("glm4", Family::Glm4),
        ("starcoder2", Family::Starcoder2),
        ("cohere", Family::Cohere),
        ("cohere2", Family::Cohere2),
        ("olmo2", Family::Olmo2),
        ("bert", Family::Bert),
        ("roberta", Family::Bert),
        ("xlm-roberta", Family::Bert),
    ];
    let t = cfg.get("model_type").and_then(Value::as_str).unwrap_or("");
    by_type
        .iter()
        .find(|(n, _)| *n == t)
        .map(|(_, f)| *f)
        .ok_or_else(|| {
            bad(format!(
                "neither architectures nor a known model_type ({t:?}): supported: {}",
                supported()
            ))
        })
}

/// The rows of an encoder's position table before its position 0: RoBERTa's
/// (`XLMRobertaModel`, `RobertaModel`) count positions from `pad_token_id + 1`; BERT's
/// from 0.
pub fn position_offset(cfg: &Map<String, Value>) -> Result<usize> {
    let t = cfg.get("model_type").and_then(Value::as_str).unwrap_or("");
    let roberta = ["roberta", "xlm-roberta", "camembert"].contains(&t)
        || cfg
            .get("architectures")
            .and_then(Value::as_array)
            .is_some_and(|a| {
                a.iter()
                    .any(|n| n.as_str().is_some_and(|n| n.contains("Roberta")))
            });
    match roberta {
        true => Ok(Keys(cfg).usize_opt("pad_token_id")?.unwrap_or(1) + 1),
        false => Ok(0),
    }
}

/// A BERT-shaped encoder's architecture (`BertConfig`, `XLMRobertaConfig`): learned
/// absolute positions, LayerNorms with biases after the attention and the MLP, exact
/// GELU, biases on every linear, no LM head.
fn encoder(cfg: &Map<String, Value>) -> Result<Architecture> {
    let k = Keys(cfg);
    let hidden_size = k.usize("hidden_size")?;
    let n_head = k.usize("num_attention_heads")?;
    if n_head == 0 || hidden_size % n_head != 0 {
        return Err(bad(format!(
            "hidden_size ({hidden_size}) must be a multiple of num_attention_heads ({n_head})"
        )));
    }
    if let Some(act) = cfg.get("hidden_act").and_then(Value::as_str) {
        if act != "gelu" {
            return Err(bad(format!(
                "hidden_act {act:?} is not supported for an encoder (gelu)"
            )));
        }
    }
    if let Some(p) = cfg.get("position_embedding_type").and_then(Value::as_str) {
        if p != "absolute" {
            return Err(bad(format!(
                "position_embedding_type {p:?} is not supported (absolute)"
            )));
        }
    }
    let offset = position_offset(cfg)?;
    let table = k.usize("max_position_embeddings")?;
    if table <= offset {
        return Err(bad(format!(
            "max_position_embeddings ({table}) leaves no position after the padding's ({offset})"
        )));
    }
    let eps = k.f32_or("layer_norm_eps", 1e-12)?;
    Ok(Architecture {
        vocab_size: k.usize("vocab_size")?,
        hidden_size,
        n_layer: k.usize("num_hidden_layers")?,
        n_head,
        n_kv_head: n_head,
        head_dim: hidden_size / n_head,
        max_positions: table - offset,
        ..learned_block(Family::Bert, eps, k.usize("intermediate_size")?, true)
    })
}

/// GPT-2's block as data, the encoders' too: learned positions, LayerNorms of `eps`, a
/// GELU MLP of `mlp` hidden, biases on every linear, nothing else; the sizes (zero
/// here) are the caller's.
fn learned_block(family: Family, eps: f32, mlp: usize, tied_head: bool) -> Architecture {
    Architecture {
        family,
        vocab_size: 0,
        hidden_size: 0,
        n_layer: 0,
        n_head: 0,
        n_kv_head: 0,
        head_dim: 0,
        max_positions: 0,
        norm: NormKind::Layer { eps },
        positions: Positions::Learned,
        qkv_bias: true,
        o_bias: true,
        mlp_bias: true,
        mlp: Mlp::Gelu { hidden: mlp },
        moe: None,
        sliding_window: None,
        sliding_window_pattern: 1,
        rope_local_theta: None,
        query_pre_attn_scalar: None,
        softcaps: [None; 2],
        multipliers: [None; 4],
        nope_layers: Vec::new(),
        tied_head,
    }
}

/// `rope_theta` and the scaling, from `rope_parameters` (transformers 5) or
/// `rope_theta` + `rope_scaling` (transformers 4; `type` or `rope_type`).
fn rotary(cfg: &Map<String, Value>) -> Result<Positions> {
    let empty = Map::new();
    let params = cfg.get("rope_parameters").and_then(Value::as_object);
    let scaling = params
        .or_else(|| cfg.get("rope_scaling").and_then(Value::as_object))
        .unwrap_or(&empty);
    let theta = match params {
        Some(p) => Keys(p).f32_or("rope_theta", Keys(cfg).f32_or("rope_theta", 10_000.0)?)?,
        None => Keys(cfg).f32_or("rope_theta", 10_000.0)?,
    };
    // the part of a head rotated (Phi-4-mini's 0.75; 1: all of it)
    let partial = match params {
        Some(p) => Keys(p).f32_or(
            "partial_rotary_factor",
            Keys(cfg).f32_or("partial_rotary_factor", 1.0)?,
        )?,
        None => Keys(cfg).f32_or("partial_rotary_factor", 1.0)?,
    };
    if !(partial > 0.0 && partial <= 1.0) {
        return Err(bad(format!(
            "partial_rotary_factor ({partial}) must be in (0, 1]"
        )));
    }
    let k = Keys(scaling);
    let kind = scaling
        .get("rope_type")
        .or_else(|| scaling.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let scaling = match kind {
        "default" => RopeScaling::None,
        "linear" => RopeScaling::Linear {
            factor: k.f32_or("factor", 1.0)?,
        },
        "llama3" => RopeScaling::Llama3 {
            factor: k.f32_or("factor", 8.0)?,
            low_freq_factor: k.f32_or("low_freq_factor", 1.0)?,
            high_freq_factor: k.f32_or("high_freq_factor", 4.0)?,
            original_max_position_embeddings: k.usize("original_max_position_embeddings")?,
        },
        // Phi-3 (`su` before transformers named it)
        "longrope" | "su" => longrope(cfg, scaling)?,
        "yarn" => yarn(cfg, scaling)?,
        other => {
            return Err(bad(format!(
                "rope type {other:?} is not supported (default, linear, llama3, longrope, yarn)"
            )))
        }
    };
    Ok(Positions::Rotary {
        theta,
        scaling,
        partial,
    })
}

/// SmolLM3's layers without positions: the zeros of `no_rope_layers` (1: rotated), or
/// without it every `no_rope_layer_interval`-th layer (4).
fn nope_layers(cfg: &Map<String, Value>) -> Result<Vec<usize>> {
    let k = Keys(cfg);
    match cfg.get("no_rope_layers") {
        Some(Value::Array(flags)) => flags
            .iter()
            .map(|f| f.as_u64())
            .collect::<Option<Vec<u64>>>()
            .map(|f| (0..f.len()).filter(|&l| f[l] == 0).collect())
            .ok_or_else(|| bad("no_rope_layers must list 0s and 1s".into())),
        None | Some(Value::Null) => {
            let every = k.usize_opt("no_rope_layer_interval")?.unwrap_or(4).max(1);
            let n = k.usize("num_hidden_layers")?;
            Ok((0..n).filter(|l| (l + 1) % every == 0).collect())
        }
        Some(v) => Err(bad(format!("no_rope_layers must be a list, not {v}"))),
    }
}

/// YaRN's parameters: `factor` (else `max_position_embeddings` over the original, as
/// DeepSeek's configs leave it), the original context (in the parameters, else at the
/// config's top, else `max_position_embeddings`), the band's `beta_fast` / `beta_slow`,
/// and the attention factor: given, else from `mscale` / `mscale_all_dim` when both are
/// (DeepSeek's), else the default (`None`: `0.1 ln factor + 1`).
fn yarn(cfg: &Map<String, Value>, scaling: &Map<String, Value>) -> Result<RopeScaling> {
    let (k, top) = (Keys(scaling), Keys(cfg));
    let original = match k.usize_opt("original_max_position_embeddings")? {
        Some(n) => n,
        None => match top.usize_opt("original_max_position_embeddings")? {
            Some(n) => n,
            None => top.usize("max_position_embeddings")?,
        },
    };
    let factor = match k.f32_opt("factor")? {
        Some(f) => f,
        None => top.usize("max_position_embeddings")? as f32 / original.max(1) as f32,
    };
    let attention_factor = match (
        k.f32_opt("attention_factor")?,
        k.f32_opt("mscale")?.filter(|&m| m != 0.0),
        k.f32_opt("mscale_all_dim")?.filter(|&m| m != 0.0),
    ) {
        (Some(a), _, _) => Some(a),
        (None, Some(m), Some(all)) => {
            let mscale = super::rope::yarn_mscale;
            Some(mscale(factor, m) / mscale(factor, all))
        }
        _ => None,
    };
    let beta = |key: &str, default: f32| -> Result<f32> {
        Ok(k.f32_opt(key)?.filter(|&b| b != 0.0).unwrap_or(default))
    };
    Ok(RopeScaling::Yarn {
        factor,
        original_max_position_embeddings: original,
        beta_fast: beta("beta_fast", 32.0)?,
        beta_slow: beta("beta_slow", 1.0)?,
        attention_factor,
        truncate: k.bool_or("truncate", true)?,
    })
}

/// Phi-3's `longrope` parameters: the short and long factors, the original context
/// (in the parameters, or at the top of the config as transformers 4 wrote it), and the
/// attention factor, given or as `_compute_longrope_parameters` derives it from the
/// context's growth (`factor`, else `max_position_embeddings` over the original).
fn longrope(cfg: &Map<String, Value>, scaling: &Map<String, Value>) -> Result<RopeScaling> {
    let k = Keys(scaling);
    let factors = |key: &str| -> Result<Vec<f32>> {
        scaling
            .get(key)
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(|v| v.as_f64().map(|x| x as f32)).collect())
            .ok_or_else(|| bad(format!("rope_scaling {key} must be a list of numbers")))
    };
    let original = match k.usize_opt("original_max_position_embeddings")? {
        Some(n) => n,
        None => Keys(cfg).usize("original_max_position_embeddings")?,
    };
    if original == 0 {
        return Err(bad(
            "original_max_position_embeddings must be positive".into()
        ));
    }
    let growth = match scaling.get("factor").and_then(Value::as_f64) {
        Some(f) => f,
        None => Keys(cfg).usize("max_position_embeddings")? as f64 / original as f64,
    };
    let attention_factor = match scaling.get("attention_factor").and_then(Value::as_f64) {
        Some(a) => a,
        None if growth <= 1.0 => 1.0,
        None => (1.0 + growth.ln() / (original as f64).ln()).sqrt(),
    };
    Ok(RopeScaling::LongRope {
        short_factor: factors("short_factor")?,
        long_factor: factors("long_factor")?,
        original_max_position_embeddings: original,
        attention_factor: attention_factor as f32,
    })
}

/// Read a Hugging Face `config.json`.
pub fn from_hf_config(text: &str) -> Result<Architecture> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let cfg = value
        .as_object()
        .ok_or_else(|| bad("must be a JSON object".into()))?;
    let defaulted = with_family_defaults(cfg)?;
    let cfg = defaulted.as_ref().unwrap_or(cfg);
    let family = family_of(cfg)?;
    let k = Keys(cfg);
    if family == Family::Bert {
        return encoder(cfg);
    }
    if family == Family::Gpt2 {
        let hidden_size = k.usize("n_embd")?;
        let n_head = k.usize("n_head")?;
        let eps = k.f32_or("layer_norm_epsilon", 1e-5)?;
        let mlp = k.usize_opt("n_inner")?.unwrap_or(4 * hidden_size);
        return Ok(Architecture {
            vocab_size: k.usize("vocab_size")?,
            hidden_size,
            n_layer: k.usize("n_layer")?,
            n_head,
            n_kv_head: n_head,
            head_dim: hidden_size / n_head.max(1),
            max_positions: k.usize("n_positions")?,
            ..learned_block(family, eps, mlp, k.bool_or("tie_word_embeddings", true)?)
        });
    }
    let hidden_size = k.usize("hidden_size")?;
    let n_head = k.usize("num_attention_heads")?;
    if n_head == 0 {
        return Err(bad("num_attention_heads must be positive".into()));
    }
    let n_kv_head = k.usize_opt("num_key_value_heads")?.unwrap_or(n_head);
    if n_kv_head == 0 || n_head % n_kv_head != 0 {
        return Err(bad(format!(
            "num_attention_heads ({n_head}) must be a multiple of num_key_value_heads ({n_kv_head})"
        )));
    }
    let attention_bias = k.bool_or("attention_bias", false)?;
    // StarCoder2: `use_bias` on every linear (and its LayerNorms have theirs)
    let starcoder = family == Family::Starcoder2;
    let use_bias = starcoder && k.bool_or("use_bias", true)?;
    let cohere = matches!(family, Family::Cohere | Family::Cohere2);
    if cohere && k.bool_or("use_qk_norm", false)? {
        return Err(bad(
            "use_qk_norm is not supported (Command R+'s LayerNorms of the query and key heads)"
                .into(),
        ));
    }
    if starcoder {
        let act = k.0.get("hidden_act").and_then(Value::as_str);
        if let Some(act) = act.filter(|a| *a != "gelu_pytorch_tanh") {
            return Err(bad(format!(
                "hidden_act {act:?} is not supported (gelu_pytorch_tanh)"
            )));
        }
    }
    let qwen = matches!(family, Family::Qwen2 | Family::Qwen2Moe);
    // GLM's attention_bias (true by default) is q, k and v's, as Qwen2's always are
    let glm = matches!(family, Family::Glm | Family::Glm4);
    let intermediate = k.usize("intermediate_size")?;
    let moe = match family {
        Family::Mixtral => Some(Moe {
            experts: k.usize("num_local_experts")?,
            top_k: k.usize("num_experts_per_tok")?,
            hidden: intermediate,
            norm_topk_prob: true,
            shared_expert_hidden: None,
            decoder_sparse_step: 1,
            mlp_only_layers: Vec::new(),
        }),
        Family::Qwen2Moe | Family::Qwen3Moe => Some(Moe {
            // transformers 5 writes Qwen3-MoE's as Mixtral's name
            experts: match k.usize_opt("num_local_experts")? {
                Some(n) => n,
                None => k.usize("num_experts")?,
            },
            top_k: k.usize("num_experts_per_tok")?,
            hidden: k.usize("moe_intermediate_size")?,
            norm_topk_prob: k.bool_or("norm_topk_prob", false)?,
            shared_expert_hidden: k
                .usize_opt("shared_expert_intermediate_size")?
                .filter(|&h| h > 0),
            decoder_sparse_step: k.usize_opt("decoder_sparse_step")?.unwrap_or(1).max(1),
            mlp_only_layers: match cfg.get("mlp_only_layers") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|v| v.as_u64().map(|n| n as usize))
                    .collect::<Option<_>>()
                    .ok_or_else(|| bad("mlp_only_layers must list layer numbers".into()))?,
                Some(v) => return Err(bad(format!("mlp_only_layers must be a list, not {v}"))),
            },
        }),
        _ => None,
    };
    if let Some(m) = &moe {
        if m.top_k == 0 || m.top_k > m.experts {
            return Err(bad(format!(
                "num_experts_per_tok ({}) must be between 1 and the number of experts ({})",
                m.top_k, m.experts
            )));
        }
    }
    // Mistral masks keys past the window; the Qwen families only with use_sliding_window
    let gemma = family.gemma();
    let (sliding_window_pattern, rope_local_theta, query_pre_attn_scalar) = match family {
        _ if gemma => gemma_extras(cfg, family)?,
        Family::Cohere2 => (layer_pattern(cfg, 4)?, None, None),
        _ => (1, None, None),
    };
    let sliding_window = match family {
        Family::Mistral
        | Family::Mixtral
        | Family::Phi3
        | Family::Gemma2
        | Family::Gemma3
        | Family::Cohere2
        | Family::Starcoder2 => k.usize_opt("sliding_window")?,
        Family::Qwen2 | Family::Qwen2Moe | Family::Qwen3 | Family::Qwen3Moe
            if k.bool_or("use_sliding_window", false)? =>
        {
            k.usize_opt("sliding_window")?
        }
        Family::Smollm3 if k.bool_or("use_sliding_window", false)? => {
            return Err(bad(
                "use_sliding_window is not supported for SmolLM3 (its windowed layers)".into(),
            ))
        }
        _ => None,
    };
    Ok(Architecture {
        family,
        vocab_size: k.usize("vocab_size")?,
        hidden_size,
        n_layer: k.usize("num_hidden_layers")?,
        n_head,
        n_kv_head,
        head_dim: k.usize_opt("head_dim")?.unwrap_or(hidden_size / n_head),
        max_positions: k.usize("max_position_embeddings")?,
        norm: match (starcoder, cohere) {
            (true, _) => NormKind::Layer {
                eps: k.f32_or("norm_epsilon", 1e-5)?,
            },
            (_, true) => NormKind::Layer {
                eps: k.f32_or("layer_norm_eps", 1e-5)?,
            },
            _ => NormKind::Rms {
                eps: k.f32_or("rms_norm_eps", 1e-6)?,
            },
        },
        positions: match gemma {
            // transformers 5 keeps the global layers' parameters under full_attention
            true => rotary(&global_rotary(cfg))?,
            false => rotary(cfg)?,
        },
        qkv_bias: qwen || attention_bias || use_bias,
        o_bias: (!qwen && !glm && attention_bias) || use_bias,
        mlp_bias: k.bool_or("mlp_bias", false)? || use_bias,
        mlp: match starcoder {
            true => Mlp::Gelu {
                hidden: intermediate,
            },
            false => Mlp::SwiGlu {
                hidden: intermediate,
            },
        },
        moe,
        sliding_window,
        sliding_window_pattern,
        rope_local_theta,
        query_pre_attn_scalar,
        softcaps: [
            k.f32_opt("attn_logit_softcapping")?,
            k.f32_opt("final_logit_softcapping")?,
        ],
        multipliers: match family {
            Family::Granite => {
                let [e, a, r, l] = [
                    "embedding_multiplier",
                    "attention_multiplier",
                    "residual_multiplier",
                    "logits_scaling",
                ]
                .map(|key| k.f32_opt(key));
                [e?, a?, r?, l?]
            }
            // Cohere's logits times logit_scale: our logits_scaling divides
            Family::Cohere | Family::Cohere2 => [
                None,
                None,
                None,
                Some(1.0 / k.f32_or("logit_scale", 0.0625)?),
            ],
            _ => [None; 4],
        },
        nope_layers: match family {
            Family::Smollm3 => nope_layers(cfg)?,
            // Cohere2 rotates its windowed layers only: the global ones, and every
            // layer when the config has no window, take no positions
            Family::Cohere2 => (0..k.usize("num_hidden_layers")?)
                .filter(|l| {
                    sliding_window.is_none() || (l + 1).is_multiple_of(sliding_window_pattern)
                })
                .collect(),
            _ => Vec::new(),
        },
        tied_head: k.bool_or("tie_word_embeddings", gemma || starcoder || cohere)?,
    })
}

/// The config of a family whose defaults matter as transformers reads it, or `None`
/// for the others: every key a Gemma config leaves out takes `GemmaConfig`'s,
/// `Gemma2Config`'s or `Gemma3TextConfig`'s default (the published Gemma 3 4B to 27B
/// configs list only what differs from them), a multimodal Gemma 3 checkpoint's
/// (`Gemma3ForConditionalGeneration`, 4B and up) is its `text_config` (with the top
/// level's token ids), and GLM's rotate half of each head and bias q, k and v unless
/// they say otherwise.
fn with_family_defaults(cfg: &Map<String, Value>) -> Result<Option<Map<String, Value>>> {
    let named = |a: &str, t: &str| {
        let arch = cfg
            .get("architectures")
            .and_then(Value::as_array)
            .is_some_and(|v| v.iter().any(|x| x.as_str() == Some(a)));
        arch || cfg.get("model_type").and_then(Value::as_str) == Some(t)
    };
    if named("GlmForCausalLM", "glm") || named("Glm4ForCausalLM", "glm4") {
        return Ok(Some(with_defaults(cfg.clone(), GLM_DEFAULTS)));
    }
    if named("GemmaForCausalLM", "gemma") {
        return Ok(Some(with_defaults(cfg.clone(), GEMMA_DEFAULTS)));
    }
    if named("Gemma2ForCausalLM", "gemma2") {
        return Ok(Some(with_defaults(cfg.clone(), GEMMA_2_DEFAULTS)));
    }
    let multimodal = named("Gemma3ForConditionalGeneration", "gemma3");
    if !multimodal && !named("Gemma3ForCausalLM", "gemma3_text") {
        return Ok(None);
    }
    let mut text = match multimodal {
        true => {
            let mut t = cfg
                .get("text_config")
                .and_then(Value::as_object)
                .cloned()
                .ok_or_else(|| bad("text_config (Gemma 3's language model) is missing".into()))?;
            for key in [
                "bos_token_id",
                "eos_token_id",
                "pad_token_id",
                "tie_word_embeddings",
            ] {
                if let (false, Some(v)) = (t.contains_key(key), cfg.get(key)) {
                    t.insert(key.into(), v.clone());
                }
            }
            t.insert(
                "architectures".into(),
                serde_json::json!(["Gemma3ForCausalLM"]),
            );
            t
        }
        false => cfg.clone(),
    };
    let global_theta = text
        .get("rope_parameters")
        .and_then(|p| p.get("full_attention"))
        .is_some_and(|p| p.get("rope_theta").is_some());
    if !global_theta {
        text.entry("rope_theta").or_insert(1_000_000.0.into());
    }
    Ok(Some(with_defaults(text, GEMMA_3_DEFAULTS)))
}

/// `Gemma3TextConfig`'s defaults of the keys this service reads.
const GEMMA_3_DEFAULTS: &str = r#"{"model_type": "gemma3_text", "vocab_size": 262208,
    "hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 26,
    "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256,
    "max_position_embeddings": 131072, "rms_norm_eps": 1e-6, "query_pre_attn_scalar": 256,
    "sliding_window": 4096, "rope_local_base_freq": 10000.0, "tie_word_embeddings": true}"#;

/// `GlmConfig`'s and `Glm4Config`'s that differ from what the Llama families read.
const GLM_DEFAULTS: &str = r#"{"partial_rotary_factor": 0.5, "attention_bias": true,
    "head_dim": 128, "rms_norm_eps": 1.5625e-7, "tie_word_embeddings": false}"#;

/// `GemmaConfig`'s.
const GEMMA_DEFAULTS: &str = r#"{"vocab_size": 256000, "hidden_size": 3072,
    "intermediate_size": 24576, "num_hidden_layers": 28, "num_attention_heads": 16,
    "num_key_value_heads": 16, "head_dim": 256, "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": true}"#;

/// `Gemma2Config`'s (its layers alternate windowed and global by default: `layer_types`
/// absent reads as `sliding_window_pattern` 2 in [`gemma_extras`]).
const GEMMA_2_DEFAULTS: &str = r#"{"vocab_size": 256000, "hidden_size": 2304,
    "intermediate_size": 9216, "num_hidden_layers": 26, "num_attention_heads": 8,
    "num_key_value_heads": 4, "head_dim": 256, "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "query_pre_attn_scalar": 256,
    "sliding_window": 4096, "final_logit_softcapping": 30.0,
    "attn_logit_softcapping": 50.0, "tie_word_embeddings": true}"#;

/// `cfg` with each key of the JSON object `defaults` it leaves out (a key given as
/// `null` stays null: "none").
fn with_defaults(mut cfg: Map<String, Value>, defaults: &str) -> Map<String, Value> {
    let defaults: Map<String, Value> =
        serde_json::from_str(defaults).expect("the defaults are a JSON object");
    for (key, v) in defaults {
        cfg.entry(key).or_insert(v);
    }
    cfg
}

/// Gemma 3's config with the global layers' rotary parameters where [`rotary`] reads
/// them: transformers 5's `rope_parameters.full_attention` moved up.
fn global_rotary(cfg: &Map<String, Value>) -> Map<String, Value> {
    let mut out = cfg.clone();
    let full = cfg
        .get("rope_parameters")
        .and_then(|p| p.get("full_attention"))
        .cloned();
    if let Some(full) = full {
        out.insert("rope_parameters".into(), full);
    }
    out
}

/// Gemma's layer pattern (`layer_types`, or `sliding_window_pattern`; Gemma 2's
/// default alternates, Gemma 3's makes every sixth layer global), Gemma 3's windowed
/// layers' rotary base and the score scale; what Gemma does not do (another
/// activation, bidirectional attention) is refused by name.
fn gemma_extras(
    cfg: &Map<String, Value>,
    family: Family,
) -> Result<(usize, Option<f32>, Option<f32>)> {
    let k = Keys(cfg);
    if k.bool_or("use_bidirectional_attention", false)? {
        return Err(bad(
            "use_bidirectional_attention is not supported (an embedding model's attention)".into(),
        ));
    }
    let act = ["hidden_activation", "hidden_act"]
        .iter()
        .find_map(|key| cfg.get(*key).and_then(Value::as_str))
        .unwrap_or("gelu_pytorch_tanh");
    // Gemma 1's published configs say "gelu", which transformers reads as the tanh
    // approximation the models were trained with
    let legacy = family == Family::Gemma && act == "gelu";
    if act != "gelu_pytorch_tanh" && !legacy {
        return Err(bad(format!(
            "hidden_activation {act:?} is not supported (gelu_pytorch_tanh)"
        )));
    }
    let default = match family {
        Family::Gemma2 => 2,
        _ => 6,
    };
    let pattern = layer_pattern(cfg, default)?;
    let local = cfg
        .get("rope_parameters")
        .and_then(|p| p.get("sliding_attention"))
        .and_then(|p| p.get("rope_theta"))
        .and_then(Value::as_f64)
        .map(|t| t as f32);
    let local = match (local, family) {
        (Some(t), _) => Some(t),
        (None, Family::Gemma3) => Some(k.f32_or("rope_local_base_freq", 10_000.0)?),
        // Gemma 1 and 2 rotate every layer with rope_theta
        (None, _) => None,
    };
    let scalar = match cfg.get("query_pre_attn_scalar") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_f64()
                .ok_or_else(|| bad(format!("query_pre_attn_scalar must be a number, not {v}")))?
                as f32,
        ),
    };
    Ok((pattern, local, scalar))
}

/// Every how-many-th layer attends to every key, the others within the window:
/// `layer_types` (which must make every p-th layer `full_attention`), else
/// `sliding_window_pattern`, else `default` (Gemma 2's 2, Gemma 3's 6, Cohere2's 4).
fn layer_pattern(cfg: &Map<String, Value>, default: usize) -> Result<usize> {
    let k = Keys(cfg);
    let n_layer = k.usize("num_hidden_layers")?;
    Ok(match cfg.get("layer_types").and_then(Value::as_array) {
        Some(types) => {
            let full: Vec<bool> = types
                .iter()
                .map(|t| match t.as_str() {
                    Some("full_attention") => Ok(true),
                    Some("sliding_attention") => Ok(false),
                    _ => Err(bad(format!("layer_types: {t} is not a layer type"))),
                })
                .collect::<Result<_>>()?;
            // every p-th layer global: p is the first global layer's number
            let p = full.iter().position(|&f| f).map_or(n_layer + 1, |i| i + 1);
            let regular = full.len() == n_layer
                && full
                    .iter()
                    .enumerate()
                    .all(|(l, &f)| f == (l + 1).is_multiple_of(p));
            if !regular {
                return Err(bad(
                    "layer_types must make every n-th layer full_attention and the others sliding_attention".into(),
                ));
            }
            p
        }
        None => k
            .usize_opt("sliding_window_pattern")?
            .unwrap_or(default)
            .max(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// meta-llama/Llama-3.2-1B-Instruct's config.json (as published; transformers 4
    /// layout, llama3 rope scaling, tied head, grouped-query attention).
    const LLAMA_3_2_1B: &str = r#"{
        "architectures": ["LlamaForCausalLM"], "attention_bias": false,
        "attention_dropout": 0.0, "bos_token_id": 128000, "eos_token_id": 128001,
        "head_dim": 64, "hidden_act": "silu", "hidden_size": 2048,
        "initializer_range": 0.02, "intermediate_size": 8192,
        "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
        "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8,
        "pretraining_tp": 1, "rms_norm_eps": 1e-05,
        "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "rope_theta": 500000.0, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
        "transformers_version": "4.45.0.dev0", "use_cache": true, "vocab_size": 128256}"#;

    /// Qwen/Qwen1.5-MoE-A2.7B's shape (qwen2_moe: 60 experts, 4 a token, a shared
    /// expert, no renormalisation).
    const QWEN_MOE: &str = r#"{
        "architectures": ["Qwen2MoeForCausalLM"], "decoder_sparse_step": 1,
        "hidden_act": "silu", "hidden_size": 2048, "intermediate_size": 5632,
        "max_position_embeddings": 8192, "max_window_layers": 21, "model_type": "qwen2_moe",
        "moe_intermediate_size": 1408, "norm_topk_prob": false, "num_attention_heads": 16,
        "num_experts": 60, "num_experts_per_tok": 4, "num_hidden_layers": 24,
        "num_key_value_heads": 16, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
        "shared_expert_intermediate_size": 5632, "sliding_window": 32768,
        "tie_word_embeddings": false, "use_sliding_window": false, "vocab_size": 151936}"#;

    /// Qwen/Qwen3-0.6B's config.json as published (Hugging Face's model page; head_dim
    /// 128 with 16 heads over a stream of 1024, rope_scaling null, tied head).
    const QWEN3_0_6B: &str = r#"{
        "architectures": ["Qwen3ForCausalLM"], "attention_bias": false,
        "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151645,
        "head_dim": 128, "hidden_act": "silu", "hidden_size": 1024,
        "initializer_range": 0.02, "intermediate_size": 3072,
        "max_position_embeddings": 40960, "max_window_layers": 28, "model_type": "qwen3",
        "num_attention_heads": 16, "num_hidden_layers": 28, "num_key_value_heads": 8,
        "rms_norm_eps": 1e-06, "rope_scaling": null, "rope_theta": 1000000,
        "sliding_window": null, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
        "transformers_version": "4.51.0", "use_cache": true, "use_sliding_window": false,
        "vocab_size": 151936}"#;

    #[test]
    fn qwen3_reads_as_published_and_its_moe_without_a_shared_expert() {
        let a = from_hf_config(QWEN3_0_6B).unwrap();
        assert_eq!(a.family, Family::Qwen3);
        assert!(a.family.head_norm() && !a.family.moe());
        assert_eq!(
            (a.hidden_size, a.n_head, a.n_kv_head, a.head_dim, a.n_layer),
            (1024, 16, 8, 128, 28)
        );
        assert!(a.tied_head && !a.qkv_bias && !a.o_bias && a.sliding_window.is_none());
        assert_eq!(
            a.positions,
            Positions::Rotary {
                theta: 1_000_000.0,
                scaling: RopeScaling::None,
                partial: 1.0,
            }
        );
        // Qwen3-30B-A3B's MoE keys: no shared expert, renormalised top-k
        let mut v: Value = serde_json::from_str(QWEN3_0_6B).unwrap();
        let o = v.as_object_mut().unwrap();
        o.insert(
            "architectures".into(),
            serde_json::json!(["Qwen3MoeForCausalLM"]),
        );
        for (key, value) in [
            ("num_experts", 128),
            ("num_experts_per_tok", 8),
            ("moe_intermediate_size", 768),
            ("decoder_sparse_step", 1),
        ] {
            o.insert(key.into(), value.into());
        }
        o.insert("norm_topk_prob".into(), true.into());
        let a = from_hf_config(&v.to_string()).unwrap();
        assert_eq!(a.family, Family::Qwen3Moe);
        let m = a.moe.unwrap();
        assert_eq!((m.experts, m.top_k, m.hidden), (128, 8, 768));
        assert!(m.norm_topk_prob && m.shared_expert_hidden.is_none());
    }

    /// microsoft/Phi-4-mini-instruct's config.json (as published; the 48 factors
    /// of each list cut to their first and last values here, as the test needs no more
    /// than their count and place).
    const PHI_4_MINI: &str = r#"{"architectures": ["Phi3ForCausalLM"], "attention_bias": false,
        "bos_token_id": 199999, "eos_token_id": 199999, "hidden_act": "silu",
        "hidden_size": 3072, "intermediate_size": 8192, "max_position_embeddings": 131072,
        "model_type": "phi3", "num_attention_heads": 24, "num_hidden_layers": 32,
        "num_key_value_heads": 8, "original_max_position_embeddings": 4096,
        "pad_token_id": 199999, "partial_rotary_factor": 0.75, "rms_norm_eps": 1e-05,
        "rope_scaling": {"long_factor": [1, 1.118320672, 79.57800072, 81.21, 83.00],
            "short_factor": [1, 1.0, 1.0, 1.0, 1.0], "type": "longrope"},
        "rope_theta": 10000.0, "sliding_window": 262144, "tie_word_embeddings": true,
        "torch_dtype": "bfloat16", "transformers_version": "4.45.0", "use_cache": true,
        "vocab_size": 200064}"#;

    /// google/gemma-3-1b-it's config.json (transformers 4 layout: the pattern as a
    /// number, the windowed layers' base as rope_local_base_freq).
    const GEMMA_3_1B: &str = r#"{"architectures": ["Gemma3ForCausalLM"], "attention_bias": false,
        "attention_dropout": 0.0, "attn_logit_softcapping": null, "bos_token_id": 2,
        "cache_implementation": "hybrid", "eos_token_id": [1, 106],
        "final_logit_softcapping": null, "head_dim": 256,
        "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 1152,
        "initializer_range": 0.02, "intermediate_size": 6912,
        "max_position_embeddings": 32768, "model_type": "gemma3_text",
        "num_attention_heads": 4, "num_hidden_layers": 26, "num_key_value_heads": 1,
        "pad_token_id": 0, "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06,
        "rope_local_base_freq": 10000, "rope_scaling": null, "rope_theta": 1000000,
        "sliding_window": 512, "sliding_window_pattern": 6, "torch_dtype": "bfloat16",
        "transformers_version": "4.50.0.dev0", "use_cache": true, "vocab_size": 262144}"#;

    /// google/gemma-3-4b-it's config.json (its vision_config cut): the language model's
    /// text_config lists only what differs from Gemma3TextConfig's defaults.
    const GEMMA_3_4B: &str = r#"{"architectures": ["Gemma3ForConditionalGeneration"],
        "boi_token_index": 255999, "eoi_token_index": 256000, "eos_token_id": [1, 106],
        "image_token_index": 262144, "initializer_range": 0.02, "mm_tokens_per_image": 256,
        "model_type": "gemma3", "text_config": {"hidden_size": 2560,
        "intermediate_size": 10240, "model_type": "gemma3_text", "num_hidden_layers": 34,
        "rope_scaling": {"factor": 8.0, "rope_type": "linear"}, "sliding_window": 1024},
        "torch_dtype": "bfloat16", "transformers_version": "4.50.0.dev0",
        "vision_config": {"model_type": "siglip_vision_model"}}"#;

    #[test]
    fn gemma_3s_text_and_multimodal_configs_are_read() {
        let a = from_hf_config(GEMMA_3_1B).unwrap();
        assert_eq!(
            (a.family, a.head_dim, a.n_head, a.n_kv_head),
            (Family::Gemma3, 256, 4, 1)
        );
        assert_eq!((a.sliding_window, a.sliding_window_pattern), (Some(512), 6));
        assert_eq!(
            (a.rope_local_theta, a.query_pre_attn_scalar),
            (Some(10000.0), Some(256.0))
        );
        assert!(a.tied_head && matches!(a.mlp, Mlp::SwiGlu { hidden: 6912 }));
        assert!(matches!(
            a.positions,
            Positions::Rotary {
                theta: 1_000_000.0,
                scaling: RopeScaling::None,
                ..
            }
        ));
        // 4B: Gemma3TextConfig's defaults fill the text_config's gaps; its linear
        // scaling is the global layers'
        let b = from_hf_config(GEMMA_3_4B).unwrap();
        assert_eq!(
            (b.family, b.hidden_size, b.n_layer),
            (Family::Gemma3, 2560, 34)
        );
        assert_eq!(
            (b.n_head, b.n_kv_head, b.head_dim, b.vocab_size),
            (8, 4, 256, 262_208)
        );
        assert_eq!(
            (b.sliding_window, b.sliding_window_pattern),
            (Some(1024), 6)
        );
        assert_eq!(
            (b.max_positions, b.query_pre_attn_scalar),
            (131_072, Some(256.0))
        );
        assert!(matches!(
            b.positions,
            Positions::Rotary {
                theta: 1_000_000.0,
                scaling: RopeScaling::Linear { factor: 8.0 },
                ..
            }
        ));
        // a layer_types list: its every-n-th global layer, or refused when irregular
        let mut v: Value = serde_json::from_str(GEMMA_3_1B).unwrap();
        let types = |full: &[usize]| {
            (0..26)
                .map(|l| {
                    if full.contains(&l) {
                        "full_attention"
                    } else {
                        "sliding_attention"
                    }
                })
                .collect::<Vec<_>>()
        };
        v["layer_types"] = serde_json::json!(types(&[3, 7, 11, 15, 19, 23]));
        assert_eq!(
            from_hf_config(&v.to_string())
                .unwrap()
                .sliding_window_pattern,
            4
        );
        v["layer_types"] = serde_json::json!(types(&[3, 8]));
        let e = from_hf_config(&v.to_string()).unwrap_err().to_string();
        assert!(e.contains("layer_types"), "{e}");
        // soft caps, should a Gemma 3 config give them, are read as Gemma 2's are
        let mut v: Value = serde_json::from_str(GEMMA_3_1B).unwrap();
        v["final_logit_softcapping"] = 30.0.into();
        let a = from_hf_config(&v.to_string()).unwrap();
        assert_eq!(a.softcaps, [None, Some(30.0)]);
        v["final_logit_softcapping"] = "thirty".into();
        let e = from_hf_config(&v.to_string()).unwrap_err().to_string();
        assert!(
            e.contains("final_logit_softcapping must be a number"),
            "{e}"
        );
    }

    /// google/gemma-2-2b-it's config.json (as published, transformers 4 layout).
    const GEMMA_2_2B: &str = r#"{"architectures": ["Gemma2ForCausalLM"],
        "attention_bias": false, "attention_dropout": 0.0, "attn_logit_softcapping": 50.0,
        "bos_token_id": 2, "cache_implementation": "hybrid", "eos_token_id": [1, 107],
        "final_logit_softcapping": 30.0, "head_dim": 256, "hidden_act": "gelu_pytorch_tanh",
        "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 2304,
        "initializer_range": 0.02, "intermediate_size": 9216,
        "max_position_embeddings": 8192, "model_type": "gemma2", "num_attention_heads": 8,
        "num_hidden_layers": 26, "num_key_value_heads": 4, "pad_token_id": 0,
        "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06, "rope_theta": 10000.0,
        "sliding_window": 4096, "torch_dtype": "float32", "transformers_version": "4.42.4",
        "use_cache": true, "vocab_size": 256000}"#;

    #[test]
    fn gemma_2_reads_as_published_and_takes_gemma2configs_defaults() {
        let a = from_hf_config(GEMMA_2_2B).unwrap();
        assert_eq!(a.family, Family::Gemma2);
        assert!(a.family.post_norms() && a.family.gelu_gate() && !a.family.head_norm());
        assert_eq!(
            (a.hidden_size, a.n_head, a.n_kv_head, a.head_dim, a.n_layer),
            (2304, 8, 4, 256, 26)
        );
        // every other layer windowed (layer 0 sliding, 1 full, ...), one rotary base
        assert_eq!(
            (
                a.sliding_window,
                a.sliding_window_pattern,
                a.rope_local_theta
            ),
            (Some(4096), 2, None)
        );
        assert_eq!(a.softcaps, [Some(50.0), Some(30.0)]);
        assert_eq!(a.query_pre_attn_scalar, Some(256.0));
        assert!(a.tied_head);
        // a config that leaves keys out gets Gemma2Config's defaults; null keeps a cap off
        let v = serde_json::json!({"architectures": ["Gemma2ForCausalLM"],
            "hidden_size": 3584, "num_hidden_layers": 42, "num_attention_heads": 16,
            "num_key_value_heads": 8, "intermediate_size": 14336,
            "attn_logit_softcapping": null});
        let b = from_hf_config(&v.to_string()).unwrap();
        assert_eq!(
            (b.vocab_size, b.head_dim, b.max_positions),
            (256_000, 256, 8192)
        );
        assert_eq!(b.softcaps, [None, Some(30.0)]);
        assert_eq!(b.sliding_window_pattern, 2);
        // layer_types, where given, decide
        let mut v: Value = serde_json::from_str(GEMMA_2_2B).unwrap();
        let types: Vec<&str> = (0..26)
            .map(|l| match l % 3 == 2 {
                true => "full_attention",
                false => "sliding_attention",
            })
            .collect();
        v["layer_types"] = serde_json::json!(types);
        assert_eq!(
            from_hf_config(&v.to_string())
                .unwrap()
                .sliding_window_pattern,
            3
        );
        // exact GELU is not Gemma 2's: refused by name
        v["hidden_activation"] = "gelu".into();
        let e = from_hf_config(&v.to_string()).unwrap_err().to_string();
        assert!(
            e.contains("hidden_activation \"gelu\" is not supported"),
            "{e}"
        );
    }

    /// GLM-4-9B-0414's config.json, shaped as published (transformers 4 layout).
    const GLM_4_9B: &str = r#"{"architectures": ["Glm4ForCausalLM"], "attention_bias": true,
        "attention_dropout": 0.0, "eos_token_id": [151329, 151336, 151338],
        "head_dim": 128, "hidden_act": "silu", "hidden_size": 4096,
        "intermediate_size": 13696, "max_position_embeddings": 32768,
        "model_type": "glm4", "num_attention_heads": 32, "num_hidden_layers": 40,
        "num_key_value_heads": 2, "pad_token_id": 151329, "partial_rotary_factor": 0.5,
        "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "tie_word_embeddings": false,
        "torch_dtype": "bfloat16", "vocab_size": 151552}"#;

    #[test]
    fn glm_families_bias_qkv_and_rotate_half_of_each_head_by_default() {
        let a = from_hf_config(GLM_4_9B).unwrap();
        assert_eq!(a.family, Family::Glm4);
        assert!(a.family.post_norms() && !a.family.gemma() && a.family.fused_gate_up());
        assert!(a.family.rotates_adjacent_pairs());
        assert!(a.qkv_bias && !a.o_bias && !a.tied_head);
        assert_eq!((a.n_head, a.n_kv_head, a.head_dim), (32, 2, 128));
        let Positions::Rotary { partial, .. } = a.positions else {
            panic!()
        };
        assert_eq!(partial, 0.5);
        // GLM-4-9B-chat-hf's: the keys GlmConfig defaults left out
        let mut v: Value = serde_json::from_str(GLM_4_9B).unwrap();
        let o = v.as_object_mut().unwrap();
        o.insert(
            "architectures".into(),
            serde_json::json!(["GlmForCausalLM"]),
        );
        for key in ["attention_bias", "partial_rotary_factor", "head_dim"] {
            o.remove(key);
        }
        let b = from_hf_config(&v.to_string()).unwrap();
        assert_eq!(b.family, Family::Glm);
        assert!(!b.family.post_norms() && b.qkv_bias && !b.o_bias);
        assert_eq!(b.head_dim, 128);
        let Positions::Rotary { partial, .. } = b.positions else {
            panic!()
        };
        assert_eq!(partial, 0.5);
    }

    /// bigcode/starcoder2-3b's config.json, shaped as published.
    const STARCODER2_3B: &str = r#"{"architectures": ["Starcoder2ForCausalLM"],
        "attention_dropout": 0.1, "residual_dropout": 0.1, "embedding_dropout": 0.1,
        "bos_token_id": 0, "eos_token_id": 0, "hidden_act": "gelu_pytorch_tanh",
        "hidden_size": 3072, "initializer_range": 0.018042, "intermediate_size": 12288,
        "max_position_embeddings": 16384, "mlp_type": "default", "model_type": "starcoder2",
        "norm_epsilon": 1e-05, "norm_type": "layer_norm", "num_attention_heads": 24,
        "num_hidden_layers": 30, "num_key_value_heads": 2, "rope_theta": 999999.4420358813,
        "sliding_window": 4096, "torch_dtype": "bfloat16", "use_bias": true,
        "use_cache": true, "vocab_size": 49152}"#;

    #[test]
    fn starcoder2_takes_layer_norms_a_gelu_mlp_and_biases() {
        let a = from_hf_config(STARCODER2_3B).unwrap();
        assert_eq!(a.family, Family::Starcoder2);
        assert!(a.family.llama_like() && !a.family.rms_norm() && !a.family.gated_mlp());
        assert_eq!(a.norm, NormKind::Layer { eps: 1e-5 });
        assert_eq!(a.mlp, Mlp::Gelu { hidden: 12288 });
        assert!(a.qkv_bias && a.o_bias && a.mlp_bias && a.tied_head);
        assert_eq!(
            (a.n_head, a.n_kv_head, a.head_dim, a.sliding_window),
            (24, 2, 128, Some(4096))
        );
        // without biases, and exact GELU refused by name
        let mut v: Value = serde_json::from_str(STARCODER2_3B).unwrap();
        v["use_bias"] = false.into();
        let b = from_hf_config(&v.to_string()).unwrap();
        assert!(!b.qkv_bias && !b.o_bias && !b.mlp_bias);
        v["hidden_act"] = "gelu".into();
        let e = from_hf_config(&v.to_string()).unwrap_err().to_string();
        assert!(e.contains("hidden_act \"gelu\" is not supported"), "{e}");
    }

    /// CohereForAI/aya-expanse-8b's config.json, shaped as published.
    const AYA_EXPANSE_8B: &str = r#"{"architectures": ["CohereForCausalLM"],
        "attention_bias": false, "bos_token_id": 5, "eos_token_id": 255001,
        "hidden_act": "silu", "hidden_size": 4096, "intermediate_size": 14336,
        "layer_norm_eps": 1e-05, "logit_scale": 0.125, "max_position_embeddings": 8192,
        "model_type": "cohere", "num_attention_heads": 32, "num_hidden_layers": 32,
        "num_key_value_heads": 8, "pad_token_id": 0, "rope_theta": 10000,
        "use_qk_norm": false, "vocab_size": 256000}"#;

    #[test]
    fn cohere_is_a_parallel_block_with_scaled_logits() {
        let a = from_hf_config(AYA_EXPANSE_8B).unwrap();
        assert_eq!(a.family, Family::Cohere);
        assert!(a.family.parallel_block() && a.family.rotates_adjacent_pairs());
        assert!(!a.family.rms_norm() && a.family.gated_mlp());
        assert_eq!(a.norm, NormKind::Layer { eps: 1e-5 });
        // logits × 0.125: the final norm's weights times 1 / 8 at load
        assert_eq!(a.multipliers, [None, None, None, Some(8.0)]);
        assert!(a.tied_head && !a.qkv_bias && !a.o_bias);
        // Command R+'s head norms are refused by name
        let mut v: Value = serde_json::from_str(AYA_EXPANSE_8B).unwrap();
        v["use_qk_norm"] = true.into();
        let e = from_hf_config(&v.to_string()).unwrap_err().to_string();
        assert!(e.contains("use_qk_norm is not supported"), "{e}");
    }

    /// CohereForAI/c4ai-command-r7b-12-2024's config.json, shaped as published (the
    /// layer pattern as the integer older configs give).
    const COMMAND_R7B: &str = r#"{"architectures": ["Cohere2ForCausalLM"],
        "hidden_size": 4096, "intermediate_size": 14336, "layer_norm_eps": 1e-05,
        "logit_scale": 0.25, "max_position_embeddings": 8192, "model_type": "cohere2",
        "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
        "rope_theta": 50000, "sliding_window": 4096, "sliding_window_pattern": 4,
        "vocab_size": 256000}"#;

    #[test]
    fn cohere2_windows_three_layers_in_four_and_leaves_the_fourth_unrotated() {
        let a = from_hf_config(COMMAND_R7B).unwrap();
        assert_eq!(a.family, Family::Cohere2);
        assert!(a.family.parallel_block() && a.family.rotates_adjacent_pairs());
        assert_eq!(
            (a.sliding_window, a.sliding_window_pattern),
            (Some(4096), 4)
        );
        assert_eq!(a.nope_layers, (0..8).map(|i| 4 * i + 3).collect::<Vec<_>>());
        assert_eq!(a.multipliers, [None, None, None, Some(4.0)]);
        assert!(a.tied_head);
        // without a window no layer is windowed, and none rotated (transformers rotates
        // the windowed layers only)
        let mut v: Value = serde_json::from_str(COMMAND_R7B).unwrap();
        v["sliding_window"] = Value::Null;
        let b = from_hf_config(&v.to_string()).unwrap();
        assert_eq!(b.nope_layers, (0..32).collect::<Vec<_>>());
    }

    /// allenai/OLMo-2-1124-7B-Instruct's config.json, shaped as published.
    const OLMO_2_7B: &str = r#"{"architectures": ["Olmo2ForCausalLM"],
        "attention_bias": false, "attention_dropout": 0.0, "bos_token_id": 100257,
        "eos_token_id": 100257, "hidden_act": "silu", "hidden_size": 4096,
        "intermediate_size": 11008, "max_position_embeddings": 4096, "model_type": "olmo2",
        "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 32,
        "pad_token_id": 100277, "rms_norm_eps": 1e-06, "rope_scaling": null,
        "rope_theta": 500000, "tie_word_embeddings": false, "vocab_size": 100352}"#;

    #[test]
    fn olmo2_norms_after_and_across_the_heads() {
        let a = from_hf_config(OLMO_2_7B).unwrap();
        assert_eq!(a.family, Family::Olmo2);
        assert!(!a.family.pre_norms() && a.family.post_norms());
        assert!(a.family.head_norm() && a.family.whole_head_norm() && !a.family.gemma());
        assert_eq!(a.norm, NormKind::Rms { eps: 1e-6 });
        assert!(!a.tied_head && !a.qkv_bias && !a.o_bias);
    }

    /// google/gemma-2b's config.json (as published: `hidden_act` "gelu", which
    /// transformers reads as the tanh approximation).
    const GEMMA_2B: &str = r#"{"architectures": ["GemmaForCausalLM"],
        "attention_bias": false, "attention_dropout": 0.0, "bos_token_id": 2,
        "eos_token_id": 1, "head_dim": 256, "hidden_act": "gelu", "hidden_size": 2048,
        "initializer_range": 0.02, "intermediate_size": 16384,
        "max_position_embeddings": 8192, "model_type": "gemma", "num_attention_heads": 8,
        "num_hidden_layers": 18, "num_key_value_heads": 1, "pad_token_id": 0,
        "rms_norm_eps": 1e-06, "rope_scaling": null, "rope_theta": 10000.0,
        "torch_dtype": "bfloat16", "transformers_version": "4.38.0.dev0",
        "use_cache": true, "vocab_size": 256000}"#;

    #[test]
    fn gemma_1_reads_as_published() {
        let a = from_hf_config(GEMMA_2B).unwrap();
        assert_eq!(a.family, Family::Gemma);
        assert!(a.family.gemma() && a.family.gelu_gate());
        assert!(!a.family.post_norms() && !a.family.head_norm());
        assert_eq!(
            (a.hidden_size, a.n_head, a.n_kv_head, a.head_dim, a.n_layer),
            (2048, 8, 1, 256, 18)
        );
        assert_eq!((a.sliding_window, a.softcaps), (None, [None, None]));
        assert_eq!((a.query_pre_attn_scalar, a.rope_local_theta), (None, None));
        assert!(a.tied_head && !a.qkv_bias && !a.o_bias);
    }

    #[test]
    fn yarn_is_read_as_qwen_and_deepseek_write_it() {
        // Qwen2.5's long-context recipe (transformers 4: `type`), on Qwen2.5-7B's config
        let mut v: Value = serde_json::from_str(LLAMA_3_2_1B).unwrap();
        v["rope_scaling"] = serde_json::json!({"factor": 4.0,
            "original_max_position_embeddings": 32768, "type": "yarn"});
        let a = from_hf_config(&v.to_string()).unwrap();
        let Positions::Rotary { scaling, .. } = a.positions else {
            panic!()
        };
        assert_eq!(
            scaling,
            RopeScaling::Yarn {
                factor: 4.0,
                original_max_position_embeddings: 32768,
                beta_fast: 32.0,
                beta_slow: 1.0,
                attention_factor: None,
                truncate: true,
            }
        );
        // DeepSeek's: mscale / mscale_all_dim make the attention factor; no factor
        // given: max_position_embeddings over the original
        v["rope_scaling"] = serde_json::json!({"rope_type": "yarn", "beta_fast": 32,
            "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707,
            "original_max_position_embeddings": 4096});
        let b = from_hf_config(&v.to_string()).unwrap();
        let Positions::Rotary {
            scaling:
                RopeScaling::Yarn {
                    factor,
                    attention_factor,
                    ..
                },
            ..
        } = b.positions
        else {
            panic!()
        };
        assert_eq!((factor, attention_factor), (32.0, Some(1.0)));
    }

    #[test]
    fn smollm3s_unrotated_layers_are_read() {
        // HuggingFaceTB/SmolLM3-3B's keys that matter here: a list of flags, or without
        // it every no_rope_layer_interval-th layer
        let mut v: Value = serde_json::from_str(LLAMA_3_2_1B).unwrap();
        v["architectures"] = serde_json::json!(["SmolLM3ForCausalLM"]);
        v["no_rope_layers"] = serde_json::json!([1, 1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 0]);
        let a = from_hf_config(&v.to_string()).unwrap();
        assert_eq!(
            (a.family, a.nope_layers.clone()),
            (Family::Smollm3, vec![3, 7, 11, 15])
        );
        v.as_object_mut().unwrap().remove("no_rope_layers");
        v["no_rope_layer_interval"] = 8.into();
        assert_eq!(
            from_hf_config(&v.to_string()).unwrap().nope_layers,
            vec![7, 15]
        );
        v["use_sliding_window"] = true.into();
        let e = from_hf_config(&v.to_string()).unwrap_err().to_string();
        assert!(e.contains("use_sliding_window"), "{e}");
    }

    #[test]
    fn granites_multipliers_are_read() {
        // the keys of ibm-granite/granite-3.1-2b-instruct's config.json that matter here
        let granite = r#"{"architectures": ["GraniteForCausalLM"], "model_type": "granite",
            "attention_multiplier": 0.015625, "embedding_multiplier": 12.0,
            "hidden_size": 2048, "intermediate_size": 8192, "logits_scaling": 8.0,
            "max_position_embeddings": 131072, "num_attention_heads": 32,
            "num_hidden_layers": 40, "num_key_value_heads": 8, "residual_multiplier": 0.22,
            "rms_norm_eps": 1e-05, "rope_theta": 5000000.0, "tie_word_embeddings": true,
            "vocab_size": 49155}"#;
        let a = from_hf_config(granite).unwrap();
        assert_eq!(a.family, Family::Granite);
        assert_eq!(
            a.multipliers,
            [Some(12.0), Some(0.015625), Some(0.22), Some(8.0)]
        );
        // another family's keys of the same names are not read
        let llama = granite.replace("GraniteForCausalLM", "LlamaForCausalLM");
        assert_eq!(from_hf_config(&llama).unwrap().multipliers, [None; 4]);
    }

    #[test]
    fn phi_4_minis_partial_longrope_is_read() {
        let a = from_hf_config(PHI_4_MINI).unwrap();
        assert_eq!((a.family, a.head_dim, a.n_kv_head), (Family::Phi3, 128, 8));
        let Positions::Rotary {
            theta,
            scaling,
            partial,
        } = a.positions
        else {
            panic!("{:?}", a.positions)
        };
        assert_eq!((theta, partial), (10000.0, 0.75));
        let RopeScaling::LongRope {
            short_factor,
            long_factor,
            original_max_position_embeddings,
            attention_factor,
        } = scaling
        else {
            panic!("{scaling:?}")
        };
        assert_eq!((short_factor.len(), long_factor.len()), (5, 5));
        assert!((long_factor[2] - 79.578).abs() < 1e-4, "{long_factor:?}");
        assert_eq!(original_max_position_embeddings, 4096);
        // sqrt(1 + ln(131072 / 4096) / ln(4096)), as transformers derives it
        assert!(
            (attention_factor - 1.190_238).abs() < 1e-6,
            "{attention_factor}"
        );
        // transformers 5: the parameters in rope_parameters, the original context there
        let mut v: Value = serde_json::from_str(PHI_4_MINI).unwrap();
        let o = v.as_object_mut().unwrap();
        let mut params = o.remove("rope_scaling").unwrap();
        params["rope_type"] = "longrope".into();
        params["rope_theta"] = 10000.0.into();
        params["original_max_position_embeddings"] = 4096.into();
        params["attention_factor"] = 1.5.into();
        o.remove("original_max_position_embeddings");
        o.insert("rope_parameters".into(), params);
        let b = from_hf_config(&v.to_string()).unwrap();
        assert!(matches!(
            b.positions,
            Positions::Rotary {
                scaling: RopeScaling::LongRope {
                    attention_factor: 1.5,
                    ..
                },
                ..
            }
        ));
        // a part of a head outside (0, 1] is refused by name
        v["partial_rotary_factor"] = 1.5.into();
        let e = from_hf_config(&v.to_string()).unwrap_err().to_string();
        assert!(e.contains("partial_rotary_factor (1.5)"), "{e}");
    }

    #[test]
    fn llama_3_2_reads_as_published() {
        let a = from_hf_config(LLAMA_3_2_1B).unwrap();
        assert_eq!(a.family, Family::Llama);
        assert_eq!(
            (a.hidden_size, a.n_layer, a.n_head, a.n_kv_head, a.head_dim),
            (2048, 16, 32, 8, 64)
        );
        assert_eq!(a.norm, NormKind::Rms { eps: 1e-5 });
        assert_eq!(
            a.positions,
            Positions::Rotary {
                theta: 500_000.0,
                scaling: RopeScaling::Llama3 {
                    factor: 32.0,
                    low_freq_factor: 1.0,
                    high_freq_factor: 4.0,
                    original_max_position_embeddings: 8192,
                },
                partial: 1.0,
            }
        );
        assert_eq!(a.mlp, Mlp::SwiGlu { hidden: 8192 });
        assert!(a.tied_head && !a.qkv_bias && !a.o_bias && !a.mlp_bias);
        assert_eq!((a.moe, a.sliding_window), (None, None));
    }

    #[test]
    fn transformers_5_rope_parameters_read_the_same() {
        let mut v: Value = serde_json::from_str(LLAMA_3_2_1B).unwrap();
        let o = v.as_object_mut().unwrap();
        let mut params = o.remove("rope_scaling").unwrap();
        params["rope_theta"] = o.remove("rope_theta").unwrap();
        o.insert("rope_parameters".into(), params);
        let a = from_hf_config(&v.to_string()).unwrap();
        assert_eq!(a, from_hf_config(LLAMA_3_2_1B).unwrap());
        // `type` (older transformers 4) as well as `rope_type`; linear scaling
        let linear = r#"{"architectures": ["LlamaForCausalLM"], "hidden_size": 64,
            "num_attention_heads": 4, "num_hidden_layers": 2, "intermediate_size": 128,
            "max_position_embeddings": 256, "vocab_size": 100,
            "rope_scaling": {"type": "linear", "factor": 2.0}}"#;
        let a = from_hf_config(linear).unwrap();
        assert_eq!(
            a.positions,
            Positions::Rotary {
                theta: 10_000.0,
                scaling: RopeScaling::Linear { factor: 2.0 },
                partial: 1.0,
            }
        );
        // absent keys take transformers' defaults
        assert_eq!((a.n_kv_head, a.head_dim, a.tied_head), (4, 16, false));
    }

    #[test]
    fn qwen2_biases_mistral_window_and_the_moe_families() {
        let qwen = r#"{"architectures": ["Qwen2ForCausalLM"], "hidden_size": 896,
            "num_attention_heads": 14, "num_key_value_heads": 2, "num_hidden_layers": 24,
            "intermediate_size": 4864, "max_position_embeddings": 32768, "vocab_size": 151936,
            "rope_theta": 1000000.0, "sliding_window": 32768, "use_sliding_window": false,
            "tie_word_embeddings": true, "rms_norm_eps": 1e-06}"#;
        let a = from_hf_config(qwen).unwrap();
        assert!(a.qkv_bias && !a.o_bias, "Qwen2: biases on q, k, v only");
        assert_eq!((a.head_dim, a.sliding_window), (64, None));
        let mistral = r#"{"architectures": ["MistralForCausalLM"], "hidden_size": 4096,
            "num_attention_heads": 32, "num_key_value_heads": 8, "num_hidden_layers": 32,
            "intermediate_size": 14336, "max_position_embeddings": 32768, "vocab_size": 32000,
            "sliding_window": 4096}"#;
        assert_eq!(from_hf_config(mistral).unwrap().sliding_window, Some(4096));
        let no_window = mistral.replace("\"sliding_window\": 4096", "\"sliding_window\": null");
        assert_eq!(from_hf_config(&no_window).unwrap().sliding_window, None);
        let mixtral = mistral
            .replace("MistralForCausalLM", "MixtralForCausalLM")
            .replace(
                "\"sliding_window\": 4096",
                "\"num_local_experts\": 8, \"num_experts_per_tok\": 2",
            );
        let m = from_hf_config(&mixtral).unwrap().moe.unwrap();
        assert_eq!(
            (m.experts, m.top_k, m.hidden, m.norm_topk_prob),
            (8, 2, 14336, true)
        );
        let q = from_hf_config(QWEN_MOE).unwrap();
        let m = q.moe.clone().unwrap();
        assert_eq!((m.experts, m.top_k, m.hidden), (60, 4, 1408));
        assert_eq!(
            (m.norm_topk_prob, m.shared_expert_hidden),
            (false, Some(5632))
        );
        assert!((0..24).all(|l| q.is_moe_layer(l)));
        let sparse = QWEN_MOE.replace(
            "\"decoder_sparse_step\": 1",
            "\"decoder_sparse_step\": 2, \"mlp_only_layers\": [3]",
        );
        let s = from_hf_config(&sparse).unwrap();
        let moe_layers: Vec<usize> = (0..8).filter(|&l| s.is_moe_layer(l)).collect();
        assert_eq!(moe_layers, [1, 5, 7]);
    }

    #[test]
    fn gpt2_reads_as_todays_model() {
        let gpt2 = r#"{"architectures": ["GPT2LMHeadModel"], "n_embd": 768, "n_head": 12,
            "n_layer": 12, "n_positions": 1024, "vocab_size": 50257,
            "layer_norm_epsilon": 1e-05}"#;
        let a = from_hf_config(gpt2).unwrap();
        assert_eq!(a.family, Family::Gpt2);
        assert_eq!(
            (a.head_dim, a.mlp, a.positions),
            (64, Mlp::Gelu { hidden: 3072 }, Positions::Learned)
        );
        assert!(a.tied_head && a.qkv_bias && a.o_bias && a.mlp_bias);
    }

    /// sentence-transformers/all-MiniLM-L6-v2's config.json (BERT, 6 layers of 384).
    const MINILM: &str = r#"{"architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1,
        "gradient_checkpointing": false, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
        "hidden_size": 384, "initializer_range": 0.02, "intermediate_size": 1536,
        "layer_norm_eps": 1e-12, "max_position_embeddings": 512, "model_type": "bert",
        "num_attention_heads": 12, "num_hidden_layers": 6, "pad_token_id": 0,
        "position_embedding_type": "absolute", "transformers_version": "4.8.2",
        "type_vocab_size": 2, "use_cache": true, "vocab_size": 30522}"#;

    #[test]
    fn encoders_read_as_bert_with_their_positions() {
        let a = from_hf_config(MINILM).unwrap();
        assert_eq!(a.family, Family::Bert);
        assert_eq!(
            (
                a.hidden_size,
                a.n_layer,
                a.n_head,
                a.head_dim,
                a.max_positions
            ),
            (384, 6, 12, 32, 512)
        );
        assert_eq!(a.mlp, Mlp::Gelu { hidden: 1536 });
        assert_eq!(a.norm, NormKind::Layer { eps: 1e-12 });
        assert!(a.qkv_bias && a.o_bias && a.mlp_bias && a.tied_head);
        // XLM-RoBERTa (bge-m3, multilingual-e5): 514 rows, positions from pad + 1 = 2
        let xlmr = MINILM
            .replace("BertModel", "XLMRobertaModel")
            .replace("\"bert\"", "\"xlm-roberta\"")
            .replace("\"pad_token_id\": 0", "\"pad_token_id\": 1")
            .replace("512", "514");
        let cfg: Map<String, Value> = serde_json::from_str(&xlmr).unwrap();
        assert_eq!(position_offset(&cfg).unwrap(), 2);
        assert_eq!(from_hf_config(&xlmr).unwrap().max_positions, 512);
        let bert: Map<String, Value> = serde_json::from_str(MINILM).unwrap();
        assert_eq!(position_offset(&bert).unwrap(), 0);
        let err = |text: &str| from_hf_config(text).unwrap_err().to_string();
        let e = err(&MINILM.replace("\"gelu\"", "\"relu\""));
        assert!(e.contains("hidden_act \"relu\" is not supported"), "{e}");
        let e = err(&MINILM.replace("\"absolute\"", "\"relative_key\""));
        assert!(e.contains("relative_key"), "{e}");
        let e = err(&MINILM.replace("\"num_attention_heads\": 12", "\"num_attention_heads\": 7"));
        assert!(e.contains("multiple of num_attention_heads"), "{e}");
    }

    #[test]
    fn bad_configs_name_the_problem() {
        let err = |text: &str| from_hf_config(text).unwrap_err().to_string();
        let e = err(r#"{"architectures": ["T5EncoderModel"]}"#);
        assert!(
            e.contains("T5EncoderModel") && e.contains("LlamaForCausalLM"),
            "{e}"
        );
        assert!(err("{not json").contains("not valid JSON"));
        let e = err(&LLAMA_3_2_1B.replace("\"num_hidden_layers\": 16, ", ""));
        assert!(e.contains("num_hidden_layers is missing"), "{e}");
        let e = err(&LLAMA_3_2_1B.replace("\"llama3\"", "\"dynamic\""));
        assert!(e.contains("\"dynamic\" is not supported"), "{e}");
        let e =
            err(&LLAMA_3_2_1B.replace("\"num_key_value_heads\": 8", "\"num_key_value_heads\": 5"));
        assert!(e.contains("multiple of num_key_value_heads"), "{e}");
        let e = err(&QWEN_MOE.replace("\"num_experts_per_tok\": 4", "\"num_experts_per_tok\": 61"));
        assert!(e.contains("num_experts_per_tok (61)"), "{e}");
        let e = err(&LLAMA_3_2_1B.replace("\"hidden_size\": 2048", "\"hidden_size\": \"big\""));
        assert!(
            e.contains("hidden_size must be a non-negative integer"),
            "{e}"
        );
    }
}
