//! Host-side logit maths on read-back rows: softmax with the top k, log-sum-exp parts,
//! ordering by rank (ties to the lower id). Sampling and the forwards both use it.

use super::output::TokenProb;

/// Softmax over `logits` (max subtracted) and the `k` most likely ids, ties to the lower id.
pub fn top_k_softmax(logits: &[f32], k: usize) -> Vec<TokenProb> {
    if k == 0 || logits.is_empty() {
        return Vec::new();
    }
    let (max, sum) = exp_sum(logits);
    top_k_ids(logits, k)
        .into_iter()
        .map(|i| TokenProb {
            token_id: i as u32,
            probability: ((logits[i] as f64 - max).exp() / sum) as f32,
        })
        .collect()
}

/// The largest logit and Σ exp(logit − largest): one pass, f32 exps (each within
/// f32's precision; an f64 exp of 50,257 logits costs several times more) summed in f64.
pub fn exp_sum(logits: &[f32]) -> (f64, f64) {
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let sum = logits.iter().map(|&x| (x - max).exp() as f64).sum();
    (max as f64, sum)
}

/// The ids of the `k` largest logits, largest first, ties to the lower id (selected,
/// then only those sorted).
pub fn top_k_ids(logits: &[f32], k: usize) -> Vec<usize> {
    let mut idx = top_k_unordered(logits, k);
    idx.sort_by(|a, b| by_rank(logits, *a, *b));
    idx
}

/// The ids of the `k` largest logits (ties to the lower id), in no particular order.
pub fn top_k_unordered(logits: &[f32], k: usize) -> Vec<usize> {
    let k = k.min(logits.len());
    if k == 0 {
        return Vec::new();
    }
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.select_nth_unstable_by(k - 1, |a, b| by_rank(logits, *a, *b));
    idx.truncate(k);
    idx
}

/// Rank order of ids `a` and `b`: the larger logit first, ties to the lower id.
pub fn by_rank(logits: &[f32], a: usize, b: usize) -> std::cmp::Ordering {
    logits[b].total_cmp(&logits[a]).then(a.cmp(&b))
}
