//! A real server on a loopback port chosen by the OS, and small HTTP helpers.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use wgformer::engine::{Engine, EngineOptions};
use wgformer::server::{self, AppState, ServerConfig};

/// A small model: width 32, one layer, GPT-2 vocabulary, 64 positions.
pub fn small() -> Value {
    json!({"n_layer": 1, "n_embed": 32, "n_head": 2, "context_size": 64, "seed": 3})
}

pub struct Server {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Server {
    pub async fn start(queue_depth: usize, max_body_bytes: usize) -> Server {
        Self::with(
            ServerConfig {
                max_body_bytes,
                ..ServerConfig::default()
            },
            EngineOptions {
                queue_capacity: queue_depth,
                ..EngineOptions::default()
            },
        )
        .await
    }

    /// A server with these limits and engine options.
    /// A server with the default limits whose clients may load models from `models`.
    pub async fn with_models(models: &std::path::Path) -> Server {
        Server::with(
            ServerConfig::default(),
            EngineOptions {
                models_dir: Some(models.to_path_buf()),
                ..Default::default()
            },
        )
        .await
    }

    pub async fn with(config: ServerConfig, options: EngineOptions) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = AppState::new(Engine::with_options(options).unwrap(), config);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server::serve(listener, state, async {
            let _ = rx.await;
        }));
        Server {
            addr,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Send the shutdown signal (what SIGTERM does in the binary).
    pub fn signal(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// Wait until `serve` has returned, at most `limit`; how long it took.
    pub async fn stopped(&mut self, limit: Duration) -> Duration {
        let t = std::time::Instant::now();
        let task = self.task.take().expect("serve is running");
        tokio::time::timeout(limit, task)
            .await
            .expect("serve returned in time")
            .expect("serve did not panic")
            .expect("serve succeeded");
        t.elapsed()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Poll `/api/v1/status` (bounded, 5 s) until `field` reaches at least `want`.
pub async fn until_status(s: &Server, field: &str, want: u64) {
    for _ in 0..1000 {
        let (_, st) = get(s, "/api/v1/status").await;
        if st[field].as_u64().unwrap_or(0) >= want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{field} never reached {want}");
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

pub async fn get(s: &Server, path: &str) -> (u16, Value) {
    let r = client().get(s.url(path)).send().await.unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

/// GET `path`; the answer as text (`/metrics`).
pub async fn get_text(s: &Server, path: &str) -> String {
    client()
        .get(s.url(path))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// POST `body` as JSON to `path`; the answer as text (a stream's whole body).
pub async fn post_text(s: &Server, path: &str, body: &Value) -> String {
    let r = client().post(s.url(path)).json(body).send().await.unwrap();
    r.text().await.unwrap()
}

/// The `data:` payloads of an SSE body.
pub fn sse_data(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(String::from)
        .collect()
}

/// POST `body` as JSON to `path`; (status, JSON answer).
pub async fn post(s: &Server, path: &str, body: Value) -> (u16, Value) {
    let r = client().post(s.url(path)).json(&body).send().await.unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap())
}

pub async fn forward(s: &Server, body: Value) -> (u16, Value) {
    post(s, "/api/v1/forward", body).await
}

pub async fn init(s: &Server, cfg: &Value) -> (u16, Value) {
    let r = client()
        .get(s.url("/api/v1/initialize"))
        .query(&[("config", cfg.to_string())])
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap())
}

/// Every error body: detail, error_code, RFC 3339 timestamp.
pub fn assert_error(code: u16, body: &Value, want_code: u16, want_error: &str) {
    assert_eq!(code, want_code, "{body}");
    assert_eq!(body["error_code"], want_error, "{body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
    let ts = body["timestamp"].as_str().unwrap();
    assert!(
        ts.len() == 20 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
        "{ts}"
    );
}

/// Send raw bytes, return (status, body).
pub fn raw_request(addr: SocketAddr, request: &str) -> (u16, String) {
    raw_bytes(addr, request.as_bytes())
}

/// Send raw bytes (need not be UTF-8), return (status, body); (0, "") when the
/// server closed the connection without an answer.
pub fn raw_bytes(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(request).unwrap();
    let mut bytes = Vec::new();
    let _ = s.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}
