//! What callers hand the engine and what it hands back: forward and generation
//! requests, their replies, and the events a generation streams.

use std::time::Instant;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::files::FileAccess;
use crate::model::sampling::{SamplingParams, TokenLogprob};
use crate::model::Capture;

/// A forward request, as the engine needs it.
#[derive(Clone, Debug)]
pub struct ForwardRequest {
    pub text: String,
    pub max_length: Option<usize>,
    pub top_k: usize,
    pub capture: bool,
    /// The attention weights to return (implies `capture`).
    pub attention: Option<AttentionSelect>,
    /// Return the logit lens with this many tokens per layer and position (0: no
    /// lens; implies `capture`).
    pub logit_lens: usize,
}

/// One input of an embeddings request: a text (tokenized as the model's tokenizer
/// does, the special tokens its post-processor adds included: Qwen3-Embedding's
/// closing `<|endoftext|>`) or token ids as they are.
/// Or a pair of texts a cross-encoder scores (its reply: the pair's logits).
#[derive(Clone, Debug, PartialEq)]
pub enum EmbedInput {
    Text(String),
    Ids(Vec<u32>),
    Pair(String, String),
}

/// The embeddings of each input: its last position's hidden state after the final
/// norm (not normalised), and its tokens.
#[derive(Clone, Debug)]
pub struct EmbedReply {
    pub vectors: Vec<Vec<f32>>,
    pub tokens: Vec<usize>,
    pub seconds: f64,
}

/// Which attention weights a forward returns: layers and heads (`None`: all), each in
/// the order asked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AttentionSelect {
    pub layers: Option<Vec<usize>>,
    pub heads: Option<Vec<usize>>,
    /// Send the weights as f16 bytes (base64), each row's keys up to the query only.
    pub half: bool,
}

impl AttentionSelect {
    /// The layers asked for, all `n_layer` when none were named.
    pub fn layers(&self, n_layer: usize) -> Vec<usize> {
        self.layers
            .clone()
            .unwrap_or_else(|| (0..n_layer).collect())
    }

    /// The heads asked for, all `n_head` when none were named.
    pub fn heads(&self, n_head: usize) -> Vec<usize> {
        self.heads.clone().unwrap_or_else(|| (0..n_head).collect())
    }
}

/// The attention weights of one layer: `weights[i]` is head `heads[i]`'s
/// `[query][key]` matrix.
#[derive(Clone, Debug)]
pub struct LayerAttention {
    pub layer: usize,
    pub heads: Vec<usize>,
    /// Empty when sent as f16.
    pub weights: Vec<Vec<Vec<f32>>>,
    /// The same weights as f16, little-endian, base64: for each head in order, for
    /// each query q, keys 0..=q (the causal triangle; T(T+1)/2 values a head).
    pub weights_f16: Option<String>,
}

/// A next-token prediction with its decoded text.
#[derive(Clone, Debug, Serialize)]
pub struct Prediction {
    pub token_id: u32,
    pub token: String,
    pub probability: f32,
}

/// A token of a forward's text: its id, its text, and the bytes `start .. end` of the
/// request's text it came from.
#[derive(Clone, Debug, Serialize)]
pub struct TokenInfo {
    pub id: u32,
    pub text: String,
    pub start: usize,
    pub end: usize,
}

/// The result of a forward.
#[derive(Clone, Debug)]
pub struct ForwardReply {
    pub tokens: usize,
    /// The tokens of the text that went through the model.
    pub token_list: Vec<TokenInfo>,
    pub vocab: usize,
    pub n_embed: usize,
    pub n_head: usize,
    /// Key/value heads when fewer than the query heads (grouped-query attention).
    pub n_kv_head: Option<usize>,
    pub top: Vec<Prediction>,
    pub capture: Option<Capture>,
    /// With `capture_attention`: the chosen layers' weights.
    pub attention: Vec<LayerAttention>,
    /// Block-sparse models with `capture_attention`: for each query block of the
    /// text, the key blocks it attends to.
    pub listed_blocks: Option<Vec<Vec<usize>>>,
    /// With `logit_lens`: `[layer][position]` the most likely tokens, best first.
    pub logit_lens: Option<Vec<Vec<Vec<Prediction>>>>,
    /// With statistics: `(rank, logprob)` of each position's actual next token under
    /// the final logits (with the lens, `[layer][position]`, the last the final one).
    pub next_token_ranks: Vec<Vec<(usize, f32)>>,
    pub seconds: f64,
    pub device_memory_mb: f64,
}

/// A text-generation request.
#[derive(Clone, Debug)]
pub struct GenerateRequest {
    pub prompt: String,
    /// The prompt as token ids (then `prompt` is ignored).
    pub prompt_ids: Option<Vec<u32>>,
    /// Clamped once, at admission, to what the context holds after the prompt
    /// (`context_size - prompt tokens`); 0 runs the
    /// prompt only (scoring with `prompt_logprobs`).
    pub max_new_tokens: usize,
    pub sampling: SamplingParams,
    /// Generation ends when the text contains one of these (it is cut before it).
    pub stop: Vec<String>,
    /// Each token's logprob with this many alternatives (`None`: no logprobs).
    pub logprobs: Option<usize>,
    /// Send [`GenEvent::Prompt`] first, with the prompt tokens' logprobs and this many
    /// alternatives each (`None`: no such event).
    pub prompt_logprobs: Option<usize>,
    /// Generation also ends at these tokens (vLLM's `stop_token_ids`; the token is not
    /// in the text, as an end-of-text token is not).
    pub stop_ids: Vec<u32>,
    /// Go on past the model's end-of-text tokens (vLLM's `ignore_eos`, for benchmarks
    /// of fixed lengths).
    pub ignore_eos: bool,
    /// No end before this many tokens: end-of-text and stop tokens cannot be picked
    /// and stop strings are not looked for (vLLM's `min_tokens`).
    pub min_tokens: usize,
    /// Constrained JSON: the text is one value of this grammar (`crate::json`: JSON
    /// mode's any object, or a JSON Schema's), and ends when it closes.
    pub json: Option<std::sync::Arc<crate::json::Grammar>>,
}

/// The stop token ids are among `vocab` ids (the tokenizer's).
pub fn check_stop_ids(stop_ids: &[u32], vocab: usize) -> crate::error::Result<()> {
    match stop_ids.iter().find(|&&id| id as usize >= vocab) {
        Some(id) => Err(crate::error::Error::InvalidInput(format!(
            "stop_token_ids names token {id}, outside the tokenizer's vocabulary ({vocab} tokens)"
        ))),
        None => Ok(()),
    }
}

impl GenerateRequest {
    /// A request for `prompt` with these parameters and no logprobs.
    pub fn new(
        prompt: String,
        max_new_tokens: usize,
        sampling: SamplingParams,
        stop: Vec<String>,
    ) -> Self {
        GenerateRequest {
            prompt,
            prompt_ids: None,
            max_new_tokens,
            sampling,
            stop,
            logprobs: None,
            prompt_logprobs: None,
            stop_ids: Vec::new(),
            ignore_eos: false,
            min_tokens: 0,
            json: None,
        }
    }
}

/// Why a generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// max_new_tokens (or the context) reached.
    Length,
    /// A stop string appeared.
    Stop,
    /// The model produced its end-of-text token.
    EndOfText,
}

/// The whole result of a generation.
#[derive(Clone, Debug, Serialize)]
pub struct GenerateResult {
    pub text: String,
    /// Tokens generated.
    pub tokens: usize,
    pub token_ids: Vec<u32>,
    pub prompt_tokens: usize,
    /// Prompt tokens found in the prefix cache (not prefilled again).
    pub cached_tokens: usize,
    pub finish_reason: FinishReason,
    /// Seconds from admission to the last token.
    pub processing_time: f64,
    /// Seconds of the prompt pass (prefill).
    pub prefill_time: f64,
    /// Generated tokens per second after the prefill.
    pub decode_tokens_per_second: f64,
}

/// What a generation streams back.
#[derive(Debug)]
pub enum GenEvent {
    /// One generated token and the text it completes (may be empty while a
    /// multi-byte character or a possible stop string is still open).
    Token {
        index: usize,
        token_id: u32,
        text: String,
        /// When the request asked for logprobs.
        logprob: Option<TokenLogprob>,
    },
    /// Before the first token, when the request asked for `prompt_logprobs`: the
    /// prompt's ids and, for each but the first, its logprob given those before it.
    Prompt {
        ids: Vec<u32>,
        logprobs: Vec<Option<TokenLogprob>>,
    },
    Complete(GenerateResult),
    Error(Error),
}

impl GenEvent {
    /// `Complete` or `Error`: nothing follows.
    pub fn is_final(&self) -> bool {
        matches!(self, GenEvent::Complete(_) | GenEvent::Error(_))
    }
}

/// A piece of work for the engine thread, with its deadline and where the reply goes.
pub(super) enum Job {
    Initialize {
        config: serde_json::Value,
        access: FileAccess,
        deadline: Instant,
        reply: oneshot::Sender<Result<ModelConfig>>,
    },
    Forward(
        ForwardRequest,
        Instant,
        oneshot::Sender<Result<ForwardReply>>,
    ),
    Generate(GenerateRequest, Instant, mpsc::UnboundedSender<GenEvent>),
    Embed(
        Vec<EmbedInput>,
        Instant,
        oneshot::Sender<Result<EmbedReply>>,
    ),
}
