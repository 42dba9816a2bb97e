//! The router: every route with its method, the layers around them (request ids,
//! timeouts, keys, rate limits, CORS, metrics), the 405 answer and the OpenAPI document.

use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderName, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use utoipa::OpenApi;

use super::error::ApiError;
use super::state::AppState;
use super::{
    chat, embeddings, error, generate, guard, messages, openai, rerank, responses, routes, score,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "wgformer", description = "GPT-2-shaped transformer inference on wgpu with hand-written WGSL kernels. Contract v1."),
    paths(routes::initialize, routes::forward, generate::generate, routes::status, routes::health, routes::ping, routes::ready, routes::metrics,
        openai::models, openai::model, openai::completions, chat::chat_completions,
        embeddings::embeddings, rerank::rerank, score::score,
        messages::create, messages::count_tokens,
        responses::create, responses::input_tokens, responses::retrieve, responses::delete, responses::input_items_list, responses::cancel,
        openai::tokenize, openai::detokenize, chat::vllm_tokenize, chat::vllm_detokenize,
        chat::tokenizer_info),
    components(schemas(error::ErrorBody, openai::OpenAiErrorBody, crate::config::ModelConfig)),
    tags((name = "model"), (name = "generation", description = "POST /api/v1/generate, and the WebSocket /ws/inference (messages: inference, cancel → token, complete, error)"), (name = "health"), (name = "operations"),
        (name = "openai", description = "OpenAI-compatible API (the `openai` SDKs work unchanged); errors on /v1 routes are `{\"error\": {\"message\", \"type\", \"param\", \"code\"}}`"))
)]
struct ApiDoc;

/// The OpenAPI document of the service.
pub fn api_doc() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    common_responses(&mut doc);
    event_streams_are_text(&mut doc);
    tokenize_needs_prompt_or_messages(&mut doc);
    doc
}

/// Document the error answer `status` of `path`'s operation `op`, unless it is
/// documented already: its body is the contract's envelope, or OpenAI's shape on
/// `/v1` routes.
fn document_error(op: &mut utoipa::openapi::path::Operation, path: &str, status: &str, what: &str) {
    use utoipa::openapi::{Content, Ref, ResponseBuilder};
    let body = if path.starts_with("/v1/") {
        "OpenAiErrorBody"
    } else {
        "ErrorBody"
    };
    op.responses
        .responses
        .entry(status.to_string())
        .or_insert_with(|| {
            ResponseBuilder::new()
                .description(what)
                .content(
                    "application/json",
                    Content::new(Some(Ref::from_schema_name(body))),
                )
                .build()
                .into()
        });
}

/// The answers any operation may give besides its own (the guard's, the body
/// reader's, overload).
fn common_responses(doc: &mut utoipa::openapi::OpenApi) {
    const ANY: &[(&str, &str)] = &[
        (
            "403",
            "FORBIDDEN: Host not served, or a browser request from another origin",
        ),
        ("429", "RATE_LIMITED (Retry-After)"),
        (
            "503",
            "SERVICE_UNAVAILABLE (queue full, too many connections) or SHUTTING_DOWN (Retry-After)",
        ),
    ];
    const BODY: &[(&str, &str)] = &[
        ("400", "INVALID_INPUT: the body is not a JSON object of this schema, or a value is out of its range"),
        ("408", "REQUEST_TIMEOUT: the body did not arrive within --body-timeout"),
        ("413", "PAYLOAD_TOO_LARGE: body over --max-body-bytes"),
        ("415", "UNSUPPORTED_MEDIA_TYPE: the body is not sent as application/json"),
    ];
    for (path, item) in doc.paths.paths.iter_mut() {
        for (op, post) in [
            (&mut item.get, false),
            (&mut item.post, true),
            (&mut item.delete, false),
        ] {
            let Some(op) = op.as_mut() else { continue };
            for (status, what) in ANY.iter().chain(if post { BODY } else { &[] }) {
                document_error(op, path, status, what);
            }
        }
    }
}

/// Server-Sent Events are described in words (each operation's 200 says what its
/// events hold): a stream is text whose `data:` lines are JSON (or `[DONE]`), not one
/// JSON value of the 200's schema.
fn event_streams_are_text(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::RefOr;
    for item in doc.paths.paths.values_mut() {
        for op in [&mut item.get, &mut item.post].into_iter().flatten() {
            for resp in op.responses.responses.values_mut() {
                if let RefOr::T(r) = resp {
                    if let Some(c) = r.content.get_mut("text/event-stream") {
                        c.schema = None;
                    }
                }
            }
        }
    }
}

/// `POST /tokenize` takes a `prompt` or `messages`: say so in its schema.
fn tokenize_needs_prompt_or_messages(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::schema::{AllOfBuilder, AnyOfBuilder, ObjectBuilder, Schema};
    use utoipa::openapi::RefOr;
    let Some(components) = doc.components.as_mut() else {
        return;
    };
    let Some(RefOr::T(original)) = components.schemas.remove("VllmTokenizeBody") else {
        return;
    };
    let either = AnyOfBuilder::new()
        .item(ObjectBuilder::new().required("prompt"))
        .item(ObjectBuilder::new().required("messages"));
    let schema = AllOfBuilder::new().item(original).item(either).build();
    components
        .schemas
        .insert("VllmTokenizeBody".into(), RefOr::T(Schema::AllOf(schema)));
}

/// `GET /openapi.json`: the OpenAPI 3 document as this server answers.
async fn openapi_json(State(st): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        api_doc_for(&st.config).to_json().unwrap_or_default(),
    )
        .into_response()
}

/// The document as this server answers: with API keys configured, bearer
/// authentication is declared for every operation but the open ones (health, and
/// `/metrics` unless `--metrics-require-key`).
pub fn api_doc_for(config: &super::state::ServerConfig) -> utoipa::openapi::OpenApi {
    use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
    let mut doc = api_doc();
    if config.api_keys.is_empty() {
        return doc;
    }
    doc.components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    doc.security = Some(vec![SecurityRequirement::new(
        "bearer",
        Vec::<String>::new(),
    )]);
    for (path, item) in doc.paths.paths.iter_mut() {
        let open = guard::open_route(path, config.metrics_require_key);
        for op in [&mut item.get, &mut item.post, &mut item.delete]
            .into_iter()
            .flatten()
        {
            if open {
                op.security = Some(vec![SecurityRequirement::default()]);
                continue;
            }
            document_error(
                op,
                path,
                "401",
                "UNAUTHORIZED: the API key is missing or wrong (WWW-Authenticate: Bearer)",
            );
        }
    }
    doc
}

/// Routes the metrics label requests with (anything else is "unmatched").
const ROUTES: &[&str] = &[
    "/api/v1/initialize",
    "/api/v1/forward",
    "/api/v1/generate",
    "/ws/inference",
    "/api/v1/status",
    "/api/v1/health/health",
    "/api/v1/health/ping",
    "/api/v1/health/ready",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/",
    "/explorer",
    "/v1/models",
    "/v1/models/{model}",
    "/v1/completions",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/rerank",
    "/v1/score",
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/v1/responses",
    "/v1/responses/input_tokens",
    "/v1/responses/{response_id}",
    "/v1/responses/{response_id}/input_items",
    "/v1/responses/{response_id}/cancel",
    "/v1/tokenize",
    "/v1/detokenize",
    "/tokenize",
    "/detokenize",
    "/tokenizer_info",
];

/// The route template `path` answers to (`{...}` matches one segment), or
/// "unmatched": what the metrics label a request with, never the raw path.
fn route_of(path: &str) -> &'static str {
    let segments: Vec<&str> = path.split('/').collect();
    ROUTES
        .iter()
        .find(|r| {
            let t: Vec<&str> = r.split('/').collect();
            t.len() == segments.len()
                && t.iter().zip(&segments).all(|(t, s)| {
                    *t == *s || (t.starts_with('{') && t.ends_with('}') && !s.is_empty())
                })
        })
        .copied()
        .unwrap_or("unmatched")
}

/// Gives axum's own bodiless 405 the contract's error body.
async fn method_not_allowed(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    if resp.status() != StatusCode::METHOD_NOT_ALLOWED
        || resp.headers().get(header::CONTENT_TYPE).is_some()
    {
        return resp;
    }
    let allow = resp.headers().get(header::ALLOW).cloned();
    let mut resp = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        format!("{method} is not allowed on {path}: the Allow header and /openapi.json list its methods"),
    )
    .into_response();
    if let Some(a) = allow {
        resp.headers_mut().insert(header::ALLOW, a);
    }
    resp
}

/// Logs one line per request and counts it.
async fn observe(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    // sanitized by guard::sanitize_request_id, so safe to log as is
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    let resp = next.run(req).await;
    let route = route_of(&path);
    let status = resp.status().as_u16();
    st.metrics.request(method.as_str(), route, status);
    tracing::info!(request_id = ?id, method = ?method.as_str(), path = ?path, status, ms = start.elapsed().as_secs_f64() * 1e3, "request");
    resp
}

/// The whole application. Layers, outermost first: request id (a client's kept only
/// when well-formed), logging and metrics, the error bodies (the OpenAI shape on `/v1`
/// over 405's body), CORS (when configured), the guard (Host, cross-site, API key,
/// rate limit), the routes.
pub fn router(state: AppState) -> Router {
    let x_request_id = HeaderName::from_static("x-request-id");
    let cors = cors_layer(&state.config.cors_origins);
    let routes = Router::new()
        .route("/api/v1/initialize", get(routes::initialize))
        .route("/api/v1/forward", post(routes::forward))
        .route("/api/v1/generate", post(generate::generate))
        .route("/ws/inference", get(generate::ws_inference))
        .route("/api/v1/status", get(routes::status))
        .route("/api/v1/health/health", get(routes::health))
        .route("/api/v1/health/ping", get(routes::ping))
        .route("/api/v1/health/ready", get(routes::ready))
        .route("/metrics", get(routes::metrics))
        .route("/openapi.json", get(openapi_json))
        .route("/docs", get(routes::docs))
        .route("/", get(routes::explorer))
        .route("/explorer", get(routes::explorer))
        .route("/v1/models", get(openai::models))
        .route("/v1/models/{model}", get(openai::model))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/v1/embeddings", post(embeddings::embeddings))
        .route("/v1/rerank", post(rerank::rerank))
        .route("/v1/score", post(score::score))
        .route("/v1/messages", post(messages::create))
        .route("/v1/messages/count_tokens", post(messages::count_tokens))
        .route("/v1/responses", post(responses::create))
        .route("/v1/responses/input_tokens", post(responses::input_tokens))
        .route(
            "/v1/responses/{response_id}",
            get(responses::retrieve).delete(responses::delete),
        )
        .route(
            "/v1/responses/{response_id}/cancel",
            post(responses::cancel),
        )
        .route(
            "/v1/responses/{response_id}/input_items",
            get(responses::input_items_list),
        )
        .route("/v1/tokenize", post(openai::tokenize))
        .route("/v1/detokenize", post(openai::detokenize))
        .route("/tokenize", post(chat::vllm_tokenize))
        .route("/detokenize", post(chat::vllm_detokenize))
        .route("/tokenizer_info", get(chat::tokenizer_info))
        .fallback(routes::not_found)
        .layer(middleware::from_fn_with_state(state.clone(), guard::guard));
    let routes = match cors {
        Some(c) => routes.layer(c),
        None => routes,
    };
    routes
        .layer(middleware::from_fn(method_not_allowed))
        .layer(middleware::from_fn(openai::openai_errors))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(PropagateRequestIdLayer::new(x_request_id.clone()))
        .layer(SetRequestIdLayer::new(x_request_id, MakeRequestUuid))
        .layer(middleware::map_request(guard::sanitize_request_id))
        .with_state(state)
}

/// CORS for the configured origins; `None` (no CORS headers) when there are none.
fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| header::HeaderValue::from_str(o).ok()),
        )
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([
                axum::http::Method::GET,
                axum::http::Method::POST,
                axum::http::Method::DELETE,
            ])
            // (x-api-key and anthropic-version: what Anthropic's clients send)
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("x-request-id"),
                HeaderName::from_static("x-api-key"),
                HeaderName::from_static("anthropic-version"),
            ])
            .expose_headers([HeaderName::from_static("x-request-id"), header::RETRY_AFTER])
            .max_age(Duration::from_secs(600)),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_post_route_takes_json_and_is_listed_for_the_content_type_check() {
        let doc = super::api_doc();
        let mut posts: Vec<&str> = doc
            .paths
            .paths
            .iter()
            // (a POST without a body, such as a cancel, has nothing to check)
            .filter(|(_, item)| item.post.as_ref().is_some_and(|p| p.request_body.is_some()))
            .map(|(p, _)| p.as_str())
            .collect();
        posts.sort();
        let mut listed = super::guard::JSON_ROUTES.to_vec();
        listed.sort();
        assert_eq!(posts, listed);
    }

    #[test]
    fn requests_are_counted_by_route_template() {
        assert_eq!(super::route_of("/v1/responses"), "/v1/responses");
        assert_eq!(
            super::route_of("/v1/responses/resp_1/input_items"),
            "/v1/responses/{response_id}/input_items"
        );
        assert_eq!(super::route_of("/v1/models/gpt2"), "/v1/models/{model}");
        assert_eq!(super::route_of("/v1/models/"), "unmatched");
        assert_eq!(super::route_of("/"), "/");
        assert_eq!(super::route_of("/v1/nothing"), "unmatched");
    }
}
