//! `wgformer` command line. `serve` runs the HTTP service; `info` lists the adapters
//! wgpu sees; `probe` asks a URL of the service for a 2xx (a container's health check
//! without curl). Every flag is also an environment variable `WGFORMER_*`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use wgformer::engine::{Engine, EngineOptions};
use wgformer::server::{self, AppState, RateLimit, ServerConfig};

#[derive(Parser)]
#[command(
    name = "wgformer",
    version,
    about = "GPT-2-shaped transformer inference on any GPU through wgpu"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service.
    Serve(Box<ServeArgs>),
    /// List the adapters wgpu sees, with their limits and features (JSON).
    Info,
    /// GET a URL of the service: exit 0 on a 2xx answer, 1 otherwise (a container's
    /// HEALTHCHECK, e.g. `wgformer probe http://127.0.0.1:8000/api/v1/health/ready`).
    Probe(ProbeArgs),
}

#[derive(Args)]
struct ProbeArgs {
    /// `http://host:port/path` (plain HTTP, as the service speaks).
    url: String,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to bind.
    #[arg(long, env = "WGFORMER_HOST", default_value = "127.0.0.1")]
    host: String,
    /// Port to bind (0: any free port; the bound address is printed).
    #[arg(long, env = "WGFORMER_PORT", default_value_t = 8000)]
    port: u16,
    /// Build this model at start-up: a JSON object, or @path of a JSON file. Being
    /// the operator's own, it may name any checkpoint or tokenizer path.
    #[arg(long, env = "WGFORMER_CONFIG")]
    config: Option<String>,
    /// Largest accepted request body in bytes.
    #[arg(long, env = "WGFORMER_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    max_body_bytes: usize,
    /// Largest accepted request header section in bytes (431 beyond).
    #[arg(long, env = "WGFORMER_MAX_HEADER_BYTES", default_value_t = 64 << 10)]
    max_header_bytes: usize,
    /// Requests that may wait for the engine; more are answered 503 with Retry-After.
    #[arg(long, env = "WGFORMER_QUEUE_DEPTH", default_value_t = 64)]
    queue_depth: usize,
    /// Generations that run at once, sharing each decode step (continuous batching);
    /// more wait in the queue.
    #[arg(long, env = "WGFORMER_MAX_BATCH", default_value_t = 16)]
    max_batch: usize,
    /// Device bytes of the paged KV cache, shared by all generations. Default: room
    /// for --max-batch full-context generations, at most half of the memory budget
    /// left after the weights and activations. A generation is admitted only when the
    /// pool can hold its prompt and max_new_tokens; until then it waits in the queue.
    #[arg(long, env = "WGFORMER_KV_POOL_BYTES")]
    kv_pool_bytes: Option<u64>,
    /// Prompt tokens prefilled per engine step, interleaved with the decode steps of
    /// the running generations (a long prompt does not stall their streams). Default:
    /// 1024 with the GPU-shaped kernels (prompts arriving together share a traversal),
    /// 256 on a software adapter.
    #[arg(long, env = "WGFORMER_PREFILL_CHUNK")]
    prefill_chunk: Option<usize>,
    /// Time every dispatch of one model traversal (a decode step or a prefill) in N
    /// with device timestamps and add each kernel's device seconds to /metrics
    /// (`wgformer_kernel_seconds_total{step, kernel}`); 0: never. Needs timestamps
    /// inside compute passes (Vulkan adapters, lavapipe included).
    #[arg(long, env = "WGFORMER_PROFILE_EVERY", default_value_t = 0)]
    profile_every: u64,
    /// Device memory a model may need, in bytes (weights, activations at the full
    /// context, KV caches); larger configs are refused with CONFIG_ERROR. Default:
    /// the adapter's device-local memory, or the host's available memory for
    /// software adapters.
    #[arg(long, env = "WGFORMER_MAX_MODEL_BYTES")]
    max_model_bytes: Option<u64>,
    /// Directory that configs sent to /initialize may name checkpoints and
    /// tokenizers in (relative names only). Without it, clients may name no files.
    #[arg(long, env = "WGFORMER_MODELS_DIR")]
    models_dir: Option<PathBuf>,
    /// Refuse to start without a hardware adapter (a GPU pod must not quietly serve
    /// from lavapipe): the adapters found and the Vulkan ICD variables are reported and
    /// the process exits with status 2.
    #[arg(long, env = "WGFORMER_REQUIRE_HARDWARE")]
    require_hardware: bool,
    /// Do not keep prompts' KV pages for later prompts that start alike (the prefix
    /// cache: a shared system prompt or a conversation's earlier turns are prefilled
    /// once while their pages stay in the pool).
    #[arg(long, env = "WGFORMER_NO_PREFIX_CACHE")]
    no_prefix_cache: bool,
    /// The model id clients see in /v1/models and name in requests (default: the
    /// model directory's name, the checkpoint's file stem, or "wgformer").
    #[arg(long, env = "WGFORMER_SERVED_MODEL_NAME")]
    served_model_name: Option<String>,
    /// Seconds a forward or generation may take from being queued (504 TIMEOUT).
    #[arg(long, env = "WGFORMER_REQUEST_TIMEOUT", default_value_t = 120.0)]
    request_timeout: f64,
    /// Seconds building a model may take (504 TIMEOUT).
    #[arg(long, env = "WGFORMER_LOAD_TIMEOUT", default_value_t = 600.0)]
    load_timeout: f64,
    /// Seconds a request's header section may take to arrive.
    #[arg(long, env = "WGFORMER_HEADER_TIMEOUT", default_value_t = 10.0)]
    header_timeout: f64,
    /// Seconds a request's body may take to arrive (408).
    #[arg(long, env = "WGFORMER_BODY_TIMEOUT", default_value_t = 30.0)]
    body_timeout: f64,
    /// Seconds a connection or WebSocket may sit idle before it is closed.
    #[arg(long, env = "WGFORMER_IDLE_TIMEOUT", default_value_t = 60.0)]
    idle_timeout: f64,
    /// Open connections; more are answered 503 and closed.
    #[arg(long, env = "WGFORMER_MAX_CONNECTIONS", default_value_t = 1024)]
    max_connections: usize,
    /// Open connections from one client address (0: no cap); more are answered 503
    /// and closed. Behind a proxy every client has the proxy's address: raise it.
    #[arg(
        long,
        env = "WGFORMER_MAX_CONNECTIONS_PER_ADDRESS",
        default_value_t = 256
    )]
    max_connections_per_address: usize,
    /// Open WebSocket sessions; more are answered 503.
    #[arg(long, env = "WGFORMER_MAX_WEBSOCKETS", default_value_t = 256)]
    max_websockets: usize,
    /// Seconds requests in flight get after SIGTERM/SIGINT before the process exits.
    #[arg(long, env = "WGFORMER_SHUTDOWN_TIMEOUT", default_value_t = 30.0)]
    shutdown_timeout: f64,
    /// API key required as `Authorization: Bearer <key>` (repeatable; the variable
    /// takes a comma-separated list). None: no key needed.
    #[arg(
        long = "api-key",
        env = "WGFORMER_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    api_keys: Vec<String>,
    /// With API keys, /metrics needs a key too.
    #[arg(long, env = "WGFORMER_METRICS_REQUIRE_KEY")]
    metrics_require_key: bool,
    /// Requests (and generated tokens) per second per API key, or per client address
    /// without keys; 429 RATE_LIMITED beyond. None: no limit.
    #[arg(long, env = "WGFORMER_RATE_LIMIT")]
    rate_limit: Option<f64>,
    /// Burst of the rate limit (default: twice the rate, at least 1).
    #[arg(long, env = "WGFORMER_RATE_LIMIT_BURST")]
    rate_limit_burst: Option<f64>,
    /// Host names served (comma-separated; `*` = any). Default: the loopback names
    /// when bound to loopback, any host otherwise.
    #[arg(long, env = "WGFORMER_ALLOWED_HOSTS", value_delimiter = ',')]
    allowed_hosts: Option<Vec<String>>,
    /// Origin allowed to call the service from a browser on another site (CORS;
    /// repeatable, `*` = any). None: CORS off and cross-site browser requests refused.
    #[arg(
        long = "cors-origin",
        env = "WGFORMER_CORS_ORIGINS",
        value_delimiter = ','
    )]
    cors_origins: Vec<String>,
    /// Bytes of /v1/responses kept in memory for previous_response_id and
    /// GET /v1/responses/{id} (the oldest dropped first; each for the API key that made
    /// it); 0: none kept.
    #[arg(long, env = "WGFORMER_RESPONSES_STORE_BYTES", default_value_t = server::response_store::DEFAULT_STORE_BYTES)]
    responses_store_bytes: usize,
    /// Log filter (tracing EnvFilter syntax), e.g. info or wgformer=debug.
    #[arg(long, env = "WGFORMER_LOG", default_value = "info")]
    log_level: String,
    /// Log format.
    #[arg(long, env = "WGFORMER_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
}

fn seconds(name: &str, s: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(s)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("--{name} must be a positive number of seconds, not {s}"))
}

fn init_logs(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Info => {
            let adapters = wgformer::gpu::list_adapters();
            println!("{}", serde_json::to_string_pretty(&adapters)?);
            Ok(())
        }
        Command::Serve(a) => serve(*a),
        Command::Probe(p) => {
            let code = match probe(&p.url, p.timeout) {
                Ok(status) if (200..300).contains(&status) => 0,
                Ok(status) => {
                    eprintln!("{}: HTTP {status}", p.url);
                    1
                }
                Err(e) => {
                    eprintln!("{}: {e}", p.url);
                    1
                }
            };
            std::process::exit(code)
        }
    }
}

/// GET `url` (`http://host[:port]/path`) and return the status code.
fn probe(url: &str, timeout: f64) -> anyhow::Result<u16> {
    use std::io::{Read, Write};
    let rest = url
        .strip_prefix("http://")
        .context("the URL must start with http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let timeout = Duration::from_secs_f64(timeout.max(0.001));
    let sock = std::net::ToSocketAddrs::to_socket_addrs(&addr)
        .with_context(|| format!("resolving {addr}"))?
        .next()
        .context("no address")?;
    let mut s = std::net::TcpStream::connect_timeout(&sock, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: wgformer-probe\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head)?;
    let line = String::from_utf8_lossy(&head[..n]);
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("not an HTTP answer")?;
    Ok(status)
}

/// The adapters found and the Vulkan loader's ICD variables, for the start-up log and
/// `--require-hardware`'s refusal.
fn adapters_and_icds() -> (Vec<wgformer::gpu::AdapterReport>, String) {
    let adapters = wgformer::gpu::list_adapters();
    let icds = [
        "VK_DRIVER_FILES",
        "VK_ICD_FILENAMES",
        "NVIDIA_DRIVER_CAPABILITIES",
    ]
    .iter()
    .map(|k| {
        format!(
            "{k}={}",
            std::env::var(k).unwrap_or_else(|_| "(unset)".into())
        )
    })
    .collect::<Vec<_>>()
    .join(" ");
    (adapters, icds)
}

fn positive(flag: &str, n: usize) -> anyhow::Result<usize> {
    if n == 0 {
        anyhow::bail!("--{flag} must be at least 1");
    }
    Ok(n)
}

fn serve(a: ServeArgs) -> anyhow::Result<()> {
    init_logs(&a.log_level, a.log_format);
    let (adapters, icds) = adapters_and_icds();
    let found: Vec<String> = adapters
        .iter()
        .map(|r| format!("{} ({})", r.details.label(), r.details.device_type))
        .collect();
    tracing::info!(adapters = ?found, icd = %icds, "adapters");
    if a.require_hardware && adapters.iter().all(|r| r.details.is_software()) {
        eprintln!(
            "wgformer: --require-hardware: no hardware adapter; found {found:?}; {icds}. On NVIDIA in a container the Vulkan ICD needs NVIDIA_DRIVER_CAPABILITIES to include graphics (or mount the host's nvidia_icd.json and set VK_ICD_FILENAMES)"
        );
        std::process::exit(2);
    }
    let rate_limit = match a.rate_limit {
        None => None,
        Some(r) if r.is_finite() && r > 0.0 => Some(RateLimit {
            per_second: r,
            burst: a.rate_limit_burst.unwrap_or((2.0 * r).max(1.0)).max(1.0),
        }),
        Some(r) => anyhow::bail!("--rate-limit must be a positive number, not {r}"),
    };
    let engine = Engine::with_options(EngineOptions {
        queue_capacity: a.queue_depth,
        max_model_bytes: a.max_model_bytes,
        models_dir: a.models_dir.clone(),
        request_timeout: seconds("request-timeout", a.request_timeout)?,
        load_timeout: seconds("load-timeout", a.load_timeout)?,
        max_batch: positive("max-batch", a.max_batch)?,
        kv_pool_bytes: a.kv_pool_bytes,
        prefix_cache: !a.no_prefix_cache,
        prefill_chunk: a
            .prefill_chunk
            .map(|c| positive("prefill-chunk", c))
            .transpose()?,
        profile_every: a.profile_every,
        served_model_name: a.served_model_name.clone(),
    })
    .with_context(|| format!("opening --models-dir {:?}", a.models_dir))?;
    tracing::info!(options = ?engine.options(), "engine");
    let runtime = tokio::runtime::Runtime::new()?;
    if let Some(c) = &a.config {
        let text = match c.strip_prefix('@') {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("reading config file {path}"))?,
            None => c.clone(),
        };
        let value: serde_json::Value =
            serde_json::from_str(&text).context("--config is not valid JSON")?;
        // A SIGTERM or SIGINT during the start-up build ends the process at once with
        // status 0: nothing is served yet, and an orchestrator stops pods that are still
        // loading (the handlers are installed before the build starts).
        let during_build = {
            let _in_runtime = runtime.enter();
            let signal = server::shutdown_signal();
            runtime.spawn(async move {
                signal.await;
                eprintln!("wgformer: signal during the start-up build: exiting");
                #[cfg(unix)]
                // SAFETY: ends the process without running destructors or atexit
                // handlers while the engine thread may be inside the driver
                unsafe {
                    libc::_exit(0)
                };
                #[cfg(not(unix))]
                std::process::exit(0);
            })
        };
        let cfg = engine
            .initialize_blocking(value)
            .context("building the start-up model")?;
        during_build.abort();
        tracing::info!(params = cfg.parameter_count(), "start-up model ready");
    }
    let shutdown_timeout = seconds("shutdown-timeout", a.shutdown_timeout)?;
    let result = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind((a.host.as_str(), a.port))
            .await
            .with_context(|| format!("binding {}:{}", a.host, a.port))?;
        let addr = listener.local_addr()?;
        let allowed_hosts = match &a.allowed_hosts {
            Some(list) if list.iter().any(|h| h == "*") => None,
            Some(list) => Some(list.clone()),
            None => server::default_allowed_hosts(&addr),
        };
        let server_config = ServerConfig {
            max_body_bytes: a.max_body_bytes,
            max_header_bytes: a.max_header_bytes,
            header_timeout: seconds("header-timeout", a.header_timeout)?,
            body_timeout: seconds("body-timeout", a.body_timeout)?,
            idle_timeout: seconds("idle-timeout", a.idle_timeout)?,
            max_connections: a.max_connections.max(1),
            max_connections_per_address: a.max_connections_per_address,
            max_websockets: a.max_websockets,
            shutdown_timeout,
            api_keys: a.api_keys.iter().filter(|k| !k.is_empty()).cloned().collect(),
            metrics_require_key: a.metrics_require_key,
            rate_limit,
            allowed_hosts,
            cors_origins: a.cors_origins.clone(),
            responses_store_bytes: a.responses_store_bytes,
            ..ServerConfig::default()
        };
        // the keys themselves are never logged
        tracing::info!(api_keys = server_config.api_keys.len(), limits = ?ServerConfig { api_keys: Vec::new(), ..server_config.clone() }, "server");
        // handlers first: a signal right after the announcement must drain, not kill
        let shutdown = server::shutdown_signal();
        // Tests and scripts read this line to find a port chosen with --port 0.
        println!("wgformer listening on http://{addr}");
        tracing::info!(%addr, "listening");
        server::serve(
            listener,
            AppState::new(engine.clone(), server_config),
            shutdown,
        )
        .await?;
        anyhow::Ok(())
    });
    // Connections still open past the shutdown deadline are dropped with the runtime.
    runtime.shutdown_timeout(Duration::from_secs(1));
    // The device is released on the engine thread before the process exits.
    if !engine.shutdown(shutdown_timeout) {
        tracing::warn!("the engine did not stop within the shutdown timeout");
    }
    tracing::info!("stopped");
    result
}
