//! HTTP contract tests: the real server on a loopback port chosen by the OS, spoken
//! to by a real HTTP client (and raw TCP where a client would encode what curl does not).

use crate::common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::time::Duration;

use common::http::*;
use serde_json::{json, Value};
use wgformer::engine::EngineOptions;
use wgformer::server::ServerConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn before_initialize() {
    let s = Server::start(8, 1 << 20).await;
    let (code, ping) = get(&s, "/api/v1/health/ping").await;
    assert_eq!((code, ping["message"].as_str()), (200, Some("PONG")));
    let (code, st) = get(&s, "/api/v1/status").await;
    assert_eq!(code, 200);
    assert_eq!(st["initialized"], false);
    assert!(st["config"].is_null() && st["model_info"].is_null());
    assert_eq!(st["performance_stats"]["total_inferences"], 0);
    assert_eq!(st["performance_stats"]["average_inference_time"], 0.0);
    let (code, body) = forward(&s, json!({"text": "hello"})).await;
    assert_error(code, &body, 400, "MODEL_NOT_INITIALIZED");
    assert!(body["detail"].as_str().unwrap().contains("initialize"));
    let (code, _) = get(&s, "/api/v1/health/ready").await;
    assert_eq!(code, 503);
    let (code, h) = get(&s, "/api/v1/health/health").await;
    assert_eq!(code, 200);
    assert_eq!(h["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(h["checks"]["model"]["initialized"], false);
    for k in ["used_mb", "available_mb", "usage_percent"] {
        assert!(
            h["checks"]["memory"][k].as_f64().unwrap() > 0.0,
            "memory {k}"
        );
    }
    for k in ["used_gb", "available_gb", "usage_percent"] {
        assert!(h["checks"]["disk"][k].as_f64().is_some(), "disk {k}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn initialize_forward_status_flow() {
    let s = Server::start(8, 1 << 20).await;
    let mut cfg = small();
    cfg["device"] = json!("cpu");
    let (code, body) = init(&s, &cfg).await;
    // "cpu" builds on a software adapter; a GPU machine without one says so clearly
    let has_software = wgformer::gpu::list_adapters()
        .iter()
        .any(|a| a.details.device_type == "Cpu");
    if has_software {
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["config"]["device"], "cpu");
    } else {
        assert_error(code, &body, 400, "CONFIG_ERROR");
    }
    let (code, body) = init(&s, &small()).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["message"], "Model initialized");
    let cfg = &body["config"];
    for (k, v) in [
        ("n_layer", json!(1)),
        ("n_embed", json!(32)),
        ("vocab_size", json!(50304)),
        ("dropout", json!(0.1)),
        ("bias", json!(true)),
        ("ffn_hidden_multiplier", json!(4)),
        ("use_moe", json!(false)),
        ("moe_activation", json!("gelu")),
        ("moe_dropout", Value::Null),
        ("device", json!("auto")),
        ("moe_num_experts", json!(8)),
        ("moe_top_k", json!(2)),
    ] {
        assert_eq!(cfg[k], v, "config key {k}");
    }

    let (code, r) = forward(&s, json!({"text": "Deep learning is"})).await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["success"], true);
    assert_eq!(r["message"], "Forward pass complete");
    assert_eq!(r["logits_shape"], json!([1, 3, 50304]));
    assert_eq!(r["sequence_length"], 3);
    assert!(r["captured_data"].is_null());
    assert!(r["processing_time"].as_f64().unwrap() >= 0.0);
    let top = r["top_predictions"].as_array().unwrap();
    assert_eq!(top.len(), 5);
    let probs: Vec<f64> = top
        .iter()
        .map(|p| p["probability"].as_f64().unwrap())
        .collect();
    assert!(probs.windows(2).all(|w| w[0] >= w[1]), "{probs:?}");
    assert!(top[0]["token"].is_string() && top[0]["token_id"].is_u64());

    // capture_data, top_k, max_length
    let (code, r) = forward(&s, json!({"text": "one two three four five six", "capture_data": true, "top_k": 2, "max_length": 4})).await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["sequence_length"], 4);
    assert_eq!(r["top_predictions"].as_array().unwrap().len(), 2);
    let cap = &r["captured_data"];
    assert_eq!(
        cap["embeddings"]["token_embeddings"]["shape"],
        json!([1, 4, 32])
    );
    assert_eq!(
        cap["embeddings"]["token_embeddings"]["dtype"],
        "torch.float32"
    );
    assert_eq!(
        cap["embeddings"]["position_embeddings"]["shape"],
        json!([1, 4, 32])
    );
    let layers = cap["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(layers[0]["layer_idx"], 0);
    assert_eq!(
        layers[0]["attention"]["attn_weights_shape"],
        json!([1, 2, 4, 4])
    );
    assert_eq!(
        layers[0]["attention"]["head_entropy"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert!(layers[0].get("moe").is_none());
    assert!(cap["performance"]["forward_time"].as_f64().unwrap() > 0.0);
    assert!(cap["performance"]["memory_usage"].as_f64().unwrap() > 0.0);
    let (_, r0) = forward(&s, json!({"text": "x", "top_k": 0})).await;
    assert_eq!(r0["top_predictions"], json!([]));

    let (code, st) = get(&s, "/api/v1/status").await;
    assert_eq!(code, 200);
    assert_eq!(st["initialized"], true);
    assert_eq!(st["performance_stats"]["total_inferences"], 3);
    assert!(
        st["performance_stats"]["average_inference_time"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    let params = 50304 * 32
        + 64 * 32
        + (2 * 64 + 32 * 96 + 96 + 32 * 32 + 32 + 32 * 128 + 128 + 128 * 32 + 32)
        + 64;
    assert_eq!(st["model_info"]["total_parameters"], params);
    let mb = st["model_info"]["model_size_mb"].as_f64().unwrap();
    assert!((mb - params as f64 * 4.0 / 1048576.0).abs() < 1e-6);
    assert!(st["device"].as_str().unwrap().contains(':'));
    assert!(st["adapter"]["backend"].is_string() && st["adapter"]["device_type"].is_string());
    let (code, h) = get(&s, "/api/v1/health/health").await;
    assert_eq!(code, 200);
    assert_eq!(h["checks"]["model"]["status"], "healthy");
    assert_eq!(h["checks"]["model"]["device"], st["device"]);
    let (code, _) = get(&s, "/api/v1/health/ready").await;
    assert_eq!(code, 200);
    let metrics = get_text(&s, "/metrics").await;
    assert!(metrics.contains("wgformer_http_requests_total{method=\"POST\",route=\"/api/v1/forward\",status=\"200\"} 3"), "{metrics}");
    assert!(metrics.contains("wgformer_forward_seconds_count 3"));
    assert!(metrics.contains("wgformer_tokens_processed_total 8"));

    // tokens: id, text, byte range of the request's text; truncated with max_length
    let text = "Hello wörld, naïve 🦀 end";
    let (code, r) = forward(&s, json!({"text": text, "top_k": 1})).await;
    assert_eq!(code, 200, "{r}");
    let tokens = r["tokens"].as_array().unwrap();
    assert_eq!(tokens.len() as u64, r["sequence_length"].as_u64().unwrap());
    assert_eq!(
        tokens[0],
        json!({"id": 15496, "text": "Hello", "start": 0, "end": 5})
    );
    assert_eq!(tokens.last().unwrap()["text"], " end");
    assert_eq!(
        tokens.last().unwrap()["end"].as_u64().unwrap() as usize,
        text.len()
    );
    let mut end = 0;
    for t in tokens {
        let (a, b) = (
            t["start"].as_u64().unwrap() as usize,
            t["end"].as_u64().unwrap() as usize,
        );
        assert!(a <= b && b <= text.len() && b >= end, "{t}");
        end = b;
        // a whole-character token's text is the text's bytes
        if text[a..b].chars().count() > 0 && t["text"].as_str().unwrap() != "\u{fffd}" {
            assert!(
                text[a..b] == *t["text"].as_str().unwrap() || text[a..b].contains('🦀'),
                "{t}"
            );
        }
    }
    let (_, r) = forward(&s, json!({"text": text, "max_length": 2})).await;
    assert_eq!(r["tokens"].as_array().unwrap().len(), 2);
    assert_eq!(r["tokens"][1]["text"], " w");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn config_errors_keep_the_old_model() {
    let s = Server::start(8, 1 << 20).await;
    assert_eq!(init(&s, &small()).await.0, 200);
    let cases = [
        (
            json!({"n_embed": 770}),
            "n_embed (770) must be divisible by n_head (12)",
        ),
        (json!({"bogus_key": 1}), "bogus_key"),
        (json!({"n_layer": "two"}), "invalid type"),
        (json!({"n_layer": 0}), "n_layer (0) must be positive"),
        (json!({"n_head": -2}), "invalid value"),
        (json!({"moe_top_k": 9}), "moe_top_k (9)"),
        (json!({"moe_activation": "tanh"}), "tanh"),
        (json!({"device": "quantum"}), "quantum"),
        (json!([1, 2]), "JSON object"),
    ];
    for (cfg, needle) in cases {
        let (code, body) = init(&s, &cfg).await;
        assert_error(code, &body, 400, "CONFIG_ERROR");
        assert!(
            body["detail"].as_str().unwrap().contains(needle),
            "{cfg} -> {body}"
        );
    }
    let r = client()
        .get(s.url("/api/v1/initialize?config=%7Bnot%20json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let body: Value = r.json().await.unwrap();
    assert_error(400, &body, 400, "CONFIG_ERROR");
    // no hardware adapter in CI: "gpu" is a clear CONFIG_ERROR, "cpu" builds on the software one
    let has_gpu = wgformer::gpu::list_adapters().iter().any(|a| {
        matches!(
            a.details.device_type.as_str(),
            "DiscreteGpu" | "IntegratedGpu" | "VirtualGpu"
        )
    });
    if !has_gpu {
        let mut cfg = small();
        cfg["device"] = json!("gpu");
        let (code, body) = init(&s, &cfg).await;
        assert_error(code, &body, 400, "CONFIG_ERROR");
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("no adapter matches"),
            "{body}"
        );
    }
    // the old model still serves
    let (code, st) = get(&s, "/api/v1/status").await;
    assert_eq!((code, st["config"]["n_embed"].as_u64()), (200, Some(32)));
    assert_eq!(forward(&s, json!({"text": "still here"})).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn raw_and_encoded_config() {
    let s = Server::start(8, 1 << 20).await;
    // as curl -g sends it: raw braces, quotes and colons
    let raw = "GET /api/v1/initialize?config={\"n_layer\":1,\"n_embed\":32,\"n_head\":2,\"context_size\":16} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let (code, body) = raw_request(s.addr, raw);
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["config"]["context_size"], 16);
    // percent-encoded, with + for spaces as Python requests sends it
    let r = client()
        .get(s.url("/api/v1/initialize?config=%7B%22n_layer%22%3A+1%2C+%22n_embed%22%3A+32%2C+%22n_head%22%3A+2%2C+%22context_size%22%3A+24%7D"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["config"]["context_size"], 24);
    // raw and invalid: still a contract error, not hyper's empty 400
    let (code, body) = raw_request(s.addr, "GET /api/v1/initialize?config={\"n_layer\":\"x\"} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(code, 400);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error_code"], "CONFIG_ERROR");
    // no config: all defaults would build GPT-2 small; covered by the smoke test
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forward_errors() {
    let s = Server::start(8, 16384).await;
    assert_eq!(init(&s, &small()).await.0, 200);
    let (code, b) = forward(&s, json!({"text": ""})).await;
    assert_error(code, &b, 400, "INVALID_INPUT");
    assert_eq!(b["detail"], "input text must not be empty");
    let long = "word ".repeat(100).trim_end().to_string();
    let (code, b) = forward(&s, json!({"text": long})).await;
    assert_error(code, &b, 400, "SEQUENCE_TOO_LONG");
    assert_eq!(
        b["detail"],
        "input length 100 exceeds the model's maximum length 64"
    );
    assert_forward_refused(
        &s,
        [
            (json!({"text": 5}), "`text`"),
            (
                json!({"text": "a", "capture_data": "yes"}),
                "`capture_data`",
            ),
            (json!({"text": "a", "max_length": 0}), "max_length (0)"),
            (
                json!({"text": "a", "max_length": 5000}),
                "max_length (5000)",
            ),
            (json!({"text": "a", "top_k": 101}), "top_k (101)"),
            (json!({"text": "a", "top_k": -1}), "top_k (-1)"),
            (json!({"capture_data": true}), "missing field `text`"),
            (json!({"text": "a", "bogus": 1}), "bogus"),
            (json!(["text"]), "invalid"),
        ],
    )
    .await;
    let (code, b) = forward(&s, json!({"text": "a".repeat(10_001)})).await;
    assert_error(code, &b, 400, "INVALID_INPUT");
    // malformed JSON
    let r = client()
        .post(s.url("/api/v1/forward"))
        .header("content-type", "application/json")
        .body("{\"text\": ")
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    let b: Value = r.json().await.unwrap();
    assert_error(code, &b, 400, "INVALID_INPUT");
    assert!(b["detail"].as_str().unwrap().contains("not valid JSON"));
    // a body not declared as JSON (no type, a form, text/plain: what a page on another
    // site can send without a preflight) is 415, whatever it holds
    for ct in [
        None,
        Some("application/x-www-form-urlencoded"),
        Some("text/plain"),
    ] {
        let mut r = client().post(s.url("/api/v1/forward"));
        if let Some(ct) = ct {
            r = r.header("content-type", ct);
        }
        let r = r.body("{\"text\": \"x\"}").send().await.unwrap();
        let code = r.status().as_u16();
        let b: Value = r.json().await.unwrap();
        assert_error(code, &b, 415, "UNSUPPORTED_MEDIA_TYPE");
        assert!(b["detail"].as_str().unwrap().contains("application/json"));
    }
    // body over the limit
    let r = client()
        .post(s.url("/api/v1/forward"))
        .json(&json!({"text": "x".repeat(20_000)}))
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    let b: Value = r.json().await.unwrap();
    assert_error(code, &b, 413, "PAYLOAD_TOO_LARGE");
    // a declared Content-Length over the limit: 413 at once, no `100 Continue`, no
    // wait for a body that is never sent
    let addr = s.addr;
    let started = std::time::Instant::now();
    let (code, text) = tokio::task::spawn_blocking(move || {
        raw_request(
            addr,
            "POST /api/v1/forward HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 50000000\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 413, "{text}");
    assert!(!text.contains("100 Continue"), "{text}");
    assert!(text.contains("PAYLOAD_TOO_LARGE"), "{text}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // unknown path, wrong method
    let (code, b) = get(&s, "/api/v1/nope").await;
    assert_error(code, &b, 404, "NOT_FOUND");
    let r = client()
        .delete(s.url("/api/v1/forward"))
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("allow").is_some());
    let code = r.status().as_u16();
    let b: Value = r.json().await.unwrap();
    assert_error(code, &b, 405, "METHOD_NOT_ALLOWED");
    // vocabulary smaller than the tokenizer's
    assert_eq!(init(&s, &json!({"n_layer": 1, "n_embed": 32, "n_head": 2, "context_size": 64, "vocab_size": 300})).await.0, 200);
    let (code, b) = forward(&s, json!({"text": "Hello world"})).await;
    assert_error(code, &b, 400, "INVALID_INPUT");
    assert!(
        b["detail"].as_str().unwrap().contains("vocab_size 300"),
        "{b}"
    );
    // the service is still up
    assert_eq!(get(&s, "/api/v1/health/ping").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_forwards_during_initialize() {
    let s = std::sync::Arc::new(Server::start(64, 1 << 20).await);
    assert_eq!(init(&s, &small()).await.0, 200);
    let mut tasks = Vec::new();
    for i in 0..12 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            if i == 4 {
                let mut cfg = small();
                cfg["n_embed"] = json!(48);
                cfg["n_head"] = json!(3);
                let (code, b) = init(&s, &cfg).await;
                assert_eq!(code, 200, "{b}");
                None
            } else {
                let (code, b) = forward(
                    &s,
                    json!({"text": format!("request {i}"), "capture_data": true}),
                )
                .await;
                assert_eq!(code, 200, "{b}");
                Some(
                    b["captured_data"]["embeddings"]["token_embeddings"]["shape"][2]
                        .as_u64()
                        .unwrap(),
                )
            }
        }));
    }
    for t in tasks {
        if let Some(width) = t.await.unwrap() {
            assert!(
                width == 32 || width == 48,
                "answer from neither model: width {width}"
            );
        }
    }
    let (_, st) = get(&s, "/api/v1/status").await;
    assert_eq!(st["config"]["n_embed"], 48);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_queue_answers_503_with_retry_after() {
    // one generation runs (max batch 1), one waits (queue 1): a forward finds no room
    let s = Server::with(
        ServerConfig::default(),
        EngineOptions {
            queue_capacity: 1,
            max_batch: 1,
            ..EngineOptions::default()
        },
    )
    .await;
    let cfg = json!({"n_layer": 2, "n_embed": 64, "n_head": 2, "context_size": 512});
    assert_eq!(init(&s, &cfg).await.0, 200);
    let generation = |text: &'static str| {
        let url = s.url("/api/v1/generate");
        tokio::spawn(async move {
            client()
                .post(url)
                .json(&json!({"text": text, "max_new_tokens": 400}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    let running = generation("runs");
    until_status(&s, "active_generations", 1).await;
    let waiting = generation("waits");
    until_status(&s, "queue_depth", 1).await;
    let r = client()
        .post(s.url("/api/v1/forward"))
        .json(&json!({"text": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers().get("retry-after").map(|v| v.to_str().unwrap()),
        Some("1")
    );
    let code = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    assert_error(code, &body, 503, "SERVICE_UNAVAILABLE");
    assert_eq!(running.await.unwrap(), 200);
    assert_eq!(waiting.await.unwrap(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn request_id_and_openapi() {
    let s = Server::start(8, 1 << 20).await;
    let r = client()
        .get(s.url("/api/v1/health/ping"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "abc-123");
    let r = client()
        .get(s.url("/api/v1/health/ping"))
        .send()
        .await
        .unwrap();
    assert!(r.headers()["x-request-id"].len() >= 16);

    let (code, doc) = get(&s, "/openapi.json").await;
    assert_eq!(code, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    for (path, method) in [
        ("/api/v1/initialize", "get"),
        ("/api/v1/forward", "post"),
        ("/api/v1/status", "get"),
        ("/api/v1/health/health", "get"),
        ("/api/v1/health/ping", "get"),
        ("/api/v1/health/ready", "get"),
        ("/metrics", "get"),
    ] {
        let op = &doc["paths"][path][method];
        assert!(op["responses"]["200"].is_object(), "{path} {method}");
    }
    let err = &doc["components"]["schemas"]["ErrorBody"];
    for k in ["detail", "error_code", "timestamp"] {
        assert!(err["properties"][k].is_object(), "ErrorBody.{k}");
    }
    assert!(
        doc["paths"]["/api/v1/forward"]["post"]["responses"]["400"]["content"]["application/json"]
            ["schema"]["$ref"]
            .as_str()
            .unwrap()
            .ends_with("/ErrorBody")
    );
    // every $ref resolves
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    if k == "$ref" {
                        out.push(x.as_str().unwrap().to_string());
                    } else {
                        refs(x, out);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let name = r.strip_prefix("#/components/schemas/").unwrap();
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "dangling {r}"
        );
    }
    let html = client()
        .get(s.url("/docs"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("/openapi.json"));
}

#[test]
fn sigterm_drains_the_request_in_flight() {
    let bin = env!("CARGO_BIN_EXE_wgformer");
    // GPT-2 small width so that a forward takes long enough to be in flight.
    let cfg = json!({"n_layer": 6, "context_size": 1024, "seed": 1}).to_string();
    let mut child = std::process::Command::new(bin)
        .args(["serve", "--port", "0", "--config", &cfg])
        .env("XDG_RUNTIME_DIR", "/tmp")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: SocketAddr = line
        .trim()
        .rsplit("http://")
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let text = "The quick brown fox jumps over the lazy dog. ".repeat(40);
    let req = std::thread::spawn(move || {
        let body = json!({"text": text}).to_string();
        raw_request(addr, &format!("POST /api/v1/forward HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()))
    });
    std::thread::sleep(Duration::from_millis(300));
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let (code, body) = req.join().unwrap();
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["sequence_length"].as_u64().unwrap() > 300, "{v}");
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sparse_and_moe_show_in_capture() {
    let s = Server::start(8, 1 << 20).await;
    let mut cfg = small();
    cfg["n_layer"] = json!(2);
    cfg["use_moe"] = json!(true);
    cfg["moe_num_experts"] = json!(4);
    cfg["use_sparse_attention"] = json!(true);
    cfg["sparse_block_size"] = json!(4);
    cfg["sparse_local_blocks"] = json!(1);
    cfg["sparse_global_blocks"] = json!(0);
    let (code, b) = init(&s, &cfg).await;
    assert_eq!(code, 200, "{b}");
    assert_eq!(b["config"]["sparse_block_size"], 4);
    let (code, r) = forward(&s, json!({"text": "one two three four five six seven eight nine ten eleven twelve", "capture_data": true})).await;
    assert_eq!(code, 200, "{r}");
    for layer in r["captured_data"]["layers"].as_array().unwrap() {
        let usage: Vec<f64> = layer["moe"]["expert_usage"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(usage.len(), 4);
        assert!((usage.iter().sum::<f64>() - 1.0).abs() < 1e-5);
        let loss = layer["moe"]["load_balance_loss"].as_f64().unwrap();
        assert!((0.0..=4.0001).contains(&loss));
        assert_eq!(layer["attention"]["block_size"], 4);
        assert!(layer["attention"]["block_density"].as_f64().unwrap() < 0.5);
    }
    // attention weights of a block-sparse layer: the listed blocks (local only: each
    // query block sees its own), 0 outside them
    let (code, r) = forward(&s, json!({"text": "one two three four five six seven eight nine ten eleven twelve", "capture_attention": {"layers": [0]}})).await;
    assert_eq!(code, 200, "{r}");
    let att = &r["captured_data"]["layers"][0]["attention"];
    let t = r["sequence_length"].as_u64().unwrap() as usize;
    let listed = att["listed_blocks"].as_array().unwrap();
    assert_eq!(listed.len(), t.div_ceil(4));
    for (qb, blocks) in listed.iter().enumerate() {
        assert_eq!(blocks, &json!([qb]));
    }
    for head in att["weights"].as_array().unwrap() {
        for (i, row) in head.as_array().unwrap().iter().enumerate() {
            for (j, p) in row.as_array().unwrap().iter().enumerate() {
                if j / 4 != i / 4 || j > i {
                    assert_eq!(p.as_f64().unwrap(), 0.0, "({i}, {j})");
                }
            }
        }
    }
    let (_, st) = get(&s, "/api/v1/status").await;
    let c = 32usize;
    let (h, e) = (4 * c, 4usize);
    let dense_mlp = c * h + h + h * c + c;
    let want = 50304 * c
        + 64 * c
        + 2 * (4 * c + c * 3 * c + 3 * c + c * c + c + c * e + e * dense_mlp)
        + 2 * c;
    assert_eq!(st["model_info"]["total_parameters"], want);
}

#[tokio::test]
async fn status_and_metrics_report_batching_and_the_kv_pool() {
    let s = Server::with(
        ServerConfig::default(),
        EngineOptions {
            max_batch: 6,
            ..EngineOptions::default()
        },
    )
    .await;
    let (code, _) = init(&s, &small()).await;
    assert_eq!(code, 200);
    // four generations at once share decode steps
    let url = s.url("/api/v1/generate");
    let gens: Vec<_> = (0..4)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move {
                let r = client()
                    .post(url)
                    .json(&serde_json::json!({"text": format!("Client {i} says"), "max_new_tokens": 12, "temperature": 0}))
                    .send()
                    .await
                    .unwrap();
                (r.status().as_u16(), r.json::<Value>().await.unwrap())
            })
        })
        .collect();
    for g in gens {
        let (code, body) = g.await.unwrap();
        assert_eq!(code, 200, "{body}");
        assert!(body["tokens"].as_u64().unwrap() >= 1, "{body}");
    }
    let (code, st) = get(&s, "/api/v1/status").await;
    assert_eq!(code, 200);
    let b = &st["batching"];
    assert_eq!(b["max_batch"], 6, "{st}");
    assert_eq!(b["prefill_chunk"], 256);
    assert!(b["decode_steps"].as_u64().unwrap() >= 1, "{b}");
    assert!(b["generated_tokens"].as_u64().unwrap() >= 4, "{b}");
    assert!(b["mean_batch_size"].as_f64().unwrap() >= 1.0, "{b}");
    let pool = &b["kv_pool"];
    // default pool: room for max_batch full contexts (64 positions: 4 pages each)
    assert_eq!(pool["pages"], 24, "{pool}");
    assert_eq!(pool["page_positions"], 16);
    assert!(pool["bytes"].as_u64().unwrap() > 0);
    assert_eq!(pool["dtype"], "float32", "{pool}");
    assert_eq!(
        pool["pages_used"].as_u64().unwrap() + pool["pages_free"].as_u64().unwrap(),
        24
    );
    let metrics = get_text(&s, "/metrics").await;
    for name in [
        "# TYPE wgformer_decode_batch_size histogram",
        "wgformer_decode_batch_size_bucket{le=\"+Inf\"}",
        "# TYPE wgformer_generation_queue_wait_seconds histogram",
        "# TYPE wgformer_forward_batch_size histogram",
        "wgformer_generation_queue_wait_seconds_count 4",
        "wgformer_generation_tokens_per_second ",
        "wgformer_kv_pool_pages{state=\"used\"}",
        "wgformer_kv_pool_pages{state=\"free\"}",
        "wgformer_kv_pool_pages_available ",
        "wgformer_decode_steps_chained_total ",
        "wgformer_decode_steps_mixed_total ",
        "wgformer_kv_cache_utilization ",
    ] {
        assert!(metrics.contains(name), "{name} missing:\n{metrics}");
    }
    let generated: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("wgformer_generated_tokens_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(generated >= 4.0);
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("{name} missing"))
            .trim()
            .parse()
            .unwrap()
    };
    // the KV-cache share an inference gateway routes on: used / all pages
    let used = value("wgformer_kv_pool_pages{state=\"used\"} ");
    let free = value("wgformer_kv_pool_pages{state=\"free\"} ");
    let utilization = value("wgformer_kv_cache_utilization ");
    assert!(
        (utilization - used / (used + free)).abs() < 1e-9,
        "{utilization}"
    );
    assert!((0.0..=1.0).contains(&utilization));
    // the engine's time in decode steps and prefill traversals: both ran
    assert!(value("wgformer_decode_seconds_total ") > 0.0);
    assert!(value("wgformer_prefill_steps_total ") >= 1.0);
    assert!(value("wgformer_prefill_seconds_total ") > 0.0);
    assert!(value("wgformer_prefill_chunks_total ") >= value("wgformer_prefill_steps_total "));
    // of those, the host's recording and submitting of the steps' dispatches
    let host = value("wgformer_step_host_seconds_total ");
    assert!(
        host > 0.0
            && host
                < value("wgformer_decode_seconds_total ")
                    + value("wgformer_prefill_seconds_total "),
        "{host}"
    );
    // the loop's working time holds the model's steps and the host's work around them
    assert!(
        value("wgformer_engine_busy_seconds_total ")
            >= value("wgformer_decode_seconds_total ") + value("wgformer_prefill_seconds_total ")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn capture_attention_returns_the_weights() {
    let s = Server::start(8, 1 << 20).await;
    let cfg = json!({"n_layer": 2, "n_embed": 32, "n_head": 2, "context_size": 300, "seed": 3});
    assert_eq!(init(&s, &cfg).await.0, 200);
    let text = "The quick brown fox jumps over the lazy dog";
    let (code, r) = forward(&s, json!({"text": text, "capture_attention": true})).await;
    assert_eq!(code, 200, "{r}");
    let t = r["sequence_length"].as_u64().unwrap() as usize;
    let layers = r["captured_data"]["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    let all = &layers[1]["attention"];
    assert_eq!(all["heads"], json!([0, 1]));
    let w = all["weights"].as_array().unwrap();
    assert_eq!(w.len(), 2);
    for head in w {
        let rows = head.as_array().unwrap();
        assert_eq!(rows.len(), t);
        for (i, row) in rows.iter().enumerate() {
            let row: Vec<f64> = row
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            assert_eq!(row.len(), t);
            assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-4);
            assert!(row[i + 1..].iter().all(|&p| p == 0.0), "causal");
        }
    }
    // chosen layers and heads, in the order asked; the others carry no weights
    let (code, r2) = forward(
        &s,
        json!({"text": text, "capture_attention": {"layers": [1], "heads": [1, 0]}}),
    )
    .await;
    assert_eq!(code, 200, "{r2}");
    let l2 = &r2["captured_data"]["layers"];
    assert!(l2[0]["attention"].get("weights").is_none());
    assert_eq!(l2[1]["attention"]["heads"], json!([1, 0]));
    assert_eq!(l2[1]["attention"]["weights"][0], w[1]);
    assert_eq!(l2[1]["attention"]["weights"][1], w[0]);
    // without the field: no weights
    let (_, r3) = forward(&s, json!({"text": text, "capture_data": true})).await;
    assert!(r3["captured_data"]["layers"][0]["attention"]
        .get("weights")
        .is_none());
    // errors name what to change
    let long = "word ".repeat(270);
    assert_forward_refused(
        &s,
        [
            (
                json!({"text": text, "capture_attention": "yes"}),
                "capture_attention must be",
            ),
            (
                json!({"text": text, "capture_attention": {"layers": [2]}}),
                "layer 2",
            ),
            (
                json!({"text": text, "capture_attention": {"heads": [5]}}),
                "head 5",
            ),
            (
                json!({"text": text, "capture_attention": {"layer": [0]}}),
                "unknown key",
            ),
            (
                json!({"text": text, "capture_attention": {"heads": []}}),
                "1 to 1024",
            ),
            (
                json!({"text": text, "capture_attention": {"heads": [-1]}}),
                "integers",
            ),
            (json!({"text": long, "capture_attention": true}), "256"),
        ],
    )
    .await;
    // the long text with max_length fits
    let (code, _) = forward(&s, json!({"text": long, "capture_attention": {"layers": [0], "heads": [0]}, "max_length": 256})).await;
    assert_eq!(code, 200);
    assert_eq!(forward(&s, json!({"text": "still serving"})).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn capture_logit_lens_reads_each_layer_through_the_lm_head() {
    let s = Server::start(8, 1 << 20).await;
    let cfg = json!({"n_layer": 3, "n_embed": 32, "n_head": 2, "context_size": 300, "seed": 5});
    assert_eq!(init(&s, &cfg).await.0, 200);
    let text = "The quick brown fox jumps";
    let (code, r) = forward(
        &s,
        json!({"text": text, "capture_logit_lens": true, "logit_lens_top_k": 3, "top_k": 3}),
    )
    .await;
    assert_eq!(code, 200, "{r}");
    let t = r["sequence_length"].as_u64().unwrap() as usize;
    let lens = r["captured_data"]["logit_lens"].as_array().unwrap();
    assert_eq!(lens.len(), 3);
    for layer in lens {
        let positions = layer.as_array().unwrap();
        assert_eq!(positions.len(), t);
        for tops in positions {
            let tops = tops.as_array().unwrap();
            assert_eq!(tops.len(), 3);
            assert!(tops[0]["token"].is_string() && tops[0]["token_id"].is_u64());
        }
    }
    // the last layer at the last position: the model's own prediction
    let last: Vec<u64> = lens[2][t - 1]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["token_id"].as_u64().unwrap())
        .collect();
    let top: Vec<u64> = r["top_predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["token_id"].as_u64().unwrap())
        .collect();
    assert_eq!(last, top);
    // the lens has its own k: the forward's top_k (0..=100) does not bound it
    let (code, r) = forward(
        &s,
        json!({"text": text, "capture_logit_lens": true, "top_k": 50}),
    )
    .await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["top_predictions"].as_array().unwrap().len(), 50);
    assert_eq!(
        r["captured_data"]["logit_lens"][0][0]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    // without it: no lens
    let (_, r) = forward(&s, json!({"text": text, "capture_data": true})).await;
    assert!(r["captured_data"].get("logit_lens").is_none());
    let long = "word ".repeat(270);
    assert_forward_refused(
        &s,
        [
            (
                json!({"text": text, "capture_logit_lens": true, "logit_lens_top_k": 0}),
                "between 1 and 20",
            ),
            (
                json!({"text": text, "capture_logit_lens": true, "logit_lens_top_k": 21}),
                "between 1 and 20",
            ),
            (json!({"text": long, "capture_logit_lens": true}), "256"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_explorer_page_is_served_self_contained() {
    let s = Server::start(8, 1 << 20).await;
    for path in ["/", "/explorer"] {
        let r = client().get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("text/html"), "{ct}");
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"),
            "{csp}"
        );
        let html = r.text().await.unwrap();
        // every asset inline: no script, style, font or image from elsewhere (the one
        // link is an empty data: icon, so the browser asks for no favicon)
        let html = html.replacen(r#"<link rel="icon" href="data:,">"#, "", 1);
        for needle in [
            "src=\"http",
            "href=\"http",
            "@import",
            "url(http",
            "<link",
            "src=\"//",
        ] {
            assert!(!html.contains(needle), "{path} loads {needle}");
        }
        // the panels, and only routes this server has
        for id in [
            "model-panel",
            "forward-panel",
            "generate-panel",
            "heatmap",
            "topk",
            "lens",
        ] {
            assert!(html.contains(&format!("id=\"{id}\"")), "{id}");
        }
        for route in [
            "/api/v1/status",
            "/api/v1/initialize",
            "/api/v1/forward",
            "/ws/inference",
        ] {
            assert!(html.contains(route), "{route}");
        }
    }
}

/// Each body sent to `/forward` is refused: 400 `INVALID_INPUT` whose detail names
/// what to change.
async fn assert_forward_refused<const N: usize>(s: &Server, cases: [(Value, &str); N]) {
    for (body, needle) in cases {
        let (code, e) = forward(s, body.clone()).await;
        assert_error(code, &e, 400, "INVALID_INPUT");
        assert!(
            e["detail"].as_str().unwrap().contains(needle),
            "{body} -> {e}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forward_captures_each_tokens_loss_and_its_rank_by_layer() {
    // `captured_data.token_logprobs` (on the device) agrees with the host's scoring of
    // the same prompt (`/v1/completions` with echo); with the lens, each layer's rank
    // of the actual next token, the last layer's equal to the final one
    let s = Server::start(8, 1 << 20).await;
    let cfg = json!({"n_layer": 3, "n_embed": 32, "n_head": 2, "context_size": 64, "seed": 11});
    assert_eq!(init(&s, &cfg).await.0, 200);
    let text = "The quick brown fox jumps over the lazy dog";
    let (code, r) = forward(&s, json!({"text": text, "capture_logit_lens": true})).await;
    assert_eq!(code, 200, "{r}");
    let t = r["sequence_length"].as_u64().unwrap() as usize;
    let cd = &r["captured_data"];
    let scores = cd["token_logprobs"].as_array().unwrap();
    assert_eq!(scores.len(), t - 1);
    for (i, sc) in scores.iter().enumerate() {
        assert_eq!(sc["token_id"], r["tokens"][i + 1]["id"], "{sc}");
        assert!(sc["logprob"].as_f64().unwrap() < 0.0);
    }
    let ranks = cd["logit_lens_ranks"].as_array().unwrap();
    assert_eq!(ranks.len(), 3);
    for (i, sc) in scores.iter().enumerate() {
        assert_eq!(ranks[2][i], sc["rank"], "position {i}");
    }
    let (_, echo) = post(
        &s,
        "/v1/completions",
        json!({"prompt": text, "max_tokens": 0, "echo": true, "logprobs": 0}),
    )
    .await;
    let host = &echo["choices"][0]["logprobs"]["token_logprobs"];
    for (i, sc) in scores.iter().enumerate() {
        let (dev, cpu) = (
            sc["logprob"].as_f64().unwrap(),
            host[i + 1].as_f64().unwrap(),
        );
        assert!((dev - cpu).abs() < 1e-3, "position {i}: {dev} vs {cpu}");
    }
    // without the lens, no ranks by layer; the scores are there with capture_data
    let (_, r) = forward(&s, json!({"text": text, "capture_data": true})).await;
    assert!(r["captured_data"].get("logit_lens_ranks").is_none());
    assert_eq!(
        r["captured_data"]["token_logprobs"]
            .as_array()
            .unwrap()
            .len(),
        t - 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn attention_can_be_sent_as_f16_triangles() {
    // every layer and head of a text in one compact answer: f16, the causal triangle,
    // base64; equal to the JSON weights to f16's rounding, and a fraction of the size
    use base64::Engine as _;
    let s = Server::start(8, 1 << 20).await;
    let cfg = json!({"n_layer": 2, "n_embed": 32, "n_head": 2, "context_size": 64, "seed": 4});
    assert_eq!(init(&s, &cfg).await.0, 200);
    let text = "one two three four five six seven eight nine ten";
    let (code, plain) = forward(&s, json!({"text": text, "capture_attention": true})).await;
    assert_eq!(code, 200);
    let (code, half) = forward(
        &s,
        json!({"text": text, "capture_attention": {"format": "f16"}}),
    )
    .await;
    assert_eq!(code, 200, "{half}");
    let t = plain["sequence_length"].as_u64().unwrap() as usize;
    for l in 0..2 {
        let a = &half["captured_data"]["layers"][l]["attention"];
        assert!(a.get("weights").is_none(), "f16 replaces the nested arrays");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(a["weights_f16"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            bytes.len(),
            2 * 2 * t * (t + 1) / 2,
            "two heads of T(T+1)/2 halves"
        );
        let vals: Vec<f32> = bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect();
        let w = &plain["captured_data"]["layers"][l]["attention"]["weights"];
        let mut at = 0;
        for h in 0..2 {
            for q in 0..t {
                for k in 0..=q {
                    let want = w[h][q][k].as_f64().unwrap() as f32;
                    assert!(
                        (vals[at] - want).abs() <= 1e-3 * want.max(1e-3),
                        "layer {l} head {h} q {q} k {k}"
                    );
                    at += 1;
                }
            }
        }
    }
    let size = |r: &Value, key: &str| -> usize {
        (0..2)
            .map(|l| {
                r["captured_data"]["layers"][l]["attention"][key]
                    .to_string()
                    .len()
            })
            .sum()
    };
    let (plain_len, half_len) = (size(&plain, "weights"), size(&half, "weights_f16"));
    assert!(half_len * 4 < plain_len, "{half_len} vs {plain_len} bytes");
    let (code, r) = forward(
        &s,
        json!({"text": text, "capture_attention": {"format": "f32"}}),
    )
    .await;
    assert_error(code, &r, 400, "INVALID_INPUT");
    assert!(r["detail"].as_str().unwrap().contains("f16"));
}
