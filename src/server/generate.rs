//! Text generation over HTTP (`POST /api/v1/generate`, whole result or Server-Sent
//! Events) and WebSocket (`/ws/inference`). Both share the engine queue with
//! `/forward`; a client that goes away cancels its generation.

use std::convert::Infallible;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, State};
use axum::http::{header, HeaderMap};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::guard::Client;
use super::limits::Held;
use super::params;
use super::routes::{json_body, validate_text};
use super::state::AppState;
use crate::engine::{GenEvent, GenStream, GenerateRequest, GenerateResult, Phase};
use crate::error::Error;

/// Generation parameters, for `POST /api/v1/generate` and `inference` WebSocket messages.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateBody {
    /// The prompt, 1..=10000 characters (`prompt` is accepted as an alias).
    #[serde(alias = "prompt")]
    #[schema(example = "Deep learning is", min_length = 1, max_length = 10000)]
    pub text: String,
    /// 1..=4096 new tokens; bounded by the model's context.
    #[serde(
        default = "default_max_new_tokens",
        deserialize_with = "params::int::i64"
    )]
    #[schema(minimum = 1, maximum = 4096)]
    pub max_new_tokens: i64,
    /// 0 = greedy; up to 10.
    #[serde(default = "default_temperature")]
    #[schema(minimum = 0, maximum = 10)]
    pub temperature: f64,
    /// Sample among the k most likely tokens; 0 = no limit.
    #[serde(default = "default_top_k", deserialize_with = "params::int::i64")]
    #[schema(minimum = 0, maximum = 100000)]
    pub top_k: i64,
    /// Nucleus sampling: the smallest set of tokens whose probability reaches p, in (0, 1].
    #[serde(default = "default_top_p")]
    #[schema(exclusive_minimum = 0, maximum = 1)]
    pub top_p: f64,
    /// Same seed, same text (0..=2^63-1). Default: a fresh seed per request.
    #[serde(default, deserialize_with = "params::int::opt_u64")]
    #[schema(minimum = 0, maximum = 9223372036854775807i64)]
    pub seed: Option<u64>,
    /// Up to 16 strings of 1 to 256 characters; generation ends before the first one that appears.
    #[serde(default)]
    #[schema(max_items = 16, value_type = Vec<super::types::StopText>)]
    pub stop: Vec<String>,
    /// HTTP: stream Server-Sent Events (also with `Accept: text/event-stream`).
    /// WebSocket: send one `token` message per token before `complete`.
    #[serde(default)]
    pub stream: bool,
    /// Extension: each streamed `token` event also carries `probability`, the
    /// token's probability under the model before sampling (temperature 1).
    #[serde(default)]
    pub probabilities: bool,
    /// Keep only the tokens at least this likely relative to the most likely one
    /// (after top-k and top-p), 0..=1; 0 = no limit.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1)]
    pub min_p: Option<f64>,
    /// (0, 10]: a token of the prompt or already generated has a positive logit
    /// divided by it, a negative one multiplied (Hugging Face's rule); 1 = none.
    #[serde(default)]
    #[schema(exclusive_minimum = 0, maximum = 10)]
    pub repetition_penalty: Option<f64>,
    /// -2..=2: subtracted once from the logit of every token already generated (OpenAI's).
    #[serde(default)]
    #[schema(minimum = -2, maximum = 2)]
    pub presence_penalty: Option<f64>,
    /// -2..=2: subtracted from a token's logit once for each time it was generated.
    #[serde(default)]
    #[schema(minimum = -2, maximum = 2)]
    pub frequency_penalty: Option<f64>,
    /// Token id (as a string) → -100..=100 added to its logit (-100 bans it); at most
    /// 1024 tokens.
    #[serde(default)]
    pub logit_bias: Option<std::collections::BTreeMap<String, f64>>,
    /// No end before this many new tokens (at most `max_new_tokens`): end-of-text and
    /// stop tokens cannot be picked, stop strings are not looked for.
    #[serde(default, deserialize_with = "params::int::opt_i64")]
    #[schema(minimum = 0)]
    pub min_tokens: Option<i64>,
    /// Go on past the model's end-of-text tokens.
    #[serde(default)]
    pub ignore_eos: bool,
    /// Generation also ends at these token ids (at most 32); the token is not in the
    /// text.
    #[serde(default, deserialize_with = "params::int::ids")]
    pub stop_token_ids: Vec<u32>,
}

fn default_max_new_tokens() -> i64 {
    32
}
fn default_temperature() -> f64 {
    1.0
}
fn default_top_k() -> i64 {
    50
}
fn default_top_p() -> f64 {
    1.0
}

impl GenerateBody {
    /// Check every rule; the error names the field.
    pub fn validate(&self) -> Result<GenerateRequest, ApiError> {
        validate_text(&self.text)?;
        let c = params::check(
            params::Requested {
                max_tokens: self.max_new_tokens,
                temperature: self.temperature,
                top_k: self.top_k,
                top_p: self.top_p,
                seed: self.seed.map(i128::from),
                stop: self.stop.clone(),
                controls: params::Controls {
                    min_p: self.min_p.map(Into::into),
                    presence_penalty: self.presence_penalty.map(Into::into),
                    frequency_penalty: self.frequency_penalty.map(Into::into),
                    repetition_penalty: self.repetition_penalty.map(Into::into),
                    logit_bias: self.logit_bias.clone().map(|b| b.into_iter().collect()),
                    min_tokens: self.min_tokens.map(Into::into),
                    ignore_eos: Some(self.ignore_eos.into()),
                    stop_token_ids: Some(self.stop_token_ids.clone().into()),
                },
            },
            &params::V1,
        )?;
        let mut req = GenerateRequest::new(self.text.clone(), c.max_tokens, c.sampling, c.stop);
        c.ends.apply(&mut req);
        if self.probabilities {
            req.logprobs = Some(0);
        }
        Ok(req)
    }
}

/// `complete` result, as JSON for `POST /api/v1/generate` without streaming.
#[derive(Debug, Serialize, ToSchema)]
pub struct GenerateResponse {
    pub success: bool,
    /// The generated text (the prompt is not repeated).
    pub text: String,
    /// Tokens generated.
    pub tokens: usize,
    pub token_ids: Vec<u32>,
    pub prompt_tokens: usize,
    /// length, stop or end_of_text.
    pub finish_reason: String,
    /// Seconds.
    pub processing_time: f64,
    pub prefill_time: f64,
    pub decode_tokens_per_second: f64,
}

impl From<GenerateResult> for GenerateResponse {
    fn from(r: GenerateResult) -> Self {
        GenerateResponse {
            success: true,
            finish_reason: serde_json::to_value(r.finish_reason)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            text: r.text,
            tokens: r.tokens,
            token_ids: r.token_ids,
            prompt_tokens: r.prompt_tokens,
            processing_time: r.processing_time,
            prefill_time: r.prefill_time,
            decode_tokens_per_second: r.decode_tokens_per_second,
        }
    }
}

/// The JSON of one streamed event (SSE `data:` and WebSocket text frames alike).
pub fn event_json(ev: &GenEvent) -> serde_json::Value {
    match ev {
        GenEvent::Token {
            index,
            token_id,
            text,
            logprob,
        } => {
            let mut v = serde_json::json!({"type": "token", "token": text, "token_id": token_id, "index": index});
            if let Some(lp) = logprob {
                v["probability"] = serde_json::json!(lp.logprob.exp());
            }
            v
        }
        GenEvent::Prompt { ids, .. } => serde_json::json!({"type": "prompt", "token_ids": ids}),
        GenEvent::Complete(r) => {
            serde_json::json!({"type": "complete", "result": GenerateResponse::from(r.clone())})
        }
        GenEvent::Error(e) => {
            serde_json::json!({"type": "error", "error": e.to_string(), "error_code": e.code()})
        }
    }
}

/// Generate text: the whole result as JSON, or Server-Sent Events (`token` events,
/// then one `complete` or `error`) with `stream: true` or `Accept: text/event-stream`.
#[utoipa::path(post, path = "/api/v1/generate", tag = "generation", request_body = GenerateBody,
    responses(
        (status = 200, description = "The whole result as JSON; with `stream: true` or `Accept: text/event-stream`, Server-Sent Events: `event: token` (data `{\"type\":\"token\",\"token\",\"token_id\",\"index\"}`) per token, then one `event: complete` (data `{\"type\":\"complete\",\"result\": GenerateResponse}`) or `event: error` (data `{\"type\":\"error\",\"error\",\"error_code\"}`)",
            content((GenerateResponse = "application/json"), (String = "text/event-stream"))),
        (status = 400, description = "INVALID_INPUT, SEQUENCE_TOO_LONG or MODEL_NOT_INITIALIZED", body = ErrorBody),
        (status = 401, description = "UNAUTHORIZED: API key missing or wrong", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED (Retry-After)", body = ErrorBody),
        (status = 503, description = "SERVICE_UNAVAILABLE: engine queue full (Retry-After)", body = ErrorBody),
        (status = 504, description = "TIMEOUT: the generation did not start or finish within the server's deadline", body = ErrorBody)))]
pub async fn generate(
    State(st): State<AppState>,
    client: Option<Extension<Client>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let client = client.map(|Extension(c)| c);
    let b: GenerateBody = json_body(&st, body).await?;
    let wants_sse = b.stream
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/event-stream"));
    let req = b.validate()?;
    let mut rx = st.engine.generate(req)?;
    // Wait for the first event so that errors before any token are HTTP errors.
    let first = rx
        .recv()
        .await
        .ok_or_else(|| ApiError::from(Error::Unavailable("the engine stopped".into())))?;
    if let GenEvent::Error(e) = first {
        return Err(e.into());
    }
    if !wants_sse {
        let mut ev = first;
        loop {
            match ev {
                GenEvent::Complete(r) => {
                    st.charge_tokens(client.as_ref(), r.tokens);
                    return Ok(Json(GenerateResponse::from(r)).into_response());
                }
                GenEvent::Error(e) => return Err(e.into()),
                GenEvent::Token { .. } | GenEvent::Prompt { .. } => {}
            }
            ev = rx
                .recv()
                .await
                .ok_or_else(|| ApiError::from(Error::Unavailable("the engine stopped".into())))?;
        }
    }
    let stream = sse_stream(first, rx, st, client);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

fn sse_event(ev: &GenEvent) -> Event {
    let name = match ev {
        GenEvent::Token { .. } => "token",
        GenEvent::Prompt { .. } => "prompt",
        GenEvent::Complete(_) => "complete",
        GenEvent::Error(_) => "error",
    };
    Event::default()
        .event(name)
        .data(event_json(ev).to_string())
}

/// The SSE events of a generation; each token is charged to the client's rate limit
/// as it goes out.
fn sse_stream(
    first: GenEvent,
    rx: GenStream,
    st: AppState,
    client: Option<Client>,
) -> impl futures_core::Stream<Item = Result<Event, Infallible>> {
    // state: (pending first event, receiver, finished)
    futures_util::stream::unfold(
        (Some(first), rx, false),
        move |(first, mut rx, finished)| {
            let (st, client) = (st.clone(), client.clone());
            async move {
                if finished {
                    return None;
                }
                let ev = match first {
                    Some(ev) => ev,
                    None => rx.recv().await?,
                };
                let last = ev.is_final();
                if matches!(ev, GenEvent::Token { .. }) {
                    st.charge_tokens(client.as_ref(), 1);
                }
                Some((Ok(sse_event(&ev)), (None, rx, last)))
            }
        },
    )
}

/// WebSocket `/ws/inference`: `{"type": "inference", "text": ..., "stream": true, ...}`
/// starts a generation; `{"type": "cancel"}` stops it. The server answers `token`,
/// `complete` and `error` messages; a bad message gets an `error` and the connection
/// stays usable for the next request. At most `max_websockets` sessions are open;
/// a session with no generation running and no message for `idle_timeout` is closed.
/// Browsers that pass the API key as the subprotocol `bearer.<key>` also offer
/// `wgformer`, which the server selects. On shutdown a running generation goes on to
/// `complete` (or, at the shutdown deadline, an `error` with `SHUTTING_DOWN`), then
/// the session is closed with 1001 (going away); an idle session is closed at once.
pub async fn ws_inference(
    State(st): State<AppState>,
    client: Option<Extension<Client>>,
    slots: Option<Extension<super::limits::ConnectionSlots>>,
    ws: WebSocketUpgrade,
) -> Response {
    let Some(held) = Held::try_new(&st.websockets, st.config.max_websockets) else {
        return ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            format!(
                "too many WebSocket sessions open ({}); retry shortly",
                st.config.max_websockets
            ),
        )
        .into_response();
    };
    let client = client.map(|Extension(c)| c);
    // the session keeps the connection's place in the connection caps while it is open
    let connection = slots.and_then(|Extension(s)| s.take());
    ws.protocols(["wgformer"])
        .on_upgrade(move |socket| async move {
            ws_session(st, client, socket).await;
            drop((held, connection));
        })
}

async fn send_json(socket: &mut WebSocket, v: serde_json::Value) -> bool {
    socket
        .send(Message::Text(v.to_string().into()))
        .await
        .is_ok()
}

fn ws_error(detail: impl Into<String>, code: &str) -> serde_json::Value {
    serde_json::json!({"type": "error", "error": detail.into(), "error_code": code})
}

enum Incoming {
    Inference(Box<GenerateBody>),
    Cancel,
    Bad(String),
    Closed,
    Ignore,
}

fn parse_incoming(msg: Option<Result<Message, axum::Error>>) -> Incoming {
    let text = match msg {
        None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Incoming::Closed,
        Some(Ok(Message::Text(t))) => t.to_string(),
        Some(Ok(Message::Binary(b))) => match String::from_utf8(b.to_vec()) {
            Ok(t) => t,
            Err(_) => return Incoming::Bad("binary messages must be UTF-8 JSON".into()),
        },
        Some(Ok(_)) => return Incoming::Ignore, // ping/pong
    };
    let mut v: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => return Incoming::Bad(format!("message is not valid JSON: {e}")),
    };
    let Some(obj) = v.as_object_mut() else {
        return Incoming::Bad("message must be a JSON object with a `type`".into());
    };
    let ty = obj.remove("type");
    match ty.as_ref().and_then(|t| t.as_str()) {
        Some("inference") => match serde_path_to_error::deserialize::<_, GenerateBody>(v) {
            Ok(b) => Incoming::Inference(Box::new(b)),
            Err(e) => {
                let path = e.path().to_string();
                Incoming::Bad(format!("invalid field `{path}`: {}", e.into_inner()))
            }
        },
        Some("cancel") => Incoming::Cancel,
        Some(other) => Incoming::Bad(format!(
            "unknown message type `{other}`: use `inference` or `cancel`"
        )),
        None => Incoming::Bad("message has no `type`: use `inference` or `cancel`".into()),
    }
}

/// Close with 1001: the server is going away (shutting down).
async fn going_away(socket: &mut WebSocket) {
    let frame = axum::extract::ws::CloseFrame {
        code: axum::extract::ws::close_code::AWAY,
        reason: "the service is shutting down".into(),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

async fn ws_session(st: AppState, client: Option<Client>, mut socket: WebSocket) {
    let idle = st.config.idle_timeout;
    let mut phase = st.engine.watch_phase();
    loop {
        if *phase.borrow_and_update() != Phase::Serving {
            going_away(&mut socket).await;
            return;
        }
        let msg = tokio::select! {
            m = tokio::time::timeout(idle, socket.recv()) => m,
            _ = phase.changed() => continue, // looked at above
        };
        let Ok(msg) = msg else {
            let _ = send_json(
                &mut socket,
                ws_error(
                    format!("closing: no message for {} s", idle.as_secs_f64()),
                    "TIMEOUT",
                ),
            )
            .await;
            let _ = socket.send(Message::Close(None)).await;
            return;
        };
        let body = match parse_incoming(msg) {
            Incoming::Closed => return,
            Incoming::Ignore => continue,
            Incoming::Cancel => {
                if !send_json(
                    &mut socket,
                    ws_error(
                        "nothing to cancel: no generation is running",
                        "INVALID_INPUT",
                    ),
                )
                .await
                {
                    return;
                }
                continue;
            }
            Incoming::Bad(detail) => {
                if !send_json(&mut socket, ws_error(detail, "INVALID_INPUT")).await {
                    return;
                }
                continue;
            }
            Incoming::Inference(b) => b,
        };
        // each message that starts work takes from the client's bucket, as an HTTP
        // request does (the upgrade itself took one)
        if let Err(e) = st.take_request(client.as_ref()) {
            let mut msg = ws_error(e.detail, e.code);
            msg["retry_after"] = serde_json::json!(e.retry_after);
            if !send_json(&mut socket, msg).await {
                return;
            }
            continue;
        }
        let stream = body.stream;
        let req = match body.validate() {
            Ok(r) => r,
            Err(e) => {
                if !send_json(&mut socket, ws_error(e.detail, e.code)).await {
                    return;
                }
                continue;
            }
        };
        let mut rx = match st.engine.generate(req) {
            Ok(rx) => rx,
            Err(e) => {
                if !send_json(&mut socket, ws_error(e.to_string(), e.code())).await {
                    return;
                }
                continue;
            }
        };
        // Relay events; meanwhile listen for `cancel` and for the client going away.
        loop {
            tokio::select! {
                ev = rx.recv() => {
                    let Some(ev) = ev else {
                        let _ = send_json(&mut socket, ws_error("the engine stopped", "SERVICE_UNAVAILABLE")).await;
                        break;
                    };
                    let last = ev.is_final();
                    if matches!(ev, GenEvent::Token { .. }) {
                        st.charge_tokens(client.as_ref(), 1);
                    }
                    if (stream || last) && !send_json(&mut socket, event_json(&ev)).await {
                        return; // dropping rx cancels the generation
                    }
                    if last {
                        break;
                    }
                }
                msg = socket.recv() => match parse_incoming(msg) {
                    Incoming::Closed => return,
                    Incoming::Ignore => {}
                    Incoming::Cancel => {
                        drop(rx);
                        if !send_json(&mut socket, ws_error("generation cancelled by the client", "CANCELLED")).await {
                            return;
                        }
                        break;
                    }
                    Incoming::Inference(_) => {
                        if !send_json(&mut socket, ws_error("a generation is already running on this connection: wait for `complete` or send `cancel`", "INVALID_INPUT")).await {
                            return;
                        }
                    }
                    Incoming::Bad(detail) => {
                        if !send_json(&mut socket, ws_error(detail, "INVALID_INPUT")).await {
                            return;
                        }
                    }
                }
            }
        }
    }
}
