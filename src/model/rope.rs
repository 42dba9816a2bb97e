//! Rotary position embedding parameters as Hugging Face `transformers` computes them:
//! the inverse frequencies of a head's rotated pairs (`rope_theta`, with the `linear`,
//! `llama3` or `longrope` scaling of `rope_scaling` / `rope_parameters`, over the
//! `partial_rotary_factor` of the head that is rotated), and the cos / sin tables the
//! qkv projections' epilogue reads (laid out by `kernels::rotary::device_table`),
//! computed once per model in f32 as `LlamaRotaryEmbedding` does (angle = inv_freq ·
//! position in f32, then its cos and sin, times the attention factor).

use crate::config::ModelConfig;
pub use crate::config::RopeScaling;

/// The `dim / 2` inverse frequencies of `dim` rotated dimensions:
/// `1 / theta^(2i / dim)` in f32 (as `_compute_default_rope_parameters`), then scaled;
/// `longrope` takes its long factors when the model's `context` exceeds its
/// `original_max_position_embeddings` (as llama.cpp decides, once for the model: the
/// keys in the cache keep the rotation they were stored with).
pub fn inv_freq(dim: usize, theta: f32, scaling: &RopeScaling, context: usize) -> Vec<f32> {
    let power = |i: usize| theta.powf((2 * i) as f32 / dim as f32);
    let base: Vec<f32> = (0..dim / 2).map(|i| 1.0 / power(i)).collect();
    match scaling {
        RopeScaling::None => base,
        RopeScaling::Linear { factor } => base.iter().map(|f| f / factor).collect(),
        &RopeScaling::Yarn {
            factor,
            original_max_position_embeddings,
            beta_fast,
            beta_slow,
            truncate,
            ..
        } => yarn(
            dim,
            theta,
            factor,
            original_max_position_embeddings,
            (beta_fast, beta_slow),
            truncate,
        ),
        RopeScaling::LongRope {
            short_factor,
            long_factor,
            original_max_position_embeddings,
            ..
        } => {
            // `_compute_longrope_parameters`: 1 / (ext · theta^(2i / dim))
            let ext = match context > *original_max_position_embeddings {
                true => long_factor,
                false => short_factor,
            };
            (0..dim / 2).map(|i| 1.0 / (ext[i] * power(i))).collect()
        }
        &RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } => {
            // `_compute_llama3_parameters`, in the same order of operations
            let old = original_max_position_embeddings as f32;
            let low_freq_wavelen = old / low_freq_factor;
            let high_freq_wavelen = old / high_freq_factor;
            base.iter()
                .map(|&f| {
                    let wavelen = 2.0 * std::f32::consts::PI / f;
                    let scaled = if wavelen > low_freq_wavelen {
                        f / factor
                    } else {
                        f
                    };
                    let medium = wavelen >= high_freq_wavelen && wavelen <= low_freq_wavelen;
                    if medium {
                        let smooth = (old / wavelen - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        (1.0 - smooth) * scaled / factor + smooth * scaled
                    } else {
                        scaled
                    }
                })
                .collect()
        }
    }
}

/// YaRN's frequencies (`_compute_yarn_parameters`, in its order of operations: the
/// band's ends in f64 as Python computes them, the rest in f32 as torch does).
fn yarn(
    dim: usize,
    theta: f32,
    factor: f32,
    original: usize,
    (beta_fast, beta_slow): (f32, f32),
    truncate: bool,
) -> Vec<f32> {
    let correction = |rotations: f32| {
        let r = f64::from(rotations);
        dim as f64 * (original as f64 / (r * 2.0 * std::f64::consts::PI)).ln()
            / (2.0 * f64::from(theta).ln())
    };
    let (mut low, mut high) = (correction(beta_fast), correction(beta_slow));
    if truncate {
        (low, high) = (low.floor(), high.ceil());
    }
    let (low, mut high) = (low.max(0.0) as f32, high.min(dim as f64 - 1.0) as f32);
    if low == high {
        high += 0.001;
    }
    (0..dim / 2)
        .map(|i| {
            let pos = theta.powf((2 * i) as f32 / dim as f32);
            let (extrapolation, interpolation) = (1.0 / pos, 1.0 / (factor * pos));
            let ramp = ((i as f32 - low) / (high - low)).clamp(0.0, 1.0);
            let keep = 1.0 - ramp;
            interpolation * (1.0 - keep) + extrapolation * keep
        })
        .collect()
}

/// YaRN's default attention factor: `0.1 ln factor + 1` (1 for a factor up to 1).
pub fn yarn_mscale(factor: f32, mscale: f32) -> f32 {
    match factor <= 1.0 {
        true => 1.0,
        false => (0.1 * f64::from(mscale) * f64::from(factor).ln() + 1.0) as f32,
    }
}

/// A rotary model's rotation: the inverse frequencies of its heads' rotated pairs
/// (`rotary_dim / 2` of them) and the scale of their cos and sin (`longrope`'s
/// attention factor; 1 for the others). `local`: the windowed layers' of a model
/// whose have a base of their own (Gemma's `rope_local_theta`, unscaled).
pub fn rotation(cfg: &ModelConfig, local: bool) -> (Vec<f32>, f32) {
    if let (true, Some(theta)) = (local, cfg.rope_local_theta) {
        let f = inv_freq(
            cfg.rotary_dim(),
            theta,
            &RopeScaling::None,
            cfg.context_size,
        );
        return (f, 1.0);
    }
    let f = inv_freq(
        cfg.rotary_dim(),
        cfg.rope_theta,
        &cfg.rope_scaling,
        cfg.context_size,
    );
    let scale = match cfg.rope_scaling {
        RopeScaling::LongRope {
            attention_factor, ..
        } => attention_factor,
        RopeScaling::Yarn {
            factor,
            attention_factor,
            ..
        } => attention_factor.unwrap_or_else(|| yarn_mscale(factor, 1.0)),
        _ => 1.0,
    };
    (f, scale)
}

/// `(cos, sin)` tables `[positions, pairs]`: for position p and rotated pair i
/// (`i < inv_freq.len()`), the cos and sin of the f32 angle `inv_freq[i] · p` times
/// `scale`; a pair past the rotated ones (a partial rotation) is passed as it is
/// (cos 1, sin 0).
pub fn rope_table(
    inv_freq: &[f32],
    pairs: usize,
    positions: usize,
    scale: f32,
) -> (Vec<f32>, Vec<f32>) {
    let n = positions * pairs;
    let (mut cos, mut sin) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for p in 0..positions {
        for i in 0..pairs {
            match inv_freq.get(i) {
                Some(&f) => {
                    let angle = f * p as f32;
                    cos.push(angle.cos() * scale);
                    sin.push(angle.sin() * scale);
                }
                None => {
                    cos.push(1.0);
                    sin.push(0.0);
                }
            }
        }
    }
    (cos, sin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_frequencies_follow_theta() {
        let f = inv_freq(64, 10000.0, &RopeScaling::None, 4096);
        assert_eq!(f.len(), 32);
        assert_eq!(f[0], 1.0);
        // 10000^(-2/64) and 10000^(-62/64)
        assert!((f[1] - 0.749_894_2).abs() < 1e-6, "{}", f[1]);
        assert!((f[31] - 1.333_521_4e-4).abs() < 1e-9, "{}", f[31]);
        assert!(f.windows(2).all(|w| w[1] < w[0]));
        let linear = inv_freq(64, 10000.0, &RopeScaling::Linear { factor: 4.0 }, 4096);
        assert!(linear
            .iter()
            .zip(&f)
            .all(|(l, d)| (l * 4.0 - d).abs() <= d * 1e-6));
    }

    #[test]
    fn llama3_scaling_keeps_high_frequencies_and_divides_low_ones() {
        // Llama 3.2's parameters: theta 500000, factor 32, low 1, high 4, 8192 positions
        let scaling = RopeScaling::Llama3 {
            factor: 32.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192,
        };
        let base = inv_freq(64, 500_000.0, &RopeScaling::None, 4096);
        let scaled = inv_freq(64, 500_000.0, &scaling, 4096);
        let wavelen = |f: f32| 2.0 * std::f32::consts::PI / f;
        let (mut high, mut low, mut medium) = (0, 0, 0);
        for (&b, &s) in base.iter().zip(&scaled) {
            if wavelen(b) < 8192.0 / 4.0 {
                assert_eq!(s, b, "a high frequency is kept");
                high += 1;
            } else if wavelen(b) > 8192.0 {
                assert_eq!(s, b / 32.0, "a low frequency is divided by the factor");
                low += 1;
            } else {
                assert!(
                    s < b && s > b / 32.0,
                    "a medium frequency is blended: {b} -> {s}"
                );
                medium += 1;
            }
        }
        assert!(high > 0 && low > 0 && medium > 0, "{high} {low} {medium}");
    }

    #[test]
    fn yarn_keeps_fast_frequencies_divides_slow_ones_and_blends_between() {
        // factor 4 over 32 original positions, theta 500, 16 dimensions: the band
        // between 32 and 1 rotations over the context is blended
        let scaling = RopeScaling::Yarn {
            factor: 4.0,
            original_max_position_embeddings: 32,
            beta_fast: 32.0,
            beta_slow: 1.0,
            attention_factor: None,
            truncate: true,
        };
        let base = inv_freq(16, 500.0, &RopeScaling::None, 128);
        let yarn = inv_freq(16, 500.0, &scaling, 128);
        let (mut kept, mut divided, mut blended) = (0, 0, 0);
        for (&b, &y) in base.iter().zip(&yarn) {
            if y == b {
                kept += 1;
            } else if (y * 4.0 - b).abs() <= b * 1e-6 {
                divided += 1;
            } else {
                assert!(y < b && y > b / 4.0, "{b} -> {y}");
                blended += 1;
            }
        }
        assert!(
            kept > 0 && divided > 0 && blended > 0,
            "{kept} {divided} {blended}"
        );
        assert!((yarn_mscale(4.0, 1.0) - (0.1 * 4f32.ln() + 1.0)).abs() < 1e-6);
        assert_eq!(yarn_mscale(1.0, 1.0), 1.0);
    }

    #[test]
    fn tables_hold_cos_and_sin_of_the_f32_angle() {
        let f = inv_freq(8, 10000.0, &RopeScaling::None, 4096);
        let (cos, sin) = rope_table(&f, 4, 5, 1.0);
        assert_eq!(cos.len(), 5 * 4);
        assert!(cos[..4].iter().all(|&c| c == 1.0) && sin[..4].iter().all(|&s| s == 0.0));
        let angle = f[1] * 3.0;
        assert_eq!(cos[3 * 4 + 1], angle.cos());
        assert_eq!(sin[3 * 4 + 1], angle.sin());
    }

    #[test]
    fn a_partial_rotation_passes_its_last_pairs_and_longrope_scales_the_rest() {
        // 6 of 8 dimensions rotated: 3 pairs with frequencies over dim 6, one passed
        let scaling = RopeScaling::LongRope {
            short_factor: vec![1.0, 2.0, 4.0],
            long_factor: vec![8.0, 16.0, 32.0],
            original_max_position_embeddings: 64,
            attention_factor: 1.25,
        };
        let plain = inv_freq(6, 10000.0, &RopeScaling::None, 64);
        let short = inv_freq(6, 10000.0, &scaling, 64);
        let long = inv_freq(6, 10000.0, &scaling, 65);
        assert_eq!(plain.len(), 3);
        assert!((plain[1] - 10000f32.powf(-2.0 / 6.0)).abs() < 1e-7);
        for (i, (s, l)) in [(1.0, 8.0), (2.0, 16.0), (4.0, 32.0)].iter().enumerate() {
            assert!((short[i] * s - plain[i]).abs() <= plain[i] * 1e-6, "{i}");
            assert!((long[i] * l - plain[i]).abs() <= plain[i] * 1e-6, "{i}");
        }
        let (cos, sin) = rope_table(&short, 4, 3, 1.25);
        let angle = short[2] * 2.0;
        assert_eq!(
            (cos[2 * 4 + 2], sin[2 * 4 + 2]),
            (angle.cos() * 1.25, angle.sin() * 1.25)
        );
        assert_eq!(
            (cos[2 * 4 + 3], sin[2 * 4 + 3]),
            (1.0, 0.0),
            "the passed pair"
        );
    }
}
