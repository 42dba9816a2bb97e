//! `wgformer` command line. `serve` runs the HTTP service; `info` lists the adapters
//! wgpu sees. Every flag is also an environment variable `WGFORMER_*`.

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use wgformer::engine::Engine;
use wgformer::server::{self, AppState, ServerConfig};

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
    Serve {
        /// Address to bind.
        #[arg(long, env = "WGFORMER_HOST", default_value = "127.0.0.1")]
        host: String,
        /// Port to bind (0: any free port; the bound address is printed).
        #[arg(long, env = "WGFORMER_PORT", default_value_t = 8000)]
        port: u16,
        /// Build this model at start-up: a JSON object, or @path of a JSON file.
        #[arg(long, env = "WGFORMER_CONFIG")]
        config: Option<String>,
        /// Largest accepted request body in bytes.
        #[arg(long, env = "WGFORMER_MAX_BODY_BYTES", default_value_t = 1 << 20)]
        max_body_bytes: usize,
        /// Requests that may wait for the engine; more are answered 503 with Retry-After.
        #[arg(long, env = "WGFORMER_QUEUE_DEPTH", default_value_t = 64)]
        queue_depth: usize,
        /// Log filter (tracing EnvFilter syntax), e.g. info or wgformer=debug.
        #[arg(long, env = "WGFORMER_LOG", default_value = "info")]
        log_level: String,
        /// Log format.
        #[arg(long, env = "WGFORMER_LOG_FORMAT", value_enum, default_value = "text")]
        log_format: LogFormat,
    },
    /// List the adapters wgpu sees, with their limits and features (JSON).
    Info,
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
        Command::Serve {
            host,
            port,
            config,
            max_body_bytes,
            queue_depth,
            log_level,
            log_format,
        } => {
            init_logs(&log_level, log_format);
            let server_config = ServerConfig {
                max_body_bytes,
                ..ServerConfig::default()
            };
            tracing::info!(?server_config, queue_depth, "limits");
            let engine = Engine::start(queue_depth);
            if let Some(c) = config {
                let text = match c.strip_prefix('@') {
                    Some(path) => std::fs::read_to_string(path)
                        .with_context(|| format!("reading config file {path}"))?,
                    None => c,
                };
                let value: serde_json::Value =
                    serde_json::from_str(&text).context("--config is not valid JSON")?;
                let cfg = engine
                    .initialize_blocking(value)
                    .context("building the start-up model")?;
                tracing::info!(params = cfg.parameter_count(), "start-up model ready");
            }
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind((host.as_str(), port))
                    .await
                    .with_context(|| format!("binding {host}:{port}"))?;
                let addr = listener.local_addr()?;
                // Tests and scripts read this line to find a port chosen with --port 0.
                println!("wgformer listening on http://{addr}");
                tracing::info!(%addr, "listening");
                server::serve(
                    listener,
                    AppState::new(engine, server_config),
                    server::shutdown_signal(),
                )
                .await?;
                tracing::info!("stopped");
                anyhow::Ok(())
            })
        }
    }
}
