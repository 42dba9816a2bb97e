//! The HTTP service: routes of the v1 contract (`shared/spec/api.md`), request ids,
//! per-request logs and metrics, the OpenAPI document, graceful shutdown.
//! Handlers never touch the GPU: they await the engine thread.

pub mod error;
pub mod generate;
pub mod lenient;
pub mod metrics;
pub mod routes;
pub mod time;
pub mod types;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{header, HeaderName, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use utoipa::OpenApi;

use crate::engine::Engine;
use error::ApiError;

/// Limits and thresholds of the service (logged at start-up).
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Host memory use (%) at which health turns degraded / unhealthy.
    pub memory_degraded_percent: f64,
    pub memory_unhealthy_percent: f64,
    /// Disk use (%) of the data directory at which health turns degraded / unhealthy.
    pub disk_degraded_percent: f64,
    pub disk_unhealthy_percent: f64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_body_bytes: 1 << 20,
            memory_degraded_percent: 90.0,
            memory_unhealthy_percent: 98.0,
            disk_degraded_percent: 90.0,
            disk_unhealthy_percent: 98.0,
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    pub metrics: Arc<metrics::Metrics>,
    pub config: Arc<ServerConfig>,
}

impl AppState {
    pub fn new(engine: Engine, config: ServerConfig) -> Self {
        AppState {
            engine,
            metrics: Arc::default(),
            config: Arc::new(config),
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "wgformer", description = "GPT-2-shaped transformer inference on wgpu with hand-written WGSL kernels. Contract v1."),
    paths(routes::initialize, routes::forward, generate::generate, routes::status, routes::health, routes::ping, routes::ready, routes::metrics),
    components(schemas(error::ErrorBody, crate::config::ModelConfig)),
    tags((name = "model"), (name = "generation", description = "POST /api/v1/generate, and the WebSocket /ws/inference (messages: inference, cancel → token, complete, error)"), (name = "health"), (name = "operations"))
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
];

/// Logs one line per request, counts it, and gives axum's own bodiless errors
/// (405) the contract's error body.
async fn observe(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    let mut resp = next.run(req).await;
    if resp.status() == StatusCode::METHOD_NOT_ALLOWED
        && resp.headers().get(header::CONTENT_TYPE).is_none()
    {
        let allow = resp.headers().get(header::ALLOW).cloned();
        resp = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            format!("{method} is not allowed on {path}: the Allow header and /openapi.json list its methods"),
        )
        .into_response();
        if let Some(a) = allow {
            resp.headers_mut().insert(header::ALLOW, a);
        }
    }
    let route = ROUTES
        .iter()
        .find(|r| **r == path)
        .copied()
        .unwrap_or("unmatched");
    let status = resp.status().as_u16();
    st.metrics.request(method.as_str(), route, status);
    tracing::info!(request_id = %id, %method, %path, status, ms = start.elapsed().as_secs_f64() * 1e3, "request");
    resp
}

/// The whole application.
pub fn router(state: AppState) -> Router {
    let x_request_id = HeaderName::from_static("x-request-id");
    Router::new()
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
        .fallback(routes::not_found)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(PropagateRequestIdLayer::new(x_request_id.clone()))
        .layer(SetRequestIdLayer::new(x_request_id, MakeRequestUuid))
        .with_state(state)
}

/// Serve until `shutdown` resolves, then finish the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(lenient::LenientListener(listener), router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received: draining requests in flight");
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
