//! The HTTP service: routes of the v1 contract (`shared/spec/api.md`), request ids,
//! per-request logs and metrics, the OpenAPI document, graceful shutdown.
//! Handlers never touch the GPU: they await the engine thread.

pub mod error;
pub mod generate;
pub mod guard;
pub mod lenient;
pub mod listen;
pub mod metrics;
pub mod openai;
pub mod routes;
pub mod time;
pub mod types;

use std::future::Future;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
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

use crate::engine::Engine;
use error::ApiError;
pub use guard::{default_allowed_hosts, RateLimit, RateLimiter};
pub use listen::serve;

/// Limits and thresholds of the service (logged at start-up).
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Largest accepted header section (431 beyond).
    pub max_header_bytes: usize,
    /// Host memory use (%) at which health turns degraded / unhealthy.
    pub memory_degraded_percent: f64,
    pub memory_unhealthy_percent: f64,
    /// Disk use (%) of the data directory at which health turns degraded / unhealthy.
    pub disk_degraded_percent: f64,
    pub disk_unhealthy_percent: f64,
    /// A request's header section must arrive within this.
    pub header_timeout: Duration,
    /// A request's body must arrive within this (408 otherwise).
    pub body_timeout: Duration,
    /// A connection (or WebSocket) with no traffic and no request being answered
    /// for this long is closed.
    pub idle_timeout: Duration,
    /// Open connections; more are answered 503 and closed.
    pub max_connections: usize,
    /// Open WebSocket sessions; more are answered 503.
    pub max_websockets: usize,
    /// After a shutdown signal, requests in flight get this long to finish.
    pub shutdown_timeout: Duration,
    /// Accepted API keys (`Authorization: Bearer`); empty = no key needed.
    pub api_keys: Vec<String>,
    /// `/metrics` needs a key too (when keys are configured).
    pub metrics_require_key: bool,
    /// Per-client rate limit.
    pub rate_limit: Option<RateLimit>,
    /// `Host` names served; `None` = any.
    pub allowed_hosts: Option<Vec<String>>,
    /// Origins allowed cross-site (CORS); `*` = any; empty = CORS off.
    pub cors_origins: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_body_bytes: 1 << 20,
            max_header_bytes: 64 << 10,
            memory_degraded_percent: 90.0,
            memory_unhealthy_percent: 98.0,
            disk_degraded_percent: 90.0,
            disk_unhealthy_percent: 98.0,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            max_websockets: 256,
            shutdown_timeout: Duration::from_secs(30),
            api_keys: Vec::new(),
            metrics_require_key: false,
            rate_limit: None,
            allowed_hosts: None,
            cors_origins: Vec::new(),
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    pub metrics: Arc<metrics::Metrics>,
    pub config: Arc<ServerConfig>,
    pub limiter: Option<Arc<RateLimiter>>,
    /// Open connections and WebSocket sessions.
    pub connections: Arc<AtomicUsize>,
    pub websockets: Arc<AtomicUsize>,
}

impl AppState {
    pub fn new(engine: Engine, config: ServerConfig) -> Self {
        AppState {
            engine,
            metrics: Arc::default(),
            limiter: config.rate_limit.map(|l| Arc::new(RateLimiter::new(l))),
            config: Arc::new(config),
            connections: Arc::default(),
            websockets: Arc::default(),
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "wgformer", description = "GPT-2-shaped transformer inference on wgpu with hand-written WGSL kernels. Contract v1."),
    paths(routes::initialize, routes::forward, generate::generate, routes::status, routes::health, routes::ping, routes::ready, routes::metrics,
        openai::models, openai::model, openai::completions, openai::tokenize, openai::detokenize),
    components(schemas(error::ErrorBody, crate::config::ModelConfig)),
    tags((name = "model"), (name = "generation", description = "POST /api/v1/generate, and the WebSocket /ws/inference (messages: inference, cancel → token, complete, error)"), (name = "health"), (name = "operations"),
        (name = "openai", description = "OpenAI-compatible API (the `openai` SDKs work unchanged); errors on /v1 routes are `{\"error\": {\"message\", \"type\", \"param\", \"code\"}}`"))
)]
struct ApiDoc;

/// The OpenAPI document of the service.
pub fn api_doc() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
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
    "/v1/completions",
    "/v1/tokenize",
    "/v1/detokenize",
];

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
    let route = ROUTES
        .iter()
        .find(|r| **r == path)
        .copied()
        .unwrap_or("unmatched");
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
        .route("/openapi.json", get(routes::openapi))
        .route("/docs", get(routes::docs))
        .route("/", get(routes::explorer))
        .route("/explorer", get(routes::explorer))
        .route("/v1/models", get(openai::models))
        .route("/v1/models/{model}", get(openai::model))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/tokenize", post(openai::tokenize))
        .route("/v1/detokenize", post(openai::detokenize))
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
            .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("x-request-id"),
            ])
            .expose_headers([HeaderName::from_static("x-request-id"), header::RETRY_AFTER])
            .max_age(Duration::from_secs(600)),
    )
}

/// Installs the SIGINT and SIGTERM handlers now (call it inside the runtime, before the
/// service announces its address: a signal that arrives between the two must not kill
/// the process with the default action) and returns a future that resolves on either.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let handlers = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let (mut term, mut int) = handlers;
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = wait(term.take()) => {},
                _ = wait(int.take()) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutdown signal received: draining requests in flight");
    }
}

/// ((used MB, available MB, used %), (used GB, available GB, used %)) of host memory
/// and of the disk holding the working directory.
pub fn host_figures() -> ((f64, f64, f64), (f64, f64, f64)) {
    let mut sys = sysinfo::System::new();
    sys.refresh_memory();
    let total = sys.total_memory() as f64;
    let avail = sys.available_memory() as f64;
    let mb = (1u64 << 20) as f64;
    let mem = (
        (total - avail) / mb,
        avail / mb,
        if total > 0.0 {
            100.0 * (total - avail) / total
        } else {
            0.0
        },
    );
    let cwd = std::env::current_dir().unwrap_or_default();
    let disks = sysinfo::Disks::new_with_refreshed_list();
    let disk = disks
        .list()
        .iter()
        .filter(|d| cwd.starts_with(d.mount_point()))
        .max_by_key(|d| d.mount_point().as_os_str().len())
        .map(|d| {
            let gb = (1u64 << 30) as f64;
            let (t, a) = (d.total_space() as f64, d.available_space() as f64);
            (
                (t - a) / gb,
                a / gb,
                if t > 0.0 { 100.0 * (t - a) / t } else { 0.0 },
            )
        })
        .unwrap_or_default();
    (mem, disk)
}
