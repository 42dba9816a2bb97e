//! The one validator of generation parameters. `/api/v1/generate` (and the WebSocket's
//! `inference` messages) and `/v1/completions` ask for the same things with their own
//! names, defaults and limits; each API's limits are a named [`Limits`] constant, the
//! rules and their error messages are written once, and so is the default seed.

use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::error::ApiError;
use crate::json::Grammar;
use crate::model::sampling::{LogitAdjust, SamplingParams};
use std::sync::Arc;

/// Integer request fields take what JSON Schema calls an integer — `73` and `73.0`
/// alike, any number without a fractional part — so the OpenAPI document and the
/// parser agree. For `#[serde(deserialize_with = ...)]`.
pub mod int {
    use serde::de::{Deserializer, Error};
    use serde::Deserialize;

    fn whole<E: Error>(v: serde_json::Value) -> Result<i128, E> {
        let n = match &v {
            serde_json::Value::Number(n) => n,
            other => {
                return Err(E::custom(format!(
                    "invalid type: {}, expected an integer",
                    kind(other)
                )))
            }
        };
        if let Some(i) = n.as_i64() {
            return Ok(i128::from(i));
        }
        if let Some(u) = n.as_u64() {
            return Ok(i128::from(u));
        }
        match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 1.8e19 => Ok(f as i128),
            _ => Err(E::custom(format!(
                "invalid value: {n}, expected an integer"
            ))),
        }
    }

    fn kind(v: &serde_json::Value) -> &'static str {
        match v {
            serde_json::Value::Null => "null",
            serde_json::Value::Bool(_) => "boolean",
            serde_json::Value::Number(_) => "number",
            serde_json::Value::String(_) => "string",
            serde_json::Value::Array(_) => "array",
            serde_json::Value::Object(_) => "object",
        }
    }

    fn narrow<T: TryFrom<i128>, E: Error>(i: i128) -> Result<T, E> {
        T::try_from(i).map_err(|_| E::custom(format!("{i} is out of range")))
    }

    /// A required (or defaulted) `i64`.
    pub fn i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        narrow(whole(serde_json::Value::deserialize(d)?)?)
    }

    /// An optional `i64` (`null` is absent).
    pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Null => Ok(None),
            v => narrow(whole(v)?).map(Some),
        }
    }

    /// Token ids (`u32`).
    pub fn ids<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u32>, D::Error> {
        Vec::<serde_json::Value>::deserialize(d)?
            .into_iter()
            .map(|v| narrow(whole(v)?))
            .collect()
    }

    /// An optional `u64` (`null` is absent).
    pub fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Null => Ok(None),
            v => narrow(whole(v)?).map(Some),
        }
    }
}

/// What one API allows.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The name of the new-token count in this API (`max_new_tokens`, `max_tokens`).
    pub tokens_field: &'static str,
    /// Fewest new tokens (0: the prompt alone may be scored).
    pub min_tokens: i64,
    pub max_tokens: i64,
    pub max_temperature: f64,
    /// Most stop strings.
    pub max_stops: usize,
    /// How a rejected `stop` is described.
    pub stop_rule: &'static str,
}

/// Longest stop string, in characters (what the OpenAPI `maxLength` counts).
pub const MAX_STOP_CHARS: usize = 256;
/// Largest `top_k`.
pub const MAX_TOP_K: i64 = 100_000;

/// `/api/v1/generate` and the WebSocket's `inference` messages.
pub const V1: Limits = Limits {
    tokens_field: "max_new_tokens",
    min_tokens: 1,
    max_tokens: 4096,
    max_temperature: 10.0,
    max_stops: 16,
    stop_rule: "stop: at most 16 strings of 1 to 256 characters",
};

/// `/v1/completions` (OpenAI's bounds: temperature up to 2, four stop strings).
pub const OPENAI: Limits = Limits {
    tokens_field: "max_tokens",
    min_tokens: 0,
    max_tokens: 4096,
    max_temperature: 2.0,
    max_stops: 32,
    stop_rule: "stop must be a string or an array of at most 32 strings of 1 to 256 characters",
};

/// The sampling controls past temperature, top-k and top-p, with the names OpenAI
/// (`logit_bias`, the two penalties) and vLLM (`min_p`, `repetition_penalty`) give
/// them: flattened into the `/v1` bodies, and the same fields of
/// `/api/v1/generate`. A request with a bias or a penalty picks its tokens on the host
/// from logits read back (a GPU's device-side draw does not apply them); its logprobs
/// are the model's own, before them. (Each field is taken as any JSON value and its
/// type checked here: serde's flatten would lose the field's name in a type error.)
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
pub struct Controls {
    /// Keep only the tokens at least this likely relative to the most likely one
    /// (after top-k and top-p), 0..=1; 0 (default) = no limit.
    #[serde(default)]
    #[schema(value_type = Option<f64>, minimum = 0, maximum = 1)]
    pub min_p: Option<Value>,
    /// -2..=2: subtracted once from the logit of every token already generated.
    #[serde(default)]
    #[schema(value_type = Option<f64>, minimum = -2, maximum = 2)]
    pub presence_penalty: Option<Value>,
    /// -2..=2: subtracted from a token's logit once for each time it was generated.
    #[serde(default)]
    #[schema(value_type = Option<f64>, minimum = -2, maximum = 2)]
    pub frequency_penalty: Option<Value>,
    /// (0, 10]: a token of the prompt or already generated has a positive logit
    /// divided by it, a negative one multiplied (Hugging Face's rule); 1 (default) =
    /// none.
    #[serde(default)]
    #[schema(value_type = Option<f64>, exclusive_minimum = 0, maximum = 10)]
    pub repetition_penalty: Option<Value>,
    /// Token id (as a string, as OpenAI takes it) → -100..=100 added to its logit
    /// (-100 bans it, 100 forces it); at most 1024 tokens.
    #[serde(default)]
    #[schema(value_type = Option<std::collections::BTreeMap<String, f64>>)]
    pub logit_bias: Option<Value>,
    /// vLLM's: no end before this many new tokens (at most the new tokens asked for):
    /// end-of-text and stop tokens cannot be picked, stop strings are not looked for.
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 0)]
    pub min_tokens: Option<Value>,
    /// vLLM's: go on past the model's end-of-text tokens (benchmarks of fixed lengths).
    #[serde(default)]
    #[schema(value_type = Option<bool>)]
    pub ignore_eos: Option<Value>,
    /// vLLM's: generation also ends at these token ids (at most 32, in the tokenizer's
    /// vocabulary); the token is not in the text.
    #[serde(default)]
    #[schema(value_type = Option<Vec<u32>>)]
    pub stop_token_ids: Option<Value>,
}

/// Most `stop_token_ids`.
pub const MAX_STOP_IDS: usize = 32;

/// vLLM's structured-output fields of the `/v1` bodies (at most one of them, and not
/// beside a JSON `response_format`): the reply held to a JSON Schema, a regular
/// expression (matched whole; the `regex` crate's syntax), or one of some strings.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
pub struct Guided {
    /// A JSON Schema (an object, or its text) the reply is one value of.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub guided_json: Option<Value>,
    /// A regular expression the whole reply matches (plain text, not JSON).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub guided_regex: Option<Value>,
    /// Strings the reply is exactly one of.
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    pub guided_choice: Option<Value>,
    /// vLLM's newer form: `{"json": schema}`, `{"regex": ...}`, `{"choice": [...]}` or
    /// `{"json_object": true}`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub structured_outputs: Option<Value>,
}

/// A way of holding the reply to a shape, as a request asked for it.
enum Way<'a> {
    Schema(&'a Value),
    Regex(&'a Value),
    Choice(&'a Value),
    /// `structured_outputs.json_object` (must be true).
    Object(&'a Value),
}

/// The grammar a request holds its reply to: its `response_format` ([`json_format`])
/// or one of vLLM's fields ([`Guided`]); two of them is a 400 naming the second.
pub fn constraint(
    format: &Option<Value>,
    guided: &Guided,
) -> Result<Option<Arc<Grammar>>, ApiError> {
    let given = |v: &Option<Value>| v.clone().filter(|v| !v.is_null());
    let (json, regex, choice, outputs) = (
        given(&guided.guided_json),
        given(&guided.guided_regex),
        given(&guided.guided_choice),
        given(&guided.structured_outputs),
    );
    // (the field that asked, the way)
    let mut asked: Vec<(&str, Way)> = Vec::new();
    asked.extend(json.as_ref().map(|v| ("guided_json", Way::Schema(v))));
    asked.extend(regex.as_ref().map(|v| ("guided_regex", Way::Regex(v))));
    asked.extend(choice.as_ref().map(|v| ("guided_choice", Way::Choice(v))));
    if let Some(so) = &outputs {
        const FIELD: &str = "structured_outputs";
        let entries: Vec<(&String, &Value)> = so
            .as_object()
            .ok_or_else(|| bad(FIELD, "structured_outputs must be an object"))?
            .iter()
            .filter(|(_, v)| !v.is_null())
            .collect();
        let way = match entries.as_slice() {
            [(k, v)] => match k.as_str() {
                "json" => Some(Way::Schema(v)),
                "regex" => Some(Way::Regex(v)),
                "choice" => Some(Way::Choice(v)),
                "json_object" => Some(Way::Object(v)),
                _ => None,
            },
            _ => None,
        };
        let way = way.ok_or_else(|| {
            bad(
                FIELD,
                "structured_outputs takes one of json, regex, choice or json_object (grammar and structural_tag are not supported)",
            )
        })?;
        asked.push((FIELD, way));
    }
    let (field, way) = match (json_format(format)?, asked.as_slice()) {
        (g, []) => return Ok(g),
        (Some(_), [(field, _), ..]) | (None, [_, (field, _), ..]) => {
            return Err(bad(
                field,
                format!("{field} and another way of holding the reply to a shape cannot be asked together: use one of response_format, guided_json, guided_regex, guided_choice, structured_outputs"),
            ))
        }
        (None, [one]) => one,
    };
    let grammar = match *way {
        Way::Schema(Value::String(t)) => {
            let schema: Value = serde_json::from_str(t)
                .map_err(|e| bad(field, format!("{field} is not a JSON Schema: {e}")))?;
            schema_grammar(&schema)
        }
        Way::Schema(schema) => schema_grammar(schema),
        Way::Regex(Value::String(p)) => {
            crate::json::cached(format!("regex:{p}"), || Grammar::regex(p))
        }
        Way::Regex(_) => return Err(bad(field, format!("{field}'s regex must be a string"))),
        Way::Choice(v) => {
            let choices: Option<Vec<String>> = v
                .as_array()
                .and_then(|a| a.iter().map(|c| c.as_str().map(String::from)).collect());
            match choices {
                Some(c) => crate::json::cached(format!("choice:{v}"), || Grammar::choice(&c)),
                None => {
                    return Err(bad(
                        field,
                        format!("{field}'s choices must be an array of strings"),
                    ))
                }
            }
        }
        Way::Object(Value::Bool(true)) => Ok(Grammar::object()),
        Way::Object(_) => return Err(bad(field, "structured_outputs.json_object must be true")),
    };
    grammar
        .map(Some)
        .map_err(|e| bad(field, format!("{field}: {e}")))
}

/// The grammar of a JSON Schema's values, compiled once while it is asked for
/// (`crate::json::cached`).
fn schema_grammar(schema: &Value) -> Result<Arc<Grammar>, String> {
    crate::json::cached(format!("schema:{schema}"), || {
        crate::json::schema::compile(schema)
    })
}

/// `response_format`: `{"type": "text"}` (or none) → none, `{"type": "json_object"}`
/// → any JSON object (JSON mode), `{"type": "json_schema", "json_schema": {"schema":
/// ...}}` → the values of that schema (`crate::json::schema`); anything else, or a
/// schema the grammar cannot enforce, is a 400 naming the field and the place in the
/// schema.
fn json_format(format: &Option<Value>) -> Result<Option<Arc<Grammar>>, ApiError> {
    const FIELD: &str = "response_format";
    match format {
        None | Some(Value::Null) => Ok(None),
        Some(f) => match f.get("type").and_then(Value::as_str) {
            Some("text") => Ok(None),
            Some("json_object") => Ok(Some(Grammar::object())),
            Some("json_schema") => {
                let schema = f
                    .get("json_schema")
                    .and_then(|j| j.get("schema"))
                    .ok_or_else(|| {
                        bad(
                            FIELD,
                            "response_format json_schema needs json_schema.schema: {\"type\": \"json_schema\", \"json_schema\": {\"name\": ..., \"schema\": {...}}}",
                        )
                    })?;
                schema_grammar(schema)
                .map(Some)
                .map_err(|e| bad(FIELD, format!("response_format json_schema.schema: {e}")))
            }
            _ => Err(bad(
                FIELD,
                "response_format must be {\"type\": \"text\"}, {\"type\": \"json_object\"} or {\"type\": \"json_schema\", \"json_schema\": {\"schema\": {...}}}",
            )),
        },
    }
}

/// Most tokens a `logit_bias` may name.
pub const MAX_LOGIT_BIAS: usize = 1024;

/// The parameters as a request gave them (after each API's own defaults).
#[derive(Clone, Debug)]
pub struct Requested {
    pub max_tokens: i64,
    pub temperature: f64,
    pub top_k: i64,
    pub top_p: f64,
    /// `None`: a fresh seed ([`default_seed`]).
    pub seed: Option<i128>,
    pub stop: Vec<String>,
    pub controls: Controls,
}

/// The parameters checked: new tokens, the sampler's parameters, the stop strings.
#[derive(Clone, Debug)]
pub struct Checked {
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    pub stop: Vec<String>,
    pub ends: Ends,
}

/// How a generation may end besides its length and stop strings.
#[derive(Clone, Debug, Default)]
pub struct Ends {
    pub stop_ids: Vec<u32>,
    pub ignore_eos: bool,
    pub min_tokens: usize,
}

impl Ends {
    /// Put them on `req`.
    pub fn apply(&self, req: &mut crate::engine::GenerateRequest) {
        req.stop_ids = self.stop_ids.clone();
        req.ignore_eos = self.ignore_eos;
        req.min_tokens = self.min_tokens;
    }
}

/// A seed for a request that gave none: the clock's nanoseconds.
pub fn default_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn bad(field: &str, detail: impl Into<String>) -> ApiError {
    ApiError::invalid(detail).param(field)
}

/// Check every rule of `limits`; the error names the field (`detail` and `param`).
pub fn check(r: Requested, limits: &Limits) -> Result<Checked, ApiError> {
    let field = limits.tokens_field;
    if !(limits.min_tokens..=limits.max_tokens).contains(&r.max_tokens) {
        return Err(bad(
            field,
            format!(
                "{field} ({}) must be between {} and {}",
                r.max_tokens, limits.min_tokens, limits.max_tokens
            ),
        ));
    }
    if !(0.0..=limits.max_temperature).contains(&r.temperature) {
        return Err(bad(
            "temperature",
            format!(
                "temperature ({}) must be between 0 and {}",
                r.temperature, limits.max_temperature
            ),
        ));
    }
    if !(0..=MAX_TOP_K).contains(&r.top_k) {
        return Err(bad(
            "top_k",
            format!("top_k ({}) must be between 0 and {MAX_TOP_K}", r.top_k),
        ));
    }
    if !(r.top_p > 0.0 && r.top_p <= 1.0) {
        return Err(bad(
            "top_p",
            format!("top_p ({}) must be in (0, 1]", r.top_p),
        ));
    }
    let seed = match r.seed {
        None => default_seed(),
        Some(s) if (0..=i64::MAX as i128).contains(&s) => s as u64,
        Some(s) => {
            return Err(bad(
                "seed",
                format!(
                    "seed ({s}) must be between 0 and {} (a signed 64-bit integer)",
                    i64::MAX
                ),
            ))
        }
    };
    if r.stop.len() > limits.max_stops
        || r.stop
            .iter()
            .any(|s| s.is_empty() || s.chars().count() > MAX_STOP_CHARS)
    {
        return Err(bad("stop", limits.stop_rule));
    }
    let (min_p, adjust) = check_controls(&r.controls)?;
    let ends = check_ends(&r.controls, r.max_tokens)?;
    Ok(Checked {
        max_tokens: r.max_tokens as usize,
        sampling: SamplingParams {
            temperature: r.temperature as f32,
            top_k: r.top_k as usize,
            top_p: r.top_p as f32,
            seed,
            min_p,
            adjust,
        },
        stop: r.stop,
        ends,
    })
}

fn check_ends(c: &Controls, max_tokens: i64) -> Result<Ends, ApiError> {
    let min_tokens = match &c.min_tokens {
        None | Some(Value::Null) => 0,
        Some(v) => match v.as_f64() {
            Some(m) if m.fract() == 0.0 && (0.0..=max_tokens as f64).contains(&m) => m as usize,
            _ => {
                return Err(bad(
                    "min_tokens",
                    format!("min_tokens ({v}) must be an integer from 0 to the new tokens asked for ({max_tokens})"),
                ))
            }
        },
    };
    let ignore_eos = match &c.ignore_eos {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(v) => {
            return Err(bad(
                "ignore_eos",
                format!("ignore_eos must be true or false, not {v}"),
            ))
        }
    };
    let rule = || {
        bad(
            "stop_token_ids",
            format!("stop_token_ids must be an array of at most {MAX_STOP_IDS} token ids"),
        )
    };
    let stop_ids = match &c.stop_token_ids {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(ids)) if ids.len() <= MAX_STOP_IDS => ids
            .iter()
            .map(|v| {
                v.as_u64()
                    .and_then(|id| u32::try_from(id).ok())
                    .ok_or_else(rule)
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(rule()),
    };
    Ok(Ends {
        stop_ids,
        ignore_eos,
        min_tokens,
    })
}

/// A number field given as any JSON value: `None` when absent or null.
fn number(field: &str, v: &Option<Value>) -> Result<Option<f64>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(other) => Err(bad(field, format!("{field} must be a number, not {other}"))),
    }
}

fn check_controls(c: &Controls) -> Result<(f32, LogitAdjust), ApiError> {
    let in_range = |field: &str, v: &Option<Value>, lo: f64, hi: f64, default: f64| {
        let v = number(field, v)?.unwrap_or(default);
        if (lo..=hi).contains(&v) {
            Ok(v as f32)
        } else {
            Err(bad(
                field,
                format!("{field} ({v}) must be between {lo} and {hi}"),
            ))
        }
    };
    let min_p = in_range("min_p", &c.min_p, 0.0, 1.0, 0.0)?;
    let presence_penalty = in_range("presence_penalty", &c.presence_penalty, -2.0, 2.0, 0.0)?;
    let frequency_penalty = in_range("frequency_penalty", &c.frequency_penalty, -2.0, 2.0, 0.0)?;
    let repetition_penalty = number("repetition_penalty", &c.repetition_penalty)?.unwrap_or(1.0);
    if !(repetition_penalty > 0.0 && repetition_penalty <= 10.0) {
        return Err(bad(
            "repetition_penalty",
            format!("repetition_penalty ({repetition_penalty}) must be in (0, 10]; 1 is none"),
        ));
    }
    let given = match &c.logit_bias {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m),
        Some(other) => {
            return Err(bad(
                "logit_bias",
                format!(
                "logit_bias must be an object of token ids (as strings) to numbers, not {other}"
            ),
            ))
        }
    };
    if given.is_some_and(|b| b.len() > MAX_LOGIT_BIAS) {
        return Err(bad(
            "logit_bias",
            format!("logit_bias names more than {MAX_LOGIT_BIAS} tokens"),
        ));
    }
    let mut bias = Vec::new();
    for (key, v) in given.into_iter().flatten() {
        let Some(v) = v.as_f64() else {
            return Err(bad(
                "logit_bias",
                format!("logit_bias of {key:?} must be a number, not {v}"),
            ));
        };
        let Ok(id) = key.parse::<u32>() else {
            return Err(bad(
                "logit_bias",
                format!("logit_bias key {key:?} is not a token id (an integer as a string, e.g. \"50256\")"),
            ));
        };
        if !(-100.0..=100.0).contains(&v) {
            return Err(bad(
                "logit_bias",
                format!("logit_bias of token {id} ({v}) must be between -100 and 100"),
            ));
        }
        if v != 0.0 {
            bias.push((id, v as f32));
        }
    }
    Ok((
        min_p,
        LogitAdjust {
            bias,
            presence_penalty,
            frequency_penalty,
            repetition_penalty: repetition_penalty as f32,
            ..LogitAdjust::default()
        },
    ))
}

/// The tokens a `logit_bias` names are in the tokenizer's vocabulary (`vocab` ids),
/// the rule prompt token ids follow.
pub fn check_bias_ids(s: &SamplingParams, vocab: usize) -> Result<(), ApiError> {
    s.adjust
        .check_ids(vocab)
        .map_err(|e| ApiError::from(e).param("logit_bias"))
}

/// The `stop_token_ids` are in the tokenizer's vocabulary.
pub fn check_stop_ids(e: &Ends, vocab: usize) -> Result<(), ApiError> {
    crate::engine::check_stop_ids(&e.stop_ids, vocab)
        .map_err(|err| ApiError::from(err).param("stop_token_ids"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Requested {
        Requested {
            max_tokens: 8,
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            seed: Some(7),
            stop: Vec::new(),
            controls: Controls::default(),
        }
    }

    #[test]
    fn each_api_has_its_bounds() {
        let zero = Requested {
            max_tokens: 0,
            ..base()
        };
        assert!(check(zero.clone(), &OPENAI).is_ok());
        let e = check(zero, &V1).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("max_new_tokens"));
        assert!(e.detail.contains("between 1 and 4096"), "{}", e.detail);
        let hot = Requested {
            temperature: 5.0,
            ..base()
        };
        assert!(check(hot.clone(), &V1).is_ok());
        assert_eq!(
            check(hot, &OPENAI).unwrap_err().param.as_deref(),
            Some("temperature")
        );
        // OpenAI caps stop at 4; this API takes 32, so that clients adding an eos text
        // to a task's own stops are not refused
        let stops = |n: usize| Requested {
            stop: vec!["a".into(); n],
            ..base()
        };
        assert!(check(stops(16), &V1).is_ok());
        assert_eq!(check(stops(17), &V1).unwrap_err().detail, V1.stop_rule);
        assert!(check(stops(32), &OPENAI).is_ok());
        assert_eq!(
            check(stops(33), &OPENAI).unwrap_err().detail,
            OPENAI.stop_rule
        );
    }

    #[test]
    fn shared_rules_name_their_field() {
        for (r, field) in [
            (
                Requested {
                    top_k: -1,
                    ..base()
                },
                "top_k",
            ),
            (
                Requested {
                    top_k: MAX_TOP_K + 1,
                    ..base()
                },
                "top_k",
            ),
            (
                Requested {
                    top_p: 0.0,
                    ..base()
                },
                "top_p",
            ),
            (
                Requested {
                    top_p: 1.5,
                    ..base()
                },
                "top_p",
            ),
            (
                Requested {
                    seed: Some(-1),
                    ..base()
                },
                "seed",
            ),
            (
                Requested {
                    seed: Some(i64::MAX as i128 + 1),
                    ..base()
                },
                "seed",
            ),
            (
                Requested {
                    stop: vec![String::new()],
                    ..base()
                },
                "stop",
            ),
            (
                Requested {
                    stop: vec!["x".repeat(MAX_STOP_CHARS + 1)],
                    ..base()
                },
                "stop",
            ),
        ] {
            for limits in [&V1, &OPENAI] {
                let e = check(r.clone(), limits).unwrap_err();
                assert_eq!(e.param.as_deref(), Some(field), "{}", e.detail);
                assert_eq!(e.code, "INVALID_INPUT");
            }
        }
    }

    #[test]
    fn a_given_seed_is_kept_and_a_missing_one_drawn() {
        let c = check(base(), &V1).unwrap();
        assert_eq!(c.sampling.seed, 7);
        assert_eq!(c.max_tokens, 8);
        let c = check(
            Requested {
                seed: None,
                ..base()
            },
            &OPENAI,
        )
        .unwrap();
        assert_ne!(c.sampling.seed, 0);
    }
}
