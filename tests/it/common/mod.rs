//! Shared test helpers: one GPU context per test binary, seeded inputs with
//! planted outliers. A missing adapter fails the test (never a silent skip).
#![allow(dead_code)]

pub mod http;

use std::sync::{Arc, OnceLock};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use wgformer::config::DeviceChoice;
use wgformer::gpu::GpuContext;
use wgformer::kernels::Pipelines;

pub struct Gpu {
    pub ctx: Arc<GpuContext>,
    pub pipelines: Arc<Pipelines>,
}

/// The adapter the tests ask for (`WGFORMER_TEST_DEVICE`: `gpu`, `cpu`, else auto).
pub fn choice() -> DeviceChoice {
    match std::env::var("WGFORMER_TEST_DEVICE").as_deref() {
        Ok("gpu") => DeviceChoice::Gpu,
        Ok("cpu") => DeviceChoice::Cpu,
        _ => DeviceChoice::Auto,
    }
}

/// A fresh context (e.g. with a binding cap).
pub fn new_gpu(binding_cap: Option<u64>) -> Gpu {
    let mut ctx = GpuContext::new(&choice()).unwrap_or_else(|e| {
        panic!("no GPU adapter for the tests (install mesa-vulkan-drivers for lavapipe): {e}")
    });
    ctx.binding_cap = binding_cap;
    let ctx = Arc::new(ctx);
    let pipelines = Arc::new(Pipelines::new(&ctx).expect("pipelines compile"));
    Gpu { ctx, pipelines }
}

/// The shared context of this test binary.
pub fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| {
        let g = new_gpu(None);
        eprintln!(
            "test adapter: {} ({})",
            g.ctx.details.label(),
            g.ctx.details.device_type
        );
        g
    })
}

/// `n` normal-ish values in [-scale, scale] with a few planted outliers (±8·scale).
pub fn rand_vec(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut v: Vec<f32> = (0..n).map(|_| rng.random_range(-scale..scale)).collect();
    for k in 0..(n / 97).min(8) {
        let i = rng.random_range(0..n);
        v[i] = if k % 2 == 0 {
            8.0 * scale
        } else {
            -8.0 * scale
        };
    }
    v
}

/// Panic with the comparison's report when it fails.
pub fn assert_close(name: &str, got: &[f32], want: &[f32], atol: f64, rtol: f64) {
    if let Err(msg) = wgformer::reference::compare(name, got, want, atol, rtol) {
        panic!("{msg}");
    }
}

/// The f32 values of tensor `name` in the safetensors file at `path` (a fixture's
/// expected numbers).
pub fn safetensors_f32(path: &str, name: &str) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensor(name)
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// The ids of a JSON list of token ids (a fixture's).
pub fn json_ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// `n` tokens picked greedily after `prompt`, one KV-cache step each.
pub fn greedy(model: &wgformer::model::Model, prompt: &[u32], n: usize) -> Vec<u32> {
    use wgformer::model::sampling::argmax;
    let mut s = model.kv_reserve(prompt.len() + n).unwrap().unwrap();
    let mut logits = model.extend(&mut s, prompt).unwrap();
    let mut got = Vec::new();
    for _ in 0..n {
        let next = argmax(&logits);
        got.push(next);
        if got.len() < n {
            logits = model.extend(&mut s, &[next]).unwrap();
        }
    }
    got
}

/// Row 0's logits (as bits) over `steps` decode steps of a batch of `b` generations,
/// generation i prefilled with `prompt(i)` and then fed its own greedy picks: what a
/// row computes must not depend on the rows beside it.
pub fn first_row_bits(
    model: &wgformer::model::Model,
    b: usize,
    steps: usize,
    prompt: impl Fn(usize) -> Vec<u32>,
) -> Vec<Vec<u32>> {
    use wgformer::model::sampling::argmax;
    use wgformer::model::{NextToken, Readback};
    let mut seqs: Vec<_> = (0..b)
        .map(|i| {
            model
                .kv_reserve(prompt(i).len() + steps + 1)
                .unwrap()
                .unwrap()
        })
        .collect();
    let mut next = Vec::new();
    for (i, kv) in seqs.iter_mut().enumerate() {
        next.push(argmax(
            &model.prefill(kv, &prompt(i), true).unwrap().unwrap(),
        ));
    }
    let mut first_row = Vec::new();
    for _ in 0..steps {
        let mut rows: Vec<_> = seqs
            .iter_mut()
            .zip(&next)
            .map(|(kv, &id)| (kv, id))
            .collect();
        let logits: Vec<Vec<f32>> = model
            .decode_select(&mut rows, &vec![Readback::Logits; b])
            .unwrap()
            .into_iter()
            .map(|n| match n {
                NextToken::Logits(l) => l,
                NextToken::Argmax(_) | NextToken::Sampled(_) => unreachable!("logits asked"),
            })
            .collect();
        first_row.push(logits[0].iter().map(|v| v.to_bits()).collect());
        next = logits.iter().map(|l| argmax(l)).collect();
    }
    first_row
}
