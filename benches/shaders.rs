//! Shader microbenchmark: every kernel at GPT-2-small shapes (T = 1, 16, 128, 1024),
//! each checked against its CPU reference before it is timed, then timed on the
//! adapter (warm-up, median of batches, clock stopped after the GPU finished, no
//! read-back inside the clock) next to the same operation on the CPU in the same run.
//!
//! ```text
//! cargo bench --bench shaders [-- --json] [--quick] [--filter NAME] [--device auto|gpu|cpu]
//! ```

use std::time::Instant;

use serde::Serialize;
use wgformer::config::{DeviceChoice, ModelConfig};
use wgformer::gpu::{buffers, GpuContext, Pipelines};
use wgformer::kernels::{
    attention, embedding, layer_norm, matmul, matmul_bt, matvec, matvec_bt, KernelOp,
};
use wgformer::model::Model;
use wgformer::reference;

#[derive(Serialize)]
struct Row {
    kernel: String,
    shape: String,
    gpu_ms: f64,
    rate: f64,
    unit: &'static str,
    cpu_ms: Option<f64>,
    cpu: &'static str,
    speedup_vs_cpu: Option<f64>,
}

struct Bench {
    ctx: GpuContext,
    pl: Pipelines,
    json: bool,
    quick: bool,
    filter: Option<String>,
    rows: Vec<Row>,
}

/// `n` texts of `t` GPT-2 token ids: id j of text i is (7919 j + base + salt i) mod
/// the vocabulary.
fn token_texts(n: usize, t: usize, base: u32, salt: u32) -> Vec<Vec<u32>> {
    (0..n as u32)
        .map(|i| {
            (0..t as u32)
                .map(|j| (j * 7919 + base + i * salt) % 50257)
                .collect()
        })
        .collect()
}

fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
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

use reference::seen_by;

/// Bytes a weight takes in memory for kernel `variant`.
fn words_bytes(variant: &str) -> usize {
    if wgformer::kernels::half_precision(variant) {
        2
    } else {
        4
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

impl Bench {
    fn wants(&self, name: &str) -> bool {
        self.filter
            .as_ref()
            .is_none_or(|f| name.contains(f.as_str()))
    }

    /// Median ms of one repetition of `record`, timed as batches submitted and waited for.
    fn time_gpu(&self, record: &dyn Fn(&mut wgpu::ComputePass<'_>)) -> f64 {
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
    fn time_encoder(&self, record: &dyn Fn(&mut wgpu::CommandEncoder)) -> f64 {
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

    /// The limits the kernel rows stand next to: a device-to-device copy (the memory
    /// bandwidth a read-once kernel can approach) and the cost of one dependent
    /// dispatch inside a pass (what fusing saves).
    fn rooflines(&mut self) {
        let bytes = (64usize << 20).min(self.ctx.max_binding_bytes() as usize / 4 * 4);
        let src = buffers::storage(&self.ctx, "copy src", bytes / 4);
        let dst = buffers::storage(&self.ctx, "copy dst", bytes / 4);
        let ms =
            self.time_encoder(&|enc| enc.copy_buffer_to_buffer(&src, 0, &dst, 0, bytes as u64));
        // read + write
        self.report(
            "device_copy",
            format!("{} MiB", bytes >> 20),
            ms,
            (2 * bytes) as f64,
            "GB/s",
            None,
            "",
        );
        let (x, w, b, y) = (
            buffers::upload(&self.ctx, "x", &[1.0; 4]),
            buffers::upload(&self.ctx, "w", &[1.0; 4]),
            buffers::upload(&self.ctx, "b", &[0.0; 4]),
            buffers::storage(&self.ctx, "y", 4),
        );
        let op = layer_norm::layer_norm_op(&self.ctx, &self.pl, "layer_norm", &x, &w, &b, &y);
        let n = 200;
        let ms = self.time_gpu(&|pass| {
            for _ in 0..n {
                layer_norm::encode_layer_norm(&self.ctx.queue, pass, &self.pl, &op, 1, 4, true)
            }
        });
        if !self.json {
            println!(
                "{:<26} {:<26} {:10.4} ms per dispatch ({n} dependent tiny dispatches in one pass)",
                "dispatch",
                "layer_norm T=1 C=4",
                ms / n as f64
            );
        }
        self.rows.push(Row {
            kernel: "dispatch".into(),
            shape: "layer_norm T=1 C=4".into(),
            gpu_ms: ms / n as f64,
            rate: n as f64 / ms * 1e3,
            unit: "dispatches/s",
            cpu_ms: None,
            cpu: "",
            speedup_vs_cpu: None,
        });
    }

    fn time_cpu(&self, f: &mut dyn FnMut()) -> f64 {
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
    fn report(
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
    fn variants(&self, base: &'static str) -> Vec<&'static str> {
        self.pl.variants(base)
    }

    fn check(&self, name: &str, got: &[f32], want: &[f32]) {
        if let Err(e) = reference::compare(name, got, want, 1e-3, 1e-3) {
            panic!("{name} disagrees with the CPU reference, not timing it: {e}");
        }
    }

    fn matmul(&mut self, m: usize, k: usize, n: usize) {
        let a = rand_vec(m * k, 1);
        let b: Vec<f32> = rand_vec(k * n, 2).iter().map(|x| x * 0.05).collect();
        let bias = rand_vec(n, 3);
        // check (rows sampled for big shapes)
        let rows = m.min(8);
        let mut c = vec![0.0f32; m * n];
        let cpu = self.time_cpu(&mut || unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                a.as_ptr(),
                k as isize,
                1,
                b.as_ptr(),
                n as isize,
                1,
                0.0,
                c.as_mut_ptr(),
                n as isize,
                1,
            )
        });
        // f32 weights, then the same as half floats (dtype float16): the reference runs
        // on the weights each variant actually sees
        let mut variants = self.variants("matmul");
        variants.extend(self.variants("matmul_f16"));
        for variant in variants {
            let seen = &seen_by(variant, &b)[..];
            let got = matmul::run_matmul(
                &self.ctx,
                &self.pl,
                variant,
                &a[..rows * k],
                &b,
                Some(&bias),
                None,
                rows,
                n,
                k,
                matmul::BIAS,
                true,
            )
            .unwrap();
            let want = reference::matmul::matmul(
                &a[..rows * k],
                seen,
                Some(&bias),
                None,
                rows,
                n,
                k,
                false,
            );
            self.check(variant, &got, &want);
            let (ab, bb, biasb) = (
                buffers::upload(&self.ctx, "a", &a),
                buffers::upload(&self.ctx, "b", &matmul::store_weights(variant, &b, k, n)),
                buffers::upload(&self.ctx, "bias", &bias),
            );
            let out = buffers::storage(&self.ctx, "out", m * n);
            // the tiled kernels as the model runs them: K split across workgroups up
            // to a prefill chunk's rows, and also whole for comparison
            let split = matmul::splits_k(variant) && m <= matmul::SPLIT_MAX_ROWS;
            let part_floats = if split {
                matmul::split_floats(n, k, m)
            } else {
                4
            };
            let part = buffers::storage(&self.ctx, "part", part_floats);
            let ways: &[(usize, &str)] = if split {
                &[(0, ""), (m, " split-K")]
            } else {
                &[(0, "")]
            };
            for &(rows, how) in ways {
                let op = matmul::matmul_split_op(
                    &self.ctx,
                    &self.pl,
                    variant,
                    &ab,
                    &bb,
                    &biasb,
                    &out,
                    Some(&part),
                    rows,
                );
                let gpu = self.time_gpu(&|pass| {
                    matmul::encode_matmul(
                        &self.ctx.queue,
                        pass,
                        &self.pl,
                        &op,
                        m,
                        n,
                        k,
                        matmul::BIAS,
                    )
                });
                self.report(
                    &format!("{variant}{how}"),
                    format!("{m}x{k} · {k}x{n}"),
                    gpu,
                    2.0 * (m * n * k) as f64,
                    "GFLOP/s",
                    Some(cpu),
                    "sgemm",
                );
            }
        }
    }

    fn matmul_bt(&mut self, m: usize, k: usize, n: usize) {
        let a = rand_vec(m * k, 4);
        let b = rand_vec(n * k, 5);
        let rows = m.min(4);
        let chunk = buffers::rows_per_binding(self.ctx.max_binding_bytes(), (k.max(m) * 4) as u64);
        let mut c = vec![0.0f32; m * n];
        let cpu = self.time_cpu(&mut || unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                a.as_ptr(),
                k as isize,
                1,
                b.as_ptr(),
                1,
                k as isize,
                0.0,
                c.as_mut_ptr(),
                n as isize,
                1,
            )
        });
        let ab = buffers::upload(&self.ctx, "a", &a);
        // f32 wte, then half floats (dtype float16): the reference sees rounded weights
        let mut variants = self.variants("matmul_bt");
        variants.extend(self.variants("matmul_bt_f16"));
        for variant in variants {
            let seen = seen_by(variant, &b);
            let bt = matmul_bt::upload_wte(&self.ctx, variant, &b, n, k, chunk);
            let outs: Vec<_> = bt
                .chunks
                .iter()
                .map(|ch| buffers::storage(&self.ctx, "out", m * ch.rows))
                .collect();
            let got = matmul_bt::run_matmul_bt(
                &self.ctx,
                &self.pl,
                variant,
                &a[..rows * k],
                &b,
                rows,
                n,
                k,
                chunk,
            )
            .unwrap();
            self.check(
                variant,
                &got,
                &reference::matmul::matmul_bt(&a[..rows * k], &seen, rows, n, k),
            );
            let ops: Vec<KernelOp> = bt
                .chunks
                .iter()
                .zip(&outs)
                .map(|(ch, o)| {
                    matmul_bt::matmul_bt_variant_op(
                        &self.ctx, &self.pl, variant, &ab, &ch.buffer, o,
                    )
                })
                .collect();
            let gpu = self.time_gpu(&|pass| {
                for (op, ch) in ops.iter().zip(&bt.chunks) {
                    matmul_bt::encode_matmul_bt(
                        &self.ctx.queue,
                        pass,
                        &self.pl,
                        op,
                        m,
                        ch.rows,
                        k,
                        0,
                    );
                }
            });
            self.report(
                variant,
                format!("{m}x{k} · ({n}x{k})ᵀ"),
                gpu,
                2.0 * (m * n * k) as f64,
                "GFLOP/s",
                Some(cpu),
                "sgemm",
            );
        }
    }

    fn matvec(&mut self, k: usize, n: usize) {
        let x = rand_vec(k, 6);
        let w: Vec<f32> = rand_vec(k * n, 7).iter().map(|v| v * 0.05).collect();
        let mut c = vec![0.0f32; n];
        let cpu = self.time_cpu(&mut || unsafe {
            matrixmultiply::sgemm(
                1,
                k,
                n,
                1.0,
                x.as_ptr(),
                k as isize,
                1,
                w.as_ptr(),
                n as isize,
                1,
                0.0,
                c.as_mut_ptr(),
                n as isize,
                1,
            )
        });
        // room for a decode batch of BATCH rows (the rows past the first are x again)
        let xs: Vec<f32> = (0..BATCH).flat_map(|_| x.iter().copied()).collect();
        let (xb, out) = (
            buffers::upload(&self.ctx, "x", &xs),
            buffers::storage(&self.ctx, "out", BATCH * n),
        );
        // f32 weights, then half floats (dtype float16)
        for variant in [
            "matvec",
            "matvec_splitk",
            "matvec_f16",
            "matvec_f16_subgroup",
            "matvec_f16_splitk",
        ] {
            if !self.pl.has(variant) {
                continue;
            }
            let got = matvec::run_matvec(&self.ctx, &self.pl, variant, &x, &w, None, None, n, k, 0)
                .unwrap();
            let want =
                reference::matmul::matmul(&x, &seen_by(variant, &w), None, None, 1, n, k, false);
            self.check(variant, &got, &want);
            let wb = buffers::upload(&self.ctx, "w", &matmul::store_weights(variant, &w, k, n));
            let op = matvec::matvec_variant_op(&self.ctx, &self.pl, variant, &xb, &wb, &xb, &out);
            for rows in [1, BATCH] {
                let gpu = self.time_gpu(&|pass| {
                    matvec::encode_matvec(&self.ctx.queue, pass, &self.pl, &op, rows, n, k, 0)
                });
                self.report(
                    variant,
                    format!("{rows}x{k} · {k}x{n}"),
                    gpu,
                    (k * n * words_bytes(variant)) as f64,
                    "GB/s (weights)",
                    (rows == 1).then_some(cpu),
                    "sgemm",
                );
            }
        }
    }

    fn matvec_bt(&mut self, k: usize, n: usize) {
        let x = rand_vec(k, 14);
        let w = rand_vec(n * k, 15);
        let chunk = buffers::rows_per_binding(self.ctx.max_binding_bytes(), (k * 4) as u64);
        let xs: Vec<f32> = (0..BATCH).flat_map(|_| x.iter().copied()).collect();
        let xb = buffers::upload(&self.ctx, "x", &xs);
        let mut c = vec![0.0f32; n];
        let cpu = self.time_cpu(&mut || unsafe {
            matrixmultiply::sgemm(
                1,
                k,
                n,
                1.0,
                x.as_ptr(),
                k as isize,
                1,
                w.as_ptr(),
                1,
                k as isize,
                0.0,
                c.as_mut_ptr(),
                n as isize,
                1,
            )
        });
        for variant in ["matvec_bt", "matvec_bt_f16", "matvec_bt_f16_subgroup"] {
            if !self.pl.has(variant) {
                continue;
            }
            let seen = seen_by(variant, &w);
            let wt = matmul_bt::upload_wte(&self.ctx, variant, &w, n, k, chunk);
            let outs: Vec<_> = wt
                .chunks
                .iter()
                .map(|ch| buffers::storage(&self.ctx, "out", BATCH * ch.rows))
                .collect();
            let ops: Vec<_> = wt
                .chunks
                .iter()
                .zip(&outs)
                .map(|(ch, o)| {
                    matvec_bt::matvec_bt_op(&self.ctx, &self.pl, variant, &xb, &ch.buffer, o)
                })
                .collect();
            let rows = wt.chunks[0].rows;
            let got = matvec_bt::run_matvec_bt(
                &self.ctx,
                &self.pl,
                variant,
                &x,
                &w[..rows * k],
                rows,
                k,
                0,
                1,
            )
            .unwrap();
            self.check(
                variant,
                &got,
                &reference::matmul::matmul_bt(&x, &seen[..rows * k], 1, rows, k),
            );
            for b in [1, BATCH] {
                let gpu = self.time_gpu(&|pass| {
                    for (op, ch) in ops.iter().zip(&wt.chunks) {
                        matvec_bt::encode_matvec_bt(
                            &self.ctx.queue,
                            pass,
                            &self.pl,
                            op,
                            ch.rows,
                            k,
                            0,
                            b,
                            0,
                        );
                    }
                });
                self.report(
                    variant,
                    format!("{b}x{k} · ({n}x{k})ᵀ"),
                    gpu,
                    (k * n * words_bytes(variant)) as f64,
                    "GB/s (weights)",
                    (b == 1).then_some(cpu),
                    "sgemm",
                );
            }
        }
    }

    fn layer_norm(&mut self, t: usize, c: usize) {
        let x = rand_vec(t * c, 8);
        let (w, b) = (rand_vec(c, 9), rand_vec(c, 10));
        let want = reference::layer_norm::layer_norm(&x, &w, Some(&b), c);
        let cpu = self.time_cpu(&mut || {
            std::hint::black_box(reference::layer_norm::layer_norm(&x, &w, Some(&b), c));
        });
        let (xb, wb, bb, yb) = (
            buffers::upload(&self.ctx, "x", &x),
            buffers::upload(&self.ctx, "w", &w),
            buffers::upload(&self.ctx, "b", &b),
            buffers::storage(&self.ctx, "y", t * c),
        );
        // the software kernel, then the hardware one (one workgroup per row)
        for variant in self.variants("layer_norm") {
            let got = layer_norm::run_layer_norm(&self.ctx, &self.pl, variant, &x, &w, Some(&b), c)
                .unwrap();
            self.check(variant, &got, &want);
            let op = layer_norm::layer_norm_op(&self.ctx, &self.pl, variant, &xb, &wb, &bb, &yb);
            let gpu = self.time_gpu(&|pass| {
                layer_norm::encode_layer_norm(&self.ctx.queue, pass, &self.pl, &op, t, c, true)
            });
            self.report(
                variant,
                format!("T={t} C={c}"),
                gpu,
                (2 * t * c * 4) as f64,
                "GB/s",
                Some(cpu),
                "cpu ref",
            );
        }
    }

    fn attention(&mut self, t: usize, c: usize, nh: usize) {
        let qkv = rand_vec(t * 3 * c, 11);
        let small_t = t.min(64);
        let (want, _) = reference::attention::attention(&qkv[..small_t * 3 * c], c, nh);
        let cpu = (t <= 128).then(|| {
            self.time_cpu(&mut || {
                std::hint::black_box(reference::attention::attention(&qkv, c, nh));
            })
        });
        // q·k and p·v over the causal half
        let flops = 4.0 * (t * (t + 1) / 2) as f64 * c as f64;
        let (qb, ob, eb) = (
            buffers::upload(&self.ctx, "qkv", &qkv),
            buffers::storage(&self.ctx, "out", t * c),
            buffers::storage(&self.ctx, "ent", nh * t),
        );
        let tables = buffers::storage(&self.ctx, "tables", 1);
        for variant in self.variants("attention") {
            let (got, _) = attention::run_attention(
                &self.ctx,
                &self.pl,
                variant,
                &qkv[..small_t * 3 * c],
                c,
                nh,
            )
            .unwrap();
            self.check(variant, &got, &want);
            let op = attention::attention_op(
                &self.ctx, &self.pl, variant, &qb, &qb, &qb, &ob, &eb, &tables,
            );
            let kv = attention::KvLayout::fused(c);
            let gpu = self.time_gpu(&|pass| {
                attention::encode_attention(&self.ctx.queue, pass, &self.pl, &op, t, c, nh, kv, 0)
            });
            self.report(
                variant,
                format!("T={t} C={c} NH={nh}"),
                gpu,
                flops,
                "GFLOP/s",
                cpu,
                "cpu ref",
            );
        }
    }

    /// Decode attention over the paged KV pool: `rows` generations (pages of 16
    /// positions, interleaved in the pool as a batch leaves them), each one query at
    /// position `pos` over its own keys; every variant checked against the reference
    /// when `pos` is short enough for it.
    fn decode_attention(&mut self, rows: usize, pos: usize, c: usize, nh: usize) {
        const PAGE: usize = 16;
        let len = pos + 1;
        let pages = len.div_ceil(PAGE);
        let (mut k_pool, mut v_pool) = (
            vec![0.0; rows * pages * PAGE * c],
            vec![0.0; rows * pages * PAGE * c],
        );
        let (mut q, mut want, mut tables, mut row_of) = (vec![], vec![], vec![], vec![]);
        for r in 0..rows {
            let qkv = rand_vec(len * 3 * c, 40 + r as u64);
            // generation r has pages r, r + rows, r + 2 rows, ...
            let table: Vec<u32> = (0..pages).map(|i| (i * rows + r) as u32).collect();
            let slots: Vec<u32> = (0..len)
                .map(|j| table[j / PAGE] * PAGE as u32 + (j % PAGE) as u32)
                .collect();
            reference::kv_store::kv_store(&qkv, &mut k_pool, &mut v_pool, c, &slots);
            q.extend_from_slice(&qkv[pos * 3 * c..]);
            if len <= 128 {
                want.extend_from_slice(&reference::attention::attention(&qkv, c, nh).0[pos * c..]);
            }
            row_of.push([tables.len() as u32, pos as u32]);
            tables.extend(table);
        }
        let flops = 4.0 * (rows * len * c) as f64;
        let bufs = [
            buffers::upload(&self.ctx, "q", &q),
            buffers::upload(&self.ctx, "k_pool", &k_pool),
            buffers::upload(&self.ctx, "v_pool", &v_pool),
            buffers::storage(&self.ctx, "out", rows * c),
            buffers::upload(&self.ctx, "rows", bytemuck::cast_slice(&row_of)),
            buffers::upload(&self.ctx, "tables", bytemuck::cast_slice(&tables)),
            buffers::storage(&self.ctx, "unused", 4),
        ];
        let [qb, kb, vb, ob, rb, tb, none] = &bufs;
        for variant in self.variants("attention_paged") {
            if !want.is_empty() {
                let got = attention::run_attention_paged(
                    &self.ctx, &self.pl, variant, &q, &k_pool, &v_pool, &row_of, &tables, PAGE, c,
                    nh, None,
                )
                .unwrap();
                self.check(variant, &got, &want);
            }
            let op = attention::attention_paged_op(
                &self.ctx, &self.pl, variant, qb, kb, vb, ob, rb, tb, none, none,
            );
            let gpu = self.time_gpu(&|pass| {
                attention::encode_attention_paged(
                    &self.ctx.queue,
                    pass,
                    &self.pl,
                    &op,
                    rows,
                    c,
                    nh,
                    PAGE,
                    0,
                )
            });
            self.report(
                variant,
                format!("{rows} rows at {pos} C={c} NH={nh}"),
                gpu,
                flops,
                "GFLOP/s",
                None,
                "",
            );
        }
    }

    /// Block-sparse attention (blocks of 32, local window 4, 1 global block) next to
    /// dense causal attention on the same input, in the same run.
    fn sparse_attention(&mut self, t: usize, c: usize, nh: usize) {
        use wgformer::model::sparse::BlockLayout;
        let layout = BlockLayout::new(t.max(32), 32, 4, 1, 0);
        let qkv = rand_vec(t * 3 * c, 16);
        let small_t = t.min(96);
        let small = BlockLayout::new(small_t.max(32), 32, 2, 1, 0);
        // the kernels `kernels: "auto"` picks on this adapter
        let hardware = !self.ctx.details.is_software();
        let sparse_variant =
            attention::sparse_attention_variant(&self.ctx, &self.pl, c / nh, 32, hardware);
        let dense_variant = attention::attention_variant(&self.pl, c / nh, hardware);
        let (got, _) = attention::run_sparse_attention(
            &self.ctx,
            &self.pl,
            sparse_variant,
            &qkv[..small_t * 3 * c],
            c,
            nh,
            &small,
        )
        .unwrap();
        let (want, _) =
            reference::attention::attention_masked(&qkv[..small_t * 3 * c], c, nh, |i, j| {
                small.allows(i, j)
            });
        self.check("sparse_attention", &got, &want);
        let (qb, ob, eb) = (
            buffers::upload(&self.ctx, "qkv", &qkv),
            buffers::storage(&self.ctx, "out", t * c),
            buffers::storage(&self.ctx, "ent", nh * t),
        );
        let (ro, cols) = layout.upload(&self.ctx);
        let tables = buffers::storage(&self.ctx, "tables", 1);
        let sparse = attention::sparse_attention_op(
            &self.ctx,
            &self.pl,
            sparse_variant,
            &qb,
            &qb,
            &qb,
            &ob,
            &eb,
            &ro,
            &cols,
            &tables,
        );
        let dense = attention::attention_op(
            &self.ctx,
            &self.pl,
            dense_variant,
            &qb,
            &qb,
            &qb,
            &ob,
            &eb,
            &tables,
        );
        let kv = attention::KvLayout::fused(c);
        let sparse_ms = self.time_gpu(&|pass| {
            attention::encode_attention(&self.ctx.queue, pass, &self.pl, &sparse, t, c, nh, kv, 32)
        });
        let dense_ms = self.time_gpu(&|pass| {
            attention::encode_attention(&self.ctx.queue, pass, &self.pl, &dense, t, c, nh, kv, 0)
        });
        let density = layout.density(t);
        let flops = 4.0 * (t * (t + 1) / 2) as f64 * c as f64 * layout.causal_density(t);
        self.report(
            sparse_variant,
            format!("T={t} density {:.0}%", density * 100.0),
            sparse_ms,
            flops,
            "GFLOP/s",
            None,
            "",
        );
        if !self.json {
            println!(
                "{:<26} {:<26} {dense_variant} {dense_ms:.3} ms, {sparse_variant} {sparse_ms:.3} ms: sparse {:.2}x faster",
                "",
                "",
                dense_ms / sparse_ms
            );
        }
    }

    fn embedding(&mut self, t: usize, v: usize, c: usize) {
        let wte = rand_vec(v * c, 12);
        let wpe = rand_vec(1024 * c, 13);
        let ids: Vec<u32> = (0..t as u32).map(|i| (i * 7919) % v as u32).collect();
        let chunk = buffers::rows_per_binding(self.ctx.max_binding_bytes(), (c * 4) as u64);
        let pos: Vec<u32> = (0..t as u32).collect();
        let got = embedding::run_embedding(
            &self.ctx,
            &self.pl,
            "embedding",
            &ids,
            &pos,
            &wte,
            &wpe,
            c,
            chunk,
        )
        .unwrap();
        self.check(
            "embedding",
            &got,
            &reference::embedding::embedding(&ids, &wte, &wpe, c, 0),
        );
        let idb = buffers::upload(&self.ctx, "ids", bytemuck::cast_slice(&ids));
        let posb = buffers::upload(&self.ctx, "positions", bytemuck::cast_slice(&pos));
        let wt = matmul_bt::upload_wte(&self.ctx, "embedding", &wte, v, c, chunk);
        let (pb, ob) = (
            buffers::upload(&self.ctx, "wpe", &wpe),
            buffers::storage(&self.ctx, "out", t * c),
        );
        let ops: Vec<_> = wt
            .chunks
            .iter()
            .map(|ch| {
                embedding::embedding_op(
                    &self.ctx,
                    &self.pl,
                    "embedding",
                    &idb,
                    &ch.buffer,
                    &pb,
                    &ob,
                    &posb,
                )
            })
            .collect();
        let gpu = self.time_gpu(&|pass| {
            for (op, ch) in ops.iter().zip(&wt.chunks) {
                embedding::encode_embedding(
                    &self.ctx.queue,
                    pass,
                    &self.pl,
                    op,
                    t,
                    c,
                    ch.row_start,
                    ch.rows,
                );
            }
        });
        let cpu = self.time_cpu(&mut || {
            std::hint::black_box(reference::embedding::embedding(&ids, &wte, &wpe, c, 0));
        });
        self.report(
            "embedding",
            format!("T={t} V={v} C={c}"),
            gpu,
            (3 * t * c * 4) as f64,
            "GB/s",
            Some(cpu),
            "cpu ref",
        );
    }

    /// Prefill a `prompt`-token prompt into a KV cache, then `steps` greedy one-token steps.
    fn decode(&mut self, model: &Model, prompt: usize, steps: usize, tag: &str) {
        let ids = token_texts(1, prompt, 13, 0).remove(0);
        // the pool's pages are zeroed by wgpu on their first use: once per model, not
        // per request, so outside the timing
        let mut warm = model.kv_reserve(prompt).unwrap().unwrap();
        model.prefill(&mut warm, &ids, true).unwrap();
        drop(warm);
        let mut session = model.kv_reserve(prompt + steps + 1).unwrap().unwrap();
        let t0 = Instant::now();
        let mut logits = model.extend(&mut session, &ids).unwrap();
        let prefill_ms = t0.elapsed().as_secs_f64() * 1e3;
        let mut step_ms = Vec::with_capacity(steps);
        for _ in 0..steps {
            let next = wgformer::model::sampling::argmax(&logits);
            let t = Instant::now();
            logits = model.extend(&mut session, &[next]).unwrap();
            step_ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let ms = median(step_ms);
        let before = wgformer::gpu::dispatch_count();
        let next = wgformer::model::sampling::argmax(&logits);
        model.extend(&mut session, &[next]).unwrap();
        let dispatches = wgformer::gpu::dispatch_count() - before;
        self.report(
            "gpt2_prefill",
            format!("GPT-2 small{tag} T={prompt}"),
            prefill_ms,
            2.0 * prompt as f64 * model.parameter_count as f64,
            "GFLOP/s",
            None,
            "",
        );
        if !self.json {
            println!(
                "{:<26} {:<26} {:10.3} ms/token {:7.2} tokens/s  {dispatches} dispatches/step",
                "gpt2_decode",
                format!("GPT-2 small{tag} at {prompt}..{}", prompt + steps),
                ms,
                1e3 / ms
            );
        }
        self.rows.push(Row {
            kernel: "gpt2_decode".into(),
            shape: format!("GPT-2 small{tag} at {prompt}..{}", prompt + steps),
            gpu_ms: ms,
            rate: 1e3 / ms,
            unit: "tokens/s",
            cpu_ms: None,
            cpu: "",
            speedup_vs_cpu: None,
        });
    }

    /// `b` generations of `prompt` tokens each, then `steps` batched greedy decode
    /// steps (each generation one token a step; the token picked from logits read back,
    /// or with `argmax` by the device); tokens/s of all together, and the ratio to one.
    fn decode_batch(
        &mut self,
        model: &Model,
        b: usize,
        prompt: usize,
        steps: usize,
        argmax: bool,
        tag: &str,
    ) {
        use wgformer::model::{sampling, NextToken, Readback};
        let mut seqs: Vec<_> = (0..b)
            .map(|_| model.kv_reserve(prompt + steps + 1).unwrap().unwrap())
            .collect();
        let mut next = Vec::with_capacity(b);
        for (kv, ids) in seqs.iter_mut().zip(token_texts(b, prompt, 13, 101)) {
            let logits = model.prefill(kv, &ids, true).unwrap().unwrap();
            next.push(sampling::argmax(&logits));
        }
        let want = vec![
            if argmax {
                Readback::Argmax
            } else {
                Readback::Logits
            };
            b
        ];
        let mut step_ms = Vec::with_capacity(steps);
        for _ in 0..steps {
            let mut rows: Vec<_> = seqs
                .iter_mut()
                .zip(&next)
                .map(|(kv, &id)| (kv, id))
                .collect();
            // the step and the host's part of picking the tokens
            let t = Instant::now();
            next = model
                .decode_select(&mut rows, &want)
                .unwrap()
                .into_iter()
                .map(|n| match n {
                    NextToken::Logits(l) => sampling::argmax(&l),
                    NextToken::Argmax(id) => id,
                })
                .collect();
            step_ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let ms = median(step_ms);
        let rate = b as f64 * 1e3 / ms;
        let one = self
            .rows
            .iter()
            .rev()
            .find(|r| r.kernel == "gpt2_decode" && r.shape.contains(&format!("small{tag} at")))
            .map(|r| r.rate);
        let how = if argmax { " argmax" } else { "" };
        let shape = format!(
            "GPT-2 small{tag} B={b}{how} at {prompt}..{}",
            prompt + steps
        );
        if !self.json {
            println!(
                "{:<26} {:<26} {:10.3} ms/step  {:7.2} tokens/s  {}",
                "gpt2_decode_batch",
                shape,
                ms,
                rate,
                one.map_or(String::new(), |o| format!(
                    "{:.2}x one generation",
                    rate / o
                ))
            );
        }
        self.rows.push(Row {
            kernel: "gpt2_decode_batch".into(),
            shape,
            gpu_ms: ms,
            rate,
            unit: "tokens/s",
            cpu_ms: None,
            cpu: "",
            speedup_vs_cpu: one.map(|o| rate / o),
        });
    }

    /// `n` prompts of `t` tokens each prefilled into fresh sequences (the first token
    /// picked by the device): one after the other, then all in one traversal
    /// (`Model::prefill_select`, as the engine takes prompts arriving together); ms of
    /// each, and the ratio.
    fn prefill_batch(&mut self, model: &Model, n: usize, t: usize, tag: &str) {
        use wgformer::model::Readback;
        let texts = token_texts(n, t, 29, 131);
        let run = |together: bool| {
            let mut seqs: Vec<_> = (0..n)
                .map(|_| model.kv_reserve(t).unwrap().unwrap())
                .collect();
            let t0 = Instant::now();
            if together {
                let mut parts: Vec<_> = seqs
                    .iter_mut()
                    .zip(&texts)
                    .map(|(kv, ids)| (kv, ids.as_slice(), Some(Readback::Argmax)))
                    .collect();
                model.prefill_select(&mut parts).unwrap();
            } else {
                for (kv, ids) in seqs.iter_mut().zip(&texts) {
                    model
                        .prefill_select(&mut [(kv, ids.as_slice(), Some(Readback::Argmax))])
                        .unwrap();
                }
            }
            t0.elapsed().as_secs_f64() * 1e3
        };
        run(true);
        let runs = if self.quick { 3 } else { 5 };
        let apart = median((0..runs).map(|_| run(false)).collect());
        let together = median((0..runs).map(|_| run(true)).collect());
        let shape = format!("GPT-2 small{tag} {n} x T={t}");
        self.report_together("gpt2_prefill_batch", shape, n, "prompts/s", apart, together);
    }

    /// Where one traversal's time goes on this device, kernel by kernel (timestamps
    /// around every dispatch, `gpu::profile`): a decode step of 1 and of `b` rows at
    /// 64 positions (reading back what the engine would: the device's argmax where the
    /// model picks greedy tokens there), and one prefill traversal of `b` prompts of 34
    /// tokens (the shape of `conc.py`'s prompts). Prints each traversal's total and its
    /// 12 largest kernels (kernel, `ROWS`, grid, dispatches, ms, share).
    fn profile_steps(&mut self, model: &Model, b: usize, tag: &str) {
        use wgformer::gpu::profile;
        use wgformer::model::Readback;
        let ctx = model.ctx.clone();
        if !profile::available(&ctx) {
            if !self.json {
                println!("gpt2_profile: the adapter has no timestamps inside passes");
            }
            return;
        }
        let want = if model.argmax_on_device {
            Readback::Argmax
        } else {
            Readback::Logits
        };
        let (prompt, steps) = (64, 3);
        let mut runs = Vec::new();
        for rows in [1, b] {
            let mut seqs: Vec<_> = (0..rows)
                .map(|_| model.kv_reserve(prompt + steps).unwrap().unwrap())
                .collect();
            for (kv, ids) in seqs.iter_mut().zip(token_texts(rows, prompt, 13, 101)) {
                model.prefill(kv, &ids, true).unwrap();
            }
            let mut last = None;
            // the last of a few steps (the first ones warm the pool's pages)
            for _ in 0..steps {
                let mut batch: Vec<_> = seqs.iter_mut().map(|kv| (kv, 464u32)).collect();
                let wants = vec![want; rows];
                let (_, p) =
                    profile::profile(&ctx, || model.decode_select(&mut batch, &wants)).unwrap();
                last = Some(p);
            }
            runs.push((format!("decode B={rows} at {prompt}"), last.unwrap()));
        }
        let texts = token_texts(b, 34, 29, 131);
        let mut last = None;
        for _ in 0..2 {
            let mut seqs: Vec<_> = (0..b)
                .map(|_| model.kv_reserve(34).unwrap().unwrap())
                .collect();
            let mut parts: Vec<_> = seqs
                .iter_mut()
                .zip(&texts)
                .map(|(kv, ids)| (kv, ids.as_slice(), Some(Readback::Argmax)))
                .collect();
            let (_, p) = profile::profile(&ctx, || model.prefill_select(&mut parts)).unwrap();
            last = Some(p);
        }
        runs.push((format!("prefill {b} x T=34"), last.unwrap()));
        for (what, p) in runs {
            let total = p.total_ms();
            let shape = format!("GPT-2 small{tag} {what}");
            if !self.json {
                println!(
                    "{:<26} {:<30} {:10.3} ms in {} dispatches{}",
                    "gpt2_profile",
                    shape,
                    total,
                    p.dispatches.len(),
                    if p.unrecorded > 0 {
                        format!(" ({} more not timed)", p.unrecorded)
                    } else {
                        String::new()
                    }
                );
            }
            self.rows.push(Row {
                kernel: "gpt2_profile".into(),
                shape: format!("{shape}: all kernels"),
                gpu_ms: total,
                rate: p.dispatches.len() as f64,
                unit: "dispatches",
                cpu_ms: None,
                cpu: "",
                speedup_vs_cpu: None,
            });
            for k in p.by_kernel().into_iter().take(12) {
                let kernel = format!(
                    "{} R{} {}x{}x{} ({}x)",
                    k.kernel, k.rows, k.groups.0, k.groups.1, k.groups.2, k.count
                );
                if !self.json {
                    println!(
                        "    {kernel:<52} {:9.3} ms {:5.1} %",
                        k.ms,
                        100.0 * k.ms / total.max(1e-9)
                    );
                }
                self.rows.push(Row {
                    kernel: "gpt2_profile".into(),
                    shape: format!("{shape}: {kernel}"),
                    gpu_ms: k.ms,
                    rate: k.ms / total.max(1e-9),
                    unit: "share",
                    cpu_ms: None,
                    cpu: "",
                    speedup_vs_cpu: None,
                });
            }
        }
    }

    /// Print and record `n` items taking `apart` ms one by one and `together` ms in
    /// one go: the rate together, and the ratio.
    fn report_together(
        &mut self,
        kernel: &str,
        shape: String,
        n: usize,
        unit: &'static str,
        apart: f64,
        together: f64,
    ) {
        if !self.json {
            println!(
                "{kernel:<26} {shape:<26} {apart:10.3} ms one by one, {together:.3} ms together: {:.2}x {unit}",
                apart / together
            );
        }
        self.rows.push(Row {
            kernel: kernel.into(),
            shape,
            gpu_ms: together,
            rate: n as f64 * 1e3 / together,
            unit,
            cpu_ms: None,
            cpu: "",
            speedup_vs_cpu: Some(apart / together),
        });
    }

    /// `n` forwards of `t` tokens each (no statistics): one after the other, then all in
    /// one shared traversal (`Model::forward_many`); forwards/s of each, and the ratio.
    fn forwards_shared(&mut self, model: &Model, n: usize, t: usize, tag: &str) {
        let texts = token_texts(n, t, 13, 101);
        let batch: Vec<(&[u32], usize)> = texts.iter().map(|ids| (ids.as_slice(), 5)).collect();
        model.forward_many(&batch).unwrap();
        let runs = if self.quick { 3 } else { 5 };
        let apart = median(
            (0..runs)
                .map(|_| {
                    let t0 = Instant::now();
                    for ids in &texts {
                        model.forward(ids, 5, false).unwrap();
                    }
                    t0.elapsed().as_secs_f64() * 1e3
                })
                .collect(),
        );
        let together = median(
            (0..runs)
                .map(|_| {
                    let t0 = Instant::now();
                    model.forward_many(&batch).unwrap();
                    t0.elapsed().as_secs_f64() * 1e3
                })
                .collect(),
        );
        let shape = format!("GPT-2 small{tag} {n} x T={t}");
        self.report_together("gpt2_fwd_shared", shape, n, "forwards/s", apart, together);
    }

    fn end_to_end(&mut self, model: &Model, t: usize, tag: &str) {
        let ids = token_texts(1, t, 13, 0).remove(0);
        model.forward(&ids, 5, false).unwrap();
        let runs = if self.quick { 3 } else { 5 };
        let ms = median(
            (0..runs)
                .map(|_| model.forward(&ids, 5, false).unwrap().seconds * 1e3)
                .collect(),
        );
        let flops = 2.0 * t as f64 * model.parameter_count as f64;
        let before = wgformer::gpu::dispatch_count();
        model.forward(&ids, 5, false).unwrap();
        if !self.json {
            println!(
                "{:<26} {:<26} {} dispatches",
                "gpt2_fwd",
                format!("GPT-2 small{tag} T={t}"),
                wgformer::gpu::dispatch_count() - before
            );
        }
        self.report(
            "gpt2_fwd",
            format!("GPT-2 small{tag} T={t}"),
            ms,
            flops,
            "GFLOP/s",
            None,
            "",
        );
    }
}

/// Rows of the batched matrix-vector rows (a full decode batch).
const BATCH: usize = 16;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |f: &str| args.iter().any(|a| a == f);
    let value = |f: &str| {
        args.iter()
            .position(|a| a == f)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let device = match value("--device").as_deref() {
        Some("gpu") => DeviceChoice::Gpu,
        Some("cpu") => DeviceChoice::Cpu,
        _ => DeviceChoice::Auto,
    };
    let ctx = GpuContext::new(&device).expect("no adapter");
    let pl = Pipelines::new(&ctx).expect("pipelines");
    let mut b = Bench {
        ctx,
        pl,
        json: flag("--json"),
        quick: flag("--quick"),
        filter: value("--filter"),
        rows: Vec::new(),
    };
    if !b.json {
        println!(
            "adapter: {} ({}, driver {} {})",
            b.ctx.details.label(),
            b.ctx.details.device_type,
            b.ctx.details.driver,
            b.ctx.details.driver_info
        );
        println!(
            "{:<26} {:<26} {:>13} {:>17} CPU, same run",
            "kernel", "shape", "adapter", "rate"
        );
    }
    let (c, v, nh) = (768, 50304, 12);
    let ts: &[usize] = if b.quick {
        &[16, 128]
    } else {
        &[1, 16, 128, 1024]
    };
    if b.wants("roofline") {
        b.rooflines();
    }
    if b.wants("matmul") {
        b.matmul(1024, 1024, 1024);
        for &t in ts {
            b.matmul(t, c, 3 * c);
            b.matmul(t, c, c);
            b.matmul(t, c, 4 * c);
            b.matmul(t, 4 * c, c);
        }
    }
    if b.wants("matmul_bt") {
        for &t in ts {
            b.matmul_bt(t, c, v);
        }
    }
    if b.wants("matvec") {
        b.matvec(c, 3 * c);
        b.matvec(c, 4 * c);
        b.matvec(4 * c, c);
        b.matvec_bt(c, v);
    }
    if b.wants("layer_norm") {
        for &t in ts {
            b.layer_norm(t, c);
        }
    }
    if b.wants("attention") {
        for &t in ts {
            b.attention(t, c, nh);
        }
    }
    if b.wants("attention_paged") {
        for rows in [1, BATCH / 2, BATCH] {
            for pos in [64, 512] {
                b.decode_attention(rows, pos, c, nh);
            }
        }
    }
    if b.wants("sparse_attention") {
        for &t in ts {
            b.sparse_attention(t, c, nh);
        }
    }
    if b.wants("embedding") {
        for &t in ts {
            b.embedding(t, v, c);
        }
    }
    if b.wants("gpt2_fwd") {
        let ctx = std::sync::Arc::new(GpuContext::new(&device).expect("no adapter"));
        let pl = std::sync::Arc::new(Pipelines::new(&ctx).expect("pipelines"));
        let start = Instant::now();
        let model =
            Model::build(ModelConfig::default(), None, ctx.clone(), pl.clone()).expect("model");
        if !b.json {
            println!(
                "built GPT-2 small ({} parameters) in {:.2} s",
                model.parameter_count,
                start.elapsed().as_secs_f64()
            );
        }
        for t in [16, 128] {
            b.end_to_end(&model, t, "");
        }
        b.forwards_shared(&model, 8, 16, "");
        b.prefill_batch(&model, 8, 32, "");
        b.decode(&model, 64, 64, "");
        for n in [4, 8, 16] {
            b.decode_batch(&model, n, 64, 16, false, "");
        }
        for n in [8, 16] {
            b.decode_batch(&model, n, 64, 16, true, "");
        }
        drop(model);
        // the same model with half-float linear weights (dtype float16)
        let cfg = ModelConfig {
            dtype: wgformer::config::Dtype::Float16,
            ..ModelConfig::default()
        };
        let half = Model::build(cfg, None, ctx, pl).expect("model");
        for t in [16, 128] {
            b.end_to_end(&half, t, " f16");
        }
        b.forwards_shared(&half, 8, 16, " f16");
        b.prefill_batch(&half, 8, 32, " f16");
        b.decode(&half, 64, 64, " f16");
        for n in [4, 8, 16] {
            b.decode_batch(&half, n, 64, 16, false, " f16");
        }
        for n in [8, 16] {
            b.decode_batch(&half, n, 64, 16, true, " f16");
        }
    }
    if b.wants("gpt2_profile") {
        let ctx = std::sync::Arc::new(GpuContext::new(&device).expect("no adapter"));
        let pl = std::sync::Arc::new(Pipelines::new(&ctx).expect("pipelines"));
        for (dtype, tag) in [
            (wgformer::config::Dtype::Float32, ""),
            (wgformer::config::Dtype::Float16, " f16"),
        ] {
            let cfg = ModelConfig {
                dtype,
                ..ModelConfig::default()
            };
            let model = Model::build(cfg, None, ctx.clone(), pl.clone()).expect("model");
            b.profile_steps(&model, BATCH, tag);
        }
    }
    if b.wants("moe") {
        // MoE (E = 8, k = 2) against a dense model with the same active parameters
        // per token (MLP width 2 · 4 · C = 8 · C), 2 layers of GPT-2-small width.
        let ctx = std::sync::Arc::new(GpuContext::new(&device).expect("no adapter"));
        let pl = std::sync::Arc::new(Pipelines::new(&ctx).expect("pipelines"));
        let build = |extra: serde_json::Value| {
            let mut v = serde_json::json!({"n_layer": 2, "seed": 3});
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            Model::build(
                ModelConfig::from_value(v).unwrap(),
                None,
                ctx.clone(),
                pl.clone(),
            )
            .expect("model")
        };
        // GPT-2-small width, and a narrow model (n_embed 256) where fixed costs weigh more
        for (c, nh) in [(768, 12), (256, 4)] {
            let width = serde_json::json!({"n_embed": c, "n_head": nh});
            let with = |extra: serde_json::Value| {
                let mut v = width.clone();
                for (k, x) in extra.as_object().unwrap() {
                    v[k] = x.clone();
                }
                v
            };
            let moe = build(with(
                serde_json::json!({"use_moe": true, "moe_num_experts": 8, "moe_top_k": 2}),
            ));
            let dense = build(with(serde_json::json!({"ffn_hidden_multiplier": 8})));
            for t in [16, 128] {
                let ids: Vec<u32> = (0..t as u32).map(|i| (i * 7919 + 13) % 50257).collect();
                let time = |m: &Model| {
                    m.forward(&ids, 5, false).unwrap();
                    median(
                        (0..5)
                            .map(|_| m.forward(&ids, 5, false).unwrap().seconds * 1e3)
                            .collect(),
                    )
                };
                let (moe_ms, dense_ms) = (time(&moe), time(&dense));
                let flops = 2.0 * t as f64 * dense.parameter_count as f64;
                b.report(
                    "moe_fwd",
                    format!("E=8 k=2 C={c} T={t}"),
                    moe_ms,
                    flops,
                    "GFLOP/s",
                    None,
                    "",
                );
                b.report(
                    "dense_fwd",
                    format!("MLP 8C C={c} T={t}"),
                    dense_ms,
                    flops,
                    "GFLOP/s",
                    None,
                    "",
                );
                if !b.json {
                    println!(
                        "{:<26} {:<26} MoE / dense with the same active parameters: {:.2}x",
                        "",
                        "",
                        moe_ms / dense_ms
                    );
                }
            }
        }
    }
    if b.json {
        let out = serde_json::json!({"adapter": b.ctx.details, "results": b.rows});
        println!("{}", serde_json::to_string_pretty(&out).unwrap());
    }
}
