//! Mixture-of-Experts kernels against the CPU reference: gating edge cases (ties,
//! k = 1, k = E), the whole MoE MLP, usage and load-balance statistics.

use crate::common;

use common::{assert_close, gpu, rand_vec};
use wgformer::config::Activation;
use wgformer::kernels::layer_norm::{run_layer_norm, run_rms_norm, Norm};
use wgformer::kernels::moe;
use wgformer::reference;

fn padded(logits: &[f32], e: usize) -> Vec<f32> {
    let e4 = e.div_ceil(4) * 4;
    logits
        .chunks(e)
        .flat_map(|r| {
            let mut v = r.to_vec();
            v.resize(e4, 0.0);
            v
        })
        .collect()
}

#[test]
fn gate_matches_reference_including_ties_and_extreme_k() {
    let g = gpu();
    for &(t, e, k) in &[
        (5, 8, 2),
        (9, 8, 1),
        (4, 8, 8),
        (7, 6, 3),
        (3, 64, 4),
        (2, 1, 1),
    ] {
        let mut logits = rand_vec(t * e, 30 + e as u64, 2.0);
        // ties: token 0 has all-equal logits, token 1 two equal maxima
        logits[..e].iter_mut().for_each(|v| *v = 0.5);
        if t > 1 && e > 2 {
            logits[e] = 3.0;
            logits[e + 2] = 3.0;
        }
        let (probs, sel, w) =
            moe::run_moe_gate(&g.ctx, &g.pipelines, &padded(&logits, e), (e, k), true).unwrap();
        // without renormalisation (Qwen2-MoE's norm_topk_prob false) the weights are
        // the chosen experts' probabilities themselves
        let (_, raw_sel, raw_w) =
            moe::run_moe_gate(&g.ctx, &g.pipelines, &padded(&logits, e), (e, k), false).unwrap();
        assert_eq!(raw_sel, sel);
        for ti in 0..t {
            let (_, _, rw_raw) = reference::moe::gate(&logits[ti * e..(ti + 1) * e], k, false);
            let rw_raw: Vec<f32> = rw_raw.iter().map(|&x| x as f32).collect();
            assert_close(
                "raw weights",
                &raw_w[ti * k..(ti + 1) * k],
                &rw_raw,
                1e-6,
                1e-5,
            );
            let (rp, rc, rw) = reference::moe::gate(&logits[ti * e..(ti + 1) * e], k, true);
            let rp: Vec<f32> = rp.iter().map(|&x| x as f32).collect();
            assert_close("probs", &probs[ti * e..(ti + 1) * e], &rp, 1e-6, 1e-5);
            assert_eq!(
                sel[ti * k..(ti + 1) * k]
                    .iter()
                    .map(|&x| x as usize)
                    .collect::<Vec<_>>(),
                rc,
                "token {ti} e {e} k {k}"
            );
            let rw: Vec<f32> = rw.iter().map(|&x| x as f32).collect();
            assert_close("weights", &w[ti * k..(ti + 1) * k], &rw, 1e-6, 1e-5);
            let s: f32 = w[ti * k..(ti + 1) * k].iter().sum();
            assert!((s - 1.0).abs() < 1e-5);
        }
        // all-equal logits: the k lowest indices, equal weights
        assert_eq!(sel[..k].to_vec(), (0..k as u32).collect::<Vec<_>>());
        if t > 1 && e > 2 {
            assert_eq!(sel[k], 0);
            if k > 1 {
                assert_eq!(sel[k + 1], 2);
            }
        }
    }
}

/// The hardware kernels' gate takes the norm before the MoE MLP, the router and the
/// gate in one dispatch (`moe_norm_gate`): its normalised rows equal
/// `layer_norm_workgroup`'s bit for bit (the experts read them), and its choice is the
/// reference's (the norm, the router's logits, softmax and top-k in f64), as is a
/// shared expert's gate logit where there is one (Qwen2-MoE).
#[test]
fn the_normed_gate_takes_the_norm_and_the_router_in_one_dispatch() {
    let g = gpu();
    let rms = Norm::rms(1e-6);
    for &(t, c, e, k, norm, bias, shared) in &[
        (1, 64, 8, 2, Norm::layer(true), true, false),
        (5, 96, 60, 4, Norm::layer(false), false, true),
        (3, 256, 64, 8, rms, false, true),
        (4, 40, 1, 1, Norm::layer(true), true, false),
        (2, 2048, 6, 6, rms, false, false),
        (70, 128, 8, 2, Norm::layer(true), true, true),
    ] {
        let mut x = rand_vec(t * c, 60 + c as u64, 1.0);
        // one dimension far from the others in every row: the mean is far from 0
        for r in 0..t {
            x[r * c + 7] = -250.0;
        }
        let w: Vec<f32> = rand_vec(c, 61, 0.5).iter().map(|v| 1.0 + v).collect();
        let b = rand_vec(c, 62, 0.2);
        // the router [C, E] with its columns padded to E4, scaled so that the logits
        // spread over a few units (no near-ties in the choice)
        let router_e = rand_vec(c * e, 63 + e as u64, 3.0 / (c as f32).sqrt() * 2.0);
        let router = padded(&router_e, e);
        // a shared expert's gate [C, 1], its columns padded to 4
        let shared_g = rand_vec(c, 64, 3.0 / (c as f32).sqrt());
        let shared_w = padded(&shared_g, 1);
        let host_bias = bias.then_some(&b[..]);
        let gate = |renorm: bool| {
            moe::run_moe_norm_gate(
                &g.ctx,
                &g.pipelines,
                (&x, c),
                (norm, &w, host_bias),
                &router,
                shared.then_some(&shared_w[..]),
                (e, k),
                renorm,
            )
            .unwrap()
        };
        let moe::NormGate {
            ln,
            probs,
            sel_e: sel,
            sel_w,
            shared_gate,
        } = gate(true);
        let ln_wg = if norm.rms {
            run_rms_norm(
                &g.ctx,
                &g.pipelines,
                "layer_norm_workgroup",
                &x,
                &w,
                c,
                norm.eps,
            )
        } else {
            run_layer_norm(
                &g.ctx,
                &g.pipelines,
                "layer_norm_workgroup",
                &x,
                &w,
                host_bias,
                c,
            )
        }
        .unwrap();
        assert_eq!(
            ln, ln_wg,
            "t {t} c {c}: ln as layer_norm_workgroup writes it"
        );
        let ln_ref = if norm.rms {
            reference::layer_norm::rms_norm(&x, &w, c, norm.eps as f64)
        } else {
            reference::layer_norm::layer_norm(&x, &w, host_bias, c)
        };
        assert_close("ln", &ln, &ln_ref, 1e-4, 1e-4);
        for ti in 0..t {
            let logits: Vec<f32> = (0..e)
                .map(|j| {
                    (0..c)
                        .map(|i| ln_ref[ti * c + i] as f64 * router_e[i * e + j] as f64)
                        .sum::<f64>() as f32
                })
                .collect();
            let (rp, rc, rw) = reference::moe::gate(&logits, k, true);
            let at = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<_>>();
            assert_close("probs", &probs[ti * e..(ti + 1) * e], &at(&rp), 1e-5, 1e-4);
            let chosen: Vec<usize> = sel[ti * k..(ti + 1) * k]
                .iter()
                .map(|&x| x as usize)
                .collect();
            assert_eq!(chosen, rc, "t {t} c {c} e {e} k {k}: token {ti}");
            assert_close(
                "weights",
                &sel_w[ti * k..(ti + 1) * k],
                &at(&rw),
                1e-5,
                1e-4,
            );
        }
        if shared {
            let want: Vec<f32> = (0..t)
                .map(|ti| {
                    (0..c)
                        .map(|i| ln_ref[ti * c + i] as f64 * shared_g[i] as f64)
                        .sum::<f64>() as f32
                })
                .collect();
            assert_close("shared gate logits", &shared_gate, &want, 1e-4, 1e-4);
        } else {
            assert!(shared_gate.is_empty());
        }
        // without renormalisation the weights are the chosen probabilities
        let raw = gate(false);
        assert_eq!(raw.sel_e, sel);
        for (i, (&s, &rw)) in sel.iter().zip(&raw.sel_w).enumerate() {
            assert_eq!(
                rw,
                probs[(i / k) * e + s as usize],
                "unnormalised weight {i}"
            );
        }
    }
}

#[test]
fn moe_mlp_matches_reference() {
    let g = gpu();
    for &(t, e, k, c, h, act, flag) in &[
        (6, 4, 2, 8, 16, Activation::Gelu, 2),
        (13, 8, 1, 16, 32, Activation::Relu, moe::RELU),
        (5, 3, 3, 8, 12, Activation::Silu, moe::SILU),
        (40, 8, 2, 16, 64, Activation::Gelu, 2),
        (1, 8, 2, 32, 128, Activation::Gelu, 2),
        // long texts and many experts: routing and statistics stay linear in the tokens
        // (llvmpipe cut the routing's loops short at 64 experts x 600 tokens, and the
        // statistics at 8 experts x 2,100)
        (600, 64, 2, 8, 8, Activation::Gelu, 2),
        (2100, 8, 2, 8, 8, Activation::Gelu, 2),
    ] {
        let x = rand_vec(t * c, 40, 1.0);
        let ln = rand_vec(t * c, 41, 1.0);
        let router = rand_vec(c * e, 42, 1.0);
        let w1: Vec<Vec<f32>> = (0..e)
            .map(|i| rand_vec(c * h, 50 + i as u64, 0.3))
            .collect();
        let b1: Vec<Option<Vec<f32>>> = (0..e)
            .map(|i| Some(rand_vec(h, 60 + i as u64, 0.1)))
            .collect();
        let w2: Vec<Vec<f32>> = (0..e)
            .map(|i| rand_vec(h * c, 70 + i as u64, 0.3))
            .collect();
        let b2: Vec<Option<Vec<f32>>> = (0..e)
            .map(|i| Some(rand_vec(c, 80 + i as u64, 0.1)))
            .collect();
        let logits = reference::matmul::matmul(&ln, &router, None, None, t, e, c, false);
        let (want, usage, loss) =
            reference::moe::moe_mlp(&x, &ln, &router, &w1, &b1, &w2, &b2, k, act, c);
        let flat = |v: &[Vec<f32>]| v.concat();
        let flat_b = |v: &[Option<Vec<f32>>]| {
            v.iter()
                .flat_map(|b| b.clone().unwrap())
                .collect::<Vec<f32>>()
        };
        let variants: Vec<&'static str> = ["moe_matmul", "moe_matmul_subgroup"]
            .into_iter()
            .filter(|v| g.pipelines.has(v))
            .collect();
        assert!(variants.contains(&"moe_matmul"));
        let mut stats = Vec::new();
        for variant in variants {
            let (got, st) = moe::run_moe_mlp(
                &g.ctx,
                &g.pipelines,
                variant,
                &moe::HostMoe {
                    x: &x,
                    ln: &ln,
                    router_logits: &padded(&logits, e),
                    w1: &flat(&w1),
                    b1: &flat_b(&b1),
                    w2: &flat(&w2),
                    b2: &flat_b(&b2),
                    e,
                    k,
                    c,
                    h,
                    act_flag: flag,
                    swiglu: false,
                },
            )
            .unwrap();
            assert_close(
                &format!("{variant} t{t} e{e} k{k}"),
                &got,
                &want,
                1e-4,
                1e-4,
            );
            stats = st;
        }
        let usage: Vec<f32> = usage.iter().map(|&u| u as f32).collect();
        assert_close("expert_usage", &stats[..e], &usage, 1e-6, 1e-5);
        assert!((stats[..e].iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert!(
            (stats[2 * e] as f64 - loss).abs() < 1e-4 * loss.max(1.0),
            "loss {} vs {loss}",
            stats[2 * e]
        );
    }
}

/// A tile of the grouped matmuls with at most 4 assignments (a decode step's: one or
/// two tokens an expert) computes only those rows (`moe_rows4`; a lone row over
/// half-float weights 8 columns an invocation); a token's numbers are the same, bit
/// for bit, whether its expert's tile is full or holds it alone, in every variant, f32
/// and f16 weights. SwiGLU experts too: a step of at most 4 tokens gates in the gate |
/// up projection (`SWIGLU_OUT`), a longer one dispatches the `swiglu` kernel, with the
/// same numbers.
#[test]
fn a_token_alone_in_its_experts_tiles_gets_the_numbers_of_a_full_tile() {
    let g = gpu();
    // outputs of 160 (40 vec4s, past one workgroup's 32: a grid a one-token step
    // halves for the 8-column path, and a longer step must not) in one panel of 160
    let (t, e, k, c, h) = (10, 4, 2, 160, 160);
    let x = rand_vec(t * c, 110, 1.0);
    let ln = rand_vec(t * c, 111, 1.0);
    // token i prefers experts i % 4 and (i + 1) % 4: 5 assignments an expert (a tile
    // of more than 4)
    let logits: Vec<f32> = (0..t)
        .flat_map(|i| {
            (0..e).map(move |j| {
                if j == i % e {
                    2.0
                } else if j == (i + 1) % e {
                    1.0
                } else {
                    0.0
                }
            })
        })
        .collect();
    // the fc's weights for GELU experts ([E, C, H]) and SwiGLU ones (gate | up)
    let w1 = rand_vec(e * c * 2 * h, 112, 0.3);
    let b1 = rand_vec(e * 2 * h, 113, 0.1);
    let w2 = rand_vec(e * h * c, 114, 0.3);
    let b2 = rand_vec(e * c, 115, 0.1);
    let variants: Vec<&'static str> = [
        "moe_matmul",
        "moe_matmul_subgroup",
        "moe_matmul_f16",
        "moe_matmul_f16_subgroup",
    ]
    .into_iter()
    .filter(|v| g.pipelines.has(v))
    .collect();
    assert!(variants.len() >= 2);
    assert!(!moe::swiglu_in_fc(t) && moe::swiglu_in_fc(3));
    for (variant, swiglu) in variants.iter().flat_map(|&v| [(v, false), (v, true)]) {
        let fc = if swiglu { 2 * h } else { h };
        let run = |rows: std::ops::Range<usize>| {
            let (r, n) = (rows.start, rows.len());
            moe::run_moe_mlp(
                &g.ctx,
                &g.pipelines,
                variant,
                &moe::HostMoe {
                    x: &x[r * c..(r + n) * c],
                    ln: &ln[r * c..(r + n) * c],
                    router_logits: &padded(&logits[r * e..(r + n) * e], e),
                    w1: &w1[..e * c * fc],
                    b1: &b1[..e * fc],
                    w2: &w2,
                    b2: &b2,
                    e,
                    k,
                    c,
                    h,
                    act_flag: if swiglu { 0 } else { 2 },
                    swiglu,
                },
            )
            .unwrap()
            .0
        };
        let full = run(0..t);
        // alone (every tile one row), and 3 tokens (tiles of 1 and 2 rows)
        for rows in [0..1, 3..4, 9..10, 4..7] {
            let alone = run(rows.clone());
            let want = &full[rows.start * c..rows.end * c];
            let same = alone
                .iter()
                .zip(want)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(
                same,
                "{variant} swiglu {swiglu}: tokens {rows:?} alone {:?} in full tiles {:?}",
                &alone[..4],
                &want[..4]
            );
        }
    }
}

#[test]
fn half_float_experts_match_reference_on_rounded_weights() {
    use wgformer::gpu::f16::round_to_f16;
    let g = gpu();
    // h = 128: the experts' fc matrices are stored as two 64-column panels
    let (t, e, k, c, h) = (19, 4, 2, 16, 128);
    let x = rand_vec(t * c, 90, 1.0);
    let ln = rand_vec(t * c, 91, 1.0);
    let router = rand_vec(c * e, 92, 1.0);
    let w1: Vec<Vec<f32>> = (0..e)
        .map(|i| rand_vec(c * h, 93 + i as u64, 0.3))
        .collect();
    let w2: Vec<Vec<f32>> = (0..e)
        .map(|i| rand_vec(h * c, 97 + i as u64, 0.3))
        .collect();
    let b1: Vec<Option<Vec<f32>>> = (0..e)
        .map(|i| Some(rand_vec(h, 101 + i as u64, 0.1)))
        .collect();
    let b2: Vec<Option<Vec<f32>>> = (0..e)
        .map(|i| Some(rand_vec(c, 105 + i as u64, 0.1)))
        .collect();
    let r1: Vec<Vec<f32>> = w1.iter().map(|w| round_to_f16(w)).collect();
    let r2: Vec<Vec<f32>> = w2.iter().map(|w| round_to_f16(w)).collect();
    let logits = reference::matmul::matmul(&ln, &router, None, None, t, e, c, false);
    let (want, _, _) =
        reference::moe::moe_mlp(&x, &ln, &router, &r1, &b1, &r2, &b2, k, Activation::Gelu, c);
    let bias = |v: &[Option<Vec<f32>>]| {
        v.iter()
            .flat_map(|b| b.clone().unwrap())
            .collect::<Vec<f32>>()
    };
    for variant in ["moe_matmul_f16", "moe_matmul_f16_subgroup"]
        .into_iter()
        .filter(|v| g.pipelines.has(v))
    {
        let (got, _) = moe::run_moe_mlp(
            &g.ctx,
            &g.pipelines,
            variant,
            &moe::HostMoe {
                x: &x,
                ln: &ln,
                router_logits: &padded(&logits, e),
                w1: &w1.concat(),
                b1: &bias(&b1),
                w2: &w2.concat(),
                b2: &bias(&b2),
                e,
                k,
                c,
                h,
                act_flag: 2,
                swiglu: false,
            },
        )
        .unwrap();
        assert_close(variant, &got, &want, 1e-4, 1e-4);
    }
}
