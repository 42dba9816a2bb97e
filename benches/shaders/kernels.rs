//! Kernel rows: the rooflines (a device copy, one dependent dispatch), then every kernel
//! at GPT-2-small shapes, each checked against its CPU reference before it is timed
//! and reported next to the same operation on the CPU.

use crate::harness::*;
use wgformer::config::Heads;
use wgformer::gpu::buffers::{self, RowChunked};
use wgformer::gpu::f16::pack_f16;
use wgformer::kernels::seen_by;
use wgformer::kernels::{
    attention, embedding, layer_norm, matmul, matmul_bt, matvec, matvec_bt, KernelOp,
};
use wgformer::reference;

impl Bench {
    /// The limits the kernel rows stand next to: a device-to-device copy (the memory
    /// bandwidth a read-once kernel can approach) and the cost of one dependent
    /// dispatch inside a pass (what fusing saves).
    pub(crate) fn rooflines(&mut self) {
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
                layer_norm::encode_layer_norm(pass, &op, 1, 4, layer_norm::Norm::layer(true))
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

    pub(crate) fn matmul(&mut self, m: usize, k: usize, n: usize) {
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
                &wgformer::kernels::HostProduct::new(&a[..rows * k], &b, n, k).epilogue(
                    Some(&bias),
                    None,
                    matmul::BIAS,
                ),
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
                    &wgformer::kernels::LinearBuffers {
                        x: &ab,
                        w: &bb,
                        bias: &biasb,
                        out: &out,
                    },
                    Some(&part).map(|part| (part, rows)),
                );
                let gpu =
                    self.time_gpu(&|pass| matmul::encode_matmul(pass, &op, m, n, k, matmul::BIAS));
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

    pub(crate) fn matmul_bt(&mut self, m: usize, k: usize, n: usize) {
        let a = rand_vec(m * k, 4);
        let b = rand_vec(n * k, 5);
        let rows = m.min(4);
        let chunk = buffers::rows_per_binding(self.ctx.max_binding_bytes(), (k.max(m) * 4) as u64);
        let cpu = self.sgemm_bt_ms(&a, &b, m, n, k);
        let ab = buffers::upload(&self.ctx, "a", &a);
        // f32 wte, then half floats (dtype float16): the reference sees rounded weights
        let mut variants = self.variants("matmul_bt");
        variants.extend(self.variants("matmul_bt_f16"));
        for variant in variants {
            let seen = seen_by(variant, &b);
            let (bt, outs) = self.wte_with_outputs(variant, &b, (n, k), chunk, m);
            let got = matmul_bt::run_matmul_bt(
                &self.ctx,
                &self.pl,
                variant,
                &wgformer::kernels::HostProduct::new(&a[..rows * k], &b, n, k),
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
                    matmul_bt::encode_matmul_bt(pass, op, m, ch.rows, k, 0);
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

    pub(crate) fn matvec(&mut self, k: usize, n: usize) {
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
            let got = matvec::run_matvec(
                &self.ctx,
                &self.pl,
                variant,
                &wgformer::kernels::HostProduct::new(&x, &w, n, k),
            )
            .unwrap();
            let want =
                reference::matmul::matmul(&x, &seen_by(variant, &w), None, None, 1, n, k, false);
            self.check(variant, &got, &want);
            let wb = buffers::upload(&self.ctx, "w", &matmul::store_weights(variant, &w, k, n));
            let op = matvec::matvec_variant_op(
                &self.ctx,
                &self.pl,
                variant,
                &wgformer::kernels::LinearBuffers {
                    x: &xb,
                    w: &wb,
                    bias: &xb,
                    out: &out,
                },
            );
            for rows in [1, BATCH] {
                let gpu = self.time_gpu(&|pass| matvec::encode_matvec(pass, &op, rows, n, k, 0));
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

    pub(crate) fn matvec_bt(&mut self, k: usize, n: usize) {
        let x = rand_vec(k, 14);
        let w = rand_vec(n * k, 15);
        let chunk = buffers::rows_per_binding(self.ctx.max_binding_bytes(), (k * 4) as u64);
        let xs: Vec<f32> = (0..BATCH).flat_map(|_| x.iter().copied()).collect();
        let xb = buffers::upload(&self.ctx, "x", &xs);
        let cpu = self.sgemm_bt_ms(&x, &w, 1, n, k);
        for variant in ["matvec_bt", "matvec_bt_f16", "matvec_bt_f16_subgroup"] {
            if !self.pl.has(variant) {
                continue;
            }
            let seen = seen_by(variant, &w);
            let (wt, outs) = self.wte_with_outputs(variant, &w, (n, k), chunk, BATCH);
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
                &wgformer::kernels::HostProduct::new(&x, &w[..rows * k], rows, k),
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
                        matvec_bt::encode_matvec_bt(pass, op, ch.rows, k, 0, b, 0);
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

    pub(crate) fn layer_norm(&mut self, t: usize, c: usize) {
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
                layer_norm::encode_layer_norm(pass, &op, t, c, layer_norm::Norm::layer(true))
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

    pub(crate) fn attention(&mut self, t: usize, c: usize, nh: usize) {
        let qkv = rand_vec(t * 3 * c, 11);
        let small_t = t.min(64);
        let (want, _) = reference::attention::attention(&qkv[..small_t * 3 * c], Heads::mha(c, nh));
        let cpu = (t <= 128).then(|| {
            self.time_cpu(&mut || {
                std::hint::black_box(reference::attention::attention(&qkv, Heads::mha(c, nh)));
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
                &attention::HostAttention::new(&qkv[..small_t * 3 * c], c, nh),
            )
            .unwrap();
            self.check(variant, &got, &want);
            let op = attention::attention_op(
                &self.ctx,
                &self.pl,
                variant,
                &attention::AttentionBuffers {
                    half: false,
                    head_size: c / nh,
                    qkv: &qb,
                    k: &qb,
                    v: &qb,
                    out: &ob,
                    entropy: &eb,
                    tables: &tables,
                    sparse: None,
                },
            );
            let kv = attention::KvLayout::fused(Heads::mha(c, nh));
            let gpu = self.time_gpu(&|pass| {
                attention::encode_attention(pass, &op, t, Heads::mha(c, nh), kv, 0)
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
    pub(crate) fn decode_attention(&mut self, rows: usize, pos: usize, c: usize, nh: usize) {
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
            reference::kv_store::kv_store(&qkv, &mut k_pool, &mut v_pool, Heads::mha(c, 1), &slots);
            q.extend_from_slice(&qkv[pos * 3 * c..]);
            if len <= 128 {
                want.extend_from_slice(
                    &reference::attention::attention(&qkv, Heads::mha(c, nh)).0[pos * c..],
                );
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
            // the same pools as half floats (`kv_cache_dtype` float16)
            buffers::upload(&self.ctx, "k_pool f16", &pack_f16(&k_pool)),
            buffers::upload(&self.ctx, "v_pool f16", &pack_f16(&v_pool)),
        ];
        let [qb, kb, vb, ob, rb, tb, none, kh, vh] = &bufs;
        for (variant, half) in self
            .variants("attention_paged")
            .into_iter()
            .flat_map(|v| [(v, false), (v, true)])
        {
            if !want.is_empty() && !half {
                let got = attention::run_attention_paged(
                    &self.ctx,
                    &self.pl,
                    variant,
                    &attention::HostAttention::new(&q, c, nh)
                        .paged(&k_pool, &v_pool, &tables, PAGE, 0),
                    &row_of,
                )
                .unwrap();
                self.check(variant, &got, &want);
            }
            let op = attention::attention_paged_op(
                &self.ctx,
                &self.pl,
                variant,
                &attention::PagedBuffers {
                    qkv: qb,
                    k_pool: if half { kh } else { kb },
                    v_pool: if half { vh } else { vb },
                    out: ob,
                    rows: rb,
                    tables: tb,
                    row_offsets: none,
                    cols: none,
                    half,
                    head_size: c / nh,
                },
            );
            let gpu = self.time_gpu(&|pass| {
                attention::encode_attention_paged(pass, &op, rows, Heads::mha(c, nh), PAGE, 0)
            });
            let pool = if half { " f16 pool" } else { "" };
            self.report(
                variant,
                format!("{rows} rows at {pos} C={c} NH={nh}{pool}"),
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
    pub(crate) fn sparse_attention(&mut self, t: usize, c: usize, nh: usize) {
        use wgformer::sparse::BlockLayout;
        let layout = BlockLayout::new(t.max(32), 32, 4, 1, 0);
        let qkv = rand_vec(t * 3 * c, 16);
        let small_t = t.min(96);
        let small = BlockLayout::new(small_t.max(32), 32, 2, 1, 0);
        // the kernels `kernels: "auto"` picks on this adapter
        let hardware = !self.ctx.details.is_software();
        let sparse_variant =
            attention::sparse_attention_variant(&self.ctx, &self.pl, c / nh, 32, hardware);
        let dense_variant = attention::attention_variant(&self.pl, c / nh, hardware);
        let (got, _) = attention::run_attention(
            &self.ctx,
            &self.pl,
            sparse_variant,
            &attention::HostAttention::new(&qkv[..small_t * 3 * c], c, nh).layout(Some(&small)),
        )
        .unwrap();
        let (want, _) = reference::attention::attention_masked(
            &qkv[..small_t * 3 * c],
            Heads::mha(c, nh),
            |i, j| small.allows(i, j),
        );
        self.check("sparse_attention", &got, &want);
        let (qb, ob, eb) = (
            buffers::upload(&self.ctx, "qkv", &qkv),
            buffers::storage(&self.ctx, "out", t * c),
            buffers::storage(&self.ctx, "ent", nh * t),
        );
        let (ro, cols) = wgformer::kernels::attention::upload_layout(&self.ctx, &layout);
        let tables = buffers::storage(&self.ctx, "tables", 1);
        let sparse = attention::attention_op(
            &self.ctx,
            &self.pl,
            sparse_variant,
            &attention::AttentionBuffers {
                half: false,
                head_size: c / nh,
                qkv: &qb,
                k: &qb,
                v: &qb,
                out: &ob,
                entropy: &eb,
                tables: &tables,
                sparse: Some((&ro, &cols)),
            },
        );
        let dense = attention::attention_op(
            &self.ctx,
            &self.pl,
            dense_variant,
            &attention::AttentionBuffers {
                half: false,
                head_size: c / nh,
                qkv: &qb,
                k: &qb,
                v: &qb,
                out: &ob,
                entropy: &eb,
                tables: &tables,
                sparse: None,
            },
        );
        let kv = attention::KvLayout::fused(Heads::mha(c, nh));
        let sparse_ms = self.time_gpu(&|pass| {
            attention::encode_attention(pass, &sparse, t, Heads::mha(c, nh), kv, 32)
        });
        let dense_ms = self.time_gpu(&|pass| {
            attention::encode_attention(pass, &dense, t, Heads::mha(c, nh), kv, 0)
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

    pub(crate) fn embedding(&mut self, t: usize, v: usize, c: usize) {
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
            (Some(&wpe), 1.0),
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
                embedding::encode_embedding(pass, op, t, c, (ch.row_start, ch.rows), (true, 1.0));
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
}

/// What the LM-head rows (`matmul_bt`, `matvec_bt`) share: the CPU's time for
/// `a [m, k] · w [n, k]ᵀ`, and wte stored as kernel `variant` reads it with an output
/// buffer of `rows` rows per chunk.
impl Bench {
    fn sgemm_bt_ms(&self, a: &[f32], w: &[f32], m: usize, n: usize, k: usize) -> f64 {
        let mut c = vec![0.0f32; m * n];
        self.time_cpu(&mut || unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                a.as_ptr(),
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
        })
    }

    fn wte_with_outputs(
        &self,
        variant: &str,
        w: &[f32],
        (n, k): (usize, usize),
        chunk: usize,
        rows: usize,
    ) -> (RowChunked, Vec<wgpu::Buffer>) {
        let wt = matmul_bt::upload_wte(&self.ctx, variant, w, n, k, chunk);
        let outs = wt
            .chunks
            .iter()
            .map(|ch| buffers::storage(&self.ctx, "out", rows * ch.rows))
            .collect();
        (wt, outs)
    }
}
