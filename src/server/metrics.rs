//! Prometheus text exposition: requests by route and status, forward latency
//! histogram, tokens processed, queue depth, device memory.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Upper bounds (seconds) of the forward latency histogram.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Default)]
struct Inner {
    requests: BTreeMap<(String, String, u16), u64>,
    forward_buckets: [u64; BUCKETS.len()],
    forward_count: u64,
    forward_sum: f64,
    tokens: u64,
    refused_connections: u64,
}

/// Gauges read at render time.
#[derive(Clone, Debug, Default)]
pub struct Gauges {
    pub queue_depth: usize,
    pub running_generations: usize,
    pub device_memory_bytes: f64,
    pub model_loaded: bool,
    pub engine_stalled: bool,
    pub engine_seconds_since_progress: f64,
    pub open_connections: usize,
    pub open_websockets: usize,
}

fn gauge(s: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(s, "# HELP {name} {help}");
    let _ = writeln!(s, "# TYPE {name} gauge");
    let _ = writeln!(s, "{name} {value}");
}

/// Process-wide counters, rendered on `GET /metrics`.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    /// Count one answered request. `route` is the matched route template, never the raw path.
    pub fn request(&self, method: &str, route: &str, status: u16) {
        if let Ok(mut m) = self.inner.lock() {
            *m.requests
                .entry((method.to_string(), route.to_string(), status))
                .or_default() += 1;
        }
    }

    /// Record one forward of `tokens` tokens that took `seconds`.
    pub fn forward(&self, seconds: f64, tokens: usize) {
        if let Ok(mut m) = self.inner.lock() {
            for (i, b) in BUCKETS.iter().enumerate() {
                if seconds <= *b {
                    m.forward_buckets[i] += 1;
                }
            }
            m.forward_count += 1;
            m.forward_sum += seconds;
            m.tokens += tokens as u64;
        }
    }

    /// Count a connection refused because the connection cap was reached.
    pub fn refused_connection(&self) {
        if let Ok(mut m) = self.inner.lock() {
            m.refused_connections += 1;
        }
    }

    /// The exposition text, with the gauges passed in.
    pub fn render(&self, g: &Gauges) -> String {
        let m = match self.inner.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# HELP wgformer_http_requests_total HTTP requests answered, by route and status."
        );
        let _ = writeln!(s, "# TYPE wgformer_http_requests_total counter");
        for ((method, route, status), n) in &m.requests {
            let _ = writeln!(s, "wgformer_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}");
        }
        let _ = writeln!(
            s,
            "# HELP wgformer_forward_seconds Forward pass latency on the engine."
        );
        let _ = writeln!(s, "# TYPE wgformer_forward_seconds histogram");
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                s,
                "wgformer_forward_seconds_bucket{{le=\"{b}\"}} {}",
                m.forward_buckets[i]
            );
        }
        let _ = writeln!(
            s,
            "wgformer_forward_seconds_bucket{{le=\"+Inf\"}} {}",
            m.forward_count
        );
        let _ = writeln!(s, "wgformer_forward_seconds_sum {}", m.forward_sum);
        let _ = writeln!(s, "wgformer_forward_seconds_count {}", m.forward_count);
        let _ = writeln!(
            s,
            "# HELP wgformer_tokens_processed_total Tokens that went through the model."
        );
        let _ = writeln!(s, "# TYPE wgformer_tokens_processed_total counter");
        let _ = writeln!(s, "wgformer_tokens_processed_total {}", m.tokens);
        let _ = writeln!(
            s,
            "# HELP wgformer_refused_connections_total Connections refused at the connection cap."
        );
        let _ = writeln!(s, "# TYPE wgformer_refused_connections_total counter");
        let _ = writeln!(
            s,
            "wgformer_refused_connections_total {}",
            m.refused_connections
        );
        gauge(
            &mut s,
            "wgformer_queue_depth",
            "Requests accepted by the engine and not yet started.",
            g.queue_depth,
        );
        gauge(
            &mut s,
            "wgformer_running_generations",
            "Generations running on the engine.",
            g.running_generations,
        );
        gauge(
            &mut s,
            "wgformer_device_memory_bytes",
            "Device buffers held by the engine.",
            g.device_memory_bytes,
        );
        gauge(
            &mut s,
            "wgformer_model_loaded",
            "1 when a model is loaded.",
            u8::from(g.model_loaded),
        );
        gauge(
            &mut s,
            "wgformer_engine_stalled",
            "1 when the engine makes no progress (work past its deadline, or a dead loop).",
            u8::from(g.engine_stalled),
        );
        gauge(
            &mut s,
            "wgformer_engine_seconds_since_progress",
            "Seconds since the engine last finished a piece of work or idled.",
            g.engine_seconds_since_progress,
        );
        gauge(
            &mut s,
            "wgformer_open_connections",
            "HTTP connections open.",
            g.open_connections,
        );
        gauge(
            &mut s,
            "wgformer_open_websockets",
            "WebSocket sessions open.",
            g.open_websockets,
        );
        s
    }
}
