//! The HTTP service: routes of the v1 contract (`shared/spec/api.md`), request ids,
//! per-request logs and metrics, the OpenAPI document, graceful shutdown.
//! Handlers never touch the GPU: they await the engine thread.

mod app;
pub mod chat;
pub mod embeddings;
pub mod error;
pub mod generate;
pub mod guard;
pub mod lenient;
pub mod limits;
pub mod listen;
pub mod messages;
pub mod metrics;
pub mod openai;
pub mod params;
pub mod rerank;
pub mod response_store;
pub mod responses;
pub mod routes;
pub mod score;
mod state;
pub mod time;
mod typed;
pub mod types;

use std::future::Future;

pub use app::{api_doc, router};
pub use guard::default_allowed_hosts;
pub use limits::{RateLimit, RateLimiter};
pub use listen::serve;
pub use state::{host_figures, AppState, ServerConfig};

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
