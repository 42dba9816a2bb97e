//! Next-token sampling with the parameters clients know from Hugging Face `generate`
//! and OpenAI-style servers: temperature (0 = greedy), top-k, top-p, min-p, seed, and
//! the changes to a row's logits before it ([`LogitAdjust`]: logit bias, presence,
//! frequency and repetition penalties). The same
//! draw runs on the host (here) and on the device (`kernels::sample`, for rows that
//! read back no logits); both follow `reference::sample`, and both take their random
//! number from [`uniform`]: a counter-based generator keyed by the seed and the
//! token's index in the generation, so a seeded generation's tokens do not depend on
//! where or with what else it ran.

use super::logits::{by_rank, exp_sum, top_k_ids, top_k_unordered};
pub use crate::reference::sample::Draw;

/// How to pick the next token.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    /// 0 = greedy (argmax, ties to the lower id).
    pub temperature: f32,
    /// Keep the k most likely tokens (and any tied with the k-th); 0 = no limit.
    pub top_k: usize,
    /// Keep the most likely tokens whose probability reaches p (and any tied with the
    /// last); 1 = no limit.
    pub top_p: f32,
    /// Same seed, same choices.
    pub seed: u64,
    /// Keep the tokens at least this likely relative to the most likely one; 0 = no
    /// limit.
    pub min_p: f32,
    /// Changes to the logits before the pick (none by default).
    pub adjust: LogitAdjust,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 1.0,
            top_k: 50,
            top_p: 1.0,
            seed: 0,
            min_p: 0.0,
            adjust: LogitAdjust::default(),
        }
    }
}

/// Changes to a row's logits before its token is picked (greedy or drawn), from the
/// tokens around it: OpenAI's `logit_bias`, `presence_penalty` and
/// `frequency_penalty` (over the generated tokens), and Hugging Face's / vLLM's
/// `repetition_penalty` (over the prompt and the generated tokens). A row with any
/// reads its logits back and is picked on the host; logprobs stay the model's own.
#[derive(Clone, Debug, PartialEq)]
pub struct LogitAdjust {
    /// Added to these tokens' logits.
    pub bias: Vec<(u32, f32)>,
    /// Subtracted once from the logit of every token already generated.
    pub presence_penalty: f32,
    /// Subtracted from a token's logit for each time it was generated.
    pub frequency_penalty: f32,
    /// Divides a positive logit of a token in the prompt or generated, multiplies a
    /// negative one; 1 = none.
    pub repetition_penalty: f32,
    /// Tokens that cannot come while fewer than `suppress_until` tokens were generated
    /// (vLLM's `min_tokens`: the end-of-text and stop tokens).
    pub suppress: Vec<u32>,
    pub suppress_until: usize,
}

impl Default for LogitAdjust {
    fn default() -> Self {
        LogitAdjust {
            bias: Vec::new(),
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            repetition_penalty: 1.0,
            suppress: Vec::new(),
            suppress_until: 0,
        }
    }
}

impl LogitAdjust {
    /// Whether it changes the logits of token number `n` of a generation.
    pub fn acts_at(&self, n: usize) -> bool {
        !self.bias.is_empty()
            || self.presence_penalty != 0.0
            || self.frequency_penalty != 0.0
            || self.repetition_penalty != 1.0
            || (n < self.suppress_until && !self.suppress.is_empty())
    }

    /// The tokens the bias names are among `vocab` ids (the tokenizer's, the rule
    /// prompt token ids follow).
    pub fn check_ids(&self, vocab: usize) -> crate::error::Result<()> {
        match self.bias.iter().find(|&&(id, _)| id as usize >= vocab) {
            Some((id, _)) => Err(crate::error::Error::InvalidInput(format!(
                "logit_bias names token {id}, outside the tokenizer's vocabulary ({vocab} tokens)"
            ))),
            None => Ok(()),
        }
    }

    /// Apply it to `logits`, the row after `prompt` and `generated` (ids past the row
    /// are left alone).
    pub fn apply(&self, logits: &mut [f32], prompt: &[u32], generated: &[u32]) {
        if self.repetition_penalty != 1.0 {
            let r = self.repetition_penalty;
            let mut seen = vec![false; logits.len()];
            for &id in prompt.iter().chain(generated) {
                if let Some(s) = seen.get_mut(id as usize) {
                    if !*s {
                        *s = true;
                        let x = &mut logits[id as usize];
                        *x = if *x > 0.0 { *x / r } else { *x * r };
                    }
                }
            }
        }
        if self.presence_penalty != 0.0 || self.frequency_penalty != 0.0 {
            let mut counts = std::collections::HashMap::<u32, u32>::new();
            for &id in generated {
                *counts.entry(id).or_default() += 1;
            }
            for (id, c) in counts {
                if let Some(x) = logits.get_mut(id as usize) {
                    *x -= self.presence_penalty + self.frequency_penalty * c as f32;
                }
            }
        }
        for &(id, b) in &self.bias {
            if let Some(x) = logits.get_mut(id as usize) {
                *x += b;
            }
        }
        if generated.len() < self.suppress_until {
            for &id in &self.suppress {
                if let Some(x) = logits.get_mut(id as usize) {
                    *x = f32::NEG_INFINITY;
                }
            }
        }
    }
}

impl SamplingParams {
    /// Whether the next token is the argmax (temperature 0): the one place this is
    /// decided (the sampler, and the engine's choice of the device's argmax).
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }
}

/// splitmix64's finalizer: a bijection of u64 whose output bits each depend on every
/// input bit.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The uniform number in [0, 1) of draw `counter` under `seed` (24 bits: what an f32
/// holds exactly, on the host and the device alike): a hash of the pair, so any draw
/// is computed without the ones before it.
pub fn uniform(seed: u64, counter: u64) -> f32 {
    let z = mix(mix(seed).wrapping_add(counter.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
    (z >> 40) as f32 / (1u64 << 24) as f32
}

/// A seeded sampler: its draws are numbered (the token's index in the generation).
pub struct Sampler {
    params: SamplingParams,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        Sampler { params }
    }

    /// Draw `counter`'s parameters, for the host or the device.
    pub fn draw(&self, counter: u64) -> Draw {
        let p = &self.params;
        Draw {
            inv_t: 1.0 / p.temperature,
            top_k: p.top_k,
            top_p: p.top_p,
            u: uniform(p.seed, counter),
            min_p: p.min_p,
        }
    }

    /// Pick token number `counter` from `logits`, as `reference::sample` does: among
    /// the `top_k` most likely (all with 0), the most likely reaching `top_p`, those
    /// at least `min_p` as likely as the most likely, drawn
    /// with probabilities `softmax(logits / temperature)` by a walk over the kept ids in
    /// id order. Nothing is sorted whole: the `top_k` are selected, and the nucleus is
    /// found by summing the weights of logit buckets from the top, sorting only the
    /// bucket it ends in ([`nucleus`]).
    pub fn sample(&self, logits: &[f32], counter: u64) -> u32 {
        if self.params.is_greedy() || logits.is_empty() {
            return argmax(logits);
        }
        let d = self.draw(counter);
        let n = logits.len();
        // the candidates in id order: every id, or those at or above the top_k-th
        let (ids, cand): (Option<Vec<usize>>, std::borrow::Cow<[f32]>) =
            if d.top_k > 0 && d.top_k < n {
                let tau = top_k_unordered(logits, d.top_k)
                    .into_iter()
                    .map(|i| logits[i])
                    .min_by(|a, b| a.total_cmp(b))
                    .unwrap_or(f32::NEG_INFINITY);
                let ids: Vec<usize> = (0..n)
                    .filter(|&i| logits[i].total_cmp(&tau).is_ge())
                    .collect();
                let cand = ids.iter().map(|&i| logits[i]).collect();
                (Some(ids), std::borrow::Cow::Owned(cand))
            } else {
                (None, std::borrow::Cow::Borrowed(logits))
            };
        // their weights in f32 (each within f32's precision; an f64 exp of every id
        // costs several times more), sums in f64
        let max = cand.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let mut weights: Vec<f32> = cand.iter().map(|&x| ((x - max) * d.inv_t).exp()).collect();
        let keep = (d.top_p < 1.0).then(|| nucleus(&cand, &weights, d.top_p as f64));
        if d.min_p > 0.0 {
            // after top-p, which weighs every candidate: below min-p weighs nothing
            for w in weights.iter_mut().filter(|w| **w < d.min_p) {
                *w = 0.0;
            }
        }
        let j = walk(&weights, keep.as_deref(), d.u);
        match (j, &ids) {
            (Some(j), Some(ids)) => ids[j] as u32,
            (Some(j), None) => j as u32,
            (None, _) => argmax(logits),
        }
    }
}

/// Draw a candidate (its index, walking them in id order; those `keep` marks, or all)
/// with probability proportional to its weight, `u` in [0, 1); None if every weight
/// is 0.
fn walk(weights: &[f32], keep: Option<&[bool]>, u: f32) -> Option<usize> {
    let kept = |j: usize| keep.is_none_or(|k| k[j]);
    let total: f64 = (0..weights.len())
        .filter(|&j| kept(j))
        .map(|j| weights[j] as f64)
        .sum();
    let mut r = u as f64 * total;
    let mut last = None;
    for (j, &w) in weights.iter().enumerate() {
        let w = w as f64;
        if w > 0.0 && kept(j) {
            if r < w {
                return Some(j);
            }
            r -= w;
            last = Some(j);
        }
    }
    // rounding left r at or past the last weight
    last
}

/// Logit buckets [`nucleus`] sums the weights of.
const BUCKETS: usize = 2048;

/// Which candidates (their `logits` and `weights`, in id order) form the nucleus: the
/// first in rank order (larger logit first) whose weights reach `top_p` of the total,
/// and any tied with the last of them. The candidates are spread over [`BUCKETS`] buckets of equal
/// logit width (rank order is bucket order, and within a bucket logit order); bucket
/// sums are added from the top until the next would reach the target, and only the
/// bucket where it is reached is sorted and walked one by one. The total and the bucket
/// sums are f64, each in id order.
fn nucleus(logits: &[f32], weights: &[f32], top_p: f64) -> Vec<bool> {
    let total: f64 = weights.iter().map(|&w| w as f64).sum();
    let target = top_p * total;
    let (lo, hi) = logits
        .iter()
        .cloned()
        .filter(|x| x.is_finite())
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), x| {
            (lo.min(x), hi.max(x))
        });
    let scale = if hi > lo {
        (BUCKETS - 1) as f32 / (hi - lo)
    } else {
        0.0
    };
    // bucket of each id, highest BUCKETS - 1 (a float-to-int cast saturates, NaN to 0:
    // non-finite logits land at either end), and each bucket's weight
    let mut sums = vec![0.0f64; BUCKETS];
    let of: Vec<u16> = logits
        .iter()
        .zip(weights)
        .map(|(&x, &w)| {
            let b = (((x - lo) * scale) as usize).min(BUCKETS - 1);
            sums[b] += w as f64;
            b as u16
        })
        .collect();
    let mut cum = 0.0;
    let mut edge = None;
    for b in (0..BUCKETS).rev() {
        // (a bucket without weight never holds the edge: with top_p 0 the edge is the
        // first id with a weight)
        if sums[b] > 0.0 && cum + sums[b] >= target {
            edge = Some(b);
            break;
        }
        cum += sums[b];
    }
    // (rounding can leave the bucket sums short of a target next to the total: all in)
    let Some(edge) = edge else {
        return vec![true; logits.len()];
    };
    // the edge bucket's ids in rank order, until the target is reached
    let edge = edge as u16;
    let mut members = Vec::new();
    let mut keep: Vec<bool> = of
        .iter()
        .enumerate()
        .map(|(j, &b)| {
            if b == edge {
                members.push(j);
            }
            b > edge
        })
        .collect();
    members.sort_unstable_by(|&a, &b| by_rank(logits, a, b));
    let mut last: Option<f32> = None;
    for j in members {
        // past the target, only the ids tied with the last one taken
        if last.is_some_and(|x| logits[j].total_cmp(&x).is_lt()) {
            break;
        }
        keep[j] = true;
        cum += weights[j] as f64;
        if last.is_none() && cum > 0.0 && cum >= target {
            last = Some(logits[j]);
        }
    }
    keep
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
    // one log-sum-exp for the token and its alternatives
    let (max, sum) = exp_sum(logits);
    let log_sum = sum.ln();
    let lp = |i: usize| (logits[i] as f64 - max - log_sum) as f32;
    TokenLogprob {
        logprob: logits
            .get(token as usize)
            .map_or(f32::NEG_INFINITY, |_| lp(token as usize)),
        top: top_k_ids(logits, alternatives)
            .into_iter()
            .map(|i| (i as u32, lp(i)))
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
    fn logit_adjustments_follow_their_rules() {
        let logits = [2.0f32, -1.0, 0.5, 3.0, -2.0];
        let prompt = [1u32, 4];
        let generated = [3u32, 3, 2, 77]; // 77: past the row, left alone
        let none = LogitAdjust::default();
        assert!(!none.acts_at(0));
        let mut same = logits;
        none.apply(&mut same, &prompt, &generated);
        assert_eq!(same, logits);
        let a = LogitAdjust {
            bias: vec![(0, -100.0), (4, 1.5), (9, 3.0)],
            presence_penalty: 0.5,
            frequency_penalty: 0.25,
            repetition_penalty: 2.0,
            ..LogitAdjust::default()
        };
        assert!(a.acts_at(0));
        let mut x = logits;
        a.apply(&mut x, &prompt, &generated);
        // 0: bias only; 1: in the prompt, negative, doubled; 2: generated once,
        // positive, halved, then the penalties; 3: generated twice; 4: in the prompt
        // (doubled), then the bias
        let want = [
            2.0 - 100.0,
            -2.0,
            0.25 - 0.5 - 0.25,
            1.5 - 0.5 - 0.5,
            -4.0 + 1.5,
        ];
        for (g, w) in x.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{x:?} vs {want:?}");
        }
        assert!(a.check_ids(10).is_ok());
        assert!(a.check_ids(9).unwrap_err().to_string().contains("token 9"));
        // min_tokens: the end tokens cannot come before the 5th token, then can
        let m = LogitAdjust {
            suppress: vec![3, 1],
            suppress_until: 5,
            ..LogitAdjust::default()
        };
        assert!(m.acts_at(0) && m.acts_at(4) && !m.acts_at(5));
        let mut x = logits;
        m.apply(&mut x, &prompt, &[0; 4]);
        assert_eq!(x, [2.0, f32::NEG_INFINITY, 0.5, f32::NEG_INFINITY, -2.0]);
        let mut x = logits;
        m.apply(&mut x, &prompt, &[0; 5]);
        assert_eq!(x, logits);
    }

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

    /// Rows for the sampler: many tied logits (17 distinct values), a vocabulary-sized
    /// row, a language model's (a few likely ids, a long tail), -inf and one value only.
    fn rows() -> Vec<Vec<f32>> {
        let tied: Vec<f32> = (0..300).map(|i| ((i * 37) % 17) as f32 * 0.4).collect();
        let wide: Vec<f32> = (0..50257u32)
            .map(|i| ((i.wrapping_mul(2654435761) >> 7) % 10007) as f32 * 1e-3)
            .collect();
        let peaked: Vec<f32> = wide.iter().map(|x| x * 3.0).collect();
        let mut odd: Vec<f32> = (0..2000)
            .map(|i| ((i as u32).wrapping_mul(40503) % 997) as f32 * 0.05 - 20.0)
            .collect();
        odd[7] = f32::NEG_INFINITY;
        odd[1999] = 40.0;
        vec![tied, wide, peaked, odd, vec![1.5; 300]]
    }

    #[test]
    fn the_sampler_draws_as_the_reference() {
        for logits in &rows() {
            for (top_k, top_p, temperature) in [
                (0, 1.0, 1.0),
                (1, 1.0, 1.0),
                (5, 1.0, 0.7),
                (50, 0.9, 1.3),
                (17, 0.5, 1.0),
                (0, 0.3, 0.9),
                (0, 0.0, 1.0),
                (logits.len(), 1.0, 1.0),
                (logits.len() + 10, 0.95, 0.8),
            ] {
                for min_p in [0.0, 0.05, 0.6] {
                    let p = SamplingParams {
                        temperature,
                        top_k,
                        top_p,
                        seed: 9,
                        min_p,
                        ..Default::default()
                    };
                    let s = Sampler::new(p.clone());
                    for draw in 0..40 {
                        let want = crate::reference::sample::sample(logits, s.draw(draw));
                        assert_eq!(s.sample(logits, draw), want, "{p:?} draw {draw}");
                    }
                }
            }
        }
    }

    #[test]
    fn uniform_numbers_are_uniform_and_keyed_by_seed_and_counter() {
        // 16 bins of 64k draws, and neighbouring seeds and counters unrelated
        let mut bins = [0usize; 16];
        for c in 0..65536 {
            let u = uniform(7, c);
            assert!((0.0..1.0).contains(&u));
            bins[(u * 16.0) as usize] += 1;
        }
        for b in bins {
            assert!((b as f64 / 4096.0 - 1.0).abs() < 0.05, "{bins:?}");
        }
        assert_ne!(uniform(7, 0), uniform(8, 0));
        assert_ne!(uniform(7, 0), uniform(7, 1));
        assert_eq!(uniform(7, 5), uniform(7, 5));
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
            let s = Sampler::new(SamplingParams {
                temperature,
                top_k,
                top_p: 1.0,
                seed: 5,
                ..Default::default()
            });
            let draws = 40_000;
            let mut count = [0usize; 6];
            for c in 0..draws {
                count[s.sample(&logits, c) as usize] += 1;
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
    fn the_nucleus_is_the_first_ranks_reaching_top_p_and_their_ties() {
        // nucleus() (bucket sums, one bucket sorted) against a cumulative sum over a full
        // sort by rank: rows with ties, a wide range, -inf, one value only
        let mut rows: Vec<Vec<f32>> = vec![
            (0..5000)
                .map(|i| ((i as u32).wrapping_mul(2654435761) >> 9) as f32 * 1e-5)
                .collect(),
            (0..3000).map(|i| ((i * 37) % 17) as f32 * 0.4).collect(),
            (0..2000)
                .map(|i| ((i as u32).wrapping_mul(40503) % 997) as f32 * 0.05 - 20.0)
                .collect(),
            vec![1.5; 300],
        ];
        rows[2][7] = f32::NEG_INFINITY;
        rows[2][1999] = 40.0;
        for logits in &rows {
            let ids: Vec<u32> = (0..logits.len() as u32).collect();
            let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let weights: Vec<f32> = logits.iter().map(|&x| (x - max).exp()).collect();
            let total: f64 = weights.iter().map(|&w| w as f64).sum();
            let mut order = ids.clone();
            order.sort_by(|&a, &b| {
                logits[b as usize]
                    .total_cmp(&logits[a as usize])
                    .then(a.cmp(&b))
            });
            for top_p in [1e-6, 0.1, 0.5, 0.9, 0.95, 0.999] {
                // the first ranks reaching top_p, and the ids tied with the last
                let mut want = vec![false; ids.len()];
                let mut cum = 0.0;
                let mut edge = None;
                for &i in &order {
                    let x = logits[i as usize];
                    if edge.is_some_and(|e: f32| x.total_cmp(&e).is_lt()) {
                        break;
                    }
                    want[i as usize] = true;
                    cum += weights[i as usize] as f64;
                    if edge.is_none() && cum >= top_p * total {
                        edge = Some(x);
                    }
                }
                let got = nucleus(logits, &weights, top_p);
                assert_eq!(
                    got.iter().filter(|&&k| k).count(),
                    want.iter().filter(|&&k| k).count(),
                    "{} ids, top_p {top_p}",
                    logits.len()
                );
                assert_eq!(got, want, "{} ids, top_p {top_p}", logits.len());
            }
        }
    }

    #[test]
    fn top_ids_rank_ties_to_the_lower_id_and_the_sum_is_a_softmax_normalizer() {
        let logits = [1.0f32, 3.0, 3.0, 2.0, f32::NEG_INFINITY];
        assert_eq!(top_k_ids(&logits, 3), vec![1, 2, 3]);
        assert_eq!(top_k_ids(&logits, 9), vec![1, 2, 3, 0, 4]);
        assert!(top_k_ids(&logits, 0).is_empty());
        let (max, sum) = exp_sum(&logits);
        assert_eq!(max, 3.0);
        let want: f64 = logits.iter().map(|&x| (x as f64 - 3.0).exp()).sum();
        assert!((sum - want).abs() < 1e-6 * want, "{sum} vs {want}");
    }

    #[test]
    fn greedy_takes_the_first_maximum() {
        assert_eq!(argmax(&[0.1, 3.0, 3.0, -1.0]), 1);
        let s = Sampler::new(SamplingParams {
            temperature: 0.0,
            ..Default::default()
        });
        assert_eq!(s.sample(&[0.0, 1.0, 5.0], 0), 2);
    }

    #[test]
    fn same_seed_same_choices_and_filters_hold() {
        let logits: Vec<f32> = (0..100).map(|i| ((i * 37) % 17) as f32 * 0.3).collect();
        let p = SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            seed: 42,
            ..Default::default()
        };
        let a: Vec<u32> = {
            let s = Sampler::new(p.clone());
            (0..50).map(|c| s.sample(&logits, c)).collect()
        };
        let b: Vec<u32> = {
            let s = Sampler::new(p.clone());
            (0..50).map(|c| s.sample(&logits, c)).collect()
        };
        assert_eq!(a, b);
        let c: Vec<u32> = {
            let s = Sampler::new(SamplingParams {
                seed: 43,
                ..p.clone()
            });
            (0..50).map(|c| s.sample(&logits, c)).collect()
        };
        assert_ne!(a, c);
        // top_k = 3: the three largest logits (16 · 0.3 at 37 i ≡ 16 mod 17: ids 11,
        // 28, 45, 62, 79, 96, all tied, so all six)
        let allowed: Vec<u32> = vec![11, 28, 45, 62, 79, 96];
        let s = Sampler::new(SamplingParams {
            top_k: 3,
            ..p.clone()
        });
        let drawn: std::collections::BTreeSet<u32> =
            (0..400).map(|c| s.sample(&logits, c)).collect();
        assert_eq!(drawn.into_iter().collect::<Vec<_>>(), allowed);
        // top_p tiny: only the most likely tokens (the six tied)
        let s = Sampler::new(SamplingParams { top_p: 1e-6, ..p });
        for c in 0..50 {
            assert!(allowed.contains(&s.sample(&logits, c)));
        }
    }
}
