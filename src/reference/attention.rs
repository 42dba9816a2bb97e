//! Reference causal multi-head attention with per-row entropy.

/// `qkv [T, 3C]` → `(out [T, C], entropy [NH, T])`; scores scaled by 1/√HS,
/// softmax with the row max subtracted, entropy in nats.
pub fn attention(qkv: &[f32], c: usize, nh: usize) -> (Vec<f32>, Vec<f32>) {
    attention_masked(qkv, c, nh, |i, j| j <= i)
}

/// Attention where query `i` sees key `j` only when `allow(i, j)` (block-sparse layouts).
pub fn attention_masked(
    qkv: &[f32],
    c: usize,
    nh: usize,
    allow: impl Fn(usize, usize) -> bool,
) -> (Vec<f32>, Vec<f32>) {
    let t = qkv.len() / (3 * c);
    let hs = c / nh;
    let mut out = vec![0.0f32; t * c];
    let mut entropy = vec![0.0f32; nh * t];
    let at = |row: usize, col: usize| qkv[row * 3 * c + col] as f64;
    for h in 0..nh {
        for i in 0..t {
            let probs = row_probs(qkv, c, nh, h, i, &allow);
            entropy[h * t + i] = -probs
                .iter()
                .filter(|&&(_, p)| p > 0.0)
                .map(|(_, p)| p * p.ln())
                .sum::<f64>() as f32;
            for d in 0..hs {
                let v: f64 = probs
                    .iter()
                    .map(|&(j, p)| p * at(j, 2 * c + h * hs + d))
                    .sum();
                out[i * c + h * hs + d] = v as f32;
            }
        }
    }
    (out, entropy)
}

/// The attention weights `[NH, T, T]`: row (h, i) is the softmax over the keys query
/// `i` sees (`allow(i, j)`), 0 for the others.
pub fn weights_masked(
    qkv: &[f32],
    c: usize,
    nh: usize,
    allow: impl Fn(usize, usize) -> bool,
) -> Vec<f32> {
    let t = qkv.len() / (3 * c);
    let mut w = vec![0.0f32; nh * t * t];
    for h in 0..nh {
        for i in 0..t {
            for (j, p) in row_probs(qkv, c, nh, h, i, &allow) {
                w[(h * t + i) * t + j] = p as f32;
            }
        }
    }
    w
}

/// Softmax of query `i`'s scaled scores against the keys it sees, head `h`, in f64:
/// `(key, weight)` pairs.
fn row_probs(
    qkv: &[f32],
    c: usize,
    nh: usize,
    h: usize,
    i: usize,
    allow: &impl Fn(usize, usize) -> bool,
) -> Vec<(usize, f64)> {
    let t = qkv.len() / (3 * c);
    let hs = c / nh;
    let scale = 1.0 / (hs as f64).sqrt();
    let at = |row: usize, col: usize| qkv[row * 3 * c + col] as f64;
    let keys: Vec<usize> = (0..t).filter(|&j| allow(i, j)).collect();
    let scores: Vec<f64> = keys
        .iter()
        .map(|&j| {
            (0..hs)
                .map(|d| at(i, h * hs + d) * at(j, c + h * hs + d))
                .sum::<f64>()
                * scale
        })
        .collect();
    let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    keys.into_iter().zip(exps.iter().map(|e| e / sum)).collect()
}
