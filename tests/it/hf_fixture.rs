//! Logits from a checkpoint written by Hugging Face `transformers` match the logits
//! `transformers` itself computed (fixture made by tools/make_hf_fixture.py).

use crate::common;

use common::{assert_close, gpu};
use wgformer::model::{resolve_config, Model};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hf-gpt2-tiny");

#[test]
fn logits_match_transformers() {
    // with the kernels for software adapters and with the GPU-shaped ones
    for kernels in ["software", "hardware"] {
        logits_match_transformers_with(kernels);
    }
}

fn logits_match_transformers_with(kernels: &str) {
    let g = gpu();
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{DIR}/fixture.json")).unwrap())
            .unwrap();
    let ids: Vec<u32> = meta["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    // n_head is not recoverable from shapes; everything else comes from the file.
    let (cfg, ckpt) = resolve_config(serde_json::json!({
        "checkpoint": format!("{DIR}/model.safetensors"),
        "n_head": meta["config"]["n_head"],
        "kernels": kernels,
    }))
    .unwrap();
    assert_eq!(
        cfg.vocab_size,
        meta["config"]["vocab_size"].as_u64().unwrap() as usize
    );
    assert_eq!(
        cfg.n_layer,
        meta["config"]["n_layer"].as_u64().unwrap() as usize
    );
    let model = Model::build(cfg, ckpt, g.ctx.clone(), g.pipelines.clone()).unwrap();
    let got = model.forward_logits(&ids).unwrap();

    let bytes = std::fs::read(format!("{DIR}/logits.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let view = st.tensor("logits").unwrap();
    assert_eq!(view.shape(), &[ids.len(), model.config.vocab_size]);
    let want: Vec<f32> = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_close(
        &format!("logits vs transformers, {kernels} kernels"),
        &got,
        &want,
        1e-4,
        1e-4,
    );
}
