//! Every client gets a clean end at shutdown. On the signal, the engine takes no new
//! work and answers what waits (503 `SHUTTING_DOWN`); running generations go on to
//! `complete` on every transport, WebSocket sessions then close with 1001. At the
//! shutdown deadline, what still runs ends with a last message: an SSE `error` event
//! (then `[DONE]` on `/v1`'s completions, `response.failed` on `/v1/responses`;
//! Anthropic's `error` event on `/v1/messages`), a 503
//! envelope with `Retry-After`, a WebSocket `error` and close 1001.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use wgformer::engine::EngineOptions;
use wgformer::server::ServerConfig;

use crate::common::http::{client, init, until_status as until, Server};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A server that batches four generations and lets eight wait, with this deadline.
async fn server(shutdown: Duration) -> Server {
    let s = Server::with(
        ServerConfig {
            shutdown_timeout: shutdown,
            ..ServerConfig::default()
        },
        EngineOptions {
            queue_capacity: 8,
            max_batch: 4,
            ..EngineOptions::default()
        },
    )
    .await;
    // slow enough on a software adapter that long generations outlive a short deadline
    let cfg = json!({"n_layer": 2, "n_embed": 64, "n_head": 2, "context_size": 1024});
    assert_eq!(init(&s, &cfg).await.0, 200);
    s
}

/// A WebSocket streaming a generation of `n` tokens, its first token received.
async fn ws_generation(s: &Server, n: usize) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws/inference", s.addr))
        .await
        .unwrap();
    let m = json!({"type": "inference", "text": "The drain", "stream": true, "max_new_tokens": n, "temperature": 0});
    ws.send(Message::Text(m.to_string().into())).await.unwrap();
    let first = ws_message(&mut ws).await;
    assert_eq!(first["type"], "token", "{first}");
    ws
}

/// The next message: a JSON text, or the close frame's code as `{"close": code}`.
async fn ws_message(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(60), ws.next())
            .await
            .expect("a message within 60 s")
            .expect("the session ended with a close frame, not bare")
            .expect("no protocol error (1006)");
        match m {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Close(f) => {
                let code = f.map(|f| u16::from(f.code)).unwrap_or(0);
                return json!({ "close": code });
            }
            _ => {}
        }
    }
}

/// Tokens received, then the final message, then the close code.
async fn ws_to_the_end(ws: &mut Ws) -> (usize, Value, Value) {
    let mut tokens = 1; // the first, received already
    loop {
        let m = ws_message(ws).await;
        if m["type"] == "token" {
            tokens += 1;
            continue;
        }
        let close = ws_message(ws).await;
        return (tokens, m, close);
    }
}

/// A request whose whole answer (status, Retry-After, body) is read in a task.
fn spawn_request(
    s: &Server,
    path: &str,
    body: Value,
) -> tokio::task::JoinHandle<(u16, bool, String)> {
    let url = s.url(path);
    tokio::spawn(async move {
        let r = client().post(url).json(&body).send().await.unwrap();
        let code = r.status().as_u16();
        let retry = r.headers().contains_key("retry-after");
        (code, retry, r.text().await.unwrap())
    })
}

fn error_code(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("JSON body: {body}"));
    v["error_code"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_the_signal_running_generations_finish_and_waiting_ones_hear_at_once() {
    let mut s = server(Duration::from_secs(60)).await;
    let n = 150;
    let mut sockets = vec![ws_generation(&s, n).await, ws_generation(&s, n).await];
    let streams: Vec<_> = (0..2)
        .map(|_| {
            spawn_request(
                &s,
                "/api/v1/generate",
                json!({"text": "The drain", "max_new_tokens": n, "stream": true, "temperature": 0}),
            )
        })
        .collect();
    until(&s, "active_generations", 4).await;
    let queued = spawn_request(
        &s,
        "/api/v1/generate",
        json!({"text": "waits", "max_new_tokens": 5}),
    );
    until(&s, "queue_depth", 1).await;

    s.signal();
    // what waited is answered at once, in the envelope, with Retry-After
    let (code, retry, body) = tokio::time::timeout(Duration::from_secs(10), queued)
        .await
        .expect("the waiting request is answered as the drain starts")
        .unwrap();
    assert_eq!((code, retry), (503, true), "{body}");
    assert_eq!(error_code(&body), "SHUTTING_DOWN");
    // the running ones go on to their end: WebSocket sessions then close with 1001
    for ws in &mut sockets {
        let (tokens, last, close) = ws_to_the_end(ws).await;
        assert_eq!(last["type"], "complete", "{last}");
        assert_eq!(last["result"]["tokens"], tokens, "every token was sent");
        assert_eq!(close, json!({"close": u16::from(CloseCode::Away)}));
    }
    for t in streams {
        let (code, _, body) = t.await.unwrap();
        assert_eq!(code, 200);
        assert!(body.contains("event: complete"), "{body}");
        assert!(!body.contains("event: error"), "{body}");
    }
    s.stopped(Duration::from_secs(60)).await;
    assert!(
        std::net::TcpStream::connect(s.addr).is_err(),
        "nothing listens"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn at_the_deadline_every_client_gets_a_last_message() {
    let deadline = Duration::from_millis(300);
    let mut s = server(deadline).await;
    let n = 1000; // seconds of decoding on a software adapter: cut by the deadline
    let mut ws = ws_generation(&s, n).await;
    let sse = spawn_request(
        &s,
        "/api/v1/generate",
        json!({"text": "cut", "max_new_tokens": n, "stream": true}),
    );
    let v1 = spawn_request(
        &s,
        "/v1/completions",
        json!({"prompt": "cut", "max_tokens": n, "stream": true}),
    );
    let whole = spawn_request(
        &s,
        "/api/v1/generate",
        json!({"text": "cut", "max_new_tokens": n}),
    );
    until(&s, "active_generations", 4).await;
    let queued = spawn_request(&s, "/v1/completions", json!({"prompt": "waits"}));
    until(&s, "queue_depth", 1).await;

    s.signal();
    let took = s.stopped(Duration::from_secs(30)).await;
    assert!(
        took < deadline + Duration::from_secs(5),
        "serve returned {took:?} after the signal"
    );
    let (code, retry, body) = queued.await.unwrap();
    assert_eq!((code, retry), (503, true), "{body}");
    assert!(
        body.contains("SHUTTING_DOWN") || body.contains("shutting down"),
        "{body}"
    );

    let (tokens, last, close) = ws_to_the_end(&mut ws).await;
    assert!(tokens < n, "the generation was cut ({tokens} tokens)");
    assert_eq!(last["type"], "error", "{last}");
    assert_eq!(last["error_code"], "SHUTTING_DOWN");
    assert_eq!(close, json!({"close": u16::from(CloseCode::Away)}));

    let (code, _, body) = sse.await.unwrap();
    assert_eq!(code, 200);
    assert!(
        body.contains("event: error") && body.contains("SHUTTING_DOWN"),
        "the SSE stream ends with an error event: {}",
        &body[body.len().saturating_sub(400)..]
    );
    let (code, _, body) = v1.await.unwrap();
    assert_eq!(code, 200);
    assert!(
        body.contains("shutting down"),
        "{}",
        &body[body.len().saturating_sub(400)..]
    );
    assert!(
        body.trim_end().ends_with("data: [DONE]"),
        "{}",
        &body[body.len().saturating_sub(400)..]
    );

    let (code, retry, body) = whole.await.unwrap();
    assert_eq!((code, retry), (503, true), "{body}");
    assert_eq!(error_code(&body), "SHUTTING_DOWN");
}

/// A stream's event names, and the data of its last event.
fn named_events(body: &str) -> (Vec<&str>, Value) {
    let events = body
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    let last = body.lines().rev().find_map(|l| l.strip_prefix("data: "));
    (
        events,
        serde_json::from_str(last.unwrap_or("null")).unwrap(),
    )
}

/// A streamed `/v1/responses` cut by the shutdown deadline ends as that API ends a
/// failure: an `error` event, then `response.failed` with the code; a streamed
/// `/v1/messages` with Anthropic's `error` event.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn at_the_deadline_a_streamed_response_fails_cleanly() {
    // the qwen2 fixture with a chat template and room for a long reply
    let models =
        std::env::temp_dir().join(format!("wgformer-shutdown-resp-{}", std::process::id()));
    let dir = models.join("chatty");
    let _ = std::fs::remove_dir_all(&models);
    std::fs::create_dir_all(&dir).unwrap();
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/families/qwen2");
    for f in std::fs::read_dir(fixture).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), dir.join(f.file_name())).unwrap();
    }
    let cfg_path = dir.join("config.json");
    let mut cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["max_position_embeddings"] = json!(2048);
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    std::fs::write(
        dir.join("chat_template.jinja"),
        "{% for m in messages %}{{ m.content }}{% endfor %}",
    )
    .unwrap();
    let deadline = Duration::from_millis(300);
    let mut s = Server::with(
        ServerConfig {
            shutdown_timeout: deadline,
            ..ServerConfig::default()
        },
        EngineOptions {
            models_dir: Some(models.clone()),
            ..EngineOptions::default()
        },
    )
    .await;
    assert_eq!(init(&s, &json!({"model": "chatty"})).await.0, 200);
    let stream = spawn_request(
        &s,
        "/v1/responses",
        json!({"input": "cut", "max_output_tokens": 2000, "ignore_eos": true, "stream": true}),
    );
    let anthropic = spawn_request(
        &s,
        "/v1/messages",
        json!({"messages": [{"role": "user", "content": "cut"}], "max_tokens": 2000,
               "ignore_eos": true, "stream": true}),
    );
    until(&s, "active_generations", 2).await;
    s.signal();
    s.stopped(Duration::from_secs(30)).await;
    let (code, _, body) = anthropic.await.unwrap();
    assert_eq!(code, 200);
    let (events, last) = named_events(&body);
    assert_eq!(events[0], "message_start");
    assert_eq!(events.last(), Some(&"error"), "{last}");
    assert_eq!(last["error"]["type"], "overloaded_error", "{last}");
    assert_eq!(last["error"]["code"], "shutting_down", "{last}");
    let (code, _, body) = stream.await.unwrap();
    assert_eq!(code, 200);
    let (events, last) = named_events(&body);
    assert_eq!(events[..2], ["response.created", "response.in_progress"]);
    assert_eq!(
        events[events.len() - 2..],
        ["error", "response.failed"],
        "{last}"
    );
    assert_eq!(last["response"]["status"], "failed", "{last}");
    assert_eq!(last["response"]["error"]["code"], "shutting_down", "{last}");
    let _ = std::fs::remove_dir_all(&models);
}
