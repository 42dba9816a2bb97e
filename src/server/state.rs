//! What every handler shares: the service's limits ([`ServerConfig`]), the state
//! handed to each handler ([`AppState`]), and the host's memory and disk figures.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use super::limits::{RateLimit, RateLimiter};
use super::metrics;
use crate::engine::Engine;

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
    /// Open connections from one client address (0: no cap); more are answered 503.
    pub max_connections_per_address: usize,
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
    /// Bytes of `/v1/responses` kept for `previous_response_id` and retrieval (the
    /// oldest dropped first); 0 = none kept.
    pub responses_store_bytes: usize,
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
            max_connections_per_address: 256,
            max_websockets: 256,
            shutdown_timeout: Duration::from_secs(30),
            api_keys: Vec::new(),
            metrics_require_key: false,
            rate_limit: None,
            allowed_hosts: None,
            cors_origins: Vec::new(),
            responses_store_bytes: super::response_store::DEFAULT_STORE_BYTES,
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
    /// Open connections by client address.
    pub per_address: Arc<super::limits::PerAddress>,
    pub websockets: Arc<AtomicUsize>,
    /// Stored `/v1/responses`.
    pub responses: Arc<super::response_store::Store>,
}

impl AppState {
    pub fn new(engine: Engine, config: ServerConfig) -> Self {
        AppState {
            engine,
            metrics: Arc::default(),
            limiter: config.rate_limit.map(|l| Arc::new(RateLimiter::new(l))),
            responses: Arc::new(super::response_store::Store::new(
                config.responses_store_bytes,
            )),
            config: Arc::new(config),
            connections: Arc::default(),
            per_address: Arc::default(),
            websockets: Arc::default(),
        }
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
