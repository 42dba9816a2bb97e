//! The OpenAI-compatible API under `/v1`: models, completions (whole or streamed),
//! and llama.cpp's tokenize / detokenize. Completions run through the same engine
//! path as `/api/v1/generate` (same sampler, same stop rule); errors take the OpenAI
//! shape `{"error": {"message", "type", "param", "code"}}` ([`openai_errors`]).
//! Unknown request fields are ignored, as the SDKs send extra ones.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Extension, Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorParam};
use super::guard::Client;
use super::params;
use super::routes::json_body;
use super::state::AppState;
use crate::engine::{FinishReason, GenEvent, GenStream, GenerateRequest, ModelSnapshot};
use crate::error::Error;
use crate::model::sampling::{SamplingParams, TokenLogprob};
use crate::tokenizer::{TextStream, Tokenizer};

/// Most choices one request may ask for (prompts × n).
pub const MAX_CHOICES: usize = 64;
/// Most alternatives per token (`logprobs`).
pub const MAX_LOGPROBS: i64 = 5;

/// One entry of `GET /v1/models`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelEntry {
    /// The model directory's name, the checkpoint's file stem, or `wgformer` for
    /// seeded weights.
    pub id: String,
    /// "model"
    pub object: &'static str,
    /// Unix seconds of the build.
    pub created: u64,
    pub owned_by: &'static str,
    /// The context length in tokens (prompt and completion together), as vLLM names it.
    pub max_model_len: usize,
    /// The same, as some OpenAI-style clients read it.
    pub context_length: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    /// "list"
    pub object: &'static str,
    pub data: Vec<ModelEntry>,
}

fn entry(m: &ModelSnapshot) -> ModelEntry {
    let context = m.config.as_ref().map_or(0, |c| c.context_size);
    ModelEntry {
        id: m.model_id.clone(),
        object: "model",
        created: m.created,
        owned_by: "wgformer",
        max_model_len: context,
        context_length: context,
    }
}

/// The loaded model as one entry; an empty list when none is loaded.
#[utoipa::path(get, path = "/v1/models", tag = "openai", responses((status = 200, body = ModelList)))]
pub async fn models(State(st): State<AppState>) -> Json<ModelList> {
    let m = st.engine.model_snapshot();
    Json(ModelList {
        object: "list",
        data: m.config.is_some().then(|| entry(&m)).into_iter().collect(),
    })
}

fn model_not_found(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "MODEL_NOT_FOUND",
        format!("the model `{name}` is not loaded here: GET /v1/models names the one that is"),
    )
    .param("model")
}

/// One model by id.
#[utoipa::path(get, path = "/v1/models/{model}", tag = "openai",
    params(("model" = String, Path, description = "model id")),
    responses((status = 200, body = ModelEntry), (status = 404, description = "not loaded")))]
pub async fn model(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ModelEntry>, ApiError> {
    let m = st.engine.model_snapshot();
    if m.config.is_none() || m.model_id != id {
        return Err(model_not_found(&id));
    }
    Ok(Json(entry(&m)))
}

/// `stream_options` of a completion request.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct StreamOptions {
    /// Send a last chunk with `usage` (and no choices) before `[DONE]`.
    #[serde(default)]
    pub include_usage: bool,
}

/// `POST /v1/completions`. Unknown fields are ignored.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CompletionBody {
    /// Must name the loaded model (`GET /v1/models`); may be omitted.
    #[serde(default)]
    pub model: Option<String>,
    /// A string, an array of strings (one choice per prompt), an array of token ids,
    /// or an array of such arrays.
    #[schema(value_type = super::types::PromptInput)]
    pub prompt: Value,
    /// New tokens per choice (default 16); 0 with `echo` scores the prompt only.
    #[serde(default, deserialize_with = "params::int::opt_i64")]
    #[schema(minimum = 0, maximum = 4096)]
    pub max_tokens: Option<i64>,
    /// 0..=2; 0 = greedy (default 1).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 2)]
    pub temperature: Option<f64>,
    /// (0, 1] (default 1).
    #[serde(default)]
    #[schema(exclusive_minimum = 0, maximum = 1)]
    pub top_p: Option<f64>,
    /// Extension: sample among the k most likely tokens (default 0 = no limit).
    #[serde(default, deserialize_with = "params::int::opt_i64")]
    #[schema(minimum = 0, maximum = 100000)]
    pub top_k: Option<i64>,
    /// Choices per prompt (default 1); prompts × n ≤ 64.
    #[serde(default, deserialize_with = "params::int::opt_i64")]
    #[schema(minimum = 1, maximum = 64)]
    pub n: Option<i64>,
    /// A string or up to 4 strings; the text ends before the first one that appears.
    #[serde(default)]
    #[schema(value_type = Option<super::types::StopStrings>)]
    pub stop: Option<Value>,
    /// Same seed, same text; choice j of a prompt uses seed + j.
    #[serde(default, deserialize_with = "params::int::opt_i64")]
    #[schema(minimum = 0, maximum = 9223372036854775807i64)]
    pub seed: Option<i64>,
    /// 0..=5: each token's logprob and this many most likely alternatives.
    #[serde(default, deserialize_with = "params::int::opt_i64")]
    #[schema(minimum = 0, maximum = 5)]
    pub logprobs: Option<i64>,
    /// Put the prompt before the completion (with `logprobs`, the prompt tokens'
    /// logprobs too).
    #[serde(default)]
    pub echo: Option<bool>,
    /// Server-Sent Events: a chunk per token, then `data: [DONE]`.
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// `min_p`, `presence_penalty`, `frequency_penalty`, `repetition_penalty`,
    /// `logit_bias`.
    #[serde(flatten)]
    pub controls: params::Controls,
    #[serde(flatten)]
    pub guided: params::Guided,
    /// Only 1 or `n` (vLLM's rule: the best of several is not picked here).
    #[serde(default, deserialize_with = "params::int::opt_i64")]
    pub best_of: Option<i64>,
    /// Only empty: text after the insertion point is not supported.
    #[serde(default)]
    pub suffix: Option<String>,
    /// vLLM's: `{"type": "text"}` (default), `{"type": "json_object"}` (the
    /// completion is one JSON object: JSON mode) or `{"type": "json_schema",
    /// "json_schema": {"schema": {...}}}` (one value of that schema).
    #[serde(default)]
    #[schema(value_type = Option<super::types::ResponseFormat>)]
    pub response_format: Option<Value>,
    /// Accepted and ignored.
    #[serde(default)]
    pub user: Option<String>,
}

/// Legacy-completions logprobs of one choice.
#[derive(Debug, Default, Clone, Serialize, ToSchema)]
pub struct Logprobs {
    pub tokens: Vec<String>,
    /// `null` for the first prompt token (nothing precedes it).
    pub token_logprobs: Vec<Option<f32>>,
    /// Most likely alternatives (token text → logprob), the chosen token included.
    #[schema(value_type = Vec<Object>)]
    pub top_logprobs: Vec<Option<BTreeMap<String, f32>>>,
    /// Byte offset of each token in the choice's `text`.
    pub text_offset: Vec<usize>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Choice {
    pub text: String,
    pub index: usize,
    pub logprobs: Option<Logprobs>,
    /// "stop" or "length" (`null` in stream chunks before the last).
    pub finish_reason: Option<&'static str>,
}

#[derive(Debug, Default, Clone, Copy, Serialize, ToSchema)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
    /// Of the prompt tokens, those found in the prefix cache (OpenAI's shape).
    pub prompt_tokens_details: PromptTokensDetails,
}

#[derive(Debug, Clone, Copy, Default, Serialize, ToSchema)]
pub struct PromptTokensDetails {
    /// Prompt tokens whose KV pages were found in the prefix cache (a prompt that
    /// starts like an earlier one: they are not prefilled again).
    pub cached_tokens: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Completion {
    pub id: String,
    /// "text_completion"
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: Vec<Choice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// A prompt as given.
pub(super) enum Prompt {
    Text(String),
    Ids(Vec<u32>),
}

pub(super) fn bad(param: &str, detail: impl Into<String>) -> ApiError {
    ApiError::invalid(detail).param(param)
}

fn token_ids(v: &[Value]) -> Option<Vec<u32>> {
    v.iter()
        .map(|x| x.as_u64().and_then(|n| u32::try_from(n).ok()))
        .collect()
}

fn parse_prompts(v: &Value) -> Result<Vec<Prompt>, ApiError> {
    parse_inputs(v, "prompt")
}

/// A completion's `prompt` or an embeddings request's `input` (named `param` in errors):
/// a string, an array of strings, an array of token ids, or an array of arrays of token
/// ids; none empty.
pub(super) fn parse_inputs(v: &Value, param: &str) -> Result<Vec<Prompt>, ApiError> {
    let shape = format!("{param} must be a string, an array of strings, an array of token ids, or an array of arrays of token ids");
    let shape = shape.as_str();
    let prompts = match v {
        Value::String(s) => vec![Prompt::Text(s.clone())],
        Value::Array(items) if items.iter().all(Value::is_string) && !items.is_empty() => items
            .iter()
            .map(|s| Prompt::Text(s.as_str().unwrap_or_default().to_string()))
            .collect(),
        Value::Array(items) if items.iter().all(Value::is_number) && !items.is_empty() => {
            vec![Prompt::Ids(
                token_ids(items).ok_or_else(|| bad(param, shape))?,
            )]
        }
        Value::Array(items) if items.iter().all(Value::is_array) && !items.is_empty() => items
            .iter()
            .map(|a| {
                let ids = a.as_array().and_then(|a| token_ids(a));
                ids.map(Prompt::Ids).ok_or_else(|| bad(param, shape))
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(bad(param, shape)),
    };
    for p in &prompts {
        let empty = match p {
            Prompt::Text(s) => s.is_empty(),
            Prompt::Ids(ids) => ids.is_empty(),
        };
        if empty {
            return Err(bad(param, format!("a {param} must not be empty")));
        }
        if let Prompt::Text(s) = p {
            super::routes::validate_text(s).map_err(|e| e.param(param))?;
        }
    }
    Ok(prompts)
}

/// `stop` as a list (a string is a list of one); the rules are [`params::check`]'s.
pub(super) fn parse_stop(v: &Option<Value>) -> Result<Vec<String>, ApiError> {
    let rule = params::OPENAI.stop_rule;
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(a)) => a
            .iter()
            .map(|s| {
                s.as_str()
                    .map(String::from)
                    .ok_or_else(|| bad("stop", rule))
            })
            .collect(),
        Some(_) => Err(bad("stop", rule)),
    }
}

/// What one completion request asks of each choice.
pub(super) struct Plan {
    pub(super) model: String,
    pub(super) prompts: Vec<Prompt>,
    pub(super) n: usize,
    pub(super) max_tokens: usize,
    pub(super) sampling: SamplingParams,
    pub(super) stop: Vec<String>,
    pub(super) ends: params::Ends,
    /// Constrained JSON (`response_format` json_object or json_schema).
    pub(super) json: Option<std::sync::Arc<crate::json::Grammar>>,
    pub(super) logprobs: Option<usize>,
    pub(super) echo: bool,
    pub(super) stream: bool,
    pub(super) include_usage: bool,
}

/// The loaded model is the one a request names (or it names none).
pub(super) fn check_model(name: &Option<String>, m: &ModelSnapshot) -> Result<(), ApiError> {
    match (name, m.config.is_some()) {
        (Some(name), true) if *name != m.model_id => Err(model_not_found(name)),
        (Some(name), false) => Err(model_not_found(name)),
        (None, false) => Err(Error::ModelNotInitialized.into()),
        _ => Ok(()),
    }
}

fn plan(b: CompletionBody, m: &ModelSnapshot) -> Result<Plan, ApiError> {
    check_model(&b.model, m)?;
    let prompts = parse_prompts(&b.prompt)?;
    let echo = b.echo.unwrap_or(false);
    let checked = params::check(
        params::Requested {
            max_tokens: b.max_tokens.unwrap_or(16),
            temperature: b.temperature.unwrap_or(1.0),
            top_k: b.top_k.unwrap_or(0),
            top_p: b.top_p.unwrap_or(1.0),
            seed: b.seed.map(i128::from),
            stop: parse_stop(&b.stop)?,
            controls: b.controls.clone(),
        },
        &params::OPENAI,
    )?;
    if checked.max_tokens == 0 && !echo {
        return Err(bad(
            "max_tokens",
            "max_tokens 0 is only useful with echo (scoring the prompt)",
        ));
    }
    let n = b.n.unwrap_or(1);
    if n < 1 {
        return Err(bad("n", format!("n ({n}) must be at least 1")));
    }
    if b.best_of.is_some_and(|k| k != 1 && k != n) {
        return Err(bad(
            "best_of",
            "best_of is not supported: leave it out (or send n's value) and pick among n choices with logprobs",
        ));
    }
    if b.suffix.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(bad(
            "suffix",
            "suffix (text after the insertion point) is not supported: send a prompt only",
        ));
    }
    let choices = (n as u64).saturating_mul(prompts.len() as u64);
    if choices > MAX_CHOICES as u64 {
        // name what is over the limit: the prompts when n is 1
        let param = if n == 1 { "prompt" } else { "n" };
        return Err(bad(
            param,
            format!(
                "{} prompts × n ({n}) = {choices} choices, more than the {MAX_CHOICES} one request may ask for: send fewer prompts or a smaller n",
                prompts.len()
            ),
        ));
    }
    let logprobs = match b.logprobs {
        None => None,
        Some(k) if (0..=MAX_LOGPROBS).contains(&k) => Some(k as usize),
        Some(k) => {
            return Err(bad(
                "logprobs",
                format!("logprobs ({k}) must be between 0 and {MAX_LOGPROBS}"),
            ))
        }
    };
    Ok(Plan {
        model: m.model_id.clone(),
        prompts,
        n: n as usize,
        max_tokens: checked.max_tokens,
        sampling: checked.sampling,
        stop: checked.stop,
        ends: checked.ends,
        json: params::constraint(&b.response_format, &b.guided)?,
        logprobs,
        echo,
        stream: b.stream.unwrap_or(false),
        include_usage: b.stream_options.as_ref().is_some_and(|o| o.include_usage),
    })
}

/// Builds one choice from its generation's events.
pub(super) struct ChoiceBuilder {
    pub(super) index: usize,
    tokenizer: Arc<Tokenizer>,
    /// Alternatives per token, when logprobs were asked for.
    logprobs: Option<usize>,
    /// Characters of `text` so far: where the next token's text starts.
    shown: usize,
    pub(super) generated: Vec<u32>,
    pub(super) text: String,
    lp: Logprobs,
    /// Each generated token's logprob as the engine gave it (the chat shape's source).
    pub(super) raw: Vec<(u32, TokenLogprob)>,
    prompt_tokens: usize,
    cached_tokens: usize,
    pub(super) finish: Option<&'static str>,
}

pub(super) fn piece(t: &Tokenizer, id: u32) -> String {
    t.decode(&[id]).unwrap_or_default()
}

/// Where each of `ids` starts in their text, in characters (Unicode scalar values: the
/// offsets Python's `str` and vLLM count), rising: the text is decoded a token at a
/// time, holding back a character still incomplete (with the rest of the token it
/// began in), so every token of a character split over several points at the start of
/// that held-back text.
pub(super) fn char_offsets(t: &Tokenizer, ids: &[u32]) -> Result<Vec<usize>, Error> {
    let mut stream = TextStream::default();
    let (mut shown, mut seen) = (0usize, 0usize);
    let mut out = Vec::with_capacity(ids.len());
    for i in 0..ids.len() {
        out.push(shown);
        t.stream_step(&mut stream, &ids[..=i])?;
        let text = stream.text();
        // (a decoder that rewrote earlier text restarts the count)
        let now = match text.get(seen..) {
            Some(rest) => shown + rest.chars().count(),
            None => text.chars().count(),
        };
        shown = shown.max(now);
        seen = text.len();
    }
    Ok(out)
}

impl ChoiceBuilder {
    /// The builder of choice `index`, nothing applied yet.
    pub(super) fn new(index: usize, tokenizer: Arc<Tokenizer>, logprobs: Option<usize>) -> Self {
        ChoiceBuilder {
            index,
            tokenizer,
            logprobs,
            shown: 0,
            generated: Vec::new(),
            text: String::new(),
            lp: Logprobs::default(),
            raw: Vec::new(),
            prompt_tokens: 0,
            cached_tokens: 0,
            finish: None,
        }
    }

    fn top(&self, l: &TokenLogprob, chosen: u32) -> BTreeMap<String, f32> {
        let mut m: BTreeMap<String, f32> = l
            .top
            .iter()
            .map(|&(id, lp)| (piece(&self.tokenizer, id), lp))
            .collect();
        m.entry(piece(&self.tokenizer, chosen)).or_insert(l.logprob);
        m
    }

    /// The text a stream chunk carries for `ev`, its logprobs, and whether the choice ended.
    pub(super) fn apply(&mut self, ev: GenEvent) -> Result<(String, Option<Logprobs>), Error> {
        let mut chunk_lp = Logprobs::default();
        let text = match ev {
            GenEvent::Prompt { ids, logprobs } => {
                let t = self.tokenizer.clone();
                let offsets = char_offsets(&t, &ids)?;
                for ((id, l), offset) in ids.iter().zip(&logprobs).zip(offsets) {
                    chunk_lp.tokens.push(piece(&t, *id));
                    chunk_lp.text_offset.push(offset);
                    chunk_lp.token_logprobs.push(l.as_ref().map(|l| l.logprob));
                    chunk_lp
                        .top_logprobs
                        .push(l.as_ref().map(|l| self.top(l, *id)));
                }
                t.decode(&ids)?
            }
            GenEvent::Token {
                token_id,
                text,
                logprob,
                ..
            } => {
                if let Some(l) = &logprob {
                    // the text so far holds back a character still incomplete, so a
                    // token that starts inside one points at its start
                    chunk_lp.tokens.push(piece(&self.tokenizer, token_id));
                    chunk_lp.text_offset.push(self.shown);
                    chunk_lp.token_logprobs.push(Some(l.logprob));
                    chunk_lp.top_logprobs.push(Some(self.top(l, token_id)));
                    self.raw.push((token_id, l.clone()));
                }
                self.generated.push(token_id);
                text
            }
            GenEvent::Complete(r) => {
                self.prompt_tokens = r.prompt_tokens;
                self.cached_tokens = r.cached_tokens;
                self.finish = Some(match r.finish_reason {
                    FinishReason::Length => "length",
                    FinishReason::Stop | FinishReason::EndOfText => "stop",
                });
                String::new()
            }
            GenEvent::Error(e) => return Err(e),
        };
        self.text.push_str(&text);
        self.shown += text.chars().count();
        let lp = self.logprobs.map(|_| {
            let all = &mut self.lp;
            all.tokens.extend(chunk_lp.tokens.iter().cloned());
            all.token_logprobs
                .extend(chunk_lp.token_logprobs.iter().cloned());
            all.top_logprobs
                .extend(chunk_lp.top_logprobs.iter().cloned());
            all.text_offset.extend(chunk_lp.text_offset.iter().cloned());
            chunk_lp
        });
        Ok((text, lp))
    }

    fn choice(&self) -> Choice {
        Choice {
            text: self.text.clone(),
            index: self.index,
            logprobs: self.logprobs.map(|_| self.lp.clone()),
            finish_reason: self.finish,
        }
    }
}

/// A generation and the builder of its choice.
pub(super) struct Running {
    pub(super) stream: GenStream,
    pub(super) builder: ChoiceBuilder,
    /// The prompt text to put first (echo without prompt logprobs).
    echo_text: Option<String>,
}

pub(super) fn start_all(st: &AppState, p: &Plan) -> Result<Vec<Running>, ApiError> {
    let tokenizer = loaded_tokenizer(st)?;
    let context = st
        .engine
        .model_snapshot()
        .config
        .map_or(0, |c| c.context_size);
    // a request that could never be admitted is a 400 naming the limit, not a 503 to
    // retry forever
    let choices = p.prompts.len() * p.n;
    let capacity = st.engine.admission_limit();
    if choices > capacity {
        let param = if p.n == 1 { "prompt" } else { "n" };
        return Err(bad(
            param,
            format!(
                "{choices} choices (prompts × n) are more than this server takes at once ({capacity}: --max-batch running + --queue-depth waiting): send fewer prompts or a smaller n"
            ),
        ));
    }
    let vocab = tokenizer.vocab_size();
    params::check_bias_ids(&p.sampling, vocab)?;
    params::check_stop_ids(&p.ends, vocab)?;
    let mut out = Vec::with_capacity(choices);
    for (pi, prompt) in p.prompts.iter().enumerate() {
        // as OpenAI and vLLM: a prompt and its new tokens must fit the context (a
        // 400 naming both), not be cut short quietly
        let (text, ids) = match prompt {
            Prompt::Text(s) => (s.clone(), tokenizer.encode(s).map_err(ApiError::from)?),
            Prompt::Ids(ids) => {
                // one rule with /v1/detokenize: ids the tokenizer has (a model's
                // vocabulary may be padded past it)
                if let Some(id) = ids.iter().find(|&&id| id as usize >= vocab) {
                    return Err(bad(
                        "prompt",
                        format!(
                            "token {id} is outside the tokenizer's vocabulary ({vocab} tokens)"
                        ),
                    ));
                }
                (String::new(), ids.clone())
            }
        };
        if p.max_tokens > 0 && ids.len() + p.max_tokens > context {
            return Err(bad(
                "max_tokens",
                format!(
                    "prompt {pi} is {} tokens and max_tokens {}: {} in all, more than the model's context of {context} tokens; ask for at most {} new tokens",
                    ids.len(),
                    p.max_tokens,
                    ids.len() + p.max_tokens,
                    context.saturating_sub(ids.len())
                ),
            ));
        }
        // the engine gets the ids counted here (a text prompt is tokenized once)
        let given_ids = matches!(prompt, Prompt::Ids(_));
        for j in 0..p.n {
            let mut req = GenerateRequest::new(
                text.clone(),
                p.max_tokens,
                SamplingParams {
                    seed: p.sampling.seed.wrapping_add(j as u64),
                    ..p.sampling.clone()
                },
                p.stop.clone(),
            );
            req.prompt_ids = Some(ids.clone());
            req.logprobs = p.logprobs;
            p.ends.apply(&mut req);
            req.json = p.json.clone();
            // with echo + logprobs the engine reports the prompt (ids and logprobs)
            req.prompt_logprobs = (p.echo && p.logprobs.is_some()).then(|| p.logprobs.unwrap_or(0));
            let echo_text = match (p.echo && p.logprobs.is_none(), given_ids) {
                (false, _) => None,
                (true, false) => Some(text.clone()),
                (true, true) => Some(tokenizer.decode(&ids).map_err(ApiError::from)?),
            };
            // dropping the streams started so far cancels them
            let stream = st.engine.generate(req)?;
            out.push(Running {
                stream,
                builder: ChoiceBuilder::new(pi * p.n + j, tokenizer.clone(), p.logprobs),
                echo_text,
            });
        }
    }
    Ok(out)
}

pub(super) fn completion_id() -> String {
    format!("cmpl-{}", unique_hex())
}

/// The clock's nanoseconds in hex: the unique part of response and call ids.
pub(super) fn unique_hex() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos:x}")
}

pub(super) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Usage from `(choice index, prompt tokens, completion tokens)` of every choice:
/// prompt tokens counted once per prompt (its choice 0), completion tokens per choice.
/// A choice's token counts, for the usage.
#[derive(Clone, Copy, Debug)]
pub(super) struct Counts {
    index: usize,
    prompt: usize,
    cached: usize,
    completion: usize,
}

/// The usage of choices, `n` to a prompt (each prompt counted once, by its first).
pub(super) fn usage(choices: &[Counts], n: usize) -> Usage {
    let firsts = || choices.iter().filter(|c| c.index % n == 0);
    let prompt_tokens = firsts().map(|c| c.prompt).sum();
    let completion_tokens = choices.iter().map(|c| c.completion).sum();
    Usage {
        prompt_tokens,
        completion_tokens,
        total_tokens: prompt_tokens + completion_tokens,
        prompt_tokens_details: PromptTokensDetails {
            cached_tokens: firsts().map(|c| c.cached).sum(),
        },
    }
}

impl ChoiceBuilder {
    pub(super) fn counts(&self) -> Counts {
        Counts {
            index: self.index,
            prompt: self.prompt_tokens,
            cached: self.cached_tokens,
            completion: self.generated.len(),
        }
    }
}

/// Complete the prompts: the whole result as JSON, or Server-Sent Events.
#[utoipa::path(post, path = "/v1/completions", tag = "openai", request_body = CompletionBody,
    responses(
        (status = 200, description = "A completion; with `stream: true`, Server-Sent Events: one `data: {completion chunk}` per token (`choices[0].finish_reason` null until the last), with `stream_options.include_usage` a chunk with `usage` and no choices, then `data: [DONE]`",
            content((Completion = "application/json"), (String = "text/event-stream"))),
        (status = 400, description = "invalid parameter (`error.param` names it)"),
        (status = 404, description = "`model` is not the loaded model"),
        (status = 429, description = "rate limited"),
        (status = 503, description = "engine queue full"),
        (status = 504, description = "deadline passed")))]
pub async fn completions(
    State(st): State<AppState>,
    client: Option<Extension<Client>>,
    body: Body,
) -> Result<Response, ApiError> {
    let client = client.map(|Extension(c)| c);
    let b: CompletionBody = json_body(&st, body).await?;
    let p = plan(b, &st.engine.model_snapshot())?;
    let running = start_all(&st, &p)?;
    let (id, created) = (completion_id(), now_secs());
    if p.stream {
        return Ok(stream_completion(st, client, p, running, id, created));
    }
    let builders = collect_all(&st, client.as_ref(), running).await?;
    let counts: Vec<_> = builders.iter().map(ChoiceBuilder::counts).collect();
    Ok(Json(Completion {
        id,
        object: "text_completion",
        created,
        model: p.model,
        usage: Some(usage(&counts, p.n)),
        choices: builders.iter().map(ChoiceBuilder::choice).collect(),
    })
    .into_response())
}

/// Every choice's generation to its end (a whole, not streamed, answer), its tokens
/// charged to the client's rate limit: the builders, in order.
pub(super) async fn collect_all(
    st: &AppState,
    client: Option<&Client>,
    running: Vec<Running>,
) -> Result<Vec<ChoiceBuilder>, ApiError> {
    let mut builders = Vec::with_capacity(running.len());
    for mut r in running {
        if let Some(t) = r.echo_text.take() {
            r.builder.text.push_str(&t);
        }
        loop {
            let ev =
                r.stream.recv().await.ok_or_else(|| {
                    ApiError::from(Error::Unavailable("the engine stopped".into()))
                })?;
            let last = ev.is_final();
            r.builder.apply(ev)?;
            if last {
                break;
            }
        }
        st.charge_tokens(client, r.builder.generated.len());
        builders.push(r.builder);
    }
    Ok(builders)
}

fn chunk(id: &str, created: u64, model: &str, choices: Vec<Choice>, usage: Option<Usage>) -> Event {
    let c = Completion {
        id: id.to_string(),
        object: "text_completion",
        created,
        model: model.to_string(),
        choices,
        usage,
    };
    Event::default().data(serde_json::to_string(&c).unwrap_or_default())
}

/// How one API draws a streamed choice: the event it opens with (if any), the event of
/// each applied generation event, the usage chunk.
pub(super) trait ChoiceEvents: Send + Sync + 'static {
    /// Before the first generation event (completions: the echoed prompt; chat: the
    /// assistant role).
    fn opening(&self, r: &mut Running) -> Option<Event>;
    /// After `r.builder` applied an event: its new text and logprobs, the builder's raw
    /// logprobs from `raw_from` on are the event's, `last` when it ended the choice.
    fn event(
        &self,
        r: &Running,
        text: String,
        logprobs: Option<Logprobs>,
        raw_from: usize,
        last: bool,
    ) -> Event;
    /// The chunk with `usage` (and no choices).
    fn usage(&self, u: Usage) -> Event;
}

/// Stream every choice's generation as Server-Sent Events, interleaved as tokens come,
/// each token charged to the client's rate limit; then the usage chunk when asked and
/// `data: [DONE]`. An error ends its choice with an error chunk in the OpenAI shape.
pub(super) fn stream_choices(
    st: AppState,
    client: Option<Client>,
    running: Vec<Running>,
    n: usize,
    include_usage: bool,
    draw: Arc<dyn ChoiceEvents>,
) -> Response {
    let totals: Arc<Mutex<Vec<Counts>>> = Arc::default();
    let per_choice: Vec<_> = running
        .into_iter()
        .map(|r| {
            let (st, client, totals, draw) =
                (st.clone(), client.clone(), totals.clone(), draw.clone());
            // (the generation, whether it opened, whether it ended)
            futures_util::stream::unfold((Some(r), false, false), move |(r, opened, done)| {
                let (st, client, totals, draw) =
                    (st.clone(), client.clone(), totals.clone(), draw.clone());
                async move {
                    let mut r = r?;
                    if done {
                        return None;
                    }
                    if !opened {
                        if let Some(ev) = draw.opening(&mut r) {
                            return Some((ev, (Some(r), true, false)));
                        }
                    }
                    let ev = r.stream.recv().await?;
                    let is_token = matches!(ev, GenEvent::Token { .. });
                    let last = ev.is_final();
                    let raw_from = r.builder.raw.len();
                    let event = match r.builder.apply(ev) {
                        Ok((text, logprobs)) => {
                            if is_token {
                                st.charge_tokens(client.as_ref(), 1);
                            }
                            if last {
                                if let Ok(mut t) = totals.lock() {
                                    t.push(r.builder.counts());
                                }
                            }
                            draw.event(&r, text, logprobs, raw_from, last)
                        }
                        Err(e) => {
                            let api = ApiError::from(e);
                            Event::default().data(
                                openai_error_json(api.status, &api.detail, api.code, None)
                                    .to_string(),
                            )
                        }
                    };
                    Some((event, (Some(r), true, last)))
                }
            })
            .boxed()
        })
        .collect();
    let tail = futures_util::stream::once(async move {
        let t = totals.lock().map(|t| t.clone()).unwrap_or_default();
        let u = usage(&t, n);
        futures_util::stream::iter(
            include_usage
                .then(|| draw.usage(u))
                .into_iter()
                .chain(std::iter::once(Event::default().data("[DONE]"))),
        )
    })
    .flatten();
    let events = futures_util::stream::select_all(per_choice)
        .chain(tail)
        .map(Ok::<_, Infallible>);
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The legacy completion chunks.
struct CompletionEvents {
    id: String,
    created: u64,
    model: String,
}

impl ChoiceEvents for CompletionEvents {
    fn opening(&self, r: &mut Running) -> Option<Event> {
        let text = r.echo_text.take()?;
        let c = Choice {
            text,
            index: r.builder.index,
            logprobs: None,
            finish_reason: None,
        };
        Some(chunk(&self.id, self.created, &self.model, vec![c], None))
    }

    fn event(
        &self,
        r: &Running,
        text: String,
        logprobs: Option<Logprobs>,
        _: usize,
        _: bool,
    ) -> Event {
        let c = Choice {
            text,
            index: r.builder.index,
            logprobs,
            finish_reason: r.builder.finish,
        };
        chunk(&self.id, self.created, &self.model, vec![c], None)
    }

    fn usage(&self, u: Usage) -> Event {
        chunk(&self.id, self.created, &self.model, Vec::new(), Some(u))
    }
}

fn stream_completion(
    st: AppState,
    client: Option<Client>,
    p: Plan,
    running: Vec<Running>,
    id: String,
    created: u64,
) -> Response {
    let draw = Arc::new(CompletionEvents {
        id,
        created,
        model: p.model.clone(),
    });
    stream_choices(st, client, running, p.n, p.include_usage, draw)
}

/// `POST /v1/tokenize` (llama.cpp's shape).
#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenizeBody {
    /// The text.
    pub content: String,
    /// Also return each token's text.
    #[serde(default)]
    pub with_pieces: bool,
}

/// `POST /v1/detokenize`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct DetokenizeBody {
    #[serde(deserialize_with = "params::int::ids")]
    pub tokens: Vec<u32>,
}

/// The loaded model's tokenizer (none before a model is loaded: 503).
pub(super) fn loaded_tokenizer(st: &AppState) -> Result<Arc<Tokenizer>, ApiError> {
    st.engine
        .tokenizer()
        .ok_or_else(|| Error::ModelNotInitialized.into())
}

/// Text → token ids with the loaded model's tokenizer.
#[utoipa::path(post, path = "/v1/tokenize", tag = "openai", request_body = TokenizeBody,
    responses((status = 200, description = "`{\"tokens\": [ids]}`, or with `with_pieces` `{\"tokens\": [{\"id\", \"piece\"}]}`")))]
pub async fn tokenize(State(st): State<AppState>, body: Body) -> Result<Json<Value>, ApiError> {
    let b: TokenizeBody = json_body(&st, body).await?;
    let t = loaded_tokenizer(&st)?;
    let ids = t.encode(&b.content)?;
    Ok(Json(if b.with_pieces {
        json!({"tokens": ids.iter().map(|&id| json!({"id": id, "piece": piece(&t, id)})).collect::<Vec<_>>()})
    } else {
        json!({ "tokens": ids })
    }))
}

/// Token ids → text.
#[utoipa::path(post, path = "/v1/detokenize", tag = "openai", request_body = DetokenizeBody,
    responses((status = 200, description = "`{\"content\": text}`")))]
pub async fn detokenize(State(st): State<AppState>, body: Body) -> Result<Json<Value>, ApiError> {
    let b: DetokenizeBody = json_body(&st, body).await?;
    let t = loaded_tokenizer(&st)?;
    let v = t.vocab_size();
    if let Some(bad_id) = b.tokens.iter().find(|&&id| id as usize >= v) {
        return Err(bad(
            "tokens",
            format!("token {bad_id} is outside the vocabulary ({v} tokens)"),
        ));
    }
    Ok(Json(json!({ "content": t.decode(&b.tokens)? })))
}

/// The body of every error on `/v1` routes (OpenAI's shape).
#[derive(Serialize, ToSchema)]
pub struct OpenAiErrorBody {
    pub error: OpenAiError,
}

/// What went wrong, in OpenAI's words.
#[derive(Serialize, ToSchema)]
pub struct OpenAiError {
    pub message: String,
    /// invalid_request_error, authentication_error, permission_error,
    /// not_found_error, rate_limit_error, server_error.
    #[serde(rename = "type")]
    pub kind: String,
    /// The request field at fault, when one is.
    pub param: Option<String>,
    /// The contract's `error_code`, lower case.
    pub code: String,
}

pub(super) fn openai_error_json(
    status: StatusCode,
    message: &str,
    code: &str,
    param: Option<String>,
) -> Value {
    let kind = match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    };
    json!({"error": {"message": message, "type": kind, "param": param, "code": code.to_ascii_lowercase()}})
}

/// Anthropic's error type for a status.
pub(super) fn anthropic_kind(status: u16) -> &'static str {
    match status {
        400 | 405 | 408 | 415 | 422 | 431 | 414 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 => "overloaded_error",
        _ => "api_error",
    }
}

/// On `/v1` routes, every error answer (the handlers', the guard's, 404, 405, 413 …)
/// is turned from the contract's envelope into the OpenAI error shape (on
/// `/v1/messages`, Anthropic's, which the same fields fit).
pub async fn openai_errors(req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let on_v1 = path == "/v1" || path.starts_with("/v1/");
    let resp = next.run(req).await;
    if !on_v1 || resp.status().is_success() || resp.status().is_informational() {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let message = v["detail"].as_str().unwrap_or("request failed");
    let code = v["error_code"].as_str().unwrap_or("error");
    let param = parts.extensions.get::<ErrorParam>().map(|p| p.0.clone());
    let mut out = openai_error_json(parts.status, message, code, param);
    // Anthropic's shape on its API: {"type": "error", "error": {"type", "message"}}
    // (OpenAI's fields kept beside)
    if path.starts_with("/v1/messages") {
        out["type"] = json!("error");
        out["error"]["type"] = json!(anthropic_kind(parts.status.as_u16()));
    }
    let out = out.to_string();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(out))
}
