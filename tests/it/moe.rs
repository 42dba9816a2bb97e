//! Mixture-of-Experts kernels against the CPU reference: gating edge cases (ties,
//! k = 1, k = E), the whole MoE MLP, usage and load-balance statistics.

use crate::common;

use common::{assert_close, gpu, rand_vec};
use wgformer::config::Activation;
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
            },
        )
        .unwrap();
        assert_close(variant, &got, &want, 1e-4, 1e-4);
    }
}
