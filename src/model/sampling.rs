//! Next-token sampling with the parameters clients know from Hugging Face `generate`
//! and OpenAI-style servers: temperature (0 = greedy), top-k, top-p, seed.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How to pick the next token.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    /// 0 = greedy (argmax, ties to the lower id).
    pub temperature: f32,
    /// Keep the k most likely tokens; 0 = no limit.
    pub top_k: usize,
    /// Keep the smallest set whose probability reaches p; 1 = no limit.
    pub top_p: f32,
    /// Same seed, same choices.
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 1.0,
            top_k: 50,
            top_p: 1.0,
            seed: 0,
        }
    }
}

/// A seeded sampler.
pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(params.seed);
        Sampler { params, rng }
    }

    /// Pick the next token from `logits`: among the `top_k` most likely (all with
    /// 0), the smallest set reaching `top_p` in rank order, drawn with probabilities
    /// `softmax(logits / temperature)`. Ranks (larger logit first, ties to the lower
    /// id) are sorted only as far as the draw walks ([`Ranked`]): a few hundred ids
    /// for a peaked distribution, not the whole vocabulary; with neither filter the
    /// draw needs no ranks and walks the ids in order.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        if self.params.temperature <= 0.0 || logits.is_empty() {
            return argmax(logits);
        }
        let n = logits.len();
        let k = match self.params.top_k {
            0 => n,
            k => k.min(n),
        };
        let inv_t = 1.0 / self.params.temperature as f64;
        if k == n && self.params.top_p >= 1.0 {
            return self.draw_in_id_order(logits, inv_t);
        }
        let mut ranked = Ranked::new(logits, k);
        let max = logits[ranked.at(0)] as f64;
        // every id's weight once when every id is a candidate
        let all: Vec<f64> = if k < n {
            Vec::new()
        } else {
            logits
                .iter()
                .map(|&x| ((x as f64 - max) * inv_t).exp())
                .collect()
        };
        let weight = |i: usize| match all.get(i) {
            Some(&w) => w,
            None => ((logits[i] as f64 - max) * inv_t).exp(),
        };
        // the normalizer: over the k candidates in rank order, or over every id in id
        // order (no sort needed)
        let total: f64 = if k < n {
            (0..k).map(|j| weight(ranked.at(j))).sum()
        } else {
            all.iter().sum()
        };
        let prob = |i: usize| weight(i) / total;
        // the nucleus: the first ranks whose probabilities reach top_p
        let (keep, kept) = if self.params.top_p < 1.0 {
            let mut cum = 0.0;
            let mut keep = k;
            for j in 0..k {
                cum += prob(ranked.at(j));
                if cum >= self.params.top_p as f64 {
                    keep = j + 1;
                    break;
                }
            }
            (keep, (0..keep).map(|j| prob(ranked.at(j))).sum::<f64>())
        } else if k < n {
            (k, (0..k).map(|j| prob(ranked.at(j))).sum::<f64>())
        } else {
            (n, (0..n).map(prob).sum::<f64>())
        };
        let mut r = self.rng.random::<f64>() * kept;
        for j in 0..keep {
            let i = ranked.at(j);
            let p = prob(i);
            if r < p {
                return i as u32;
            }
            r -= p;
        }
        ranked.at(keep - 1) as u32
    }
}

impl Sampler {
    /// The draw when every id is a candidate and nothing is cut (no `top_k`, `top_p`
    /// 1: the OpenAI API's defaults): no ranks are needed, so the weights are walked in
    /// id order, one pass over the row (the same distribution as a walk in rank order).
    fn draw_in_id_order(&mut self, logits: &[f32], inv_t: f64) -> u32 {
        // weights in f32 (each within f32's precision of its value; an f64 exp of
        // every id costs several times more), summed in f64
        let max = logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        let inv_t = inv_t as f32;
        let weights: Vec<f32> = logits.iter().map(|&x| ((x - max) * inv_t).exp()).collect();
        let total: f64 = weights.iter().map(|&w| w as f64).sum();
        let mut r = self.rng.random::<f64>() * total;
        let mut last = argmax(logits);
        for (i, &w) in weights.iter().enumerate() {
            let w = w as f64;
            if w > 0.0 {
                if r < w {
                    return i as u32;
                }
                r -= w;
                last = i as u32;
            }
        }
        // rounding left r at or past the last weight
        last
    }
}

/// The `k` highest-ranked ids of `logits` (larger logit first, ties to the lower id),
/// sorted lazily: [`Ranked::at`] sorts blocks of growing size as ranks are asked for
/// (select the block's members, then sort only them), so the order of the first ranks
/// costs O(V) rather than a sort of every id.
struct Ranked<'a> {
    logits: &'a [f32],
    /// ids; the first `sorted` in rank order, the rest below them and unordered
    idx: Vec<usize>,
    sorted: usize,
}

impl<'a> Ranked<'a> {
    fn new(logits: &'a [f32], k: usize) -> Self {
        let mut r = Ranked {
            logits,
            idx: (0..logits.len()).collect(),
            sorted: 0,
        };
        if k < r.idx.len() {
            let by_rank = r.by_rank();
            r.idx.select_nth_unstable_by(k - 1, by_rank);
            r.idx.truncate(k);
        }
        r
    }

    fn by_rank(&self) -> impl Fn(&usize, &usize) -> std::cmp::Ordering + 'a {
        let l = self.logits;
        move |a: &usize, b: &usize| l[*b].total_cmp(&l[*a]).then(a.cmp(b))
    }

    /// The id at rank `j` (< k).
    fn at(&mut self, j: usize) -> usize {
        while j >= self.sorted {
            let by_rank = self.by_rank();
            let rest = &mut self.idx[self.sorted..];
            let block = (3 * self.sorted).max(64).min(rest.len());
            if block < rest.len() {
                rest.select_nth_unstable_by(block - 1, &by_rank);
            }
            rest[..block].sort_by(&by_rank);
            self.sorted += block;
        }
        self.idx[j]
    }
}

/// A token's log-probability under the model (log-softmax of the raw logits, before
/// temperature and filters) and the most likely alternatives at its position.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprob {
    pub logprob: f32,
    /// `(token id, logprob)`, most likely first, ties to the lower id.
    pub top: Vec<(u32, f32)>,
}

/// [`TokenLogprob`] of `token` under `logits`, with `alternatives` alternatives.
pub fn token_logprob(logits: &[f32], token: u32, alternatives: usize) -> TokenLogprob {
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    let log_sum = logits
        .iter()
        .map(|&x| (x as f64 - max).exp())
        .sum::<f64>()
        .ln();
    let lp = |i: usize| (logits[i] as f64 - max - log_sum) as f32;
    TokenLogprob {
        logprob: logits
            .get(token as usize)
            .map_or(f32::NEG_INFINITY, |_| lp(token as usize)),
        top: crate::model::forward::top_k_softmax(logits, alternatives)
            .into_iter()
            .map(|t| (t.token_id, lp(t.token_id as usize)))
            .collect(),
    }
}

/// Index of the largest logit, ties to the lower index.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in logits.iter().enumerate() {
        if x > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logprobs_are_a_log_softmax() {
        let logits = [1.0f32, 3.0, 2.0, 3.0];
        let t = token_logprob(&logits, 2, 3);
        let z: f64 = logits.iter().map(|&x| (x as f64).exp()).sum();
        assert!((t.logprob as f64 - (2.0 - z.ln())).abs() < 1e-6);
        assert_eq!(t.top.iter().map(|p| p.0).collect::<Vec<_>>(), vec![1, 3, 2]);
        let total: f64 = (0..4)
            .map(|i| (token_logprob(&logits, i, 0).logprob as f64).exp())
            .sum();
        assert!((total - 1.0).abs() < 1e-6);
    }

    /// The sampler spelled with a full sort of every id by rank (the normalizer and the
    /// nucleus summed in the same orders as [`Sampler::sample`]).
    fn sample_by_full_sort(p: &SamplingParams, rng: &mut ChaCha8Rng, logits: &[f32]) -> u32 {
        let n = logits.len();
        let k = if p.top_k == 0 { n } else { p.top_k.min(n) };
        let mut idx: Vec<usize> = (0..n).collect();
        idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
        idx.truncate(k);
        let (max, inv_t) = (logits[idx[0]] as f64, 1.0 / p.temperature as f64);
        let w = |i: usize| ((logits[i] as f64 - max) * inv_t).exp();
        let total: f64 = if k < n {
            idx.iter().map(|&i| w(i)).sum()
        } else {
            (0..n).map(w).sum()
        };
        let mut probs: Vec<f64> = idx.iter().map(|&i| w(i) / total).collect();
        let kept = if p.top_p < 1.0 {
            let mut cum = 0.0;
            let keep = probs
                .iter()
                .position(|q| {
                    cum += q;
                    cum >= p.top_p as f64
                })
                .map_or(probs.len(), |i| i + 1);
            probs.truncate(keep);
            idx.truncate(keep);
            probs.iter().sum::<f64>()
        } else if k < n {
            probs.iter().sum::<f64>()
        } else {
            (0..n).map(|i| w(i) / total).sum::<f64>()
        };
        if k == n && p.top_p >= 1.0 {
            // no filter: the draw walks the weights (f32) in id order
            let max = logits[idx[0]];
            let w32 = |i: usize| ((logits[i] - max) * inv_t as f32).exp() as f64;
            let mut r = rng.random::<f64>() * (0..n).map(w32).sum::<f64>();
            for i in 0..n {
                if r < w32(i) {
                    return i as u32;
                }
                r -= w32(i);
            }
            return (0..n).rev().find(|&i| w32(i) > 0.0).unwrap_or(0) as u32;
        }
        let mut r = rng.random::<f64>() * kept;
        for (q, &i) in probs.iter().zip(&idx) {
            if r < *q {
                return i as u32;
            }
            r -= q;
        }
        idx[probs.len() - 1] as u32
    }

    #[test]
    fn selecting_the_top_k_chooses_as_the_full_sort() {
        // many tied logits (17 distinct values) and a vocabulary-sized row
        let tied: Vec<f32> = (0..300).map(|i| ((i * 37) % 17) as f32 * 0.4).collect();
        let wide: Vec<f32> = (0..50257u32)
            .map(|i| ((i.wrapping_mul(2654435761) >> 7) % 10007) as f32 * 1e-3)
            .collect();
        // a language model's row: a few likely ids, a long tail
        let peaked: Vec<f32> = wide.iter().map(|x| x * 3.0).collect();
        for logits in [&tied, &wide, &peaked] {
            for (top_k, top_p, temperature) in [
                (0, 1.0, 1.0),
                (1, 1.0, 1.0),
                (5, 1.0, 0.7),
                (50, 0.9, 1.3),
                (17, 0.5, 1.0),
                (logits.len(), 1.0, 1.0),
                (logits.len() + 10, 0.95, 0.8),
            ] {
                let p = SamplingParams {
                    temperature,
                    top_k,
                    top_p,
                    seed: 9,
                };
                let mut s = Sampler::new(p.clone());
                let mut rng = ChaCha8Rng::seed_from_u64(9);
                for draw in 0..40 {
                    assert_eq!(
                        s.sample(logits),
                        sample_by_full_sort(&p, &mut rng, logits),
                        "{p:?} draw {draw}"
                    );
                }
            }
        }
    }

    #[test]
    fn draws_follow_the_softmax_with_and_without_filters() {
        // frequencies of 40,000 draws against softmax(logits / T) (renormalized over
        // what top_k keeps): the id-order walk (no filter) and the rank-order walk
        let logits = [0.5f32, 2.0, -1.0, 1.5, 2.0, 0.0];
        for (top_k, temperature) in [(0, 1.0f32), (0, 0.6), (3, 1.0)] {
            let mut order: Vec<usize> = (0..6).collect();
            order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
            let kept = if top_k == 0 { 6 } else { top_k };
            let w: Vec<f64> = (0..6)
                .map(|i| {
                    if order[..kept].contains(&i) {
                        ((logits[i] / temperature) as f64).exp()
                    } else {
                        0.0
                    }
                })
                .collect();
            let z: f64 = w.iter().sum();
            let mut s = Sampler::new(SamplingParams {
                temperature,
                top_k,
                top_p: 1.0,
                seed: 5,
            });
            let draws = 40_000;
            let mut count = [0usize; 6];
            for _ in 0..draws {
                count[s.sample(&logits) as usize] += 1;
            }
            for i in 0..6 {
                let f = count[i] as f64 / draws as f64;
                assert!(
                    (f - w[i] / z).abs() < 0.01,
                    "top_k {top_k} T {temperature}: id {i} drawn {f}, probability {}",
                    w[i] / z
                );
            }
        }
    }

    #[test]
    fn greedy_takes_the_first_maximum() {
        assert_eq!(argmax(&[0.1, 3.0, 3.0, -1.0]), 1);
        let mut s = Sampler::new(SamplingParams {
            temperature: 0.0,
            ..Default::default()
        });
        assert_eq!(s.sample(&[0.0, 1.0, 5.0]), 2);
    }

    #[test]
    fn same_seed_same_choices_and_filters_hold() {
        let logits: Vec<f32> = (0..100).map(|i| ((i * 37) % 17) as f32 * 0.3).collect();
        let p = SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            seed: 42,
        };
        let a: Vec<u32> = {
            let mut s = Sampler::new(p.clone());
            (0..50).map(|_| s.sample(&logits)).collect()
        };
        let b: Vec<u32> = {
            let mut s = Sampler::new(p.clone());
            (0..50).map(|_| s.sample(&logits)).collect()
        };
        assert_eq!(a, b);
        let c: Vec<u32> = {
            let mut s = Sampler::new(SamplingParams {
                seed: 43,
                ..p.clone()
            });
            (0..50).map(|_| s.sample(&logits)).collect()
        };
        assert_ne!(a, c);
        // top_k = 3: only the three largest logits (16 · 0.3 at i ≡ 16 mod 17 …)
        let mut order: Vec<usize> = (0..100).collect();
        order.sort_by(|&x, &y| logits[y].total_cmp(&logits[x]).then(x.cmp(&y)));
        let allowed: Vec<u32> = order[..3].iter().map(|&i| i as u32).collect();
        let mut s = Sampler::new(SamplingParams {
            top_k: 3,
            ..p.clone()
        });
        for _ in 0..200 {
            assert!(allowed.contains(&s.sample(&logits)));
        }
        // top_p tiny: only the most likely token
        let mut s = Sampler::new(SamplingParams { top_p: 1e-6, ..p });
        for _ in 0..50 {
            assert_eq!(s.sample(&logits), order[0] as u32);
        }
    }
}
