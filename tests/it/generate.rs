//! KV-cache decoding: each incremental step equals the full forward of the same
//! prefix, and greedy generation on the Hugging Face fixture equals what
//! `transformers` generated greedily (ids committed with the fixture).

use crate::common;

use common::{assert_close, gpu};
use wgformer::model::{resolve_config, Model};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hf-gpt2-tiny");

fn fixture_model() -> (Model, serde_json::Value) {
    fixture_model_with("auto")
}

fn fixture_model_with(kernels: &str) -> (Model, serde_json::Value) {
    let g = gpu();
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{DIR}/fixture.json")).unwrap())
            .unwrap();
    let (cfg, ckpt) = resolve_config(serde_json::json!({
        "checkpoint": format!("{DIR}/model.safetensors"),
        "n_head": meta["config"]["n_head"],
        "kernels": kernels,
    }))
    .unwrap();
    (
        Model::build(cfg, ckpt, g.ctx.clone(), g.pipelines.clone()).unwrap(),
        meta,
    )
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    common::json_ids(v)
}

#[test]
fn each_step_equals_the_full_forward_of_its_prefix() {
    let (model, meta) = fixture_model();
    let all = ids(&meta["input_ids"]);
    let v = model.config.vocab_size;
    let mut s = model.kv_reserve(all.len()).unwrap().unwrap();
    // prefill 5 tokens (matmul path), then one token at a time (matrix-vector path)
    let mut got = vec![model.extend(&mut s, &all[..5]).unwrap()];
    for &id in &all[5..] {
        got.push(model.extend(&mut s, &[id]).unwrap());
    }
    for (i, step) in got.iter().enumerate() {
        let n = 5 + i;
        let full = model.forward_logits(&all[..n]).unwrap();
        assert_close(
            &format!("step logits after {n} tokens"),
            step,
            &full[(n - 1) * v..],
            1e-4,
            1e-4,
        );
    }
    // the generation cannot grow past its pages (its reservation rounded up to whole
    // pages) nor past the context: one more is an error, not a panic
    let room = s.room().min(model.config.context_size - s.len());
    if room > 0 {
        model.extend(&mut s, &vec![1; room]).unwrap();
    }
    assert_eq!(
        model.extend(&mut s, &[1]).unwrap_err().code(),
        "SEQUENCE_TOO_LONG"
    );
}

#[test]
fn greedy_generation_equals_transformers() {
    for kernels in ["software", "hardware"] {
        greedy_generation_equals_transformers_with(kernels);
    }
}

fn greedy_generation_equals_transformers_with(kernels: &str) {
    let (model, meta) = fixture_model_with(kernels);
    let prompt = ids(&meta["greedy_prompt"]);
    let want = ids(&meta["greedy_ids"]);
    assert_eq!(common::greedy(&model, &prompt, want.len()), want);
}

#[test]
fn seeded_model_steps_match_forward_with_wide_heads() {
    for kernels in ["software", "hardware"] {
        for dtype in ["float32", "float16"] {
            seeded_steps_match_forward(kernels, dtype, false);
        }
        seeded_steps_match_forward(kernels, "float32", true);
    }
}

/// Decode steps (matrix-vector path: split-K kernels with hardware kernels) equal the
/// full forward (matmul path) of the same prefix.
fn seeded_steps_match_forward(kernels: &str, dtype: &str, sparse: bool) {
    let g = gpu();
    let cfg = wgformer::ModelConfig::from_value(serde_json::json!({
        "vocab_size": 300, "context_size": 32, "n_layer": 2, "n_head": 2, "n_embed": 64, "bias": false, "seed": 5,
        "kernels": kernels, "dtype": dtype,
        "use_sparse_attention": sparse, "sparse_block_size": 4, "sparse_local_blocks": 1, "sparse_global_blocks": 1
    }))
    .unwrap();
    let model = Model::build(cfg, None, g.ctx.clone(), g.pipelines.clone()).unwrap();
    let all: Vec<u32> = (0..12).map(|i| (i * 53 + 7) % 300).collect();
    let mut s = model.kv_reserve(32).unwrap().unwrap();
    model.extend(&mut s, &all[..1]).unwrap();
    model.extend(&mut s, &all[1..7]).unwrap();
    for n in 8..=12 {
        let step = model.extend(&mut s, &all[n - 1..n]).unwrap();
        let full = model.forward_logits(&all[..n]).unwrap();
        assert_close(
            &format!("{kernels} {dtype} sparse {sparse} n={n}"),
            &step,
            &full[(n - 1) * 300..],
            1e-4,
            1e-4,
        );
    }
}

/// Decode logits of `all` (prefill 6, then a step a token) and the model's KV page bytes,
/// for a seeded model of `family` with `kv_cache_dtype`.
fn steps_with_kv(family: &str, kernels: &str, kv: &str) -> (Vec<Vec<f32>>, u64) {
    let g = gpu();
    let cfg = wgformer::ModelConfig::from_value(serde_json::json!({
        "vocab_size": 300, "context_size": 32, "n_layer": 2, "n_head": 4, "n_embed": 64,
        "seed": 9, "kernels": kernels, "architecture": family,
        "n_kv_head": if family == "gpt2" { 4 } else { 2 },
        "kv_cache_dtype": kv,
    }))
    .unwrap();
    let model = Model::build(cfg, None, g.ctx.clone(), g.pipelines.clone()).unwrap();
    assert_eq!(model.kv.half, kv == "float16");
    let all: Vec<u32> = (0..14).map(|i| (i * 61 + 5) % 300).collect();
    let mut s = model.kv_reserve(32).unwrap().unwrap();
    let mut out = vec![model.extend(&mut s, &all[..6]).unwrap()];
    for &id in &all[6..] {
        out.push(model.extend(&mut s, &[id]).unwrap());
    }
    (out, model.kv.page_bytes)
}

#[test]
fn a_half_float_kv_cache_stays_close_to_f32_in_half_the_bytes() {
    // The KV pool as half floats (written by the qkv epilogue for GPT-2, by the rotary
    // kernel for Llama; read by the prefill chunk's and the decode steps' attention):
    // the logits of a prefill and of decode steps stay within half-float rounding of
    // the f32 pool's, and differ from them (the half floats are read); a page takes
    // half the bytes.
    for family in ["gpt2", "llama"] {
        for kernels in ["software", "hardware"] {
            let (f32s, f32_page) = steps_with_kv(family, kernels, "float32");
            let (halves, half_page) = steps_with_kv(family, kernels, "float16");
            assert_eq!(half_page * 2, f32_page);
            let name = format!("{family} {kernels}");
            for (i, (a, b)) in f32s.iter().zip(&halves).enumerate() {
                assert_close(&format!("{name} step {i}"), b, a, 5e-4, 5e-3);
            }
            assert!(
                f32s.iter().zip(&halves).any(|(a, b)| a != b),
                "{name}: the half-float pool gave the f32 pool's logits bit for bit"
            );
        }
    }
    // `auto` follows the weights: float16 weights keep a half-float cache
    let cfg = |dtype: &str| {
        wgformer::ModelConfig::from_value(serde_json::json!({"dtype": dtype})).unwrap()
    };
    assert!(cfg("float16").kv_half() && !cfg("float32").kv_half());
}
