//! The harness: a row of results, the timers (GPU batches with warm-up, clock stopped
//! after the device finished, never the read-back; CPU medians), the check against a
//! reference before anything is timed, and the report (table or JSON).

use std::time::Instant;

use serde::Serialize;
use wgformer::gpu::GpuContext;
use wgformer::kernels::Pipelines;
use wgformer::reference;

/// Rows of the batched matrix-vector rows (a full decode batch).
pub(crate) const BATCH: usize = 16;

#[derive(Serialize)]
pub(crate) struct Row {
    pub(crate) kernel: String,
    pub(crate) shape: String,
    pub(crate) gpu_ms: f64,
    pub(crate) rate: f64,
    pub(crate) unit: &'static str,
    pub(crate) cpu_ms: Option<f64>,
    pub(crate) cpu: &'static str,
    pub(crate) speedup_vs_cpu: Option<f64>,
}

pub(crate) struct Bench {
    pub(crate) ctx: GpuContext,
    pub(crate) pl: Pipelines,
    pub(crate) json: bool,
    pub(crate) quick: bool,
    pub(crate) filter: Option<String>,
    pub(crate) rows: Vec<Row>,
}

/// `n` texts of `t` GPT-2 token ids: id j of text i is (7919 j + base + salt i) mod
/// the vocabulary.
pub(crate) fn token_texts(n: usize, t: usize, base: u32, salt: u32) -> Vec<Vec<u32>> {
    (0..n as u32)
        .map(|i| {
            (0..t as u32)
                .map(|j| (j * 7919 + base + i * salt) % 50257)
                .collect()
        })
        .collect()
}

pub(crate) fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    // xorshift: cheap, deterministic, in [-1, 1)
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 23) as f32) - 1.0
        })
        .collect()
}

/// Bytes a weight takes in memory for kernel `variant`.
pub(crate) fn words_bytes(variant: &str) -> usize {
    if wgformer::kernels::half_precision(variant) {
        2
    } else {
        4
    }
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

impl Bench {
    pub(crate) fn wants(&self, name: &str) -> bool {
        self.filter
            .as_ref()
            .is_none_or(|f| name.contains(f.as_str()))
    }

    /// Median ms of one repetition of `record`, timed as batches submitted and waited for.
    pub(crate) fn time_gpu(&self, record: &dyn Fn(&mut wgpu::ComputePass<'_>)) -> f64 {
        let run = |reps: usize| {
            let mut enc = self.ctx.device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                for _ in 0..reps {
                    record(&mut pass);
                }
            }
            let t = Instant::now();
            self.ctx.queue.submit([enc.finish()]);
            self.ctx.wait_idle().expect("GPU wait");
            t.elapsed().as_secs_f64() * 1e3
        };
        // Warm-up (and pipeline first use) inside an error scope: a dispatch the device
        // rejects must stop the bench, not be timed as 0 ms.
        let once = self
            .ctx
            .scoped("bench dispatch", || Ok(run(1)))
            .expect("the timed commands are valid");
        let reps = ((200.0 / once.max(0.01)) as usize).clamp(1, 50);
        let batches = if self.quick { 3 } else { 5 };
        median((0..batches).map(|_| run(reps) / reps as f64).collect())
    }

    /// Like `time_gpu` for commands outside a compute pass (buffer copies).
    pub(crate) fn time_encoder(&self, record: &dyn Fn(&mut wgpu::CommandEncoder)) -> f64 {
        let run = |reps: usize| {
            let mut enc = self.ctx.device.create_command_encoder(&Default::default());
            for _ in 0..reps {
                record(&mut enc);
            }
            let t = Instant::now();
            self.ctx.queue.submit([enc.finish()]);
            self.ctx.wait_idle().expect("GPU wait");
            t.elapsed().as_secs_f64() * 1e3
        };
        let once = run(1);
        let reps = ((200.0 / once.max(0.01)) as usize).clamp(1, 50);
        let batches = if self.quick { 3 } else { 5 };
        median((0..batches).map(|_| run(reps) / reps as f64).collect())
    }

    pub(crate) fn time_cpu(&self, f: &mut dyn FnMut()) -> f64 {
        f();
        let runs = if self.quick { 1 } else { 3 };
        median(
            (0..runs)
                .map(|_| {
                    let t = Instant::now();
                    f();
                    t.elapsed().as_secs_f64() * 1e3
                })
                .collect(),
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn report(
        &mut self,
        kernel: &str,
        shape: String,
        gpu_ms: f64,
        work: f64,
        unit: &'static str,
        cpu_ms: Option<f64>,
        cpu: &'static str,
    ) {
        let rate = work / (gpu_ms * 1e-3) / 1e9;
        let row = Row {
            kernel: kernel.into(),
            shape,
            gpu_ms,
            rate,
            unit,
            cpu_ms,
            cpu,
            speedup_vs_cpu: cpu_ms.map(|c| c / gpu_ms),
        };
        if !self.json {
            let cpu_txt = match (row.cpu_ms, row.speedup_vs_cpu) {
                (Some(c), Some(s)) => format!("{c:10.3} ms ({cpu}) ratio {s:6.2}x"),
                _ => String::new(),
            };
            println!(
                "{:<26} {:<26} {:10.3} ms {:9.2} {:<7} {}",
                row.kernel, row.shape, row.gpu_ms, row.rate, row.unit, cpu_txt
            );
        }
        self.rows.push(row);
    }

    /// Compiled variants of kernel `base` (portable first).
    pub(crate) fn variants(&self, base: &'static str) -> Vec<&'static str> {
        self.pl.variants(base)
    }

    pub(crate) fn check(&self, name: &str, got: &[f32], want: &[f32]) {
        if let Err(e) = reference::compare(name, got, want, 1e-3, 1e-3) {
            panic!("{name} disagrees with the CPU reference, not timing it: {e}");
        }
    }
}
