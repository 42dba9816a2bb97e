//! The Llama families from Hugging Face model directories (tools/make_family_fixtures.py):
//! tokenization, next-token logits and greedy generation equal what `transformers`
//! computed, with both kernel classes; bad directories get errors that name the
//! problem.

use crate::common;

use common::{assert_close, gpu};
use wgformer::model::directory::ModelDir;
use wgformer::model::source::WeightFiles;
use wgformer::model::{resolve_config, Model};

const FAMILIES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/families");

/// The fixture directories, one a family.
const ALL: [&str; 20] = [
    "llama",
    "qwen2",
    "mistral",
    "mixtral",
    "qwen2_moe",
    "qwen3",
    "qwen3_moe",
    "phi3",
    "phi4_mini",
    "gemma3",
    "gemma2",
    "gemma",
    "glm",
    "glm4",
    "starcoder2",
    "cohere",
    "cohere2",
    "olmo2",
    "granite",
    "smollm3",
];

fn meta(family: &str) -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(format!("{FAMILIES}/{family}/fixture.json")).unwrap(),
    )
    .unwrap()
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    common::json_ids(v)
}

fn build(family: &str, extra: serde_json::Value) -> Model {
    let g = gpu();
    let mut config = serde_json::json!({"model": format!("{FAMILIES}/{family}")});
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    let (cfg, files) = resolve_config(config).unwrap();
    Model::build(cfg, files, g.ctx.clone(), g.pipelines.clone()).unwrap()
}

fn hf_logits(family: &str) -> Vec<f32> {
    hf_tensor(family, "logits")
}

fn hf_tensor(family: &str, name: &str) -> Vec<f32> {
    common::safetensors_f32(&format!("{FAMILIES}/{family}/logits.safetensors"), name)
}

#[test]
fn directories_decide_the_architecture() {
    let (cfg, _) =
        resolve_config(serde_json::json!({"model": format!("{FAMILIES}/llama")})).unwrap();
    assert_eq!(cfg.architecture, wgformer::config::Family::Llama);
    assert_eq!((cfg.n_head, cfg.kv_heads(), cfg.head_size()), (4, 2, 16));
    assert_eq!(
        (cfg.n_embed, cfg.ffn_hidden(), cfg.vocab_size),
        (64, 96, 300)
    );
    assert!(!cfg.tie_word_embeddings && !cfg.bias);
    assert!(matches!(
        cfg.rope_scaling,
        wgformer::config::RopeScaling::Llama3 { .. }
    ));
    let (cfg, _) =
        resolve_config(serde_json::json!({"model": format!("{FAMILIES}/qwen2")})).unwrap();
    assert!(cfg.has_qkv_bias() && !cfg.has_o_bias() && cfg.tie_word_embeddings);
    assert_eq!(
        cfg.rope_scaling,
        wgformer::config::RopeScaling::Linear { factor: 2.0 }
    );
    let (cfg, _) =
        resolve_config(serde_json::json!({"model": format!("{FAMILIES}/mistral")})).unwrap();
    assert_eq!((cfg.sliding_window, cfg.kv_heads()), (Some(8), 1));
    assert_eq!(cfg.rope_theta, 500.0);
    let (cfg, _) =
        resolve_config(serde_json::json!({"model": format!("{FAMILIES}/mixtral")})).unwrap();
    assert!(cfg.use_moe && cfg.moe_norm_topk_prob);
    assert_eq!(
        (cfg.moe_num_experts, cfg.moe_top_k, cfg.moe_hidden()),
        (4, 2, 96)
    );
    assert!((0..2).all(|l| cfg.is_moe_layer(l)));
    let (cfg, _) =
        resolve_config(serde_json::json!({"model": format!("{FAMILIES}/qwen2_moe")})).unwrap();
    assert!(cfg.use_moe && !cfg.moe_norm_topk_prob && cfg.has_qkv_bias());
    assert_eq!(
        (cfg.moe_hidden(), cfg.moe_shared_expert_size),
        (32, Some(48))
    );
    assert!(
        cfg.is_moe_layer(0) && !cfg.is_moe_layer(1),
        "mlp_only_layers [1]"
    );
    // Gemma 2: its soft caps, layers alternating windowed and global, one rotary base
    let (cfg, _) =
        resolve_config(serde_json::json!({"model": format!("{FAMILIES}/gemma2")})).unwrap();
    assert_eq!(cfg.architecture, wgformer::config::Family::Gemma2);
    assert_eq!(
        (cfg.attn_logit_softcapping, cfg.final_logit_softcapping),
        (Some(0.02), Some(0.5))
    );
    assert_eq!((cfg.heads().softcap, cfg.sliding_window), (0.02, Some(8)));
    assert!(cfg.windowed_layer(0) && !cfg.windowed_layer(1) && cfg.windowed_layer(2));
    assert_eq!(
        (cfg.rope_local_theta, cfg.query_pre_attn_scalar),
        (None, Some(24.0))
    );
    // Gemma 1: the legacy "gelu" read as the tanh approximation, no window, no caps
    let (cfg, _) =
        resolve_config(serde_json::json!({"model": format!("{FAMILIES}/gemma")})).unwrap();
    assert_eq!(cfg.architecture, wgformer::config::Family::Gemma);
    assert_eq!((cfg.n_head, cfg.kv_heads(), cfg.head_size()), (4, 1, 32));
    assert_eq!(cfg.heads().window, 0);
    assert_eq!(cfg.heads().softcap, 0.0);
    assert_eq!(cfg.embed_scale(), 8.0);
}

#[test]
fn tokenization_equals_auto_tokenizer() {
    for family in ALL {
        let m = meta(family);
        let dir = ModelDir::open(
            family,
            std::path::Path::new(&format!("{FAMILIES}/{family}")),
        )
        .unwrap();
        let tok = dir.load_tokenizer(1 << 20).unwrap().unwrap();
        let got = tok.encode(m["text"].as_str().unwrap()).unwrap();
        assert_eq!(got, ids(&m["input_ids"]), "{family}");
        // the BOS is added once, by the tokenizer or by add_bos_token, never twice
        let bos_first = got[0] == 0 && got[1] != 0;
        let no_bos = family.starts_with("qwen")
            || family.starts_with("glm")
            || ["granite", "smollm3", "starcoder2", "olmo2"].contains(&family);
        assert_eq!(bos_first, !no_bos, "{family}");
        // the stop set: the tokenizer's eos and generation_config's eos ids
        let end = dir.end_ids(&tok);
        assert_eq!(
            end,
            if ["llama", "qwen3", "gemma3", "gemma2", "glm"].contains(&family) {
                vec![1, 2]
            } else {
                vec![1]
            },
            "{family}"
        );
    }
}

#[test]
fn logits_match_transformers_for_every_family() {
    for family in ALL {
        let want = hf_logits(family);
        let input = ids(&meta(family)["input_ids"]);
        for kernels in ["software", "hardware"] {
            let model = build(family, serde_json::json!({"kernels": kernels}));
            let got = model.forward_logits(&input).unwrap();
            assert_close(
                &format!("{family} logits vs transformers, {kernels} kernels"),
                &got,
                &want,
                1e-4,
                1e-4,
            );
        }
    }
}

#[test]
fn greedy_generation_equals_transformers_for_every_family() {
    for family in ALL {
        let m = meta(family);
        let (prompt, want) = (ids(&m["greedy_prompt"]), ids(&m["greedy_ids"]));
        for kernels in ["software", "hardware"] {
            let model = build(family, serde_json::json!({"kernels": kernels}));
            let got = common::greedy(&model, &prompt, want.len());
            assert_eq!(got, want, "{family}, {kernels} kernels");
        }
    }
}

/// Decode steps of `family`'s text (after a prompt of 3) against its forward's logits,
/// with both kernel classes and `extra` config keys.
fn steps_match_the_forward(family: &str, extra: serde_json::Value, tol: f64) {
    for kernels in ["software", "hardware"] {
        let mut config = extra.clone();
        config["kernels"] = kernels.into();
        let model = build(family, config);
        let all = ids(&meta(family)["input_ids"])[..20].to_vec();
        let v = model.config.vocab_size;
        let full = model.forward_logits(&all).unwrap();
        let mut s = model.kv_reserve(all.len()).unwrap().unwrap();
        model.extend(&mut s, &all[..3]).unwrap();
        for (i, &id) in all.iter().enumerate().skip(3) {
            let step = model.extend(&mut s, &[id]).unwrap();
            assert_close(
                &format!("{family} {extra} step {i}, {kernels}"),
                &step,
                &full[i * v..(i + 1) * v],
                tol,
                tol,
            );
        }
    }
}

#[test]
fn decode_steps_equal_the_forward_past_the_sliding_window() {
    // Mistral's window (8) is shorter than the text: the paged decode kernels mask
    // the keys the forward's kernels mask
    steps_match_the_forward("mistral", serde_json::json!({}), 1e-4);
    // Phi-3's window (8 in the fixture), its q/k/v and gate/up read from fused tensors
    steps_match_the_forward("phi3", serde_json::json!({}), 1e-4);
    // Gemma 3's windowed layers (8) between a global one, each with its rotary base,
    // the norms after attention and MLP; and into a half-float pool
    steps_match_the_forward("gemma3", serde_json::json!({}), 1e-4);
    let half = serde_json::json!({"kv_cache_dtype": "float16"});
    steps_match_the_forward("gemma3", half.clone(), 2e-2);
    // OLMo 2's blocks without pre-norms, its whole-width query and key norms storing
    // keys to either pool
    steps_match_the_forward("olmo2", serde_json::json!({}), 1e-4);
    steps_match_the_forward("olmo2", half.clone(), 2e-2);
    // Command R7B's windowed layers (8) and its global layer without positions
    steps_match_the_forward("cohere2", serde_json::json!({}), 1e-4);
    // StarCoder2's window (8) with its LayerNorms and GELU MLP, biases everywhere
    steps_match_the_forward("starcoder2", serde_json::json!({}), 1e-4);
    // Gemma 2's alternating layers, its scores and logits soft-capped on every path
    steps_match_the_forward("gemma2", serde_json::json!({}), 1e-4);
    steps_match_the_forward("gemma2", half, 2e-2);
    // SmolLM3's unrotated layer, on every path a decode step takes (the deferred
    // blocks with the hardware kernels)
    steps_match_the_forward("smollm3", serde_json::json!({}), 1e-4);
}

#[test]
fn longrope_takes_its_short_factors_within_the_original_context() {
    // Phi-4-mini's positions: with a context past the original 32 positions the
    // model takes longrope's long factors (the fixture's full text and greedy prompt,
    // which transformers computes with them: `logits_match_…`, `greedy_…`); within
    // it, the short factors, as transformers does for a text of 32 — on the forward,
    // and on decode steps (the partly rotated heads of every kernel path)
    let m = meta("phi4_mini");
    let short = m["short_context"].as_u64().unwrap() as usize;
    let input = ids(&m["input_ids"])[..short].to_vec();
    let want = hf_tensor("phi4_mini", "logits_short");
    let long = build("phi4_mini", serde_json::json!({}));
    assert_eq!(long.config.context_size, 128);
    let differs = long.forward_logits(&input).unwrap();
    let gap = differs
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(gap > 1e-3, "the long factors give other logits ({gap})");
    for kernels in ["software", "hardware"] {
        let config = serde_json::json!({"kernels": kernels, "context_size": short});
        let model = build("phi4_mini", config);
        let got = model.forward_logits(&input).unwrap();
        let name = format!("phi4_mini short factors, {kernels} kernels");
        assert_close(&name, &got, &want, 1e-4, 1e-4);
    }
    steps_match_the_forward(
        "phi4_mini",
        serde_json::json!({"context_size": short}),
        1e-4,
    );
    steps_match_the_forward("phi4_mini", serde_json::json!({}), 1e-4);
}

#[test]
fn qwen3_head_norms_store_keys_to_either_pool() {
    // the head norm's dispatch stores the normed, rotated keys: to an f32 pool (the
    // numbers of the forward, which reads them from qkv), and to a half-float pool,
    // whose rounding stays within its tolerance; with the deferred blocks and without
    for (kv, blocks, tol) in [
        ("float32", "auto", 1e-4),
        ("float16", "auto", 2e-2),
        ("float32", "per_linear", 1e-4),
    ] {
        let extra = serde_json::json!({"kv_cache_dtype": kv, "decode_blocks": blocks});
        steps_match_the_forward("qwen3", extra, tol);
    }
}

#[test]
fn float16_weights_stay_close() {
    let want = hf_logits("llama");
    let input = ids(&meta("llama")["input_ids"]);
    let model = build("llama", serde_json::json!({"dtype": "float16"}));
    let got = model.forward_logits(&input).unwrap();
    assert_close("llama float16 logits", &got, &want, 2e-2, 2e-2);
}

fn dir_error(files: &[(&str, &str)], copy: &[&str]) -> String {
    let d = std::env::temp_dir().join(format!(
        "wgformer-family-{}-{}",
        std::process::id(),
        files.first().map_or("none", |f| f.0).replace('/', "_")
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    for name in copy {
        std::fs::copy(format!("{FAMILIES}/llama/{name}"), d.join(name)).unwrap();
    }
    for (name, text) in files {
        std::fs::write(d.join(name), text).unwrap();
    }
    let access = wgformer::files::FileAccess::models_dir(Some(d.parent().unwrap())).unwrap();
    let name = d.file_name().unwrap().to_str().unwrap().to_string();
    let r =
        wgformer::model::resolve_config_with(serde_json::json!({"model": name}), &access, u64::MAX);
    let e = match r {
        Ok(_) => String::from("no error"),
        Err(e) => {
            assert_eq!(e.code(), "CONFIG_ERROR", "{e}");
            e.to_string()
        }
    };
    assert!(
        !e.contains(d.parent().unwrap().to_str().unwrap()),
        "a server path in {e}"
    );
    let _ = std::fs::remove_dir_all(&d);
    e
}

#[test]
fn bad_directories_get_errors_naming_the_problem() {
    let shards = [
        "model.safetensors.index.json",
        "model-00001-of-00003.safetensors",
        "model-00002-of-00003.safetensors",
        "model-00003-of-00003.safetensors",
    ];
    let e = dir_error(
        &[(
            "config.json",
            r#"{"architectures": ["GPTNeoXForCausalLM"]}"#,
        )],
        &[],
    );
    assert!(
        e.contains("GPTNeoXForCausalLM") && e.contains("LlamaForCausalLM"),
        "{e}"
    );
    let e = dir_error(&[("config.json", "{not json")], &[]);
    assert!(
        e.contains("config.json") && e.contains("not valid JSON"),
        "{e}"
    );
    let e = dir_error(&[], &shards);
    assert!(e.contains("config.json is missing"), "{e}");
    let config = std::fs::read_to_string(format!("{FAMILIES}/llama/config.json")).unwrap();
    let e = dir_error(&[("config.json", &config)], &[]);
    assert!(e.contains("has no weights"), "{e}");
    let e = dir_error(
        &[
            ("config.json", &config),
            (
                "model.safetensors.index.json",
                r#"{"weight_map": {"lm_head.weight": "../secret.safetensors"}}"#,
            ),
        ],
        &[],
    );
    assert!(e.contains("not a file inside the model directory"), "{e}");
    // a tensor missing, and one of the wrong shape: the build names it
    let g = gpu();
    for (edit, want) in [
        (
            config.replace("\"intermediate_size\": 96", "\"intermediate_size\": 128"),
            "mlp.gate_proj.weight has shape [96, 64], the config needs [128, 64]",
        ),
        (
            config.replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3"),
            "tensor model.layers.2.input_layernorm.weight is missing",
        ),
    ] {
        let d = std::env::temp_dir().join(format!("wgformer-family-shape-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        for name in shards {
            std::fs::copy(format!("{FAMILIES}/llama/{name}"), d.join(name)).unwrap();
        }
        std::fs::write(d.join("config.json"), edit).unwrap();
        let (cfg, files) =
            resolve_config(serde_json::json!({"model": d.to_str().unwrap()})).unwrap();
        assert!(matches!(files, Some(WeightFiles::Directory(_))));
        let e = Model::build(cfg, files, g.ctx.clone(), g.pipelines.clone())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains(want), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }
    // a v1 key that contradicts the directory names both values
    let e = resolve_config(serde_json::json!({"model": format!("{FAMILIES}/llama"), "n_layer": 3}))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("n_layer (3)") && e.contains("(2)"), "{e}");
}

#[test]
fn seeded_llama_models_build_and_decode_like_their_forward() {
    let g = gpu();
    // (a family's fixture directory is named as its architecture)
    for dir in ALL {
        let arch = if dir == "phi4_mini" { "phi3" } else { dir };
        let mut value = serde_json::json!({
            "architecture": arch, "vocab_size": 128, "context_size": 32, "n_layer": 2,
            "n_head": 4, "n_kv_head": 2, "n_embed": 64, "intermediate_size": 96,
            "sliding_window": if arch == "mistral" { serde_json::json!(5) } else { serde_json::Value::Null },
            "tie_word_embeddings": arch != "mistral", "seed": 3,
            "moe_num_experts": 4, "moe_top_k": 2,
        });
        if arch.ends_with("_moe") {
            value["moe_intermediate_size"] = 32.into();
            value["moe_mlp_only_layers"] = serde_json::json!([1]);
        }
        if arch == "qwen2_moe" {
            value["moe_shared_expert_size"] = 48.into();
        }
        if arch == "starcoder2" {
            // biases on every linear and LayerNorm
            value["bias"] = true.into();
        }
        if arch == "gemma2" {
            // caps these small seeded weights reach
            value["attn_logit_softcapping"] = 0.01.into();
            value["final_logit_softcapping"] = 0.05.into();
        }
        if dir == "phi4_mini" {
            // 12 of 16 dimensions rotated, longrope's long factors (32 > 16 positions)
            value["partial_rotary_factor"] = 0.75.into();
            value["rope_scaling"] = serde_json::json!({"rope_type": "longrope",
                "short_factor": [1.0, 1.1, 1.2, 1.3, 1.4, 1.5],
                "long_factor": [2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
                "original_max_position_embeddings": 16, "attention_factor": 1.2});
        }
        let cfg = wgformer::ModelConfig::from_value(value).unwrap();
        assert_eq!(
            cfg.use_moe,
            arch.ends_with("moe") || arch == "mixtral",
            "{arch}"
        );
        assert_eq!(cfg.moe_norm_topk_prob, !arch.ends_with("_moe"), "{arch}");
        let m = Model::build(cfg, None, g.ctx.clone(), g.pipelines.clone()).unwrap();
        let all: Vec<u32> = (0..12).map(|i| (i * 7 + 3) % 128).collect();
        let full = m.forward_logits(&all).unwrap();
        let mut s = m.kv_reserve(all.len()).unwrap().unwrap();
        let mut last = m.extend(&mut s, &all[..4]).unwrap();
        for &id in &all[4..] {
            last = m.extend(&mut s, &[id]).unwrap();
        }
        assert_close(
            &format!("seeded {arch}"),
            &last,
            &full[11 * 128..],
            1e-4,
            1e-4,
        );
        assert!(m.parameter_count > 0);
    }
}

#[test]
fn heads_of_256_decode_like_their_forward() {
    // Gemma's head size: every attention kernel's wide pipeline (the forward's, a
    // prefill chunk's, the decode step's; the deferred blocks take heads of up to 128,
    // their attention_proj's wide pipeline is tested in `partials`), with grouped heads
    // and a head norm, on both kernel classes and either pool
    let g = gpu();
    for (arch, kernels, kv) in [
        ("llama", "software", "float32"),
        ("llama", "hardware", "float16"),
        ("qwen3", "hardware", "float32"),
        ("qwen3", "software", "float16"),
    ] {
        let value = serde_json::json!({
            "architecture": arch, "vocab_size": 128, "context_size": 32, "n_layer": 2,
            "n_head": 4, "n_kv_head": 2, "n_embed": 64, "head_dim": 256,
            "intermediate_size": 96, "seed": 5, "kernels": kernels, "kv_cache_dtype": kv,
        });
        let cfg = wgformer::ModelConfig::from_value(value).unwrap();
        let m = Model::build(cfg, None, g.ctx.clone(), g.pipelines.clone()).unwrap();
        let all: Vec<u32> = (0..12).map(|i| (i * 5 + 1) % 128).collect();
        let full = m.forward_logits(&all).unwrap();
        let mut s = m.kv_reserve(all.len()).unwrap().unwrap();
        m.extend(&mut s, &all[..4]).unwrap();
        for (i, &id) in all.iter().enumerate().skip(4) {
            let step = m.extend(&mut s, &[id]).unwrap();
            let tol = if kv == "float16" { 2e-2 } else { 1e-4 };
            let name = format!("{arch} heads of 256, {kernels}, {kv} pool, step {i}");
            assert_close(&name, &step, &full[i * 128..(i + 1) * 128], tol, tol);
        }
    }
}

#[test]
fn captures_work_for_a_windowed_grouped_query_model() {
    // the explorer's forward on Mistral: attention weights per query head, masked
    // outside the window, rows summing to 1; the logit lens's last layer is the
    // forward's own prediction; statistics per query head
    let model = build("mistral", serde_json::json!({}));
    let input = ids(&meta("mistral")["input_ids"])[..20].to_vec();
    let out = model.forward_captured(&input, 5, &[1], 3).unwrap();
    let (nh, t) = (model.config.n_head, input.len());
    let w = &out.attention[0];
    assert_eq!(w.len(), nh * t * t);
    for h in 0..nh {
        for i in 0..t {
            let row = &w[(h * t + i) * t..(h * t + i + 1) * t];
            let sum: f32 = row.iter().sum();
            assert!((sum - 1.0).abs() < 1e-4, "head {h} row {i} sums to {sum}");
            for (j, &p) in row.iter().enumerate() {
                if j > i || i - j >= 8 {
                    assert_eq!(p, 0.0, "head {h} query {i} key {j} is outside the window");
                }
            }
        }
    }
    let last = &out.logit_lens[1][t - 1];
    assert_eq!(last[0].token_id, out.output.top[0].token_id);
    let cap = out.output.capture.as_ref().unwrap();
    assert_eq!(cap.layers[0].attention_entropy.len(), nh);
}

#[test]
fn moe_captures_report_routing_in_the_moe_layers_only() {
    // Qwen2-MoE: layer 0 routes over 4 experts, layer 1 is dense (mlp_only_layers)
    let model = build("qwen2_moe", serde_json::json!({}));
    let input = ids(&meta("qwen2_moe")["input_ids"])[..16].to_vec();
    let out = model.forward_captured(&input, 3, &[], 0).unwrap();
    let cap = out.output.capture.unwrap();
    let moe = cap.layers[0].moe.as_ref().expect("layer 0 is MoE");
    assert!(cap.layers[1].moe.is_none(), "layer 1 is dense");
    let used: f32 = moe.expert_usage.iter().sum();
    assert!((used - 1.0).abs() < 1e-4, "usage shares sum to {used}");
}

/// Copy fixture directory `family` into `models` (a models directory).
#[test]
fn a_multimodal_gemma3_checkpoint_serves_its_language_model() {
    // Gemma 3 4B-27B are published as Gemma3ForConditionalGeneration: the language
    // model's config under text_config, its tensors under `language_model.model.` (as
    // published) or `model.language_model.` (as transformers 5 saves them), a vision
    // tower beside them, unread. The gemma3 fixture rewritten so: transformers' logits.
    let src = format!("{FAMILIES}/gemma3");
    let bytes = std::fs::read(format!("{src}/model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let text: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{src}/config.json")).unwrap())
            .unwrap();
    let want = hf_logits("gemma3");
    let input = ids(&meta("gemma3")["input_ids"]);
    for prefix in ["language_model.model.", "model.language_model."] {
        let dir = std::env::temp_dir().join(format!(
            "wgformer-gemma3-mm-{}-{}",
            prefix.len(),
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for f in [
            "tokenizer.json",
            "tokenizer_config.json",
            "generation_config.json",
        ] {
            std::fs::copy(format!("{src}/{f}"), dir.join(f)).unwrap();
        }
        let vision = vec![0u8; 4 * 8];
        let mut views: Vec<(String, safetensors::tensor::TensorView)> = st
            .tensors()
            .into_iter()
            .map(|(name, t)| (name.replacen("model.", prefix, 1), t))
            .collect();
        views.push((
            "vision_tower.vision_model.embeddings.patch_embedding.weight".into(),
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2, 4], &vision)
                .unwrap(),
        ));
        let out = safetensors::tensor::serialize(views, None).unwrap();
        std::fs::write(dir.join("model.safetensors"), out).unwrap();
        let mut text_config = text.clone();
        text_config.as_object_mut().unwrap().remove("architectures");
        let config = serde_json::json!({
            "architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
            "text_config": text_config, "eos_token_id": [1, 2],
            "vision_config": {"model_type": "siglip_vision_model", "hidden_size": 4},
        });
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        let (cfg, files) =
            resolve_config(serde_json::json!({"model": dir.to_str().unwrap()})).unwrap();
        assert_eq!(cfg.architecture, wgformer::config::Family::Gemma3);
        let g = gpu();
        let model = Model::build(cfg, files, g.ctx.clone(), g.pipelines.clone()).unwrap();
        let got = model.forward_logits(&input).unwrap();
        assert_close(&format!("gemma3 under {prefix}"), &got, &want, 1e-4, 1e-4);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn copy_family(models: &std::path::Path, family: &str) {
    let to = models.join(family);
    std::fs::create_dir_all(&to).unwrap();
    for f in std::fs::read_dir(format!("{FAMILIES}/{family}")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_default_context_fits_the_software_adapter() {
    // Gemma 3's heads of 256 with the default context of a directory (min(positions,
    // 4096)): llvmpipe's loop limit runs 338 positions, so on llvmpipe the default is
    // lowered to that and the model loads; a context the client asks for is refused
    // there, naming the limit; elsewhere both are the model's 4096
    use common::http::*;
    use serde_json::json;
    let models = std::env::temp_dir().join(format!("wgformer-fit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&models);
    copy_family(&models, "gemma3");
    let cfg_path = models.join("gemma3/config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["max_position_embeddings"] = 8192.into();
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let s = Server::with_models(&models).await;
    let llvmpipe = gpu().ctx.details.is_llvmpipe();
    let (code, body) = init(&s, &json!({"model": "gemma3"})).await;
    assert_eq!(code, 200, "{body}");
    let (_, list) = get(&s, "/v1/models").await;
    let want = if llvmpipe { 338 } else { 4096 };
    assert_eq!(list["data"][0]["max_model_len"], want, "{list}");
    let (code, body) = init(&s, &json!({"model": "gemma3", "context_size": 4096})).await;
    if llvmpipe {
        assert_error(code, &body, 400, "CONFIG_ERROR");
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("at most 338 positions"),
            "{body}"
        );
    } else {
        assert_eq!(code, 200, "{body}");
    }
    let _ = std::fs::remove_dir_all(&models);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_model_directory_serves_over_http_and_stops_at_its_eos() {
    use common::http::*;
    use serde_json::json;
    let models = std::env::temp_dir().join(format!("wgformer-models-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&models);
    copy_family(&models, "mixtral");
    copy_family(&models, "llama");
    let s = Server::with_models(&models).await;
    // errors name the directory as the client gave it, never the server's path
    for (name, want) in [
        ("nothing-here", "is not available"),
        ("../mixtral", "is not available"),
        // inside the directory once resolved, but `..` is refused by its own rule
        ("llama/../mixtral", "is not available"),
        ("llama/config.json", "is not available"),
    ] {
        let (code, body) = init(&s, &json!({"model": name})).await;
        assert_error(code, &body, 400, "CONFIG_ERROR");
        let d = body["detail"].as_str().unwrap();
        assert!(d.contains(want), "{name}: {d}");
        assert!(!d.contains(models.to_str().unwrap()), "server path in {d}");
    }
    let (code, body) = init(&s, &json!({"model": "mixtral", "n_layer": 3})).await;
    assert_error(code, &body, 400, "CONFIG_ERROR");
    assert!(
        body["detail"].as_str().unwrap().contains("n_layer (3)"),
        "{body}"
    );

    let (code, body) = init(&s, &json!({"model": "mixtral"})).await;
    assert_eq!(code, 200, "{body}");
    let (_, status) = get(&s, "/api/v1/status").await;
    assert_eq!(status["config"]["architecture"], "mixtral", "{status}");
    assert_eq!(status["config"]["moe_num_experts"], 4);
    let (_, models_list) = get(&s, "/v1/models").await;
    assert_eq!(models_list["data"][0]["id"], "mixtral", "{models_list}");
    // the explorer's forward: weights per query head, the shared key/value heads
    // named, routing statistics per MoE layer
    let (code, r) = forward(
        &s,
        json!({"text": "Tiny models", "capture_data": true, "capture_attention": {"layers": [1]}}),
    )
    .await;
    assert_eq!(code, 200, "{r}");
    let layer = &r["captured_data"]["layers"][1];
    assert_eq!(layer["attention"]["n_kv_head"], 2, "{layer}");
    assert_eq!(layer["attention"]["attn_weights_shape"][1], 4);
    assert_eq!(
        layer["moe"]["expert_usage"].as_array().unwrap().len(),
        4,
        "{layer}"
    );

    // the fixture's greedy continuation reaches the eos id (1) after 9 tokens: the
    // completion stops there with finish_reason stop
    let m = meta("mixtral");
    let dir = ModelDir::open("mixtral", &models.join("mixtral")).unwrap();
    let tok = dir.load_tokenizer(1 << 20).unwrap().unwrap();
    let prompt_ids = ids(&m["greedy_prompt"]);
    let prompt = tok.decode(&prompt_ids[1..]).unwrap();
    assert_eq!(
        tok.encode(&prompt).unwrap(),
        prompt_ids,
        "the prompt round-trips"
    );
    let greedy = ids(&m["greedy_ids"]);
    let eos_at = greedy.iter().position(|&t| t == 1).unwrap();
    let (code, body) = post(
        &s,
        "/v1/completions",
        json!({"prompt": prompt, "max_tokens": 12, "temperature": 0}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "stop", "{body}");
    assert_eq!(
        choice["text"].as_str().unwrap(),
        tok.decode(&greedy[..eos_at]).unwrap()
    );
    assert_eq!(body["usage"]["prompt_tokens"], prompt_ids.len());
    std::fs::remove_dir_all(&models).ok();
}

#[test]
fn the_explorer_presets_are_valid_configs() {
    // every preset of the explorer's model list, the family ones included, is a config
    // the service accepts
    let page = include_str!("../../src/server/explorer.html");
    let mut n = 0;
    for part in page.split("<option value='").skip(1) {
        let value = &part[..part.find('\'').unwrap()];
        let v: serde_json::Value = serde_json::from_str(value).unwrap();
        wgformer::ModelConfig::from_value(v).unwrap_or_else(|e| panic!("{value}: {e}"));
        n += 1;
    }
    assert!(n >= 6, "{n} presets");
}

#[test]
fn a_family_decode_row_is_the_same_alone_and_batched() {
    // grouped-query heads, a window, SwiGLU experts grouped per expert across the
    // batch's rows: row 0's logits are bit for bit the same in batches of 1 to 6
    use wgformer::model::ServeShape;
    let g = gpu();
    for family in ["mistral", "mixtral", "qwen2_moe", "qwen3", "qwen3_moe"] {
        let (cfg, files) =
            resolve_config(serde_json::json!({"model": format!("{FAMILIES}/{family}")})).unwrap();
        let shape = ServeShape::for_generations(&cfg, 8, 8);
        let model =
            Model::build_with(cfg, files, g.ctx.clone(), g.pipelines.clone(), shape).unwrap();
        let text = ids(&meta(family)["input_ids"]);
        let prompt = |i: usize| -> Vec<u32> {
            let n = if i == 0 { 11 } else { 2 + (i * 5) % 13 };
            text[i..i + n].to_vec()
        };
        let run = |b: usize| common::first_row_bits(&model, b, 4, prompt);
        let alone = run(1);
        for b in 2..=6 {
            assert!(
                run(b) == alone,
                "{family}: row 0 in a batch of {b} differs from alone"
            );
        }
    }
}

#[test]
fn a_gpt2_directory_loads_as_its_checkpoint_does() {
    // GPT2LMHeadModel as a directory: config.json decides n_head (a bare checkpoint
    // cannot say it), the logits are transformers' own
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hf-gpt2-tiny");
    let g = gpu();
    let (cfg, files) = resolve_config(serde_json::json!({"model": dir})).unwrap();
    assert_eq!(cfg.architecture, wgformer::config::Family::Gpt2);
    assert_eq!(
        (cfg.n_head, cfg.n_embed, cfg.context_size, cfg.vocab_size),
        (4, 64, 64, 256)
    );
    assert!(cfg.bias && cfg.tie_word_embeddings);
    let model = Model::build(cfg, files, g.ctx.clone(), g.pipelines.clone()).unwrap();
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/fixture.json")).unwrap())
            .unwrap();
    let got = model.forward_logits(&ids(&m["input_ids"])).unwrap();
    let want = common::safetensors_f32(&format!("{dir}/logits.safetensors"), "logits");
    assert_close("gpt2 directory logits", &got, &want, 1e-4, 1e-4);
}

#[test]
fn per_token_loss_matches_transformers_for_every_family() {
    // each position's actual next token: its log-probability and rank under the
    // model, computed on the device, against transformers' logits of the same text;
    // with the logit lens, the last layer's ranks are the final ones
    use wgformer::reference::token_rank::token_rank;
    for family in ALL {
        let want = hf_logits(family);
        let input = ids(&meta(family)["input_ids"]);
        let model = build(family, serde_json::json!({}));
        let (t, v) = (input.len(), model.config.vocab_size);
        for lens in [0, 3] {
            let out = model.forward_captured(&input, 1, &[], lens).unwrap();
            let layers = if lens > 0 { model.config.n_layer } else { 1 };
            assert_eq!(out.next_token_ranks.len(), layers);
            let last = out.next_token_ranks.last().unwrap();
            assert_eq!(last.len(), t - 1);
            let mut ranks_differ = 0;
            for (i, &(rank, lp)) in last.iter().enumerate() {
                let row = &want[i * v..(i + 1) * v];
                let (want_rank, want_lp) = token_rank(row, input[i + 1] as usize);
                assert!(
                    (lp as f64 - want_lp).abs() < 1e-3,
                    "{family} position {i}: logprob {lp} vs transformers {want_lp}"
                );
                // a near tie may order differently at 1e-5 of the logits' rounding
                if rank != want_rank {
                    ranks_differ += 1;
                }
            }
            assert!(ranks_differ <= 1, "{family}: {ranks_differ} ranks differ");
            if lens > 0 {
                // a rank-0 token under the lens is that layer's lens top-1
                for (l, layer) in out.next_token_ranks.iter().enumerate() {
                    for (i, &(rank, _)) in layer.iter().enumerate() {
                        let top = out.logit_lens[l][i][0].token_id;
                        assert_eq!(
                            rank == 0,
                            top == input[i + 1],
                            "{family} layer {l} position {i}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn moe_routing_per_token_is_what_the_layer_combined() {
    // each token's experts (distinct, most likely first) and gate weights: renormalised
    // to 1 for Mixtral, raw softmax shares (below 1) for Qwen2-MoE without
    // norm_topk_prob; counted over the tokens they are the layer's expert usage
    for (family, renorm) in [("mixtral", true), ("qwen2_moe", false)] {
        let model = build(family, serde_json::json!({}));
        let (e, k) = (model.config.moe_num_experts, model.config.moe_top_k);
        let input = ids(&meta(family)["input_ids"])[..21].to_vec();
        let out = model.forward_captured(&input, 3, &[], 0).unwrap();
        let cap = out.output.capture.unwrap();
        for layer in cap.layers.iter().filter(|l| l.moe.is_some()) {
            let moe = layer.moe.as_ref().unwrap();
            assert_eq!(moe.routing.len(), input.len(), "{family}");
            let mut counts = vec![0usize; e];
            for (tok, picks) in moe.routing.iter().enumerate() {
                assert_eq!(picks.len(), k);
                let sum: f32 = picks.iter().map(|p| p.1).sum();
                if renorm {
                    assert!((sum - 1.0).abs() < 1e-5, "{family} token {tok}: {sum}");
                } else {
                    assert!(sum > 0.0 && sum < 1.0, "{family} token {tok}: {sum}");
                }
                for w in picks.windows(2) {
                    assert!(w[0].1 >= w[1].1 && w[0].0 != w[1].0, "{family} {picks:?}");
                }
                for &(x, _) in picks {
                    counts[x as usize] += 1;
                }
            }
            let n = (input.len() * k) as f32;
            for (x, &c) in counts.iter().enumerate() {
                assert!(
                    (c as f32 / n - moe.expert_usage[x]).abs() < 1e-6,
                    "{family} layer {} expert {x}",
                    layer.layer_idx
                );
            }
        }
    }
}

#[test]
fn embeddings_are_the_last_hidden_state_transformers_computes() {
    // Qwen3's fixture (Qwen3-Embedding is a Qwen3 model): the last position's hidden
    // state after the final norm (what the LM head reads), with both kernel classes;
    // a text's the same alone and beside others in one traversal
    let want = hf_tensor("qwen3", "last_hidden");
    let input = ids(&meta("qwen3")["input_ids"]);
    for kernels in ["software", "hardware"] {
        let model = build("qwen3", serde_json::json!({"kernels": kernels}));
        let got = model.embed_many(&[&input]).unwrap().remove(0);
        assert_close(
            &format!("qwen3 last hidden vs transformers, {kernels}"),
            &got,
            &want,
            1e-4,
            1e-4,
        );
        let short = &input[..9];
        let together = model.embed_many(&[short, &input, &input[..30]]).unwrap();
        let alone = model.embed_many(&[short]).unwrap().remove(0);
        assert_eq!(together.len(), 3);
        assert_eq!(together[0], alone, "{kernels}: alone and shared");
        assert_eq!(together[1], got, "{kernels}: alone and shared");
    }
    // too many texts, too long, empty: refused
    let model = build("qwen3", serde_json::json!({}));
    let many: Vec<&[u32]> = (0..=wgformer::model::MAX_PREFILL_PARTS)
        .map(|_| &input[..2])
        .collect();
    assert!(model.embed_many(&many).is_err());
    assert!(model.embed_many(&[]).is_err());
    assert!(model.embed_many(&[&[]]).is_err());
}

/// The qwen3 fixture rewritten as a base model's checkpoint at `dir`: its tensors
/// without `model.`, `architectures` `arch`, the head tied or not.
fn base_model_dir(dir: &std::path::Path, arch: &str, tied: bool) {
    let src = format!("{FAMILIES}/qwen3");
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    for f in [
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ] {
        std::fs::copy(format!("{src}/{f}"), dir.join(f)).unwrap();
    }
    let bytes = std::fs::read(format!("{src}/model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let views: Vec<(String, safetensors::tensor::TensorView)> = st
        .tensors()
        .into_iter()
        .map(|(name, t)| (name.trim_start_matches("model.").to_string(), t))
        .collect();
    assert!(
        views.iter().all(|(n, _)| n != "lm_head.weight"),
        "tied fixture"
    );
    let out = safetensors::tensor::serialize(views, None).unwrap();
    std::fs::write(dir.join("model.safetensors"), out).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{src}/config.json")).unwrap())
            .unwrap();
    config["architectures"] = serde_json::json!([arch]);
    config["tie_word_embeddings"] = tied.into();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
}

#[test]
fn a_base_model_checkpoint_serves_embeddings() {
    // A base model's checkpoint (`Qwen3Model`: tensors without `model.`, no LM head):
    // untied, it has no head, so it embeds and refuses what needs the head; tied (the
    // embedding is its head), it is the causal model it was. Embeddings and logits:
    // transformers'.
    let want = hf_tensor("qwen3", "last_hidden");
    let input = ids(&meta("qwen3")["input_ids"]);
    let g = gpu();
    for (arch, tied) in [("Qwen3Model", false), ("Qwen3ForCausalLM", true)] {
        let dir = std::env::temp_dir().join(format!("wgformer-base-{arch}-{}", std::process::id()));
        base_model_dir(&dir, arch, tied);
        let (cfg, files) =
            resolve_config(serde_json::json!({"model": dir.to_str().unwrap()})).unwrap();
        assert_eq!(cfg.architecture, wgformer::config::Family::Qwen3);
        let model = Model::build(cfg, files, g.ctx.clone(), g.pipelines.clone()).unwrap();
        assert_eq!(model.headless, !tied, "{arch}");
        let got = model.embed_many(&[&input]).unwrap().remove(0);
        assert_close(&format!("{arch} embedding"), &got, &want, 1e-4, 1e-4);
        if tied {
            model.check_head().unwrap();
            let logits = model.forward_logits(&input).unwrap();
            assert_close(
                &format!("{arch} logits"),
                &logits,
                &hf_logits("qwen3"),
                1e-4,
                1e-4,
            );
        } else {
            let e = model.check_head().unwrap_err().to_string();
            assert!(e.contains("/v1/embeddings only"), "{e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_headless_model_answers_embeddings_and_refuses_generation() {
    use common::http::*;
    use serde_json::json;
    let models = std::env::temp_dir().join(format!("wgformer-headless-{}", std::process::id()));
    base_model_dir(&models.join("embedder"), "Qwen3Model", false);
    let s = Server::with_models(&models).await;
    let (code, body) = init(&s, &json!({"model": "embedder"})).await;
    assert_eq!(code, 200, "{body}");
    let text = meta("qwen3")["text"].as_str().unwrap().to_string();
    let (code, v) = post(&s, "/v1/embeddings", json!({"input": [text, "short"]})).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["model"], "embedder");
    // the fixture's last hidden state, normalised
    let want = hf_tensor("qwen3", "last_hidden");
    let norm = want.iter().map(|x| x * x).sum::<f32>().sqrt();
    let got: Vec<f32> = v["data"][0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    let want: Vec<f32> = want.iter().map(|x| x / norm).collect();
    assert_close("embedder over http", &got, &want, 1e-4, 1e-4);
    for (path, body) in [
        ("/v1/completions", json!({"prompt": "hi", "max_tokens": 2})),
        (
            "/api/v1/generate",
            json!({"text": "hi", "max_new_tokens": 2}),
        ),
        ("/api/v1/forward", json!({"text": "hi"})),
    ] {
        let (code, e) = post(&s, path, body).await;
        assert_eq!(code, 400, "{path}: {e}");
        assert!(e.to_string().contains("/v1/embeddings only"), "{path}: {e}");
    }
    let _ = std::fs::remove_dir_all(&models);
}
