//! Whole-model golden tests: the device forward against the CPU reference forward,
//! the seeded init, chunked embeddings, checkpoint round trips and bad input.

use crate::common;

use std::sync::Arc;

use common::{assert_close, gpu, new_gpu};
use wgformer::config::ModelConfig;
use wgformer::model::source::{host_weights, WeightSource};
use wgformer::model::{resolve_config, Model};
use wgformer::reference;

fn small(extra: serde_json::Value) -> ModelConfig {
    let mut v = serde_json::json!({
        "vocab_size": 97, "context_size": 40, "n_layer": 2, "n_head": 4, "n_embed": 32, "seed": 7
    });
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    ModelConfig::from_value(v).unwrap()
}

fn ids(n: usize, vocab: u32) -> Vec<u32> {
    (0..n as u32).map(|i| (i * 31 + 5) % vocab).collect()
}

fn check_against_reference(cfg: ModelConfig, binding_cap: Option<u64>, t: usize) {
    let g = binding_cap.map(|cap| new_gpu(Some(cap)));
    let (ctx, pl) = match &g {
        Some(g) => (g.ctx.clone(), g.pipelines.clone()),
        None => (gpu().ctx.clone(), gpu().pipelines.clone()),
    };
    let model = Model::build(cfg.clone(), None, ctx, pl).unwrap();
    let ids = ids(t, cfg.vocab_size as u32);
    let got = model.forward_logits(&ids).unwrap();
    let mut w = host_weights(&cfg, &WeightSource::Seeded(cfg.seed)).unwrap();
    if cfg.dtype == wgformer::config::Dtype::Float16 {
        // the reference computes with the same half-precision weights
        for (name, values) in w.iter_mut() {
            if wgformer::model::weights::stored_as_f16(name) {
                *values = wgformer::gpu::f16::round_to_f16(values);
            }
        }
    }
    let want = reference::model::forward(&cfg, &w, &ids);
    assert_close(&format!("logits {cfg:?}"), &got, &want, 1e-4, 1e-4);
    // top-k of the last row agrees with the reference softmax
    let out = model.forward(&ids, 5, true).unwrap();
    let v = cfg.vocab_size;
    let last = &want[(t - 1) * v..];
    let ref_top = wgformer::model::logits::top_k_softmax(last, 5);
    assert_eq!(
        out.top.iter().map(|p| p.token_id).collect::<Vec<_>>(),
        ref_top.iter().map(|p| p.token_id).collect::<Vec<_>>()
    );
    for (a, b) in out.top.iter().zip(&ref_top) {
        assert!((a.probability - b.probability).abs() < 1e-5);
    }
    // a plain forward runs the LM head over its last row only: the same top-k
    let plain = model.forward(&ids, 5, false).unwrap();
    assert_eq!(
        plain.top.iter().map(|p| p.token_id).collect::<Vec<_>>(),
        ref_top.iter().map(|p| p.token_id).collect::<Vec<_>>()
    );
    for (a, b) in plain.top.iter().zip(&ref_top) {
        assert!((a.probability - b.probability).abs() < 1e-5, "{a:?} {b:?}");
    }
    let cap = out.capture.unwrap();
    assert_eq!(cap.layers.len(), cfg.n_layer);
    for l in &cap.layers {
        assert_eq!(l.attention_entropy.len(), cfg.n_head);
        for &e in &l.attention_entropy {
            // mean entropy over positions lies in [0, ln T]
            assert!(e >= -1e-5 && e <= (t as f32).ln() + 1e-4, "entropy {e}");
        }
        assert!(l.residual_norm_mean > 0.0 && l.residual_norm_max >= l.residual_norm_mean);
    }
}

#[test]
fn forward_matches_reference_small() {
    check_against_reference(small(serde_json::json!({})), None, 13);
}

#[test]
fn forward_matches_reference_one_token_and_full_context() {
    check_against_reference(small(serde_json::json!({})), None, 1);
    check_against_reference(small(serde_json::json!({})), None, 40);
}

#[test]
fn forward_matches_reference_without_bias() {
    check_against_reference(
        small(serde_json::json!({"bias": false, "ffn_hidden_multiplier": 3})),
        None,
        9,
    );
}

#[test]
fn forward_matches_reference_with_split_embedding() {
    // A 4 KiB binding cap splits wte (97 × 32 floats) and the logits into 4 windows.
    check_against_reference(small(serde_json::json!({"context_size": 8})), Some(4096), 8);
}

#[test]
fn same_config_and_seed_give_same_logits() {
    let g = gpu();
    let cfg = small(serde_json::json!({}));
    let a = Model::build(cfg.clone(), None, g.ctx.clone(), g.pipelines.clone()).unwrap();
    let b = Model::build(cfg.clone(), None, g.ctx.clone(), g.pipelines.clone()).unwrap();
    let other = small(serde_json::json!({"seed": 8}));
    let c = Model::build(other, None, g.ctx.clone(), g.pipelines.clone()).unwrap();
    let x = ids(10, 97);
    assert_eq!(a.forward_logits(&x).unwrap(), b.forward_logits(&x).unwrap());
    assert_ne!(a.forward_logits(&x).unwrap(), c.forward_logits(&x).unwrap());
}

#[test]
fn bad_ids_and_lengths_are_errors() {
    let g = gpu();
    let cfg = small(serde_json::json!({}));
    let m = Model::build(cfg, None, g.ctx.clone(), g.pipelines.clone()).unwrap();
    let e = m.forward(&[1, 2, 97], 5, false).unwrap_err();
    assert_eq!(e.code(), "INVALID_INPUT");
    assert!(e.to_string().contains("token 97"), "{e}");
    let e = m.forward(&ids(41, 97), 5, false).unwrap_err();
    assert_eq!(e.code(), "SEQUENCE_TOO_LONG");
    assert_eq!(
        e.to_string(),
        "input length 41 exceeds the model's maximum length 40"
    );
    assert_eq!(
        m.forward(&[], 5, false).unwrap_err().code(),
        "INVALID_INPUT"
    );
    // the model still serves afterwards
    assert_eq!(m.forward(&[1, 2, 3], 3, false).unwrap().top.len(), 3);
}

#[test]
fn checkpoint_round_trip_and_config_from_shapes() {
    let g = gpu();
    let cfg = small(serde_json::json!({}));
    let w = host_weights(&cfg, &WeightSource::Seeded(cfg.seed)).unwrap();
    let dir = std::env::temp_dir().join(format!("wgformer-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.safetensors");
    // Hugging Face layout: `transformer.` prefix, plus buffers that must be ignored.
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for spec in wgformer::model::weights::tensor_specs(&cfg) {
        let bytes = bytemuck::cast_slice(&w[&spec.name]).to_vec();
        tensors.push((
            format!("transformer.{}", spec.name),
            spec.shape.clone(),
            bytes,
        ));
    }
    tensors.push((
        "transformer.h.0.attn.bias".into(),
        vec![1, 1, 4, 4],
        vec![0u8; 64],
    ));
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &path).unwrap();

    // Only n_head given: the rest comes from the shapes.
    let (resolved, ckpt) =
        resolve_config(serde_json::json!({"checkpoint": path.to_str().unwrap(), "n_head": 4}))
            .unwrap();
    assert_eq!(
        (
            resolved.vocab_size,
            resolved.context_size,
            resolved.n_layer,
            resolved.n_embed
        ),
        (97, 40, 2, 32)
    );
    let from_file = Model::build(resolved, ckpt, g.ctx.clone(), g.pipelines.clone()).unwrap();
    let seeded = Model::build(cfg, None, g.ctx.clone(), g.pipelines.clone()).unwrap();
    let x = ids(11, 97);
    assert_eq!(
        from_file.forward_logits(&x).unwrap(),
        seeded.forward_logits(&x).unwrap()
    );

    // A given key that disagrees with the file is a clear error.
    let e = resolve_config(
        serde_json::json!({"checkpoint": path.to_str().unwrap(), "n_head": 4, "n_layer": 3}),
    )
    .err()
    .unwrap();
    assert!(
        e.to_string()
            .contains("n_layer (3) disagrees with the checkpoint (2)"),
        "{e}"
    );
    let e = resolve_config(serde_json::json!({"checkpoint": "/nonexistent.safetensors"}))
        .err()
        .unwrap();
    assert_eq!(e.code(), "CONFIG_ERROR");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn default_model_builds_with_exact_parameter_count() {
    // The full-size model: 124,475,904 parameters; the embedding (154 MB) is larger
    // than lavapipe's 128 MiB binding, so it is split.
    let g = gpu();
    let start = std::time::Instant::now();
    let m = Model::build(
        ModelConfig::default(),
        None,
        g.ctx.clone(),
        g.pipelines.clone(),
    )
    .unwrap();
    eprintln!(
        "default model built in {:.2}s",
        start.elapsed().as_secs_f64()
    );
    assert_eq!(m.parameter_count, 124_475_904);
    assert_eq!(m.parameter_bytes, 124_475_904 * 4);
    if g.ctx.max_binding_bytes() < 50304 * 768 * 4 {
        assert!(m.weights.wte.chunks.len() > 1);
    }
    let out = m.forward(&[464, 3290, 318], 5, true).unwrap();
    assert_eq!(out.top.len(), 5);
    let total: f32 = out.top.iter().map(|p| p.probability).sum();
    assert!(total > 0.0 && total <= 1.0 + 1e-5);
    let _ = Arc::strong_count(&m.ctx);
}

#[test]
fn sparse_attention_model_matches_reference() {
    // 40 tokens in blocks of 4: local window 2, 1 global block, stride 3
    let cfg = small(serde_json::json!({
        "use_sparse_attention": true, "sparse_block_size": 4, "sparse_local_blocks": 2,
        "sparse_global_blocks": 1, "sparse_stride": 3
    }));
    check_against_reference(cfg.clone(), None, 40);
    check_against_reference(cfg, None, 7);
}

#[test]
fn sparse_attention_generation_steps_match_forward() {
    let g = gpu();
    let cfg = small(
        serde_json::json!({"use_sparse_attention": true, "sparse_block_size": 4, "sparse_local_blocks": 1, "sparse_global_blocks": 1}),
    );
    let m = Model::build(cfg, None, g.ctx.clone(), g.pipelines.clone()).unwrap();
    let all = ids(20, 97);
    let mut s = m.kv_reserve(20).unwrap().unwrap();
    m.extend(&mut s, &all[..6]).unwrap();
    for n in 7..=20 {
        let step = m.extend(&mut s, &all[n - 1..n]).unwrap();
        let full = m.forward_logits(&all[..n]).unwrap();
        assert_close(
            &format!("sparse step {n}"),
            &step,
            &full[(n - 1) * 97..],
            1e-4,
            1e-4,
        );
    }
    let out = m.forward(&all, 1, true).unwrap();
    let l0 = &out.capture.unwrap().layers[0];
    assert_eq!(l0.sparse_block_size, Some(4));
    assert!(l0.sparse_density.unwrap() < 0.5);
}

#[test]
fn moe_model_matches_reference() {
    for extra in [
        serde_json::json!({"use_moe": true, "moe_num_experts": 4, "moe_top_k": 2}),
        serde_json::json!({"use_moe": true, "moe_num_experts": 6, "moe_top_k": 1, "moe_activation": "relu", "bias": false}),
        serde_json::json!({"use_moe": true, "moe_num_experts": 3, "moe_top_k": 3, "moe_activation": "silu",
                           "use_sparse_attention": true, "sparse_block_size": 4, "sparse_local_blocks": 2}),
    ] {
        let cfg = small(extra.clone());
        check_against_reference(cfg.clone(), None, 23);
        check_against_reference(cfg, None, 1);
    }
}

#[test]
fn moe_capture_and_generation() {
    let g = gpu();
    let cfg = small(
        serde_json::json!({"use_moe": true, "moe_num_experts": 4, "moe_top_k": 2, "use_sparse_attention": true, "sparse_block_size": 8}),
    );
    let m = Model::build(cfg.clone(), None, g.ctx.clone(), g.pipelines.clone()).unwrap();
    let all = ids(18, 97);
    let out = m.forward(&all, 3, true).unwrap();
    for l in out.capture.unwrap().layers {
        let moe = l.moe.unwrap();
        assert_eq!(moe.expert_usage.len(), 4);
        assert!((moe.expert_usage.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert!(moe.load_balance_loss >= 0.0 && moe.load_balance_loss <= 4.0 + 1e-4);
    }
    // incremental steps with MoE layers equal the full forward
    let mut s = m.kv_reserve(18).unwrap().unwrap();
    m.extend(&mut s, &all[..5]).unwrap();
    for n in 6..=18 {
        let step = m.extend(&mut s, &all[n - 1..n]).unwrap();
        let full = m.forward_logits(&all[..n]).unwrap();
        assert_close(
            &format!("moe step {n}"),
            &step,
            &full[(n - 1) * 97..],
            1e-4,
            1e-4,
        );
    }
    // parameter count includes router and experts
    let (c, h, e) = (32usize, 128usize, 4usize);
    let dense = small(serde_json::json!({})).parameter_count();
    let mlp = c * h + h + h * c + c;
    assert_eq!(cfg.parameter_count(), dense + 2 * (c * e + e * mlp - mlp));
}

#[test]
fn moe_checkpoint_round_trip() {
    let g = gpu();
    let cfg = small(serde_json::json!({"use_moe": true, "moe_num_experts": 5, "moe_top_k": 2}));
    let w = host_weights(&cfg, &WeightSource::Seeded(cfg.seed)).unwrap();
    let dir = std::env::temp_dir().join(format!("wgformer-moe-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("moe.safetensors");
    let specs = wgformer::model::weights::tensor_specs(&cfg);
    assert!(specs
        .iter()
        .any(|s| s.name == "h.0.mlp.experts.c_fc.weight" && s.shape == vec![5, 32, 128]));
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = specs
        .iter()
        .map(|s| {
            (
                s.name.clone(),
                s.shape.clone(),
                bytemuck::cast_slice(&w[&s.name]).to_vec(),
            )
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = bytes
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &path).unwrap();
    // use_moe and the number of experts come from the file
    let (resolved, ckpt) = resolve_config(
        serde_json::json!({"checkpoint": path.to_str().unwrap(), "n_head": 4, "moe_top_k": 2}),
    )
    .unwrap();
    assert!(resolved.use_moe);
    assert_eq!(resolved.moe_num_experts, 5);
    let a = Model::build(resolved, ckpt, g.ctx.clone(), g.pipelines.clone()).unwrap();
    let b = Model::build(cfg, None, g.ctx.clone(), g.pipelines.clone()).unwrap();
    let x = ids(9, 97);
    assert_eq!(a.forward_logits(&x).unwrap(), b.forward_logits(&x).unwrap());
    let e = resolve_config(serde_json::json!({"checkpoint": path.to_str().unwrap(), "n_head": 4, "moe_num_experts": 8})).err().unwrap();
    assert!(
        e.to_string().contains("moe_num_experts (8) disagrees"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn float16_weights_match_reference_and_halve_their_memory() {
    let g = gpu();
    let cfg = small(serde_json::json!({"dtype": "float16"}));
    check_against_reference(cfg.clone(), None, 17);
    check_against_reference(
        small(
            serde_json::json!({"dtype": "float16", "use_sparse_attention": true, "sparse_block_size": 8}),
        ),
        None,
        30,
    );
    let half = Model::build(cfg.clone(), None, g.ctx.clone(), g.pipelines.clone()).unwrap();
    let full = Model::build(
        small(serde_json::json!({})),
        None,
        g.ctx.clone(),
        g.pipelines.clone(),
    )
    .unwrap();
    assert_eq!(half.parameter_count, full.parameter_count);
    // wte (V·C) and 2 layers of (C·3C + C·C + C·H + H·C) weights at 2 bytes instead of 4
    let (v, c, h) = (97u64, 32u64, 128u64);
    assert_eq!(
        full.parameter_bytes - half.parameter_bytes,
        2 * (v * c + 2 * (c * 3 * c + c * c + c * h + h * c))
    );
    // decode steps with half weights equal the forward of the same model
    let all = ids(12, 97);
    let mut s = half.kv_reserve(12).unwrap().unwrap();
    half.extend(&mut s, &all[..4]).unwrap();
    for n in 5..=12 {
        let step = half.extend(&mut s, &all[n - 1..n]).unwrap();
        let fwd = half.forward_logits(&all[..n]).unwrap();
        assert_close(
            &format!("f16 step {n}"),
            &step,
            &fwd[(n - 1) * 97..],
            1e-4,
            1e-4,
        );
    }
    // half-float experts too
    check_against_reference(
        small(serde_json::json!({"dtype": "float16", "use_moe": true, "moe_num_experts": 4})),
        None,
        21,
    );
}

#[test]
fn forwards_sharing_a_traversal_equal_each_alone() {
    // Texts of different lengths run together (one traversal, one submission) give each
    // text's predictions bit for bit as alone: dense, block-sparse, MoE, half weights,
    // hardware kernels.
    let g = gpu();
    for extra in [
        serde_json::json!({}),
        serde_json::json!({"use_sparse_attention": true, "sparse_block_size": 8}),
        serde_json::json!({"use_moe": true, "moe_num_experts": 4, "moe_top_k": 2}),
        serde_json::json!({"dtype": "float16"}),
        serde_json::json!({"kernels": "hardware"}),
    ] {
        let cfg = small(extra.clone());
        let model = Model::build(cfg.clone(), None, g.ctx.clone(), g.pipelines.clone()).unwrap();
        let texts: Vec<Vec<u32>> = [1usize, 7, 13, 3, 9]
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                (0..n as u32)
                    .map(|j| (j * 13 + i as u32 * 29 + 1) % 97)
                    .collect()
            })
            .collect();
        let alone: Vec<_> = texts
            .iter()
            .map(|ids| model.forward(ids, 5, false).unwrap().top)
            .collect();
        let batch: Vec<(&[u32], usize)> = texts.iter().map(|ids| (ids.as_slice(), 5)).collect();
        let together = model.forward_many(&batch).unwrap();
        for (i, (a, t)) in alone.iter().zip(&together).enumerate() {
            assert_eq!(t.tokens, texts[i].len());
            assert_eq!(a, &t.top, "{extra}: text {i}");
        }
        // the shared forward is a traversal of 33 rows, not a 33-token sequence: the
        // context (40) bounds the rows, and 16 texts the dispatches
        let long = vec![1u32; 30];
        let too_long: Vec<(&[u32], usize)> = vec![(&long, 1), (&texts[2], 1)];
        assert!(model.forward_many(&too_long).is_err());
        let many: Vec<(&[u32], usize)> = (0..17).map(|_| (texts[0].as_slice(), 1)).collect();
        assert!(model.forward_many(&many).is_err());
        assert!(model.forward_many(&[]).is_err());
    }
}

#[test]
fn rows_are_the_same_whether_the_tiled_matmuls_split_k_or_not() {
    // The GPU-shaped linears split K across workgroups for steps of up to
    // SPLIT_MAX_ROWS rows and not beyond; the first rows of a long forward (whole K)
    // equal a short forward of those rows (split) bit for bit, f32 and half weights.
    let g = gpu();
    let long = wgformer::kernels::matmul::SPLIT_MAX_ROWS + 24;
    for dtype in ["float32", "float16"] {
        let cfg = small(serde_json::json!({
            "kernels": "hardware", "dtype": dtype, "n_embed": 64, "context_size": long
        }));
        let (c, v) = (cfg.n_embed, cfg.vocab_size);
        assert!(wgformer::kernels::matmul::k_slices(c, 4 * c).1 > 1);
        let m = Model::build(cfg, None, g.ctx.clone(), g.pipelines.clone()).unwrap();
        let all = ids(long, v as u32);
        let short = 24;
        let whole = m.forward_logits(&all).unwrap();
        let split = m.forward_logits(&all[..short]).unwrap();
        let differ = wgformer::reference::bits_differ(&split, &whole[..short * v]);
        assert_eq!(differ, 0, "{dtype}: {differ} logits differ");
    }
}

#[test]
fn long_sequence_decode_steps_match_forward() {
    // Decode steps at positions past 1,000 (a pool of well over a thousand rows per
    // layer) equal the forward's logits at those positions.
    let g = gpu();
    let cfg = small(serde_json::json!({"context_size": 1200, "n_head": 1, "n_embed": 64}));
    let m = Model::build(cfg, None, g.ctx.clone(), g.pipelines.clone()).unwrap();
    let all = ids(1103, 97);
    let mut s = m.kv_reserve(1103).unwrap().unwrap();
    m.extend(&mut s, &all[..1100]).unwrap();
    for n in 1101..=1103 {
        let step = m.extend(&mut s, &all[n - 1..n]).unwrap();
        let full = m.forward_logits(&all[..n]).unwrap();
        assert_close(
            &format!("step {n}"),
            &step,
            &full[(n - 1) * 97..],
            1e-3,
            1e-3,
        );
    }
    // the same step batched with short sequences (lanes of one workgroup walking 1,100
    // keys beside lanes walking a few) gives every row its logits alone
    let lens = [1usize, 17, 1103, 5, 33];
    let mut seqs: Vec<_> = lens
        .iter()
        .map(|&n| {
            let mut kv = m.kv_reserve(n + 1).unwrap().unwrap();
            m.extend(&mut kv, &all[..n]).unwrap();
            kv
        })
        .collect();
    let mut rows: Vec<_> = seqs.iter_mut().map(|kv| (kv, 7u32)).collect();
    let batched = m.decode(&mut rows).unwrap();
    for (&n, got) in lens.iter().zip(&batched) {
        let mut with = all[..n].to_vec();
        with.push(7);
        let full = m.forward_logits(&with).unwrap();
        assert_close(
            &format!("batched row at {n}"),
            got,
            &full[n * 97..],
            1e-3,
            1e-3,
        );
    }
}

#[test]
fn attention_weights_of_a_forward_are_what_its_attention_used() {
    // The weights captured in the pass are causal softmax rows (0 outside the listed
    // blocks of a block-sparse layer), and their entropy is the entropy the forward's
    // attention kernel measured on the same rows.
    let g = gpu();
    for extra in [
        serde_json::json!({}),
        serde_json::json!({"use_sparse_attention": true, "sparse_block_size": 4, "sparse_local_blocks": 1, "sparse_global_blocks": 1}),
        serde_json::json!({"kernels": "hardware"}),
    ] {
        let cfg = small(extra.clone());
        let (nh, nl) = (cfg.n_head, cfg.n_layer);
        let m = Model::build(cfg.clone(), None, g.ctx.clone(), g.pipelines.clone()).unwrap();
        let t = 19;
        let ids = ids(t, 97);
        let cf = m.forward_captured(&ids, 3, &[1, 0], 0).unwrap();
        let (out, weights) = (cf.output, cf.attention);
        assert_eq!(weights.len(), 2);
        // the logits are the forward's without weights
        assert_eq!(out.top, m.forward(&ids, 3, true).unwrap().top, "{extra}");
        let cap = out.capture.unwrap();
        for (w, layer) in weights.iter().zip([1, 0]) {
            assert_eq!(w.len(), nh * t * t);
            for h in 0..nh {
                let mut entropy = 0.0f64;
                for i in 0..t {
                    let row = &w[(h * t + i) * t..(h * t + i + 1) * t];
                    let sum: f32 = row.iter().sum();
                    assert!((sum - 1.0).abs() < 1e-5, "{extra}: row sums to {sum}");
                    for (j, &p) in row.iter().enumerate() {
                        let seen =
                            j <= i && m.sparse.as_ref().is_none_or(|s| s.layout.allows(i, j));
                        if !seen {
                            assert_eq!(p, 0.0, "{extra}: ({layer}, {h}, {i}, {j})");
                        }
                    }
                    entropy -= row
                        .iter()
                        .filter(|&&p| p > 0.0)
                        .map(|&p| p as f64 * (p as f64).ln())
                        .sum::<f64>();
                }
                let want = cap.layers[layer].attention_entropy[h] as f64;
                assert!(
                    (entropy / t as f64 - want).abs() < 1e-4,
                    "{extra}: layer {layer} head {h}: {} against {want}",
                    entropy / t as f64
                );
            }
        }
        assert!(m.forward_captured(&ids, 3, &[nl], 0).is_err());
    }
    // T x T is bounded
    let m = Model::build(
        small(serde_json::json!({"context_size": 300})),
        None,
        g.ctx.clone(),
        g.pipelines.clone(),
    )
    .unwrap();
    let err = m
        .forward_captured(&ids(257, 97), 1, &[0], 0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("256"), "{err}");
    assert!(m.forward_captured(&ids(256, 97), 1, &[0], 0).is_ok());
}

#[test]
fn logit_lens_last_layer_is_the_forward_and_chunks_merge() {
    // The lens of the last layer is the model's own next-token distribution at every
    // position (top-k ids and probabilities of the full logits), also when the LM head
    // is split over several wte chunks (a small binding limit); earlier layers give
    // probability-sorted lists.
    for cap in [None, Some(4096)] {
        let g = cap.map(|c| new_gpu(Some(c)));
        let (ctx, pl) = match &g {
            Some(g) => (g.ctx.clone(), g.pipelines.clone()),
            None => (gpu().ctx.clone(), gpu().pipelines.clone()),
        };
        // a 4 KiB binding cap splits wte (97 x 32 floats) and the logits into windows
        let cfg = small(serde_json::json!({"context_size": 8}));
        let (v, nl) = (cfg.vocab_size, cfg.n_layer);
        let m = Model::build(cfg, None, ctx, pl).unwrap();
        if cap.is_some() {
            assert!(
                m.weights.wte.chunks.len() > 1,
                "the binding limit splits wte"
            );
        }
        let t = 8;
        let ids = ids(t, 97);
        let k = 4;
        let cf = m.forward_captured(&ids, k, &[], k).unwrap();
        assert_eq!(cf.logit_lens.len(), nl);
        let logits = m.forward_logits(&ids).unwrap();
        for pos in 0..t {
            let want = wgformer::model::logits::top_k_softmax(&logits[pos * v..(pos + 1) * v], k);
            let got = &cf.logit_lens[nl - 1][pos];
            assert_eq!(
                got.iter().map(|p| p.token_id).collect::<Vec<_>>(),
                want.iter().map(|p| p.token_id).collect::<Vec<_>>(),
                "position {pos}"
            );
            for (a, b) in got.iter().zip(&want) {
                assert!((a.probability - b.probability).abs() < 1e-5, "{a:?} {b:?}");
            }
        }
        // top_predictions: the same tokens; probabilities to the rounding of the
        // normaliser (log-sum-exp in f32 on the device, the sum in f64 on the host)
        for (a, b) in cf.output.top.iter().zip(&cf.logit_lens[nl - 1][t - 1]) {
            assert_eq!(a.token_id, b.token_id);
            assert!((a.probability - b.probability).abs() <= 1e-6 * a.probability.max(1e-3));
        }
        for layer in &cf.logit_lens {
            assert_eq!(layer.len(), t);
            for tops in layer {
                assert_eq!(tops.len(), k);
                assert!(tops
                    .windows(2)
                    .all(|w| w[0].probability >= w[1].probability));
                let sum: f32 = tops.iter().map(|p| p.probability).sum();
                assert!(sum <= 1.0 + 1e-5 && tops[0].probability > 0.0);
            }
        }
    }
}

#[test]
fn decode_rows_read_back_their_logits_or_the_devices_argmax() {
    // A decode step gives each row what it asked for: its logits (bit for bit those of
    // a step reading every row's logits), or only the id of its largest logit, picked
    // on the device (the host's argmax of those logits), also with rows taken in
    // several windows and wte split over bindings (the windows' and chunks' bests
    // merged) and with the GPU-shaped kernels.
    use wgformer::model::sampling::argmax;
    use wgformer::model::{NextToken, Readback};
    for (cap, extra) in [
        (None, serde_json::json!({"context_size": 8})),
        // rows of 5,000 logits: the argmax takes them in 3 windows
        (
            None,
            serde_json::json!({"context_size": 8, "vocab_size": 5000}),
        ),
        (Some(8192), serde_json::json!({"context_size": 8})),
        (
            None,
            serde_json::json!({"context_size": 8, "kernels": "hardware", "dtype": "float16"}),
        ),
    ] {
        let g = cap.map(|c| new_gpu(Some(c)));
        let (ctx, pl) = match &g {
            Some(g) => (g.ctx.clone(), g.pipelines.clone()),
            None => (gpu().ctx.clone(), gpu().pipelines.clone()),
        };
        let cfg = small(extra.clone());
        let shape = wgformer::model::ServeShape::for_generations(&cfg, 12, 16);
        let m = Model::build_with(cfg, None, ctx, pl, shape).unwrap();
        if cap.is_some() {
            assert!(
                m.weights.wte.chunks.len() > 1,
                "the binding limit splits wte"
            );
        }
        // an 8 KiB binding cap splits wte (97 x 32 floats) and the logits into two
        // windows, and leaves room for 4 pages of keys and values: 2 generations a copy
        let lens: &[usize] = if cap.is_some() {
            &[3, 1]
        } else {
            &[3, 2, 1, 4, 2]
        };
        let want: Vec<Readback> = (0..lens.len())
            .map(|i| {
                if i % 2 == 0 {
                    Readback::Argmax
                } else {
                    Readback::Logits
                }
            })
            .collect();
        // two copies of the same generations: one reads every row's logits, the
        // other what `want` says
        let start = || -> (Vec<_>, Vec<u32>) {
            lens.iter()
                .enumerate()
                .map(|(i, &n)| {
                    let mut kv = m.kv_reserve(n + 3).unwrap().unwrap();
                    let l = m.extend(&mut kv, &ids(n + i, 97)[i..]).unwrap();
                    (kv, argmax(&l))
                })
                .unzip()
        };
        let (mut all, mut next_all) = start();
        let (mut sel, mut next_sel) = start();
        for step in 0..3 {
            let mut rows: Vec<_> = all
                .iter_mut()
                .zip(&next_all)
                .map(|(kv, &id)| (kv, id))
                .collect();
            let logits = m.decode(&mut rows).unwrap();
            let mut rows: Vec<_> = sel
                .iter_mut()
                .zip(&next_sel)
                .map(|(kv, &id)| (kv, id))
                .collect();
            let got = m.decode_select(&mut rows, &want).unwrap();
            assert_eq!(got.len(), lens.len());
            next_all = logits.iter().map(|l| argmax(l)).collect();
            next_sel = Vec::new();
            for (r, (g, l)) in got.iter().zip(&logits).enumerate() {
                match (want[r], g) {
                    (Readback::Logits, NextToken::Logits(x)) => {
                        assert_eq!(x, l, "{extra} cap {cap:?} step {step} row {r}: logits");
                        next_sel.push(argmax(x));
                    }
                    (Readback::Argmax, NextToken::Argmax(id)) => {
                        assert_eq!(
                            *id,
                            argmax(l),
                            "{extra} cap {cap:?} step {step} row {r}: argmax"
                        );
                        next_sel.push(*id);
                    }
                    other => panic!("row {r} asked {:?}, got {other:?}", want[r]),
                }
            }
            assert_eq!(next_sel, next_all);
        }
        // one readback per row
        drop((all, sel));
        let mut kv = m.kv_reserve(8).unwrap().unwrap();
        m.extend(&mut kv, &[1, 2]).unwrap();
        let err = m.decode_select(&mut [(&mut kv, 3)], &[]).unwrap_err();
        assert!(err.to_string().contains("readbacks"), "{err}");
    }
}

#[test]
fn llvmpipe_refuses_contexts_its_loop_limit_would_cut_short() {
    // llvmpipe stops a shader invocation's loops once it has run 65,535 iterations in
    // all, silently: a long row's attention then came out wrong (heads of 128
    // dimensions from ~960 keys). A context that could get there is refused, saying
    // what fits; the longest allowed one is right at its last position, forward and
    // decode step.
    use wgformer::gpu::context::llvmpipe_max_context;
    let g = gpu();
    if !g.ctx.details.is_llvmpipe() {
        eprintln!(
            "not llvmpipe ({}): no loop limit to check",
            g.ctx.details.label()
        );
        return;
    }
    let max = llvmpipe_max_context(128);
    let cfg = |n: usize| {
        small(serde_json::json!({"n_embed": 128, "n_head": 1, "n_layer": 1, "context_size": n}))
    };
    let err = Model::build(cfg(max + 1), None, g.ctx.clone(), g.pipelines.clone())
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("llvmpipe") && err.contains(&format!("at most {max} positions")),
        "{err}"
    );
    check_against_reference(cfg(max), None, max);
    let m = Model::build(cfg(max), None, g.ctx.clone(), g.pipelines.clone()).unwrap();
    let all = ids(max, 97);
    let mut s = m.kv_reserve(max).unwrap().unwrap();
    m.extend(&mut s, &all[..max - 1]).unwrap();
    let step = m.extend(&mut s, &all[max - 1..]).unwrap();
    let full = m.forward_logits(&all).unwrap();
    assert_close("last position", &step, &full[(max - 1) * 97..], 1e-3, 1e-3);
}

#[test]
fn prefill_parts_read_back_their_logits_or_the_devices_argmax() {
    // A prefill step's prompts that end in it get what they ask for after their last
    // token (logits bit for bit, or the argmax of those logits taken on the device);
    // a chunk before its prompt's end gets nothing. Rows of 5,000 logits (3 windows);
    // both kernel classes.
    use wgformer::model::sampling::argmax;
    use wgformer::model::{NextToken, Readback};
    let g = gpu();
    for extra in [
        serde_json::json!({"context_size": 32, "vocab_size": 5000}),
        serde_json::json!({"context_size": 32, "vocab_size": 5000, "kernels": "hardware"}),
    ] {
        let cfg = small(extra.clone());
        let shape = wgformer::model::ServeShape::for_generations(&cfg, 8, 16);
        let m = Model::build_with(cfg, None, g.ctx.clone(), g.pipelines.clone(), shape).unwrap();
        let prompts: Vec<Vec<u32>> = (0..4).map(|i| ids(3 + 2 * i, 97)[i..].to_vec()).collect();
        let want = [
            Some(Readback::Argmax),
            Some(Readback::Logits),
            None,
            Some(Readback::Argmax),
        ];
        let mut kv_a: Vec<_> = (0..4).map(|_| m.kv_reserve(16).unwrap().unwrap()).collect();
        let mut kv_b: Vec<_> = (0..4).map(|_| m.kv_reserve(16).unwrap().unwrap()).collect();
        let mut all: Vec<_> = kv_a
            .iter_mut()
            .zip(&prompts)
            .map(|(kv, p)| (kv, p.as_slice(), true))
            .collect();
        let logits = m.prefill_many(&mut all).unwrap();
        let mut sel: Vec<_> = kv_b
            .iter_mut()
            .zip(&prompts)
            .zip(want)
            .map(|((kv, p), w)| (kv, p.as_slice(), w))
            .collect();
        let got = m.prefill_select(&mut sel).unwrap();
        for (i, (g, l)) in got.iter().zip(&logits).enumerate() {
            let l = l.as_ref().unwrap();
            match (want[i], g) {
                (Some(Readback::Logits), Some(NextToken::Logits(x))) => {
                    assert_eq!(x, l, "{extra} part {i}")
                }
                (Some(Readback::Argmax), Some(NextToken::Argmax(id))) => {
                    assert_eq!(*id, argmax(l), "{extra} part {i}")
                }
                (None, None) => {}
                other => panic!("part {i} asked {:?}, got {other:?}", want[i]),
            }
        }
        // the prompts are in the cache either way: the next steps agree
        assert_eq!(
            kv_a.iter().map(|k| k.len()).collect::<Vec<_>>(),
            kv_b.iter().map(|k| k.len()).collect::<Vec<_>>()
        );
    }
}

/// A row's logits are bit for bit the same in a decode step of every batch size from 1
/// to 16 (so every cover of the batch by the `ROWS` groups: 8s, a group of 4 or 8 past
/// the end, single rows), f32 and half-float weights, with the other rows at other
/// positions.
#[test]
fn a_decode_row_is_the_same_in_batches_of_every_size() {
    use wgformer::model::ServeShape;
    let g = gpu();
    for dtype in ["float32", "float16"] {
        let cfg = small(serde_json::json!({ "dtype": dtype }));
        let shape = ServeShape::for_generations(&cfg, 16, 16);
        let model =
            Model::build_with(cfg, None, g.ctx.clone(), g.pipelines.clone(), shape).unwrap();
        let prompt = |i: usize| -> Vec<u32> {
            let n = if i == 0 { 3 } else { 1 + (i * 7) % 17 };
            (0..n)
                .map(|j| ((j * 17 + i * 31 + 5) % 97) as u32)
                .collect()
        };
        let run = |b: usize| common::first_row_bits(&model, b, 3, prompt);
        let alone = run(1);
        for b in 2..=16 {
            assert!(
                run(b) == alone,
                "{dtype}: row 0 in a batch of {b} differs from alone"
            );
        }
    }
}
