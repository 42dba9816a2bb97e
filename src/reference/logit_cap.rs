//! Reference soft cap of logits: `cap · tanh(z / cap)` in f64.

/// `z` with its first `n` values capped at `cap`.
pub fn logit_cap(z: &[f32], n: usize, cap: f32) -> Vec<f32> {
    let cap = cap as f64;
    z.iter()
        .enumerate()
        .map(|(i, &v)| match i < n {
            true => (cap * (v as f64 / cap).tanh()) as f32,
            false => v,
        })
        .collect()
}
