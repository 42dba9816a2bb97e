//! A bounded fuzz of the request bodies (the contract's, and the chat-shaped `/v1`
//! APIs') and configs (proptest): no input gets a 5xx, every error has the contract's
//! body (the `/v1` shape on `/v1`), and the model keeps serving.

use crate::common;

use common::http::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Map, Value};
use wgformer::engine::EngineOptions;
use wgformer::server::ServerConfig;

/// Numbers at and around the edges, strings, nulls, arrays, objects.
fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        prop_oneof![
            Just(0i64),
            Just(1),
            Just(-1),
            Just(4096),
            Just(4097),
            Just(i64::MAX),
            Just(i64::MIN),
            -10i64..200
        ]
        .prop_map(Value::from),
        prop_oneof![Just(u64::MAX), Just(1u64 << 63), Just(1u64 << 31)].prop_map(Value::from),
        prop_oneof![Just(0.0f64), Just(1e308), Just(-0.5), 0.0f64..2.0].prop_map(Value::from),
        "[ -~]{0,12}".prop_map(Value::from),
        "\\PC{0,8}".prop_map(Value::from),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A valid `base` with 0..=3 of `keys` (and sometimes an unknown key) set to
/// anything, or (one time in four) an object of random keys from scratch.
fn body(base: Value, keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
    (
        prop::collection::vec((prop::sample::select(keys), value()), 0..=3),
        prop::option::weighted(0.15, ("[a-z]{3,6}", scalar())),
        prop::bool::weighted(0.25),
    )
        .prop_map(move |(pairs, extra, scratch)| {
            let mut m = match (&base, scratch) {
                (Value::Object(o), false) => o.clone(),
                _ => Map::new(),
            };
            for (k, v) in pairs {
                m.insert(k.to_string(), v);
            }
            if let Some((k, v)) = extra {
                m.insert(k, v);
            }
            Value::Object(m)
        })
}

const FORWARD_KEYS: &[&str] = &["text", "capture_data", "max_length", "top_k"];
const GENERATE_KEYS: &[&str] = &[
    "text",
    "max_new_tokens",
    "temperature",
    "top_k",
    "top_p",
    "seed",
    "stop",
    "stream",
];
const CONFIG_KEYS: &[&str] = &[
    "vocab_size",
    "context_size",
    "n_layer",
    "n_head",
    "n_embed",
    "dropout",
    "bias",
    "ffn_hidden_multiplier",
    "use_sparse_attention",
    "use_moe",
    "moe_num_experts",
    "moe_top_k",
    "moe_activation",
    "device",
    "dtype",
    "checkpoint",
    "tokenizer",
    "sparse_block_size",
    "sparse_local_blocks",
];

thread_local! {
    static CODES: std::cell::RefCell<std::collections::BTreeMap<u16, usize>> = Default::default();
}

fn check(code: u16, body: &Value, what: &Value) {
    CODES.with(|c| *c.borrow_mut().entry(code).or_default() += 1);
    assert!(code < 500, "{code} for {what}: {body}");
    if code >= 400 {
        assert!(body["error_code"].is_string(), "{what}: {body}");
        assert!(body["detail"].is_string(), "{what}: {body}");
    }
}

#[test]
fn no_input_gets_a_5xx() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // A small budget keeps every config that builds tiny (and the run short).
    let s = rt.block_on(Server::with(
        ServerConfig::default(),
        EngineOptions {
            max_model_bytes: Some(32 << 20),
            ..EngineOptions::default()
        },
    ));
    let base = json!({"n_layer": 1, "n_embed": 32, "n_head": 2, "context_size": 32});
    assert_eq!(rt.block_on(init(&s, &base)).0, 200);
    let cases = |n| Config {
        cases: n,
        failure_persistence: None,
        ..Config::default()
    };
    let seen = std::cell::Cell::new(0usize);
    let mut runner = TestRunner::new(cases(160));
    runner
        .run(
            &body(json!({"text": "Deep learning is"}), FORWARD_KEYS),
            |b| {
                let (code, r) = rt.block_on(forward(&s, b.clone()));
                check(code, &r, &b);
                seen.set(seen.get() + 1);
                Ok(())
            },
        )
        .unwrap();
    let mut runner = TestRunner::new(cases(120));
    runner
        .run(
            &body(
                json!({"text": "Once upon", "max_new_tokens": 2}),
                GENERATE_KEYS,
            ),
            |mut b| {
                // bounded work per case: at most a few tokens, never a stream
                if let Some(o) = b.as_object_mut() {
                    o.remove("stream");
                    if o.get("max_new_tokens")
                        .and_then(Value::as_i64)
                        .is_some_and(|n| n > 4)
                    {
                        o.insert("max_new_tokens".into(), json!(4));
                    }
                }
                let (code, r) = rt.block_on(post(&s, "/api/v1/generate", b.clone()));
                check(code, &r, &b);
                seen.set(seen.get() + 1);
                Ok(())
            },
        )
        .unwrap();
    let mut runner = TestRunner::new(cases(120));
    runner
        .run(&body(base.clone(), CONFIG_KEYS), |b| {
            let (code, r) = rt.block_on(init(&s, &b));
            check(code, &r, &b);
            seen.set(seen.get() + 1);
            Ok(())
        })
        .unwrap();
    // whatever was built last, the service still answers a forward
    assert_eq!(rt.block_on(init(&s, &base)).0, 200);
    let (code, r) = rt.block_on(forward(&s, json!({"text": "still here"})));
    assert_eq!(code, 200, "{r}");
    let codes = CODES.with(|c| c.borrow().clone());
    eprintln!(
        "fuzz cases run: {}, 5xx seen: 0, answers by status: {codes:?}",
        seen.get()
    );
    // the fuzz reached past validation too: some bodies and configs were accepted
    assert!(codes.get(&200).copied().unwrap_or(0) > 10, "{codes:?}");
}

/// Words the chat-shaped APIs look for, so random items and blocks reach past the
/// first check.
fn word() -> impl Strategy<Value = Value> {
    prop::sample::select(vec![
        "message",
        "function_call",
        "function_call_output",
        "reasoning",
        "user",
        "assistant",
        "system",
        "developer",
        "tool",
        "text",
        "input_text",
        "output_text",
        "tool_use",
        "tool_result",
        "image",
        "function",
        "auto",
        "any",
        "required",
        "none",
        "json_schema",
        "json_object",
        "get",
    ])
    .prop_map(Value::from)
}

/// An item, message, block or tool of the chat-shaped APIs: an object of their keys,
/// each a word, anything, or (one level down) a list of such objects.
fn part() -> impl Strategy<Value = Value> {
    const KEYS: &[&str] = &[
        "type",
        "role",
        "content",
        "call_id",
        "name",
        "arguments",
        "output",
        "id",
        "text",
        "tool_use_id",
        "input",
        "input_schema",
        "parameters",
        "function",
        "schema",
        "format",
    ];
    let leaf = prop_oneof![3 => word(), 2 => value()];
    let inner = prop::collection::btree_map(prop::sample::select(KEYS), leaf.clone(), 0..4)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()));
    let field =
        prop_oneof![3 => leaf, 1 => prop::collection::vec(inner, 0..3).prop_map(Value::from)];
    prop::collection::btree_map(prop::sample::select(KEYS), field, 0..5)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
}

/// A chat-shaped route: its path, its conversation's field, valid messages or items,
/// valid fields.
type Route = (
    &'static str,
    &'static str,
    Vec<Value>,
    Vec<(&'static str, Value)>,
);

/// `/v1/chat/completions`, `/v1/responses` and `/v1/messages` (and the counting
/// routes) with random conversations, items, blocks, tools and formats: never a 5xx,
/// every error in the `/v1` shape, and the model keeps serving.
#[test]
fn no_chat_shaped_input_gets_a_5xx() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (s, models) = rt.block_on(crate::chat::templated_server(
        "fuzz",
        "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}<assistant>",
    ));
    let cases = |n| Config {
        cases: n,
        failure_persistence: None,
        ..Config::default()
    };
    let tools = json!([{"type": "function", "function": {"name": "get", "parameters": {"type": "object",
        "properties": {"q": {"type": "integer", "maximum": 9}}}}}]);
    let flat_tools = json!([{"type": "function", "name": "get", "parameters": {"type": "object"}}]);
    let anthropic_tools = json!([{"name": "get", "input_schema": {"type": "object"}}]);
    let schema =
        json!({"type": "object", "properties": {"a": {"type": "boolean"}}, "required": ["a"]});
    // (the route, its conversation's field, valid messages or items, valid fields)
    let routes: Vec<Route> = vec![
        (
            "/v1/chat/completions",
            "messages",
            vec![
                json!({"role": "user", "content": "Hi"}),
                json!({"role": "system", "content": [{"type": "text", "text": "S"}]}),
                json!({"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function",
                "function": {"name": "get", "arguments": "{\"q\": 1}"}}]}),
                json!({"role": "tool", "tool_call_id": "c", "content": "r"}),
            ],
            vec![
                ("tools", tools.clone()),
                ("tool_choice", json!("required")),
                (
                    "tool_choice",
                    json!({"type": "function", "function": {"name": "get"}}),
                ),
                ("response_format", json!({"type": "json_object"})),
                (
                    "response_format",
                    json!({"type": "json_schema", "json_schema": {"schema": schema}}),
                ),
                ("n", json!(2)),
                ("logprobs", json!(true)),
                ("top_logprobs", json!(2)),
                ("stop", json!(["a"])),
                ("continue_final_message", json!(true)),
            ],
        ),
        (
            "/v1/responses",
            "input",
            vec![
                json!({"role": "user", "content": "Hi"}),
                json!({"role": "developer", "content": [{"type": "input_text", "text": "D"}]}),
                json!({"type": "function_call", "call_id": "c", "name": "get", "arguments": "{}"}),
                json!({"type": "function_call_output", "call_id": "c", "output": "r"}),
                json!({"type": "reasoning", "summary": []}),
            ],
            vec![
                ("tools", flat_tools),
                ("tool_choice", json!("required")),
                ("tool_choice", json!({"type": "function", "name": "get"})),
                (
                    "text",
                    json!({"format": {"type": "json_schema", "name": "n", "schema": schema}}),
                ),
                ("instructions", json!("I")),
                ("truncation", json!("auto")),
                ("include", json!(["message.output_text.logprobs"])),
                ("top_logprobs", json!(1)),
                ("parallel_tool_calls", json!(false)),
                ("store", json!(false)),
            ],
        ),
        (
            "/v1/messages",
            "messages",
            vec![
                json!({"role": "user", "content": "Hi"}),
                json!({"role": "assistant", "content": [{"type": "text", "text": "A"},
                {"type": "tool_use", "id": "t", "name": "get", "input": {}}]}),
                json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "r"}]}),
            ],
            vec![
                ("tools", anthropic_tools),
                ("tool_choice", json!({"type": "any"})),
                (
                    "tool_choice",
                    json!({"type": "tool", "name": "get", "disable_parallel_tool_use": true}),
                ),
                ("system", json!("S")),
                ("stop_sequences", json!(["a"])),
                (
                    "output_config",
                    json!({"format": {"type": "json_schema", "schema": schema}}),
                ),
            ],
        ),
    ];
    let answered: std::cell::RefCell<std::collections::BTreeMap<u16, usize>> = Default::default();
    for (path, conversation, valid, fields) in routes {
        let keys: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
        // mostly valid messages (one in five anything, or a random item), mostly valid
        // fields (one in three a random value, or a random field)
        let message = prop_oneof![4 => prop::sample::select(valid), 1 => part(), 1 => value()];
        let field = prop_oneof![
            2 => prop::sample::select(fields),
            1 => (prop::sample::select(keys), prop_oneof![part(), word(), value()]),
        ];
        let strategy = (
            prop_oneof![6 => prop::collection::vec(message, 1..4).prop_map(Value::from), 1 => value()],
            prop::collection::vec(field, 0..=3),
            prop::sample::select(vec!["", "/count_tokens", "/input_tokens"]),
        );
        TestRunner::new(cases(150))
            .run(&strategy, |(conv, pairs, count)| {
                let mut b = json!({ conversation: conv });
                for (k, v) in pairs {
                    b[k] = v;
                }
                // most end with the user's turn
                if let Some(list) = b[conversation].as_array_mut() {
                    if list.len() % 2 == 1 {
                        list.push(json!({"role": "user", "content": "Go"}));
                    }
                }
                // bounded work: a token or two, never a stream
                let tokens = if path == "/v1/responses" {
                    "max_output_tokens"
                } else {
                    "max_tokens"
                };
                b[tokens] = json!(2);
                let at = match (path, count) {
                    ("/v1/messages", "/count_tokens") | ("/v1/responses", "/input_tokens") => {
                        format!("{path}{count}")
                    }
                    _ => path.to_string(),
                };
                let (code, r) = rt.block_on(post(&s, &at, b.clone()));
                *answered.borrow_mut().entry(code).or_default() += 1;
                assert!(code < 500, "{code} for {at} {b}: {r}");
                if code >= 400 {
                    assert!(r["error"]["message"].is_string(), "{at} {b}: {r}");
                }
                Ok(())
            })
            .unwrap();
    }
    let (code, r) = rt.block_on(post(
        &s,
        "/v1/responses",
        json!({"input": "still here", "max_output_tokens": 1}),
    ));
    assert_eq!(code, 200, "{r}");
    let answered = answered.into_inner();
    eprintln!("chat-shaped fuzz answers by status: {answered:?}");
    assert!(
        answered.get(&200).copied().unwrap_or(0) > 10,
        "{answered:?}"
    );
    let _ = std::fs::remove_dir_all(&models);
}
