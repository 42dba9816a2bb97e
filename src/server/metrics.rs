//! Prometheus text exposition: requests by route and status, forward latency
//! histogram, tokens processed, queue depth, device memory.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use crate::engine::{KernelTime, SchedStats};
use crate::stats::{Histogram, SECONDS};

struct Inner {
    requests: BTreeMap<(String, String, u16), u64>,
    forward: Histogram,
    tokens: u64,
    refused_connections: u64,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            requests: BTreeMap::new(),
            forward: Histogram::new(SECONDS),
            tokens: 0,
            refused_connections: 0,
        }
    }
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
    /// The scheduler: batches, queue waits, tokens, the KV pool.
    pub sched: SchedStats,
}

fn gauge(s: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(s, "# HELP {name} {help}");
    let _ = writeln!(s, "# TYPE {name} gauge");
    let _ = writeln!(s, "{name} {value}");
}

fn counter(s: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(s, "# HELP {name} {help}");
    let _ = writeln!(s, "# TYPE {name} counter");
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
            m.forward.observe(seconds);
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
        m.forward.render(
            &mut s,
            "wgformer_forward_seconds",
            "Forward pass latency on the engine.",
        );
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
        let b = &g.sched;
        b.batch_size.render(
            &mut s,
            "wgformer_decode_batch_size",
            "Generations sharing each decode step.",
        );
        b.forward_batch_size.render(
            &mut s,
            "wgformer_forward_batch_size",
            "Forwards sharing each traversal (forwards that arrive together run together).",
        );
        b.queue_wait.render(
            &mut s,
            "wgformer_generation_queue_wait_seconds",
            "Seconds from accepting a generation to admitting it (batch place and KV pages).",
        );
        counter(
            &mut s,
            "wgformer_generated_tokens_total",
            "Tokens generated, all generations.",
            b.generated_tokens,
        );
        counter(
            &mut s,
            "wgformer_decode_steps_total",
            "Batched decode steps run.",
            b.decode_steps,
        );
        counter(
            &mut s,
            "wgformer_decode_steps_chained_total",
            "Of the decode steps, those submitted while the step before ran, taking the tokens it picked on the device (the host out of the device's way).",
            b.chained_steps,
        );
        counter(
            &mut s,
            "wgformer_decode_steps_mixed_total",
            "Of the decode steps, those that also prefilled the prompts of generations joining the batch, in the same traversal.",
            b.mixed_steps,
        );
        counter(
            &mut s,
            "wgformer_decode_seconds_total",
            "Seconds in decode steps (the model's step and its read-back).",
            b.decode_seconds,
        );
        counter(
            &mut s,
            "wgformer_prefill_chunks_total",
            "Prompt chunks prefilled.",
            b.prefill_chunks,
        );
        counter(
            &mut s,
            "wgformer_prefill_steps_total",
            "Prefill traversals (each prefills up to 16 prompt chunks together).",
            b.prefill_steps,
        );
        counter(
            &mut s,
            "wgformer_prefill_seconds_total",
            "Seconds in prefill traversals.",
            b.prefill_seconds,
        );
        counter(
            &mut s,
            "wgformer_step_host_seconds_total",
            "Of the decode and prefill seconds, those the host spent recording and submitting the steps' dispatches (the rest: the device's work and the read-back).",
            b.step_host_seconds,
        );
        counter(
            &mut s,
            "wgformer_engine_busy_seconds_total",
            "Seconds the engine loop worked (model steps and the host's work around them: admitting, sampling, streaming); less the decode and prefill seconds, the host's share.",
            b.busy_seconds,
        );
        gauge(
            &mut s,
            "wgformer_generation_tokens_per_second",
            "Tokens generated per second over the last 10 s, all generations together.",
            b.tokens_per_second(),
        );
        gauge(
            &mut s,
            "wgformer_current_batch_size",
            "Generations in the last decode step.",
            b.current_batch,
        );
        let _ = writeln!(
            s,
            "# HELP wgformer_kv_pool_pages Pages of the paged KV cache, by state (used: holding keys and values; free)."
        );
        let _ = writeln!(s, "# TYPE wgformer_kv_pool_pages gauge");
        let _ = writeln!(s, "wgformer_kv_pool_pages{{state=\"used\"}} {}", b.kv.used);
        let _ = writeln!(
            s,
            "wgformer_kv_pool_pages{{state=\"free\"}} {}",
            b.kv.pages - b.kv.used
        );
        gauge(
            &mut s,
            "wgformer_kv_cache_utilization",
            "Share of the KV pool's pages in use, 0 to 1 (the Gateway API Inference Extension's KV-cache signal).",
            if b.kv.pages == 0 {
                0.0
            } else {
                b.kv.used as f64 / b.kv.pages as f64
            },
        );
        gauge(
            &mut s,
            "wgformer_kv_pool_pages_available",
            "Free KV pages not promised to admitted generations.",
            b.kv.available,
        );
        gauge(
            &mut s,
            "wgformer_kv_pool_bytes",
            "Device bytes of the paged KV cache.",
            b.kv.bytes,
        );
        gauge(
            &mut s,
            "wgformer_prefix_cache_pages",
            "KV pages kept in the prefix cache (full prompt pages; those nobody holds count as free).",
            b.kv.cached,
        );
        counter(
            &mut s,
            "wgformer_prefix_cache_prompt_tokens_total",
            "Prompt tokens of the generations admitted with the loaded model.",
            b.kv.prompt_positions,
        );
        counter(
            &mut s,
            "wgformer_prefix_cache_hit_tokens_total",
            "Of those, the tokens whose keys and values were found in the prefix cache (not prefilled again).",
            b.kv.hit_positions,
        );
        // device time by kernel, in the traversals profiled (--profile-every)
        let _ = writeln!(
            s,
            "# HELP wgformer_profiled_steps_total Model traversals whose dispatches were timed (--profile-every), by kind."
        );
        let _ = writeln!(s, "# TYPE wgformer_profiled_steps_total counter");
        for (step, n) in &b.profiled_steps {
            let _ = writeln!(s, "wgformer_profiled_steps_total{{step=\"{step}\"}} {n}");
        }
        let seconds = |t: &KernelTime| t.seconds;
        let dispatches = |t: &KernelTime| t.dispatches as f64;
        for (name, help, value) in [
            (
                "wgformer_kernel_seconds_total",
                "Device seconds of each kernel in the profiled traversals, by traversal kind.",
                &seconds as &dyn Fn(&KernelTime) -> f64,
            ),
            (
                "wgformer_kernel_dispatches_total",
                "Dispatches of each kernel in the profiled traversals, by traversal kind.",
                &dispatches,
            ),
        ] {
            let _ = writeln!(s, "# HELP {name} {help}");
            let _ = writeln!(s, "# TYPE {name} counter");
            for ((step, kernel), t) in &b.kernels {
                let _ = writeln!(
                    s,
                    "{name}{{step=\"{step}\",kernel=\"{kernel}\"}} {}",
                    value(t)
                );
            }
        }
        s
    }
}
