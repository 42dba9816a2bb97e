//! `/v1/responses`: OpenAI's Responses API over the chat path. A request's `input`
//! (a string, or items: messages, function calls, their outputs), after the
//! conversation of `previous_response_id` when given, becomes chat messages
//! (`instructions` first, as a system message) laid out by the model's own template
//! and generated as a chat completion is ([`super::chat`]: tools, forced calls, JSON
//! formats, the same engine path). The reply comes back as output items — a message
//! with `output_text`, function calls read out of it — whole, or streamed as the
//! API's typed events (`response.created` … `response.output_text.delta` …
//! `response.completed`). Responses are kept (`store`, default true) in memory, within
//! `--responses-store-bytes`, oldest first out, each for the API key that made it:
//! `GET` / `DELETE /v1/responses/{id}` and `GET /v1/responses/{id}/input_items`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

use super::chat::{self, Calls, ChatBody, ToolCallOut};
use super::error::ApiError;
use super::guard::{Client, Key};
use super::openai::{
    bad, check_model, collect_all, loaded_tokenizer, now_secs, start_all, usage, ChoiceBuilder,
};
use super::params;
use super::response_store::Stored;
use super::routes::json_body;
use super::state::AppState;
use super::typed::{self, logprobs_from, new_id, Drawing, Shown, Unfolding};
use crate::error::Error;
use crate::tokenizer::Tokenizer;

/// Most `metadata` pairs, and their key and value lengths (OpenAI's bounds).
const MAX_METADATA: usize = 16;
const MAX_METADATA_KEY: usize = 64;
const MAX_METADATA_VALUE: usize = 512;

/// The `include` values OpenAI defines. Only `message.output_text.logprobs` adds
/// anything here; the others name content (hosted tools, images, encrypted reasoning)
/// these replies never have.
const INCLUDABLE: &[&str] = &[
    "message.output_text.logprobs",
    "reasoning.encrypted_content",
    "file_search_call.results",
    "web_search_call.results",
    "web_search_call.action.sources",
    "message.input_image.image_url",
    "computer_call_output.output.image_url",
    "code_interpreter_call.outputs",
];

/// `POST /v1/responses`. Unknown fields are ignored.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ResponsesBody {
    /// Must name the loaded model (`GET /v1/models`); may be omitted.
    #[serde(default)]
    pub model: Option<String>,
    /// A string (one user message) or a list of items: messages `{"role": "user" |
    /// "system" | "developer" | "assistant", "content": a string or `input_text` /
    /// `output_text` parts}`, `{"type": "function_call", "call_id", "name",
    /// "arguments"}`, `{"type": "function_call_output", "call_id", "output"}` and
    /// `{"type": "reasoning", "content": [reasoning_text parts]}` (its text as the
    /// next assistant message's `reasoning_content`; summaries are passed over).
    #[serde(default)]
    #[schema(value_type = super::types::ResponseInput)]
    pub input: Option<Value>,
    /// A system message before the conversation (not carried to responses that
    /// continue this one).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub instructions: Option<Value>,
    /// New tokens (default: the rest of the context, at most 4096).
    #[serde(default, deserialize_with = "params::int::opt_i64")]
    #[schema(minimum = 1, maximum = 4096)]
    pub max_output_tokens: Option<i64>,
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
    /// Extension: same seed, same reply.
    #[serde(default, deserialize_with = "params::int::opt_i64")]
    #[schema(minimum = 0, maximum = 9223372036854775807i64)]
    pub seed: Option<i64>,
    /// Extension: a string or up to 32 strings; the reply ends before the first that
    /// appears.
    #[serde(default)]
    #[schema(value_type = Option<super::types::StopStrings>)]
    pub stop: Option<Value>,
    /// Extensions: `min_p`, `presence_penalty`, `frequency_penalty`,
    /// `repetition_penalty`, `logit_bias`, `min_tokens`, `ignore_eos`, `stop_token_ids`.
    #[serde(flatten)]
    pub controls: params::Controls,
    /// Server-Sent Events: the Responses API's typed events.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Keep the response for `GET /v1/responses/{id}` and `previous_response_id`
    /// (default true; not kept when the server keeps none, `--responses-store-bytes 0`).
    #[serde(default)]
    pub store: Option<bool>,
    /// Continue a stored response: its conversation and its output come before `input`.
    #[serde(default)]
    pub previous_response_id: Option<String>,
    /// Function tools `{"type": "function", "name", "description", "parameters"}`,
    /// passed to the chat template; calls in the reply become `function_call` items.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub tools: Option<Value>,
    /// `"none"`, `"auto"` (default), `"required"` or `{"type": "function", "name"}`
    /// (the reply is that function's arguments, held to its parameters schema).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub tool_choice: Option<Value>,
    /// false: at most one function call (the first) comes out of a reply.
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    /// At most this many function calls come out of a reply.
    #[serde(default, deserialize_with = "params::int::opt_i64")]
    #[schema(minimum = 1)]
    pub max_tool_calls: Option<i64>,
    /// `{"format": {"type": "text"} | {"type": "json_object"} | {"type":
    /// "json_schema", "name", "schema", "strict"}}`: JSON formats hold the reply to
    /// the grammar, as a chat completion's `response_format` does.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub text: Option<Value>,
    /// Up to 16 string pairs kept with the response (keys ≤ 64, values ≤ 512 chars).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    /// `"disabled"` (default: a conversation longer than the context is a 400) or
    /// `"auto"` (the earliest turns are dropped until it fits).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub truncation: Option<Value>,
    /// `["message.output_text.logprobs"]`: each output token's logprob (with
    /// `top_logprobs` alternatives); OpenAI's other values are accepted and add
    /// nothing.
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    pub include: Option<Value>,
    /// 0..=20 alternatives per output token (logprobs are then reported).
    #[serde(default, deserialize_with = "params::int::opt_i64")]
    #[schema(minimum = 0, maximum = 20)]
    pub top_logprobs: Option<i64>,
    /// vLLM's: further chat template variables, as in a chat completion.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub chat_template_kwargs: Option<Value>,
    /// Echoed; `effort` `"none"` sets the template's switch `enable_thinking` (Qwen3's)
    /// off and any other effort on, unless `chat_template_kwargs` sets it. A thinking
    /// model's reasoning comes as a `reasoning` item.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub reasoning: Option<Value>,
    /// Only false: responses run while the request waits (or streams).
    #[serde(default)]
    pub background: Option<bool>,
    /// Not served (use `previous_response_id`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub conversation: Option<Value>,
    /// Not served (prompt templates are OpenAI's).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub prompt: Option<Value>,
    /// Accepted and echoed.
    #[serde(default)]
    pub user: Option<String>,
}

fn not_found(what: &str, id: &str, param: Option<&str>) -> ApiError {
    let e = ApiError::new(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        format!("no {what} with id {id:?} is stored here (responses are kept in memory, per API key, while --responses-store-bytes has room; a restart forgets them)"),
    );
    match param {
        Some(p) => e.param(p),
        None => e,
    }
}

/// Text given as a string or as text parts.
fn text_of(param: &str, v: &Value) -> Result<Vec<String>, ApiError> {
    chat::texts(param, v, &["input_text", "output_text", "text"], &[])
}

/// A message item as kept and listed.
fn message_item(id: String, role: &str, texts: Vec<String>) -> Value {
    let kind = if role == "assistant" {
        "output_text"
    } else {
        "input_text"
    };
    let content: Vec<Value> = texts
        .into_iter()
        .map(|t| {
            if kind == "output_text" {
                json!({"type": kind, "text": t, "annotations": []})
            } else {
                json!({"type": kind, "text": t})
            }
        })
        .collect();
    json!({"type": "message", "id": id, "role": role, "content": content, "status": "completed"})
}

/// The items of `input` as kept (each with its type and id): a string is one user
/// message; a list's messages, function calls, their outputs and reasoning items with
/// text are checked and given ids (reasoning without text is passed over).
fn input_items(input: &Value) -> Result<Vec<Value>, ApiError> {
    const FIELD: &str = "input";
    let list = match input {
        Value::String(s) => return Ok(vec![message_item(new_id("msg"), "user", vec![s.clone()])]),
        Value::Array(list) if !list.is_empty() => list,
        Value::Array(_) => return Err(bad(FIELD, "input must not be empty")),
        _ => return Err(bad(FIELD, "input must be a string or an array of items")),
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let at = format!("input[{i}]");
        let obj = item
            .as_object()
            .ok_or_else(|| bad(&at, format!("{at} must be an object")))?;
        let str_field = |name: &str| -> Result<String, ApiError> {
            obj.get(name)
                .and_then(Value::as_str)
                .map(String::from)
                .ok_or_else(|| bad(&at, format!("{at}.{name} must be a string")))
        };
        let id = |prefix: &str| {
            obj.get("id")
                .and_then(Value::as_str)
                .map_or_else(|| new_id(prefix), String::from)
        };
        let kind = match obj.get("type").and_then(Value::as_str) {
            Some(t) => t,
            None if obj.contains_key("role") => "message",
            None => return Err(bad(&at, format!("{at} has no type"))),
        };
        match kind {
            "message" => {
                let role = obj.get("role").and_then(Value::as_str).unwrap_or("");
                if !["user", "system", "developer", "assistant"].contains(&role) {
                    return Err(bad(
                        &at,
                        format!("{at}.role {role:?} is not one of user, system, developer, assistant"),
                    ));
                }
                let texts = text_of(
                    &format!("{at}.content"),
                    obj.get("content").unwrap_or(&Value::Null),
                )?;
                out.push(message_item(id("msg"), role, texts));
            }
            "function_call" => {
                let arguments = match obj.get("arguments") {
                    Some(Value::String(s)) => s.clone(),
                    Some(v @ Value::Object(_)) => v.to_string(),
                    None | Some(Value::Null) => "{}".into(),
                    Some(_) => {
                        return Err(bad(
                            &at,
                            format!("{at}.arguments must be a JSON text"),
                        ))
                    }
                };
                out.push(json!({"type": "function_call", "id": id("fc"),
                    "call_id": str_field("call_id")?, "name": str_field("name")?,
                    "arguments": arguments, "status": "completed"}));
            }
            "function_call_output" => {
                let output = text_of(
                    &format!("{at}.output"),
                    obj.get("output").unwrap_or(&Value::Null),
                )?
                .join("\n");
                out.push(json!({"type": "function_call_output", "id": id("fco"),
                    "call_id": str_field("call_id")?, "output": output, "status": "completed"}));
            }
            // a reasoning model's notes: their text reaches the template as the next
            // assistant message's reasoning_content (summaries and encrypted content,
            // another server's, are passed over)
            "reasoning" => {
                let parts: Vec<Value> = obj
                    .get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|p| p["type"] == "reasoning_text" && p["text"].is_string())
                    .map(|p| json!({"type": "reasoning_text", "text": p["text"]}))
                    .collect();
                if !parts.is_empty() {
                    out.push(json!({"type": "reasoning", "id": id("rs"), "summary": [],
                        "content": parts, "status": "completed"}));
                }
            }
            other => {
                return Err(bad(
                    &at,
                    format!("{at} has type {other:?}: message, function_call and function_call_output items are served (item_reference is not: send the item, or previous_response_id)"),
                ))
            }
        }
    }
    Ok(out)
}

/// The text of a kept message item: its parts joined by line breaks.
fn item_text(item: &Value) -> String {
    item["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["text"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The chat messages of a conversation: `instructions` as a system message first;
/// `developer` as `system`; function calls as the assistant's `tool_calls` (on the
/// assistant message before them, or one of their own); their outputs as `tool`
/// messages with the call's id and function name; a reasoning item's text as the
/// `reasoning_content` of the assistant message after it. An assistant message without
/// text is left out.
fn chat_messages(instructions: Option<&str>, items: &[Arc<Value>]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::with_capacity(items.len() + 1);
    if let Some(i) = instructions {
        out.push(json!({"role": "system", "content": i}));
    }
    let mut names: HashMap<&str, &str> = HashMap::new();
    // the reasoning of the assistant message to come
    let mut thought: Option<String> = None;
    let with_thought = |mut msg: Value, thought: &mut Option<String>| {
        if let Some(t) = thought.take() {
            msg["reasoning_content"] = json!(t);
        }
        msg
    };
    for item in items {
        match item["type"].as_str() {
            Some("message") => {
                let role = match item["role"].as_str() {
                    Some("developer") => "system",
                    Some(r) => r,
                    None => continue,
                };
                let text = item_text(item);
                if role == "assistant" && text.is_empty() {
                    continue;
                }
                let msg = json!({"role": role, "content": text});
                out.push(match role {
                    "assistant" => with_thought(msg, &mut thought),
                    _ => {
                        thought = None;
                        msg
                    }
                });
            }
            Some("reasoning") => {
                let parts = item["content"].as_array().into_iter().flatten();
                let text: String = parts
                    .filter(|p| p["type"] == "reasoning_text")
                    .filter_map(|p| p["text"].as_str())
                    .collect();
                if !text.is_empty() {
                    thought = Some(text);
                }
            }
            Some("function_call") => {
                let (call_id, name) = (
                    item["call_id"].as_str().unwrap_or(""),
                    item["name"].as_str().unwrap_or(""),
                );
                names.insert(call_id, name);
                let call = json!({"id": call_id, "type": "function",
                    "function": {"name": name, "arguments": item["arguments"]}});
                match out.last_mut() {
                    Some(last) if last["role"] == "assistant" => {
                        match last.get_mut("tool_calls").and_then(Value::as_array_mut) {
                            Some(calls) => calls.push(call),
                            None => last["tool_calls"] = json!([call]),
                        }
                    }
                    // (content "", not null: templates that know no tools add content
                    // to strings; those that know them look at tool_calls first)
                    _ => {
                        let msg = json!({"role": "assistant", "content": "", "tool_calls": [call]});
                        out.push(with_thought(msg, &mut thought))
                    }
                }
            }
            Some("function_call_output") => {
                let call_id = item["call_id"].as_str().unwrap_or("");
                let mut msg = json!({"role": "tool", "tool_call_id": call_id,
                    "content": item["output"]});
                if let Some(name) = names.get(call_id) {
                    msg["name"] = json!(name);
                }
                out.push(msg);
            }
            _ => {}
        }
    }
    out
}

/// Function tools in the chat shape (`{"type": "function", "function": {...}}`); the
/// chat shape itself is taken as it is.
fn chat_tools(tools: &Value) -> Result<Value, ApiError> {
    let list = tools
        .as_array()
        .ok_or_else(|| bad("tools", "tools must be an array of function tools"))?;
    let mut out = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        let at = format!("tools[{i}]");
        match t.get("type").and_then(Value::as_str) {
            Some("function") if t.get("function").is_some() => out.push(t.clone()),
            Some("function") => {
                let name = t.get("name").and_then(Value::as_str).ok_or_else(|| {
                    bad(&at, format!("{at} needs a name: {{\"type\": \"function\", \"name\": ..., \"parameters\": {{...}}}}"))
                })?;
                let mut f = json!({"name": name});
                for k in ["description", "parameters", "strict"] {
                    if let Some(v) = t.get(k).filter(|v| !v.is_null()) {
                        f[k] = v.clone();
                    }
                }
                out.push(json!({"type": "function", "function": f}));
            }
            other => {
                return Err(bad(
                    &at,
                    format!("{at} has type {}: only function tools are served (OpenAI's hosted tools — web search, file search, code interpreter … — are not)", other.map_or("none".into(), |o| format!("{o:?}"))),
                ))
            }
        }
    }
    Ok(Value::Array(out))
}

/// `tool_choice` in the chat shape.
fn chat_tool_choice(choice: &Option<Value>) -> Result<Option<Value>, ApiError> {
    match choice {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if ["none", "auto", "required"].contains(&s.as_str()) => {
            Ok(choice.clone())
        }
        Some(c) if c.get("type").and_then(Value::as_str) == Some("function") => {
            let name = c
                .get("name")
                .or_else(|| c.pointer("/function/name"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    bad(
                        "tool_choice",
                        "tool_choice {\"type\": \"function\"} needs the function's name",
                    )
                })?;
            Ok(Some(json!({"type": "function", "function": {"name": name}})))
        }
        Some(_) => Err(bad(
            "tool_choice",
            "tool_choice must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"name\": ...}",
        )),
    }
}

/// `text.format` as a chat completion's `response_format`, and the `text` to echo.
fn chat_format(text: &Option<Value>) -> Result<(Option<Value>, Value), ApiError> {
    const FIELD: &str = "text.format";
    let format = match text {
        None | Some(Value::Null) => None,
        Some(Value::Object(t)) => t.get("format").filter(|f| !f.is_null()).cloned(),
        Some(_) => return Err(bad("text", "text must be an object: {\"format\": {...}}")),
    };
    let Some(f) = format else {
        return Ok((None, json!({"format": {"type": "text"}})));
    };
    let chat = match f.get("type").and_then(Value::as_str) {
        Some("text") => None,
        Some("json_object") => Some(json!({"type": "json_object"})),
        Some("json_schema") => {
            let schema = f.get("schema").filter(|s| !s.is_null()).ok_or_else(|| {
                bad(
                    FIELD,
                    "text.format json_schema needs a schema: {\"type\": \"json_schema\", \"name\": ..., \"schema\": {...}}",
                )
            })?;
            Some(json!({"type": "json_schema", "json_schema": {
                "name": f.get("name").cloned().unwrap_or(json!("response")),
                "schema": schema, "strict": f.get("strict").cloned().unwrap_or(Value::Null)}}))
        }
        _ => {
            return Err(bad(
                FIELD,
                "text.format must be {\"type\": \"text\"}, {\"type\": \"json_object\"} or {\"type\": \"json_schema\", \"name\", \"schema\"}",
            ))
        }
    };
    Ok((chat, json!({ "format": f })))
}

/// `metadata`: up to 16 string pairs.
fn metadata(v: &Option<Value>) -> Result<Value, ApiError> {
    const FIELD: &str = "metadata";
    let m = match v {
        None | Some(Value::Null) => return Ok(json!({})),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(bad(FIELD, "metadata must be an object of strings")),
    };
    if m.len() > MAX_METADATA {
        return Err(bad(
            FIELD,
            format!("metadata has {} keys: at most {MAX_METADATA}", m.len()),
        ));
    }
    for (k, v) in m {
        if k.chars().count() > MAX_METADATA_KEY {
            return Err(bad(
                FIELD,
                format!("metadata key {k:?} is over {MAX_METADATA_KEY} characters"),
            ));
        }
        match v.as_str() {
            Some(s) if s.chars().count() <= MAX_METADATA_VALUE => {}
            Some(_) => {
                return Err(bad(
                    FIELD,
                    format!("metadata[{k:?}] is over {MAX_METADATA_VALUE} characters"),
                ))
            }
            None => return Err(bad(FIELD, format!("metadata[{k:?}] must be a string"))),
        }
    }
    Ok(Value::Object(m.clone()))
}

/// Chat's field names and the Responses API's.
const NAMES: &[(&str, &str)] = &[
    ("max_completion_tokens", "max_output_tokens"),
    ("max_tokens", "max_output_tokens"),
    ("response_format", "text.format"),
    ("messages", "input"),
];

/// A chat error as the Responses API names its fields.
fn renamed(e: ApiError) -> ApiError {
    chat::renamed(e, NAMES)
}

/// What a request asked for besides its conversation: what is echoed in the
/// response object, and how the reply's items are made.
struct Asked {
    model: String,
    store: bool,
    owner: Option<usize>,
    logprobs: Option<usize>,
    calls: Option<Calls>,
    /// Whether the reply is read for reasoning (`chat::Rendered::think`).
    think: Option<bool>,
    /// Most function calls a reply gives.
    max_calls: usize,
    echo: Value,
}

impl Asked {
    /// How the reply is read.
    fn reading(&self) -> chat::Reading {
        chat::Reading {
            calls: self.calls.clone(),
            think: self.think,
        }
    }

    /// The response object before its output: status `in_progress`.
    fn response(&self, id: &str, created: u64) -> Value {
        let mut r = json!({"id": id, "object": "response", "created_at": created,
            "status": "in_progress", "background": false, "error": null,
            "incomplete_details": null, "model": self.model, "output": [], "usage": null,
            "store": self.store});
        if let (Value::Object(r), Value::Object(echo)) = (&mut r, &self.echo) {
            r.extend(echo.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        r
    }
}

/// A request taken apart: the chat request it becomes, the conversation, what it
/// asked for.
struct Taken {
    chat: ChatBody,
    /// The conversation: the continued response's, then this request's `own` items.
    context: Vec<Arc<Value>>,
    own: usize,
    instructions: Option<String>,
    truncate: bool,
    asked: Asked,
}

fn take(b: ResponsesBody, st: &AppState, owner: Option<usize>) -> Result<Taken, ApiError> {
    if b.background == Some(true) {
        return Err(bad(
            "background",
            "background responses are not served: the response runs while the request waits, or streams (stream: true)",
        ));
    }
    if b.conversation.as_ref().is_some_and(|c| !c.is_null()) {
        return Err(bad(
            "conversation",
            "conversations are not served: continue a stored response with previous_response_id",
        ));
    }
    if b.prompt.as_ref().is_some_and(|p| !p.is_null()) {
        return Err(bad(
            "prompt",
            "prompt templates are OpenAI's: send the input itself",
        ));
    }
    let instructions = match &b.instructions {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(bad("instructions", "instructions must be a string")),
    };
    let truncate = match &b.truncation {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) if s == "disabled" => false,
        Some(Value::String(s)) if s == "auto" => true,
        Some(_) => {
            return Err(bad(
                "truncation",
                "truncation must be \"auto\" or \"disabled\"",
            ))
        }
    };
    let include: Vec<String> = match &b.include {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| match v.as_str() {
                Some(s) if INCLUDABLE.contains(&s) => Ok(s.to_string()),
                _ => Err(bad(
                    "include",
                    format!("include takes {}: not {v}", INCLUDABLE.join(", ")),
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad("include", "include must be an array of strings")),
    };
    let logprobs = match (
        include.iter().any(|i| i == "message.output_text.logprobs"),
        b.top_logprobs,
    ) {
        (false, None) => None,
        (_, k) => {
            let k = k.unwrap_or(0);
            if !(0..=chat::MAX_TOP_LOGPROBS).contains(&k) {
                return Err(bad(
                    "top_logprobs",
                    format!(
                        "top_logprobs ({k}) must be between 0 and {}",
                        chat::MAX_TOP_LOGPROBS
                    ),
                ));
            }
            Some(k as usize)
        }
    };
    let max_calls = match b.max_tool_calls {
        None => usize::MAX,
        Some(n) if n >= 1 => n as usize,
        Some(n) => {
            return Err(bad(
                "max_tool_calls",
                format!("max_tool_calls ({n}) must be at least 1"),
            ))
        }
    };
    let parallel = b.parallel_tool_calls.unwrap_or(true);
    let max_calls = if parallel { max_calls } else { 1 };
    let metadata = metadata(&b.metadata)?;
    let (response_format, text_echo) = chat_format(&b.text)?;
    let tools = b
        .tools
        .as_ref()
        .filter(|t| !t.is_null())
        .map(chat_tools)
        .transpose()?;
    let tool_choice = chat_tool_choice(&b.tool_choice)?;
    // the conversation: the stored one continued, then the new items
    let mut context = match &b.previous_response_id {
        Some(id) => st
            .responses
            .get(id, owner)
            .ok_or_else(|| not_found("response", id, Some("previous_response_id")))?
            .continued(),
        None => Vec::new(),
    };
    let input = b
        .input
        .as_ref()
        .filter(|i| !i.is_null())
        .ok_or_else(|| bad("input", "input is required: a string or an array of items"))?;
    let own = input_items(input)?;
    let own_count = own.len();
    context.extend(own.into_iter().map(Arc::new));
    let m = st.engine.model_snapshot();
    let asked = Asked {
        model: m.model_id.clone(),
        store: b.store.unwrap_or(true) && st.responses.enabled(),
        owner,
        logprobs,
        calls: None,
        think: None,
        max_calls,
        echo: json!({
            "instructions": instructions,
            "max_output_tokens": b.max_output_tokens,
            "max_tool_calls": b.max_tool_calls,
            "metadata": metadata,
            "parallel_tool_calls": parallel,
            "previous_response_id": b.previous_response_id,
            "reasoning": b.reasoning.clone().filter(|r| !r.is_null())
                .unwrap_or(json!({"effort": null, "summary": null})),
            "temperature": b.temperature.unwrap_or(1.0),
            "text": text_echo,
            "tool_choice": b.tool_choice.clone().filter(|c| !c.is_null()).unwrap_or(json!("auto")),
            "tools": b.tools.clone().filter(|t| !t.is_null()).unwrap_or(json!([])),
            "top_logprobs": b.top_logprobs,
            "top_p": b.top_p.unwrap_or(1.0),
            "truncation": if truncate { "auto" } else { "disabled" },
            "user": b.user,
        }),
    };
    let chat = ChatBody {
        model: b.model,
        messages: Value::Null,
        max_tokens: None,
        max_completion_tokens: b.max_output_tokens,
        temperature: b.temperature,
        top_p: b.top_p,
        top_k: b.top_k,
        n: None,
        stop: b.stop,
        seed: b.seed,
        controls: b.controls,
        guided: params::Guided::default(),
        logprobs: Some(logprobs.is_some()),
        top_logprobs: logprobs.map(|k| k as i64),
        add_generation_prompt: None,
        continue_final_message: None,
        // `reasoning.effort`: "none" turns the template's switch off (Qwen3's
        // enable_thinking), any other effort on
        chat_template_kwargs: chat::with_thinking(
            b.chat_template_kwargs,
            match b
                .reasoning
                .as_ref()
                .and_then(|r| r.get("effort"))
                .and_then(Value::as_str)
            {
                Some("none") => Some(false),
                Some(_) => Some(true),
                None => None,
            },
        ),
        stream: b.stream,
        stream_options: None,
        tools,
        tool_choice,
        response_format,
        user: None,
    };
    Ok(Taken {
        chat,
        context,
        own: own_count,
        instructions,
        truncate,
        asked,
    })
}

/// The conversation rendered and planned.
fn plan(
    t: &mut Taken,
    st: &AppState,
    tokenizer: &Tokenizer,
) -> Result<super::openai::Plan, ApiError> {
    let m = st.engine.model_snapshot();
    let rendered = render(t, &m, tokenizer)?;
    let (p, _, reading) = chat::plan_rendered(&t.chat, &m, rendered).map_err(renamed)?;
    (t.asked.calls, t.asked.think) = (reading.calls, reading.think);
    Ok(p)
}

/// The conversation rendered with the model's template and tokenized, its earliest
/// turns dropped while it does not fit with `truncation: auto` (whole turns, up to the
/// next user message; the dropped items leave `t.context`).
fn render(
    t: &mut Taken,
    m: &crate::engine::ModelSnapshot,
    tokenizer: &Tokenizer,
) -> Result<chat::Rendered, ApiError> {
    check_model(&t.chat.model, m)?;
    let context = m.config.as_ref().map_or(0, |c| c.context_size);
    let need = t.chat.max_completion_tokens.unwrap_or(1).max(1) as usize;
    let mut from = 0;
    let rendered = loop {
        t.chat.messages =
            Value::Array(chat_messages(t.instructions.as_deref(), &t.context[from..]));
        let r = chat::render(&t.chat, tokenizer).map_err(renamed)?;
        if !t.truncate || r.ids.len() + need <= context {
            break r;
        }
        let is_user = |i: &Arc<Value>| i["type"] == "message" && i["role"] == "user";
        match t.context[from + 1..].iter().position(is_user) {
            Some(k) => from += 1 + k,
            None => break r,
        }
    };
    t.context.drain(..from);
    Ok(rendered)
}

/// A function call's output item.
fn call_item(id: &str, call: &ToolCallOut, status: &str) -> Value {
    json!({"type": "function_call", "id": id, "call_id": call.id,
        "name": call.function.name, "arguments": call.function.arguments, "status": status})
}

/// The `output_text` part of a message.
fn text_part(text: &str, logprobs: &[Value]) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs})
}

/// The reply's message item.
fn reply_message(id: &str, text: &str, logprobs: &[Value], status: &str) -> Value {
    json!({"type": "message", "id": id, "role": "assistant", "status": status,
        "content": [text_part(text, logprobs)]})
}

/// `status` and `incomplete_details` of a reply that ended with `finish`.
fn ending(finish: Option<&str>) -> (&'static str, Value) {
    if finish == Some("length") {
        ("incomplete", json!({"reason": "max_output_tokens"}))
    } else {
        ("completed", Value::Null)
    }
}

/// The Responses API's usage of a reply.
fn response_usage(b: &ChoiceBuilder) -> Value {
    let u = usage(&[b.counts()], 1);
    json!({"input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": u.prompt_tokens_details.cached_tokens},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": u.total_tokens})
}

/// The finished response: its output, status and usage; kept when asked.
fn finish(
    st: &AppState,
    asked: &Asked,
    mut response: Value,
    output: Vec<Value>,
    b: &ChoiceBuilder,
    (context, own): (Vec<Arc<Value>>, usize),
) -> Value {
    let (status, incomplete) = ending(b.finish);
    response["status"] = json!(status);
    response["incomplete_details"] = incomplete;
    response["output"] = Value::Array(output);
    response["usage"] = response_usage(b);
    if asked.store {
        let id = response["id"].as_str().unwrap_or_default().to_string();
        // this response's own items (its input, the tail of its context; its output)
        // and a pointer for each earlier one
        let own: usize = context
            .iter()
            .rev()
            .take(own)
            .map(|i| i.to_string().len())
            .sum();
        let bytes = own + response.to_string().len() + 16 * context.len();
        st.responses.put(
            id,
            Stored {
                response: response.clone(),
                context,
                owner: asked.owner,
                bytes,
            },
        );
    }
    response
}

/// A reasoning item: what the model wrote between `<think>` and `</think>`, as one
/// `reasoning_text` part (the Responses API's shape for open models' reasoning).
fn reasoning_item(id: &str, text: &str, status: &str) -> Value {
    json!({"type": "reasoning", "id": id, "summary": [],
        "content": [{"type": "reasoning_text", "text": text}], "status": status})
}

/// A whole reply's output items: its reasoning (when read for it and it has some), its
/// message (when it has text, or nothing else), then its function calls.
fn output_items(asked: &Asked, b: &ChoiceBuilder, tokenizer: &Tokenizer) -> Vec<Value> {
    let (reasoning, content, calls) = asked.reading().whole(&b.text);
    let calls = calls.unwrap_or_default();
    let (status, _) = ending(b.finish);
    let mut items = Vec::with_capacity(2 + calls.len());
    let text = content.unwrap_or_default();
    if let Some(r) = reasoning.filter(|r| !r.trim().is_empty()) {
        let done = !text.is_empty() || !calls.is_empty();
        items.push(reasoning_item(
            &new_id("rs"),
            r,
            if done { "completed" } else { status },
        ));
    }
    // a reply with nothing else is an (empty) message
    if !text.is_empty() || (calls.is_empty() && items.is_empty()) {
        // (the tokens' logprobs are the text's only in a reply without reasoning)
        let lp = if calls.is_empty() && reasoning.is_none() {
            logprobs_from(b, tokenizer, asked.logprobs, 0)
        } else {
            Vec::new()
        };
        items.push(reply_message(&new_id("msg"), &text, &lp, status));
    }
    let call_status = match asked.calls {
        Some(Calls::Named(_)) => status,
        _ => "completed",
    };
    for c in calls.iter().take(asked.max_calls) {
        items.push(call_item(&new_id("fc"), c, call_status));
    }
    items
}

/// Create a model response: the conversation through the model's chat template, the
/// reply as output items, whole or streamed.
#[utoipa::path(post, path = "/v1/responses", tag = "openai", request_body = ResponsesBody,
    responses(
        (status = 200, description = "A response object (`output`: a `message` with `output_text`, `function_call` items; `status` `completed` or `incomplete` with `incomplete_details.reason` `max_output_tokens`); with `stream: true`, Server-Sent Events named by their `type`, each with a `sequence_number`: `response.created`, `response.in_progress`, `response.output_item.added`, `response.content_part.added`, `response.output_text.delta` …, `response.output_text.done`, `response.content_part.done`, `response.output_item.done` (function calls: `response.function_call_arguments.delta` / `.done`), then `response.completed` or `response.incomplete` (an error: `error`, then `response.failed`)",
            content((Object = "application/json"), (String = "text/event-stream"))),
        (status = 400, description = "invalid parameter (`error.param` names it), a model without a chat template, the template's own refusal, a conversation longer than the context with `truncation` `disabled`"),
        (status = 404, description = "`model` is not the loaded model, or `previous_response_id` is not stored"),
        (status = 429, description = "rate limited"),
        (status = 503, description = "engine queue full"),
        (status = 504, description = "deadline passed")))]
pub async fn create(
    State(st): State<AppState>,
    client: Option<Extension<Client>>,
    key: Option<Extension<Key>>,
    body: Body,
) -> Result<Response, ApiError> {
    let client = client.map(|Extension(c)| c);
    let owner = key.map(|Extension(k)| k.0);
    let b: ResponsesBody = json_body(&st, body).await?;
    let tokenizer = loaded_tokenizer(&st)?;
    let mut t = take(b, &st, owner)?;
    let p = plan(&mut t, &st, &tokenizer)?;
    let running = start_all(&st, &p)?;
    let (id, created) = (new_id("resp"), now_secs());
    let response = t.asked.response(&id, created);
    if p.stream {
        let r = running.into_iter().next().ok_or_else(|| {
            ApiError::from(Error::Unavailable(
                "the engine started no generation".into(),
            ))
        })?;
        let draw = Draw {
            st: st.clone(),
            reply: Unfolding::new(t.asked.reading(), tokenizer, t.asked.logprobs),
            asked: t.asked,
            response,
            kept: (t.context, t.own),
            seq: 0,
            items: Vec::new(),
            message: None,
            thinking: None,
            held: String::new(),
            call: None,
            sent: Vec::new(),
        };
        return Ok(typed::stream(st, client, r, draw));
    }
    let b = collect_all(&st, client.as_ref(), running)
        .await?
        .pop()
        .ok_or_else(|| ApiError::from(Error::Unavailable("the engine stopped".into())))?;
    let output = output_items(&t.asked, &b, &tokenizer);
    let kept = (t.context, t.own);
    Ok(Json(finish(&st, &t.asked, response, output, &b, kept)).into_response())
}

/// A streamed response's state: the events' numbering, the items finished, the
/// message and the named call being streamed.
struct Draw {
    st: AppState,
    asked: Asked,
    response: Value,
    /// The conversation to keep with the response, and how many of its items are
    /// the request's own.
    kept: (Vec<Arc<Value>>, usize),
    reply: Unfolding,
    seq: u64,
    items: Vec<Value>,
    /// The message being streamed: its id, output index and text so far.
    message: Option<(String, usize, String)>,
    /// The reasoning item being streamed: its id, output index and text so far.
    thinking: Option<(String, usize, String)>,
    /// Whitespace the reasoning started with, held until more comes (a reasoning of
    /// only whitespace makes no item, as in a whole response).
    held: String,
    /// The named function's call being streamed: its item id and call id.
    call: Option<(String, String)>,
    /// Every logprob sent with the message.
    sent: Vec<Value>,
}

impl Draw {
    fn event(&mut self, kind: &str, mut data: Value) -> Event {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.seq);
        self.seq += 1;
        Event::default().event(kind).data(data.to_string())
    }

    /// Text for the message (opened at its first text), with its tokens' logprobs.
    fn show(&mut self, text: &str, lp: Vec<Value>, out: &mut Vec<Event>) {
        self.sent.extend(lp.iter().cloned());
        if text.is_empty() {
            return;
        }
        let (id, index) = self.open_message(out);
        if let Some(m) = &mut self.message {
            m.2.push_str(text);
        }
        out.push(self.event(
            "response.output_text.delta",
            json!({"item_id": id, "output_index": index, "content_index": 0,
                "delta": text, "logprobs": lp}),
        ));
    }

    /// Reasoning for the reasoning item (opened at its first reasoning that is not
    /// only whitespace).
    fn think(&mut self, text: &str, out: &mut Vec<Event>) {
        if self.thinking.is_none() {
            if text.trim().is_empty() {
                self.held.push_str(text);
                return;
            }
            let item = json!({"type": "reasoning", "summary": []});
            let part = json!({"type": "reasoning_text", "text": ""});
            let (id, index) = self.open_item("rs", item, part, out);
            self.thinking = Some((id, index, String::new()));
        }
        let delta = std::mem::take(&mut self.held) + text;
        let Some((id, index, all)) = &mut self.thinking else {
            return;
        };
        all.push_str(&delta);
        let data = json!({"item_id": id, "output_index": index, "content_index": 0,
            "delta": delta});
        out.push(self.event("response.reasoning_text.delta", data));
    }

    /// Close the reasoning item, if one is open.
    fn thought(&mut self, status: &str, out: &mut Vec<Event>) {
        let Some((id, index, text)) = self.thinking.take() else {
            return;
        };
        out.push(self.event(
            "response.reasoning_text.done",
            json!({"item_id": id, "output_index": index, "content_index": 0, "text": text}),
        ));
        let part = json!({"type": "reasoning_text", "text": text});
        let item = reasoning_item(&id, &text, status);
        self.close_item((&id, index), part, item, out);
    }

    /// Open an output item of one content part (`item` without its id and status):
    /// `response.output_item.added`, `response.content_part.added`.
    fn open_item(
        &mut self,
        prefix: &str,
        mut item: Value,
        part: Value,
        out: &mut Vec<Event>,
    ) -> (String, usize) {
        let (id, index) = (new_id(prefix), self.items.len());
        item["id"] = json!(id);
        item["status"] = json!("in_progress");
        item["content"] = json!([]);
        out.push(self.event(
            "response.output_item.added",
            json!({"output_index": index, "item": item}),
        ));
        out.push(self.event(
            "response.content_part.added",
            json!({"item_id": id, "output_index": index, "content_index": 0, "part": part}),
        ));
        (id, index)
    }

    /// Close it with its last `part` and whole `item`: `response.content_part.done`,
    /// `response.output_item.done`.
    fn close_item(
        &mut self,
        (id, index): (&str, usize),
        part: Value,
        item: Value,
        out: &mut Vec<Event>,
    ) {
        out.push(self.event(
            "response.content_part.done",
            json!({"item_id": id, "output_index": index, "content_index": 0, "part": part}),
        ));
        out.push(self.event(
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        ));
        self.items.push(item);
    }

    fn open_message(&mut self, out: &mut Vec<Event>) -> (String, usize) {
        if let Some((id, index, _)) = &self.message {
            return (id.clone(), *index);
        }
        // the reasoning comes before the answer
        self.thought("completed", out);
        let item = json!({"type": "message", "role": "assistant"});
        let (id, index) = self.open_item("msg", item, text_part("", &[]), out);
        self.message = Some((id.clone(), index, String::new()));
        (id, index)
    }
}

impl Drawing for Draw {
    /// Created, in progress, and a named call's item.
    fn opening(&mut self) -> Vec<Event> {
        let r = self.response.clone();
        let mut out = vec![
            self.event("response.created", json!({ "response": r })),
            self.event("response.in_progress", json!({ "response": r })),
        ];
        if let Some(name) = self.reply.named().map(String::from) {
            let (id, call_id) = (new_id("fc"), chat::call_id(0));
            let item = json!({"type": "function_call", "id": id, "call_id": call_id,
                "name": name, "arguments": "", "status": "in_progress"});
            out.push(self.event(
                "response.output_item.added",
                json!({"output_index": 0, "item": item}),
            ));
            self.call = Some((id, call_id));
        }
        out
    }

    fn step(&mut self, b: &ChoiceBuilder, text: String, raw_from: usize) -> Vec<Event> {
        let mut out = Vec::new();
        for shown in self.reply.step(b, text, raw_from) {
            match shown {
                Shown::Reasoning(r) => self.think(&r, &mut out),
                Shown::Text(t, lp) => self.show(&t, lp, &mut out),
                Shown::Arguments(a) => {
                    if let Some((id, _)) = self.call.clone() {
                        out.push(self.event(
                            "response.function_call_arguments.delta",
                            json!({"item_id": id, "output_index": 0, "delta": a}),
                        ));
                    }
                }
            }
        }
        out
    }

    /// The rest of the text, the message closed, the calls read out, the response
    /// completed (or incomplete).
    fn closing(&mut self, b: &ChoiceBuilder, raw_from: usize) -> Vec<Event> {
        let mut out = Vec::new();
        let (status, _) = ending(b.finish);
        if let (Some(name), Some((id, call_id))) =
            (self.reply.named().map(String::from), self.call.take())
        {
            out.push(self.event(
                "response.function_call_arguments.done",
                json!({"item_id": id, "output_index": 0, "name": name, "arguments": b.text}),
            ));
            let item = json!({"type": "function_call", "id": id, "call_id": call_id,
                "name": name, "arguments": b.text, "status": status});
            out.push(self.event(
                "response.output_item.done",
                json!({"output_index": 0, "item": item}),
            ));
            self.items.push(item);
        }
        let end = self.reply.close(b, raw_from);
        self.think(&end.reasoning, &mut out);
        self.show(&end.text, end.logprobs, &mut out);
        let calls = end.calls;
        // a reasoning no text followed (cut inside it, or calls after it)
        if self.message.is_none() {
            self.thought(
                if calls.is_empty() {
                    status
                } else {
                    "completed"
                },
                &mut out,
            );
        }
        // a reply with nothing else is an (empty) message
        if self.items.is_empty() && calls.is_empty() {
            self.open_message(&mut out);
        }
        if let Some((id, index, text)) = self.message.take() {
            let lp = if calls.is_empty() {
                std::mem::take(&mut self.sent)
            } else {
                Vec::new()
            };
            out.push(self.event(
                "response.output_text.done",
                json!({"item_id": id, "output_index": index, "content_index": 0,
                    "text": text, "logprobs": lp}),
            ));
            let item = reply_message(&id, &text, &lp, status);
            self.close_item((&id, index), text_part(&text, &lp), item, &mut out);
        }
        for c in calls.iter().take(self.asked.max_calls) {
            let index = self.items.len();
            let id = new_id("fc");
            let mut item = call_item(&id, c, "in_progress");
            item["arguments"] = json!("");
            out.push(self.event(
                "response.output_item.added",
                json!({"output_index": index, "item": item}),
            ));
            out.push(self.event(
                "response.function_call_arguments.delta",
                json!({"item_id": id, "output_index": index, "delta": c.function.arguments}),
            ));
            out.push(self.event(
                "response.function_call_arguments.done",
                json!({"item_id": id, "output_index": index, "name": c.function.name,
                    "arguments": c.function.arguments}),
            ));
            let item = call_item(&id, c, "completed");
            out.push(self.event(
                "response.output_item.done",
                json!({"output_index": index, "item": item}),
            ));
            self.items.push(item);
        }
        let response = finish(
            &self.st,
            &self.asked,
            self.response.clone(),
            std::mem::take(&mut self.items),
            b,
            std::mem::take(&mut self.kept),
        );
        let kind = if status == "incomplete" {
            "response.incomplete"
        } else {
            "response.completed"
        };
        out.push(self.event(kind, json!({ "response": response })));
        out
    }

    /// `error`, then `response.failed` with what was finished.
    fn failed(&mut self, e: ApiError) -> Vec<Event> {
        let code = e.code.to_ascii_lowercase();
        let mut out = vec![self.event(
            "error",
            json!({"code": code, "message": e.detail, "param": e.param}),
        )];
        let mut r = self.response.clone();
        r["status"] = json!("failed");
        r["error"] = json!({"code": code, "message": e.detail});
        r["output"] = Value::Array(std::mem::take(&mut self.items));
        out.push(self.event("response.failed", json!({ "response": r })));
        out
    }
}

/// The input tokens a response would start from: its conversation (after
/// `previous_response_id`'s, truncated as asked) laid out by the template, with the
/// tools, counted without generating anything.
#[utoipa::path(post, path = "/v1/responses/input_tokens", tag = "openai", request_body = ResponsesBody,
    responses(
        (status = 200, description = "`{\"object\": \"response.input_tokens\", \"input_tokens\"}`", body = Object),
        (status = 400, description = "invalid parameter (`error.param` names it), as for POST /v1/responses"),
        (status = 404, description = "`model` is not the loaded model, or `previous_response_id` is not stored")))]
pub async fn input_tokens(
    State(st): State<AppState>,
    key: Option<Extension<Key>>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let owner = key.map(|Extension(k)| k.0);
    let b: ResponsesBody = json_body(&st, body).await?;
    let tokenizer = loaded_tokenizer(&st)?;
    let mut t = take(b, &st, owner)?;
    let r = render(&mut t, &st.engine.model_snapshot(), &tokenizer)?;
    Ok(Json(
        json!({"object": "response.input_tokens", "input_tokens": r.ids.len()}),
    ))
}

/// A stored response.
#[utoipa::path(get, path = "/v1/responses/{response_id}", tag = "openai",
    params(("response_id" = String, Path, description = "the response's id")),
    responses((status = 200, description = "The response object as it was answered", body = Object),
        (status = 404, description = "NOT_FOUND: not stored (never, or no longer: the store keeps the newest within --responses-store-bytes; another API key's)")))]
pub async fn retrieve(
    State(st): State<AppState>,
    key: Option<Extension<Key>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let owner = key.map(|Extension(k)| k.0);
    let s = st
        .responses
        .get(&id, owner)
        .ok_or_else(|| not_found("response", &id, None))?;
    Ok(Json(s.response.clone()))
}

/// Forget a stored response (responses continuing it keep their own conversation).
#[utoipa::path(delete, path = "/v1/responses/{response_id}", tag = "openai",
    params(("response_id" = String, Path, description = "the response's id")),
    responses((status = 200, description = "`{\"id\", \"object\": \"response\", \"deleted\": true}`", body = Object),
        (status = 404, description = "NOT_FOUND: not stored")))]
pub async fn delete(
    State(st): State<AppState>,
    key: Option<Extension<Key>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let owner = key.map(|Extension(k)| k.0);
    if !st.responses.remove(&id, owner) {
        return Err(not_found("response", &id, None));
    }
    Ok(Json(
        json!({"id": id, "object": "response", "deleted": true}),
    ))
}

/// Cancel a response: only background responses can be, and none run here (a response
/// finishes while its request waits or streams; closing the stream cancels it).
#[utoipa::path(post, path = "/v1/responses/{response_id}/cancel", tag = "openai",
    params(("response_id" = String, Path, description = "the response's id")),
    responses((status = 400, description = "INVALID_INPUT: the response is not a background one (none are)"),
        (status = 404, description = "NOT_FOUND: not stored")))]
pub async fn cancel(
    State(st): State<AppState>,
    key: Option<Extension<Key>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let owner = key.map(|Extension(k)| k.0);
    if st.responses.get(&id, owner).is_none() {
        return Err(not_found("response", &id, None));
    }
    Err(bad(
        "response_id",
        "only background responses can be cancelled, and this server runs none: a response finishes while its request waits or streams (closing the stream cancels it)",
    ))
}

/// The page of a stored response's input items asked for.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ItemsQuery {
    /// 1..=100 (default 20).
    #[serde(default)]
    limit: Option<String>,
    /// `desc` (default: the newest first) or `asc`.
    #[serde(default)]
    order: Option<String>,
    /// Items after this item id, in this order.
    #[serde(default)]
    after: Option<String>,
}

/// The input items a stored response followed: its conversation (earlier turns of the
/// responses it continues included), without instructions.
#[utoipa::path(get, path = "/v1/responses/{response_id}/input_items", tag = "openai",
    params(("response_id" = String, Path, description = "the response's id"), ItemsQuery),
    responses((status = 200, description = "`{\"object\": \"list\", \"data\": [items], \"first_id\", \"last_id\", \"has_more\"}`", body = Object),
        (status = 400, description = "a bad limit, order, or an `after` that is not one of its items"),
        (status = 404, description = "NOT_FOUND: not stored")))]
pub async fn input_items_list(
    State(st): State<AppState>,
    key: Option<Extension<Key>>,
    Path(id): Path<String>,
    Query(q): Query<ItemsQuery>,
) -> Result<Json<Value>, ApiError> {
    let owner = key.map(|Extension(k)| k.0);
    let s = st
        .responses
        .get(&id, owner)
        .ok_or_else(|| not_found("response", &id, None))?;
    let limit = match q.limit.as_deref().map(str::parse::<usize>) {
        None => 20,
        Some(Ok(n)) if (1..=100).contains(&n) => n,
        Some(_) => return Err(bad("limit", "limit must be an integer from 1 to 100")),
    };
    let mut items: Vec<&Value> = s.context.iter().map(|i| i.as_ref()).collect();
    match q.order.as_deref() {
        None | Some("desc") => items.reverse(),
        Some("asc") => {}
        Some(_) => return Err(bad("order", "order must be \"asc\" or \"desc\"")),
    }
    let start = match &q.after {
        None => 0,
        Some(a) => {
            1 + items
                .iter()
                .position(|i| i["id"].as_str() == Some(a))
                .ok_or_else(|| bad("after", format!("no item {a:?} in this response's input")))?
        }
    };
    let page: Vec<Value> = items
        .iter()
        .skip(start)
        .take(limit)
        .map(|i| (*i).clone())
        .collect();
    let has_more = start + page.len() < items.len();
    Ok(Json(json!({
        "object": "list",
        "first_id": page.first().map(|i| i["id"].clone()),
        "last_id": page.last().map(|i| i["id"].clone()),
        "has_more": has_more,
        "data": page,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(v: Value) -> Vec<Arc<Value>> {
        input_items(&v).unwrap().into_iter().map(Arc::new).collect()
    }

    /// Items become the chat messages templates take: developer as system, calls on
    /// the assistant message before them (or their own), outputs as tool messages
    /// with the call's id and name; the instructions first.
    #[test]
    fn items_become_chat_messages() {
        let conv = items(json!([
            {"role": "developer", "content": "Be brief."},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather"},
                                                            {"type": "input_text", "text": "in Paris?"}]},
            {"role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
            {"type": "function_call", "call_id": "c1", "name": "get", "arguments": "{\"q\":1}"},
            {"type": "function_call", "call_id": "c2", "name": "put", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "18 C"},
            {"type": "reasoning", "summary": []},
            {"type": "reasoning", "summary": [],
             "content": [{"type": "reasoning_text", "text": "Call again."}]},
            {"type": "function_call", "call_id": "c3", "name": "get", "arguments": ""},
        ]));
        assert_eq!(conv.len(), 8, "a reasoning without text passed over");
        assert!(conv[3]["id"].as_str().unwrap().starts_with("fc_"));
        let m = chat_messages(Some("Sys"), &conv);
        assert_eq!(m[0], json!({"role": "system", "content": "Sys"}));
        assert_eq!(m[1], json!({"role": "system", "content": "Be brief."}));
        assert_eq!(m[2]["content"], "Weather\nin Paris?");
        assert_eq!(m[3]["content"], "Checking.");
        let calls = m[3]["tool_calls"].as_array().unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0]["id"], "c1");
        assert_eq!(calls[1]["function"]["name"], "put");
        assert_eq!(
            m[4],
            json!({"role": "tool", "tool_call_id": "c1", "content": "18 C", "name": "get"})
        );
        assert_eq!(m[5]["content"], "");
        assert_eq!(m[5]["reasoning_content"], "Call again.");
        assert!(m[3].get("reasoning_content").is_none());
        assert_eq!(m[5]["tool_calls"][0]["function"]["arguments"], "");
        assert_eq!(m.len(), 6);
        // a string is one user message
        let one = items(json!("Hi"));
        assert_eq!(
            chat_messages(None, &one),
            vec![json!({"role": "user", "content": "Hi"})]
        );
    }

    #[test]
    fn bad_items_name_their_place() {
        for (v, param, words) in [
            (json!([]), "input", "empty"),
            (json!(3), "input", "string or an array"),
            (json!([{"role": "bot", "content": "x"}]), "input[0]", "bot"),
            (json!(["x"]), "input[0]", "object"),
            (
                json!([{"role": "user", "content": [{"type": "input_image", "image_url": "u"}]}]),
                "input[0].content",
                "input_image",
            ),
            (
                json!([{"type": "function_call", "name": "f"}]),
                "input[0]",
                "call_id",
            ),
            (
                json!([{"type": "item_reference", "id": "x"}]),
                "input[0]",
                "item_reference",
            ),
            (
                json!([{"type": "function_call_output", "call_id": "c", "output": 5}]),
                "input[0].output",
                "string",
            ),
        ] {
            let e = input_items(&v).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{v}");
            assert!(e.detail.contains(words), "{v}: {}", e.detail);
        }
    }

    #[test]
    fn tools_formats_and_choices_take_the_chat_shape() {
        let t = chat_tools(&json!([{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": true}])).unwrap();
        assert_eq!(
            t,
            json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}, "strict": true}}])
        );
        assert_eq!(
            chat_tools(&json!([{"type": "web_search"}]))
                .unwrap_err()
                .param
                .as_deref(),
            Some("tools[0]")
        );
        assert_eq!(
            chat_tool_choice(&Some(json!({"type": "function", "name": "f"}))).unwrap(),
            Some(json!({"type": "function", "function": {"name": "f"}}))
        );
        assert!(chat_tool_choice(&Some(json!({"type": "allowed_tools"}))).is_err());
        let (f, echo) = chat_format(&Some(
            json!({"format": {"type": "json_schema", "name": "p", "schema": {"type": "object"}}}),
        ))
        .unwrap();
        assert_eq!(
            f.unwrap()["json_schema"]["schema"],
            json!({"type": "object"})
        );
        assert_eq!(echo["format"]["name"], "p");
        assert_eq!(
            chat_format(&None).unwrap(),
            (None, json!({"format": {"type": "text"}}))
        );
        let e = chat_format(&Some(json!({"format": {"type": "json_schema"}}))).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("text.format"));
        let e = renamed(bad(
            "response_format",
            "response_format: at /x: multipleOf is not supported",
        ));
        assert_eq!(
            (e.param.as_deref(), e.detail.as_str()),
            (
                Some("text.format"),
                "text.format: at /x: multipleOf is not supported"
            )
        );
        assert_eq!(
            renamed(bad("messages[3].content", "x")).param.as_deref(),
            Some("input")
        );
        assert!(metadata(&Some(json!({"k": 1}))).is_err());
        assert!(metadata(&Some(json!({"k": "v"}))).is_ok());
    }
}
