//! `/v1/messages` (Anthropic's Messages API): the reply a chat completion of the same
//! conversation gives, whole and as Anthropic's events; prefill, stop sequences,
//! tool use, token counting, `x-api-key`, and refusals in Anthropic's error shape.

use crate::chat::{closing_bias, hermes_server, models_dir, templated_server};
use crate::common;

use common::http::*;
use serde_json::{json, Value};

/// A template that shows each message's role.
const ROLES: &str = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}";

async fn create(s: &Server, body: Value) -> (u16, Value) {
    post(s, "/v1/messages", body).await
}

/// A streamed message's events: (the SSE event name, its data), checked against
/// Anthropic's order (message_start, ping, blocks each started and stopped, one
/// message_delta, message_stop); with the message they build.
async fn streamed(s: &Server, body: &Value) -> (Vec<(String, Value)>, Value) {
    let mut body = body.clone();
    body["stream"] = json!(true);
    let text = post_text(s, "/v1/messages", &body).await;
    let mut evs = Vec::new();
    let mut name = None;
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("event: ") {
            name = Some(n.to_string());
        } else if let Some(d) = line.strip_prefix("data: ") {
            let data: Value = serde_json::from_str(d).unwrap();
            assert_eq!(data["type"], name.as_deref().unwrap(), "{data}");
            evs.push((name.take().unwrap(), data));
        }
    }
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[..2], ["message_start", "ping"], "{names:?}");
    assert_eq!(
        names[names.len() - 2..],
        ["message_delta", "message_stop"],
        "{names:?}"
    );
    // the message as a client builds it
    let mut msg = evs[0].1["message"].clone();
    let mut partial: Vec<String> = Vec::new();
    let mut open = None;
    for (n, d) in &evs[2..evs.len() - 2] {
        let index = d["index"].as_u64().unwrap() as usize;
        match n.as_str() {
            "content_block_start" => {
                assert_eq!(open, None, "a block starts after the last stopped");
                assert_eq!(index, msg["content"].as_array().unwrap().len());
                msg["content"]
                    .as_array_mut()
                    .unwrap()
                    .push(d["content_block"].clone());
                partial.push(String::new());
                open = Some(index);
            }
            "content_block_delta" => {
                assert_eq!(open, Some(index));
                let delta = &d["delta"];
                match delta["type"].as_str().unwrap() {
                    "text_delta" => {
                        let t = msg["content"][index]["text"].as_str().unwrap().to_string();
                        msg["content"][index]["text"] = json!(t + delta["text"].as_str().unwrap());
                    }
                    "input_json_delta" => {
                        partial[index].push_str(delta["partial_json"].as_str().unwrap())
                    }
                    other => panic!("{other}"),
                }
            }
            "content_block_stop" => {
                assert_eq!(open.take(), Some(index));
                if msg["content"][index]["type"] == "tool_use" {
                    msg["content"][index]["input"] = serde_json::from_str(&partial[index])
                        .unwrap_or_else(|e| panic!("{:?}: {e}", partial[index]));
                }
            }
            other => panic!("{other} between the blocks"),
        }
    }
    assert_eq!(open, None);
    let delta = &evs[evs.len() - 2].1;
    msg["stop_reason"] = delta["delta"]["stop_reason"].clone();
    msg["stop_sequence"] = delta["delta"]["stop_sequence"].clone();
    msg["usage"] = delta["usage"].clone();
    (evs, msg)
}

fn text_of(m: &Value) -> String {
    m["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "text")
        .map(|b| b["text"].as_str().unwrap())
        .collect()
}

/// Input tokens as Anthropic counts them: those read from the prefix cache apart.
fn input_tokens(m: &Value) -> u64 {
    m["usage"]["input_tokens"].as_u64().unwrap()
        + m["usage"]["cache_read_input_tokens"].as_u64().unwrap()
}

/// A message is the chat completion of its conversation (system first): the same
/// text and tokens, whole and streamed; a final assistant message is continued as
/// chat's `continue_final_message` continues it; a stop sequence is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_is_the_chat_reply_whole_and_streamed() {
    let (s, models) = templated_server("messages", ROLES).await;
    let body = json!({"system": "Be brief", "messages": [{"role": "user", "content": "Hi"}],
                      "max_tokens": 6, "temperature": 0});
    let (code, m) = create(&s, body.clone()).await;
    assert_eq!(code, 200, "{m}");
    let chat_body = json!({"messages": [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Hi"}],
                           "max_tokens": 6, "temperature": 0});
    let (_, c) = post(&s, "/v1/chat/completions", chat_body).await;
    let choice = &c["choices"][0];
    assert_eq!(
        (&m["type"], &m["role"]),
        (&json!("message"), &json!("assistant"))
    );
    assert!(m["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(text_of(&m), choice["message"]["content"].as_str().unwrap());
    assert_eq!(input_tokens(&m), c["usage"]["prompt_tokens"]);
    assert_eq!(m["usage"]["output_tokens"], c["usage"]["completion_tokens"]);
    let cut = choice["finish_reason"] == "length";
    assert_eq!(
        m["stop_reason"],
        if cut { "max_tokens" } else { "end_turn" }
    );
    assert_eq!(m["stop_sequence"], Value::Null);
    let (_, built) = streamed(&s, &body).await;
    assert_eq!(built["content"], m["content"]);
    assert_eq!(built["stop_reason"], m["stop_reason"]);
    assert_eq!(input_tokens(&built), input_tokens(&m));
    assert_eq!(built["usage"]["output_tokens"], m["usage"]["output_tokens"]);
    // counted without generating
    let (code, n) = post(&s, "/v1/messages/count_tokens", body.clone()).await;
    assert_eq!(code, 200, "{n}");
    assert_eq!(n, json!({"input_tokens": input_tokens(&m)}));
    // prefill: the assistant's last message continued
    let (_, p) = create(
        &s,
        json!({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Sure,"}],
               "max_tokens": 4, "temperature": 0}),
    )
    .await;
    let (_, pc) = post(
        &s,
        "/v1/chat/completions",
        json!({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Sure,"}],
               "max_tokens": 4, "temperature": 0, "continue_final_message": true,
               "add_generation_prompt": false}),
    )
    .await;
    assert_eq!(
        text_of(&p),
        pc["choices"][0]["message"]["content"].as_str().unwrap()
    );
    assert_eq!(input_tokens(&p), pc["usage"]["prompt_tokens"]);
    // a stop sequence: the first ASCII letter or digit of the reply
    let (_, long) = create(
        &s,
        json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 48, "temperature": 0}),
    )
    .await;
    let whole = text_of(&long);
    let (k, ch) = whole
        .char_indices()
        .find(|(_, c)| c.is_ascii_alphanumeric())
        .expect("48 tokens of the fixture hold an ASCII letter or digit");
    let body = json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 48,
                      "temperature": 0, "stop_sequences": [ch.to_string(), "never seen"]});
    for m in [
        create(&s, body.clone()).await.1,
        streamed(&s, &body).await.1,
    ] {
        assert_eq!(m["stop_reason"], "stop_sequence", "{m}");
        assert_eq!(m["stop_sequence"], ch.to_string());
        assert_eq!(text_of(&m), whole[..k]);
    }
    let _ = std::fs::remove_dir_all(&models);
}

/// Client tools: a forced tool's `tool_use` block is held to its input schema (and
/// streamed as `input_json_delta`s), `any` with parallel use off gives one; a
/// `tool_use` and its `tool_result` sent back reach the template as the call and a
/// `tool` message.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tool_use_blocks() {
    let (s, models) = hermes_server("messages-tools").await;
    let tools = json!([{"name": "get", "description": "weather", "input_schema": {"type": "object",
        "properties": {"city": {"type": "string", "maxLength": 6}}, "required": ["city"],
        "additionalProperties": false}}]);
    let bias = closing_bias(&s).await;
    let input_ok = |input: &Value| {
        assert!(
            input["city"].as_str().unwrap().chars().count() <= 6,
            "{input}"
        );
        assert_eq!(input.as_object().unwrap().len(), 1, "{input}");
    };
    let mut used = 0;
    for (seed, choice) in [
        (0, json!({"type": "tool", "name": "get"})),
        (1, json!({"type": "tool", "name": "get"})),
        (0, json!({"type": "any", "disable_parallel_tool_use": true})),
        (1, json!({"type": "any", "disable_parallel_tool_use": true})),
    ] {
        let body = json!({"messages": [{"role": "user", "content": "Weather?"}], "tools": tools,
                          "tool_choice": choice, "max_tokens": 80, "temperature": 1.0, "seed": seed,
                          "logit_bias": bias});
        let (code, m) = create(&s, body.clone()).await;
        assert_eq!(code, 200, "{m}");
        let (_, built) = streamed(&s, &body).await;
        if m["stop_reason"] != "tool_use" {
            assert_eq!(m["stop_reason"], "max_tokens", "{m}");
            continue;
        }
        used += 1;
        let blocks = m["content"].as_array().unwrap();
        assert_eq!(blocks.len(), 1, "{m}");
        assert_eq!(blocks[0]["type"], "tool_use");
        assert_eq!(blocks[0]["name"], "get");
        assert!(blocks[0]["id"].as_str().unwrap().starts_with("toolu_"));
        input_ok(&blocks[0]["input"]);
        assert_eq!(built["stop_reason"], "tool_use");
        assert_eq!(built["content"][0]["input"], blocks[0]["input"], "{built}");
        assert_eq!(built["content"].as_array().unwrap().len(), 1);
    }
    assert!(used >= 2, "{used} of 4 used the tool");
    // a use and its result sent back
    let (code, m) = create(
        &s,
        json!({"tools": tools, "max_tokens": 1, "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "get", "input": {"city": "Oslo"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "18 C"}]}]}),
    )
    .await;
    assert_eq!(code, 200, "{m}");
    let chat_tools = json!([{"type": "function", "function": {"name": "get", "description": "weather",
        "parameters": tools[0]["input_schema"]}}]);
    let (_, t) = post(
        &s,
        "/tokenize",
        json!({"tools": chat_tools, "messages": [{"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": "", "tool_calls": [{"id": "t1", "type": "function",
                "function": {"name": "get", "arguments": {"city": "Oslo"}}}]},
            {"role": "tool", "tool_call_id": "t1", "name": "get", "content": "18 C"}]}),
    )
    .await;
    assert_eq!(input_tokens(&m), t["count"].as_u64().unwrap(), "{t}");
    let _ = std::fs::remove_dir_all(&models);
}

/// Refusals are 400s (404 for another model) in Anthropic's error shape, naming the
/// field; a key is taken from `x-api-key` as Anthropic's clients send it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refusals_take_anthropics_shape() {
    let (s, models) = templated_server("messages-bad", ROLES).await;
    let hi = json!([{"role": "user", "content": "Hi"}]);
    for (body, code, param) in [
        (json!({}), 400, "messages"),
        (json!({"messages": []}), 400, "messages"),
        (
            json!({"messages": [{"role": "system", "content": "x"}]}),
            400,
            "messages[0].role",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]}),
            400,
            "messages[0].content",
        ),
        (json!({"messages": hi, "system": 5}), 400, "system"),
        (
            json!({"messages": hi, "tools": [{"type": "bash_20250124", "name": "bash"}]}),
            400,
            "tools[0]",
        ),
        (
            json!({"messages": hi, "tool_choice": {"type": "maybe"}}),
            400,
            "tool_choice",
        ),
        (
            json!({"messages": hi, "output_config": {"format": {"type": "xml"}}}),
            400,
            "output_config.format",
        ),
        (
            json!({"messages": hi, "output_config": {"format": {"type": "json_schema",
            "schema": {"type": "integer", "multipleOf": 2}}}}),
            400,
            "output_config.format",
        ),
        (
            json!({"messages": hi, "stop_sequences": 5}),
            400,
            "stop_sequences",
        ),
        (
            json!({"messages": hi, "max_tokens": 100000}),
            400,
            "max_tokens",
        ),
        (json!({"messages": hi, "model": "other"}), 404, "model"),
    ] {
        for path in ["/v1/messages", "/v1/messages/count_tokens"] {
            if path.ends_with("count_tokens")
                && (body.get("max_tokens").is_some() || body.get("stop_sequences").is_some())
            {
                continue; // (not looked at when nothing is generated)
            }
            let (got, e) = post(&s, path, body.clone()).await;
            assert_eq!(got, code, "{path} {body}: {e}");
            assert_eq!(e["type"], "error", "{e}");
            let kind = if code == 404 {
                "not_found_error"
            } else {
                "invalid_request_error"
            };
            assert_eq!(e["error"]["type"], kind, "{e}");
            assert_eq!(e["error"]["param"], param, "{path} {body}: {e}");
            assert!(
                !e["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("response_format"),
                "{e}"
            );
        }
    }
    drop(s);
    // x-api-key
    let models2 = models_dir("messages-key");
    let s = Server::with(
        wgformer::server::ServerConfig {
            api_keys: vec!["ka".into()],
            ..Default::default()
        },
        wgformer::engine::EngineOptions {
            models_dir: Some(models2.clone()),
            ..Default::default()
        },
    )
    .await;
    let c = client();
    let r = c
        .get(s.url("/api/v1/initialize"))
        .query(&[("config", json!({"model": "chat"}).to_string())])
        .header("x-api-key", "ka")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body = json!({"messages": hi, "max_tokens": 1});
    for (key, want) in [("ka", 200), ("kb", 401)] {
        let r = c
            .post(s.url("/v1/messages"))
            .header("x-api-key", key)
            .header("anthropic-version", "2023-06-01")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), want);
        let v: Value = r.json().await.unwrap();
        if want == 401 {
            assert_eq!(v["error"]["type"], "authentication_error", "{v}");
        }
    }
    let _ = std::fs::remove_dir_all(&models);
    let _ = std::fs::remove_dir_all(&models2);
}
