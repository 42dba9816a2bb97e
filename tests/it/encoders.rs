//! Encoders (sentence-embedding models) from Hugging Face directories laid out as
//! sentence-transformers publishes them (tools/make_encoder_fixtures.py): tokenization,
//! every hidden state and the pooled embedding equal what `transformers` computed, with
//! both kernel classes; `/v1/embeddings` serves them and nothing else; bad pooling
//! configs get errors that name the problem.

use crate::common;

use common::{assert_close, gpu};
use wgformer::config::Family;
use wgformer::model::directory::ModelDir;
use wgformer::model::{resolve_config, Model, Pooling};

const ENCODERS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/encoders");

/// The fixtures and the pooling each directory names.
const ALL: [(&str, Pooling); 2] = [("bert", Pooling::Mean), ("xlm_roberta", Pooling::First)];

fn meta(name: &str) -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(format!("{ENCODERS}/{name}/fixture.json")).unwrap(),
    )
    .unwrap()
}

fn expected(name: &str, tensor: &str) -> Vec<f32> {
    common::safetensors_f32(&format!("{ENCODERS}/{name}/expected.safetensors"), tensor)
}

fn build(dir: &str, extra: serde_json::Value) -> Model {
    let g = gpu();
    let mut config = serde_json::json!({ "model": dir });
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    let (cfg, files) = resolve_config(config).unwrap();
    Model::build(cfg, files, g.ctx.clone(), g.pipelines.clone()).unwrap()
}

#[test]
fn encoders_tokenize_as_transformers_does() {
    for (name, pooling) in ALL {
        let dir =
            ModelDir::open(name, std::path::Path::new(&format!("{ENCODERS}/{name}"))).unwrap();
        assert_eq!(dir.arch.family, Family::Bert, "{name}");
        assert_eq!(dir.pooling, pooling, "{name}");
        assert!(dir.headless, "{name}: an encoder has no LM head");
        let tok = dir.load_tokenizer(1 << 20).unwrap().unwrap();
        let m = meta(name);
        let want = common::json_ids(&m["input_ids"]);
        assert_eq!(
            tok.encode(m["text"].as_str().unwrap()).unwrap(),
            want,
            "{name}"
        );
    }
}

#[test]
fn encoders_embed_as_transformers_computes() {
    // The pooled embedding (the mean of every hidden state, or the first token's) of
    // the fixture's text with both kernel classes, f32 and half-float weights; a text's
    // embedding the same alone and beside others in one traversal. A causal mask or
    // the tanh GELU would each move these by more than the tolerance (the script
    // checks), and so would a position table read from row 0 for XLM-R.
    for (name, pooling) in ALL {
        let m = meta(name);
        let tol = m["tolerance"].as_f64().unwrap();
        let input = common::json_ids(&m["input_ids"]);
        let want = expected(name, "pooled");
        let hidden = expected(name, "hidden");
        let c = want.len();
        // the fixture's pooled vector is its hidden states pooled
        let first = &hidden[..c];
        let mean: Vec<f32> = (0..c)
            .map(|i| hidden.iter().skip(i).step_by(c).sum::<f32>() / input.len() as f32)
            .collect();
        let pooled_again = if pooling == Pooling::Mean {
            mean
        } else {
            first.to_vec()
        };
        assert_close(&format!("{name} pooled"), &pooled_again, &want, 1e-5, 1e-5);
        for (kernels, dtype, atol) in [
            ("software", "float32", tol),
            ("hardware", "float32", tol),
            ("software", "float16", 2e-2),
        ] {
            let model = build(
                &format!("{ENCODERS}/{name}"),
                serde_json::json!({"kernels": kernels, "dtype": dtype}),
            );
            assert!(model.headless && model.pooling == pooling);
            let got = model.embed_many(&[&input]).unwrap().remove(0);
            let what = format!("{name} {kernels} {dtype} pooled vs transformers");
            assert_close(&what, &got, &want, atol, atol);
            let short = &input[..7];
            let together = model.embed_many(&[short, &input, &input[..20]]).unwrap();
            let alone = model.embed_many(&[short]).unwrap().remove(0);
            assert_eq!(together[0], alone, "{name} {kernels}: alone and shared");
            assert_eq!(together[1], got, "{name} {kernels}: alone and shared");
            // what needs an LM head is refused by name
            let e = model.check_head().unwrap_err().to_string();
            assert!(e.contains("/v1/embeddings only"), "{e}");
        }
    }
}

/// A copy of fixture `name` at `dir` with its pooling config replaced by `pooling`
/// (`None`: no sentence-transformers files at all).
fn with_pooling(name: &str, dir: &std::path::Path, pooling: Option<serde_json::Value>) {
    let src = std::path::PathBuf::from(format!("{ENCODERS}/{name}"));
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    if let Some(p) = pooling {
        std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
        std::fs::write(dir.join("1_Pooling/config.json"), p.to_string()).unwrap();
    }
}

#[test]
fn pooling_comes_from_the_directory_or_the_family() {
    // No sentence-transformers files: an encoder pools by the mean (as
    // sentence-transformers does a plain transformers model); `1_Pooling` without
    // modules.json is read; a mode this service does not pool by, or none, is an error
    // that names it
    use serde_json::json;
    let dir = std::env::temp_dir().join(format!("wgformer-pooling-{}", std::process::id()));
    let open = |p| {
        with_pooling("xlm_roberta", &dir, p);
        ModelDir::open("enc", &dir)
    };
    assert_eq!(open(None).unwrap().pooling, Pooling::Mean);
    let cls = json!({"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false});
    assert_eq!(open(Some(cls)).unwrap().pooling, Pooling::First);
    let last = json!({"pooling_mode_lasttoken": true});
    assert_eq!(open(Some(last)).unwrap().pooling, Pooling::Last);
    let max = json!({"pooling_mode_max_tokens": true});
    let e = open(Some(max)).err().unwrap().to_string();
    assert!(
        e.contains("pooling_mode_max_tokens is not supported"),
        "{e}"
    );
    let both = json!({"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": true});
    let e = open(Some(both)).err().unwrap().to_string();
    assert!(e.contains("must turn on one of"), "{e}");
    // the mean of the same model differs from its first token's (the pooling is used)
    with_pooling("xlm_roberta", &dir, None);
    let model = build(dir.to_str().unwrap(), json!({}));
    let input = common::json_ids(&meta("xlm_roberta")["input_ids"]);
    let mean = model.embed_many(&[&input]).unwrap().remove(0);
    let hidden = expected("xlm_roberta", "hidden");
    let c = mean.len();
    let want: Vec<f32> = (0..c)
        .map(|i| hidden.iter().skip(i).step_by(c).sum::<f32>() / input.len() as f32)
        .collect();
    assert_close("xlm_roberta mean pooled", &mean, &want, 2e-4, 2e-4);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_tokenizer_file_pads_and_truncates_nothing() {
    // all-MiniLM's tokenizer.json pads every text to 128 tokens and truncates at 128
    // (for batches of fixed shape): a text's tokens are its own, as transformers
    // encodes one text, so a mean pool never averages padding
    let src = format!("{ENCODERS}/bert/tokenizer.json");
    let mut t: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src).unwrap()).unwrap();
    t["padding"] = serde_json::json!({"strategy": {"Fixed": 128}, "direction": "Right",
        "pad_to_multiple_of": null, "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"});
    t["truncation"] = serde_json::json!({"max_length": 8, "strategy": "LongestFirst", "stride": 0});
    let tok = wgformer::tokenizer::Tokenizer::from_bytes(t.to_string().as_bytes(), "padded")
        .unwrap()
        .with_special_tokens(None, None);
    let m = meta("bert");
    let want = common::json_ids(&m["input_ids"]);
    assert!(want.len() > 8);
    assert_eq!(tok.encode(m["text"].as_str().unwrap()).unwrap(), want);
}

#[test]
fn sentence_transformers_max_seq_length_is_the_default_context() {
    // sentence_bert_config.json's max_seq_length caps the context the directory
    // gives (a longer text is refused, never cut); a context_size asked for may go up
    // to the model's positions
    let dir = std::env::temp_dir().join(format!("wgformer-seqlen-{}", std::process::id()));
    with_pooling("bert", &dir, None);
    std::fs::write(
        dir.join("sentence_bert_config.json"),
        r#"{"max_seq_length": 16}"#,
    )
    .unwrap();
    let name = dir.to_str().unwrap();
    let (cfg, _) = resolve_config(serde_json::json!({ "model": name })).unwrap();
    assert_eq!(cfg.context_size, 16);
    let (cfg, _) = resolve_config(serde_json::json!({"model": name, "context_size": 100})).unwrap();
    assert_eq!(cfg.context_size, 100);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_seeded_encoder_builds_and_embeds() {
    // architecture "bert" without a directory: random weights of the encoder's shape,
    // headless, the same embedding twice and alone or shared
    let g = gpu();
    let (cfg, files) = resolve_config(serde_json::json!({
        "architecture": "bert", "n_layer": 2, "n_head": 2, "n_embed": 32,
        "vocab_size": 64, "context_size": 32, "seed": 5
    }))
    .unwrap();
    let model = Model::build(cfg, files, g.ctx.clone(), g.pipelines.clone()).unwrap();
    assert!(model.headless);
    assert_eq!(model.pooling, Pooling::Mean);
    let a: Vec<u32> = (0..20).collect();
    let b: Vec<u32> = (10..13).collect();
    let one = model.embed_many(&[&a]).unwrap();
    let both = model.embed_many(&[&b, &a]).unwrap();
    assert_eq!(one[0], both[1]);
    assert!(one[0].iter().all(|x| x.is_finite()));
    assert_ne!(both[0], both[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_encoder_serves_embeddings_and_refuses_generation() {
    use common::http::*;
    use serde_json::json;
    let models = std::env::temp_dir().join(format!("wgformer-encoder-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&models);
    std::fs::create_dir_all(&models).unwrap();
    let src = std::path::PathBuf::from(format!("{ENCODERS}/bert"));
    let dst = models.join("minilm");
    std::fs::create_dir_all(dst.join("1_Pooling")).unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "modules.json",
        "1_Pooling/config.json",
    ] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    let s = Server::with_models(&models).await;
    let (code, body) = init(&s, &json!({"model": "minilm"})).await;
    assert_eq!(code, 200, "{body}");
    let text = meta("bert")["text"].as_str().unwrap().to_string();
    let (code, v) = post(&s, "/v1/embeddings", json!({"input": [text, "short"]})).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    // the fixture's mean-pooled embedding, normalised
    let want = expected("bert", "pooled");
    let norm = want.iter().map(|x| x * x).sum::<f32>().sqrt();
    let want: Vec<f32> = want.iter().map(|x| x / norm).collect();
    let got: Vec<f32> = v["data"][0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    assert_close("encoder over http", &got, &want, 2e-4, 2e-4);
    let n = meta("bert")["input_ids"].as_array().unwrap().len();
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > n as u64);
    // longer than the positions: a 400 naming the input
    let long = "word ".repeat(200);
    let (code, e) = post(&s, "/v1/embeddings", json!({"input": ["ok", long]})).await;
    assert_eq!(code, 400, "{e}");
    assert!(e.to_string().contains("input[1]"), "{e}");
    for (path, body) in [
        ("/v1/completions", json!({"prompt": "hi", "max_tokens": 2})),
        ("/api/v1/forward", json!({"text": "hi"})),
    ] {
        let (code, e) = post(&s, path, body).await;
        assert_eq!(code, 400, "{path}: {e}");
        assert!(e.to_string().contains("/v1/embeddings only"), "{path}: {e}");
    }
    let _ = std::fs::remove_dir_all(&models);
}

#[test]
fn cross_encoders_score_pairs_as_transformers_does() {
    // A BERT cross-encoder (its pairs' second texts of token type 1: the position
    // table's second half) and an XLM-RoBERTa one (one type): each pair's tokens as
    // transformers' tokenizer gives them, and its logit, with both kernel classes, the
    // same alone and beside the others
    for name in ["bert_reranker", "xlm_roberta_reranker"] {
        let path = format!("{ENCODERS}/{name}");
        let dir = ModelDir::open(name, std::path::Path::new(&path)).unwrap();
        assert_eq!(
            dir.pooling,
            Pooling::First,
            "{name}: the head reads the first token"
        );
        assert_eq!(dir.typed_pairs, name == "bert_reranker");
        let tok = dir.load_tokenizer(1 << 20).unwrap().unwrap();
        let m = meta(name);
        let pairs: Vec<(Vec<u32>, usize)> = m["pairs"]
            .as_array()
            .unwrap()
            .iter()
            .zip(m["input_ids"].as_array().unwrap())
            .map(|(p, want)| {
                let (a, b) = (p[0].as_str().unwrap(), p[1].as_str().unwrap());
                let (ids, second) = tok.encode_pair(a, b).unwrap();
                assert_eq!(ids, common::json_ids(want), "{name}: {a:?} {b:?}");
                (ids, second)
            })
            .collect();
        let want = expected(name, "scores");
        let tol = m["tolerance"].as_f64().unwrap();
        for kernels in ["software", "hardware"] {
            let model = build(&path, serde_json::json!({ "kernels": kernels }));
            let batch: Vec<(&[u32], usize)> =
                pairs.iter().map(|(ids, s)| (ids.as_slice(), *s)).collect();
            let got: Vec<f32> = model
                .score_pairs(&batch)
                .unwrap()
                .iter()
                .map(|l| {
                    assert_eq!(l.len(), 1);
                    l[0]
                })
                .collect();
            assert_close(&format!("{name} {kernels} scores"), &got, &want, tol, tol);
            let alone = model.score_pairs(&batch[1..2]).unwrap();
            assert_eq!(alone[0][0], got[1], "{name} {kernels}: alone and shared");
        }
    }
    // an embedding model has no head to score with
    let model = build(&format!("{ENCODERS}/bert"), serde_json::json!({}));
    let e = model
        .score_pairs(&[(&[1, 5, 2][..], 2)])
        .unwrap_err()
        .to_string();
    assert!(e.contains("no classification head"), "{e}");
}

/// A models folder at a fresh temporary path holding fixture `name` as `as_name` (a
/// name of its own a test: tests run side by side).
fn models_with(name: &str, as_name: &str) -> std::path::PathBuf {
    let models = std::env::temp_dir().join(format!("wgformer-{as_name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&models);
    let src = std::path::PathBuf::from(format!("{ENCODERS}/{name}"));
    let dst = models.join(as_name);
    std::fs::create_dir_all(&dst).unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    models
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rerank_orders_documents_by_the_cross_encoder_s_scores() {
    use common::http::*;
    use serde_json::json;
    let models = models_with("bert_reranker", "reranker");
    let s = Server::with_models(&models).await;
    let (code, body) = init(&s, &json!({"model": "reranker"})).await;
    assert_eq!(code, 200, "{body}");
    // the fixture's pairs share one query for the first two: their sigmoids, best first
    let m = meta("bert_reranker");
    let pairs = m["pairs"].as_array().unwrap();
    let query = pairs[0][0].as_str().unwrap();
    let docs: Vec<&str> = pairs[..2].iter().map(|p| p[1].as_str().unwrap()).collect();
    let want: Vec<f64> = expected("bert_reranker", "scores")[..2]
        .iter()
        .map(|&l| 1.0 / (1.0 + (-(l as f64)).exp()))
        .collect();
    let best = if want[0] >= want[1] { 0 } else { 1 };
    let (code, v) = post(
        &s,
        "/v1/rerank",
        json!({"model": "reranker", "query": query, "documents": [docs[0], {"text": docs[1]}]}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["model"], "reranker");
    assert!(v["id"].as_str().unwrap().starts_with("rerank"));
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["index"], best);
    assert_eq!(results[0]["document"]["text"], docs[best]);
    for r in results {
        let i = r["index"].as_u64().unwrap() as usize;
        let got = r["relevance_score"].as_f64().unwrap();
        assert!(
            (got - want[i]).abs() < 1e-4,
            "document {i}: {got} vs {}",
            want[i]
        );
    }
    let total = v["usage"]["total_tokens"].as_u64().unwrap();
    assert!(total > 10, "{v}");
    // top_n and return_documents
    let (code, v) = post(
        &s,
        "/v1/rerank",
        json!({"query": query, "documents": docs, "top_n": 1, "return_documents": false}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["results"].as_array().unwrap().len(), 1);
    assert_eq!(v["results"][0]["index"], best);
    assert!(v["results"][0].get("document").is_none());
    // errors: each a 400 naming its parameter, or a 404 for another model
    let long = "word ".repeat(300);
    for (body, param) in [
        (json!({"query": "", "documents": ["a"]}), "query"),
        (json!({"query": 3, "documents": ["a"]}), "query"),
        (json!({"query": "q", "documents": []}), "documents"),
        (json!({"query": "q", "documents": ["a", ""]}), "documents"),
        (
            json!({"query": "q", "documents": [{"body": "a"}]}),
            "documents",
        ),
        (json!({"query": "q", "documents": ["a", long]}), "documents"),
        (
            json!({"query": "q", "documents": ["a"], "top_n": 0}),
            "top_n",
        ),
    ] {
        let (code, e) = post(&s, "/v1/rerank", body.clone()).await;
        assert_eq!(code, 400, "{body}: {e}");
        assert_eq!(e["error"]["param"], param, "{body}: {e}");
    }
    let (code, e) = post(
        &s,
        "/v1/rerank",
        json!({"query": "q", "documents": ["a", long]}),
    )
    .await;
    assert!(e.to_string().contains("documents[1]"), "{code} {e}");
    let (code, _) = post(
        &s,
        "/v1/rerank",
        json!({"model": "other", "query": "q", "documents": ["a"]}),
    )
    .await;
    assert_eq!(code, 404);
    let _ = std::fs::remove_dir_all(&models);

    // an embedding model is no cross-encoder: a 400 saying so
    let models = models_with("bert", "minilm");
    let s = Server::with_models(&models).await;
    let (code, body) = init(&s, &json!({"model": "minilm"})).await;
    assert_eq!(code, 200, "{body}");
    let (code, e) = post(&s, "/v1/rerank", json!({"query": "q", "documents": ["a"]})).await;
    assert_eq!(code, 400, "{e}");
    assert!(e.to_string().contains("no classification head"), "{e}");
    let _ = std::fs::remove_dir_all(&models);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn score_is_a_cross_encoder_s_sigmoid_or_the_embeddings_cosine() {
    use common::http::*;
    use serde_json::json;
    // a cross-encoder: one text_1 against each text_2, or pair by pair, as /v1/rerank
    let models = models_with("xlm_roberta_reranker", "bge-reranker");
    let s = Server::with_models(&models).await;
    let (code, body) = init(&s, &json!({"model": "bge-reranker"})).await;
    assert_eq!(code, 200, "{body}");
    let m = meta("xlm_roberta_reranker");
    let pairs = m["pairs"].as_array().unwrap();
    let want: Vec<f64> = expected("xlm_roberta_reranker", "scores")
        .iter()
        .map(|&l| 1.0 / (1.0 + (-(l as f64)).exp()))
        .collect();
    let text_1: Vec<&str> = pairs.iter().map(|p| p[0].as_str().unwrap()).collect();
    let text_2: Vec<&str> = pairs.iter().map(|p| p[1].as_str().unwrap()).collect();
    let (code, v) = post(&s, "/v1/score", json!({"text_1": text_1, "text_2": text_2})).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["object"], "list");
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    for (i, d) in data.iter().enumerate() {
        assert_eq!(d["index"], i);
        assert_eq!(d["object"], "score");
        let got = d["score"].as_f64().unwrap();
        assert!(
            (got - want[i]).abs() < 1e-4,
            "pair {i}: {got} vs {}",
            want[i]
        );
    }
    let (code, v) = post(
        &s,
        "/v1/score",
        json!({"text_1": text_1[0], "text_2": &text_2[..2]}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert!(
        (v["data"][1]["score"].as_f64().unwrap() - want[1]).abs() < 1e-4,
        "{v}"
    );
    for (body, param) in [
        (
            json!({"text_1": ["a", "b"], "text_2": ["c", "d", "e"]}),
            "text_1",
        ),
        (json!({"text_1": "", "text_2": "c"}), "text_1"),
        (json!({"text_1": "a", "text_2": []}), "text_2"),
        (json!({"text_1": "a", "text_2": [3]}), "text_2"),
        (
            json!({"text_1": "a", "text_2": ["b", "word ".repeat(300)]}),
            "text_2",
        ),
    ] {
        let (code, e) = post(&s, "/v1/score", body.clone()).await;
        assert_eq!(code, 400, "{body}: {e}");
        assert_eq!(e["error"]["param"], param, "{body}: {e}");
    }
    let _ = std::fs::remove_dir_all(&models);

    // an embedding model: the cosine of the two texts' embeddings
    let models = models_with("bert", "scored-minilm");
    let s = Server::with_models(&models).await;
    let (code, body) = init(&s, &json!({"model": "scored-minilm"})).await;
    assert_eq!(code, 200, "{body}");
    let (code, e) = post(
        &s,
        "/v1/embeddings",
        json!({"input": ["hello world", "the lazy dog"]}),
    )
    .await;
    assert_eq!(code, 200, "{e}");
    let vec_of = |i: usize| -> Vec<f64> {
        e["data"][i]["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let (a, b) = (vec_of(0), vec_of(1));
    let cos: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
    let (code, v) = post(
        &s,
        "/v1/score",
        json!({"text_1": "hello world", "text_2": ["the lazy dog", "hello world"]}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert!(
        (v["data"][0]["score"].as_f64().unwrap() - cos).abs() < 1e-5,
        "{v} vs {cos}"
    );
    assert!(
        (v["data"][1]["score"].as_f64().unwrap() - 1.0).abs() < 1e-5,
        "{v}"
    );
    let _ = std::fs::remove_dir_all(&models);
}
