//! The next-token draw from a row of logits, spelled with a full sort: the semantics
//! of the host sampler (`model::sampling`) and of the `sample_rows` kernel.
//!
//! 1. top-k (0 < k < V): every id whose logit is at or above the k-th largest (ties at
//!    the edge all kept); else every id;
//! 2. weights `exp((logit - max) · inv_t)` in f32 (max over the row), sums in f64;
//! 3. top-p (< 1): of those, every id whose logit is at or above the first one in rank
//!    order (larger logit first) at which the cumulative weight reaches top_p of their
//!    total (again ties at the edge all kept);
//! 4. min-p (> 0): of those, every id whose weight (its probability over the most
//!    likely id's) is at least min_p;
//! 5. the draw: `u · (the kept weights' sum)` walked over the kept ids in id order.
//!
//! A greedy row ([`Draw::GREEDY`], `inv_t` < 0) takes [`largest`] instead.
//!
//! "At or above" is f32's total order (`total_cmp`), which is the order of the
//! kernel's integer keys.

/// One row's draw: `1 / temperature`, top-k (0: no limit), top-p (1: no limit), its
/// uniform number in [0, 1), and min-p (0: no limit).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Draw {
    pub inv_t: f32,
    pub top_k: usize,
    pub top_p: f32,
    pub u: f32,
    pub min_p: f32,
}

impl Draw {
    /// A greedy row: the largest logit ([`largest`]), drawn by nothing.
    pub const GREEDY: Draw = Draw {
        inv_t: -1.0,
        top_k: 1,
        top_p: 1.0,
        u: 0.0,
        min_p: 0.0,
    };
}

/// Values at or below this never win [`largest`] (nor `top_k_rows`).
pub const LOW: f32 = -3.4e38;

/// A greedy row's token: the id of the largest logit above [`LOW`] (NaN and -inf never
/// win), the lowest of equal ones; 0 when there is none. The device argmax's
/// semantics (`top_k_rows` with k = 1, windows merged in id order).
pub fn largest(logits: &[f32]) -> u32 {
    let mut best: Option<(usize, f32)> = None;
    for (i, &x) in logits.iter().enumerate() {
        if x > best.map_or(LOW, |b| b.1) {
            best = Some((i, x));
        }
    }
    best.map_or(0, |b| b.0 as u32)
}

/// The ids kept by top-k, top-p and min-p, in rank order, with their weights.
pub fn kept(logits: &[f32], d: Draw) -> Vec<(usize, f64)> {
    let n = logits.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    let Some(&top) = order.first() else {
        return Vec::new();
    };
    let max = logits[top];
    let at_or_above = |tau: f32| move |&i: &usize| logits[i].total_cmp(&tau).is_ge();
    if d.top_k > 0 && d.top_k < n {
        let tau = logits[order[d.top_k - 1]];
        order.retain(at_or_above(tau));
    }
    let w = |i: usize| ((logits[i] - max) * d.inv_t).exp() as f64;
    if d.top_p < 1.0 {
        let total: f64 = order.iter().map(|&i| w(i)).sum();
        let target = d.top_p as f64 * total;
        let mut cum = 0.0;
        if let Some(&edge) = order.iter().find(|&&i| {
            cum += w(i);
            cum > 0.0 && cum >= target
        }) {
            order.retain(at_or_above(logits[edge]));
        }
    }
    if d.min_p > 0.0 {
        // the weight as f32, as the sampler and the kernel compare it
        order.retain(|&i| ((logits[i] - max) * d.inv_t).exp() >= d.min_p);
    }
    order.into_iter().map(|i| (i, w(i))).collect()
}

/// The id drawn (the last kept id with a weight when rounding leaves the walk short;
/// 0 for an empty row).
pub fn sample(logits: &[f32], d: Draw) -> u32 {
    if d.inv_t < 0.0 {
        return largest(logits);
    }
    let mut kept = kept(logits, d);
    kept.sort_unstable_by_key(|&(i, _)| i);
    let mut r = d.u as f64 * kept.iter().map(|&(_, w)| w).sum::<f64>();
    let mut last = 0;
    for (i, w) in kept {
        if w > 0.0 {
            if r < w {
                return i as u32;
            }
            r -= w;
            last = i;
        }
    }
    last as u32
}
