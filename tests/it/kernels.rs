//! Golden tests: every kernel on the adapter against its f64 CPU reference, with
//! edge shapes (T = 1, sizes that are not multiples of the workgroup or the tile,
//! more than 65,535 workgroups, chunked bindings).

use crate::common;

use common::{assert_close, gpu, rand_vec};

/// The variants of `base` compiled for the test adapter (the portable one always).
fn variants(base: &'static str) -> Vec<&'static str> {
    let g = gpu();
    let all = g.pipelines.variants(base);
    assert!(all.contains(&base));
    eprintln!("{base} variants under test: {all:?}");
    all
}
// The `run_*` helpers take row-major f32 weights and store them as the kernel reads
// them; the reference sees what the kernel sees.
use wgformer::kernels::seen_by;

use wgformer::config::Heads;
use wgformer::kernels::{
    attention, embedding, kv_store, layer_norm, matmul, matmul_bt, matvec, matvec_bt, row_norm,
    swiglu,
};
use wgformer::reference;

#[test]
fn matmul_plain_bias_gelu_accumulate() {
    let g = gpu();
    for &(m, n, k) in &[
        (1, 4, 4),
        (3, 8, 12),
        (9, 68, 20),
        (17, 260, 36),
        (64, 256, 128),
        (128, 96, 64),
        (70, 192, 100),
        // K in several slices (the tiled kernels split it): ragged last slice, K not
        // a multiple of 16, GPT-2's MLP projection at a prefill chunk's size
        (40, 72, 1000),
        (5, 8, 300),
        (16, 768, 3072),
    ] {
        let a = rand_vec(m * k, 1, 1.0);
        let b = rand_vec(k * n, 2, 0.5);
        let bias = rand_vec(n, 3, 0.5);
        let init = rand_vec(m * n, 4, 1.0);
        type Case<'a> = (u32, Option<&'a [f32]>, Option<&'a [f32]>, bool);
        let cases: [Case; 4] = [
            (0, None, None, false),
            (matmul::BIAS, Some(&bias), None, false),
            (matmul::BIAS | matmul::GELU, Some(&bias), None, true),
            (
                matmul::BIAS | matmul::ACCUMULATE,
                Some(&bias),
                Some(&init),
                false,
            ),
        ];
        for variant in variants("matmul") {
            for (flags, bias, init, gelu) in cases {
                let want = reference::matmul::matmul(&a, &b, bias, init, m, n, k, gelu);
                let splits: &[bool] = if matmul::splits_k(variant) {
                    &[false, true]
                } else {
                    &[false]
                };
                for &split in splits {
                    let got = matmul::run_matmul(
                        &g.ctx,
                        &g.pipelines,
                        variant,
                        &wgformer::kernels::HostProduct::new(&a, &b, n, k)
                            .epilogue(bias, init, flags),
                        split,
                    )
                    .unwrap();
                    assert_close(
                        &format!("{variant} {m}x{n}x{k} flags {flags} split {split}"),
                        &got,
                        &want,
                        1e-4,
                        1e-4,
                    );
                }
            }
        }
    }
}

#[test]
fn matmul_exact_gelu_matches_reference() {
    // The encoders' activation (flag GELU_ERF, the epilogue every matmul variant
    // shares), f32 and half-float weights, split K or not; its tanh form would miss
    // the tolerance (checked here), so the flag is what is tested
    let g = gpu();
    let erf = reference::gelu::gelu_erf;
    for &(m, n, k) in &[(3, 8, 12), (17, 260, 36), (40, 72, 1000)] {
        let a = rand_vec(m * k, 31, 1.0);
        let b = rand_vec(k * n, 32, 0.5);
        let bias = rand_vec(n, 33, 0.5);
        let plain = reference::matmul::matmul(&a, &b, Some(&bias), None, m, n, k, false);
        let exact: Vec<f32> = plain.iter().map(|&x| erf(x as f64) as f32).collect();
        let tanh = reference::matmul::matmul(&a, &b, Some(&bias), None, m, n, k, true);
        assert!(reference::compare("tanh form", &tanh, &exact, 1e-4, 1e-4).is_err());
        for variant in variants("matmul").into_iter().chain(variants("matmul_f16")) {
            let seen = seen_by(variant, &b);
            let want: Vec<f32> =
                reference::matmul::matmul(&a, &seen, Some(&bias), None, m, n, k, false)
                    .iter()
                    .map(|&x| erf(x as f64) as f32)
                    .collect();
            let splits: &[bool] = if matmul::splits_k(variant) {
                &[false, true]
            } else {
                &[false]
            };
            for &split in splits {
                let got = matmul::run_matmul(
                    &g.ctx,
                    &g.pipelines,
                    variant,
                    &wgformer::kernels::HostProduct::new(&a, &b, n, k).epilogue(
                        Some(&bias),
                        None,
                        matmul::BIAS | matmul::GELU_ERF,
                    ),
                    split,
                )
                .unwrap();
                let what = format!("{variant} exact gelu {m}x{n}x{k} split {split}");
                assert_close(&what, &got, &want, 1e-4, 1e-4);
            }
        }
    }
}

#[test]
fn matmul_detects_a_wrong_answer() {
    // The comparison itself must be able to fail.
    let g = gpu();
    let (m, n, k) = (4, 8, 8);
    let a = rand_vec(m * k, 1, 1.0);
    let b = rand_vec(k * n, 2, 1.0);
    let got = matmul::run_matmul(
        &g.ctx,
        &g.pipelines,
        "matmul",
        &wgformer::kernels::HostProduct::new(&a, &b, n, k),
        false,
    )
    .unwrap();
    let mut want = reference::matmul::matmul(&a, &b, None, None, m, n, k, false);
    want[5] += 0.01;
    assert!(reference::compare("perturbed", &got, &want, 1e-4, 1e-4).is_err());
}

/// A tiled matmul's rows are the same numbers, bit for bit, whether its step splits K
/// across workgroups (a prefill chunk) or not (a long forward): the unsplit kernel adds
/// the same K slices' sums in the same order. So a prompt prefilled alone or among
/// others, split or not, gives the same keys, values and tokens.
#[test]
fn tiled_matmul_split_k_is_bit_identical_to_unsplit() {
    let g = gpu();
    let tiled: Vec<&str> = variants("matmul")
        .into_iter()
        .chain(variants("matmul_f16"))
        .filter(|v| matmul::splits_k(v))
        .collect();
    assert!(
        !tiled.is_empty(),
        "the tiled kernels compile on every adapter"
    );
    for &(m, n, k) in &[(16, 768, 3072), (7, 72, 1000), (33, 2304, 768)] {
        let (_, slices) = matmul::k_slices(n, k);
        assert!(slices > 1, "{n}x{k} must have several slices");
        let a = rand_vec(m * k, 11, 1.0);
        let b = rand_vec(k * n, 12, 0.5);
        let bias = rand_vec(n, 13, 0.5);
        let init = rand_vec(m * n, 14, 1.0);
        for &variant in &tiled {
            let flags = matmul::BIAS | matmul::GELU | matmul::ACCUMULATE;
            let run = |split| {
                matmul::run_matmul(
                    &g.ctx,
                    &g.pipelines,
                    variant,
                    &wgformer::kernels::HostProduct::new(&a, &b, n, k).epilogue(
                        Some(&bias),
                        Some(&init),
                        flags,
                    ),
                    split,
                )
                .unwrap()
            };
            let (split, whole) = (run(true), run(false));
            let differ = reference::bits_differ(&split, &whole);
            assert_eq!(differ, 0, "{variant} {m}x{n}x{k}: {differ} values differ");
            let seen = seen_by(variant, &b);
            let want =
                reference::matmul::matmul(&a, &seen, Some(&bias), Some(&init), m, n, k, true);
            assert_close(&format!("{variant} {m}x{n}x{k}"), &split, &want, 1e-4, 1e-4);
        }
    }
}

#[test]
fn matmul_bt_chunked_and_odd_widths() {
    let g = gpu();
    for &(m, n, k, chunk) in &[
        (1, 7, 8, 1000),
        (5, 37, 16, 8),
        (16, 300, 32, 64),
        (33, 129, 12, 1000),
        (40, 70, 20, 24),
    ] {
        let a = rand_vec(m * k, 5, 1.0);
        let b = rand_vec(n * k, 6, 1.0);
        for variant in variants("matmul_bt")
            .into_iter()
            .chain(variants("matmul_bt_f16"))
        {
            let seen = seen_by(variant, &b);
            let want = reference::matmul::matmul_bt(&a, &seen, m, n, k);
            let got = matmul_bt::run_matmul_bt(
                &g.ctx,
                &g.pipelines,
                variant,
                &wgformer::kernels::HostProduct::new(&a, &b, n, k),
                chunk,
            )
            .unwrap();
            assert_close(
                &format!("{variant} {m}x{n}x{k} chunk {chunk}"),
                &got,
                &want,
                1e-4,
                1e-4,
            );
        }
    }
}

#[test]
fn matvec_matches_reference() {
    let g = gpu();
    for &(n, k) in &[(4, 4), (68, 20), (300, 64), (1024, 256), (72, 36)] {
        for rows in [1, 5, 18] {
            let x = rand_vec(rows * k, 7, 1.0);
            let w = rand_vec(k * n, 8, 0.5);
            let bias = rand_vec(n, 9, 0.5);
            let init = rand_vec(rows * n, 10, 1.0);
            for variant in variants("matvec") {
                let run = |x: &[f32], bias: Option<&[f32]>, init: Option<&[f32]>, flags| {
                    matvec::run_matvec(
                        &g.ctx,
                        &g.pipelines,
                        variant,
                        &wgformer::kernels::HostProduct::new(x, &w, n, k)
                            .epilogue(bias, init, flags),
                    )
                    .unwrap()
                };
                let got = run(&x, Some(&bias), None, matmul::BIAS | matmul::GELU);
                let want = reference::matmul::matmul(&x, &w, Some(&bias), None, rows, n, k, true);
                assert_close(
                    &format!("{variant} gelu {rows}x{n}x{k}"),
                    &got,
                    &want,
                    1e-4,
                    1e-4,
                );
                // each row is the same number alone as in the batch (batch invariance)
                for r in 0..rows {
                    let alone = run(
                        &x[r * k..(r + 1) * k],
                        Some(&bias),
                        None,
                        matmul::BIAS | matmul::GELU,
                    );
                    assert_eq!(
                        alone,
                        got[r * n..(r + 1) * n],
                        "{variant} row {r} of {rows}"
                    );
                }
                let got = run(&x, None, Some(&init), matmul::ACCUMULATE);
                let want = reference::matmul::matmul(&x, &w, None, Some(&init), rows, n, k, false);
                assert_close(
                    &format!("{variant} acc {rows}x{n}x{k}"),
                    &got,
                    &want,
                    1e-4,
                    1e-4,
                );
            }
        }
    }
}

#[test]
fn swiglu_gates_the_up_half_with_silu_of_the_gate_half() {
    let g = gpu();
    // one row; rows past a workgroup and H not a multiple of the workgroup; large gate
    // values (silu's tails: e^-g overflows to inf for g < -88 and gives -0)
    for &(t, h) in &[(1, 4), (9, 44), (70, 2048)] {
        let mut gu = rand_vec(t * 2 * h, 41, 4.0);
        gu[0] = -120.0;
        gu[1] = 95.0;
        let got = swiglu::run_swiglu(&g.ctx, &g.pipelines, &gu, h, None, 0).unwrap();
        let want = reference::swiglu::swiglu(&gu, h);
        assert_close(&format!("swiglu {t}x{h}"), &got, &want, 1e-6, 1e-5);
        // Gemma's gate: GELU for SiLU
        let gelu_gate = swiglu::GELU_GATE;
        let geglu = swiglu::run_swiglu(&g.ctx, &g.pipelines, &gu, h, None, gelu_gate).unwrap();
        let want_geglu = reference::swiglu::geglu(&gu, h);
        assert_close(&format!("geglu {t}x{h}"), &geglu, &want_geglu, 1e-6, 1e-5);
        assert!(reference::compare("silu", &geglu, &want, 1e-6, 1e-5).is_err());
        // scaled by each row's sigmoid gate (a shared expert's), which must matter
        let gate = rand_vec(t * 4, 43, 3.0);
        let scaled = swiglu::run_swiglu(&g.ctx, &g.pipelines, &gu, h, Some(&gate), 0).unwrap();
        let want_scaled = reference::swiglu::swiglu_scaled(&gu, h, &gate);
        assert_close(
            &format!("scaled swiglu {t}x{h}"),
            &scaled,
            &want_scaled,
            1e-6,
            1e-5,
        );
        assert!(reference::compare("unscaled", &scaled, &want, 1e-6, 1e-5).is_err());
        // gate and up swapped would not pass
        let swapped: Vec<f32> = gu
            .chunks(2 * h)
            .flat_map(|r| r[h..].iter().chain(&r[..h]).copied().collect::<Vec<_>>())
            .collect();
        let wrong = reference::swiglu::swiglu(&swapped, h);
        assert!(reference::compare("swapped", &got, &wrong, 1e-6, 1e-5).is_err());
    }
}

#[test]
fn rms_norm_on_both_kernel_classes() {
    // RMSNorm is the norm kernels with flag NORM_RMS: no mean subtracted, no bias; rows
    // with a large mean show that none is (a LayerNorm of them would differ)
    let g = gpu();
    for &(t, c, eps) in &[
        (1, 4, 1e-5),
        (3, 64, 1e-6),
        (65, 768, 1e-5),
        (130, 36, 1e-6),
        (2, 2048, 1e-5),
    ] {
        let x: Vec<f32> = rand_vec(t * c, 21, 2.0).iter().map(|v| v + 1.5).collect();
        let w = rand_vec(c, 22, 1.0);
        let want = reference::layer_norm::rms_norm(&x, &w, c, eps as f64);
        let layer = reference::layer_norm::layer_norm(&x, &w, None, c);
        assert!(want.iter().zip(&layer).any(|(a, b)| (a - b).abs() > 0.1));
        for variant in variants("layer_norm") {
            let got =
                layer_norm::run_rms_norm(&g.ctx, &g.pipelines, variant, &x, &w, c, eps).unwrap();
            assert_close(
                &format!("{variant} rms {t}x{c} eps {eps}"),
                &got,
                &want,
                1e-4,
                1e-4,
            );
            // flag NORM_ADD: added into y (Gemma's post-norm and its residual add)
            let y = rand_vec(t * c, 23, 3.0);
            let added =
                layer_norm::run_rms_norm_add(&g.ctx, &g.pipelines, variant, (&x, &y), &w, c, eps)
                    .unwrap();
            let want_added: Vec<f32> = y.iter().zip(&want).map(|(a, b)| a + b).collect();
            let name = format!("{variant} rms added {t}x{c}");
            assert_close(&name, &added, &want_added, 1e-4, 1e-4);
        }
    }
}

#[test]
fn layer_norm_with_and_without_bias() {
    let g = gpu();
    for &(t, c) in &[(1, 4), (3, 64), (65, 768), (130, 36), (2, 1028), (1, 3076)] {
        let x = rand_vec(t * c, 11, 3.0);
        let w = rand_vec(c, 12, 1.0);
        let b = rand_vec(c, 13, 1.0);
        for variant in variants("layer_norm") {
            let got =
                layer_norm::run_layer_norm(&g.ctx, &g.pipelines, variant, &x, &w, Some(&b), c)
                    .unwrap();
            assert_close(
                &format!("{variant} {t}x{c}"),
                &got,
                &reference::layer_norm::layer_norm(&x, &w, Some(&b), c),
                1e-4,
                1e-4,
            );
            let got =
                layer_norm::run_layer_norm(&g.ctx, &g.pipelines, variant, &x, &w, None, c).unwrap();
            assert_close(
                &format!("{variant} nobias {t}x{c}"),
                &got,
                &reference::layer_norm::layer_norm(&x, &w, None, c),
                1e-4,
                1e-4,
            );
        }
    }
}

#[test]
fn embedding_across_chunks() {
    let g = gpu();
    let (v, c, ctxlen) = (50, 12, 20);
    let wte = rand_vec(v * c, 14, 1.0);
    let wpe = rand_vec(ctxlen * c, 15, 1.0);
    let ids: Vec<u32> = vec![0, 49, 7, 8, 23, 24, 25, 3, 48, 12, 0, 31, 44];
    let zeros = vec![0.0; wpe.len()];
    for variant in ["embedding", "embedding_f16"] {
        let seen = seen_by(variant, &wte);
        // wte split in chunks, with the learned positions; and Gemma's token embedding
        // scaled (by √hidden) without a position table
        for (chunk, scale) in [(4, 1.0), (8, 1.0), (24, 1.0), (1000, 1.0), (8, 8.0)] {
            let table = (scale == 1.0).then_some(&wpe[..]);
            let want: Vec<f32> = match table {
                Some(t) => reference::embedding::embedding(&ids, &seen, t, c, 0),
                None => reference::embedding::embedding(&ids, &seen, &zeros, c, 0)
                    .iter()
                    .map(|v| v * scale)
                    .collect(),
            };
            let pos: Vec<u32> = (0..ids.len() as u32).collect();
            let got = embedding::run_embedding(
                &g.ctx,
                &g.pipelines,
                variant,
                &ids,
                &pos,
                &wte,
                (table, scale),
                c,
                chunk,
            )
            .unwrap();
            let name = format!("{variant} chunk {chunk} scale {scale}");
            assert_close(&name, &got, &want, 1e-6, 0.0);
        }
    }
}

#[test]
fn embedding_more_than_65535_workgroups() {
    // T·C/4 = 4096·4096/4 invocations → 65,536 workgroups of 64: folded into 2-D.
    let g = gpu();
    let (v, c, t) = (16, 4096, 4096);
    let wte = rand_vec(v * c, 16, 1.0);
    let wpe = rand_vec(t * c, 17, 1.0);
    let ids: Vec<u32> = (0..t as u32).map(|i| (i * 7) % v as u32).collect();
    let pos: Vec<u32> = (0..t as u32).collect();
    let got = embedding::run_embedding(
        &g.ctx,
        &g.pipelines,
        "embedding",
        &ids,
        &pos,
        &wte,
        (Some(&wpe), 1.0),
        c,
        1000,
    )
    .unwrap();
    let want = reference::embedding::embedding(&ids, &wte, &wpe, c, 0);
    assert_close("embedding 65536 workgroups", &got, &want, 1e-6, 0.0);
}

#[test]
fn embedding_at_each_rows_own_position() {
    // a decode batch: every row at its generation's position
    let g = gpu();
    let (v, c, ctxlen) = (50, 12, 20);
    let wte = rand_vec(v * c, 14, 1.0);
    let wpe = rand_vec(ctxlen * c, 15, 1.0);
    let ids: Vec<u32> = vec![3, 49, 7, 0];
    let pos: Vec<u32> = vec![19, 0, 5, 5];
    let got = embedding::run_embedding(
        &g.ctx,
        &g.pipelines,
        "embedding",
        &ids,
        &pos,
        &wte,
        (Some(&wpe), 1.0),
        c,
        1000,
    )
    .unwrap();
    let want: Vec<f32> = ids
        .iter()
        .zip(&pos)
        .flat_map(|(&id, &p)| reference::embedding::embedding(&[id], &wte, &wpe, c, p as usize))
        .collect();
    assert_close("embedding positions", &got, &want, 1e-6, 0.0);
}

#[test]
fn row_norm_matches_reference() {
    let g = gpu();
    let (t, c) = (67, 40);
    let x = rand_vec(t * c, 20, 2.0);
    let got = row_norm::run_row_norm(&g.ctx, &g.pipelines, &x, c).unwrap();
    assert_close(
        "row_norm",
        &got,
        &reference::row_norm::row_norm(&x, c),
        1e-5,
        1e-5,
    );
}

#[test]
fn exact_gelu_reference_known_values() {
    use reference::gelu::gelu_erf;
    assert_eq!(gelu_erf(0.0), 0.0);
    // x Φ(x): Φ(1) = 0.841344746068543, Φ(-3) = 0.00134989803163
    assert!((gelu_erf(1.0) - 0.841_344_746_068_543).abs() < 1e-12);
    assert!((gelu_erf(-3.0) - -0.004_049_694_095).abs() < 1e-10);
    assert!((gelu_erf(40.0) - 40.0).abs() < 1e-12);
}

#[test]
fn gelu_reference_known_values() {
    use reference::gelu::gelu;
    assert_eq!(gelu(0.0), 0.0);
    assert!((gelu(1.0) - 0.841_191_990_607_477).abs() < 1e-12);
    assert!((gelu(-3.0) - -0.003_637_392_0).abs() < 1e-7);
    assert!((gelu(40.0) - 40.0).abs() < 1e-12);
}

#[test]
fn kv_store_writes_rows_to_their_slots() {
    let g = gpu();
    let (c, rows) = (16, 40);
    let slots = [17u32, 3, 39, 18];
    let qkv = rand_vec(slots.len() * 3 * c, 21, 1.0);
    let (k, v) =
        kv_store::run_kv_store(&g.ctx, &g.pipelines, &qkv, Heads::mha(c, 1), &slots, rows).unwrap();
    let (mut wk, mut wv) = (vec![0.0; rows * c], vec![0.0; rows * c]);
    reference::kv_store::kv_store(&qkv, &mut wk, &mut wv, Heads::mha(c, 1), &slots);
    assert_eq!(k, wk);
    assert_eq!(v, wv);
    assert!(k[17 * c..18 * c].iter().any(|&x| x != 0.0));
}

/// Every LM-head kernel compiled here for rows of `k` values: f32 and half-float wte,
/// software and hardware (the subgroup kernel needs `k % 8 == 0`).
fn lm_head_variants(k: usize) -> Vec<&'static str> {
    let pl = &gpu().pipelines;
    let mut vs = variants("matvec_bt");
    vs.extend(pl.variants("matvec_bt_f16"));
    vs.retain(|&v| v != "matvec_bt_f16_subgroup" || matvec_bt::best_f16_variant(pl, k) == v);
    assert!(vs.contains(&"matvec_bt_groups") && vs.contains(&"matvec_bt_f16_groups"));
    vs
}

#[test]
fn matvec_bt_rows_of_many() {
    let g = gpu();
    for &(total, row0, rows, n, k) in &[
        (1, 0, 1, 5, 8),
        (7, 6, 1, 131, 64),
        (3, 1, 2, 1000, 768),
        (9, 2, 7, 37, 72),
        (6, 0, 6, 64, 16),
        (20, 1, 18, 40, 32),
    ] {
        let a = rand_vec(total * k, 23, 1.0);
        let b = rand_vec(n * k, 24, 1.0);
        for variant in lm_head_variants(k) {
            let seen = seen_by(variant, &b);
            let got = matvec_bt::run_matvec_bt(
                &g.ctx,
                &g.pipelines,
                variant,
                &wgformer::kernels::HostProduct::new(&a, &b, n, k),
                row0,
                rows,
            )
            .unwrap();
            let want =
                reference::matmul::matmul_bt(&a[row0 * k..(row0 + rows) * k], &seen, rows, n, k);
            assert_close(
                &format!("{variant} rows {row0}+{rows} n {n} k {k}"),
                &got,
                &want,
                1e-4,
                1e-4,
            );
            // each row is the same number alone as in the batch (batch invariance)
            for r in 0..rows {
                let alone = matvec_bt::run_matvec_bt(
                    &g.ctx,
                    &g.pipelines,
                    variant,
                    &wgformer::kernels::HostProduct::new(&a, &b, n, k),
                    row0 + r,
                    1,
                )
                .unwrap();
                assert_eq!(
                    alone,
                    got[r * n..(r + 1) * n],
                    "{variant} row {r} of {rows}"
                );
            }
        }
    }
}

/// A paged pool holding the keys and values of `lens.len()` sequences: each sequence
/// gets a random qkv, its rows scattered over pages in a shuffled order.
struct PagedCase {
    qkv: Vec<Vec<f32>>,
    k_pool: Vec<f32>,
    v_pool: Vec<f32>,
    tables: Vec<Vec<u32>>,
}

fn paged_case(lens: &[usize], c: usize, page: usize, seed: u64) -> PagedCase {
    let pages: usize = lens.iter().map(|l| l.div_ceil(page)).sum::<usize>() + 2;
    // a fixed shuffle of the pages: 0, 2, 4, ..., then 1, 3, ...
    let mut order: Vec<u32> = (0..pages as u32).filter(|p| p % 2 == 0).collect();
    order.extend((0..pages as u32).filter(|p| p % 2 == 1));
    let mut next = order.into_iter();
    let (mut k_pool, mut v_pool) = (vec![0.0; pages * page * c], vec![0.0; pages * page * c]);
    let mut qkv = Vec::new();
    let mut tables = Vec::new();
    for (i, &len) in lens.iter().enumerate() {
        let q = rand_vec(len * 3 * c, seed + i as u64, 1.5);
        let table: Vec<u32> = (0..len.div_ceil(page))
            .map(|_| next.next().unwrap())
            .collect();
        let slots: Vec<u32> = (0..len)
            .map(|j| table[j / page] * page as u32 + (j % page) as u32)
            .collect();
        reference::kv_store::kv_store(&q, &mut k_pool, &mut v_pool, Heads::mha(c, 1), &slots);
        qkv.push(q);
        tables.push(table);
    }
    PagedCase {
        qkv,
        k_pool,
        v_pool,
        tables,
    }
}

#[test]
fn paged_attention_rows_of_different_sequences() {
    // A decode batch: the last row of each sequence, each over its own pages, equals
    // attention over that sequence alone; dense and block-sparse.
    // Software and hardware kernels; the long sequences take the workgroup kernel
    // through several chunks of keys.
    let g = gpu();
    for &(c, nh, page, long) in &[
        (32, 4, 16, 40),
        (64, 1, 4, 40),
        (128, 2, 16, 40),
        (48, 3, 8, 40),
        (128, 1, 16, 40),
        (64, 2, 16, 1100),
        // the longest rows llvmpipe's loop limit allows for heads of 128 and 64
        // (`gpu::context::llvmpipe_max_context`; past ~1.4x these it cut them short)
        (128, 1, 16, 674),
        (64, 1, 16, 1336),
        // heads of 256 and 160 (Gemma's 256: the kernels' wide pipelines)
        (256, 1, 16, 40),
        (480, 3, 8, 300),
    ] {
        let lens = [1, 17, long, 5, 33];
        let case = paged_case(&lens, c, page, 31);
        for (sparse, variant) in [false, true].into_iter().flat_map(|s| {
            attention_variants("attention_paged", c / nh)
                .into_iter()
                .map(move |v| (s, v))
        }) {
            let layout = wgformer::sparse::BlockLayout::new(long.next_multiple_of(64), 4, 2, 1, 3);
            let mut q = Vec::new();
            let mut rows = Vec::new();
            let mut flat = Vec::new();
            let mut want = Vec::new();
            for (s, &len) in lens.iter().enumerate() {
                let qs = &case.qkv[s];
                q.extend_from_slice(&qs[(len - 1) * 3 * c..len * 3 * c]);
                rows.push([flat.len() as u32, (len - 1) as u32]);
                flat.extend_from_slice(&case.tables[s]);
                let (out, _) = if sparse {
                    reference::attention::attention_masked(qs, Heads::mha(c, nh), |i, j| {
                        layout.allows(i, j)
                    })
                } else {
                    reference::attention::attention(qs, Heads::mha(c, nh))
                };
                want.extend_from_slice(&out[(len - 1) * c..len * c]);
            }
            let got = attention::run_attention_paged(
                &g.ctx,
                &g.pipelines,
                variant,
                &attention::HostAttention::new(&q, c, nh)
                    .paged(&case.k_pool, &case.v_pool, &flat, page, 0)
                    .layout(sparse.then_some(&layout)),
                &rows,
            )
            .unwrap();
            assert_close(
                &format!("{variant} c{c} nh{nh} page{page} sparse {sparse}"),
                &got,
                &want,
                1e-4,
                1e-4,
            );
        }
    }
}

#[test]
fn forward_attention_kernels_read_a_paged_prefill_chunk() {
    // every dense and block-sparse kernel of the forward, reading one sequence's keys
    // and values through its page table (a prefill chunk at rows 16..40, and one at an
    // unaligned start), equals attention over the whole sequence
    let g = gpu();
    for (c, nh) in [(128, 2), (512, 2)] {
        prefill_chunk_case(g, c, nh);
    }
}

/// One case of `forward_attention_kernels_read_a_paged_prefill_chunk`.
fn prefill_chunk_case(g: &common::Gpu, c: usize, nh: usize) {
    let (page, len) = (16, 40);
    let case = paged_case(&[len], c, page, 78);
    let qs = &case.qkv[0];
    let layout = wgformer::sparse::BlockLayout::new(64, 8, 2, 1, 3);
    for sparse in [false, true] {
        let (want, _) = if sparse {
            reference::attention::attention_masked(qs, Heads::mha(c, nh), |i, j| {
                layout.allows(i, j)
            })
        } else {
            reference::attention::attention(qs, Heads::mha(c, nh))
        };
        for variant in attention_variants(
            if sparse {
                "sparse_attention"
            } else {
                "attention"
            },
            c / nh,
        ) {
            for start in [16, 13] {
                if !attention::runs_chunk(&g.ctx, variant, layout.block, start) {
                    continue; // the model gives such chunks to the portable kernel
                }
                let got = attention::run_attention(
                    &g.ctx,
                    &g.pipelines,
                    variant,
                    &attention::HostAttention::new(&qs[start * 3 * c..], c, nh)
                        .paged(&case.k_pool, &case.v_pool, &case.tables[0], page, start)
                        .layout(sparse.then_some(&layout)),
                )
                .map(|(out, _)| out)
                .unwrap();
                assert_close(
                    &format!("{variant} c{c} nh{nh} paged chunk from {start}"),
                    &got,
                    &want[start * c..],
                    1e-4,
                    1e-4,
                );
            }
        }
    }
}

#[test]
fn attention_kernels_read_a_half_float_pool() {
    // A pool of `kv_cache_dtype` float16 (two half floats a word): every paged kernel
    // (a decode batch's rows) and every forward kernel reading a prefill chunk through
    // the page table, dense and block-sparse, over keys and values rounded to half
    // floats, equals attention over those rounded keys and values. Pool rows of an odd
    // number of vec4s (c = 36) put two rows' halves in one word; heads of 64 take the
    // subgroup kernels.
    let g = gpu();
    let round = wgformer::gpu::f16::round_to_f16;
    for (c, nh, page) in [(64, 2, 16), (36, 3, 8), (128, 1, 16), (128, 2, 16)] {
        let lens = [1, 17, 40, 5];
        let mut case = paged_case(&lens, c, page, 91);
        for q in case.qkv.iter_mut() {
            for row in q.chunks_mut(3 * c) {
                let kv = round(&row[c..]);
                row[c..].copy_from_slice(&kv);
            }
        }
        case.k_pool = round(&case.k_pool);
        case.v_pool = round(&case.v_pool);
        let layout = wgformer::sparse::BlockLayout::new(64, 8, 2, 1, 3);
        for sparse in [false, true] {
            let reference = |qs: &[f32]| {
                if sparse {
                    reference::attention::attention_masked(qs, Heads::mha(c, nh), |i, j| {
                        layout.allows(i, j)
                    })
                    .0
                } else {
                    reference::attention::attention(qs, Heads::mha(c, nh)).0
                }
            };
            let layout = sparse.then_some(&layout);
            // a decode batch: each sequence's last row over its pages
            let (mut q, mut rows, mut flat, mut want) = (vec![], vec![], vec![], vec![]);
            for (s, &len) in lens.iter().enumerate() {
                let qs = &case.qkv[s];
                q.extend_from_slice(&qs[(len - 1) * 3 * c..len * 3 * c]);
                rows.push([flat.len() as u32, (len - 1) as u32]);
                flat.extend_from_slice(&case.tables[s]);
                want.extend_from_slice(&reference(qs)[(len - 1) * c..len * c]);
            }
            for variant in attention_variants("attention_paged", c / nh) {
                let h = attention::HostAttention::new(&q, c, nh)
                    .paged(&case.k_pool, &case.v_pool, &flat, page, 0)
                    .layout(layout)
                    .half(true);
                let got = attention::run_attention_paged(&g.ctx, &g.pipelines, variant, &h, &rows)
                    .unwrap();
                let name = format!("{variant} c{c} nh{nh} sparse {sparse}, half pool");
                assert_close(&name, &got, &want, 1e-4, 1e-4);
            }
            // a prefill chunk: rows 13.. of the 40-token sequence
            let (qs, start) = (&case.qkv[2], 13);
            let want = reference(qs);
            let op = if sparse {
                "sparse_attention"
            } else {
                "attention"
            };
            for variant in attention_variants(op, c / nh) {
                if !attention::runs_chunk(&g.ctx, variant, layout.map_or(0, |l| l.block), start) {
                    continue; // the model gives such chunks to the portable kernel
                }
                let h = attention::HostAttention::new(&qs[start * 3 * c..], c, nh)
                    .paged(&case.k_pool, &case.v_pool, &case.tables[2], page, start)
                    .layout(layout)
                    .half(true);
                let (got, _) = attention::run_attention(&g.ctx, &g.pipelines, variant, &h).unwrap();
                let name = format!("{variant} c{c} nh{nh} chunk from {start}, half pool");
                assert_close(&name, &got, &want[start * c..], 1e-4, 1e-4);
            }
        }
    }
}

#[test]
fn paged_attention_prefill_chunk_of_one_sequence() {
    // Rows 12..30 of one sequence (a prefill chunk after 12 cached positions) equal the
    // same rows of attention over the whole sequence; heads of 32 and 64.
    let g = gpu();
    for (c, nh, page, len) in [(64, 2, 16, 30), (128, 2, 8, 30)] {
        let case = paged_case(&[len], c, page, 77);
        let qs = &case.qkv[0];
        let rows: Vec<[u32; 2]> = (12..len as u32).map(|p| [0, p]).collect();
        let (want, _) = reference::attention::attention(qs, Heads::mha(c, nh));
        for variant in attention_variants("attention_paged", c / nh) {
            let got = attention::run_attention_paged(
                &g.ctx,
                &g.pipelines,
                variant,
                &attention::HostAttention::new(&qs[12 * 3 * c..], c, nh).paged(
                    &case.k_pool,
                    &case.v_pool,
                    &case.tables[0],
                    page,
                    0,
                ),
                &rows,
            )
            .unwrap();
            assert_close(
                &format!("{variant} prefill chunk, heads of {}", c / nh),
                &got,
                &want[12 * c..],
                1e-4,
                1e-4,
            );
        }
    }
}

/// The kernels of attention op `op` compiled for this adapter that apply to head size
/// `hs` (the subgroup variants only run head size 64), the portable one first.
fn attention_variants(op: &str, hs: usize) -> Vec<&'static str> {
    gpu()
        .pipelines
        .variants(op)
        .into_iter()
        .filter(|v| hs == 64 || !v.ends_with("_subgroup"))
        .collect()
}

#[test]
fn attention_causal_with_entropy() {
    let g = gpu();
    for &(t, c, nh) in &[
        (1, 16, 2),
        (5, 32, 4),
        (70, 64, 4),
        (33, 48, 3),
        (20, 256, 2),
        (1, 128, 2),
        (5, 64, 1),
        (37, 192, 3),
        (70, 128, 2),
        // heads of 256 and 160: the wide pipelines (more than 128)
        (20, 512, 2),
        (37, 480, 3),
        (1, 256, 1),
    ] {
        let qkv = rand_vec(t * 3 * c, 18, 1.5);
        let (want_out, want_ent) = reference::attention::attention(&qkv, Heads::mha(c, nh));
        for variant in attention_variants("attention", c / nh) {
            let (out, ent) = attention::run_attention(
                &g.ctx,
                &g.pipelines,
                variant,
                &attention::HostAttention::new(&qkv, c, nh),
            )
            .unwrap();
            assert_close(
                &format!("{variant} out t{t} c{c} nh{nh}"),
                &out,
                &want_out,
                1e-4,
                1e-4,
            );
            assert_close(
                &format!("{variant} entropy t{t} c{c} nh{nh}"),
                &ent,
                &want_ent,
                1e-4,
                1e-4,
            );
        }
    }
    // head size 64 also runs the subgroup kernel where the adapter has subgroups
    assert!(
        attention_variants("attention", 64).contains(&"attention_subgroup")
            || !g.pipelines.has("attention_subgroup")
    );
}

#[test]
fn attention_is_causal() {
    // Changing a later token must not change earlier outputs.
    let g = gpu();
    let (t, c, nh) = (12, 128, 2);
    let qkv = rand_vec(t * 3 * c, 19, 1.0);
    let mut changed = qkv.clone();
    for v in &mut changed[(t - 1) * 3 * c..] {
        *v += 1.0;
    }
    for variant in attention_variants("attention", 64) {
        let (a, _) = attention::run_attention(
            &g.ctx,
            &g.pipelines,
            variant,
            &attention::HostAttention::new(&qkv, c, nh),
        )
        .unwrap();
        let (b, _) = attention::run_attention(
            &g.ctx,
            &g.pipelines,
            variant,
            &attention::HostAttention::new(&changed, c, nh),
        )
        .unwrap();
        assert_eq!(a[..(t - 1) * c], b[..(t - 1) * c], "{variant}");
        assert_ne!(a[(t - 1) * c..], b[(t - 1) * c..], "{variant}");
    }
}

#[test]
fn attention_over_a_kv_cache_equals_attention_over_the_whole_sequence() {
    // The last `t` queries of a sequence, attending to cached keys/values of every
    // earlier position, give the same rows as attention over the whole sequence.
    let g = gpu();
    for &(total, t, c, nh) in &[
        (9, 1, 32, 4),
        (20, 5, 64, 2),
        (40, 40, 48, 3),
        (23, 1, 128, 2),
        (30, 11, 64, 1),
        (17, 17, 192, 3),
    ] {
        let qkv = rand_vec(total * 3 * c, 22, 1.5);
        let (want_out, want_ent) = reference::attention::attention(&qkv, Heads::mha(c, nh));
        let (mut kc, mut vc) = (vec![0.0; (total + 3) * c], vec![0.0; (total + 3) * c]);
        let all: Vec<u32> = (0..total as u32).collect();
        reference::kv_store::kv_store(&qkv, &mut kc, &mut vc, Heads::mha(c, 1), &all);
        let pos = total - t;
        let want_ent_rows: Vec<f32> = (0..nh)
            .flat_map(|h| want_ent[h * total + pos..(h + 1) * total].to_vec())
            .collect();
        for variant in attention_variants("attention", c / nh) {
            let (out, ent) = attention::run_attention(
                &g.ctx,
                &g.pipelines,
                variant,
                &attention::HostAttention::new(&qkv[pos * 3 * c..], c, nh).cached(&kc, &vc, pos),
            )
            .unwrap();
            assert_close(
                &format!("{variant} cached total {total} t {t}"),
                &out,
                &want_out[pos * c..],
                1e-4,
                1e-4,
            );
            assert_close(
                &format!("{variant} cached entropy"),
                &ent,
                &want_ent_rows,
                1e-4,
                1e-4,
            );
        }
    }
}

#[test]
fn sparse_attention_with_every_causal_block_equals_dense() {
    let g = gpu();
    for &(t, c, nh, block) in &[
        (1, 16, 2, 4),
        (37, 32, 4, 8),
        (64, 48, 3, 16),
        (45, 128, 2, 8),
        (70, 64, 1, 32),
    ] {
        let qkv = rand_vec(t * 3 * c, 25, 1.5);
        let layout = wgformer::sparse::BlockLayout::dense_causal(t.max(block), block);
        let (want_out, want_ent) = reference::attention::attention(&qkv, Heads::mha(c, nh));
        for variant in attention_variants("sparse_attention", c / nh) {
            if !attention::runs_chunk(&g.ctx, variant, block, 0) {
                continue;
            }
            let (out, ent) = attention::run_attention(
                &g.ctx,
                &g.pipelines,
                variant,
                &attention::HostAttention::new(&qkv, c, nh).layout(Some(&layout)),
            )
            .unwrap();
            assert_close(
                &format!("{variant}=dense t{t} block{block}"),
                &out,
                &want_out,
                1e-4,
                1e-4,
            );
            assert_close("sparse=dense entropy", &ent, &want_ent, 1e-4, 1e-4);
        }
    }
}

#[test]
fn sparse_attention_matches_masked_reference() {
    use wgformer::sparse::BlockLayout;
    let g = gpu();
    for (t, c, nh, layout) in [
        (70, 32, 2, BlockLayout::new(70, 8, 2, 1, 0)),
        (64, 32, 2, BlockLayout::new(64, 4, 1, 2, 3)),
        (33, 32, 2, BlockLayout::new(40, 5, 1, 0, 0)),
        (
            50,
            32,
            2,
            BlockLayout::from_rule(64, 8, |qb, kb| qb == kb || (qb + kb) % 3 == 0),
        ),
        (90, 128, 2, BlockLayout::new(96, 8, 2, 1, 3)),
        (61, 64, 1, BlockLayout::new(64, 16, 1, 1, 0)),
    ] {
        let qkv = rand_vec(t * 3 * c, 26, 1.5);
        let (want_out, want_ent) =
            reference::attention::attention_masked(&qkv, Heads::mha(c, nh), |i, j| {
                layout.allows(i, j)
            });
        let (dense, _) = reference::attention::attention(&qkv, Heads::mha(c, nh));
        for variant in attention_variants("sparse_attention", c / nh) {
            if !attention::runs_chunk(&g.ctx, variant, layout.block, 0) {
                continue;
            }
            let (out, ent) = attention::run_attention(
                &g.ctx,
                &g.pipelines,
                variant,
                &attention::HostAttention::new(&qkv, c, nh).layout(Some(&layout)),
            )
            .unwrap();
            assert_close(
                &format!("{variant} t{t} {layout:?}"),
                &out,
                &want_out,
                1e-4,
                1e-4,
            );
            assert_close("sparse entropy", &ent, &want_ent, 1e-4, 1e-4);
            // and it differs from dense where the layout drops blocks
            assert!(out.iter().zip(&dense).any(|(a, b)| (a - b).abs() > 1e-3));
        }
    }
}

#[test]
fn half_weight_variants_match_reference_on_rounded_weights() {
    use wgformer::gpu::f16::round_to_f16;
    let g = gpu();
    let mut variants = vec!["matmul_f16", "matmul_f16_tiled"];
    if g.pipelines.has("matmul_f16_subgroup") {
        variants.push("matmul_f16_subgroup");
    }
    let shapes = [
        (1, 4, 4),
        (9, 68, 20),
        (17, 260, 36),
        (64, 256, 128),
        (1, 8, 4),
        (3, 72, 36),
    ];
    for &(m, n, k) in &shapes {
        let a = rand_vec(m * k, 31, 1.0);
        let b = rand_vec(k * n, 32, 0.5);
        let bias = rand_vec(n, 33, 0.5);
        let init = rand_vec(m * n, 34, 1.0);
        let rounded = round_to_f16(&b);
        for &variant in &variants {
            let got = matmul::run_matmul(
                &g.ctx,
                &g.pipelines,
                variant,
                &wgformer::kernels::HostProduct::new(&a, &b, n, k).epilogue(
                    Some(&bias),
                    Some(&init),
                    matmul::BIAS | matmul::ACCUMULATE,
                ),
                true,
            )
            .unwrap();
            let want =
                reference::matmul::matmul(&a, &rounded, Some(&bias), Some(&init), m, n, k, false);
            assert_close(&format!("{variant} {m}x{n}x{k}"), &got, &want, 1e-4, 1e-4);
            // and it is not the f32 result: the weights really are rounded
            let exact = reference::matmul::matmul(&a, &b, Some(&bias), Some(&init), m, n, k, false);
            assert!(m * n < 64 || got.iter().zip(&exact).any(|(x, y)| x != y));
        }
        let x = &a[..k];
        let init = &init[..n];
        let want = reference::matmul::matmul(x, &rounded, Some(&bias), Some(init), 1, n, k, true);
        // the subgroup variant takes 8 outputs per invocation (n % 8 == 0)
        let mut vec_variants = vec!["matvec_f16", "matvec_f16_splitk"];
        if matvec::best_f16_variant(&g.pipelines, n) != "matvec_f16" {
            vec_variants.push("matvec_f16_subgroup");
        }
        for variant in vec_variants {
            let got = matvec::run_matvec(
                &g.ctx,
                &g.pipelines,
                variant,
                &wgformer::kernels::HostProduct::new(x, &b, n, k).epilogue(
                    Some(&bias),
                    Some(init),
                    matmul::BIAS | matmul::GELU | matmul::ACCUMULATE,
                ),
            )
            .unwrap();
            assert_close(&format!("{variant} {n}x{k}"), &got, &want, 1e-4, 1e-4);
        }
    }
    assert!(
        !g.pipelines.has("matvec_f16_subgroup")
            || matvec::best_f16_variant(&g.pipelines, 72) == "matvec_f16_subgroup"
    );
}

/// The self-test that guards the tensor-core kernel (which CI cannot run) passes the
/// matmul kernels this adapter has, so a failure on a GPU means the kernel is wrong.
#[test]
fn matmul_self_test_passes_correct_kernels() {
    let g = gpu();
    for variant in ["matmul", "matmul_tiled", "matmul_f16", "matmul_f16_tiled"] {
        matmul::self_test(&g.ctx, &g.pipelines, variant).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn attention_weights_match_reference_and_are_causal_rows_summing_to_one() {
    let g = gpu();
    for &(t, c, nh) in &[(1, 16, 2), (7, 32, 4), (33, 64, 2)] {
        let qkv = rand_vec(t * 3 * c, 41 + t as u64, 1.5);
        let layout = wgformer::sparse::BlockLayout::new(64, 4, 1, 1, 3);
        for sparse in [false, true] {
            let got = attention::run_attention_weights(
                &g.ctx,
                &g.pipelines,
                &qkv,
                Heads::mha(c, nh),
                sparse.then_some(&layout),
            )
            .unwrap();
            let allow = |i: usize, j: usize| j <= i && (!sparse || layout.allows(i, j));
            let want = reference::attention::weights_masked(&qkv, Heads::mha(c, nh), allow);
            assert_close(
                &format!("weights t{t} sparse {sparse}"),
                &got,
                &want,
                1e-5,
                1e-4,
            );
            for h in 0..nh {
                for i in 0..t {
                    let row = &got[(h * t + i) * t..(h * t + i + 1) * t];
                    let sum: f32 = row.iter().sum();
                    assert!((sum - 1.0).abs() < 1e-5, "row ({h}, {i}) sums to {sum}");
                    for (j, &w) in row.iter().enumerate() {
                        if !allow(i, j) {
                            assert_eq!(w, 0.0, "({h}, {i}, {j}) outside the keys it sees");
                        }
                    }
                }
            }
            // the weights times V are the forward's attention output
            let (out, _) = reference::attention::attention_masked(&qkv, Heads::mha(c, nh), allow);
            let hs = c / nh;
            for h in 0..nh {
                for i in 0..t {
                    for d in 0..hs {
                        let v: f32 = (0..t)
                            .map(|j| got[(h * t + i) * t + j] * qkv[j * 3 * c + 2 * c + h * hs + d])
                            .sum();
                        assert!((v - out[i * c + h * hs + d]).abs() < 1e-4);
                    }
                }
            }
        }
    }
}

#[test]
fn top_k_rows_and_copy_rows_match_reference() {
    let g = gpu();
    use wgformer::kernels::logit_lens::{run_copy_rows, run_top_k_rows, top_k_reference};
    // (rows, n, k, first id, window): whole rows, and rows in windows (the last one
    // short) as a decode step's argmax takes them
    for &(rows, n, k, start, span) in &[
        (3, 100, 5, 0, 100),
        (2, 1000, 20, 300, 1000),
        (4, 7, 10, 5, 7),
        (1, 64, 1, 0, 64),
        (5, 1000, 1, 40, 96),
        (3, 250, 3, 0, 100),
    ] {
        let mut x = rand_vec(rows * n, 51 + n as u64, 3.0);
        // ties: equal values rank by the lower id
        x[1] = x[0];
        if rows > 1 {
            x[n + 2] = x[n + 1];
        }
        // with the log-sum-exp (the lens), and without (an argmax: written as 0)
        for with_lse in [true, false] {
            let got =
                run_top_k_rows(&g.ctx, &g.pipelines, &x, n, k, start, span, with_lse).unwrap();
            let windows = n.div_ceil(span);
            assert_eq!(got.len(), windows * rows);
            for (i, (best, lse)) in got.iter().enumerate() {
                let (w, r) = (i / rows, i % rows);
                let cols = w * span..((w + 1) * span).min(n);
                let (want, want_lse) = top_k_reference(
                    &x[r * n + cols.start..r * n + cols.end],
                    k,
                    start + cols.start,
                );
                assert_eq!(best, &want, "row {r} window {w} of {rows}x{n}, k {k}");
                let want_lse = if with_lse { want_lse } else { 0.0 };
                assert!(
                    (lse - want_lse).abs() < 1e-4 * want_lse.abs().max(1.0),
                    "{lse} {want_lse}"
                );
            }
        }
    }
    let src = rand_vec(64, 9, 1.0);
    let got = run_copy_rows(&g.ctx, &g.pipelines, &src, 48, 16, 8, 32).unwrap();
    assert!(got[..32].iter().all(|&v| v == 0.0));
    assert_eq!(&got[32..48], &src[8..24]);
}

#[test]
fn logit_cap_matches_reference_and_leaves_the_rest() {
    // Gemma 2's final soft cap: values far past the cap (±1e4: tanh's argument clamped,
    // no NaN), near it and small; only the first n of the buffer, n not a multiple of
    // 4 nor of the workgroup; more than 65,535 workgroups (the 2-D grid)
    use wgformer::kernels::logit_cap::run_logit_cap;
    let g = gpu();
    for &(len, n, cap) in &[
        (300, 257, 30.0f32),
        (64, 64, 0.5),
        (70_000 * 64 + 5, 70_000 * 64 + 3, 2.0),
    ] {
        let mut z = rand_vec(len, 71 + n as u64, 3.0 * cap);
        z[0] = 1e4;
        z[1] = -1e4;
        z[2] = 1e-3;
        let got = run_logit_cap(&g.ctx, &g.pipelines, &z, n, cap).unwrap();
        let want = reference::logit_cap::logit_cap(&z, n, cap);
        assert_close(
            &format!("logit_cap {n} of {len} at {cap}"),
            &got,
            &want,
            1e-5,
            1e-5,
        );
        assert_eq!(got[n..], z[n..], "past n");
        let bound = cap * (1.0 + 1e-6);
        assert!(got[..n].iter().all(|v| v.abs() <= bound), "capped");
        assert!(
            got[0] > cap * 0.999_999 && got[1] < -cap * 0.999_999,
            "{got:?}"
        );
    }
}

#[test]
fn gather_rows_takes_the_listed_rows_in_list_order() {
    // a mixed step's asked rows: a run of decode rows, then prompts' last rows, one
    // listed twice, one before another; rows of 12 and of 768 floats (more than a
    // workgroup's vec4s)
    use wgformer::kernels::logit_lens::run_gather_rows;
    let g = gpu();
    for c in [12, 768] {
        let src = rand_vec(40 * c, 61, 1.0);
        for list in [vec![0u32, 1, 2, 17, 39, 5, 17], vec![33], vec![]] {
            let got = run_gather_rows(&g.ctx, &g.pipelines, &src, c, &list).unwrap();
            let want: Vec<f32> = list
                .iter()
                .flat_map(|&r| src[r as usize * c..(r as usize + 1) * c].to_vec())
                .collect();
            assert_eq!(got, want, "rows {list:?} of {c}");
        }
    }
}

/// `gpu::profile` times every dispatch its thread records while armed (two
/// timestamps each), in order, with its kernel and grid; the work itself runs as
/// without it; a nested profile is refused, and neither an error nor a panic leaves a
/// profile armed; dispatches past its capacity run untimed.
#[test]
fn profile_times_each_dispatch_of_its_thread() {
    use std::time::Instant;
    use wgformer::gpu::{buffers, profile};
    use wgformer::kernels::logit_lens::{copy_rows_op, encode_copy_rows};
    use wgformer::kernels::submit_pass;
    let g = gpu();
    let (ctx, pl) = (&g.ctx, &*g.pipelines);
    if !profile::available(ctx) {
        assert_ne!(
            ctx.details.device_type, "Cpu",
            "lavapipe has timestamps inside passes"
        );
        eprintln!("no timestamps inside passes on this adapter: skipped");
        return;
    }
    let n = 1 << 16;
    let src_values = rand_vec(n, 7, 1.0);
    let src = buffers::upload(ctx, "src", &src_values);
    let dst = buffers::storage(ctx, "dst", 2 * n);
    // one op a dispatch: an op's parameters are one uniform, written at encoding
    let (op, quarter) = (
        copy_rows_op(ctx, pl, &src, &dst),
        copy_rows_op(ctx, pl, &src, &dst),
    );
    let t0 = Instant::now();
    let ((), p) = profile::profile(ctx, || {
        submit_pass(ctx, "profiled", |pass| {
            encode_copy_rows(pass, &op, n, 0, 0);
            encode_copy_rows(pass, &quarter, n / 4, 0, n);
        })
    })
    .unwrap();
    let wall_ms = t0.elapsed().as_secs_f64() * 1e3;
    assert_eq!(p.dispatches.len(), 2, "{p:?}");
    assert_eq!(p.unrecorded, 0);
    for d in &p.dispatches {
        assert_eq!(d.kernel, "copy_rows");
        assert!(d.ms > 0.0 && d.ms.is_finite(), "{d:?}");
    }
    let workgroups = |d: &profile::DispatchTime| d.groups.0 * d.groups.1 * d.groups.2;
    assert!(
        workgroups(&p.dispatches[0]) > workgroups(&p.dispatches[1]),
        "{p:?}"
    );
    assert!(
        p.total_ms() <= wall_ms,
        "{} ms timed in {wall_ms} ms",
        p.total_ms()
    );
    assert_eq!(p.by_kernel().len(), 2, "two grids");
    let out = buffers::read_floats(ctx, &dst, 0, n + n / 4).unwrap();
    assert!(out[..n] == src_values[..], "the profiled copy ran");
    assert!(out[n..] == src_values[..n / 4], "the profiled copy ran");

    // nested: refused, and the outer recorder is disarmed afterwards
    let nested = profile::profile(ctx, || profile::profile(ctx, || Ok(())).map(|_| ()));
    assert!(nested.is_err());
    let ((), empty) = profile::profile(ctx, || Ok(())).unwrap();
    assert!(empty.dispatches.is_empty());
    // a closure that unwinds leaves nothing armed either
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        profile::profile(ctx, || -> wgformer::error::Result<()> {
            panic!("inside a profile")
        })
    }));
    assert!(unwound.is_err());
    let ((), empty) = profile::profile(ctx, || Ok(())).unwrap();
    assert!(empty.dispatches.is_empty());

    // past the capacity: the rest run, counted but not timed
    let many = profile::MAX_DISPATCHES as usize + 3;
    let ((), p) = profile::profile(ctx, || {
        submit_pass(ctx, "many", |pass| {
            for i in 0..many {
                encode_copy_rows(pass, &op, 4, 4 * (i % 4), 0);
            }
        })
    })
    .unwrap();
    assert_eq!(p.dispatches.len(), profile::MAX_DISPATCHES as usize);
    assert_eq!(p.unrecorded, 3);
}

/// A batch covered by a `ROWS` group past its end (7 rows as one group of 8, 3 as one
/// of 4, 13 as two groups of 8, 18 as 8 + 8 + a group of 4): the batch's rows match the
/// reference, rows past
/// it are computed from whatever lies there (NaN here) and never stored — not in the
/// matrix-vector products (with the accumulating epilogue too) nor in the LM head
/// (at row offsets of `a` and `out`).
#[test]
fn matvec_groups_past_the_batch_store_nothing() {
    use wgformer::gpu::buffers;
    use wgformer::kernels::submit_pass;
    let g = gpu();
    let (ctx, pl) = (&g.ctx, &*g.pipelines);
    let (n, k, pad) = (72, 40, 8);
    const SENTINEL: f32 = 12345.0;
    for rows in [1, 2, 3, 5, 6, 7, 9, 13, 15, 18] {
        let mut x = rand_vec((rows + pad) * k, 31, 1.0);
        x[rows * k..].fill(f32::NAN);
        let w = rand_vec(k * n, 32, 0.5);
        let init = rand_vec(rows * n, 33, 1.0);
        for variant in variants("matvec") {
            let xb = buffers::upload(ctx, "x", &x);
            let wb = buffers::upload(ctx, "w", &matmul::store_weights(variant, &w, k, n));
            let mut out0 = init.clone();
            out0.extend(std::iter::repeat_n(SENTINEL, pad * n));
            let out = buffers::upload(ctx, "out", &out0);
            let op = matvec::matvec_variant_op(
                ctx,
                pl,
                variant,
                &wgformer::kernels::LinearBuffers {
                    x: &xb,
                    w: &wb,
                    bias: &wb,
                    out: &out,
                },
            );
            submit_pass(ctx, "matvec", |pass| {
                matvec::encode_matvec(pass, &op, rows, n, k, matmul::ACCUMULATE)
            })
            .unwrap();
            let got = buffers::read_floats(ctx, &out, 0, (rows + pad) * n).unwrap();
            let seen = seen_by(variant, &w);
            let want = reference::matmul::matmul(
                &x[..rows * k],
                &seen,
                None,
                Some(&init),
                rows,
                n,
                k,
                false,
            );
            assert_close(
                &format!("{variant} {rows} rows"),
                &got[..rows * n],
                &want,
                1e-4,
                1e-4,
            );
            assert!(
                got[rows * n..].iter().all(|&v| v == SENTINEL),
                "{variant}: {rows} rows wrote past the batch"
            );
        }
        let vs = lm_head_variants(k);
        let (a_row0, out_row0) = (1, 2);
        let mut a = rand_vec((a_row0 + rows + pad) * k, 34, 1.0);
        a[(a_row0 + rows) * k..].fill(f32::NAN);
        let b = rand_vec(n * k, 35, 1.0);
        for variant in vs {
            let ab = buffers::upload(ctx, "a", &a);
            let bb = buffers::upload(
                ctx,
                "b",
                &wgformer::kernels::matmul_bt::store_wte(variant, &b, n, k),
            );
            let total = out_row0 + rows + pad;
            let out = buffers::upload(ctx, "out", &vec![SENTINEL; total * n]);
            let op = matvec_bt::matvec_bt_op(ctx, pl, variant, &ab, &bb, &out);
            submit_pass(ctx, "matvec_bt", |pass| {
                matvec_bt::encode_matvec_bt(pass, &op, n, k, a_row0, rows, out_row0)
            })
            .unwrap();
            let got = buffers::read_floats(ctx, &out, 0, total * n).unwrap();
            let seen = seen_by(variant, &b);
            let want = reference::matmul::matmul_bt(
                &a[a_row0 * k..(a_row0 + rows) * k],
                &seen,
                rows,
                n,
                k,
            );
            let (lo, hi) = (out_row0 * n, (out_row0 + rows) * n);
            assert_close(
                &format!("{variant} {rows} rows"),
                &got[lo..hi],
                &want,
                1e-4,
                1e-4,
            );
            assert!(
                got[..lo].iter().chain(&got[hi..]).all(|&v| v == SENTINEL),
                "{variant}: {rows} rows wrote outside the batch"
            );
        }
    }
}

#[test]
fn grouped_query_attention_with_a_window_matches_reference() {
    // Query heads sharing key/value heads (NH 8 over NKV 2 and 1), a sliding window
    // shorter than the sequence, soft-capped scores (Gemma 2's): every forward,
    // block-sparse, paged and weights kernel of this adapter equals the reference,
    // heads of 64 (the subgroup kernels), 16 and 256 (the wide pipelines).
    let g = gpu();
    let t = 40;
    for &(nh, nkv, hs, window, softcap) in &[
        (8, 2, 64, 0, 0.0),
        (8, 2, 64, 7, 0.0),
        (4, 1, 16, 9, 0.0),
        (2, 2, 16, 3, 0.0),
        // caps the scores reach (the scores here are up to ~±1 at heads of 64)
        (8, 2, 64, 7, 0.3),
        (4, 1, 16, 0, 0.1),
        (2, 1, 256, 5, 0.5),
    ] {
        let heads = Heads::mha(nh * hs, nh)
            .grouped(nkv)
            .window(window)
            .softcap(softcap);
        let (q, kv) = (heads.q_width(), heads.kv_width());
        let seed = (nh * 31 + window) as u64 + softcap.to_bits() as u64 % 997;
        let spread = if softcap > 0.0 { 1.5 } else { 0.5 };
        let qkv = rand_vec(t * heads.qkv_width(), seed, spread);
        if softcap > 0.0 {
            // the cap changes the outputs beyond the tolerance below
            let (capped, _) = reference::attention::attention(&qkv, heads);
            let (plain, _) = reference::attention::attention(&qkv, heads.softcap(0.0));
            let moved = capped.iter().zip(&plain).map(|(a, b)| (a - b).abs());
            assert!(
                moved.fold(0.0, f32::max) > 1e-2,
                "cap {softcap} moves nothing"
            );
        }
        let layout = wgformer::sparse::BlockLayout::new(64, 8, 2, 1, 3);
        for sparse in [false, true] {
            let allow = |i: usize, j: usize| heads.sees(i, j) && (!sparse || layout.allows(i, j));
            let (want, want_ent) = reference::attention::attention_masked(&qkv, heads, allow);
            let op = if sparse {
                "sparse_attention"
            } else {
                "attention"
            };
            for variant in attention_variants(op, hs) {
                if !attention::runs_chunk(&g.ctx, variant, layout.block, 0) {
                    continue; // a subgroup's queries must share a block
                }
                let (got, ent) = attention::run_attention(
                    &g.ctx,
                    &g.pipelines,
                    variant,
                    &attention::HostAttention::with_heads(&qkv, heads)
                        .layout(sparse.then_some(&layout)),
                )
                .unwrap();
                let what = format!("{variant} nh{nh} nkv{nkv} hs{hs} window{window} cap{softcap}");
                assert_close(&what, &got, &want, 1e-4, 1e-4);
                assert_close(&format!("{what} entropy"), &ent, &want_ent, 1e-4, 1e-4);
            }
            let w = attention::run_attention_weights(
                &g.ctx,
                &g.pipelines,
                &qkv,
                heads,
                sparse.then_some(&layout),
            )
            .unwrap();
            let want_w = reference::attention::weights_masked(&qkv, heads, allow);
            assert_close(
                &format!("weights nh{nh} nkv{nkv} window{window} cap{softcap}"),
                &w,
                &want_w,
                1e-5,
                1e-4,
            );
            // the same sequence in a paged pool (kv_store writes it), each row decoded
            let page = 16;
            let pages = t.div_ceil(page);
            let table: Vec<u32> = (0..pages as u32).rev().collect();
            let slots: Vec<u32> = (0..t)
                .map(|j| table[j / page] * page as u32 + (j % page) as u32)
                .collect();
            let (k_pool, v_pool) =
                kv_store::run_kv_store(&g.ctx, &g.pipelines, &qkv, heads, &slots, pages * page)
                    .unwrap();
            let (mut wk, mut wv) = (vec![0.0; pages * page * kv], vec![0.0; pages * page * kv]);
            reference::kv_store::kv_store(&qkv, &mut wk, &mut wv, heads, &slots);
            assert_eq!((&k_pool, &v_pool), (&wk, &wv), "kv_store nkv{nkv}");
            let rows: Vec<[u32; 2]> = (0..t as u32).map(|j| [0, j]).collect();
            for variant in attention_variants("attention_paged", hs) {
                let got = attention::run_attention_paged(
                    &g.ctx,
                    &g.pipelines,
                    variant,
                    &attention::HostAttention::with_heads(&qkv, heads)
                        .paged(&k_pool, &v_pool, &table, page, 0)
                        .layout(sparse.then_some(&layout)),
                    &rows,
                )
                .unwrap();
                let what = format!(
                    "{variant} nh{nh} nkv{nkv} hs{hs} window{window} cap{softcap} sparse {sparse}"
                );
                assert_close(&what, &got, &want, 1e-4, 1e-4);
            }
            assert_eq!(want.len(), t * q);
        }
    }
}

#[test]
fn bidirectional_attention_matches_reference() {
    // An encoder's attention: every query sees every key of its text, heads of 64
    // (the subgroup kernels), 16, and 256 (the wide pipelines), grouped or not; every
    // forward kernel and the weights kernel equal the reference, which differs from
    // the causal one beyond the tolerance
    let g = gpu();
    let t = 37;
    for &(nh, nkv, hs) in &[(4, 4, 64), (8, 2, 16), (2, 1, 256)] {
        let heads = Heads::mha(nh * hs, nh).grouped(nkv).bidirectional();
        let qkv = rand_vec(t * heads.qkv_width(), (nh * 7 + hs) as u64, 0.5);
        let (want, want_ent) = reference::attention::attention(&qkv, heads);
        let causal = Heads {
            bidirectional: false,
            ..heads
        };
        let (one_way, _) = reference::attention::attention(&qkv, causal);
        assert!(reference::compare("causal", &one_way, &want, 1e-4, 1e-4).is_err());
        for variant in attention_variants("attention", hs) {
            let (got, ent) = attention::run_attention(
                &g.ctx,
                &g.pipelines,
                variant,
                &attention::HostAttention::with_heads(&qkv, heads),
            )
            .unwrap();
            let what = format!("{variant} bidirectional nh{nh} nkv{nkv} hs{hs}");
            assert_close(&what, &got, &want, 1e-4, 1e-4);
            assert_close(&format!("{what} entropy"), &ent, &want_ent, 1e-4, 1e-4);
        }
        let w = attention::run_attention_weights(&g.ctx, &g.pipelines, &qkv, heads, None).unwrap();
        let want_w = reference::attention::weights_masked(&qkv, heads, |i, j| heads.sees(i, j));
        assert_close(
            &format!("weights bidirectional hs{hs}"),
            &w,
            &want_w,
            1e-5,
            1e-4,
        );
    }
}

#[test]
fn layer_norm_of_low_variance_rows_depends_on_epsilon() {
    // rows whose variance is about the epsilon (1e-5) and a constant row: an epsilon
    // of 1e-6 instead of 1e-5 changes these outputs by tens of percent, so this case
    // catches it at kernel level (random rows of variance ~9 do not)
    let g = gpu();
    let (t, c) = (4, 64);
    let mut x = rand_vec(t * c, 21, 0.003);
    x[..c].iter_mut().for_each(|v| *v = 0.25); // variance 0
    let w = rand_vec(c, 22, 1.0);
    let b = rand_vec(c, 23, 1.0);
    let want = reference::layer_norm::layer_norm(&x, &w, Some(&b), c);
    for variant in variants("layer_norm") {
        let got =
            layer_norm::run_layer_norm(&g.ctx, &g.pipelines, variant, &x, &w, Some(&b), c).unwrap();
        assert_close(&format!("{variant} low variance"), &got, &want, 1e-4, 1e-4);
    }
    // the case is sensitive: the reference with an epsilon ten times smaller differs
    let var = |row: &[f32]| {
        let m = row.iter().map(|&v| v as f64).sum::<f64>() / c as f64;
        row.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / c as f64
    };
    let v = var(&x[c..2 * c]);
    let ratio = ((v + 1e-5) / (v + 1e-6)).sqrt();
    assert!(
        ratio > 1.2,
        "variance {v}: an epsilon of 1e-6 changes the scale by {ratio}"
    );
}

#[test]
fn token_rank_matches_reference() {
    // each row's target: its rank (ties after the lower id) and log-probability, with
    // the logits whole and split into chunks (as wte chunks split the vocabulary; the
    // last chunk short); a row with no target is left out by the host
    let g = gpu();
    use wgformer::kernels::token_rank::run_token_rank;
    use wgformer::reference::token_rank::token_rank;
    // more rows than a workgroup takes
    let (rows, v) = (70, 1000);
    let mut x = rand_vec(rows * v, 77, 4.0);
    let mut targets: Vec<u32> = vec![0, 999, 500, 17, 333, 640];
    targets.extend((6..rows as u32).map(|r| (r * 37) % v as u32));
    // a tie with a lower id (rank one more) and with a higher id (no change)
    x[2 * v + 499] = x[2 * v + 500];
    x[3 * v + 18] = x[3 * v + 17];
    // the model's first choice
    x[4 * v + 333] = 40.0;
    for chunk in [v, 300, 64] {
        let got = run_token_rank(&g.ctx, &g.pipelines, &x, v, chunk, &targets).unwrap();
        for (r, &(rank, lp)) in got.iter().enumerate() {
            let (want_rank, want_lp) = token_rank(&x[r * v..(r + 1) * v], targets[r] as usize);
            assert_eq!(rank, want_rank, "row {r}, chunks of {chunk}");
            assert!(
                (lp as f64 - want_lp).abs() < 1e-4 * want_lp.abs().max(1.0),
                "row {r}, chunks of {chunk}: {lp} vs {want_lp}"
            );
        }
        assert_eq!(got[4].0, 0);
    }
}

/// The device's draw (`sample_rows`) against `reference::sample`: rows with ties, a
/// language model's shape (a few likely ids, a long tail), -inf, one value only; top-k,
/// top-p, both, neither; rows not drawn are left alone. Sums are f32 on the device and
/// f64 in the reference, so a draw may differ only where its number falls within
/// rounding of a boundary: none of these does.
#[test]
fn sample_rows_draws_as_the_reference() {
    use wgformer::kernels::sample;
    use wgformer::reference::sample::{kept, Draw};
    let g = gpu();
    let v = 5000;
    let tied: Vec<f32> = (0..v).map(|i| ((i * 37) % 17) as f32 * 0.4).collect();
    let tail: Vec<f32> = rand_vec(v, 51, 1.0)
        .iter()
        .enumerate()
        .map(|(i, x)| if i % 997 == 3 { 8.0 + x } else { 2.0 * x })
        .collect();
    let mut odd = rand_vec(v, 52, 4.0);
    odd[7] = f32::NEG_INFINITY;
    odd[4999] = 30.0;
    let flat = vec![1.5; v];
    let rows = [tied, tail, odd, flat];
    let logits: Vec<f32> = rows.iter().flatten().copied().collect();
    let mut checked = 0;
    let mut cut_by_min_p = 0;
    for (top_k, top_p, temperature, min_p) in [
        (0, 1.0, 1.0, 0.0),
        (1, 1.0, 1.0, 0.0),
        (50, 1.0, 0.7, 0.0),
        (50, 0.9, 1.3, 0.0),
        (0, 0.5, 1.0, 0.0),
        (0, 0.0, 1.0, 0.0),
        (17, 0.95, 2.0, 0.0),
        (v, 1.0, 1.0, 0.0),
        (0, 1.0, 1.0, 0.1),
        (50, 0.9, 1.3, 0.02),
        (0, 1.0, 0.8, 0.7),
    ] {
        for u in [0.0, 0.131_71, 0.500_13, 0.770_93, 0.999_91] {
            let draw = Draw {
                inv_t: 1.0 / temperature,
                top_k,
                top_p,
                u,
                min_p,
            };
            // every row drawn (the vocabulary in one binding), and the same rows with
            // every other one skipped (the vocabulary in 4 chunks, as an LM head over a
            // vocabulary larger than a binding writes it)
            let all = vec![Some(draw); rows.len()];
            let some: Vec<_> = (0..rows.len())
                .map(|r| (r % 2 == 0).then_some(draw))
                .collect();
            let got = sample::run_sample(&g.ctx, &g.pipelines, (&logits, v, v), &all).unwrap();
            let part = sample::run_sample(&g.ctx, &g.pipelines, (&logits, v, 1300), &some).unwrap();
            for (r, row) in rows.iter().enumerate() {
                let want = wgformer::reference::sample::sample(row, draw);
                let without = Draw { min_p: 0.0, ..draw };
                if kept(row, draw).len() < kept(row, without).len() {
                    cut_by_min_p += 1;
                }
                let name = format!("row {r} {draw:?}");
                assert_eq!(got[r], want, "{name} (kept {})", kept(row, draw).len());
                let alone = if r % 2 == 0 { want } else { u32::MAX };
                assert_eq!(
                    part[r], alone,
                    "{name}, in 4 chunks, every other row skipped"
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 11 * 5 * 4);
    // min-p removed tokens in some of the draws checked
    assert!(cut_by_min_p >= 20, "{cut_by_min_p}");
    // a row without a finite logit still gets an id (0), not what `picked` held
    let dead = vec![f32::NEG_INFINITY; v];
    let draw = Draw {
        inv_t: 1.0,
        top_k: 0,
        top_p: 0.9,
        u: 0.5,
        min_p: 0.0,
    };
    let got = sample::run_sample(&g.ctx, &g.pipelines, (&dead, v, v), &[Some(draw)]).unwrap();
    assert_eq!(got, vec![0]);
}

/// Greedy rows of `sample_rows` (the id a decode step chains into the next one) take
/// the largest logit as the device argmax does: the lowest id of tied maxima, NaN and
/// -inf never winning, id 0 for a row without a finite logit; across logits chunks,
/// beside drawn rows; and the reference agrees with the `top_k_rows` merge.
#[test]
fn sample_rows_greedy_rows_take_the_largest() {
    use wgformer::kernels::sample;
    use wgformer::model::argmax_rows;
    use wgformer::reference::sample::{largest, Draw};
    let g = gpu();
    let v = 3000;
    let mut tied = vec![0.25f32; v];
    for i in [2999, 1700, 401] {
        tied[i] = 9.0; // the lowest of three maxima (in different chunks) wins
    }
    let mut nan = rand_vec(v, 61, 2.0);
    nan[0] = f32::NAN;
    nan[2000] = f32::NAN;
    nan[1234] = 50.0;
    let mut inf = rand_vec(v, 62, 2.0);
    inf[5] = f32::INFINITY;
    let dead = vec![f32::NEG_INFINITY; v];
    let mut late = vec![-1e30f32; v];
    late[v - 1] = -1e29;
    let rows = [tied, nan, inf, dead, late, rand_vec(v, 63, 3.0)];
    let logits: Vec<f32> = rows.iter().flatten().copied().collect();
    let want: Vec<u32> = rows.iter().map(|r| largest(r)).collect();
    assert_eq!(&want[..5], &[401, 1234, 5, 0, (v - 1) as u32]);
    // the device argmax (top_k_rows windows, merged on the host) agrees
    let top1: Vec<f32> = rows
        .iter()
        .flat_map(|r| {
            let id = largest(r);
            let hit = r[id as usize] > wgformer::reference::sample::LOW;
            [
                f32::from_bits(if hit { id } else { u32::MAX }),
                r[id as usize],
                0.0,
            ]
        })
        .collect();
    assert_eq!(argmax_rows(&top1, rows.len(), 1), want);
    let greedy = vec![Some(Draw::GREEDY); rows.len()];
    for chunk in [v, 750] {
        let got = sample::run_sample(&g.ctx, &g.pipelines, (&logits, v, chunk), &greedy).unwrap();
        assert_eq!(got, want, "greedy rows, chunks of {chunk}");
    }
    // greedy rows beside drawn and skipped ones
    let drawn = Draw {
        inv_t: 1.0,
        top_k: 1,
        top_p: 1.0,
        u: 0.3,
        min_p: 0.0,
    };
    let mixed: Vec<_> = (0..rows.len())
        .map(|r| match r % 3 {
            0 => Some(Draw::GREEDY),
            1 => Some(drawn),
            _ => None,
        })
        .collect();
    let got = sample::run_sample(&g.ctx, &g.pipelines, (&logits, v, v), &mixed).unwrap();
    for (r, row) in rows.iter().enumerate() {
        let w = match mixed[r] {
            Some(d) => wgformer::reference::sample::sample(row, d),
            None => u32::MAX,
        };
        assert_eq!(got[r], w, "row {r} of a mixed step");
    }
}
