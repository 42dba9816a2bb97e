//! Reference Mixture-of-Experts: gating and the MoE MLP, in f64.

use super::gelu::{gelu, relu, silu};
use crate::config::Activation;

/// Softmax over `logits` (max subtracted), the `k` most likely experts (ties to the lower
/// index), their probabilities renormalised over the chosen: `(probs, chosen, weights)`.
pub fn gate(logits: &[f32], k: usize, renorm: bool) -> (Vec<f64>, Vec<usize>, Vec<f64>) {
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    let exps: Vec<f64> = logits.iter().map(|&x| (x as f64 - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    let probs: Vec<f64> = exps.iter().map(|e| e / sum).collect();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    let chosen: Vec<usize> = order[..k].to_vec();
    let total: f64 = if renorm {
        chosen.iter().map(|&i| probs[i]).sum()
    } else {
        1.0
    };
    let weights = chosen.iter().map(|&i| probs[i] / total).collect();
    (probs, chosen, weights)
}

/// Apply an MLP activation.
pub fn activate(a: Activation, x: f64) -> f64 {
    match a {
        Activation::Gelu => gelu(x),
        Activation::Relu => relu(x),
        Activation::Silu => silu(x),
    }
}

/// `x + MoE(ln)`: router `[C, E]` (no bias), experts' `w1 [E][C, H]`, `b1 [E][H]`,
/// `w2 [E][H, C]`, `b2 [E][C]`. Returns `(new x, expert_usage, load_balance_loss)`.
#[allow(clippy::too_many_arguments)]
pub fn moe_mlp(
    x: &[f32],
    ln: &[f32],
    router: &[f32],
    w1: &[Vec<f32>],
    b1: &[Option<Vec<f32>>],
    w2: &[Vec<f32>],
    b2: &[Option<Vec<f32>>],
    k: usize,
    act: Activation,
    c: usize,
) -> (Vec<f32>, Vec<f64>, f64) {
    let e = w1.len();
    let h = w1[0].len() / c;
    let t = x.len() / c;
    let mut out = x.to_vec();
    let mut counts = vec![0usize; e];
    let mut mean_p = vec![0.0f64; e];
    for ti in 0..t {
        let row = &ln[ti * c..(ti + 1) * c];
        let logits: Vec<f32> = (0..e)
            .map(|j| {
                (0..c)
                    .map(|i| row[i] as f64 * router[i * e + j] as f64)
                    .sum::<f64>() as f32
            })
            .collect();
        let (probs, chosen, weights) = gate(&logits, k, true);
        for j in 0..e {
            mean_p[j] += probs[j] / t as f64;
        }
        for (&ex, &wt) in chosen.iter().zip(&weights) {
            counts[ex] += 1;
            let hid: Vec<f64> = (0..h)
                .map(|o| {
                    let s: f64 = (0..c)
                        .map(|i| row[i] as f64 * w1[ex][i * h + o] as f64)
                        .sum();
                    activate(act, s + b1[ex].as_ref().map_or(0.0, |b| b[o] as f64))
                })
                .collect();
            for o in 0..c {
                let s: f64 = (0..h).map(|i| hid[i] * w2[ex][i * c + o] as f64).sum();
                let y = s + b2[ex].as_ref().map_or(0.0, |b| b[o] as f64);
                out[ti * c + o] = (out[ti * c + o] as f64 + wt * y) as f32;
            }
        }
    }
    let usage: Vec<f64> = counts.iter().map(|&n| n as f64 / (t * k) as f64).collect();
    let loss = e as f64 * usage.iter().zip(&mean_p).map(|(f, p)| f * p).sum::<f64>();
    (out, usage, loss)
}
