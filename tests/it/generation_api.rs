//! Generation over HTTP (JSON and Server-Sent Events) and WebSocket, with real
//! clients on loopback: tokens then `complete`, seeds, cancel, bad messages, prompts
//! longer than the context, and clients that disconnect mid-stream.

use crate::common;

use std::time::Duration;

use common::http::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

async fn generate(s: &Server, body: Value) -> (u16, Value) {
    post(s, "/api/v1/generate", body).await
}

/// Parse an SSE body into (event name, JSON data) pairs.
fn sse_events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|b| b.contains("data:"))
        .map(|block| {
            let mut name = String::from("message");
            let mut data = String::new();
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event:") {
                    name = n.trim().to_string();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
            (name, serde_json::from_str(&data).unwrap())
        })
        .collect()
}

async fn wait_idle(s: &Server) {
    for _ in 0..100 {
        let (_, st) = get(s, "/api/v1/status").await;
        if st["active_generations"] == 0 && st["queue_depth"] == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the engine kept generating after the client left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_generation_json_and_sse() {
    let s = Server::start(16, 1 << 20).await;
    let (code, b) = generate(&s, json!({"text": "Hello"})).await;
    assert_error(code, &b, 400, "MODEL_NOT_INITIALIZED");
    assert_eq!(init(&s, &small()).await.0, 200);

    // greedy and seeded sampling are reproducible
    let body = json!({"text": "Deep learning is", "max_new_tokens": 6, "temperature": 0});
    let (code, a) = generate(&s, body.clone()).await;
    assert_eq!(code, 200, "{a}");
    assert_eq!(a["tokens"], 6);
    assert_eq!(a["finish_reason"], "length");
    assert_eq!(a["prompt_tokens"], 3);
    assert_eq!(a["token_ids"].as_array().unwrap().len(), 6);
    assert!(a["processing_time"].as_f64().unwrap() > 0.0);
    assert_eq!(generate(&s, body).await.1["token_ids"], a["token_ids"]);
    let seeded =
        json!({"text": "Deep learning is", "max_new_tokens": 6, "temperature": 1.0, "seed": 11});
    let (x, y) = (
        generate(&s, seeded.clone()).await.1,
        generate(&s, seeded).await.1,
    );
    assert_eq!(x["text"], y["text"]);

    // SSE: one `token` event per token, then `complete`; the pieces add up to the text
    for (body, accept) in [
        (
            json!({"text": "Once upon a time", "max_new_tokens": 5, "seed": 3, "stream": true}),
            None,
        ),
        (
            json!({"text": "Once upon a time", "max_new_tokens": 5, "seed": 3}),
            Some("text/event-stream"),
        ),
    ] {
        let mut req = client().post(s.url("/api/v1/generate")).json(&body);
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        let events = sse_events(&r.text().await.unwrap());
        assert_eq!(events.len(), 6, "{events:?}");
        let mut text = String::new();
        for (i, (name, data)) in events[..5].iter().enumerate() {
            assert_eq!(name, "token");
            assert_eq!(data["type"], "token");
            assert_eq!(data["index"], i);
            text.push_str(data["token"].as_str().unwrap());
        }
        let (name, done) = &events[5];
        assert_eq!(name, "complete");
        assert_eq!(done["type"], "complete");
        assert_eq!(done["result"]["text"], text.as_str());
        assert_eq!(done["result"]["tokens"], 5);
        assert!(events[0].1.get("probability").is_none());
    }

    // probabilities: each token event carries the token's probability; greedy picks
    // the most likely token, whose probability is at least 1 / V
    let body = json!({"text": "Deep learning is", "max_new_tokens": 4, "temperature": 0, "stream": true, "probabilities": true});
    let r = client()
        .post(s.url("/api/v1/generate"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let events = sse_events(&r.text().await.unwrap());
    assert_eq!(events.len(), 5, "{events:?}");
    for (_, data) in &events[..4] {
        let p = data["probability"].as_f64().unwrap();
        assert!(p > 1.0 / 50304.0 && p <= 1.0, "{data}");
    }

    // errors
    let (code, b) = generate(&s, json!({"text": ""})).await;
    assert_error(code, &b, 400, "INVALID_INPUT");
    let (code, b) = generate(&s, json!({"text": "a", "top_p": 0})).await;
    assert_error(code, &b, 400, "INVALID_INPUT");
    assert!(b["detail"].as_str().unwrap().contains("top_p"));
    let (code, b) = generate(&s, json!({"text": "a", "max_new_tokens": "many"})).await;
    assert_error(code, &b, 400, "INVALID_INPUT");
    let (code, b) = generate(
        &s,
        json!({"text": "word ".repeat(100).trim_end(), "stream": true}),
    )
    .await;
    assert_error(code, &b, 400, "SEQUENCE_TOO_LONG");

    // max_new_tokens is bounded by the context (64): the cache never overflows
    let (code, b) = generate(
        &s,
        json!({"text": "one two three", "max_new_tokens": 500, "temperature": 0}),
    )
    .await;
    assert_eq!(code, 200, "{b}");
    assert_eq!(b["tokens"], 61);
    assert_eq!(b["finish_reason"], "length");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stop_strings_end_generation() {
    let s = Server::start(16, 1 << 20).await;
    assert_eq!(init(&s, &small()).await.0, 200);
    let (_, full) = generate(
        &s,
        json!({"text": "The", "max_new_tokens": 12, "temperature": 0}),
    )
    .await;
    let text = full["text"].as_str().unwrap().to_string();
    // stop on a piece of the greedy text: the result ends right before it
    let ids = full["token_ids"].as_array().unwrap();
    assert!(ids.len() >= 4);
    let cut = text.char_indices().nth(text.chars().count() / 2).unwrap().0;
    let stop: String = text[cut..].chars().take(3).collect();
    let (code, r) = generate(&s, json!({"text": "The", "max_new_tokens": 12, "temperature": 0, "stop": [stop], "stream": false})).await;
    assert_eq!(code, 200);
    assert_eq!(r["finish_reason"], "stop");
    let got = r["text"].as_str().unwrap();
    assert_eq!(got, &text[..text.find(stop.as_str()).unwrap()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sse_client_disconnect_stops_the_generation() {
    let s = Server::start(16, 1 << 20).await;
    let mut cfg = small();
    cfg["context_size"] = json!(1024);
    assert_eq!(init(&s, &cfg).await.0, 200);
    let r = client()
        .post(s.url("/api/v1/generate"))
        .json(&json!({"text": "Go on and on", "max_new_tokens": 1000, "stream": true}))
        .send()
        .await
        .unwrap();
    let mut body = r.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("token"));
    drop(body); // the client goes away mid-stream
    wait_idle(&s).await;
    let (_, st) = get(&s, "/api/v1/status").await;
    assert_eq!(st["kv_cache_mb"], 0.0);
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws_next(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(60), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Message::Text(t) = m {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

async fn ws_send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn websocket_protocol() {
    let s = Server::start(16, 1 << 20).await;
    let mut cfg = small();
    cfg["context_size"] = json!(1024);
    assert_eq!(init(&s, &cfg).await.0, 200);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws/inference", s.addr))
        .await
        .unwrap();

    // two requests one after another on one connection
    for n in [3, 4] {
        ws_send(&mut ws, json!({"type": "inference", "text": "Deep learning is", "stream": true, "max_new_tokens": n, "seed": 5})).await;
        let mut text = String::new();
        for i in 0..n {
            let m = ws_next(&mut ws).await;
            assert_eq!(m["type"], "token", "{m}");
            assert_eq!(m["index"], i);
            text.push_str(m["token"].as_str().unwrap());
        }
        let done = ws_next(&mut ws).await;
        assert_eq!(done["type"], "complete", "{done}");
        assert_eq!(done["result"]["text"], text.as_str());
        assert_eq!(done["result"]["tokens"], n);
        assert!(done["result"]["processing_time"].as_f64().unwrap() > 0.0);
    }
    // stream: false → only `complete`
    ws_send(
        &mut ws,
        json!({"type": "inference", "text": "Hi", "stream": false, "max_new_tokens": 2}),
    )
    .await;
    assert_eq!(ws_next(&mut ws).await["type"], "complete");

    // bad messages get an error and the connection stays usable
    for bad in [
        "not json",
        "[1]",
        r#"{"type": "dance"}"#,
        r#"{"text": "no type"}"#,
        r#"{"type": "inference", "text": 7}"#,
        r#"{"type": "inference", "text": ""}"#,
    ] {
        ws.send(Message::Text(bad.into())).await.unwrap();
        let m = ws_next(&mut ws).await;
        assert_eq!(m["type"], "error", "{bad} -> {m}");
        assert!(m["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    // a prompt longer than the context
    ws_send(
        &mut ws,
        json!({"type": "inference", "text": "word ".repeat(1100), "stream": true}),
    )
    .await;
    let m = ws_next(&mut ws).await;
    assert_eq!(
        (m["type"].as_str(), m["error_code"].as_str()),
        (Some("error"), Some("SEQUENCE_TOO_LONG")),
        "{m}"
    );

    // cancel mid-stream
    ws_send(
        &mut ws,
        json!({"type": "inference", "text": "Keep going", "stream": true, "max_new_tokens": 1000}),
    )
    .await;
    assert_eq!(ws_next(&mut ws).await["type"], "token");
    ws_send(&mut ws, json!({"type": "cancel"})).await;
    loop {
        let m = ws_next(&mut ws).await;
        if m["type"] == "error" {
            assert_eq!(m["error_code"], "CANCELLED");
            break;
        }
        assert_eq!(m["type"], "token"); // tokens already on their way
    }
    wait_idle(&s).await;
    // and the connection still works
    ws_send(
        &mut ws,
        json!({"type": "inference", "text": "Again", "stream": true, "max_new_tokens": 2}),
    )
    .await;
    assert_eq!(ws_next(&mut ws).await["type"], "token");
    assert_eq!(ws_next(&mut ws).await["type"], "token");
    assert_eq!(ws_next(&mut ws).await["type"], "complete");

    // a client that disconnects mid-stream: the engine stops that generation
    ws_send(
        &mut ws,
        json!({"type": "inference", "text": "Run long", "stream": true, "max_new_tokens": 1000}),
    )
    .await;
    assert_eq!(ws_next(&mut ws).await["type"], "token");
    drop(ws);
    wait_idle(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forwards_are_served_while_a_generation_runs() {
    let s = std::sync::Arc::new(Server::start(16, 1 << 20).await);
    let mut cfg = small();
    cfg["context_size"] = json!(1024);
    assert_eq!(init(&s, &cfg).await.0, 200);
    let gen = {
        let s = s.clone();
        tokio::spawn(async move {
            generate(&s, json!({"text": "Long story", "max_new_tokens": 300})).await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = std::time::Instant::now();
    let (code, _) = forward(&s, json!({"text": "quick question"})).await;
    let forward_time = t.elapsed();
    let (code_gen, g) = gen.await.unwrap();
    assert_eq!((code, code_gen), (200, 200));
    // the forward did not wait for the whole generation
    assert!(
        forward_time.as_secs_f64() < g["processing_time"].as_f64().unwrap(),
        "forward waited {forward_time:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streams_keep_flowing_while_another_model_builds() {
    // the new model is built beside the serving one (on its own thread): a stream
    // running meanwhile gets tokens during the build, then the swap happens
    let s = Server::start(16, 1 << 20).await;
    let small = json!({"n_layer": 2, "n_embed": 64, "n_head": 2, "context_size": 1024});
    assert_eq!(init(&s, &small).await.0, 200);
    let r = client()
        .post(s.url("/api/v1/generate"))
        .json(&json!({"text": "Streams", "max_new_tokens": 1000, "stream": true, "temperature": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let arrivals = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let reader = {
        let arrivals = arrivals.clone();
        tokio::spawn(async move {
            let mut body = r.bytes_stream();
            while let Some(chunk) = body.next().await {
                let n = String::from_utf8_lossy(&chunk.unwrap())
                    .matches("event: token")
                    .count();
                let now = std::time::Instant::now();
                arrivals.lock().unwrap().extend(std::iter::repeat_n(now, n));
            }
        })
    };
    // a model that takes a while to build on a software adapter
    let big = json!({"n_layer": 4, "n_embed": 512, "n_head": 8, "context_size": 256});
    let t0 = std::time::Instant::now();
    let (code, _) = init(&s, &big).await;
    let t1 = std::time::Instant::now();
    assert_eq!(code, 200);
    reader.await.unwrap();
    let during = arrivals
        .lock()
        .unwrap()
        .iter()
        .filter(|t| **t > t0 + (t1 - t0) / 10 && **t < t1)
        .count();
    assert!(
        during >= 5,
        "{during} tokens arrived during the {:?} build",
        t1 - t0
    );
    let (_, st) = get(&s, "/api/v1/status").await;
    assert_eq!(st["config"]["n_embed"], 512, "the new model was swapped in");
}
