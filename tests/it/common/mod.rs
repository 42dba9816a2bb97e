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

fn choice() -> DeviceChoice {
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
