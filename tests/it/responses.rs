//! `/v1/responses` (OpenAI's Responses API): the reply a chat completion of the same
//! conversation gives, whole and as typed events; stored responses continued, counted,
//! listed and forgotten, each API key's its own; function calls as items; truncation; every
//! refusal naming its field.

use crate::chat::{closing_bias, hermes_server, models_dir, templated_server};
use crate::common;

use common::http::*;
use serde_json::{json, Value};

/// A template that shows each message's role.
const ROLES: &str = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}";

async fn create(s: &Server, body: Value) -> (u16, Value) {
    post(s, "/v1/responses", body).await
}

/// A streamed response's events: (the SSE event name, its data).
async fn events(s: &Server, body: &Value) -> Vec<(String, Value)> {
    let mut body = body.clone();
    body["stream"] = json!(true);
    let text = post_text(s, "/v1/responses", &body).await;
    let mut out = Vec::new();
    let mut name = None;
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("event: ") {
            name = Some(n.to_string());
        } else if let Some(d) = line.strip_prefix("data: ") {
            let data: Value = serde_json::from_str(d).unwrap_or_else(|e| panic!("{d}: {e}"));
            out.push((name.take().expect("every event is named"), data));
        }
    }
    out
}

/// The event stream's rules: each named by its type, numbered from 0 without gaps,
/// opened by `response.created` and `response.in_progress`, closed by the finished
/// response (the same id); returns the finished response.
fn check_stream(evs: &[(String, Value)]) -> Value {
    for (i, (name, data)) in evs.iter().enumerate() {
        assert_eq!(data["type"], name.as_str(), "{data}");
        assert_eq!(data["sequence_number"], i, "{data}");
    }
    assert_eq!(evs[0].0, "response.created");
    assert_eq!(evs[1].0, "response.in_progress");
    assert_eq!(evs[0].1["response"]["status"], "in_progress");
    let (last, done) = evs.last().unwrap();
    assert!(
        last == "response.completed" || last == "response.incomplete",
        "{last}"
    );
    let r = done["response"].clone();
    assert_eq!(r["id"], evs[0].1["response"]["id"]);
    assert_eq!(
        last.trim_start_matches("response."),
        r["status"].as_str().unwrap()
    );
    r
}

fn of_type<'a>(evs: &'a [(String, Value)], kind: &str) -> Vec<&'a Value> {
    evs.iter()
        .filter(|(n, _)| n == kind)
        .map(|(_, d)| d)
        .collect()
}

fn text_of(r: &Value) -> String {
    r["output"][0]["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A response is the chat completion of its conversation (instructions as the system
/// message, a developer message as a system one): the same text, tokens and logprobs;
/// streamed, the deltas make the same text.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_response_is_the_chat_reply_whole_and_streamed() {
    let (s, models) = templated_server("responses", ROLES).await;
    let body = json!({"input": "Hi", "instructions": "Be brief", "max_output_tokens": 6,
                      "temperature": 0, "include": ["message.output_text.logprobs"], "top_logprobs": 2,
                      "metadata": {"run": "1"}});
    let (code, r) = create(&s, body.clone()).await;
    assert_eq!(code, 200, "{r}");
    let (code, c) = post(
        &s,
        "/v1/chat/completions",
        json!({"messages": [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Hi"}],
               "max_tokens": 6, "temperature": 0, "logprobs": true, "top_logprobs": 2}),
    )
    .await;
    assert_eq!(code, 200, "{c}");
    let choice = &c["choices"][0];
    assert_eq!(r["object"], "response");
    assert!(r["id"].as_str().unwrap().starts_with("resp_"));
    assert_eq!(r["output"].as_array().unwrap().len(), 1, "{r}");
    let item = &r["output"][0];
    assert_eq!(
        (&item["type"], &item["role"]),
        (&json!("message"), &json!("assistant"))
    );
    assert!(item["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(text_of(&r), choice["message"]["content"].as_str().unwrap());
    assert_eq!(item["content"][0]["type"], "output_text");
    assert_eq!(
        item["content"][0]["logprobs"],
        choice["logprobs"]["content"]
    );
    assert_eq!(r["usage"]["input_tokens"], c["usage"]["prompt_tokens"]);
    assert_eq!(r["usage"]["output_tokens"], c["usage"]["completion_tokens"]);
    assert_eq!(r["usage"]["total_tokens"], c["usage"]["total_tokens"]);
    let cut = choice["finish_reason"] == "length";
    assert_eq!(r["status"], if cut { "incomplete" } else { "completed" });
    assert_eq!(item["status"], r["status"]);
    if cut {
        assert_eq!(r["incomplete_details"]["reason"], "max_output_tokens");
    }
    // what was asked is echoed
    assert_eq!(r["instructions"], "Be brief");
    assert_eq!(r["max_output_tokens"], 6);
    assert_eq!(r["temperature"], 0.0);
    assert_eq!(r["metadata"], json!({"run": "1"}));
    assert_eq!(r["store"], true);
    assert_eq!(r["text"], json!({"format": {"type": "text"}}));
    assert_eq!(r["tool_choice"], "auto");
    // streamed
    let evs = events(&s, &body).await;
    let done = check_stream(&evs);
    let added = of_type(&evs, "response.output_item.added");
    assert_eq!(added.len(), 1);
    assert_eq!(added[0]["item"]["status"], "in_progress");
    let deltas = of_type(&evs, "response.output_text.delta");
    let joined: String = deltas
        .iter()
        .map(|d| d["delta"].as_str().unwrap())
        .collect();
    assert_eq!(joined, text_of(&r));
    let lps: Vec<Value> = deltas
        .iter()
        .flat_map(|d| d["logprobs"].as_array().unwrap().clone())
        .collect();
    assert_eq!(Value::Array(lps), item["content"][0]["logprobs"]);
    assert_eq!(
        of_type(&evs, "response.output_text.done")[0]["text"],
        text_of(&r)
    );
    assert_eq!(done["output"][0]["id"], added[0]["item"]["id"]);
    assert_eq!(text_of(&done), text_of(&r));
    // (the same tokens; the prompt's pages are the prefix cache's by now)
    for n in ["input_tokens", "output_tokens", "total_tokens"] {
        assert_eq!(done["usage"][n], r["usage"][n]);
    }
    assert!(done["usage"]["input_tokens_details"]["cached_tokens"].as_u64() > Some(0));
    assert_eq!(
        of_type(&evs, "response.output_item.done")[0]["item"],
        done["output"][0]
    );
    // items: a developer message is a system message, parts joined by lines
    let (_, r2) = create(
        &s,
        json!({"input": [{"role": "developer", "content": "Be brief"},
                         {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]}],
               "max_output_tokens": 6, "temperature": 0}),
    )
    .await;
    assert_eq!(r2["usage"]["input_tokens"], r["usage"]["input_tokens"]);
    assert_eq!(text_of(&r2), text_of(&r));
    let _ = std::fs::remove_dir_all(&models);
}

/// A stored response is retrieved as answered, continued with `previous_response_id`
/// (its conversation and output before the new input; its instructions not), its input
/// items listed by page, and forgotten; `store: false` keeps nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stored_responses_continue_list_and_forget() {
    let (s, models) = templated_server("stored", ROLES).await;
    let (code, r1) = create(
        &s,
        json!({"input": "Hi", "instructions": "Sys", "max_output_tokens": 3, "temperature": 0}),
    )
    .await;
    assert_eq!(code, 200, "{r1}");
    let id1 = r1["id"].as_str().unwrap();
    let (code, r2) = create(
        &s,
        json!({"input": [{"role": "user", "content": "More"}], "previous_response_id": id1,
               "max_output_tokens": 3, "temperature": 0}),
    )
    .await;
    assert_eq!(code, 200, "{r2}");
    assert_eq!(r2["previous_response_id"], id1);
    let reply = text_of(&r1);
    let mut msgs = vec![json!({"role": "user", "content": "Hi"})];
    if !reply.is_empty() {
        msgs.push(json!({"role": "assistant", "content": reply}));
    }
    msgs.push(json!({"role": "user", "content": "More"}));
    let (_, t) = post(&s, "/tokenize", json!({ "messages": msgs })).await;
    assert_eq!(r2["usage"]["input_tokens"], t["count"], "{t}");
    // counted without generating
    let (code, n) = post(
        &s,
        "/v1/responses/input_tokens",
        json!({"input": [{"role": "user", "content": "More"}], "previous_response_id": id1}),
    )
    .await;
    assert_eq!(code, 200, "{n}");
    assert_eq!(
        n,
        json!({"object": "response.input_tokens", "input_tokens": t["count"]})
    );
    let id2 = r2["id"].as_str().unwrap();
    let (code, got) = get(&s, &format!("/v1/responses/{id2}")).await;
    assert_eq!(code, 200);
    assert_eq!(got, r2);
    // the items, newest first by default
    let items = |q: &str| {
        let s = &s;
        let path = format!("/v1/responses/{id2}/input_items{q}");
        async move { get(s, &path).await }
    };
    let (code, all) = items("").await;
    assert_eq!(code, 200, "{all}");
    assert_eq!(all["object"], "list");
    let data = all["data"].as_array().unwrap();
    assert_eq!(data.len(), 3, "{all}");
    assert_eq!(data[0]["content"][0]["text"], "More");
    assert_eq!(data[1]["id"], r1["output"][0]["id"]);
    assert_eq!(data[1]["role"], "assistant");
    assert_eq!(data[2]["content"][0]["text"], "Hi");
    assert_eq!(all["has_more"], false);
    assert_eq!(all["first_id"], data[0]["id"]);
    assert_eq!(all["last_id"], data[2]["id"]);
    let (_, asc) = items("?order=asc").await;
    let rev: Vec<Value> = data.iter().rev().cloned().collect();
    assert_eq!(asc["data"], Value::Array(rev));
    let (_, page) = items("?limit=1").await;
    assert_eq!(
        (
            page["has_more"].clone(),
            page["data"].as_array().unwrap().len()
        ),
        (json!(true), 1)
    );
    let after = format!("?limit=1&after={}", data[0]["id"].as_str().unwrap());
    let (_, next) = items(&after).await;
    assert_eq!(next["data"][0], data[1]);
    for (q, param) in [
        ("?limit=0", "limit"),
        ("?limit=x", "limit"),
        ("?order=up", "order"),
        ("?after=nope", "after"),
    ] {
        let (code, e) = items(q).await;
        assert_eq!(code, 400, "{q}: {e}");
        assert_eq!(e["error"]["param"], param, "{e}");
    }
    // nothing runs in the background to cancel
    let (code, e) = post(&s, &format!("/v1/responses/{id2}/cancel"), json!({})).await;
    assert_eq!(code, 400, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("background"),
        "{e}"
    );
    let (code, _) = post(&s, "/v1/responses/resp_none/cancel", json!({})).await;
    assert_eq!(code, 404);
    // forgotten: gone, and a second delete is a 404; what continued it still stands
    let c = client();
    let r = c
        .delete(s.url(&format!("/v1/responses/{id1}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v, json!({"id": id1, "object": "response", "deleted": true}));
    let r = c
        .delete(s.url(&format!("/v1/responses/{id1}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let (code, e) = get(&s, &format!("/v1/responses/{id1}")).await;
    assert_eq!(code, 404);
    assert_eq!(e["error"]["code"], "not_found", "{e}");
    let (code, r3) = create(
        &s,
        json!({"input": "Again", "previous_response_id": id2, "max_output_tokens": 1}),
    )
    .await;
    assert_eq!(code, 200, "{r3}");
    for path in ["/v1/responses", "/v1/responses/input_tokens"] {
        let (code, e) = post(&s, path, json!({"input": "x", "previous_response_id": id1})).await;
        assert_eq!(code, 404, "{path}");
        assert_eq!(e["error"]["param"], "previous_response_id", "{e}");
    }
    // not kept when asked not to
    let (_, r4) = create(
        &s,
        json!({"input": "x", "max_output_tokens": 1, "store": false}),
    )
    .await;
    assert_eq!(r4["store"], false);
    let (code, _) = get(&s, &format!("/v1/responses/{}", r4["id"].as_str().unwrap())).await;
    assert_eq!(code, 404);
    // counted by route, not by id
    let metrics = get_text(&s, "/metrics").await;
    assert!(
        metrics.contains("route=\"/v1/responses/{response_id}/input_items\""),
        "{metrics}"
    );
    assert!(!metrics.contains(id2));
    let _ = std::fs::remove_dir_all(&models);
}

/// With API keys a stored response is its key's alone; a server that keeps none says
/// `store: false`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_key_sees_its_own_responses() {
    let models = models_dir("responses-keys");
    let s = Server::with(
        wgformer::server::ServerConfig {
            api_keys: vec!["ka".into(), "kb".into()],
            ..Default::default()
        },
        wgformer::engine::EngineOptions {
            models_dir: Some(models.clone()),
            ..Default::default()
        },
    )
    .await;
    let c = client();
    let call = |method: reqwest::Method, path: String, key: &'static str, body: Option<Value>| {
        let mut r = c.request(method, s.url(&path)).bearer_auth(key);
        if let Some(b) = body {
            r = r.json(&b);
        }
        async move {
            let r = r.send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let post_ = reqwest::Method::POST;
    let r = c
        .get(s.url("/api/v1/initialize"))
        .query(&[("config", json!({"model": "chat"}).to_string())])
        .bearer_auth("ka")
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    let v: Value = r.json().await.unwrap();
    assert_eq!(code, 200, "{v}");
    let (code, r) = call(
        post_.clone(),
        "/v1/responses".into(),
        "ka",
        Some(json!({"input": "Hi", "max_output_tokens": 1})),
    )
    .await;
    assert_eq!(code, 200, "{r}");
    let id = r["id"].as_str().unwrap().to_string();
    let path = format!("/v1/responses/{id}");
    let cont = json!({"input": "x", "previous_response_id": id, "max_output_tokens": 1});
    let (get_, delete) = (reqwest::Method::GET, reqwest::Method::DELETE);
    for (method, path, key, body, want) in [
        (&get_, &path, "ka", None, 200),
        (&get_, &path, "kb", None, 404),
        (&delete, &path, "kb", None, 404),
        (&post_, &"/v1/responses".to_string(), "kb", Some(&cont), 404),
        (&post_, &"/v1/responses".to_string(), "ka", Some(&cont), 200),
        (&delete, &path, "ka", None, 200),
    ] {
        let (code, v) = call(method.clone(), path.clone(), key, body.cloned()).await;
        assert_eq!(code, want, "{method} {path} with {key}: {v}");
    }
    drop(s);
    // a server that keeps none
    let s = Server::with(
        wgformer::server::ServerConfig {
            responses_store_bytes: 0,
            ..Default::default()
        },
        wgformer::engine::EngineOptions {
            models_dir: Some(models.clone()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(init(&s, &json!({"model": "chat"})).await.0, 200);
    let (code, r) = create(&s, json!({"input": "Hi", "max_output_tokens": 1})).await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["store"], false);
    assert_eq!(
        get(&s, &format!("/v1/responses/{}", r["id"].as_str().unwrap()))
            .await
            .0,
        404
    );
    let _ = std::fs::remove_dir_all(&models);
}

/// Function tools: a forced call is a `function_call` item held to the tool's schema
/// (streamed as argument deltas); `required` with `parallel_tool_calls: false` gives one
/// call; a call and its output sent back become the assistant's tool call and a `tool`
/// message for the template.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn function_calls_are_items() {
    let (s, models) = hermes_server("responses-tools").await;
    let tools = json!([{"type": "function", "name": "get", "parameters": {"type": "object",
        "properties": {"city": {"type": "string", "maxLength": 6}}, "required": ["city"],
        "additionalProperties": false}}]);
    let bias = closing_bias(&s).await;
    let args_ok = |args: &str| {
        let v: Value = serde_json::from_str(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        assert!(v["city"].as_str().unwrap().chars().count() <= 6, "{args}");
        assert_eq!(v.as_object().unwrap().len(), 1, "{args}");
    };
    let mut closed = 0;
    for seed in 0..3 {
        let body = json!({"input": "Weather?", "tools": tools, "tool_choice": {"type": "function", "name": "get"},
                          "max_output_tokens": 40, "temperature": 1.0, "seed": seed, "logit_bias": bias});
        let (code, r) = create(&s, body.clone()).await;
        assert_eq!(code, 200, "{r}");
        let out = r["output"].as_array().unwrap();
        assert_eq!(out.len(), 1, "{r}");
        let call = &out[0];
        assert_eq!(call["type"], "function_call");
        assert_eq!(call["name"], "get");
        assert!(call["call_id"].as_str().unwrap().starts_with("call_"));
        assert!(call["id"].as_str().unwrap().starts_with("fc_"));
        let args = call["arguments"].as_str().unwrap();
        if r["status"] == "completed" {
            args_ok(args);
            assert_eq!(call["status"], "completed");
            closed += 1;
        }
        let evs = events(&s, &body).await;
        let done = check_stream(&evs);
        let added = of_type(&evs, "response.output_item.added");
        assert_eq!(added.len(), 1);
        assert_eq!(added[0]["item"]["arguments"], "");
        let joined: String = of_type(&evs, "response.function_call_arguments.delta")
            .iter()
            .map(|d| d["delta"].as_str().unwrap())
            .collect();
        assert_eq!(joined, args);
        assert_eq!(
            of_type(&evs, "response.function_call_arguments.done")[0]["arguments"],
            args
        );
        assert_eq!(done["output"][0]["arguments"], args);
        assert_eq!(done["output"][0]["call_id"], added[0]["item"]["call_id"]);
    }
    assert!(closed >= 2, "{closed} of 3 closed");
    // required, one call at most
    let mut called = 0;
    for seed in 0..3 {
        let body = json!({"input": "Weather?", "tools": tools, "tool_choice": "required",
                          "parallel_tool_calls": false, "max_output_tokens": 80, "temperature": 1.0,
                          "seed": seed, "logit_bias": bias});
        let (code, r) = create(&s, body.clone()).await;
        assert_eq!(code, 200, "{r}");
        if r["status"] != "completed" {
            continue;
        }
        called += 1;
        let out = r["output"].as_array().unwrap();
        assert_eq!(out.len(), 1, "{r}");
        assert_eq!(out[0]["type"], "function_call");
        args_ok(out[0]["arguments"].as_str().unwrap());
        let evs = events(&s, &body).await;
        let done = check_stream(&evs);
        assert_eq!(done["output"].as_array().unwrap().len(), 1);
        assert_eq!(done["output"][0]["arguments"], out[0]["arguments"]);
        assert_eq!(
            of_type(&evs, "response.function_call_arguments.done").len(),
            1
        );
    }
    assert!(called >= 2, "{called} of 3 called");
    // a call and its output sent back
    let (code, r) = create(
        &s,
        json!({"input": [{"role": "user", "content": "Weather?"},
                         {"type": "function_call", "call_id": "c1", "name": "get", "arguments": "{\"city\": \"Oslo\"}"},
                         {"type": "function_call_output", "call_id": "c1", "output": "18 C"}],
               "tools": tools, "max_output_tokens": 1}),
    )
    .await;
    assert_eq!(code, 200, "{r}");
    let chat_tools = json!([{"type": "function", "function": {"name": "get", "parameters": tools[0]["parameters"]}}]);
    let (_, t) = post(
        &s,
        "/tokenize",
        json!({"tools": chat_tools, "messages": [{"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "type": "function",
                "function": {"name": "get", "arguments": "{\"city\": \"Oslo\"}"}}]},
            {"role": "tool", "tool_call_id": "c1", "name": "get", "content": "18 C"}]}),
    )
    .await;
    assert_eq!(r["usage"]["input_tokens"], t["count"], "{t}");
    let _ = std::fs::remove_dir_all(&models);
}

/// `truncation: auto` drops the earliest turns (whole, up to a user message) until the
/// conversation and the new tokens fit; `disabled` refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn truncation_drops_the_earliest_turns() {
    let (s, models) = templated_server("truncation", ROLES).await;
    let turn = "one two three four five six seven eight nine ten";
    let mut input = Vec::new();
    for i in 0..8 {
        input.push(json!({"role": "user", "content": format!("{i} {turn}")}));
        input.push(json!({"role": "assistant", "content": turn}));
    }
    input.push(json!({"role": "user", "content": "last"}));
    let body = json!({"input": input, "max_output_tokens": 8});
    let (code, e) = create(&s, body.clone()).await;
    assert_eq!(code, 400, "{e}");
    assert!(
        ["input", "max_output_tokens"].contains(&e["error"]["param"].as_str().unwrap()),
        "{e}"
    );
    let mut auto = body.clone();
    auto["truncation"] = json!("auto");
    let (code, r) = create(&s, auto).await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["truncation"], "auto");
    let (_, info) = get(&s, "/v1/models").await;
    let context = info["data"][0]["max_model_len"].as_u64().unwrap();
    assert!(
        r["usage"]["input_tokens"].as_u64().unwrap() + 8 <= context,
        "{r}"
    );
    let (_, items) = get(
        &s,
        &format!(
            "/v1/responses/{}/input_items?order=asc&limit=100",
            r["id"].as_str().unwrap()
        ),
    )
    .await;
    let kept = items["data"].as_array().unwrap();
    assert!(kept.len() < input.len() && !kept.is_empty(), "{items}");
    assert_eq!(kept[0]["role"], "user");
    assert_eq!(kept.last().unwrap()["content"][0]["text"], "last");
    let _ = std::fs::remove_dir_all(&models);
}

/// Every refusal is a 400 (404 for what is not there) naming the field at fault in
/// the Responses API's own names.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refusals_name_their_field() {
    let (s, models) = templated_server("responses-bad", ROLES).await;
    let tools = json!([{"type": "function", "name": "f", "parameters": {"type": "object"}}]);
    for (body, code, param) in [
        (json!({}), 400, "input"),
        (json!({"input": []}), 400, "input"),
        (json!({"input": 5}), 400, "input"),
        (
            json!({"input": [{"role": "robot", "content": "x"}]}),
            400,
            "input[0]",
        ),
        (
            json!({"input": [{"role": "user", "content": [{"type": "input_image"}]}]}),
            400,
            "input[0].content",
        ),
        (json!({"input": "x", "background": true}), 400, "background"),
        (
            json!({"input": "x", "conversation": "conv_1"}),
            400,
            "conversation",
        ),
        (json!({"input": "x", "prompt": {"id": "p"}}), 400, "prompt"),
        (
            json!({"input": "x", "instructions": 5}),
            400,
            "instructions",
        ),
        (
            json!({"input": "x", "truncation": "sometimes"}),
            400,
            "truncation",
        ),
        (
            json!({"input": "x", "include": ["everything"]}),
            400,
            "include",
        ),
        (
            json!({"input": "x", "top_logprobs": 21}),
            400,
            "top_logprobs",
        ),
        (
            json!({"input": "x", "max_tool_calls": 0}),
            400,
            "max_tool_calls",
        ),
        (json!({"input": "x", "metadata": {"k": 1}}), 400, "metadata"),
        (
            json!({"input": "x", "text": {"format": {"type": "xml"}}}),
            400,
            "text.format",
        ),
        (
            json!({"input": "x", "text": {"format": {"type": "json_schema", "name": "n"}}}),
            400,
            "text.format",
        ),
        (
            json!({"input": "x", "text": {"format": {"type": "json_schema", "name": "n",
            "schema": {"type": "integer", "multipleOf": 3}}}}),
            400,
            "text.format",
        ),
        (
            json!({"input": "x", "tools": [{"type": "web_search"}]}),
            400,
            "tools[0]",
        ),
        (
            json!({"input": "x", "tools": tools, "tool_choice": {"type": "allowed_tools"}}),
            400,
            "tool_choice",
        ),
        (
            json!({"input": "x", "tools": tools, "tool_choice": {"type": "function", "name": "g"}}),
            400,
            "tool_choice",
        ),
        (
            json!({"input": "x", "max_output_tokens": 100000}),
            400,
            "max_output_tokens",
        ),
        (json!({"input": "x", "temperature": 3}), 400, "temperature"),
        (json!({"input": "x", "model": "other"}), 404, "model"),
        (
            json!({"input": "x", "previous_response_id": "resp_none"}),
            404,
            "previous_response_id",
        ),
    ] {
        let (got, e) = create(&s, body.clone()).await;
        assert_eq!(got, code, "{body}: {e}");
        assert_eq!(e["error"]["param"], param, "{body}: {e}");
        let message = e["error"]["message"].as_str().unwrap();
        assert!(
            !message.contains("response_format") && !message.contains("max_completion_tokens"),
            "{body}: {e}"
        );
    }
    // a model without a chat template
    assert_eq!(init(&s, &json!({"model": "plain"})).await.0, 200);
    let (code, e) = create(&s, json!({"input": "x"})).await;
    assert_eq!(code, 400, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("chat template"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&models);
}
