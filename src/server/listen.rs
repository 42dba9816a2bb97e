//! The accept loop: one task per connection with a header-read timeout, an idle
//! timeout, a cap on open connections, and graceful shutdown with a deadline after
//! which the remaining connections are dropped and `serve` returns.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

use super::app::router;
use super::lenient::{Activity, LenientStream};
use super::limits::{ConnectionSlots, Held};
use super::state::AppState;

/// A request being answered on a connection (the idle timeout waits for it).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(a: &Arc<Activity>) -> Self {
        a.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(a.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Answer a connection over a cap with 503 and close it.
async fn refuse(mut tcp: TcpStream, detail: &'static str) {
    let body = serde_json::json!({
        "detail": detail,
        "error_code": "SERVICE_UNAVAILABLE",
        "timestamp": super::time::now(),
    })
    .to_string();
    let resp = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = tcp.write_all(resp.as_bytes()).await;
        let _ = tcp.shutdown().await;
    })
    .await;
}

/// Serve until `shutdown` resolves; then finish the requests in flight for at most
/// the configured shutdown timeout, drop what remains, and return.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let cfg = state.config.clone();
    let app = router(state.clone());
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.header_timeout)
        .max_buf_size(cfg.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256);
    let check = (cfg.idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    tokio::pin!(shutdown);
    loop {
        let (tcp, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let Some(held) = Held::try_new(&state.connections, cfg.max_connections) else {
            state.metrics.refused_connection();
            tokio::spawn(refuse(tcp, "too many open connections: retry shortly"));
            continue;
        };
        let Some(held_address) = state
            .per_address
            .try_hold(remote.ip(), cfg.max_connections_per_address)
        else {
            state.metrics.refused_connection();
            tokio::spawn(refuse(
                tcp,
                "too many open connections from your address (--max-connections-per-address): close some or retry shortly",
            ));
            continue;
        };
        let activity = Arc::new(Activity::default());
        let io = TokioIo::new(LenientStream::new(tcp, activity.clone()));
        let slots = ConnectionSlots::new(held, held_address);
        let (app, act, conn_slots) = (app.clone(), activity.clone(), slots.clone());
        let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut()
                .insert(ConnectInfo::<SocketAddr>(remote));
            req.extensions_mut().insert(conn_slots.clone());
            let busy = InFlight::new(&act);
            let app = app.clone();
            async move {
                let resp = app.oneshot(req.map(Body::new)).await;
                drop(busy);
                resp
            }
        });
        let conn = builder.serve_connection_with_upgrades(io, svc).into_owned();
        let conn = graceful.watch(conn);
        let idle = cfg.idle_timeout;
        tokio::spawn(async move {
            let _held = slots;
            tokio::pin!(conn);
            let mut tick = tokio::time::interval(check);
            loop {
                tokio::select! {
                    _ = &mut conn => break,
                    _ = tick.tick() => {
                        if activity.idle_for().is_some_and(|d| d >= idle) {
                            break; // dropping the connection closes it
                        }
                    }
                }
            }
        });
    }
    drop(listener);
    drain(&state, graceful, cfg.shutdown_timeout).await;
    Ok(())
}

/// After the deadline, how long the remaining clients get to receive their last
/// message (an SSE `error` event, a 503, a WebSocket close) before they are dropped.
const LAST_WORDS: Duration = Duration::from_secs(2);

/// Drain: the engine refuses new work and answers what waits (`SHUTTING_DOWN`);
/// running requests and WebSocket generations go on to their end for up to `limit`.
/// Past it, the engine ends every wait with `SHUTTING_DOWN`, so each client still
/// connected gets a last message, and after [`LAST_WORDS`] what remains is dropped.
async fn drain(state: &AppState, graceful: GracefulShutdown, limit: Duration) {
    state.engine.drain();
    let open = || {
        (
            state.connections.load(Ordering::SeqCst),
            state.websockets.load(Ordering::SeqCst),
        )
    };
    let was = open();
    // HTTP connections finish their requests and close; upgraded WebSocket sessions
    // are not connections to hyper any more, so they are counted apart.
    let conns = tokio::spawn(graceful.shutdown());
    let until = |end: tokio::time::Instant| {
        let conns = &conns;
        async move {
            loop {
                if conns.is_finished() && state.websockets.load(Ordering::SeqCst) == 0 {
                    return true;
                }
                if tokio::time::Instant::now() >= end {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    if until(tokio::time::Instant::now() + limit).await {
        tracing::info!(connections = was.0, websockets = was.1, "drained");
        return;
    }
    let (c, w) = open();
    tracing::warn!(
        connections = c,
        websockets = w,
        "shutdown deadline passed: ending the remaining requests with SHUTTING_DOWN"
    );
    state.engine.close();
    if !until(tokio::time::Instant::now() + LAST_WORDS).await {
        let (c, w) = open();
        tracing::warn!(
            connections = c,
            websockets = w,
            "closing the connections that remain"
        );
    }
}
