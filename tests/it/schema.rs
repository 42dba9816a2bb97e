//! The OpenAPI document agrees with behaviour, checked the way schemathesis checks
//! it but bounded and deterministic: for every POST body the document describes,
//! each bound it states (numbers' minimum / maximum, strings' lengths, arrays'
//! items) is sent at its edges — inside them the request is accepted, one past them
//! it is a 400 naming the field — an integer is accepted written as `7.0` (JSON
//! Schema's integers), a value of the wrong type is a 400, and every status the
//! server answers is one the operation documents. The document is read from the
//! server, so a bound changed on one side only fails here.
//!
//! `/v1/chat/completions` is left out: the seeded model has no chat template, so
//! every chat request is refused for that reason before its fields are weighed (its
//! sampling fields go through the same validator as `/v1/completions`).

use serde_json::{json, Value};

use crate::common::http::{client, get, init, Server};

/// A valid body for each operation, small enough to answer at once; streams are
/// dropped as soon as their status arrives.
fn base(path: &str) -> Option<Value> {
    Some(match path {
        "/api/v1/forward" => json!({"text": "a b"}),
        "/api/v1/generate" => json!({"text": "a", "max_new_tokens": 1, "stream": true}),
        // echo: max_tokens may be 0 (the prompt scored alone)
        "/v1/completions" => json!({"prompt": "a", "max_tokens": 1, "echo": true, "stream": true}),
        "/v1/tokenize" => json!({"content": "a"}),
        "/v1/embeddings" => json!({"input": "a"}),
        "/v1/score" => json!({"text_1": "a", "text_2": ["b", "c"]}),
        "/v1/detokenize" => json!({"tokens": [64]}),
        "/tokenize" => json!({"prompt": "a"}),
        "/detokenize" => json!({"tokens": [64]}),
        _ => return None,
    })
}

/// `#/components/schemas/X` → the schema, following `$ref`s.
fn resolve<'a>(doc: &'a Value, s: &'a Value) -> &'a Value {
    if let Some(r) = s["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap();
        return resolve(doc, &doc["components"]["schemas"][name]);
    }
    s
}

/// The properties of an object schema, those of every part of an `allOf` (a body
/// with flattened fields) included.
fn properties(doc: &Value, s: &Value) -> serde_json::Map<String, Value> {
    let s = resolve(doc, s);
    let mut out = s["properties"].as_object().cloned().unwrap_or_default();
    for part in s["allOf"].as_array().into_iter().flatten() {
        out.extend(properties(doc, part));
    }
    out
}

/// The non-null alternative of an optional property.
fn present<'a>(doc: &'a Value, s: &'a Value) -> &'a Value {
    if let Some(alts) = s["oneOf"].as_array() {
        if let Some(a) = alts.iter().find(|a| a["type"] != "null") {
            return resolve(doc, a);
        }
    }
    resolve(doc, s)
}

fn has_type(s: &Value, t: &str) -> bool {
    match &s["type"] {
        Value::String(x) => x == t,
        Value::Array(xs) => xs.iter().any(|x| x == t),
        _ => false,
    }
}

/// (value, whether the schema allows it) at the edges of one property's bounds.
fn edges(s: &Value) -> Vec<(Value, bool)> {
    let mut out = Vec::new();
    let int = has_type(s, "integer");
    if int || has_type(s, "number") {
        if let Some(min) = s["minimum"].as_f64() {
            out.push((num(min, int), true));
            if int {
                out.push((json!(min), true)); // written as a float: 7.0
                out.push((num(min - 1.0, int), false));
            } else {
                out.push((json!(min - 0.5), false));
            }
        }
        if let Some(min) = s["exclusiveMinimum"].as_f64() {
            out.push((json!(min), false));
            out.push((json!(min + 1e-3), true));
        }
        if int {
            if let Some(max) = s["maximum"].as_i64() {
                out.push((json!(max), true));
                let past = i128::from(max) + 1;
                out.push((serde_json::from_str(&past.to_string()).unwrap(), false));
            }
        } else if let Some(max) = s["maximum"].as_f64() {
            out.push((json!(max), true));
            out.push((json!(max + 0.5), false));
        }
        out.push((json!("7"), false)); // the wrong type
    }
    if has_type(s, "string") {
        if let Some(min) = s["minLength"].as_u64().filter(|m| *m > 0) {
            out.push((json!("x".repeat(min as usize - 1)), false));
        }
        if let Some(max) = s["maxLength"].as_u64() {
            out.push((json!("x".repeat(max as usize + 1)), false));
        }
    }
    if has_type(s, "array") {
        if let Some(max) = s["maxItems"].as_u64() {
            let item = json!("x");
            out.push((json!(vec![item.clone(); max as usize]), true));
            out.push((json!(vec![item; max as usize + 1]), false));
        }
    }
    out
}

/// A bound as the JSON number a client would send (an integer exactly).
fn num(x: f64, int: bool) -> Value {
    if int {
        json!(x as i64)
    } else {
        json!(x)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_bound_the_document_states_holds_over_http() {
    let s = Server::start(64, 1 << 20).await;
    // room for 4096 new tokens after a short prompt
    let cfg = json!({"n_layer": 1, "n_embed": 32, "n_head": 2, "context_size": 4160});
    assert_eq!(init(&s, &cfg).await.0, 200);
    let (_, doc) = get(&s, "/openapi.json").await;
    let c = client();
    let mut checked = 0;
    let mut failures = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let Some(op) = item.get("post") else { continue };
        let Some(body) = base(path) else {
            // (these need a chat template or a cross-encoder, which the model built
            // here has not: tests/it/encoders.rs checks /v1/rerank)
            assert!(
                path == "/v1/rerank"
                    || path.starts_with("/v1/chat/")
                    || path.starts_with("/v1/responses")
                    || path.starts_with("/v1/messages"),
                "no base body for {path}"
            );
            continue;
        };
        let documented: Vec<u16> = op["responses"]
            .as_object()
            .unwrap()
            .keys()
            .filter_map(|k| k.parse().ok())
            .collect();
        let props = properties(
            &doc,
            &op["requestBody"]["content"]["application/json"]["schema"],
        );
        assert!(!props.is_empty(), "{path}: no properties");
        for (field, prop) in &props {
            let prop = present(&doc, prop);
            for (value, allowed) in edges(prop) {
                let mut b = body.clone();
                b[field.as_str()] = value.clone();
                let r = c.post(s.url(path)).json(&b).send().await.unwrap();
                let code = r.status().as_u16();
                let text = if r.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("text/event-stream")
                {
                    String::new() // a stream: accepted; dropping it cancels the work
                } else {
                    r.text().await.unwrap()
                };
                checked += 1;
                let case = format!(
                    "{path} {field} = {}",
                    &value.to_string()[..value.to_string().len().min(40)]
                );
                if !documented.contains(&code) {
                    failures.push(format!("{case}: status {code} is not documented"));
                }
                let names_field = text.contains(field.as_str());
                match (allowed, code) {
                    (true, 200) => {}
                    (true, _) => failures.push(format!("{case}: allowed by the schema, answered {code}: {text}")),
                    (false, 400) if names_field => {}
                    (false, _) => failures.push(format!(
                        "{case}: outside the schema, answered {code} (a 400 naming the field expected): {text}"
                    )),
                }
            }
        }
    }
    assert!(
        checked >= 60,
        "only {checked} cases: the document lost its bounds?"
    );
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
