//! Chat templates render as `transformers`' `apply_chat_template` does (published
//! templates, tools/make_chat_fixtures.py), and `/v1/chat/completions` serves them:
//! whole and streamed, with logprobs, its error cases.

use crate::common;

use common::http::*;
use serde_json::{json, Value};
use wgformer::chat::{ChatTemplates, RenderOptions};
use wgformer::model::directory::ModelDir;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/chat/templates.json"
);
const FAMILIES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/families");

#[test]
fn published_templates_render_as_transformers_does() {
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(FIXTURE).unwrap()).unwrap();
    let dir = ModelDir::open("llama", std::path::Path::new(&format!("{FAMILIES}/llama"))).unwrap();
    let tok = dir.load_tokenizer(1 << 20).unwrap().unwrap();
    let mut checked = 0;
    for t in fixture["templates"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        let templates = ChatTemplates::new(
            vec![("default".into(), t["template"].as_str().unwrap().into())],
            t["bos_token"].as_str().map(String::from),
            t["eos_token"].as_str().map(String::from),
        )
        .unwrap();
        for case in t["cases"].as_array().unwrap() {
            let what = format!(
                "{name}: {} (generation prompt {})",
                case["title"], case["add_generation_prompt"]
            );
            let opts = RenderOptions {
                add_generation_prompt: case["add_generation_prompt"].as_bool().unwrap(),
                tools: Some(case["tools"].clone()).filter(|t| !t.is_null()),
                extra: case["extra"].as_object().unwrap().clone(),
                ..Default::default()
            };
            let got = templates.render(&case["messages"], &opts);
            match (case.get("text"), got) {
                (Some(want), Ok(text)) => {
                    assert_eq!(text, want.as_str().unwrap(), "{what}");
                    let ids: Vec<u32> = common::json_ids(&case["ids"]);
                    assert_eq!(tok.encode_plain(&text).unwrap(), ids, "{what}: token ids");
                }
                (None, Err(e)) => {
                    assert_eq!(e.code(), "INVALID_INPUT", "{what}");
                    let words = case["error"].as_str().unwrap();
                    if words.starts_with("Conversation roles") {
                        assert!(e.to_string().contains(words), "{what}: {e}");
                    }
                }
                (Some(_), Err(e)) => panic!("{what}: transformers rendered it, we failed: {e}"),
                (None, Ok(text)) => panic!("{what}: transformers refused, we rendered {text:?}"),
            }
            checked += 1;
        }
    }
    assert!(checked >= 40, "{checked} cases");
}

/// The fixture's entry of published template `name` (its template, its cases).
fn published(name: &str) -> Value {
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(FIXTURE).unwrap()).unwrap();
    let all = fixture["templates"].as_array().unwrap();
    all.iter().find(|t| t["name"] == name).unwrap().clone()
}

/// A models directory with the llama fixture and, under `chat`, the same with
/// Mixtral's template in its tokenizer_config.json (short enough for the fixture's
/// 128 positions; its `<s>` is the fixture tokenizer's BOS).
pub(crate) fn models_dir(tag: &str) -> std::path::PathBuf {
    let template = published("mixtral")["template"]
        .as_str()
        .unwrap()
        .to_string();
    let models = std::env::temp_dir().join(format!("wgformer-chat-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&models);
    for name in ["plain", "chat"] {
        let to = models.join(name);
        std::fs::create_dir_all(&to).unwrap();
        for f in std::fs::read_dir(format!("{FAMILIES}/llama")).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
        }
    }
    let tc_path = models.join("chat/tokenizer_config.json");
    let mut tc: Value = serde_json::from_str(&std::fs::read_to_string(&tc_path).unwrap()).unwrap();
    tc["chat_template"] = Value::String(template);
    std::fs::write(&tc_path, tc.to_string()).unwrap();
    // and one whose template does not compile: the load's error
    std::fs::create_dir_all(models.join("broken")).unwrap();
    for f in std::fs::read_dir(models.join("chat")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), models.join("broken").join(f.file_name())).unwrap();
    }
    std::fs::write(models.join("broken/chat_template.jinja"), "{% if %}oops").unwrap();
    models
}

async fn chat(s: &Server, body: Value) -> (u16, Value) {
    post(s, "/v1/chat/completions", body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chat_completions_follow_the_template() {
    let models = models_dir("api");
    let s = Server::with(
        wgformer::server::ServerConfig::default(),
        wgformer::engine::EngineOptions {
            models_dir: Some(models.clone()),
            served_model_name: Some("my-chat".into()),
            ..Default::default()
        },
    )
    .await;
    // a template that does not compile: CONFIG_ERROR at load time, naming it
    let (code, body) = init(&s, &json!({"model": "broken"})).await;
    assert_error(code, &body, 400, "CONFIG_ERROR");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("does not compile"),
        "{body}"
    );
    // a model without a template: 400 naming it
    assert_eq!(init(&s, &json!({"model": "plain"})).await.0, 200);
    let (code, body) = chat(&s, json!({"messages": [{"role": "user", "content": "Hi"}]})).await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no chat template"),
        "{body}"
    );

    assert_eq!(init(&s, &json!({"model": "chat"})).await.0, 200);
    let messages = json!([
        {"role": "user", "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": "there"}]},
    ]);
    let (code, body) = chat(
        &s,
        json!({"messages": messages, "max_tokens": 6, "temperature": 0, "logprobs": true, "top_logprobs": 3}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["object"], "chat.completion");
    let choice = &body["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    let content = choice["message"]["content"].as_str().unwrap().to_string();
    let lp = choice["logprobs"]["content"].as_array().unwrap();
    assert!(!lp.is_empty() && lp.len() <= 6, "{choice}");
    // each token's raw bytes: together they are the reply's bytes, even where a token
    // holds part of a multi-byte character (its text then shows U+FFFD)
    let mut all_bytes = Vec::new();
    for t in lp {
        assert_eq!(t["top_logprobs"].as_array().unwrap().len(), 3, "{t}");
        let bytes: Vec<u8> = t["bytes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_u64().unwrap() as u8)
            .collect();
        if let Ok(text) = std::str::from_utf8(&bytes) {
            assert_eq!(text, t["token"].as_str().unwrap());
        }
        all_bytes.extend(bytes);
    }
    assert_eq!(String::from_utf8_lossy(&all_bytes), content);
    let prompt_tokens = body["usage"]["prompt_tokens"].as_u64().unwrap();

    // greedy chat equals /v1/completions on the rendered prompt's token ids
    let dir = ModelDir::open("chat", &models.join("chat")).unwrap();
    let tok = dir.load_tokenizer(1 << 20).unwrap().unwrap();
    let rendered = tok
        .chat()
        .unwrap()
        .render(
            &json!([{"role": "user", "content": "Hello\nthere"}]),
            &RenderOptions {
                add_generation_prompt: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert!(
        rendered.starts_with("<s>[INST] Hello\nthere [/INST]"),
        "{rendered}"
    );
    let ids = tok.encode_plain(&rendered).unwrap();
    assert_eq!(ids.len() as u64, prompt_tokens);
    assert!(
        ids[0] == 0 && ids[1] != 0,
        "the template writes the BOS, added once: {ids:?}"
    );
    let (code, plain) = post(
        &s,
        "/v1/completions",
        json!({"prompt": ids, "max_tokens": 6, "temperature": 0}),
    )
    .await;
    assert_eq!(code, 200, "{plain}");
    assert_eq!(plain["choices"][0]["text"].as_str().unwrap(), content);

    // streamed: a role delta first, content deltas, the finish reason, usage, [DONE];
    // the content equals the whole reply
    let r = client()
        .post(s.url("/v1/chat/completions"))
        .json(
            &json!({"messages": messages, "max_tokens": 6, "temperature": 0, "stream": true,
                      "stream_options": {"include_usage": true}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let events: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(*events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(streamed, content);
    let finish = &chunks[chunks.len() - 2]["choices"][0];
    assert_eq!(finish["finish_reason"], choice["finish_reason"]);
    let usage = &chunks[chunks.len() - 1];
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["prompt_tokens"], prompt_tokens);

    // n with a seed: reproducible
    let sampled =
        json!({"messages": messages, "max_tokens": 5, "n": 2, "seed": 7, "temperature": 1.0});
    let (_, a) = chat(&s, sampled.clone()).await;
    let (_, b) = chat(&s, sampled).await;
    assert_eq!(a["choices"], b["choices"]);
    assert_eq!(a["choices"].as_array().unwrap().len(), 2);

    // vLLM's continue_final_message: the last (assistant) message is left open, so the
    // prompt ends with its content (Mixtral's template closes an assistant turn with
    // `</s>`, which is cut); with add_generation_prompt also true, a 400
    let open_conv =
        json!([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Well"}]);
    let (code, open) = chat(
        &s,
        json!({"messages": open_conv, "max_tokens": 2, "continue_final_message": true}),
    )
    .await;
    assert_eq!(code, 200, "{open}");
    let (_, tok) = post(
        &s,
        "/tokenize",
        json!({"prompt": "<s>[INST] Hi [/INST]Well", "add_special_tokens": false}),
    )
    .await;
    assert_eq!(open["usage"]["prompt_tokens"], tok["count"], "{open} {tok}");
    let (code, e) = chat(
        &s,
        json!({"messages": open_conv, "continue_final_message": true, "add_generation_prompt": true}),
    )
    .await;
    assert_eq!(code, 400, "{e}");
    assert_eq!(e["error"]["param"], "continue_final_message");

    // JSON mode: the reply is the start of one JSON object, and one when it stops
    let (code, r) = chat(
        &s,
        json!({"messages": messages, "max_tokens": 24, "temperature": 0,
               "response_format": {"type": "json_object"}}),
    )
    .await;
    assert_eq!(code, 200, "{r}");
    let reply = r["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(reply.starts_with('{'), "{reply:?}");
    if r["choices"][0]["finish_reason"] == "stop" {
        assert!(
            serde_json::from_str::<Value>(reply).is_ok_and(|v| v.is_object()),
            "{reply:?}"
        );
    }

    // a JSON Schema: the reply is a value of it (here one that closes within the
    // whitespace allowed between its tokens)
    let schema = json!({"type": "object", "properties": {"mood": {"enum": ["glad", "sad"]}, "ok": {"type": "boolean"}},
                        "required": ["mood", "ok"], "additionalProperties": false});
    let (code, r) = chat(
        &s,
        json!({"messages": messages, "max_tokens": 100, "temperature": 0,
               "response_format": {"type": "json_schema", "json_schema": {"name": "m", "schema": schema}}}),
    )
    .await;
    assert_eq!(code, 200, "{r}");
    let reply = r["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(r["choices"][0]["finish_reason"], "stop", "{reply:?}");
    let v: Value = serde_json::from_str(reply).unwrap_or_else(|e| panic!("{reply:?}: {e}"));
    assert!(v["mood"] == "glad" || v["mood"] == "sad", "{reply:?}");
    assert!(
        v["ok"].is_boolean() && v.as_object().unwrap().len() == 2,
        "{reply:?}"
    );

    // vLLM's guided_choice: one of the strings
    let (code, r) = chat(
        &s,
        json!({"messages": messages, "max_tokens": 8, "temperature": 1.0, "seed": 3,
               "guided_choice": ["glad", "sad"]}),
    )
    .await;
    assert_eq!(code, 200, "{r}");
    let reply = r["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(reply == "glad" || reply == "sad", "{reply:?}");

    // errors name the parameter
    for (body, param) in [
        (json!({"messages": []}), "messages"),
        (
            json!({"messages": [{"role": "robot", "content": "x"}]}),
            "messages[0].role",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
            "messages[0].content",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "presence_penalty": 2.5}),
            "presence_penalty",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "frequency_penalty": -3}),
            "frequency_penalty",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "repetition_penalty": 0}),
            "repetition_penalty",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "min_p": 1.5}),
            "min_p",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "logit_bias": {"12": 101}}),
            "logit_bias",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "logit_bias": {"dog": 1}}),
            "logit_bias",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "logit_bias": {"999999": -100}}),
            "logit_bias",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_schema"}}),
            "response_format",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "tool_choice": "required"}),
            "tool_choice",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "logprobs": true, "top_logprobs": 21}),
            "top_logprobs",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 100000}),
            "max_completion_tokens",
        ),
    ] {
        let (code, r) = chat(&s, body.clone()).await;
        assert_eq!(code, 400, "{body}: {r}");
        assert_eq!(r["error"]["param"], param, "{body}: {r}");
    }
    // the template's own refusal reaches the client in its words, as a 400
    let (code, r) = chat(
        &s,
        json!({"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "x"}],
                "tools": [{"type": "function", "function": {"name": "f"}}]}),
    )
    .await;
    assert_eq!(code, 400, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Conversation roles must alternate"),
        "{r}"
    );
    // vLLM's tokenizer endpoints: a conversation through the template, a prompt,
    // back to text; what the tokenizer is; the context length in /v1/models
    let (code, r) = post(&s, "/tokenize", json!({"messages": messages})).await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(common::json_ids(&r["tokens"]), ids);
    assert_eq!(
        (r["count"].as_u64(), r["max_model_len"].as_u64()),
        (Some(ids.len() as u64), Some(128))
    );
    let (_, r) = post(&s, "/tokenize", json!({"prompt": "Hello"})).await;
    assert_eq!(r["tokens"][0], 0, "a prompt gets the tokenizer's BOS: {r}");
    let (code, r) = post(&s, "/detokenize", json!({"tokens": ids})).await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["prompt"], rendered.as_str());
    assert_eq!(
        post(&s, "/detokenize", json!({"tokens": [999999]})).await.0,
        400
    );
    assert_eq!(post(&s, "/tokenize", json!({})).await.0, 400);
    let (_, info) = get(&s, "/tokenizer_info").await;
    assert_eq!(
        (info["bos_token"].as_str(), info["eos_token"].as_str()),
        (Some("<s>"), Some("</s>"))
    );
    assert!(
        info["chat_template"].as_str().unwrap().contains("[INST]"),
        "{info}"
    );
    let (_, m) = get(&s, "/v1/models").await;
    assert_eq!(m["data"][0]["id"], "my-chat", "--served-model-name: {m}");
    assert_eq!(
        chat(&s, json!({"model": "llama", "messages": messages}))
            .await
            .0,
        404
    );
    assert_eq!(
        chat(
            &s,
            json!({"model": "my-chat", "messages": messages, "max_tokens": 1})
        )
        .await
        .0,
        200
    );
    assert_eq!(
        (
            m["data"][0]["max_model_len"].as_u64(),
            m["data"][0]["context_length"].as_u64()
        ),
        (Some(128), Some(128))
    );
    // a completion whose prompt and new tokens overflow the context: 400, not cut short
    let (code, r) = post(
        &s,
        "/v1/completions",
        json!({"prompt": ids, "max_tokens": 128}),
    )
    .await;
    assert_eq!(code, 400, "{r}");
    assert_eq!(r["error"]["param"], "max_tokens");
    // a prompt of exactly the context scores itself (max_tokens 0 with echo)
    let full: Vec<u32> = (0..128).map(|i| 3 + (i % 50)).collect();
    let (code, r) = post(
        &s,
        "/v1/completions",
        json!({"prompt": full, "max_tokens": 0, "echo": true, "logprobs": 1}),
    )
    .await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(
        r["choices"][0]["logprobs"]["tokens"]
            .as_array()
            .unwrap()
            .len(),
        128
    );
    // and the service still serves
    assert_eq!(
        chat(
            &s,
            json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 2})
        )
        .await
        .0,
        200
    );
    std::fs::remove_dir_all(&models).ok();
}

/// With `tools` and a template that teaches `<tool_call>` blocks, replies are read for
/// calls (the reading itself: `tool_calls.rs`, and the stream's hold-back:
/// `server/chat.rs`, unit-tested): a reply of the random-weight model holds none, so
/// it comes as content, the same whole and streamed (the stream holds back what may
/// start a call and shows it at the end), with no `tool_calls` and the usual finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replies_without_calls_stay_content_whole_and_streamed() {
    let (s, models) = hermes_server("tools").await;
    let body = json!({"messages": [{"role": "user", "content": "Hi <b>"}], "max_tokens": 24,
                      "temperature": 0,
                      "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]});
    let (code, whole) = chat(&s, body.clone()).await;
    assert_eq!(code, 200, "{whole}");
    let choice = &whole["choices"][0];
    let content = choice["message"]["content"].as_str().unwrap().to_string();
    assert!(choice["message"].get("tool_calls").is_none(), "{whole}");
    assert_ne!(choice["finish_reason"], "tool_calls");
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let text = post_text(&s, "/v1/chat/completions", &streamed).await;
    let chunks: Vec<Value> = sse_data(&text)
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let joined: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(joined, content);
    assert!(chunks
        .iter()
        .all(|c| c["choices"][0]["delta"].get("tool_calls").is_none()));
    let last = chunks
        .iter()
        .rev()
        .find(|c| !c["choices"][0]["finish_reason"].is_null())
        .unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], choice["finish_reason"]);
    // tool_choice none: the same reply, not read
    let mut none = body.clone();
    none["tool_choice"] = json!("none");
    let (_, r) = chat(&s, none).await;
    assert_eq!(r["choices"][0]["message"]["content"], content.as_str());
    let _ = std::fs::remove_dir_all(&models);
}

/// A server whose model (`plain`, copied) has a template that teaches `<tool_call>`
/// blocks (and writes one when there are tools), under a models directory of its own.
pub(crate) async fn hermes_server(tag: &str) -> (Server, std::path::PathBuf) {
    templated_server(
        tag,
        "{% if tools %}<tool_call>{% endif %}{% for m in messages %}{{ m.content }}{% endfor %}",
    )
    .await
}

/// A server whose model (`plain`, copied, as `templated`) has `template`, under a
/// models directory of its own.
pub(crate) async fn templated_server(tag: &str, template: &str) -> (Server, std::path::PathBuf) {
    let models = models_dir(tag);
    let dir = models.join("templated");
    std::fs::create_dir_all(&dir).unwrap();
    for f in std::fs::read_dir(models.join("plain")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), dir.join(f.file_name())).unwrap();
    }
    std::fs::write(dir.join("chat_template.jinja"), template).unwrap();
    let s = Server::with_models(&models).await;
    assert_eq!(init(&s, &json!({"model": "templated"})).await.0, 200);
    (s, models)
}

/// vLLM's `chat_template_kwargs` reach the template (a chat completion renders what
/// `/tokenize` does with them), and cannot set what the request sets.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chat_template_kwargs_reach_the_template() {
    let (s, models) = templated_server(
        "kwargs",
        "{% if enable_thinking is defined and not enable_thinking %}/no_think {% endif %}{% for m in messages %}{{ m.content }}{% endfor %}{% if tools %}{{ tools | length }}{% endif %}",
    )
    .await;
    let msgs = json!([{"role": "user", "content": "Hi"}]);
    let count = |r: &Value| r["count"].as_u64().unwrap();
    let (code, plain) = post(&s, "/tokenize", json!({"messages": msgs})).await;
    assert_eq!(code, 200, "{plain}");
    let kwargs = json!({"enable_thinking": false});
    let (_, off) = post(
        &s,
        "/tokenize",
        json!({"messages": msgs, "chat_template_kwargs": kwargs}),
    )
    .await;
    assert!(count(&off) > count(&plain), "{plain} {off}");
    let (_, on) = post(
        &s,
        "/tokenize",
        json!({"messages": msgs, "chat_template_kwargs": {"enable_thinking": true}}),
    )
    .await;
    assert_eq!(count(&on), count(&plain));
    let tools = json!([{"type": "function", "function": {"name": "f"}}]);
    let (_, with_tools) = post(&s, "/tokenize", json!({"messages": msgs, "tools": tools})).await;
    assert!(count(&with_tools) > count(&plain), "{with_tools}");
    let (code, r) = chat(
        &s,
        json!({"messages": msgs, "max_tokens": 1, "chat_template_kwargs": kwargs}),
    )
    .await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["usage"]["prompt_tokens"], off["count"]);
    for bad in [
        json!({"messages": []}),
        json!({"add_generation_prompt": false}),
        json!([1]),
    ] {
        let (code, e) = chat(&s, json!({"messages": msgs, "chat_template_kwargs": bad})).await;
        assert_eq!(code, 400, "{e}");
        assert_eq!(e["error"]["param"], "chat_template_kwargs", "{e}");
    }
    let _ = std::fs::remove_dir_all(&models);
}

/// An assistant's tool call sent as OpenAI sends it (`arguments` a JSON text) renders
/// as transformers renders the object (Llama 3.2's `arguments | tojson`; the object's
/// rendering is transformers', `published_templates_render_as_transformers_does`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tool_call_arguments_reach_the_template_as_objects() {
    let llama = published("llama-3.2");
    let case = llama["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["title"] == "tool result" && c["add_generation_prompt"] == true)
        .unwrap();
    let (s, models) = templated_server("arguments", llama["template"].as_str().unwrap()).await;
    let body = |m: &Value| json!({"messages": m, "tools": case["tools"], "chat_template_kwargs": case["extra"]});
    let (code, want) = post(&s, "/tokenize", body(&case["messages"])).await;
    assert_eq!(code, 200, "{want}");
    let mut messages = case["messages"].clone();
    let call = &mut messages[1]["tool_calls"][0]["function"]["arguments"];
    assert!(call.is_object());
    *call = Value::String(call.to_string());
    let (code, r) = post(&s, "/tokenize", body(&messages)).await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["tokens"], want["tokens"]);
    // text that is not an object stays as written
    messages[1]["tool_calls"][0]["function"]["arguments"] = json!("not json");
    let (_, r2) = post(&s, "/tokenize", body(&messages)).await;
    assert_ne!(r2["tokens"], r["tokens"]);
    let _ = std::fs::remove_dir_all(&models);
}

/// An assistant's tool-call turn without text (`content` null or absent, as OpenAI's
/// SDKs send a reply back) reaches the template as empty text, as vLLM passes it:
/// Qwen3's template, which takes `'</think>' in message.content` and so refuses null
/// (transformers' error in the fixture), renders it as the empty text, which
/// `published_templates_render_as_transformers_does` checks against transformers;
/// Llama 3.2's, which never reads it, the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tool_call_turn_without_text_renders_as_empty_text() {
    for name in ["qwen3", "llama-3.2"] {
        let t = published(name);
        let case = |title: &str| {
            t["cases"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["title"] == title && c["add_generation_prompt"] == true)
                .unwrap()
                .clone()
        };
        let (empty, null) = (case("tool result, empty text"), case("tool result"));
        assert_eq!(null["messages"][1]["content"], Value::Null);
        assert_eq!(null.get("error").is_some(), name == "qwen3", "{null}");
        let (s, models) =
            templated_server(&format!("empty-{name}"), t["template"].as_str().unwrap()).await;
        let tokens = |messages: &Value| {
            let body = json!({"messages": messages, "tools": empty["tools"], "chat_template_kwargs": empty["extra"]});
            let s = &s;
            async move {
                let (code, r) = post(s, "/tokenize", body).await;
                assert_eq!(code, 200, "{name}: {r}");
                r["tokens"].clone()
            }
        };
        let want = tokens(&empty["messages"]).await;
        assert_eq!(
            tokens(&null["messages"]).await,
            want,
            "{name}: content null"
        );
        let mut absent = null["messages"].clone();
        absent[1].as_object_mut().unwrap().remove("content");
        assert_eq!(tokens(&absent).await, want, "{name}: content absent");
        let _ = std::fs::remove_dir_all(&models);
    }
}

/// A thinking model's reasoning (Qwen3's template, which teaches `<think>` …
/// `</think>`) is read out of its replies into `reasoning_content`: a reply the prompt
/// left inside a reasoning (a continued `<think>` turn) is reasoning whole, streamed as
/// `reasoning_content` deltas that add up to it; a reply the prompt did not open one
/// for is content, `enable_thinking: false` included; a reply held to a grammar is
/// never read for it. (The splitting itself: `reasoning`'s unit tests.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reasoning_is_read_out_of_a_thinking_models_replies() {
    let qwen3 = published("qwen3");
    let (s, models) = templated_server("think", qwen3["template"].as_str().unwrap()).await;
    let thinking = json!([
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "<think>\nLet me"},
    ]);
    let body = |extra: Value| {
        let mut b = json!({"messages": thinking, "continue_final_message": true,
                           "add_generation_prompt": false, "max_tokens": 6, "seed": 5,
                           "temperature": 0});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let (code, r) = chat(&s, body(json!({}))).await;
    assert_eq!(code, 200, "{r}");
    let m = &r["choices"][0]["message"];
    let reasoning = m["reasoning_content"].as_str().unwrap().to_string();
    assert!(!reasoning.is_empty() && m["content"].is_null(), "{r}");
    // the same prompt as a plain completion (`/tokenize` renders it as the chat does):
    // its text is the reasoning
    let (code, tok) = post(&s, "/tokenize", body(json!({}))).await;
    assert_eq!(code, 200, "{tok}");
    let (_, plain) = post(
        &s,
        "/v1/completions",
        json!({"prompt": tok["tokens"], "max_tokens": 6, "temperature": 0}),
    )
    .await;
    assert_eq!(tok["count"], r["usage"]["prompt_tokens"]);
    assert_eq!(plain["choices"][0]["text"].as_str().unwrap(), reasoning);
    // streamed: reasoning deltas, no content, adding up to the whole reply's
    let streamed = post_text(&s, "/v1/chat/completions", &body(json!({"stream": true}))).await;
    let deltas: Vec<Value> = sse_data(&streamed)
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str::<Value>(e).unwrap()["choices"][0]["delta"].clone())
        .collect();
    let joined: String = deltas
        .iter()
        .filter_map(|d| d["reasoning_content"].as_str())
        .collect();
    assert_eq!(joined, reasoning);
    let content: String = deltas
        .iter()
        .filter_map(|d| d["content"].as_str())
        .collect();
    assert_eq!(content, "");
    // not opened by the prompt: content (a random reply does not open one itself),
    // a question that writes the tag included
    let asked = json!([{"role": "user", "content": "What is 2 + 2?"}]);
    let tagged = json!([{"role": "user", "content": "What does <think> do?"}]);
    for (messages, kwargs) in [
        (&asked, json!({})),
        (&asked, json!({"enable_thinking": false})),
        (&tagged, json!({})),
    ] {
        let (code, r) = chat(
            &s,
            json!({"messages": messages, "max_tokens": 6, "temperature": 0,
                   "chat_template_kwargs": kwargs}),
        )
        .await;
        assert_eq!(code, 200, "{r}");
        let m = &r["choices"][0]["message"];
        assert!(m.get("reasoning_content").is_none(), "{r}");
        assert!(!m["content"].as_str().unwrap().is_empty(), "{r}");
    }
    // the other APIs' own switches reach the template's (enable_thinking): Anthropic's
    // `thinking` disabled, the Responses API's `reasoning.effort` "none", each adding
    // Qwen3's empty reasoning to the prompt; on, as the template's default
    let count = |path: &'static str, extra: Value| {
        let mut body = json!({"model": "templated", "messages": asked, "input": "What is 2 + 2?",
                              "max_tokens": 4});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let s = &s;
        async move {
            let (code, r) = post(s, path, body).await;
            assert_eq!(code, 200, "{r}");
            r["input_tokens"].as_u64().unwrap()
        }
    };
    let messages = "/v1/messages/count_tokens";
    let plain = count(messages, json!({})).await;
    let on = count(
        messages,
        json!({"thinking": {"type": "enabled", "budget_tokens": 1024}}),
    )
    .await;
    let off = count(messages, json!({"thinking": {"type": "disabled"}})).await;
    assert!(on == plain && off > plain, "{plain} {on} {off}");
    // the template's own kwargs win
    let kept = json!({"thinking": {"type": "disabled"}, "chat_template_kwargs": {"enable_thinking": true}});
    assert_eq!(count(messages, kept).await, plain);
    let responses = "/v1/responses/input_tokens";
    let plain = count(responses, json!({})).await;
    let on = count(responses, json!({"reasoning": {"effort": "high"}})).await;
    let off = count(responses, json!({"reasoning": {"effort": "none"}})).await;
    assert!(on == plain && off > plain, "{plain} {on} {off}");
    // a streamed response of such a reply gives every token's logprob with its text
    // (held while the reply's start might have opened a reasoning), as a whole one does
    let streamed = json!({"input": "What is 2 + 2?", "max_output_tokens": 6, "temperature": 0,
                      "include": ["message.output_text.logprobs"], "stream": true});
    let events = named_events(&post_text(&s, "/v1/responses", &streamed).await);
    let (_, done) = events
        .iter()
        .find(|(n, _)| n == "response.output_text.done")
        .unwrap();
    let (_, end) = events.last().unwrap();
    let tokens = end["response"]["usage"]["output_tokens"].as_u64().unwrap();
    assert_eq!(
        done["logprobs"].as_array().unwrap().len() as u64,
        tokens,
        "{done}"
    );
    // held to a grammar: the format from the first token, never read for reasoning
    let (code, r) = chat(
        &s,
        body(json!({"response_format": {"type": "json_object"}, "max_tokens": 20})),
    )
    .await;
    assert_eq!(code, 200, "{r}");
    assert!(
        r["choices"][0]["message"]
            .get("reasoning_content")
            .is_none(),
        "{r}"
    );
    let _ = std::fs::remove_dir_all(&models);
}

/// The events of a streamed reply: (event name, data) of each SSE event.
fn named_events(text: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut name = String::new();
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("event: ") {
            name = n.to_string();
        } else if let Some(d) = line.strip_prefix("data: ") {
            if let Ok(v) = serde_json::from_str(d) {
                out.push((std::mem::take(&mut name), v));
            }
        }
    }
    out
}

/// A template whose generation prompt opens the reasoning, as DeepSeek-R1's does
/// (`<think>\n`), and drops earlier turns' reasoning: every reply is read as reasoning
/// until `</think>`. The Responses API gives it as a `reasoning` item (streamed as
/// `response.reasoning_text.delta` events adding up to it), the Messages API as a
/// `thinking` block (`thinking_delta`s), chat completions as `reasoning_content`; a
/// reply cut inside its reasoning has no answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reasoning_comes_as_items_blocks_and_fields() {
    let (s, models) = templated_server(
        "r1",
        "{% for m in messages %}{{ m.role }}: {{ m.content.split('</think>')[-1] }}\n{% endfor %}{% if add_generation_prompt %}assistant: <think>\n{% endif %}",
    )
    .await;
    let hi = json!([{"role": "user", "content": "What is 2 + 2?"}]);
    let (code, c) = chat(
        &s,
        json!({"messages": hi, "max_tokens": 6, "temperature": 0}),
    )
    .await;
    assert_eq!(code, 200, "{c}");
    let reasoning = c["choices"][0]["message"]["reasoning_content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(c["choices"][0]["message"]["content"].is_null(), "{c}");
    assert!(!reasoning.trim().is_empty(), "{c}");

    // the Responses API: a reasoning item, and no message
    let body = json!({"input": "What is 2 + 2?", "max_output_tokens": 6, "temperature": 0});
    let (code, r) = post(&s, "/v1/responses", body.clone()).await;
    assert_eq!(code, 200, "{r}");
    let output = r["output"].as_array().unwrap();
    assert_eq!(output.len(), 1, "{r}");
    assert_eq!(output[0]["type"], "reasoning");
    assert_eq!(output[0]["content"][0]["text"], reasoning.as_str());
    assert_eq!(output[0]["status"], "incomplete");
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let events = named_events(&post_text(&s, "/v1/responses", &streamed).await);
    let deltas: String = events
        .iter()
        .filter(|(n, _)| n == "response.reasoning_text.delta")
        .map(|(_, d)| d["delta"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, reasoning);
    let (_, done) = events
        .iter()
        .find(|(n, _)| n == "response.reasoning_text.done")
        .unwrap();
    assert_eq!(done["text"], reasoning.as_str());
    let (name, end) = events.last().unwrap();
    assert_eq!(name, "response.incomplete");
    let out = &end["response"]["output"];
    assert_eq!(out.as_array().unwrap().len(), 1, "{end}");
    assert_eq!(out[0]["content"], output[0]["content"], "{end}");

    // the Messages API: a thinking block, and no text block
    let body = json!({"model": "templated", "messages": hi, "max_tokens": 6, "temperature": 0});
    let (code, m) = post(&s, "/v1/messages", body.clone()).await;
    assert_eq!(code, 200, "{m}");
    assert_eq!(
        m["content"],
        json!([{"type": "thinking", "thinking": reasoning, "signature": ""}])
    );
    assert_eq!(m["stop_reason"], "max_tokens");
    let mut streamed = body;
    streamed["stream"] = json!(true);
    let events = named_events(&post_text(&s, "/v1/messages", &streamed).await);
    let deltas: String = events
        .iter()
        .filter(|(n, d)| n == "content_block_delta" && d["delta"]["type"] == "thinking_delta")
        .map(|(_, d)| d["delta"]["thinking"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, reasoning);
    assert!(!events
        .iter()
        .any(|(_, d)| d["delta"]["type"] == "text_delta"));
    let _ = std::fs::remove_dir_all(&models);
}

/// A logit bias that steers the random-weight model to close JSON: whitespace tokens
/// banned (it pads every gap it may), closers favoured.
pub(crate) async fn closing_bias(s: &Server) -> Value {
    let mut bias = json!({});
    for (text, b) in [
        (" ", -100),
        ("\n", -100),
        ("\t", -100),
        ("\r", -100),
        ("\"", 6),
        ("}", 6),
        ("]", 4),
    ] {
        let (_, t) = post(
            s,
            "/tokenize",
            json!({"prompt": text, "add_special_tokens": false}),
        )
        .await;
        let [id] = t["tokens"].as_array().unwrap().as_slice() else {
            panic!("{text:?}: {t}")
        };
        bias[id.to_string()] = json!(b);
    }
    bias
}

/// `tool_choice` forcing a call: naming a function, the reply is its arguments (held
/// to its parameters schema; OpenAI's shape: no content, one call, `finish_reason`
/// `stop`; streamed as argument deltas after a first chunk with the call's id and
/// name); `required`, the reply is a JSON array of calls of the tools, each held to its
/// tool's schema (`finish_reason` `tool_calls`, the calls whole in the last chunk).
/// Seeded samples of the random-weight model, steered to close by a logit bias.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forced_tool_calls_follow_the_tools_schemas() {
    let (s, models) = hermes_server("forced").await;
    let tools = json!([
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object",
            "properties": {"city": {"type": "string", "maxLength": 6}, "unit": {"enum": ["C", "F"]}},
            "required": ["city"]}}},
        {"type": "function", "function": {"name": "add", "parameters": {"type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}}}
    ]);
    let weather_args = |args: &str| {
        let v: Value = serde_json::from_str(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let o = v.as_object().unwrap();
        assert!(o["city"].as_str().unwrap().chars().count() <= 6, "{args}");
        assert!(o.get("unit").is_none_or(|u| u == "C" || u == "F"), "{args}");
        assert!(o.keys().all(|k| k == "city" || k == "unit"), "{args}");
    };
    let bias = closing_bias(&s).await;
    let named = json!({"type": "function", "function": {"name": "get_weather"}});
    let mut closed = 0;
    for seed in 0..4 {
        let body = json!({"messages": [{"role": "user", "content": "Weather?"}], "max_tokens": 40,
                          "temperature": 1.0, "seed": seed, "tools": tools, "tool_choice": named,
                          "logit_bias": bias});
        let (code, r) = chat(&s, body.clone()).await;
        assert_eq!(code, 200, "{r}");
        let choice = &r["choices"][0];
        assert!(choice["message"]["content"].is_null(), "{r}");
        let call = &choice["message"]["tool_calls"][0];
        assert_eq!(call["function"]["name"], "get_weather");
        assert!(call["id"].as_str().unwrap().starts_with("call_"));
        let args = call["function"]["arguments"].as_str().unwrap();
        assert!(args.starts_with('{'), "{args:?}");
        if choice["finish_reason"] == "stop" {
            weather_args(args);
            closed += 1;
        }
        // streamed: the arguments in pieces, the first chunk naming the call
        let mut streamed = body.clone();
        streamed["stream"] = json!(true);
        let text = post_text(&s, "/v1/chat/completions", &streamed).await;
        let calls: Vec<Value> = sse_data(&text)
            .iter()
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str::<Value>(d).unwrap())
            .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0).cloned())
            .collect();
        assert_eq!(calls[0]["function"]["name"], "get_weather", "{text}");
        assert_eq!(calls[0]["type"], "function");
        assert!(calls[1..]
            .iter()
            .all(|c| c.get("id").is_none() && c["index"] == 0));
        let joined: String = calls
            .iter()
            .map(|c| c["function"]["arguments"].as_str().unwrap())
            .collect();
        assert_eq!(joined, args);
    }
    assert!(closed >= 2, "{closed} of 4 closed");
    // required: an array of calls of the tools
    let mut called = 0;
    for seed in 0..4 {
        let body = json!({"messages": [{"role": "user", "content": "Weather?"}], "max_tokens": 80,
                          "temperature": 1.0, "seed": seed, "tools": tools, "tool_choice": "required",
                          "logit_bias": bias});
        let (code, r) = chat(&s, body.clone()).await;
        assert_eq!(code, 200, "{r}");
        let choice = &r["choices"][0];
        let mut streamed = body.clone();
        streamed["stream"] = json!(true);
        let text = post_text(&s, "/v1/chat/completions", &streamed).await;
        let last = sse_data(&text)
            .iter()
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str::<Value>(d).unwrap())
            .rfind(|c| !c["choices"][0]["finish_reason"].is_null())
            .unwrap();
        assert_eq!(
            last["choices"][0]["finish_reason"], choice["finish_reason"],
            "{text}"
        );
        if choice["finish_reason"] != "tool_calls" {
            // cut: the start of the array, as content
            let content = choice["message"]["content"].as_str().unwrap();
            let squeezed: String = content.split_whitespace().collect();
            assert!(squeezed.starts_with("[{\"name\":"), "{content:?}");
            assert_eq!(choice["finish_reason"], "length");
            continue;
        }
        called += 1;
        let calls = choice["message"]["tool_calls"].as_array().unwrap();
        assert!(!calls.is_empty());
        for (i, c) in calls.iter().enumerate() {
            let args = c["function"]["arguments"].as_str().unwrap();
            match c["function"]["name"].as_str().unwrap() {
                "get_weather" => weather_args(args),
                "add" => {
                    let v: Value = serde_json::from_str(args).unwrap();
                    assert!(v["a"].is_i64() && v["b"].is_i64(), "{args}");
                }
                other => panic!("{other}"),
            }
            let sc = &last["choices"][0]["delta"]["tool_calls"][i];
            assert_eq!(sc["function"], c["function"], "{text}");
            assert_eq!(sc["index"], i);
        }
    }
    assert!(called >= 2, "{called} of 4 called");
    // what cannot be forced is a 400 naming the field
    let msgs = json!([{"role": "user", "content": "x"}]);
    for (body, param, words) in [
        (
            json!({"tools": tools, "tool_choice": {"type": "function", "function": {"name": "nope"}}}),
            "tool_choice",
            "not among the tools",
        ),
        (
            json!({"tool_choice": "required"}),
            "tool_choice",
            "needs tools",
        ),
        (
            json!({"tools": tools, "tool_choice": {"type": "function"}}),
            "tool_choice",
            "tool_choice must be",
        ),
        (
            json!({"tools": tools, "tool_choice": named, "response_format": {"type": "json_object"}}),
            "response_format",
            "cannot both",
        ),
        (
            json!({"tools": [tools[0], tools[0]], "tool_choice": "required"}),
            "tools[1]",
            "two tools",
        ),
        (
            json!({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object",
            "properties": {"x": {"type": "array", "uniqueItems": true}}}}}], "tool_choice": "required"}),
            "tools[0]",
            "#/properties/x",
        ),
        (
            json!({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}],
            "tool_choice": {"type": "function", "function": {"name": "f"}}}),
            "tools[0]",
            "object schema",
        ),
    ] {
        let mut body = body;
        body["messages"] = msgs.clone();
        let (code, r) = chat(&s, body.clone()).await;
        assert_eq!(code, 400, "{body}: {r}");
        assert_eq!(r["error"]["param"], param, "{body}: {r}");
        assert!(
            r["error"]["message"].as_str().unwrap().contains(words),
            "{body}: {r}"
        );
    }
    let _ = std::fs::remove_dir_all(&models);
}
