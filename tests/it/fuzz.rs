//! A bounded fuzz of the request bodies and configs (proptest): no input gets a
//! 5xx, every error has the contract's body, and the model keeps serving.

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
