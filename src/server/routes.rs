//! Handlers of the v1 contract, plus readiness, metrics and the OpenAPI document.

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;

use super::error::{ApiError, ErrorBody};
use super::state::AppState;
use super::time;
use super::types::*;
use crate::engine::{AttentionSelect, ForwardReply, ForwardRequest};
use crate::kernels::logit_lens::MAX_LENS_K;

/// Longest accepted `text`, in characters.
pub const MAX_TEXT_CHARS: usize = 10_000;
/// Largest accepted `max_length`.
pub const MAX_LENGTH: i64 = 4096;
/// Largest accepted `top_k`.
pub const MAX_TOP_K: i64 = 100;

/// Decode `application/x-www-form-urlencoded` text (`+` is a space, `%XX` a byte).
/// Raw JSON as curl sends it (`{`, `"`, `:` unencoded) passes through unchanged.
fn form_decode(s: &str) -> Result<String, ApiError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "CONFIG_ERROR",
            "invalid config: the config parameter is not valid UTF-8",
        )
    })
}

/// Build (or rebuild) the model from a config.
#[utoipa::path(get, path = "/api/v1/initialize", tag = "model",
    params(("config" = Option<String>, Query, min_length = 1, description = "JSON object with any subset of the config keys (raw or percent-encoded); leave the parameter out for every default")),
    responses(
        (status = 200, body = InitializeResponse),
        (status = 400, description = "CONFIG_ERROR: invalid config; the previous model stays in service", body = ErrorBody),
        (status = 500, description = "INFERENCE_ERROR: the device failed while building", body = ErrorBody),
        (status = 503, description = "SERVICE_UNAVAILABLE: engine queue full", body = ErrorBody)))]
pub async fn initialize(
    State(st): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<InitializeResponse>, ApiError> {
    let mut config = serde_json::json!({});
    for pair in query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if form_decode(k)? == "config" {
            let text = form_decode(v)?;
            config = serde_json::from_str(&text).map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "CONFIG_ERROR",
                    format!("invalid config: config is not valid JSON: {e}"),
                )
            })?;
        }
    }
    let cfg = st.engine.initialize(config).await?;
    Ok(Json(InitializeResponse {
        success: true,
        message: "Model initialized".into(),
        config: cfg,
    }))
}

/// Read a JSON body up to the configured limit; every failure is a contract error.
/// The body must arrive within `config.body_timeout` (408 otherwise).
pub(crate) async fn json_body<T: serde::de::DeserializeOwned>(
    st: &AppState,
    body: Body,
) -> Result<T, ApiError> {
    let (limit, wait) = (st.config.max_body_bytes, st.config.body_timeout);
    // a declared Content-Length over the limit is refused at once: the body is not
    // read (nor `100 Continue` sent) and the client does not wait for the body timeout
    let declared = axum::body::HttpBody::size_hint(&body).lower();
    if declared > limit as u64 {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!("request body of {declared} bytes exceeds the limit of {limit} bytes"),
        ));
    }
    let read = tokio::time::timeout(wait, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "REQUEST_TIMEOUT",
                format!(
                    "the request body did not arrive within {} s",
                    wait.as_secs_f64()
                ),
            )
        })?;
    let bytes: Bytes = read.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!("request body exceeds the limit of {limit} bytes"),
        )
    })?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::invalid(format!("request body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::invalid(
            "invalid request body: expected a JSON object",
        ));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = e.path().iter().next().map(|s| s.to_string());
        let inner = e.into_inner();
        if path == "." {
            let err = ApiError::invalid(format!("invalid request body: {inner}"));
            // a missing or unknown field is named in serde's message
            match missing_field(&inner.to_string()) {
                Some(f) => err.param(f),
                None => err,
            }
        } else {
            let err = ApiError::invalid(format!("invalid field `{path}`: {inner}"));
            match field {
                Some(f) => err.param(f),
                None => err,
            }
        }
    })
}

/// The field serde names in "missing field `x`" / "unknown field `x`".
fn missing_field(msg: &str) -> Option<String> {
    let rest = msg
        .strip_prefix("missing field `")
        .or_else(|| msg.strip_prefix("unknown field `"))?;
    rest.split('`').next().map(String::from)
}

/// The `text` rule shared by /forward, /generate and WebSocket requests: 1..=10000 characters.
pub(crate) fn validate_text(text: &str) -> Result<(), ApiError> {
    if text.is_empty() {
        return Err(ApiError::invalid("input text must not be empty"));
    }
    let chars = text.chars().count();
    if chars > MAX_TEXT_CHARS {
        return Err(ApiError::invalid(format!(
            "text has {chars} characters; at most {MAX_TEXT_CHARS} are accepted"
        )));
    }
    Ok(())
}

fn validate(b: &ForwardBody) -> Result<ForwardRequest, ApiError> {
    validate_text(&b.text)?;
    if let Some(n) = b.max_length {
        if !(1..=MAX_LENGTH).contains(&n) {
            return Err(ApiError::invalid(format!(
                "max_length ({n}) must be between 1 and {MAX_LENGTH}, or null"
            )));
        }
    }
    if !(0..=MAX_TOP_K).contains(&b.top_k) {
        return Err(ApiError::invalid(format!(
            "top_k ({}) must be between 0 and {MAX_TOP_K}",
            b.top_k
        )));
    }
    let attention = attention_choice(b.capture_attention.as_ref())?;
    if !(1..=MAX_LENS_K as i64).contains(&b.logit_lens_top_k) {
        return Err(ApiError::invalid(format!(
            "logit_lens_top_k ({}) must be between 1 and {MAX_LENS_K}",
            b.logit_lens_top_k
        )));
    }
    Ok(ForwardRequest {
        text: b.text.clone(),
        max_length: b.max_length.map(|n| n as usize),
        top_k: b.top_k as usize,
        capture: b.capture_data || attention.is_some() || b.capture_logit_lens,
        attention,
        logit_lens: if b.capture_logit_lens {
            b.logit_lens_top_k as usize
        } else {
            0
        },
    })
}

/// `capture_attention`: absent, `false`, `true` or `{"layers": [..], "heads": [..]}`.
fn attention_choice(v: Option<&serde_json::Value>) -> Result<Option<AttentionSelect>, ApiError> {
    use serde_json::Value;
    let wrong = || {
        ApiError::invalid(
            "capture_attention must be true, false, or {\"layers\": [layer indices], \"heads\": [head indices]}",
        )
    };
    let list = |key: &str, v: Option<&Value>| -> Result<Option<Vec<usize>>, ApiError> {
        let Some(v) = v.filter(|v| !v.is_null()) else {
            return Ok(None); // absent or null: all of them
        };
        let items = v.as_array().ok_or_else(wrong)?;
        if items.is_empty() || items.len() > 1024 {
            return Err(ApiError::invalid(format!(
                "capture_attention.{key} must list 1 to 1024 indices"
            )));
        }
        items
            .iter()
            .map(|x| {
                x.as_u64().map(|n| n as usize).ok_or_else(|| {
                    ApiError::invalid(format!(
                        "capture_attention.{key} holds {x}: indices are integers from 0"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    };
    match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => Ok(None),
        Some(Value::Bool(true)) => Ok(Some(AttentionSelect::default())),
        Some(Value::Object(o)) => {
            if let Some(k) = o
                .keys()
                .find(|k| !["layers", "heads", "format"].contains(&k.as_str()))
            {
                return Err(ApiError::invalid(format!(
                    "capture_attention has an unknown key {k:?}: it takes \"layers\", \"heads\" and \"format\""
                )));
            }
            let half = match o.get("format") {
                None | Some(Value::Null) => false,
                Some(Value::String(f)) if f == "json" => false,
                Some(Value::String(f)) if f == "f16" => true,
                Some(other) => {
                    return Err(ApiError::invalid(format!(
                        "capture_attention.format is {other}: use \"json\" (nested arrays) or \"f16\" (base64 f16 of each row's keys up to the query)"
                    )))
                }
            };
            Ok(Some(AttentionSelect {
                layers: list("layers", o.get("layers"))?,
                heads: list("heads", o.get("heads"))?,
                half,
            }))
        }
        Some(_) => Err(wrong()),
    }
}

fn captured(r: &ForwardReply) -> Option<CapturedData> {
    let cap = r.capture.as_ref()?;
    let t = r.tokens;
    // a layer asked twice gets the weights once
    let chosen = |layer: usize| r.attention.iter().find(|a| a.layer == layer);
    let tensor = |shape: Vec<usize>| TensorInfo {
        shape,
        dtype: "torch.float32".into(),
    };
    Some(CapturedData {
        logit_lens: r.logit_lens.as_ref().map(|layers| {
            layers
                .iter()
                .map(|positions| {
                    positions
                        .iter()
                        .map(|tops| {
                            tops.iter()
                                .map(|p| TopPrediction {
                                    token_id: p.token_id,
                                    token: p.token.clone(),
                                    probability: p.probability,
                                })
                                .collect()
                        })
                        .collect()
                })
                .collect()
        }),
        embeddings: EmbeddingCapture {
            token_embeddings: tensor(vec![1, t, r.n_embed]),
            position_embeddings: tensor(vec![1, t, r.n_embed]),
            output_norm_mean: cap.embedding_norm_mean,
        },
        layers: cap
            .layers
            .iter()
            .map(|l| LayerCaptureBody {
                layer_idx: l.layer_idx,
                attention: AttentionCapture {
                    attn_weights_shape: vec![1, r.n_head, t, t],
                    n_kv_head: r.n_kv_head,
                    mean_entropy: l.attention_entropy.iter().sum::<f32>()
                        / l.attention_entropy.len().max(1) as f32,
                    head_entropy: l.attention_entropy.clone(),
                    block_size: l.sparse_block_size,
                    block_density: l.sparse_density,
                    heads: chosen(l.layer_idx).map(|a| a.heads.clone()),
                    weights: chosen(l.layer_idx)
                        .filter(|a| a.weights_f16.is_none())
                        .map(|a| a.weights.clone()),
                    weights_f16: chosen(l.layer_idx).and_then(|a| a.weights_f16.clone()),
                    listed_blocks: chosen(l.layer_idx).and(r.listed_blocks.clone()),
                },
                moe: l.moe.as_ref().map(|m| MoeCaptureBody {
                    expert_usage: m.expert_usage.clone(),
                    load_balance_loss: m.load_balance_loss,
                    routing: m
                        .routing
                        .iter()
                        .map(|picks| TokenRouting {
                            experts: picks.iter().map(|p| p.0).collect(),
                            weights: picks.iter().map(|p| p.1).collect(),
                        })
                        .collect(),
                }),
                residual: ResidualCapture {
                    norm_mean: l.residual_norm_mean,
                    norm_max: l.residual_norm_max,
                },
            })
            .collect(),
        performance: PerformanceCapture {
            forward_time: r.seconds,
            memory_usage: r.device_memory_mb,
        },
        token_logprobs: r
            .next_token_ranks
            .last()
            .map(|scores| {
                scores
                    .iter()
                    .zip(r.token_list.iter().skip(1))
                    .map(|(&(rank, logprob), tok)| NextTokenScore {
                        token_id: tok.id,
                        token: tok.text.clone(),
                        logprob,
                        rank,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        logit_lens_ranks: r.logit_lens.as_ref().map(|_| {
            r.next_token_ranks
                .iter()
                .map(|layer| layer.iter().map(|&(rank, _)| rank).collect())
                .collect()
        }),
    })
}

/// Run a forward pass on text.
#[utoipa::path(post, path = "/api/v1/forward", tag = "model", request_body = ForwardBody,
    responses(
        (status = 200, body = ForwardResponse),
        (status = 400, description = "INVALID_INPUT, SEQUENCE_TOO_LONG or MODEL_NOT_INITIALIZED", body = ErrorBody),
        (status = 413, description = "PAYLOAD_TOO_LARGE", body = ErrorBody),
        (status = 500, description = "INFERENCE_ERROR", body = ErrorBody),
        (status = 503, description = "SERVICE_UNAVAILABLE: engine queue full (Retry-After)", body = ErrorBody)))]
pub async fn forward(
    State(st): State<AppState>,
    body: Body,
) -> Result<Json<ForwardResponse>, ApiError> {
    let started = std::time::Instant::now();
    let b: ForwardBody = json_body(&st, body).await?;
    let req = validate(&b)?;
    let r = st.engine.forward(req).await?;
    st.metrics.forward(r.seconds, r.tokens);
    Ok(Json(ForwardResponse {
        success: true,
        message: "Forward pass complete".into(),
        logits_shape: vec![1, r.tokens, r.vocab],
        sequence_length: r.tokens,
        captured_data: captured(&r),
        processing_time: started.elapsed().as_secs_f64(),
        top_predictions: r
            .top
            .iter()
            .map(|p| TopPrediction {
                token_id: p.token_id,
                token: p.token.clone(),
                probability: p.probability,
            })
            .collect(),
        tokens: r
            .token_list
            .iter()
            .map(|t| TokenBody {
                id: t.id,
                text: t.text.clone(),
                start: t.start,
                end: t.end,
            })
            .collect(),
    }))
}

/// Model state, config, size, performance counters.
#[utoipa::path(get, path = "/api/v1/status", tag = "model", responses((status = 200, body = StatusResponse)))]
pub async fn status(State(st): State<AppState>) -> Json<StatusResponse> {
    let m = st.engine.model_snapshot();
    let c = st.engine.counters();
    let initialized = m.config.is_some();
    Json(StatusResponse {
        initialized,
        device: m.adapter.as_ref().map(|a| a.label()),
        model_info: initialized.then_some(ModelInfo {
            total_parameters: m.total_parameters,
            model_size_mb: m.model_size_mb,
            device_memory_mb: m.device_memory_mb,
        }),
        config: m.config,
        performance_stats: PerformanceStats {
            total_inferences: c.total_inferences,
            average_inference_time: if c.total_inferences > 0 {
                c.total_time / c.total_inferences as f64
            } else {
                0.0
            },
            last_inference_time: c.last_inference_time,
            total_tokens: c.total_tokens,
        },
        adapter: m.adapter,
        active_generations: m.active_generations,
        kv_cache_mb: m.kv_cache_mb,
        queue_depth: st.engine.queue_depth(),
        queue_capacity: st.engine.capacity(),
        engine_stalled: st.engine.state.stalled(),
        batching: batching_status(&st),
    })
}

fn batching_status(st: &AppState) -> BatchingStatus {
    let s = st.engine.sched();
    let o = st.engine.options();
    BatchingStatus {
        max_batch: o.max_batch,
        current_batch: s.current_batch,
        decoding: s.decoding,
        prefilling: s.prefilling,
        prefill_chunk: match s.prefill_chunk {
            0 => o.prefill_chunk_for(false),
            loaded => loaded,
        },
        waiting: s.waiting,
        decode_steps: s.decode_steps,
        mean_batch_size: s.batch_size.mean(),
        mean_queue_wait_seconds: s.queue_wait.mean(),
        tokens_per_second: s.tokens_per_second(),
        generated_tokens: s.generated_tokens,
        kv_pool: KvPoolStatus {
            pages: s.kv.pages,
            page_positions: s.kv.page,
            pages_used: s.kv.used,
            pages_free: s.kv.pages - s.kv.used,
            pages_available: s.kv.available,
            bytes: s.kv.bytes,
            dtype: if s.kv.half { "float16" } else { "float32" },
            prefix_cache: s.kv.prefix_cache,
            pages_cached: s.kv.cached,
            prompt_tokens: s.kv.prompt_positions,
            prefix_cache_hit_tokens: s.kv.hit_positions,
        },
    }
}

fn grade(percent: f64, degraded: f64, unhealthy: f64) -> &'static str {
    if percent >= unhealthy {
        "unhealthy"
    } else if percent >= degraded {
        "degraded"
    } else {
        "healthy"
    }
}

/// Service health: model, host memory, disk of the data directory.
#[utoipa::path(get, path = "/api/v1/health/health", tag = "health",
    responses((status = 200, body = HealthResponse), (status = 503, description = "a check is unhealthy (device lost, engine stalled, host memory or disk)", body = HealthResponse)))]
pub async fn health(State(st): State<AppState>) -> Response {
    let m = st.engine.model_snapshot();
    let (mem, disk) = tokio::task::spawn_blocking(super::state::host_figures)
        .await
        .unwrap_or_default();
    let cfg = &st.config;
    let stalled = st.engine.state.stalled();
    let model = ModelCheck {
        status: if m.device_lost || stalled.is_some() {
            "unhealthy"
        } else if m.config.is_some() {
            "healthy"
        } else {
            "not_initialized"
        }
        .into(),
        initialized: m.config.is_some(),
        device: m.adapter.as_ref().map(|a| a.label()),
        engine_stalled: stalled,
    };
    let memory = MemoryCheck {
        status: grade(
            mem.2,
            cfg.memory_degraded_percent,
            cfg.memory_unhealthy_percent,
        )
        .into(),
        used_mb: mem.0,
        available_mb: mem.1,
        usage_percent: mem.2,
    };
    let disk = DiskCheck {
        status: grade(
            disk.2,
            cfg.disk_degraded_percent,
            cfg.disk_unhealthy_percent,
        )
        .into(),
        used_gb: disk.0,
        available_gb: disk.1,
        usage_percent: disk.2,
    };
    let statuses = [
        model.status.as_str(),
        memory.status.as_str(),
        disk.status.as_str(),
    ];
    let overall = if statuses.contains(&"unhealthy") {
        "unhealthy"
    } else if statuses.contains(&"degraded") {
        "degraded"
    } else {
        "healthy"
    };
    let code = if overall == "unhealthy" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let body = HealthResponse {
        status: overall.into(),
        timestamp: time::now(),
        version: env!("CARGO_PKG_VERSION").into(),
        checks: HealthChecks {
            model,
            memory,
            disk,
        },
    };
    (code, Json(body)).into_response()
}

/// Liveness.
#[utoipa::path(get, path = "/api/v1/health/ping", tag = "health", responses((status = 200, body = PingResponse)))]
pub async fn ping() -> Json<PingResponse> {
    Json(PingResponse {
        message: "PONG".into(),
        timestamp: time::now(),
    })
}

/// Readiness for load balancers: 200 once a model is loaded and the device is healthy.
#[utoipa::path(get, path = "/api/v1/health/ready", tag = "health",
    responses((status = 200, body = ReadyResponse), (status = 503, description = "no model, the device was lost, the engine is stalled, or the service is shutting down", body = ErrorBody)))]
pub async fn ready(State(st): State<AppState>) -> Result<Json<ReadyResponse>, ApiError> {
    let m = st.engine.model_snapshot();
    if st.engine.phase() != crate::engine::Phase::Serving {
        return Err(crate::engine::shutting_down().into());
    }
    if let Some(why) = st.engine.state.stalled() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            format!("the engine is not making progress: {why}"),
        ));
    }
    if m.device_lost {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            "the GPU device was lost: call /api/v1/initialize to rebuild the model",
        ));
    }
    if m.config.is_none() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            "no model is loaded yet: call /api/v1/initialize or start with --config",
        ));
    }
    Ok(Json(ReadyResponse {
        ready: true,
        detail: format!(
            "model on {}",
            m.adapter.map(|a| a.label()).unwrap_or_default()
        ),
        timestamp: time::now(),
    }))
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain")))]
pub async fn metrics(State(st): State<AppState>) -> Response {
    let m = st.engine.model_snapshot();
    let text = st.metrics.render(&super::metrics::Gauges {
        queue_depth: st.engine.queue_depth(),
        running_generations: st.engine.running(),
        device_memory_bytes: m.device_memory_mb * (1u64 << 20) as f64,
        model_loaded: m.config.is_some(),
        engine_stalled: st.engine.state.stalled().is_some(),
        engine_seconds_since_progress: st.engine.state.seconds_since_progress(),
        open_connections: st.connections.load(std::sync::atomic::Ordering::SeqCst),
        open_websockets: st.websockets.load(std::sync::atomic::Ordering::SeqCst),
        sched: st.engine.sched(),
    });
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// A self-contained page that renders /openapi.json and sends requests (no network needed).
pub async fn docs() -> Html<&'static str> {
    Html(include_str!("docs.html"))
}

/// The explorer (`/`, `/explorer`): one self-contained page (plain SVG, no external
/// fonts or scripts) drawing forwards, attention, expert routing, the logit lens and
/// streamed generations from this API.
pub async fn explorer() -> impl IntoResponse {
    (
        [(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'",
        )],
        Html(include_str!("explorer.html")),
    )
}

/// Unknown path.
pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        format!("no endpoint at {}; see /openapi.json", uri.path()),
    )
}
