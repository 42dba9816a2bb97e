//! The OpenAI-compatible API against a real server: the wire format of every field,
//! streaming chunk order and `[DONE]`, the error shape, prompts × n, logprobs, echo,
//! and greedy completions equal to `/api/v1/generate`'s text.

use crate::common;

use common::http::*;
use serde_json::{json, Value};
use wgformer::engine::EngineOptions;
use wgformer::server::ServerConfig;

async fn server() -> Server {
    let s = Server::start(32, 1 << 20).await;
    assert_eq!(init(&s, &small()).await.0, 200);
    s
}

async fn complete(s: &Server, body: Value) -> (u16, Value) {
    post(s, "/v1/completions", body).await
}

/// `{"error": {"message", "type", "param", "code"}}` with this status and code.
fn assert_openai_error(code: u16, body: &Value, want: u16, want_code: &str, param: Option<&str>) {
    assert_eq!(code, want, "{body}");
    let e = &body["error"];
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(e["type"].is_string(), "{body}");
    assert_eq!(e["code"], want_code, "{body}");
    assert_eq!(e["param"], param.map_or(Value::Null, Value::from), "{body}");
    assert!(
        body.get("detail").is_none(),
        "contract envelope leaked: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn models_list_and_lookup() {
    let s = Server::start(8, 1 << 20).await;
    let (code, v) = get(&s, "/v1/models").await;
    assert_eq!((code, &v["object"]), (200, &json!("list")));
    assert_eq!(v["data"], json!([]));
    assert_eq!(init(&s, &small()).await.0, 200);
    let (_, v) = get(&s, "/v1/models").await;
    let m = &v["data"][0];
    assert_eq!(m["id"], "wgformer");
    assert_eq!(m["object"], "model");
    assert_eq!(m["owned_by"], "wgformer");
    assert!(m["created"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(get(&s, "/v1/models/wgformer").await.0, 200);
    let (code, v) = get(&s, "/v1/models/gpt-4").await;
    assert_openai_error(code, &v, 404, "model_not_found", Some("model"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn greedy_completion_equals_generate() {
    let s = server().await;
    for prompt in ["Deep learning is", "The quick brown fox"] {
        let (code, g) = post(
            &s,
            "/api/v1/generate",
            json!({"text": prompt, "max_new_tokens": 12, "temperature": 0}),
        )
        .await;
        assert_eq!(code, 200, "{g}");
        let (code, c) = complete(
            &s,
            json!({"model": "wgformer", "prompt": prompt, "max_tokens": 12, "temperature": 0}),
        )
        .await;
        assert_eq!(code, 200, "{c}");
        assert_eq!(c["object"], "text_completion");
        assert!(c["id"].as_str().unwrap().starts_with("cmpl-"));
        assert_eq!(c["model"], "wgformer");
        assert!(c["created"].as_u64().is_some());
        let ch = &c["choices"][0];
        assert_eq!(ch["text"], g["text"], "{prompt}");
        assert_eq!(ch["index"], 0);
        assert_eq!(ch["logprobs"], Value::Null);
        assert_eq!(ch["finish_reason"], "length");
        let u = &c["usage"];
        assert_eq!(u["prompt_tokens"], g["prompt_tokens"]);
        assert_eq!(u["completion_tokens"], 12);
        assert_eq!(
            u["total_tokens"].as_u64(),
            Some(u["prompt_tokens"].as_u64().unwrap() + 12)
        );
        // the same prompt as token ids gives the same text
        let (_, ids) = post(&s, "/v1/tokenize", json!({ "content": prompt })).await;
        let (code, c2) = complete(
            &s,
            json!({"prompt": ids["tokens"], "max_tokens": 12, "temperature": 0, "unknown_sdk_field": 1}),
        )
        .await;
        assert_eq!(code, 200, "{c2}");
        assert_eq!(c2["choices"][0]["text"], g["text"]);
    }
}

/// `logit_bias`, the penalties and `min_p` reach the tokens through `/v1/completions`
/// and `/api/v1/generate` alike: a token forced by a bias of 100 is every token, one
/// banned by -100 never comes, penalties change a greedy text and `min_p` 1 leaves a
/// sampled one greedy; out-of-range values, keys that are not token ids, tokens past
/// the vocabulary, `best_of` and `suffix` are 400s naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logit_bias_penalties_and_min_p() {
    let s = server().await;
    let prompt = "The quick brown fox";
    let greedy = json!({"prompt": prompt, "max_tokens": 8, "temperature": 0});
    let (_, plain) = post(
        &s,
        "/api/v1/generate",
        json!({"text": prompt, "max_new_tokens": 8, "temperature": 0}),
    )
    .await;
    let plain_ids: Vec<u64> = plain["token_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    // forced: " the" (id 262) every time, on both APIs
    let (code, g) = post(
        &s,
        "/api/v1/generate",
        json!({"text": prompt, "max_new_tokens": 8, "temperature": 0.8, "seed": 3, "logit_bias": {"262": 100}}),
    )
    .await;
    assert_eq!(code, 200, "{g}");
    assert_eq!(g["token_ids"], json!(vec![262; 8]));
    let mut forced = greedy.clone();
    forced["logit_bias"] = json!({"262": 100});
    let (code, c) = complete(&s, forced).await;
    assert_eq!(code, 200, "{c}");
    assert_eq!(c["choices"][0]["text"], " the".repeat(8));
    // banned: the greedy first token never comes
    let (code, g) = post(
        &s,
        "/api/v1/generate",
        json!({"text": prompt, "max_new_tokens": 8, "temperature": 0,
               "logit_bias": { plain_ids[0].to_string(): -100 }}),
    )
    .await;
    assert_eq!(code, 200, "{g}");
    let ids = g["token_ids"].as_array().unwrap();
    assert_eq!(ids.len(), 8);
    assert!(
        ids.iter().all(|id| id.as_u64() != Some(plain_ids[0])),
        "{g}"
    );
    let (_, plain_c) = complete(&s, greedy.clone()).await;
    // penalties change a greedy text (a random-weight model repeats itself)
    let mut penalised = greedy.clone();
    penalised["frequency_penalty"] = json!(2);
    penalised["presence_penalty"] = json!(2);
    let (code, c) = complete(&s, penalised).await;
    assert_eq!(code, 200, "{c}");
    assert_ne!(c["choices"][0]["text"], plain_c["choices"][0]["text"]);
    let (code, g) = post(
        &s,
        "/api/v1/generate",
        json!({"text": prompt, "max_new_tokens": 8, "temperature": 0, "repetition_penalty": 5}),
    )
    .await;
    assert_eq!(code, 200, "{g}");
    assert_ne!(g["token_ids"], plain["token_ids"]);
    // min_p 1 keeps only the most likely token
    let (code, c) = complete(
        &s,
        json!({"prompt": prompt, "max_tokens": 8, "temperature": 1.5, "seed": 9, "min_p": 1.0}),
    )
    .await;
    assert_eq!(code, 200, "{c}");
    assert_eq!(c["choices"][0]["text"], plain_c["choices"][0]["text"]);
    // errors
    for (extra, param) in [
        (json!({"logit_bias": {"262": 100.5}}), "logit_bias"),
        (json!({"logit_bias": {"-1": 1}}), "logit_bias"),
        (json!({"logit_bias": {"50257": 1}}), "logit_bias"),
        (json!({"min_p": -0.1}), "min_p"),
        (json!({"presence_penalty": 2.5}), "presence_penalty"),
        (json!({"repetition_penalty": 11}), "repetition_penalty"),
        (json!({"best_of": 3}), "best_of"),
        (json!({"suffix": "after"}), "suffix"),
    ] {
        let mut body = greedy.clone();
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (code, e) = complete(&s, body).await;
        assert_openai_error(code, &e, 400, "invalid_input", Some(param));
    }
    // accepted as no-ops
    let (code, _) = complete(
        &s,
        json!({"prompt": prompt, "max_tokens": 2, "best_of": 1, "suffix": "", "logit_bias": {}}),
    )
    .await;
    assert_eq!(code, 200);
    let (code, e) = post(
        &s,
        "/api/v1/generate",
        json!({"text": prompt, "logit_bias": {"50257": 1}}),
    )
    .await;
    assert_eq!(code, 400, "{e}");
    assert_eq!(e["error_code"], "INVALID_INPUT");
    assert!(
        e["detail"]
            .as_str()
            .unwrap()
            .contains("logit_bias names token 50257"),
        "{e}"
    );
}

/// vLLM's `ignore_eos`, `min_tokens` and `stop_token_ids`, on both APIs: a forced
/// end-of-text token ends a completion at once, or is generated as text with
/// `ignore_eos`; `min_tokens` keeps end and stop tokens out until then; a stop token
/// ends the text without itself; bad values are 400s naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ignore_eos_min_tokens_and_stop_token_ids() {
    let s = server().await;
    let eos = json!({"50256": 100});
    let base = json!({"prompt": "Once upon a time", "max_tokens": 5, "temperature": 0});
    let with = |extra: Value| {
        let mut b = base.clone();
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let choice = |c: &Value| {
        (
            c["choices"][0]["text"].as_str().unwrap().to_string(),
            c["choices"][0]["finish_reason"]
                .as_str()
                .unwrap()
                .to_string(),
            c["usage"]["completion_tokens"].as_u64().unwrap(),
        )
    };
    let (code, c) = complete(&s, with(json!({"logit_bias": eos}))).await;
    assert_eq!(code, 200, "{c}");
    assert_eq!(choice(&c), (String::new(), "stop".into(), 1));
    let (_, c) = complete(&s, with(json!({"logit_bias": eos, "ignore_eos": true}))).await;
    assert_eq!(choice(&c), ("<|endoftext|>".repeat(5), "length".into(), 5));
    // min_tokens: three tokens of text (not end-of-text), then the forced end
    let (_, c) = complete(&s, with(json!({"logit_bias": eos, "min_tokens": 3}))).await;
    let (text, finish, n) = choice(&c);
    assert_eq!((finish.as_str(), n), ("stop", 4), "{c}");
    assert!(
        !text.is_empty() && !text.contains("<|endoftext|>"),
        "{text:?}"
    );
    // a stop token (" the", forced) ends the text without itself, after min_tokens
    let the = json!({"262": 100});
    let (_, c) = complete(
        &s,
        with(json!({"logit_bias": the, "stop_token_ids": [262]})),
    )
    .await;
    assert_eq!(choice(&c), (String::new(), "stop".into(), 1));
    let (_, c) = complete(
        &s,
        with(json!({"logit_bias": the, "stop_token_ids": [262], "min_tokens": 2})),
    )
    .await;
    let (text, finish, n) = choice(&c);
    assert_eq!((finish.as_str(), n), ("stop", 3), "{c}");
    assert!(!text.contains(" the"), "{text:?}");
    // /api/v1/generate takes the same
    let (code, g) = post(
        &s,
        "/api/v1/generate",
        json!({"text": "Once upon a time", "max_new_tokens": 4, "temperature": 0,
               "logit_bias": eos, "ignore_eos": true}),
    )
    .await;
    assert_eq!(code, 200, "{g}");
    assert_eq!(g["token_ids"], json!(vec![50256; 4]));
    let (_, g) = post(
        &s,
        "/api/v1/generate",
        json!({"text": "Once upon a time", "max_new_tokens": 4, "temperature": 0,
               "logit_bias": the, "stop_token_ids": [262], "min_tokens": 1}),
    )
    .await;
    assert_eq!(g["tokens"], 2, "{g}");
    assert_eq!(g["finish_reason"], "end_of_text", "{g}");
    for (extra, param) in [
        (json!({"min_tokens": 6}), "min_tokens"),
        (json!({"min_tokens": -1}), "min_tokens"),
        (json!({"ignore_eos": "yes"}), "ignore_eos"),
        (json!({"stop_token_ids": [1, "a"]}), "stop_token_ids"),
        (json!({"stop_token_ids": vec![1; 33]}), "stop_token_ids"),
        (json!({"stop_token_ids": [50257]}), "stop_token_ids"),
    ] {
        let (code, e) = complete(&s, with(extra)).await;
        assert_openai_error(code, &e, 400, "invalid_input", Some(param));
    }
    let (code, e) = post(
        &s,
        "/api/v1/generate",
        json!({"text": "a", "stop_token_ids": [50257]}),
    )
    .await;
    assert_eq!(code, 400, "{e}");
    assert!(
        e["detail"]
            .as_str()
            .unwrap()
            .contains("stop_token_ids names token 50257"),
        "{e}"
    );
}

/// JSON mode: with `response_format` json_object a completion is one JSON object
/// (`serde_json` parses it) once it stops — seeded samples steered to close by a
/// logit bias on `"` and `}`, as a random-weight model would not soon — and only ever the start of one when cut by
/// `max_tokens`; other formats are 400s naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn json_mode_completions_are_json_objects() {
    let s = server().await;
    let json_object = json!({"type": "json_object"});
    let (mut closed, mut keys) = (0, 0);
    for seed in 0..6 {
        let (code, c) = complete(
            &s,
            json!({"prompt": "Here is the answer as JSON:", "max_tokens": 40, "temperature": 1.0,
                   "seed": seed, "response_format": json_object,
                   "logit_bias": {"1": 12, "92": 4}}),
        )
        .await;
        assert_eq!(code, 200, "{c}");
        let text = c["choices"][0]["text"].as_str().unwrap();
        assert!(text.starts_with('{'), "{text:?}");
        assert!(!text.contains("<|endoftext|>"), "{text:?}");
        if c["choices"][0]["finish_reason"] == "stop" {
            let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert!(v.is_object(), "{text:?}");
            closed += 1;
            keys += v.as_object().unwrap().len();
        }
    }
    assert!(
        closed >= 4 && keys >= 1,
        "{closed} of 6 closed, {keys} keys"
    );
    // greedy and unsteered: the start of an object when cut
    let (_, c) = complete(
        &s,
        json!({"prompt": "JSON:", "max_tokens": 10, "temperature": 0, "response_format": json_object}),
    )
    .await;
    let text = c["choices"][0]["text"].as_str().unwrap();
    assert!(text.starts_with('{'), "{text:?}");
    if c["choices"][0]["finish_reason"] == "stop" {
        assert!(serde_json::from_str::<Value>(text).is_ok(), "{text:?}");
    }
    // the same without JSON mode is not an object
    let (_, plain) = complete(
        &s,
        json!({"prompt": "JSON:", "max_tokens": 10, "temperature": 0}),
    )
    .await;
    assert_ne!(plain["choices"][0]["text"], c["choices"][0]["text"]);
    for format in [
        json!({"type": "json_schema", "json_schema": {}}),
        json!({"type": "xml"}),
        json!("json"),
    ] {
        let (code, e) = complete(&s, json!({"prompt": "x", "response_format": format})).await;
        assert_openai_error(code, &e, 400, "invalid_input", Some("response_format"));
    }
    let (code, _) = complete(
        &s,
        json!({"prompt": "x", "max_tokens": 1, "response_format": {"type": "text"}}),
    )
    .await;
    assert_eq!(code, 200);
}

/// Structured outputs: with `response_format` json_schema a completion is one value of
/// the schema once it stops (its keys in the declared order, required ones present,
/// enums and lengths held) and the start of one when cut; seeded samples of a
/// random-weight model, steered to close by a logit bias. A schema the grammar cannot
/// enforce is a 400 naming the keyword and its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn json_schema_completions_are_values_of_the_schema() {
    let s = server().await;
    let schema = json!({"type": "object", "properties": {
        "answer": {"enum": ["yes", "no"]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}, "maxItems": 2},
        "score": {"type": ["integer", "null"]}
    }, "required": ["answer", "score"]});
    let format = json!({"type": "json_schema", "json_schema": {"name": "reply", "strict": true, "schema": schema}});
    let mut closed = 0;
    for seed in 0..6 {
        let (code, c) = complete(
            &s,
            json!({"prompt": "Reply as JSON:", "max_tokens": 48, "temperature": 1.0, "seed": seed,
                   "response_format": format, "logit_bias": {"1": 8, "92": 8, "11": 4}}),
        )
        .await;
        assert_eq!(code, 200, "{c}");
        let text = c["choices"][0]["text"].as_str().unwrap();
        // the first key is forced
        let start = text.trim_start_matches('{').trim_start();
        assert!(
            start.starts_with("\"answer\"") || "\"answer\"".starts_with(start),
            "{text:?}"
        );
        if c["choices"][0]["finish_reason"] != "stop" {
            continue;
        }
        closed += 1;
        let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        let o = v.as_object().unwrap();
        let keys: Vec<&str> = o.keys().map(String::as_str).collect();
        assert!(
            keys == ["answer", "score"] || keys == ["answer", "tags", "score"],
            "{text:?}"
        );
        assert!(o["answer"] == "yes" || o["answer"] == "no", "{text:?}");
        assert!(
            o["score"].is_null() || o["score"].is_i64() || o["score"].is_u64(),
            "{text:?}"
        );
        if let Some(tags) = o.get("tags") {
            let tags = tags.as_array().unwrap();
            assert!(tags.len() <= 2, "{text:?}");
            assert!(
                tags.iter()
                    .all(|t| t.as_str().unwrap().chars().count() <= 3),
                "{text:?}"
            );
        }
    }
    assert!(closed >= 3, "{closed} of 6 closed");
    for (schema, words) in [
        (
            json!({"type": "object", "properties": {"ids": {"type": "array", "uniqueItems": true}}}),
            vec!["#/properties/ids", "\"uniqueItems\""],
        ),
        (
            json!({"type": "object", "properties": {"id": {"type": "string", "pattern": "^(?=x)"}}}),
            vec!["#/properties/id/pattern", "look-around"],
        ),
        (json!({"type": "number"}), vec!["root"]),
        (
            json!({"type": "object", "properties": {"a": {"$ref": "#/$defs/B"}}}),
            vec!["#/$defs/B"],
        ),
    ] {
        let format = json!({"type": "json_schema", "json_schema": {"name": "x", "schema": schema}});
        let (code, e) = complete(&s, json!({"prompt": "x", "response_format": format})).await;
        assert_openai_error(code, &e, 400, "invalid_input", Some("response_format"));
        let message = e["error"]["message"].as_str().unwrap();
        for w in words {
            assert!(message.contains(w), "{message:?} lacks {w:?}");
        }
    }
}

/// vLLM's structured outputs: `guided_choice` (the reply is exactly one of the
/// strings), `guided_regex` (plain text the expression matches whole; end-of-text may
/// be picked where it may end), `guided_json` (a schema, or its text) and the newer
/// `structured_outputs` object; two ways at once, or what the grammar cannot hold, are
/// 400s naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn guided_replies_are_one_of_the_choices_or_match_the_expression() {
    let s = server().await;
    let choices = ["positive", "negative", "neutral"];
    let re = regex::Regex::new("^(?:[0-9]{2}-[a-z]{2,3})$").unwrap();
    for seed in 0..4 {
        let (code, c) = complete(
            &s,
            json!({"prompt": "Sentiment:", "max_tokens": 8, "temperature": 1.0, "seed": seed,
                   "guided_choice": choices}),
        )
        .await;
        assert_eq!(code, 200, "{c}");
        let text = c["choices"][0]["text"].as_str().unwrap();
        assert!(choices.contains(&text), "{text:?}");
        assert_eq!(c["choices"][0]["finish_reason"], "stop");
        let (code, c) = complete(
            &s,
            json!({"prompt": "Code:", "max_tokens": 12, "temperature": 1.0, "seed": seed,
                   "guided_regex": "[0-9]{2}-[a-z]{2,3}"}),
        )
        .await;
        assert_eq!(code, 200, "{c}");
        let text = c["choices"][0]["text"].as_str().unwrap();
        assert!(re.is_match(text), "{text:?}");
        assert_eq!(c["choices"][0]["finish_reason"], "stop");
    }
    for extra in [
        json!({"structured_outputs": {"choice": ["a b", "c"]}}),
        json!({"structured_outputs": {"json": {"type": "object", "properties": {"k": {"const": 1}}, "required": ["k"]}}}),
        json!({"guided_json": "{\"type\": \"object\", \"properties\": {\"k\": {\"const\": 1}}, \"required\": [\"k\"]}"}),
    ] {
        let mut body = json!({"prompt": "x", "max_tokens": 20, "temperature": 0});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (code, c) = complete(&s, body.clone()).await;
        assert_eq!(code, 200, "{body}: {c}");
        let text = c["choices"][0]["text"].as_str().unwrap();
        let ok = text == "a b"
            || text == "c"
            || serde_json::from_str::<Value>(text).is_ok_and(|v| v == json!({"k": 1}));
        assert!(ok, "{body}: {text:?}");
    }
    for (extra, param) in [
        (
            json!({"guided_choice": ["a"], "response_format": {"type": "json_object"}}),
            "guided_choice",
        ),
        (
            json!({"guided_choice": ["a"], "guided_regex": "a"}),
            "guided_choice",
        ),
        (
            json!({"structured_outputs": {"grammar": "root ::= \"a\""}}),
            "structured_outputs",
        ),
        (
            json!({"structured_outputs": {"json_object": false}}),
            "structured_outputs",
        ),
        (json!({"guided_choice": []}), "guided_choice"),
        (json!({"guided_choice": ["a", 1]}), "guided_choice"),
        (json!({"guided_regex": "(?=x)"}), "guided_regex"),
        (json!({"guided_json": "not json"}), "guided_json"),
        (json!({"guided_json": {"type": "number"}}), "guided_json"),
    ] {
        let mut body = json!({"prompt": "x"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (code, e) = complete(&s, body.clone()).await;
        assert_openai_error(code, &e, 400, "invalid_input", Some(param));
    }
}

/// A prompt that starts like an earlier one (a shared system text of 2 KV pages and
/// more) is prefilled from the first page the prefix cache does not hold: `/status`
/// and `/metrics` count the tokens found, and the completion is the one a server
/// without the cache gives (`--no-prefix-cache`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prompts_starting_alike_are_counted_in_status_and_metrics() {
    let system = "You are a terse assistant. Answer in one line, never more, and do not repeat the question back to the user. ";
    let prompts = [
        format!("{system}Q: what is a cat?"),
        format!("{system}Q: name a colour."),
    ];
    let mut answers = Vec::new();
    for cache in [true, false] {
        let s = Server::with(
            ServerConfig::default(),
            EngineOptions {
                prefix_cache: cache,
                ..EngineOptions::default()
            },
        )
        .await;
        assert_eq!(init(&s, &small()).await.0, 200);
        let mut texts = Vec::new();
        let mut cached = Vec::new();
        for p in &prompts {
            let (code, c) =
                complete(&s, json!({"prompt": p, "max_tokens": 6, "temperature": 0})).await;
            assert_eq!(code, 200, "{c}");
            texts.push(c["choices"][0]["text"].clone());
            cached.push(
                c["usage"]["prompt_tokens_details"]["cached_tokens"]
                    .as_u64()
                    .unwrap(),
            );
        }
        answers.push(texts);
        let (_, status) = get(&s, "/api/v1/status").await;
        let kv = &status["batching"]["kv_pool"];
        let hits = kv["prefix_cache_hit_tokens"].as_u64().unwrap();
        let metrics = get_text(&s, "/metrics").await;
        assert!(
            metrics.contains(&format!("wgformer_prefix_cache_hit_tokens_total {hits}")),
            "{metrics}"
        );
        assert_eq!(kv["prefix_cache"], cache, "{kv}");
        // the usage says so too: the second prompt's pages were found
        assert_eq!(cached[0], 0);
        assert_eq!(cached[1], if cache { hits } else { 0 }, "{kv}");
        if cache {
            assert!(hits >= 16, "{kv}");
            assert!(kv["pages_cached"].as_u64().unwrap() >= 1, "{kv}");
        } else {
            assert_eq!((hits, kv["pages_cached"].as_u64()), (0, Some(0)), "{kv}");
        }
        assert!(kv["prompt_tokens"].as_u64().unwrap() > 2 * 16, "{kv}");
    }
    assert_eq!(answers[0], answers[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prompts_times_n_and_seeds() {
    let s = server().await;
    let body = json!({"prompt": ["one", "two", "three"], "n": 2, "max_tokens": 5,
        "temperature": 1.0, "seed": 11});
    let (code, a) = complete(&s, body.clone()).await;
    assert_eq!(code, 200, "{a}");
    let choices = a["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 6);
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i);
    }
    assert_eq!(a["usage"]["completion_tokens"], 30);
    let (_, b) = complete(&s, body).await;
    assert_eq!(a["choices"], b["choices"], "same seed, same choices");
    // choice j of a prompt uses seed + j: choice 1 of prompt 0 = choice 0 with seed 12
    let (_, c) = complete(
        &s,
        json!({"prompt": "one", "max_tokens": 5, "temperature": 1.0, "seed": 12}),
    )
    .await;
    assert_eq!(c["choices"][0]["text"], a["choices"][1]["text"]);
    // prompt tokens are counted once per prompt
    let (_, one) = complete(&s, json!({"prompt": "one", "max_tokens": 1})).await;
    let (_, many) = complete(&s, json!({"prompt": "one", "n": 3, "max_tokens": 1})).await;
    assert_eq!(
        one["usage"]["prompt_tokens"],
        many["usage"]["prompt_tokens"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stop_strings_end_the_choice() {
    let s = server().await;
    let (_, free) = complete(
        &s,
        json!({"prompt": "Deep learning is", "max_tokens": 10, "temperature": 0}),
    )
    .await;
    let text = free["choices"][0]["text"].as_str().unwrap().to_string();
    // stop at the third generated token's text
    let (_, lp) = complete(
        &s,
        json!({"prompt": "Deep learning is", "max_tokens": 10, "temperature": 0, "logprobs": 0}),
    )
    .await;
    let third = lp["choices"][0]["logprobs"]["tokens"][2]
        .as_str()
        .unwrap()
        .to_string();
    let (code, c) = complete(
        &s,
        json!({"prompt": "Deep learning is", "max_tokens": 10, "temperature": 0, "stop": [third.clone(), "zzzz"]}),
    )
    .await;
    assert_eq!(code, 200, "{c}");
    let ch = &c["choices"][0];
    assert_eq!(ch["finish_reason"], "stop");
    let cut = &text[..text.find(&third).unwrap()];
    assert_eq!(ch["text"], cut, "full: {text:?}, stop: {third:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logprobs_are_sensible() {
    let s = server().await;
    let (code, c) = complete(
        &s,
        json!({"prompt": "Hello there", "max_tokens": 6, "temperature": 0, "logprobs": 3}),
    )
    .await;
    assert_eq!(code, 200, "{c}");
    let ch = &c["choices"][0];
    let lp = &ch["logprobs"];
    let tokens = lp["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 6);
    let text = ch["text"].as_str().unwrap();
    let mut last = 0;
    for i in 0..6 {
        let l = lp["token_logprobs"][i].as_f64().unwrap();
        assert!(l <= 0.0 && l.is_finite(), "{l}");
        let top = lp["top_logprobs"][i].as_object().unwrap();
        assert!((3..=4).contains(&top.len()), "{top:?}");
        // greedy: the chosen token is the most likely one
        let best = top
            .values()
            .map(|v| v.as_f64().unwrap())
            .fold(f64::MIN, f64::max);
        assert!((best - l).abs() < 1e-5, "chosen {l}, best {best}");
        let total: f64 = top.values().map(|v| v.as_f64().unwrap().exp()).sum();
        assert!(total <= 1.0 + 1e-4, "{total}");
        // offsets rise and point at the token's text
        let off = lp["text_offset"][i].as_u64().unwrap() as usize;
        assert!(off >= last);
        last = off;
        let tok = tokens[i].as_str().unwrap();
        if !tok.contains('\u{FFFD}') {
            let from: String = text.chars().skip(off).collect();
            assert!(from.starts_with(tok), "{text:?} at {off}: {tok:?}");
        }
    }
    let (code, e) = complete(&s, json!({"prompt": "x", "logprobs": 6})).await;
    assert_openai_error(code, &e, 400, "invalid_input", Some("logprobs"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn echo_and_scoring() {
    let s = server().await;
    let prompt = "The cat sat on the mat";
    let (_, g) = complete(
        &s,
        json!({"prompt": prompt, "max_tokens": 4, "temperature": 0}),
    )
    .await;
    let (code, c) = complete(
        &s,
        json!({"prompt": prompt, "max_tokens": 4, "temperature": 0, "echo": true}),
    )
    .await;
    assert_eq!(code, 200, "{c}");
    assert_eq!(
        c["choices"][0]["text"].as_str().unwrap(),
        format!("{prompt}{}", g["choices"][0]["text"].as_str().unwrap())
    );
    // scoring: echo + logprobs + max_tokens 0
    let (code, c) = complete(
        &s,
        json!({"prompt": prompt, "max_tokens": 0, "echo": true, "logprobs": 1}),
    )
    .await;
    assert_eq!(code, 200, "{c}");
    let ch = &c["choices"][0];
    assert_eq!(ch["text"], prompt);
    let lp = &ch["logprobs"];
    let n = c["usage"]["prompt_tokens"].as_u64().unwrap() as usize;
    assert_eq!(lp["tokens"].as_array().unwrap().len(), n);
    assert_eq!(lp["token_logprobs"][0], Value::Null);
    assert_eq!(lp["top_logprobs"][0], Value::Null);
    assert_eq!(lp["text_offset"][0], 0);
    for i in 1..n {
        let l = lp["token_logprobs"][i].as_f64().unwrap();
        assert!(l < 0.0 && l.is_finite());
    }
    let joined: String = lp["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(joined, prompt);
    assert_eq!(c["usage"]["completion_tokens"], 0);
    // the prompt logprobs continue into the generated ones
    let (_, c) = complete(
        &s,
        json!({"prompt": prompt, "max_tokens": 2, "temperature": 0, "echo": true, "logprobs": 0}),
    )
    .await;
    assert_eq!(
        c["choices"][0]["logprobs"]["tokens"]
            .as_array()
            .unwrap()
            .len(),
        n + 2
    );
    let (code, e) = complete(&s, json!({"prompt": prompt, "max_tokens": 0})).await;
    assert_openai_error(code, &e, 400, "invalid_input", Some("max_tokens"));
    // offsets count characters, as Python's str does, and rise through characters
    // that byte-level BPE splits over several tokens (each of those points at the
    // character's start)
    let split = "né 😀 ü😀x end";
    let (code, c) = complete(
        &s,
        json!({"prompt": split, "max_tokens": 6, "temperature": 0, "echo": true, "logprobs": 0}),
    )
    .await;
    assert_eq!(code, 200, "{c}");
    let ch = &c["choices"][0];
    let text: Vec<char> = ch["text"].as_str().unwrap().chars().collect();
    let offsets: Vec<usize> = ch["logprobs"]["text_offset"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_u64().unwrap() as usize)
        .collect();
    let tokens = ch["logprobs"]["tokens"].as_array().unwrap();
    assert!(tokens.len() > split.chars().count(), "{tokens:?}");
    let mut whole = 0;
    for (i, &off) in offsets.iter().enumerate() {
        assert!(
            i == 0 || off >= offsets[i - 1],
            "offsets fall at {i}: {offsets:?}"
        );
        assert!(off <= text.len(), "{off} past the text");
        // the token's whole characters, up to a piece of a split one
        let tok = tokens[i].as_str().unwrap();
        let head = tok.split('\u{FFFD}').next().unwrap();
        let from: String = text[off..].iter().collect();
        assert!(
            from.starts_with(head),
            "token {i} {tok:?} at {off}: {from:?}"
        );
        if head.is_empty() {
            // a token starting inside a split character points at the text held back
            // with it: that character, or the whole characters of the token it began in
            assert!(
                from.chars().take(3).any(|c| !c.is_ascii()),
                "token {i} at {off}: {from:?}"
            );
        } else if head == tok {
            whole += 1;
        }
    }
    assert!(whole > 6, "{tokens:?}");
    let end = split.chars().position(|c| c == 'x').unwrap();
    assert!(
        offsets.contains(&end),
        "{offsets:?}: 'x' is at character {end}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streaming_chunks_then_done() {
    let s = server().await;
    let (_, whole) = complete(
        &s,
        json!({"prompt": ["Once upon", "In a"], "max_tokens": 5, "temperature": 0}),
    )
    .await;
    let r = client()
        .post(s.url("/v1/completions"))
        .json(
            &json!({"prompt": ["Once upon", "In a"], "max_tokens": 5, "temperature": 0,
            "stream": true, "stream_options": {"include_usage": true}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let data = sse_data(&r.text().await.unwrap());
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"], whole["usage"]);
    let mut texts = [String::new(), String::new()];
    let mut finished = [false, false];
    let mut tokens = [0, 0];
    for c in &chunks[..chunks.len() - 1] {
        assert_eq!(c["object"], "text_completion");
        assert_eq!(c["id"], chunks[0]["id"], "one id for the whole stream");
        let ch = &c["choices"][0];
        let i = ch["index"].as_u64().unwrap() as usize;
        assert!(!finished[i], "a chunk after the choice's last one");
        texts[i].push_str(ch["text"].as_str().unwrap());
        match ch["finish_reason"].as_str() {
            Some(r) => {
                assert_eq!(r, "length");
                finished[i] = true;
            }
            None => tokens[i] += 1,
        }
    }
    assert_eq!(finished, [true, true]);
    assert_eq!(tokens, [5, 5], "one chunk per token");
    for i in 0..2 {
        assert_eq!(texts[i], whole["choices"][i]["text"].as_str().unwrap());
    }
    // without include_usage: no usage chunk
    let r = client()
        .post(s.url("/v1/completions"))
        .json(&json!({"prompt": "x", "max_tokens": 2, "stream": true}))
        .send()
        .await
        .unwrap();
    let data = sse_data(&r.text().await.unwrap());
    assert_eq!(data.len(), 4, "{data:?}");
    assert!(data.iter().all(|d| !d.contains("\"usage\"")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn errors_take_the_openai_shape() {
    let s = Server::with(
        ServerConfig {
            api_keys: vec!["sk-test".into()],
            ..ServerConfig::default()
        },
        EngineOptions::default(),
    )
    .await;
    let c = client();
    let post_key = |body: Value| {
        c.post(s.url("/v1/completions"))
            .header("authorization", "Bearer sk-test")
            .json(&body)
            .send()
    };
    // no model yet
    let r = post_key(json!({"prompt": "x"})).await.unwrap();
    let code = r.status().as_u16();
    assert_openai_error(
        code,
        &r.json().await.unwrap(),
        400,
        "model_not_initialized",
        None,
    );
    let r = c
        .get(s.url("/api/v1/initialize"))
        .header("authorization", "Bearer sk-test")
        .query(&[("config", small().to_string())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    for (body, param) in [
        (json!({"prompt": "x", "max_tokens": "many"}), "max_tokens"),
        (json!({"prompt": "x", "max_tokens": -1}), "max_tokens"),
        (json!({"prompt": "x", "temperature": 3}), "temperature"),
        (json!({"prompt": "x", "top_p": 0}), "top_p"),
        (json!({"prompt": "x", "n": 0}), "n"),
        (json!({"prompt": ["a", "b"], "n": 40}), "n"),
        (json!({"prompt": "x", "stop": vec!["a"; 33]}), "stop"),
        (json!({"prompt": vec!["a"; 65]}), "prompt"),
        (json!({"prompt": "x", "max_tokens": 100000}), "max_tokens"),
        (json!({"prompt": "x", "stop": 3}), "stop"),
        (json!({"prompt": "x", "seed": -2}), "seed"),
        (json!({"prompt": ""}), "prompt"),
        (json!({"prompt": [1, "a"]}), "prompt"),
        (json!({"prompt": {"a": 1}}), "prompt"),
        (json!({"max_tokens": 3}), "prompt"),
    ] {
        let r = post_key(body.clone()).await.unwrap();
        let code = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        assert_openai_error(code, &v, 400, "invalid_input", Some(param));
    }
    let r = post_key(json!({"model": "gpt-4", "prompt": "x"}))
        .await
        .unwrap();
    let code = r.status().as_u16();
    assert_openai_error(
        code,
        &r.json().await.unwrap(),
        404,
        "model_not_found",
        Some("model"),
    );
    // a token outside the vocabulary
    let r = post_key(json!({"prompt": [99999999]})).await.unwrap();
    let code = r.status().as_u16();
    assert_openai_error(
        code,
        &r.json().await.unwrap(),
        400,
        "invalid_input",
        Some("prompt"),
    );
    // malformed JSON, no key, unknown route, wrong method: same shape
    let r = c
        .post(s.url("/v1/completions"))
        .header("authorization", "Bearer sk-test")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    assert_openai_error(code, &r.json().await.unwrap(), 400, "invalid_input", None);
    let r = c
        .post(s.url("/v1/completions"))
        .json(&json!({"prompt": "x"}))
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    assert_openai_error(code, &r.json().await.unwrap(), 401, "unauthorized", None);
    let r = c
        .get(s.url("/v1/chat/nothing"))
        .header("authorization", "Bearer sk-test")
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    assert_openai_error(code, &r.json().await.unwrap(), 404, "not_found", None);
    let r = c
        .get(s.url("/v1/completions"))
        .header("authorization", "Bearer sk-test")
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    assert_openai_error(
        code,
        &r.json().await.unwrap(),
        405,
        "method_not_allowed",
        None,
    );
    // the v1 contract routes keep their own envelope
    let r = c.get(s.url("/api/v1/status")).send().await.unwrap();
    let code = r.status().as_u16();
    assert_error(code, &r.json().await.unwrap(), 401, "UNAUTHORIZED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_queue_is_503_in_the_openai_shape() {
    // one generation runs (max_batch 1), two choices wait (queue 2): the next request
    // finds the queue full and gets 503 in the OpenAI shape with Retry-After
    let s = Server::with(
        ServerConfig::default(),
        EngineOptions {
            queue_capacity: 2,
            max_batch: 1,
            ..EngineOptions::default()
        },
    )
    .await;
    let cfg = json!({"n_layer": 2, "n_embed": 64, "n_head": 2, "context_size": 512});
    assert_eq!(init(&s, &cfg).await.0, 200);
    let long = {
        let url = s.url("/v1/completions");
        tokio::spawn(async move {
            client()
                .post(url)
                .json(&json!({"prompt": "x", "max_tokens": 500, "temperature": 0}))
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    // wait (bounded) until the long generation runs, then until two choices wait
    until_status(&s, "active_generations", 1).await;
    let waiting = {
        let url = s.url("/v1/completions");
        tokio::spawn(async move {
            client()
                .post(url)
                .json(&json!({"prompt": "x", "n": 2, "max_tokens": 1}))
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    until_status(&s, "queue_depth", 2).await;
    let r = client()
        .post(s.url("/v1/completions"))
        .json(&json!({"prompt": "x", "max_tokens": 1}))
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    assert!(r.headers().contains_key("retry-after"));
    let v: Value = r.json().await.unwrap();
    assert_openai_error(code, &v, 503, "service_unavailable", None);
    assert_eq!(long.await.unwrap().unwrap(), 200);
    assert_eq!(waiting.await.unwrap().unwrap(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokenize_and_detokenize() {
    let s = Server::start(8, 1 << 20).await;
    let (code, v) = post(&s, "/v1/tokenize", json!({"content": "hi"})).await;
    assert_openai_error(code, &v, 400, "model_not_initialized", None);
    assert_eq!(init(&s, &small()).await.0, 200);
    let (code, v) = post(&s, "/v1/tokenize", json!({"content": "Hello world"})).await;
    assert_eq!(code, 200);
    assert_eq!(v["tokens"], json!([15496, 995]));
    let (_, v) = post(
        &s,
        "/v1/tokenize",
        json!({"content": "Hello world", "with_pieces": true}),
    )
    .await;
    assert_eq!(v["tokens"][1], json!({"id": 995, "piece": " world"}));
    let (code, v) = post(&s, "/v1/detokenize", json!({"tokens": [15496, 995]})).await;
    assert_eq!((code, v), (200, json!({"content": "Hello world"})));
    let (code, v) = post(&s, "/v1/detokenize", json!({"tokens": [60000]})).await;
    assert_openai_error(code, &v, 400, "invalid_input", Some("tokens"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scored_token_has_the_logprob_it_was_generated_with() {
    // echo logprobs are aligned: score prompt + the greedy token with echo, and the
    // last scored logprob is the one the token had when it was generated (a shift by
    // one position, token i scored from row i instead of i - 1, fails this)
    let s = server().await;
    let prompt = "The cat sat on the mat";
    let (code, g) = complete(
        &s,
        json!({"prompt": prompt, "max_tokens": 1, "temperature": 0, "logprobs": 0}),
    )
    .await;
    assert_eq!(code, 200, "{g}");
    let token = g["choices"][0]["text"].as_str().unwrap().to_string();
    let generated = g["choices"][0]["logprobs"]["token_logprobs"][0]
        .as_f64()
        .unwrap();
    let (code, t) = post(&s, "/v1/tokenize", json!({"content": prompt})).await;
    assert_eq!(code, 200, "{t}");
    let mut ids = common::json_ids(&t["tokens"]);
    let (_, tok) = post(&s, "/v1/tokenize", json!({"content": token})).await;
    let token_ids = common::json_ids(&tok["tokens"]);
    assert_eq!(token_ids.len(), 1, "one token: {token:?}");
    ids.push(token_ids[0]);
    let (code, c) = complete(
        &s,
        json!({"prompt": ids, "max_tokens": 0, "echo": true, "logprobs": 0}),
    )
    .await;
    assert_eq!(code, 200, "{c}");
    let scored = c["choices"][0]["logprobs"]["token_logprobs"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .as_f64()
        .unwrap();
    assert!(
        (scored - generated).abs() < 1e-3,
        "scored {scored}, generated with {generated}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_that_can_never_be_admitted_are_400() {
    // more choices than the server takes at once (max batch + queue): a 400 naming
    // the limit, not a 503 forever;
    // prompt ids past the tokenizer's vocabulary (GPT-2's 50257, the model padded to
    // 50304) are refused as /v1/detokenize refuses them
    let s = Server::with(
        ServerConfig::default(),
        EngineOptions {
            queue_capacity: 4,
            max_batch: 2,
            ..EngineOptions::default()
        },
    )
    .await;
    assert_eq!(
        init(
            &s,
            &json!({"n_layer": 1, "n_embed": 32, "n_head": 2, "context_size": 64})
        )
        .await
        .0,
        200
    );
    let (code, r) = complete(
        &s,
        json!({"prompt": ["a", "b", "c", "d", "e", "f", "g"], "max_tokens": 1}),
    )
    .await;
    assert_openai_error(code, &r, 400, "invalid_input", Some("prompt"));
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--queue-depth"),
        "{r}"
    );
    let (code, r) = complete(&s, json!({"prompt": "a", "n": 7, "max_tokens": 1})).await;
    assert_openai_error(code, &r, 400, "invalid_input", Some("n"));
    let (code, _) = complete(&s, json!({"prompt": "a", "n": 6, "max_tokens": 1})).await;
    assert_eq!(code, 200);
    let (code, r) = complete(&s, json!({"prompt": [50300], "max_tokens": 1})).await;
    assert_openai_error(code, &r, 400, "invalid_input", Some("prompt"));
    assert_eq!(
        post(&s, "/v1/detokenize", json!({"tokens": [50300]}))
            .await
            .0,
        400
    );
}

async fn embed(s: &Server, body: Value) -> (u16, Value) {
    post(s, "/v1/embeddings", body).await
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embeddings_are_unit_vectors_the_same_alone_or_together() {
    let s = server().await;
    let (code, v) = embed(
        &s,
        json!({"model": "wgformer", "input": "Deep learning is"}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        (&v["object"], &v["model"]),
        (&json!("list"), &json!("wgformer"))
    );
    let d = &v["data"][0];
    assert_eq!(
        (&d["object"], &d["index"]),
        (&json!("embedding"), &json!(0))
    );
    let one = floats(&d["embedding"]);
    assert_eq!(one.len(), 32, "n_embed");
    let norm: f32 = one.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "{norm}");
    // usage: the tokens of the input, as /v1/tokenize counts them
    let (_, t) = post(&s, "/v1/tokenize", json!({"content": "Deep learning is"})).await;
    let ids = t["tokens"].as_array().unwrap().clone();
    assert_eq!(v["usage"]["prompt_tokens"], ids.len());
    assert_eq!(v["usage"]["total_tokens"], ids.len());
    // several inputs: in order, each what it is alone (shared traversals); token ids
    // embed as their text does
    let texts = [
        "The quick brown fox",
        "Deep learning is",
        "a",
        "The quick brown fox",
    ];
    let (code, many) = embed(&s, json!({"input": texts})).await;
    assert_eq!(code, 200, "{many}");
    let data = many["data"].as_array().unwrap();
    assert_eq!(data.len(), 4);
    for (i, text) in texts.iter().enumerate() {
        assert_eq!(data[i]["index"], i);
        let (_, alone) = embed(&s, json!({"input": text})).await;
        assert_eq!(
            data[i]["embedding"], alone["data"][0]["embedding"],
            "{text}"
        );
    }
    assert_ne!(data[0]["embedding"], data[1]["embedding"]);
    // more inputs than one traversal takes (16) and than the context holds (64
    // tokens): several traversals, the same numbers
    let words: Vec<String> = (0..21).map(|i| format!("word {i} of a list")).collect();
    let (code, all) = embed(&s, json!({"input": words})).await;
    assert_eq!(code, 200, "{all}");
    for i in [0, 15, 16, 20] {
        let (_, alone) = embed(&s, json!({"input": words[i]})).await;
        assert_eq!(
            all["data"][i]["embedding"], alone["data"][0]["embedding"],
            "{i}"
        );
    }
    let (_, by_ids) = embed(&s, json!({"input": ids})).await;
    assert_eq!(by_ids["data"][0]["embedding"], d["embedding"]);
    let (_, lists) = embed(&s, json!({"input": [ids, ids]})).await;
    assert_eq!(lists["data"][1]["embedding"], d["embedding"]);
    // base64: the same floats' little-endian bytes
    let (code, b) = embed(
        &s,
        json!({"input": "Deep learning is", "encoding_format": "base64"}),
    )
    .await;
    assert_eq!(code, 200, "{b}");
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(decoded, one);
    // dimensions: the first 8 of the same direction, made unit again
    let (code, short) = embed(&s, json!({"input": "Deep learning is", "dimensions": 8})).await;
    assert_eq!(code, 200, "{short}");
    let short = floats(&short["data"][0]["embedding"]);
    let head: f32 = one[..8].iter().map(|x| x * x).sum::<f32>().sqrt();
    for (a, b) in short.iter().zip(&one[..8]) {
        assert!((a - b / head).abs() < 1e-5, "{a} {b}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embeddings_errors_name_the_parameter() {
    let s = Server::start(8, 1 << 20).await;
    // no model loaded
    let (code, v) = embed(&s, json!({"input": "hi"})).await;
    assert_openai_error(code, &v, 400, "model_not_initialized", None);
    assert_eq!(init(&s, &small()).await.0, 200);
    for (body, param) in [
        (json!({}), "input"),
        (json!({"input": ""}), "input"),
        (json!({"input": []}), "input"),
        (json!({"input": ["ok", ""]}), "input"),
        (json!({"input": [[1, 2], []]}), "input"),
        (json!({"input": {"text": "hi"}}), "input"),
        (json!({"input": [1, -2]}), "input"),
        // a token outside the vocabulary (50,304), an input past the context (64)
        (json!({"input": [[5], [60000]]}), "input"),
        (json!({"input": ["a", "word ".repeat(80)]}), "input"),
        (json!({"input": vec!["a"; 2049]}), "input"),
        (
            json!({"input": "hi", "encoding_format": "hex"}),
            "encoding_format",
        ),
        (json!({"input": "hi", "dimensions": 0}), "dimensions"),
        (json!({"input": "hi", "dimensions": 33}), "dimensions"),
        (json!({"input": "hi", "dimensions": "8"}), "dimensions"),
    ] {
        let (code, e) = embed(&s, body.clone()).await;
        if body.get("input").is_none() || body["dimensions"] == "8" {
            // a missing field or a wrong type: the body's shape is refused
            assert_eq!(code, 400, "{body}: {e}");
            assert!(e["error"]["message"].is_string(), "{e}");
            continue;
        }
        assert_openai_error(code, &e, 400, "invalid_input", Some(param));
        assert!(!e["error"]["message"].as_str().unwrap().is_empty());
    }
    // the input at fault is named
    let (_, e) = embed(&s, json!({"input": [[5], [60000]]})).await;
    let m = e["error"]["message"].as_str().unwrap();
    assert!(m.contains("input[1]") && m.contains("60000"), "{m}");
    let (_, e) = embed(&s, json!({"input": ["a", "word ".repeat(80)]})).await;
    let m = e["error"]["message"].as_str().unwrap();
    assert!(m.contains("input[1]") && m.contains("context of 64"), "{m}");
    let (code, e) = embed(&s, json!({"model": "gpt-4", "input": "hi"})).await;
    assert_openai_error(code, &e, 404, "model_not_found", Some("model"));
    // the model still serves
    let (code, v) = embed(&s, json!({"input": "still here"})).await;
    assert_eq!(code, 200, "{v}");
}
