//! `/v1/messages`: Anthropic's Messages API over the chat path, for the clients and
//! SDKs that speak it. `system` and the messages' content blocks (text, `tool_use`,
//! `tool_result`) become chat messages laid out by the model's own template (a final
//! assistant message is continued: Anthropic's prefill), the reply is generated as a
//! chat completion's is ([`super::chat`]: tools, forced calls, a JSON Schema through
//! `output_config.format`), and comes back as content blocks — `text`, `tool_use` —
//! with Anthropic's `stop_reason`, whole or streamed as its events (`message_start`,
//! `content_block_start` / `_delta` / `_stop`, `message_delta`, `message_stop`).
//! `POST /v1/messages/count_tokens` counts a conversation's input tokens. Errors take
//! Anthropic's shape (`{"type": "error", "error": {"type", "message"}}`,
//! [`super::openai::openai_errors`]).

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Extension, State};
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::chat::{self, ChatBody, ToolCallOut};
use super::error::ApiError;
use super::guard::Client;
use super::openai::{
    anthropic_kind, bad, check_model, collect_all, loaded_tokenizer, start_all, ChoiceBuilder,
};
use super::params;
use super::routes::json_body;
use super::state::AppState;
use super::typed::{self, new_id, Drawing, Shown, Unfolding};
use crate::error::Error;
use crate::tokenizer::Tokenizer;

/// `POST /v1/messages`. Unknown fields are ignored.
#[derive(Debug, Deserialize, ToSchema)]
pub struct MessagesBody {
    /// Must name the loaded model (`GET /v1/models`); may be omitted.
    #[serde(default)]
    pub model: Option<String>,
    /// The conversation: `{"role": "user" | "assistant", "content": a string or
    /// blocks}`, blocks `text`, `tool_use` (assistant: `id`, `name`, `input`) and
    /// `tool_result` (user: `tool_use_id`, `content`); an assistant's `thinking` blocks
    /// reach the template as its `reasoning_content`. A final assistant message is
    /// continued (prefill).
    #[serde(default)]
    #[schema(value_type = Vec<Object>, min_items = 1)]
    pub messages: Option<Value>,
    /// A system prompt: a string or text blocks.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub system: Option<Value>,
    /// New tokens (Anthropic requires it; here the default is the rest of the context,
    /// at most 4096).
    #[serde(default, deserialize_with = "params::int::opt_i64")]
    #[schema(minimum = 1, maximum = 4096)]
    pub max_tokens: Option<i64>,
    /// 0..=2; 0 = greedy (default 1).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 2)]
    pub temperature: Option<f64>,
    /// (0, 1] (default 1).
    #[serde(default)]
    #[schema(exclusive_minimum = 0, maximum = 1)]
    pub top_p: Option<f64>,
    /// Sample among the k most likely tokens (default 0 = no limit).
    #[serde(default, deserialize_with = "params::int::opt_i64")]
    #[schema(minimum = 0, maximum = 100000)]
    pub top_k: Option<i64>,
    /// Up to 32 strings; the reply ends before the first that appears
    /// (`stop_reason` `stop_sequence`).
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    pub stop_sequences: Option<Value>,
    /// Extension: same seed, same reply.
    #[serde(default, deserialize_with = "params::int::opt_i64")]
    #[schema(minimum = 0, maximum = 9223372036854775807i64)]
    pub seed: Option<i64>,
    /// Extensions: `min_p`, the penalties, `logit_bias`, `min_tokens`, `ignore_eos`,
    /// `stop_token_ids`.
    #[serde(flatten)]
    pub controls: params::Controls,
    /// Server-Sent Events: Anthropic's stream events.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Client tools `{"name", "description", "input_schema"}`, passed to the chat
    /// template; calls in the reply become `tool_use` blocks.
    #[serde(default)]
    #[schema(value_type = Option<Vec<Object>>)]
    pub tools: Option<Value>,
    /// `{"type": "auto" | "any" | "tool" | "none", "name", "disable_parallel_tool_use"}`:
    /// `any` holds the reply to calls of the tools, `tool` to the named tool's input
    /// schema.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub tool_choice: Option<Value>,
    /// `{"format": {"type": "json_schema", "schema": {...}}}`: the reply is one value
    /// of the schema (as a chat completion's `response_format`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub output_config: Option<Value>,
    /// vLLM's: further chat template variables, as in a chat completion.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub chat_template_kwargs: Option<Value>,
    /// `{"type": "enabled" | "disabled"}`: the template's switch, `enable_thinking`
    /// (Qwen3's; unless `chat_template_kwargs` sets it); `budget_tokens` has no effect.
    /// A thinking model's reasoning comes as a `thinking` block.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub thinking: Option<Value>,
    /// Accepted and ignored.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

/// Chat's field names and this API's.
const NAMES: &[(&str, &str)] = &[
    ("stop", "stop_sequences"),
    ("response_format", "output_config.format"),
    ("messages", "messages"),
];

fn renamed(e: ApiError) -> ApiError {
    chat::renamed(e, NAMES)
}

/// The text of a string or of text blocks (joined by line breaks); `thinking` blocks
/// are passed over.
fn text_of(param: &str, v: &Value) -> Result<String, ApiError> {
    Ok(chat::texts(param, v, &["text"], &["thinking", "redacted_thinking"])?.join("\n"))
}

/// The chat messages of a conversation, `system` first: a user message's text blocks
/// (in runs) as user messages and its `tool_result`s as `tool` messages (with the
/// call's name); an assistant message's text as its content and its `tool_use` blocks
/// as `tool_calls`. Whether the last message is the assistant's (to be continued).
fn chat_messages(system: Option<&Value>, messages: &Value) -> Result<(Vec<Value>, bool), ApiError> {
    const FIELD: &str = "messages";
    let list = match messages {
        Value::Array(l) if !l.is_empty() => l,
        Value::Array(_) => return Err(bad(FIELD, "messages must not be empty")),
        _ => return Err(bad(FIELD, "messages must be an array of messages")),
    };
    let mut out: Vec<Value> = Vec::with_capacity(list.len() + 1);
    if let Some(s) = system.filter(|s| !s.is_null()) {
        out.push(json!({"role": "system", "content": text_of("system", s)?}));
    }
    let mut names: HashMap<String, String> = HashMap::new();
    for (i, m) in list.iter().enumerate() {
        let at = format!("messages[{i}]");
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        let content = m.get("content").unwrap_or(&Value::Null);
        let param = format!("{at}.content");
        let blocks = match content {
            Value::String(s) => vec![json!({"type": "text", "text": s})],
            Value::Array(b) => b.clone(),
            _ => {
                return Err(bad(
                    &param,
                    format!("{param} must be a string or an array of blocks"),
                ))
            }
        };
        match role {
            "user" => {
                let mut text: Vec<String> = Vec::new();
                let flush = |text: &mut Vec<String>, out: &mut Vec<Value>| {
                    if !text.is_empty() {
                        out.push(json!({"role": "user", "content": text.join("\n")}));
                        text.clear();
                    }
                };
                for (j, b) in blocks.iter().enumerate() {
                    match chat::part_kind(&param, j, b)? {
                        "text" => text.push(chat::part_text(&param, j, b)?),
                        "tool_result" => {
                            flush(&mut text, &mut out);
                            let id = b.get("tool_use_id").and_then(Value::as_str).ok_or_else(|| {
                                bad(&param, format!("{param}[{j}] is a tool_result without tool_use_id"))
                            })?;
                            let result = match b.get("content") {
                                None | Some(Value::Null) => String::new(),
                                Some(c) => text_of(&format!("{param}[{j}].content"), c)?,
                            };
                            let mut msg = json!({"role": "tool", "tool_call_id": id, "content": result});
                            if let Some(name) = names.get(id) {
                                msg["name"] = json!(name);
                            }
                            out.push(msg);
                        }
                        other => return Err(unserved(&param, j, other)),
                    }
                }
                flush(&mut text, &mut out);
            }
            "assistant" => {
                let (mut text, mut calls, mut thought) = (Vec::new(), Vec::new(), Vec::new());
                for (j, b) in blocks.iter().enumerate() {
                    match chat::part_kind(&param, j, b)? {
                        "text" => text.push(chat::part_text(&param, j, b)?),
                        // its reasoning, for templates that lay it out (Qwen3's, for the
                        // turns after the last question: a tool loop's)
                        "thinking" => {
                            if let Some(t) = b.get("thinking").and_then(Value::as_str) {
                                thought.push(t.to_string());
                            }
                        }
                        "tool_use" => {
                            let field = |k: &str| {
                                b.get(k).and_then(Value::as_str).map(String::from).ok_or_else(|| {
                                    bad(&param, format!("{param}[{j}] is a tool_use without {k}"))
                                })
                            };
                            let (id, name) = (field("id")?, field("name")?);
                            let input = b.get("input").filter(|v| !v.is_null()).cloned().unwrap_or(json!({}));
                            names.insert(id.clone(), name.clone());
                            calls.push(json!({"id": id, "type": "function",
                                "function": {"name": name, "arguments": input}}));
                        }
                        "redacted_thinking" => {}
                        other => return Err(unserved(&param, j, other)),
                    }
                }
                let mut msg = json!({"role": "assistant", "content": text.join("\n")});
                if !calls.is_empty() {
                    msg["tool_calls"] = Value::Array(calls);
                }
                if !thought.is_empty() {
                    msg["reasoning_content"] = json!(thought.concat());
                }
                out.push(msg);
            }
            _ => {
                return Err(bad(
                    &format!("{at}.role"),
                    format!("{at}.role {role:?} is not user or assistant (the system prompt is the system field)"),
                ))
            }
        }
    }
    let prefill = list.last().and_then(|m| m.get("role")) == Some(&json!("assistant"));
    Ok((out, prefill))
}

fn unserved(param: &str, j: usize, kind: &str) -> ApiError {
    bad(
        param,
        format!("{param}[{j}] is a block of type {kind}: text, tool_use (assistant) and tool_result (user) blocks are served (images, documents and server tools are not)"),
    )
}

/// Client tools in the chat shape.
fn chat_tools(tools: &Value) -> Result<Value, ApiError> {
    let list = tools
        .as_array()
        .ok_or_else(|| bad("tools", "tools must be an array of tools"))?;
    let mut out = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        let at = format!("tools[{i}]");
        match t.get("type").and_then(Value::as_str) {
            None | Some("custom") => {}
            Some(other) => {
                return Err(bad(
                    &at,
                    format!("{at} has type {other:?}: only client tools ({{\"name\", \"input_schema\"}}) are served, not Anthropic's server or built-in tools"),
                ))
            }
        }
        let name = t.get("name").and_then(Value::as_str).ok_or_else(|| {
            bad(
                &at,
                format!("{at} needs a name: {{\"name\": ..., \"input_schema\": {{...}}}}"),
            )
        })?;
        let mut f = json!({"name": name});
        if let Some(d) = t.get("description").filter(|d| !d.is_null()) {
            f["description"] = d.clone();
        }
        if let Some(s) = t.get("input_schema").filter(|s| !s.is_null()) {
            f["parameters"] = s.clone();
        }
        out.push(json!({"type": "function", "function": f}));
    }
    Ok(Value::Array(out))
}

/// `tool_choice` in the chat shape, and whether at most one call comes out.
fn chat_tool_choice(choice: &Option<Value>) -> Result<(Option<Value>, bool), ApiError> {
    const FIELD: &str = "tool_choice";
    let Some(c) = choice.as_ref().filter(|c| !c.is_null()) else {
        return Ok((None, false));
    };
    let single = c.get("disable_parallel_tool_use").and_then(Value::as_bool) == Some(true);
    let chat = match c.get("type").and_then(Value::as_str) {
        Some("auto") => json!("auto"),
        Some("none") => json!("none"),
        Some("any") => json!("required"),
        Some("tool") => {
            let name = c.get("name").and_then(Value::as_str).ok_or_else(|| {
                bad(
                    FIELD,
                    "tool_choice {\"type\": \"tool\"} needs the tool's name",
                )
            })?;
            json!({"type": "function", "function": {"name": name}})
        }
        _ => {
            return Err(bad(
                FIELD,
                "tool_choice must be {\"type\": \"auto\" | \"any\" | \"tool\" | \"none\"}",
            ))
        }
    };
    Ok((Some(chat), single))
}

/// `output_config.format` as a chat completion's `response_format`.
fn chat_format(config: &Option<Value>) -> Result<Option<Value>, ApiError> {
    const FIELD: &str = "output_config.format";
    let Some(f) = config
        .as_ref()
        .and_then(|c| c.get("format"))
        .filter(|f| !f.is_null())
    else {
        return Ok(None);
    };
    match (f.get("type").and_then(Value::as_str), f.get("schema")) {
        (Some("json_schema"), Some(schema)) if !schema.is_null() => Ok(Some(
            json!({"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}),
        )),
        _ => Err(bad(
            FIELD,
            "output_config.format must be {\"type\": \"json_schema\", \"schema\": {...}}",
        )),
    }
}

/// A request taken apart: the chat request it becomes, and at most one call out of
/// the reply when parallel calls are off.
struct Taken {
    chat: ChatBody,
    single: bool,
}

fn take(b: MessagesBody) -> Result<Taken, ApiError> {
    let messages = b
        .messages
        .as_ref()
        .filter(|m| !m.is_null())
        .ok_or_else(|| bad("messages", "messages is required"))?;
    let (messages, prefill) = chat_messages(b.system.as_ref(), messages)?;
    let tools = b
        .tools
        .as_ref()
        .filter(|t| !t.is_null())
        .map(chat_tools)
        .transpose()?;
    let (tool_choice, single) = chat_tool_choice(&b.tool_choice)?;
    let chat = ChatBody {
        model: b.model,
        messages: Value::Array(messages),
        max_tokens: b.max_tokens,
        max_completion_tokens: None,
        temperature: b.temperature,
        top_p: b.top_p,
        top_k: b.top_k,
        n: None,
        stop: b.stop_sequences,
        seed: b.seed,
        controls: b.controls,
        guided: params::Guided::default(),
        logprobs: None,
        top_logprobs: None,
        // a final assistant message is continued
        add_generation_prompt: Some(!prefill),
        continue_final_message: Some(prefill),
        // `thinking` enabled or disabled: the template's switch (Qwen3's enable_thinking)
        chat_template_kwargs: chat::with_thinking(
            b.chat_template_kwargs,
            match b
                .thinking
                .as_ref()
                .and_then(|t| t.get("type"))
                .and_then(Value::as_str)
            {
                Some("enabled") => Some(true),
                Some("disabled") => Some(false),
                _ => None,
            },
        ),
        stream: b.stream,
        stream_options: None,
        tools,
        tool_choice,
        response_format: chat_format(&b.output_config)?,
        user: None,
    };
    Ok(Taken { chat, single })
}

/// A call as a `tool_use` block (`input` the arguments' object; `{}` for arguments
/// that are not one, as those of a call cut by `max_tokens`).
fn tool_use(c: &ToolCallOut) -> Value {
    let input = serde_json::from_str::<Value>(&c.function.arguments)
        .ok()
        .filter(Value::is_object)
        .unwrap_or(json!({}));
    json!({"type": "tool_use", "id": new_id("toolu"), "name": c.function.name, "input": input})
}

/// Anthropic's `stop_reason` and `stop_sequence` of a reply.
fn stop_of(
    b: &ChoiceBuilder,
    stops: &[String],
    tool_use: bool,
    t: &Tokenizer,
) -> (&'static str, Option<String>) {
    if b.finish == Some("length") {
        return ("max_tokens", None);
    }
    if tool_use {
        return ("tool_use", None);
    }
    if stops.is_empty() || b.finish != Some("stop") {
        return ("end_turn", None);
    }
    // the stop string is cut from the text: it starts where the text ends
    let full = t.decode(&b.generated).unwrap_or_default();
    let after = full.get(b.text.len()..).unwrap_or("");
    match stops
        .iter()
        .find(|s| full.starts_with(&b.text) && after.starts_with(s.as_str()))
    {
        Some(s) => ("stop_sequence", Some(s.clone())),
        None => ("end_turn", None),
    }
}

/// Anthropic's usage: input tokens past the prefix cache's, the cache's as read.
fn message_usage(b: &ChoiceBuilder) -> Value {
    let u = super::openai::usage(&[b.counts()], 1);
    let cached = u.prompt_tokens_details.cached_tokens;
    json!({"input_tokens": u.prompt_tokens - cached, "output_tokens": u.completion_tokens,
        "cache_creation_input_tokens": 0, "cache_read_input_tokens": cached})
}

/// Create a message: the conversation through the model's chat template, the reply
/// as content blocks, whole or streamed.
#[utoipa::path(post, path = "/v1/messages", tag = "openai", request_body = MessagesBody,
    responses(
        (status = 200, description = "A message `{\"id\", \"type\": \"message\", \"role\": \"assistant\", \"model\", \"content\": [text and tool_use blocks], \"stop_reason\": \"end_turn\" | \"max_tokens\" | \"stop_sequence\" | \"tool_use\", \"stop_sequence\", \"usage\"}`; with `stream: true`, Server-Sent Events named by their type: `message_start`, `ping`, per block `content_block_start`, `content_block_delta` (`text_delta`, `input_json_delta`) …, `content_block_stop`, then `message_delta` (the stop reason, the usage) and `message_stop` (an error: an `error` event)",
            content((Object = "application/json"), (String = "text/event-stream"))),
        (status = 400, description = "invalid parameter (`error.param` names it), a model without a chat template, the template's own refusal"),
        (status = 404, description = "`model` is not the loaded model"),
        (status = 429, description = "rate limited"),
        (status = 503, description = "engine queue full"),
        (status = 504, description = "deadline passed")))]
pub async fn create(
    State(st): State<AppState>,
    client: Option<Extension<Client>>,
    body: Body,
) -> Result<Response, ApiError> {
    let client = client.map(|Extension(c)| c);
    let b: MessagesBody = json_body(&st, body).await?;
    let tokenizer = loaded_tokenizer(&st)?;
    let t = take(b)?;
    let (p, prompt_tokens, reading) =
        chat::plan(&t.chat, &st.engine.model_snapshot(), &tokenizer).map_err(renamed)?;
    let running = start_all(&st, &p)?;
    let id = new_id("msg");
    let max_calls = if t.single { 1 } else { usize::MAX };
    if p.stream {
        let r = running.into_iter().next().ok_or_else(|| {
            ApiError::from(Error::Unavailable(
                "the engine started no generation".into(),
            ))
        })?;
        let draw = Draw {
            id,
            model: p.model.clone(),
            prompt_tokens,
            stops: p.stop.clone(),
            tokenizer: tokenizer.clone(),
            reply: Unfolding::new(reading, tokenizer, None),
            max_calls,
            blocks: 0,
            open: None,
            held: String::new(),
            tool_use: false,
        };
        return Ok(typed::stream(st, client, r, draw));
    }
    let b = collect_all(&st, client.as_ref(), running)
        .await?
        .pop()
        .ok_or_else(|| ApiError::from(Error::Unavailable("the engine stopped".into())))?;
    let (thinking, text, tool_calls) = reading.whole(&b.text);
    let mut content = Vec::new();
    if let Some(thinking) = thinking.filter(|t| !t.trim().is_empty()) {
        content.push(json!({"type": "thinking", "thinking": thinking, "signature": ""}));
    }
    if let Some(text) = text.filter(|t| !t.is_empty()) {
        content.push(json!({"type": "text", "text": text}));
    }
    let uses: Vec<Value> = tool_calls
        .iter()
        .flatten()
        .take(max_calls)
        .map(tool_use)
        .collect();
    let (stop_reason, stop_sequence) = stop_of(&b, &p.stop, !uses.is_empty(), &tokenizer);
    content.extend(uses);
    Ok(Json(json!({
        "id": id, "type": "message", "role": "assistant", "model": p.model,
        "content": content, "stop_reason": stop_reason, "stop_sequence": stop_sequence,
        "usage": message_usage(&b),
    }))
    .into_response())
}

/// A streamed message's state: the blocks opened, the one open.
struct Draw {
    id: String,
    model: String,
    prompt_tokens: usize,
    stops: Vec<String>,
    tokenizer: std::sync::Arc<Tokenizer>,
    reply: Unfolding,
    max_calls: usize,
    /// Blocks started.
    blocks: usize,
    /// The open block's index and type.
    open: Option<(usize, &'static str)>,
    /// Whitespace the reasoning started with, held until more comes (a reasoning of
    /// only whitespace makes no block, as in a whole message).
    held: String,
    /// Whether a tool_use block was given.
    tool_use: bool,
}

fn event(kind: &str, mut data: Value) -> Event {
    data["type"] = json!(kind);
    Event::default().event(kind).data(data.to_string())
}

impl Draw {
    /// Start a block (closing the one open).
    fn start(&mut self, block: Value, out: &mut Vec<Event>) -> usize {
        self.stop(out);
        let index = self.blocks;
        self.blocks += 1;
        let kind = match block["type"].as_str() {
            Some("text") => "text",
            Some("thinking") => "thinking",
            _ => "tool_use",
        };
        self.open = Some((index, kind));
        out.push(event(
            "content_block_start",
            json!({"index": index, "content_block": block}),
        ));
        index
    }

    fn stop(&mut self, out: &mut Vec<Event>) {
        if let Some((index, _)) = self.open.take() {
            out.push(event("content_block_stop", json!({ "index": index })));
        }
    }

    fn text(&mut self, text: &str, out: &mut Vec<Event>) {
        if text.is_empty() {
            return;
        }
        let index = match self.open {
            Some((i, "text")) => i,
            _ => self.start(json!({"type": "text", "text": ""}), out),
        };
        out.push(event(
            "content_block_delta",
            json!({"index": index, "delta": {"type": "text_delta", "text": text}}),
        ));
    }

    /// Reasoning for the thinking block (opened at its first reasoning, unless that is
    /// only whitespace).
    fn thinking(&mut self, thinking: &str, out: &mut Vec<Event>) {
        let (index, thinking) = match self.open {
            Some((i, "thinking")) => (i, thinking.to_string()),
            _ if thinking.trim().is_empty() => {
                self.held.push_str(thinking);
                return;
            }
            _ => (
                self.start(
                    json!({"type": "thinking", "thinking": "", "signature": ""}),
                    out,
                ),
                std::mem::take(&mut self.held) + thinking,
            ),
        };
        out.push(event(
            "content_block_delta",
            json!({"index": index, "delta": {"type": "thinking_delta", "thinking": thinking}}),
        ));
    }

    fn input_json(&self, index: usize, json_text: &str) -> Event {
        event(
            "content_block_delta",
            json!({"index": index, "delta": {"type": "input_json_delta", "partial_json": json_text}}),
        )
    }
}

impl Drawing for Draw {
    /// `message_start`, a `ping`, and a forced tool's block.
    fn opening(&mut self) -> Vec<Event> {
        let mut out = vec![
            event(
                "message_start",
                json!({"message": {"id": self.id, "type": "message", "role": "assistant",
                    "model": self.model, "content": [], "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": self.prompt_tokens, "output_tokens": 0}}}),
            ),
            event("ping", json!({})),
        ];
        if let Some(name) = self.reply.named().map(String::from) {
            self.start(
                json!({"type": "tool_use", "id": new_id("toolu"), "name": name, "input": {}}),
                &mut out,
            );
            self.tool_use = true;
        }
        out
    }

    fn step(&mut self, b: &ChoiceBuilder, text: String, raw_from: usize) -> Vec<Event> {
        let mut out = Vec::new();
        for shown in self.reply.step(b, text, raw_from) {
            match shown {
                Shown::Reasoning(r) => self.thinking(&r, &mut out),
                Shown::Text(t, _) => self.text(&t, &mut out),
                Shown::Arguments(a) => {
                    if let Some((index, "tool_use")) = self.open {
                        out.push(self.input_json(index, &a));
                    }
                }
            }
        }
        out
    }

    /// The rest of the text, the calls as `tool_use` blocks, `message_delta` with the
    /// stop reason and the usage, `message_stop`.
    fn closing(&mut self, b: &ChoiceBuilder, raw_from: usize) -> Vec<Event> {
        let mut out = Vec::new();
        let end = self.reply.close(b, raw_from);
        if !end.reasoning.is_empty() {
            self.thinking(&end.reasoning, &mut out);
        }
        self.text(&end.text, &mut out);
        for c in end.calls.iter().take(self.max_calls) {
            let mut block = tool_use(c);
            let input = std::mem::replace(&mut block["input"], json!({}));
            let index = self.start(block, &mut out);
            out.push(self.input_json(index, &input.to_string()));
            self.tool_use = true;
        }
        self.stop(&mut out);
        let (stop_reason, stop_sequence) = stop_of(b, &self.stops, self.tool_use, &self.tokenizer);
        out.push(event(
            "message_delta",
            json!({"delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                "usage": message_usage(b)}),
        ));
        out.push(event("message_stop", json!({})));
        out
    }

    /// An `error` event (Anthropic's shape); the stream ends there.
    fn failed(&mut self, e: ApiError) -> Vec<Event> {
        let kind = anthropic_kind(e.status.as_u16());
        vec![event(
            "error",
            json!({"error": {"type": kind, "message": e.detail, "code": e.code.to_ascii_lowercase()}}),
        )]
    }
}

/// Count a conversation's input tokens: `system`, the messages and the tools laid out
/// by the template, nothing generated.
#[utoipa::path(post, path = "/v1/messages/count_tokens", tag = "openai", request_body = MessagesBody,
    responses(
        (status = 200, description = "`{\"input_tokens\"}`", body = Object),
        (status = 400, description = "invalid parameter, as for POST /v1/messages"),
        (status = 404, description = "`model` is not the loaded model")))]
pub async fn count_tokens(State(st): State<AppState>, body: Body) -> Result<Json<Value>, ApiError> {
    let b: MessagesBody = json_body(&st, body).await?;
    let tokenizer = loaded_tokenizer(&st)?;
    let t = take(b)?;
    check_model(&t.chat.model, &st.engine.model_snapshot())?;
    let r = chat::render(&t.chat, &tokenizer).map_err(renamed)?;
    Ok(Json(json!({ "input_tokens": r.ids.len() })))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Content blocks become the chat messages templates take: the system prompt
    /// first, a user's tool results as tool messages (with the call's name) before its
    /// text, an assistant's tool uses as its tool calls (input as the object).
    #[test]
    fn blocks_become_chat_messages() {
        let (m, prefill) = chat_messages(
            Some(&json!([{"type": "text", "text": "Be brief."}])),
            &json!([
                {"role": "user", "content": "Weather?"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hm", "signature": "s"},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "t1", "name": "get", "input": {"city": "Oslo"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "18 C"}]},
                    {"type": "text", "text": "And tomorrow?"}]},
                {"role": "assistant", "content": "Tomorrow it"},
            ]),
        )
        .unwrap();
        assert!(prefill);
        assert_eq!(m[0], json!({"role": "system", "content": "Be brief."}));
        assert_eq!(m[1], json!({"role": "user", "content": "Weather?"}));
        assert_eq!(m[2]["content"], "Checking.");
        assert_eq!(m[2]["reasoning_content"], "hm");
        assert_eq!(
            m[2]["tool_calls"][0],
            json!({"id": "t1", "type": "function", "function": {"name": "get", "arguments": {"city": "Oslo"}}})
        );
        assert_eq!(
            m[3],
            json!({"role": "tool", "tool_call_id": "t1", "content": "18 C", "name": "get"})
        );
        assert_eq!(m[4], json!({"role": "user", "content": "And tomorrow?"}));
        assert_eq!(m[5], json!({"role": "assistant", "content": "Tomorrow it"}));
        assert_eq!(m.len(), 6);
    }

    #[test]
    fn bad_blocks_name_their_place() {
        for (v, param, words) in [
            (json!([]), "messages", "empty"),
            (
                json!([{"role": "system", "content": "x"}]),
                "messages[0].role",
                "system field",
            ),
            (
                json!([{"role": "user", "content": 5}]),
                "messages[0].content",
                "string or an array",
            ),
            (
                json!([{"role": "user", "content": [{"type": "image", "source": {}}]}]),
                "messages[0].content",
                "image",
            ),
            (
                json!([{"role": "user", "content": [{"type": "tool_result"}]}]),
                "messages[0].content",
                "tool_use_id",
            ),
            (
                json!([{"role": "assistant", "content": [{"type": "tool_use", "id": "x"}]}]),
                "messages[0].content",
                "name",
            ),
            (
                json!([{"role": "user", "content": [{"text": "x"}]}]),
                "messages[0].content",
                "no type",
            ),
        ] {
            let e = chat_messages(None, &v).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{v}");
            assert!(e.detail.contains(words), "{v}: {}", e.detail);
        }
    }

    #[test]
    fn tools_and_choices_take_the_chat_shape() {
        let t = chat_tools(
            &json!([{"name": "f", "description": "d", "input_schema": {"type": "object"}}]),
        )
        .unwrap();
        assert_eq!(
            t,
            json!([{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}}}])
        );
        assert_eq!(
            chat_tools(&json!([{"type": "web_search_20250305", "name": "w"}]))
                .unwrap_err()
                .param
                .as_deref(),
            Some("tools[0]")
        );
        assert_eq!(
            chat_tool_choice(&Some(json!({"type": "any"}))).unwrap(),
            (Some(json!("required")), false)
        );
        assert_eq!(
            chat_tool_choice(&Some(
                json!({"type": "tool", "name": "f", "disable_parallel_tool_use": true})
            ))
            .unwrap(),
            (
                Some(json!({"type": "function", "function": {"name": "f"}})),
                true
            )
        );
        assert!(chat_tool_choice(&Some(json!({"type": "sometimes"}))).is_err());
        assert_eq!(
            chat_format(&Some(
                json!({"format": {"type": "json_schema", "schema": {"type": "object"}}})
            ))
            .unwrap()
            .unwrap()["json_schema"]["schema"],
            json!({"type": "object"})
        );
        assert_eq!(
            chat_format(&Some(json!({"format": {"type": "xml"}})))
                .unwrap_err()
                .param
                .as_deref(),
            Some("output_config.format")
        );
        let e = renamed(bad("stop", "stop must be a string"));
        assert_eq!(e.param.as_deref(), Some("stop_sequences"));
        assert_eq!(
            renamed(bad("stop_token_ids", "x")).param.as_deref(),
            Some("stop_token_ids")
        );
        assert_eq!(
            renamed(bad("messages[2].content", "x")).param.as_deref(),
            Some("messages")
        );
    }
}
