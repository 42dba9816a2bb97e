//! Reference causal multi-head attention with per-row entropy, grouped-query heads and
//! a sliding window as [`Heads`] says.

use crate::config::Heads;

/// `qkv [T, Q + 2 KV]` (GPT-2: `[T, 3C]`) → `(out [T, Q], entropy [NH, T])`; scores
/// scaled by 1/√HS (and soft-capped where `heads` says), softmax with the row max
/// subtracted, entropy in nats. Query `i` sees the keys `heads` lets it (causal, within
/// the window).
pub fn attention(qkv: &[f32], heads: Heads) -> (Vec<f32>, Vec<f32>) {
    attention_masked(qkv, heads, |i, j| heads.sees(i, j))
}

/// Attention where query `i` sees key `j` only when `allow(i, j)` (block-sparse layouts).
pub fn attention_masked(
    qkv: &[f32],
    heads: Heads,
    allow: impl Fn(usize, usize) -> bool,
) -> (Vec<f32>, Vec<f32>) {
    let (nh, hs, row) = (heads.nh, heads.hs, heads.qkv_width());
    let t = qkv.len() / row;
    let q = heads.q_width();
    let mut out = vec![0.0f32; t * q];
    let mut entropy = vec![0.0f32; nh * t];
    let at = |r: usize, col: usize| qkv[r * row + col] as f64;
    for h in 0..nh {
        let v0 = q + heads.kv_width() + kv_head(heads, h) * hs;
        for i in 0..t {
            let probs = row_probs(qkv, heads, h, i, &allow);
            entropy[h * t + i] = -probs
                .iter()
                .filter(|&&(_, p)| p > 0.0)
                .map(|(_, p)| p * p.ln())
                .sum::<f64>() as f32;
            for d in 0..hs {
                let v: f64 = probs.iter().map(|&(j, p)| p * at(j, v0 + d)).sum();
                out[i * q + h * hs + d] = v as f32;
            }
        }
    }
    (out, entropy)
}

/// The attention weights `[NH, T, T]`: row (h, i) is the softmax over the keys query
/// `i` sees (`allow(i, j)`), 0 for the others.
pub fn weights_masked(qkv: &[f32], heads: Heads, allow: impl Fn(usize, usize) -> bool) -> Vec<f32> {
    let (nh, t) = (heads.nh, qkv.len() / heads.qkv_width());
    let mut w = vec![0.0f32; nh * t * t];
    for h in 0..nh {
        for i in 0..t {
            for (j, p) in row_probs(qkv, heads, h, i, &allow) {
                w[(h * t + i) * t + j] = p as f32;
            }
        }
    }
    w
}

/// The key/value head query head `h` reads.
fn kv_head(heads: Heads, h: usize) -> usize {
    h / (heads.nh / heads.nkv)
}

/// Softmax of query `i`'s scaled scores against the keys it sees, head `h`, in f64:
/// `(key, weight)` pairs.
fn row_probs(
    qkv: &[f32],
    heads: Heads,
    h: usize,
    i: usize,
    allow: &impl Fn(usize, usize) -> bool,
) -> Vec<(usize, f64)> {
    let (hs, row) = (heads.hs, heads.qkv_width());
    let t = qkv.len() / row;
    let k0 = heads.q_width() + kv_head(heads, h) * hs;
    let scale = 1.0 / (hs as f64).sqrt();
    let at = |r: usize, col: usize| qkv[r * row + col] as f64;
    let keys: Vec<usize> = (0..t).filter(|&j| allow(i, j)).collect();
    let scores: Vec<f64> = keys
        .iter()
        .map(|&j| {
            (0..hs)
                .map(|d| at(i, h * hs + d) * at(j, k0 + d))
                .sum::<f64>()
                * scale
        })
        .map(|s| heads.capped(s))
        .collect();
    let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    keys.into_iter().zip(exps.iter().map(|e| e / sum)).collect()
}
