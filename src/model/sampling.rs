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

    /// Pick the next token from `logits`.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        if self.params.temperature <= 0.0 {
            return argmax(logits);
        }
        let mut idx: Vec<usize> = (0..logits.len()).collect();
        idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
        if self.params.top_k > 0 {
            idx.truncate(self.params.top_k.max(1));
        }
        let inv_t = 1.0 / self.params.temperature as f64;
        let max = logits[idx[0]] as f64;
        let mut probs: Vec<f64> = idx
            .iter()
            .map(|&i| ((logits[i] as f64 - max) * inv_t).exp())
            .collect();
        let sum: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= sum);
        if self.params.top_p < 1.0 {
            let mut cum = 0.0;
            let mut keep = probs.len();
            for (i, p) in probs.iter().enumerate() {
                cum += p;
                if cum >= self.params.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
            probs.truncate(keep);
            idx.truncate(keep);
        }
        let total: f64 = probs.iter().sum();
        let mut r = self.rng.random::<f64>() * total;
        for (p, &i) in probs.iter().zip(&idx) {
            if r < *p {
                return i as u32;
            }
            r -= p;
        }
        idx[probs.len() - 1] as u32
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
