//! `POST /v1/chat/completions`: the conversation laid out by the model's own chat
//! template ([`crate::chat`]), tokenized without adding special tokens a second time,
//! then generated through the same engine path as `/v1/completions` (continuous
//! batching, the rate limit charging tokens, deadlines, cancellation on disconnect).
//! Answers in the chat shape, whole or streamed: a role delta first, content deltas,
//! the finish reason, a usage chunk with `stream_options.include_usage`, `[DONE]`.
//! With tools, calls in the reply are read out in the format the template teaches
//! (`crate::tool_calls`), or the reply is held to a forced call's schema.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Extension, State};
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

use super::error::ApiError;
use super::guard::Client;
use super::openai::{
    bad, check_model, collect_all, completion_id, loaded_tokenizer, now_secs, parse_stop, piece,
    start_all, stream_choices, unique_hex, usage, ChoiceBuilder, ChoiceEvents, Logprobs, Plan,
    Prompt, Running, StreamOptions, Usage,
};
use super::params;
use super::routes::json_body;
use super::state::AppState;
use crate::chat::RenderOptions;
use crate::engine::ModelSnapshot;
use crate::error::Error;
use crate::json::Grammar;
use crate::tokenizer::Tokenizer;
use crate::tool_calls::{ToolCall, ToolFormat};

/// Most alternatives per token (`top_logprobs`), OpenAI's bound.
pub const MAX_TOP_LOGPROBS: i64 = 20;

/// `POST /v1/chat/completions`. Unknown fields are ignored.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatBody {
    /// Must name the loaded model (`GET /v1/models`); may be omitted.
    #[serde(default)]
    pub model: Option<String>,
    /// The conversation: `{"role": "system" | "user" | "assistant" | "tool", "content":
    /// a string or an array of `{"type": "text", "text"}` parts}`; other fields
    /// (`name`, `tool_calls`, `tool_call_id`) reach the template as given.
    #[schema(value_type = Vec<super::types::ChatMessageIn>, min_items = 1)]
    pub messages: Value,
    /// New tokens per choice (default: the rest of the context, at most 4096);
    /// `max_completion_tokens` takes precedence.
    #[serde(default, deserialize_with = "params::int::opt_i64")]
    #[schema(minimum = 1, maximum = 4096)]
    pub max_tokens: Option<i64>,
    #[serde(default, deserialize_with = "params::int::opt_i64")]
    #[schema(minimum = 1, maximum = 4096)]
    pub max_completion_tokens: Option<i64>,
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
    /// Choices (default 1, at most 64).
    #[serde(default, deserialize_with = "params::int::opt_i64")]
    #[schema(minimum = 1, maximum = 64)]
    pub n: Option<i64>,
    /// A string or up to 32 strings; the text ends before the first that appears.
    #[serde(default)]
    #[schema(value_type = Option<super::types::StopStrings>)]
    pub stop: Option<Value>,
    /// Same seed, same text; choice j uses seed + j.
    #[serde(default, deserialize_with = "params::int::opt_i64")]
    #[schema(minimum = 0, maximum = 9223372036854775807i64)]
    pub seed: Option<i64>,
    /// `min_p`, `presence_penalty`, `frequency_penalty`, `repetition_penalty`,
    /// `logit_bias`.
    #[serde(flatten)]
    pub controls: params::Controls,
    #[serde(flatten)]
    pub guided: params::Guided,
    /// Each generated token's logprob, with `top_logprobs` (0..=20) alternatives.
    #[serde(default)]
    pub logprobs: Option<bool>,
    #[serde(default, deserialize_with = "params::int::opt_i64")]
    #[schema(minimum = 0, maximum = 20)]
    pub top_logprobs: Option<i64>,
    /// vLLM's: end the prompt with the template's cue for the assistant's turn
    /// (default true).
    #[serde(default)]
    pub add_generation_prompt: Option<bool>,
    /// vLLM's: leave the last message open so the reply continues it (transformers'
    /// rule: the text is cut after its content); needs `add_generation_prompt` false.
    #[serde(default)]
    pub continue_final_message: Option<bool>,
    /// vLLM's (transformers' `apply_chat_template(**kwargs)`): further variables for the
    /// template, e.g. `{"enable_thinking": false}` or `{"date_string": "1 Jan 2026"}`;
    /// not the ones the request sets otherwise (`messages`, `tools`, ...).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub chat_template_kwargs: Option<Value>,
    /// Server-Sent Events: `chat.completion.chunk`s, then `data: [DONE]`.
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// Passed to the chat template as `tools` (its `tool_use` template when it has
    /// one); with `tool_choice` `auto` (the default), calls in the reply are read out
    /// of it into `tool_calls` when the template teaches a format vLLM's parsers know.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub tools: Option<Value>,
    /// `"none"`, `"auto"` (default with tools), `"required"` (one or more calls, the
    /// reply a JSON array of `{"name", "parameters"}` held to the tools' schemas) or
    /// `{"type": "function", "function": {"name": ...}}` (the reply is that function's
    /// arguments, held to its parameters schema; `finish_reason` `stop`, as OpenAI's).
    #[serde(default)]
    #[schema(value_type = Option<super::types::ToolChoice>)]
    pub tool_choice: Option<Value>,
    /// `{"type": "text"}` (default), `{"type": "json_object"}` (the reply is one JSON
    /// object: JSON mode) or `{"type": "json_schema", "json_schema": {"schema":
    /// {...}}}` (one value of that schema).
    #[serde(default)]
    #[schema(value_type = Option<super::types::ResponseFormat>)]
    pub response_format: Option<Value>,
    /// Accepted and ignored.
    #[serde(default)]
    pub user: Option<String>,
}

/// An assistant message.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChatMessage {
    /// "assistant"
    pub role: &'static str,
    /// The reply's text (null when it is only tool calls, or only reasoning).
    pub content: Option<String>,
    /// What the model wrote between `<think>` and `</think>` before its answer, when
    /// its template teaches it to (Qwen3, DeepSeek-R1): the field DeepSeek's API,
    /// llama.cpp and vLLM's reasoning parsers fill.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// The tool calls read out of the reply (with `tools`, in the format the model's
    /// template teaches: `<tool_call>` blocks, `[TOOL_CALLS]`, Llama 3's JSON).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallOut>>,
}

/// A tool call of a reply, OpenAI's shape.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ToolCallOut {
    pub id: String,
    /// "function"
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: FunctionCall,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FunctionCall {
    pub name: String,
    /// The arguments as a JSON text.
    pub arguments: String,
}

/// `chat_template_kwargs` as the template's further variables: an object, none of whose
/// keys the request sets otherwise.
fn template_kwargs(kwargs: &Option<Value>) -> Result<serde_json::Map<String, Value>, ApiError> {
    const FIELD: &str = "chat_template_kwargs";
    const SET: [&str; 6] = [
        "messages",
        "tools",
        "add_generation_prompt",
        "continue_final_message",
        "bos_token",
        "eos_token",
    ];
    match kwargs {
        None | Some(Value::Null) => Ok(Default::default()),
        Some(Value::Object(m)) => match m.keys().find(|k| SET.contains(&k.as_str())) {
            Some(k) => Err(bad(
                FIELD,
                format!("chat_template_kwargs cannot set {k:?}: the request sets it (its own field, or the tokenizer's)"),
            )),
            None => Ok(m.clone()),
        },
        Some(_) => Err(bad(FIELD, "chat_template_kwargs must be an object")),
    }
}

/// A chat request's error as an API that names its fields otherwise reports it, by
/// `names` ((chat's name, the API's)): the field at fault (a message's place,
/// `messages[i]...`, as the other name whole: its index is not the other API's), and
/// the names with an underscore where the words give them.
pub(super) fn renamed(mut e: ApiError, names: &[(&str, &str)]) -> ApiError {
    let field = |p: &str, name: &str| {
        p.strip_prefix(name)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['[', '.']))
    };
    if let Some(p) = &e.param {
        if let Some((_, to)) = names.iter().find(|(from, _)| field(p, from)) {
            e.param = Some(to.to_string());
        }
    }
    for (from, to) in names.iter().filter(|(from, _)| from.contains('_')) {
        e.detail = e.detail.replace(from, to);
    }
    e
}

/// How a reply's tool calls come out of it.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Calls {
    /// Read out of the reply in the format the template teaches (`tool_choice` `auto`).
    Read(ToolFormat),
    /// The reply is this function's arguments (`tool_choice` naming it), held to its
    /// parameters schema.
    Named(String),
    /// The reply is a JSON array of `{"name", "parameters"}`, one or more calls of the
    /// tools (`tool_choice` `required`), held to their schemas.
    Required,
}

/// How a request's replies are read: for tool calls, for reasoning.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Reading {
    pub(super) calls: Option<Calls>,
    /// [`Rendered::think`].
    pub(super) think: Option<bool>,
}

impl Reading {
    /// A whole reply's reasoning (when read for it and it has one), then its content
    /// and tool calls ([`reply`]); no content when the reply was only reasoning.
    pub(super) fn whole<'a>(
        &self,
        text: &'a str,
    ) -> (Option<&'a str>, Option<String>, Option<Vec<ToolCallOut>>) {
        let (reasoning, text) = match self.think {
            Some(opened) => crate::reasoning::whole(text, opened),
            None => (None, text),
        };
        let (content, calls) = reply(text, self.calls.as_ref());
        let content = content.filter(|c| reasoning.is_none() || !c.is_empty());
        (reasoning, content, calls)
    }
}

/// A tool call's id: one reply's calls share the clock's reading, their index apart.
pub(super) fn call_id(i: usize) -> String {
    format!("call_{}_{i}", unique_hex())
}

/// The content and tool calls of a whole reply `text`: calls when `calls` reads some
/// out of it, else the text as it is.
pub(super) fn reply(
    text: &str,
    calls: Option<&Calls>,
) -> (Option<String>, Option<Vec<ToolCallOut>>) {
    let read = match calls {
        None => None,
        Some(Calls::Read(f)) => f.parse(text),
        Some(Calls::Named(name)) => Some((
            None,
            vec![ToolCall {
                name: name.clone(),
                arguments: text.to_string(),
            }],
        )),
        Some(Calls::Required) => required_calls(text).map(|c| (None, c)),
    };
    match read {
        Some((content, calls)) => (
            content,
            Some(
                calls
                    .into_iter()
                    .enumerate()
                    .map(|(i, c)| ToolCallOut {
                        id: call_id(i),
                        kind: "function",
                        function: FunctionCall {
                            name: c.name,
                            arguments: c.arguments,
                        },
                    })
                    .collect(),
            ),
        ),
        None => (Some(text.to_string()), None),
    }
}

/// The calls of a `required` reply (a JSON array of `{"name", "parameters"}`; none if
/// it was cut before it closed).
fn required_calls(text: &str) -> Option<Vec<ToolCall>> {
    let calls: Vec<Value> = serde_json::from_str(text).ok()?;
    calls
        .iter()
        .map(|c| {
            Some(ToolCall {
                name: c.get("name")?.as_str()?.to_string(),
                arguments: c.get("parameters")?.to_string(),
            })
        })
        .collect()
}

/// `tools` as (name, parameters) for a forced call's grammar, and the grammar
/// `tool_choice` asks for: a named function's arguments, or `required`'s calls (none
/// for `auto` and `none`).
fn forced_calls(
    tools: Option<&Value>,
    choice: Option<&Value>,
) -> Result<Option<(Calls, Arc<Grammar>)>, ApiError> {
    let named = match choice {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) if s == "none" || s == "auto" => return Ok(None),
        Some(Value::String(s)) if s == "required" => None,
        Some(c) => match c.pointer("/function/name").and_then(Value::as_str) {
            Some(name) if c.get("type").and_then(Value::as_str) == Some("function") => {
                Some(name.to_string())
            }
            _ => {
                return Err(bad(
                    "tool_choice",
                    "tool_choice must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}",
                ))
            }
        },
    };
    let listed: Vec<(String, Option<Value>)> = tools
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, t)| {
            let name = t.pointer("/function/name").and_then(Value::as_str).ok_or_else(|| {
                bad(&format!("tools[{i}]"), "each tool must be {\"type\": \"function\", \"function\": {\"name\": ..., \"parameters\": {...}}}")
            })?;
            Ok((name.to_string(), t.pointer("/function/parameters").cloned()))
        })
        .collect::<Result<_, ApiError>>()?;
    if listed.is_empty() {
        return Err(bad(
            "tool_choice",
            "a tool_choice that forces a call needs tools",
        ));
    }
    if let Some((i, (n, _))) = listed
        .iter()
        .enumerate()
        .find(|(i, (n, _))| listed[..*i].iter().any(|(m, _)| m == n))
    {
        return Err(bad(
            &format!("tools[{i}]"),
            format!("two tools are named {n:?}"),
        ));
    }
    match named {
        Some(name) => {
            let Some(i) = listed.iter().position(|(n, _)| *n == name) else {
                return Err(bad(
                    "tool_choice",
                    format!("tool_choice names {name:?}, which is not among the tools"),
                ));
            };
            let key = format!("arguments:{}", serde_json::json!(listed[i].1));
            let g =
                crate::json::cached(key, || crate::json::schema::arguments(listed[i].1.as_ref()))
                    .map_err(|e| {
                    bad(
                        &format!("tools[{i}]"),
                        format!("tools[{i}].function.parameters: {e}"),
                    )
                })?;
            Ok(Some((Calls::Named(name), g)))
        }
        None => {
            let key = format!("tools:{}", serde_json::json!(listed));
            let g = crate::json::cached(key, || crate::json::schema::tool_calls(&listed)).map_err(
                |(i, e)| {
                    bad(
                        &format!("tools[{i}]"),
                        format!("tools[{i}].function.parameters: {e}"),
                    )
                },
            )?;
            Ok(Some((Calls::Required, g)))
        }
    }
}

/// One alternative of a token.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TopLogprob {
    pub token: String,
    pub logprob: f32,
    /// The token's UTF-8 bytes.
    pub bytes: Vec<u8>,
}

/// One generated token's logprob, chat shape.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ContentLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
    /// The most likely alternatives, most likely first.
    pub top_logprobs: Vec<TopLogprob>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChatLogprobs {
    pub content: Vec<ContentLogprob>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChatChoice {
    pub index: usize,
    pub message: ChatMessage,
    pub logprobs: Option<ChatLogprobs>,
    /// "stop" or "length".
    pub finish_reason: Option<&'static str>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChatCompletion {
    pub id: String,
    /// "chat.completion"
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChatChoice>,
    pub usage: Usage,
}

/// A content part's type; a part without one is a 400 naming `param` and its place.
pub(super) fn part_kind<'a>(param: &str, j: usize, p: &'a Value) -> Result<&'a str, ApiError> {
    p.get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(param, format!("{param}[{j}] has no type")))
}

/// A text part's text (a 400 without one).
pub(super) fn part_text(param: &str, j: usize, p: &Value) -> Result<String, ApiError> {
    p.get("text")
        .and_then(Value::as_str)
        .map(String::from)
        .ok_or_else(|| {
            bad(
                param,
                format!("{param}[{j}] has type {} but no text", p["type"]),
            )
        })
}

/// The texts of content `v` — a string, or parts `{"type", "text"}` of the `kinds`
/// (parts of the `passed` kinds left out) — as chat, the Responses API (`input_text`,
/// `output_text`) and the Messages API (`thinking` passed) take it; anything else is
/// a 400 naming `param` and the part.
pub(super) fn texts(
    param: &str,
    v: &Value,
    kinds: &[&str],
    passed: &[&str],
) -> Result<Vec<String>, ApiError> {
    let parts = match v {
        Value::String(s) => return Ok(vec![s.clone()]),
        Value::Array(parts) => parts,
        _ => {
            return Err(bad(
                param,
                format!("{param} must be a string or an array of text parts"),
            ))
        }
    };
    let mut out = Vec::with_capacity(parts.len());
    for (j, p) in parts.iter().enumerate() {
        match part_kind(param, j, p)? {
            k if kinds.contains(&k) => out.push(part_text(param, j, p)?),
            k if passed.contains(&k) => {}
            other => {
                return Err(bad(
                    param,
                    format!(
                        "{param}[{j}] has type {other:?}: only text parts ({}) are served",
                        kinds.join(", ")
                    ),
                ))
            }
        }
    }
    Ok(out)
}

/// The message text of `content`: a string, or text parts joined by newlines.
fn content_text(i: usize, content: &Value) -> Result<Value, ApiError> {
    match content {
        Value::Null => Ok(Value::Null),
        _ => Ok(Value::String(
            texts(&format!("messages[{i}].content"), content, &["text"], &[])?.join("\n"),
        )),
    }
}

/// The messages as the template gets them: roles checked, content as text.
fn messages_for_template(v: &Value) -> Result<Value, ApiError> {
    let list = v
        .as_array()
        .ok_or_else(|| bad("messages", "messages must be an array of messages"))?;
    if list.is_empty() {
        return Err(bad("messages", "messages must not be empty"));
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let obj = m
            .as_object()
            .ok_or_else(|| bad(&format!("messages[{i}]"), "a message must be an object"))?;
        let role = obj.get("role").and_then(Value::as_str).unwrap_or("");
        if !["system", "user", "assistant", "tool"].contains(&role) {
            return Err(bad(
                &format!("messages[{i}].role"),
                format!("role {role:?} is not one of system, user, assistant, tool"),
            ));
        }
        let mut msg: Map<String, Value> = obj.clone();
        let mut content = content_text(i, obj.get("content").unwrap_or(&Value::Null))?;
        if role == "assistant" && content.is_null() {
            // a tool-call turn without text, as OpenAI's SDKs send it back: empty text
            // (vLLM's rule; Qwen3's template takes `'</think>' in message.content`)
            content = Value::String(String::new());
        }
        if let Value::String(s) = &content {
            // (an assistant's turn may have been empty, or only tool calls)
            if !(role == "assistant" && s.is_empty()) {
                super::routes::validate_text(s)
                    .map_err(|e| e.param(format!("messages[{i}].content")))?;
            }
        } else if role != "assistant" {
            return Err(bad(
                &format!("messages[{i}].content"),
                "content is required (only an assistant's tool-call message may omit it)",
            ));
        }
        msg.insert("content".into(), content);
        if let Some(Value::Array(calls)) = msg.get_mut("tool_calls") {
            calls.iter_mut().for_each(arguments_as_object);
        }
        out.push(Value::Object(msg));
    }
    Ok(Value::Array(out))
}

/// `chat_template_kwargs` with `enable_thinking` (the switch of templates that teach
/// reasoning: Qwen3's) set as another API's own field asks (`on`), unless the kwargs
/// set it themselves.
pub(super) fn with_thinking(kwargs: Option<Value>, on: Option<bool>) -> Option<Value> {
    let Some(on) = on else { return kwargs };
    match kwargs {
        None | Some(Value::Null) => Some(json!({ "enable_thinking": on })),
        Some(Value::Object(mut m)) => {
            m.entry("enable_thinking").or_insert(json!(on));
            Some(Value::Object(m))
        }
        other => other, // (refused as it is, naming the field)
    }
}

/// `(add_generation_prompt, continue_final_message)` as asked: the generation prompt
/// by default unless the final message is continued; never both.
fn prompt_end(add: Option<bool>, continued: Option<bool>) -> Result<(bool, bool), ApiError> {
    let continued = continued.unwrap_or(false);
    let add = add.unwrap_or(!continued);
    if continued && add {
        return Err(bad(
            "continue_final_message",
            "continue_final_message and add_generation_prompt cannot both be true: the last message is either continued or answered",
        ));
    }
    Ok((add, continued))
}

/// An assistant's tool call as templates take it: OpenAI sends `function.arguments` as
/// a JSON text, transformers' templates expect the object (`arguments | tojson`); a
/// text holding an object becomes it, an empty one `{}` (vLLM's rule), any other text
/// stays as it was written.
fn arguments_as_object(call: &mut Value) {
    let Some(args) = call.pointer_mut("/function/arguments") else {
        return;
    };
    if let Value::String(text) = args {
        if text.trim().is_empty() {
            *args = json!({});
        } else if let Ok(v @ Value::Object(_)) = serde_json::from_str(text) {
            *args = v;
        }
    }
}

/// A chat request's conversation laid out by the template and tokenized, with what
/// holds its replies.
pub(super) struct Rendered {
    pub(super) ids: Vec<u32>,
    /// How tool calls are read out of the replies (`None`: they are not).
    pub(super) calls: Option<Calls>,
    /// The grammar the replies follow (a JSON format, a structured output, a forced
    /// call).
    pub(super) json: Option<Arc<Grammar>>,
    /// Whether the replies are read for reasoning (`<think>` … `</think>`, a template
    /// that teaches it, no grammar): `Some(opened)`, opened when the prompt leaves the
    /// reply inside one (`reasoning::opened_by`, `reasoning::left_open`).
    pub(super) think: Option<bool>,
}

/// The plan of a chat request (the conversation rendered and tokenized, the
/// generation parameters checked), its prompt tokens, and how tool calls are read out
/// of its replies (`None`: they are not).
pub(super) fn plan(
    b: &ChatBody,
    m: &ModelSnapshot,
    tokenizer: &Tokenizer,
) -> Result<(Plan, usize, Reading), ApiError> {
    check_model(&b.model, m)?;
    let r = render(b, tokenizer)?;
    plan_rendered(b, m, r)
}

/// The conversation of `b` rendered with the model's chat template and tokenized, its
/// tools and reply format checked.
pub(super) fn render(b: &ChatBody, tokenizer: &Tokenizer) -> Result<Rendered, ApiError> {
    let mut json = params::constraint(&b.response_format, &b.guided)?;
    if let Some(t) = &b.tools {
        if !t.is_array() {
            return Err(bad("tools", "tools must be an array of tools"));
        }
    }
    let forced = forced_calls(b.tools.as_ref(), b.tool_choice.as_ref())?;
    if let Some((_, g)) = &forced {
        if json.is_some() {
            return Err(bad(
                "response_format",
                "response_format and a tool_choice that forces a call cannot both hold the reply: the call's arguments follow the tool's parameters",
            ));
        }
        json = Some(g.clone());
    }
    let messages = messages_for_template(&b.messages)?;
    let (add_generation_prompt, continue_final_message) =
        prompt_end(b.add_generation_prompt, b.continue_final_message)?;
    let wants_calls = b
        .tools
        .as_ref()
        .and_then(Value::as_array)
        .is_some_and(|t| !t.is_empty())
        && b.tool_choice.as_ref().and_then(Value::as_str) != Some("none");
    let chat = tokenizer.chat().ok_or_else(|| {
        bad(
            "messages",
            "the loaded model has no chat template (chat_template.jinja or tokenizer_config.json's chat_template): use /v1/completions",
        )
    })?;
    let text = chat
        .render(
            &messages,
            &RenderOptions {
                add_generation_prompt,
                continue_final_message,
                tools: b.tools.clone(),
                extra: template_kwargs(&b.chat_template_kwargs)?,
            },
        )
        .map_err(|e| ApiError::from(e).param("messages"))?;
    // the template the conversation was rendered with
    let source = if wants_calls && chat.has("tool_use") {
        chat.source("tool_use")
    } else {
        chat.source("default")
    };
    // a forced call, or the format of that template
    let tools = match forced {
        Some((calls, _)) => Some(calls),
        None if wants_calls => source.and_then(ToolFormat::detect).map(Calls::Read),
        None => None,
    };
    // a reply held to a grammar is that format from its first token: no reasoning; a
    // reply starts inside one when the generation prompt opens it, or when it
    // continues a final message that did
    let think = source
        .filter(|s| json.is_none() && crate::reasoning::taught(s))
        .map(|_| match continue_final_message {
            true => messages
                .as_array()
                .and_then(|m| m.last())
                .and_then(|m| m["content"].as_str())
                .is_some_and(crate::reasoning::left_open),
            false => crate::reasoning::opened_by(&text),
        });
    let ids = tokenizer.encode_plain(&text).map_err(ApiError::from)?;
    Ok(Rendered {
        ids,
        calls: tools,
        json,
        think,
    })
}

/// The plan of a rendered chat request: its new tokens fitted to the context, the
/// generation parameters checked.
pub(super) fn plan_rendered(
    b: &ChatBody,
    m: &ModelSnapshot,
    Rendered {
        ids,
        calls,
        json,
        think,
    }: Rendered,
) -> Result<(Plan, usize, Reading), ApiError> {
    let context = m.config.as_ref().map_or(0, |c| c.context_size);
    if ids.len() >= context {
        return Err(ApiError::from(Error::SequenceTooLong {
            len: ids.len(),
            max: context,
        })
        .param("messages"));
    }
    let room = (context - ids.len()) as i64;
    let asked = b.max_completion_tokens.or(b.max_tokens);
    let max_tokens = asked.unwrap_or(room.min(params::OPENAI.max_tokens));
    if asked.is_some_and(|t| t > room) {
        let name = if b.max_completion_tokens.is_some() {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        return Err(bad(
            name,
            format!(
                "the conversation is {} tokens and the context {context}: at most {room} new tokens fit, {} were asked",
                ids.len(),
                asked.unwrap_or(0)
            ),
        ));
    }
    let checked = params::check(
        params::Requested {
            max_tokens,
            temperature: b.temperature.unwrap_or(1.0),
            top_k: b.top_k.unwrap_or(0),
            top_p: b.top_p.unwrap_or(1.0),
            seed: b.seed.map(i128::from),
            stop: parse_stop(&b.stop)?,
            controls: b.controls.clone(),
        },
        &params::OPENAI,
    )?;
    if checked.max_tokens == 0 {
        return Err(bad(
            "max_tokens",
            "a chat completion needs at least 1 new token",
        ));
    }
    let n = b.n.unwrap_or(1);
    if !(1..=super::openai::MAX_CHOICES as i64).contains(&n) {
        return Err(bad(
            "n",
            format!(
                "n ({n}) must be between 1 and {}",
                super::openai::MAX_CHOICES
            ),
        ));
    }
    let logprobs = match (b.logprobs.unwrap_or(false), b.top_logprobs) {
        (false, None) => None,
        (false, Some(_)) => {
            return Err(bad("top_logprobs", "top_logprobs needs logprobs: true"));
        }
        (true, k) => {
            let k = k.unwrap_or(0);
            if !(0..=MAX_TOP_LOGPROBS).contains(&k) {
                return Err(bad(
                    "top_logprobs",
                    format!("top_logprobs ({k}) must be between 0 and {MAX_TOP_LOGPROBS}"),
                ));
            }
            Some(k as usize)
        }
    };
    let prompt_tokens = ids.len();
    Ok((
        Plan {
            model: m.model_id.clone(),
            prompts: vec![Prompt::Ids(ids)],
            n: n as usize,
            max_tokens: checked.max_tokens,
            sampling: checked.sampling,
            stop: checked.stop,
            ends: checked.ends,
            json,
            logprobs,
            echo: false,
            stream: b.stream.unwrap_or(false),
            include_usage: b.stream_options.as_ref().is_some_and(|o| o.include_usage),
        },
        prompt_tokens,
        Reading { calls, think },
    ))
}

pub(super) fn content_logprob(
    t: &Tokenizer,
    id: u32,
    l: &crate::model::sampling::TokenLogprob,
    k: usize,
) -> ContentLogprob {
    let token = piece(t, id);
    ContentLogprob {
        bytes: t.token_bytes(id),
        token,
        logprob: l.logprob,
        top_logprobs: l
            .top
            .iter()
            .take(k)
            .map(|&(alt, lp)| {
                let token = piece(t, alt);
                TopLogprob {
                    bytes: t.token_bytes(alt),
                    token,
                    logprob: lp,
                }
            })
            .collect(),
    }
}

fn chat_id() -> String {
    completion_id().replacen("cmpl-", "chatcmpl-", 1)
}

/// Chat: the conversation through the model's chat template, the reply as JSON or
/// Server-Sent Events.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "openai", request_body = ChatBody,
    responses(
        (status = 200, description = "A chat completion; with `stream: true`, Server-Sent Events of `chat.completion.chunk`s: per choice a first delta with the role, content deltas, a last one with `finish_reason`; with `stream_options.include_usage` a chunk with `usage` and no choices; then `data: [DONE]`",
            content((ChatCompletion = "application/json"), (String = "text/event-stream"))),
        (status = 400, description = "invalid parameter (`error.param` names it), a model without a chat template, or the template's own refusal (`raise_exception`, its words)"),
        (status = 404, description = "`model` is not the loaded model"),
        (status = 429, description = "rate limited"),
        (status = 503, description = "engine queue full"),
        (status = 504, description = "deadline passed")))]
pub async fn chat_completions(
    State(st): State<AppState>,
    client: Option<Extension<Client>>,
    body: Body,
) -> Result<Response, ApiError> {
    let client = client.map(|Extension(c)| c);
    let b: ChatBody = json_body(&st, body).await?;
    let tokenizer = loaded_tokenizer(&st)?;
    let (p, _, reading) = plan(&b, &st.engine.model_snapshot(), &tokenizer)?;
    let running = start_all(&st, &p)?;
    let (id, created) = (chat_id(), now_secs());
    if p.stream {
        return Ok(stream_chat(
            st,
            client,
            p,
            running,
            tokenizer,
            reading,
            (id, created),
        ));
    }
    let builders = collect_all(&st, client.as_ref(), running).await?;
    let counts: Vec<_> = builders.iter().map(ChoiceBuilder::counts).collect();
    let k = p.logprobs;
    Ok(Json(ChatCompletion {
        id,
        object: "chat.completion",
        created,
        model: p.model,
        usage: usage(&counts, p.n),
        choices: builders
            .iter()
            .map(|b| {
                let (reasoning, content, tool_calls) = reading.whole(&b.text);
                ChatChoice {
                    index: b.index,
                    // (OpenAI's: a call of the function named is a "stop")
                    finish_reason: match &reading.calls {
                        Some(Calls::Named(_)) => b.finish,
                        _ if tool_calls.is_some() => Some("tool_calls"),
                        _ => b.finish,
                    },
                    message: ChatMessage {
                        role: "assistant",
                        content,
                        reasoning_content: reasoning.map(String::from),
                        tool_calls,
                    },
                    logprobs: k.map(|k| ChatLogprobs {
                        content: b
                            .raw
                            .iter()
                            .map(|(id, l)| content_logprob(&tokenizer, *id, l, k))
                            .collect(),
                    }),
                }
            })
            .collect(),
    })
    .into_response())
}

fn chunk_event(id: &str, created: u64, model: &str, choices: Value, usage: Option<Usage>) -> Event {
    let mut c = json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": choices,
    });
    if let Some(u) = usage {
        c["usage"] = serde_json::to_value(u).unwrap_or_default();
    }
    Event::default().data(c.to_string())
}

/// The stream of a chat completion: per choice, the role delta, one content delta per
/// token (with its logprobs when asked), the finish reason; then usage and `[DONE]`.
/// The chat completion chunks: the role first, then content deltas with the chat
/// shape's logprobs, the finish reason last.
struct ChatEvents {
    id: String,
    created: u64,
    model: String,
    tokenizer: Arc<Tokenizer>,
    /// Alternatives per token, when logprobs were asked for.
    logprobs: Option<usize>,
    /// How tool calls come out of the replies. Read out of them: each choice's text is
    /// shown up to where a call starts or may start (bytes shown, by choice), and the
    /// calls come whole in the last chunk; `required`'s calls come whole in the last
    /// chunk; a named function's arguments stream as they come (its first chunk with
    /// the call's id and name: bytes shown 1 once sent).
    tools: Option<Calls>,
    /// Whether the replies are read for reasoning (`Rendered::think`).
    think: Option<bool>,
    /// By choice: the reply's bytes shown as reasoning, and the content's bytes shown
    /// (the content's first chunk shown, for a named function's arguments).
    shown: std::sync::Mutex<std::collections::HashMap<usize, (usize, usize)>>,
}

impl ChatEvents {
    /// The delta of an event whose new text is `text` (and its finish reason): the
    /// reasoning first when the replies are read for it, then the content, with calls
    /// read out when the choice ends.
    fn delta(&self, r: &Running, text: String, last: bool) -> (Value, Option<&'static str>) {
        let finish = r.builder.finish;
        let mut shown = self.shown.lock().unwrap_or_else(|e| e.into_inner());
        let (reasoning, from) = shown.entry(r.builder.index).or_insert((0, 0));
        let Some(opened) = self.think else {
            return self.content_delta(&r.builder.text, text, from, last, finish);
        };
        let full = r.builder.text.as_str();
        let (thought, content) = crate::reasoning::stream(full, opened, reasoning, last);
        let mut delta = match content {
            Some(c) => {
                let content = &full[c..];
                let new = content.get(*from..).unwrap_or("").to_string();
                self.content_delta(content, new, from, last, finish)
            }
            None => (json!({}), finish),
        };
        if !thought.is_empty() {
            delta.0["reasoning_content"] = json!(thought);
        }
        delta
    }

    /// The delta of the content `full` so far, `text` new in it (`from` bytes of it
    /// shown).
    fn content_delta(
        &self,
        full: &str,
        text: String,
        from: &mut usize,
        last: bool,
        finish: Option<&'static str>,
    ) -> (Value, Option<&'static str>) {
        match &self.tools {
            // (text held back while the reply's start might have opened a reasoning
            // comes at the last event)
            None if last && text.is_empty() => (json!({}), finish),
            None => {
                *from = full.len();
                (json!({ "content": text }), finish)
            }
            Some(Calls::Read(format)) => match tool_delta(*format, full, from, last) {
                (delta, true) => (delta, Some("tool_calls")),
                (delta, false) => (delta, finish),
            },
            Some(Calls::Named(name)) => {
                let mut call =
                    json!({"index": 0, "function": {"arguments": if last { "" } else { &text }}});
                if *from == 0 {
                    *from = 1;
                    call["id"] = json!(call_id(0));
                    call["type"] = json!("function");
                    call["function"]["name"] = json!(name);
                } else if last {
                    return (json!({}), finish);
                }
                (json!({ "tool_calls": [call] }), finish)
            }
            Some(Calls::Required) if !last => (json!({}), finish),
            Some(Calls::Required) => match reply(full, self.tools.as_ref()) {
                (_, Some(calls)) => (json!({ "tool_calls": indexed(&calls) }), Some("tool_calls")),
                (content, None) => (json!({ "content": content }), finish),
            },
        }
    }
}

/// Calls as a streamed delta's `tool_calls`: each whole, with its index.
fn indexed(calls: &[ToolCallOut]) -> Vec<Value> {
    calls
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut v = serde_json::to_value(c).unwrap_or_default();
            v["index"] = json!(i);
            v
        })
        .collect()
}

/// A streamed reply now that its text is `full`, `from` bytes of it shown: the text
/// to show next, up to where a tool call starts or may start; at the `last` event the
/// calls read out (with the text before them), or the text held back when it holds
/// none.
pub(super) fn tool_split(
    format: ToolFormat,
    full: &str,
    from: &mut usize,
    last: bool,
) -> (String, Option<Vec<ToolCallOut>>) {
    // (no call starts before the text shown)
    let start = format
        .start_after(full, *from)
        .unwrap_or(full.len())
        .max(*from);
    let shown = *from;
    if !last {
        *from = start;
        return (full.get(shown..start).unwrap_or("").to_string(), None);
    }
    *from = full.len();
    match reply(full, Some(&Calls::Read(format))) {
        (_, Some(calls)) => {
            let before = full.get(shown..start).unwrap_or("");
            let before = if before.trim().is_empty() { "" } else { before };
            (before.to_string(), Some(calls))
        }
        // no calls after all: the text held back
        _ => (full.get(shown..).unwrap_or("").to_string(), None),
    }
}

/// [`tool_split`] as a chat delta: `content` (when there is text, or before the last
/// event), `tool_calls`; and whether there are calls.
fn tool_delta(format: ToolFormat, full: &str, from: &mut usize, last: bool) -> (Value, bool) {
    let (text, calls) = tool_split(format, full, from, last);
    let mut delta = match &calls {
        Some(calls) => json!({ "tool_calls": indexed(calls) }),
        None => json!({}),
    };
    if !last || !text.is_empty() {
        delta["content"] = json!(text);
    }
    (delta, calls.is_some())
}

impl ChoiceEvents for ChatEvents {
    fn opening(&self, r: &mut Running) -> Option<Event> {
        let c = json!([{"index": r.builder.index, "delta": {"role": "assistant", "content": ""},
                        "logprobs": null, "finish_reason": null}]);
        Some(chunk_event(&self.id, self.created, &self.model, c, None))
    }

    fn event(
        &self,
        r: &Running,
        text: String,
        _: Option<Logprobs>,
        raw_from: usize,
        last: bool,
    ) -> Event {
        let logprobs = match self.logprobs {
            Some(k) if r.builder.raw.len() > raw_from => {
                json!({"content": r.builder.raw[raw_from..]
                .iter()
                .map(|(id, l)| content_logprob(&self.tokenizer, *id, l, k))
                .collect::<Vec<_>>()})
            }
            _ => Value::Null,
        };
        let (delta, finish) = self.delta(r, text, last);
        let c = json!([{"index": r.builder.index, "delta": delta, "logprobs": logprobs,
                        "finish_reason": finish}]);
        chunk_event(&self.id, self.created, &self.model, c, None)
    }

    fn usage(&self, u: Usage) -> Event {
        chunk_event(&self.id, self.created, &self.model, json!([]), Some(u))
    }
}

fn stream_chat(
    st: AppState,
    client: Option<Client>,
    p: Plan,
    running: Vec<Running>,
    tokenizer: Arc<Tokenizer>,
    Reading {
        calls: tools,
        think,
    }: Reading,
    (id, created): (String, u64),
) -> Response {
    let draw = Arc::new(ChatEvents {
        id,
        created,
        model: p.model.clone(),
        tokenizer,
        logprobs: p.logprobs,
        tools,
        think,
        shown: Default::default(),
    });
    stream_choices(st, client, running, p.n, p.include_usage, draw)
}

/// `POST /tokenize` (vLLM's shape): a prompt, or chat messages through the template.
#[derive(Debug, Deserialize, ToSchema)]
pub struct VllmTokenizeBody {
    #[serde(default)]
    pub model: Option<String>,
    /// Text to tokenize.
    #[serde(default)]
    pub prompt: Option<String>,
    /// Or a conversation, rendered with the chat template (generation prompt added).
    #[serde(default)]
    #[schema(value_type = Option<Vec<super::types::ChatMessageIn>>, min_items = 1)]
    pub messages: Option<Value>,
    /// Add the tokenizer's special tokens (default true for a prompt; a rendered
    /// conversation holds its own).
    #[serde(default)]
    pub add_special_tokens: Option<bool>,
    /// With `messages`: passed to the template as in a chat completion.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub tools: Option<Value>,
    /// With `messages`: as in a chat completion.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub chat_template_kwargs: Option<Value>,
    /// With `messages`: as in a chat completion (default true, false when the final
    /// message is continued).
    #[serde(default)]
    pub add_generation_prompt: Option<bool>,
    /// With `messages`: as in a chat completion.
    #[serde(default)]
    pub continue_final_message: Option<bool>,
}

/// `POST /detokenize` (vLLM's shape).
#[derive(Debug, Deserialize, ToSchema)]
pub struct VllmDetokenizeBody {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(deserialize_with = "params::int::ids")]
    pub tokens: Vec<u32>,
}

fn loaded(st: &AppState, model: &Option<String>) -> Result<(Arc<Tokenizer>, usize), ApiError> {
    let m = st.engine.model_snapshot();
    check_model(model, &m)?;
    let t = loaded_tokenizer(st)?;
    Ok((t, m.config.map_or(0, |c| c.context_size)))
}

/// Token ids of a prompt or a conversation, with the context length.
#[utoipa::path(post, path = "/tokenize", tag = "openai", request_body = VllmTokenizeBody,
    responses((status = 200, description = "`{\"tokens\": [ids], \"count\", \"max_model_len\"}`"),
        (status = 400, description = "neither or both of prompt and messages; no chat template"),
        (status = 404, description = "MODEL_NOT_FOUND: `model` is not the loaded model")))]
pub async fn vllm_tokenize(
    State(st): State<AppState>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let b: VllmTokenizeBody = json_body(&st, body).await?;
    let (t, context) = loaded(&st, &b.model)?;
    let tokens = match (&b.prompt, &b.messages) {
        (Some(p), None) => {
            if b.add_special_tokens.unwrap_or(true) {
                t.encode(p)?
            } else {
                t.encode_plain(p)?
            }
        }
        (None, Some(m)) => {
            let chat = t
                .chat()
                .ok_or_else(|| bad("messages", "the loaded model has no chat template"))?;
            let (add_generation_prompt, continue_final_message) =
                prompt_end(b.add_generation_prompt, b.continue_final_message)?;
            let text = chat
                .render(
                    &messages_for_template(m)?,
                    &RenderOptions {
                        add_generation_prompt,
                        continue_final_message,
                        tools: b.tools.clone(),
                        extra: template_kwargs(&b.chat_template_kwargs)?,
                    },
                )
                .map_err(|e| ApiError::from(e).param("messages"))?;
            if b.add_special_tokens.unwrap_or(false) {
                t.encode(&text)?
            } else {
                t.encode_plain(&text)?
            }
        }
        _ => return Err(bad("prompt", "give either prompt or messages")),
    };
    Ok(Json(
        json!({"count": tokens.len(), "max_model_len": context, "tokens": tokens}),
    ))
}

/// Text of token ids.
#[utoipa::path(post, path = "/detokenize", tag = "openai", request_body = VllmDetokenizeBody,
    responses((status = 200, description = "`{\"prompt\": text}`"),
        (status = 400, description = "an id outside the vocabulary"),
        (status = 404, description = "MODEL_NOT_FOUND: `model` is not the loaded model")))]
pub async fn vllm_detokenize(
    State(st): State<AppState>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let b: VllmDetokenizeBody = json_body(&st, body).await?;
    let (t, _) = loaded(&st, &b.model)?;
    let v = t.vocab_size();
    if let Some(id) = b.tokens.iter().find(|&&id| id as usize >= v) {
        return Err(bad(
            "tokens",
            format!("token {id} is outside the vocabulary ({v} tokens)"),
        ));
    }
    Ok(Json(json!({ "prompt": t.decode(&b.tokens)? })))
}

/// What the tokenizer is: its special tokens, vocabulary, context, chat template.
#[utoipa::path(get, path = "/tokenizer_info", tag = "openai",
    responses((status = 200, description = "`{\"bos_token\", \"eos_token\", \"vocab_size\", \"max_model_len\", \"chat_template\"}` (null where the model has none)")))]
pub async fn tokenizer_info(State(st): State<AppState>) -> Result<Json<Value>, ApiError> {
    let (t, context) = loaded(&st, &None)?;
    let chat = t.chat();
    Ok(Json(json!({
        "bos_token": chat.map(|c| c.bos_token.clone()).filter(|s| !s.is_empty()),
        "eos_token": chat.map(|c| c.eos_token.clone()).filter(|s| !s.is_empty()),
        "vocab_size": t.vocab_size(),
        "max_model_len": context,
        "chat_template": chat.map(|c| c.source("default")),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply streamed a piece at a time: the content before the call arrives as it
    /// comes, nothing of the call leaks into content, and the last chunk carries the
    /// call whole; a reply without a call arrives whole, the held-back end included.
    #[test]
    fn streamed_replies_hold_back_what_may_be_a_call() {
        let f = ToolFormat::Hermes;
        let run = |pieces: &[&str]| {
            let (mut full, mut from, mut content) = (String::new(), 0, String::new());
            for p in pieces {
                full.push_str(p);
                let (d, calls) = tool_delta(f, &full, &mut from, false);
                assert!(!calls);
                content.push_str(d["content"].as_str().unwrap());
            }
            let (d, calls) = tool_delta(f, &full, &mut from, true);
            content.push_str(d["content"].as_str().unwrap_or(""));
            (content, calls, d)
        };
        let (content, calls, last) = run(&[
            "Checking",
            " now. <",
            "tool_",
            "call>{\"name\": \"get\", ",
            "\"arguments\": {\"q\": 1}}</tool_call>",
        ]);
        assert!(calls);
        assert_eq!(content, "Checking now. ");
        let call = &last["tool_calls"][0];
        assert_eq!(call["function"]["name"], "get");
        assert_eq!(call["function"]["arguments"], r#"{"q":1}"#);
        assert_eq!(call["type"], "function");
        assert!(call["id"].as_str().unwrap().starts_with("call_"));
        // a "<" that turns out not to be a call is shown in the end
        let (content, calls, _) = run(&["a < b", " and <tool", "box>"]);
        assert!(!calls);
        assert_eq!(content, "a < b and <toolbox>");
        // the whole-reply shape agrees
        let (c, t) = reply(
            "Hi <tool_call>{\"name\": \"x\"}</tool_call>",
            Some(&Calls::Read(f)),
        );
        assert_eq!(c.as_deref(), Some("Hi"));
        assert_eq!(t.unwrap()[0].function.arguments, "{}");
        let (_, t) = reply(
            "<tool_call>{\"name\": \"a\"}</tool_call><tool_call>{\"name\": \"b\"}</tool_call>",
            Some(&Calls::Read(f)),
        );
        let t = t.unwrap();
        assert_ne!(t[0].id, t[1].id, "one reply's calls have their own ids");
        let (c, t) = reply("Hi", Some(&Calls::Read(f)));
        assert_eq!((c.as_deref(), t.is_none()), (Some("Hi"), true));
    }
}
