//! Rotary position embedding parameters as Hugging Face `transformers` computes them:
//! the inverse frequencies of a head (`rope_theta`, with the `linear` or `llama3`
//! scaling of `rope_scaling` / `rope_parameters`), and the cos / sin tables the qkv
//! projections' epilogue reads (laid out by `kernels::rotary::device_table`), computed
//! once per model in f32 as `LlamaRotaryEmbedding` does (angle = inv_freq · position
//! in f32, then its cos and sin).

pub use crate::config::RopeScaling;

/// The `head_dim / 2` inverse frequencies: `1 / theta^(2i / head_dim)` in f32 (as
/// `_compute_default_rope_parameters`), then scaled.
pub fn inv_freq(head_dim: usize, theta: f32, scaling: RopeScaling) -> Vec<f32> {
    let base: Vec<f32> = (0..head_dim / 2)
        .map(|i| 1.0 / theta.powf((2 * i) as f32 / head_dim as f32))
        .collect();
    match scaling {
        RopeScaling::None => base,
        RopeScaling::Linear { factor } => base.iter().map(|f| f / factor).collect(),
        RopeScaling::Llama3 {
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

/// `(cos, sin)` tables `[positions, inv_freq.len()]`: for position p and frequency i,
/// the cos and sin of the f32 angle `inv_freq[i] · p`.
pub fn rope_table(inv_freq: &[f32], positions: usize) -> (Vec<f32>, Vec<f32>) {
    let n = positions * inv_freq.len();
    let (mut cos, mut sin) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for p in 0..positions {
        for &f in inv_freq {
            let angle = f * p as f32;
            cos.push(angle.cos());
            sin.push(angle.sin());
        }
    }
    (cos, sin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_frequencies_follow_theta() {
        let f = inv_freq(64, 10000.0, RopeScaling::None);
        assert_eq!(f.len(), 32);
        assert_eq!(f[0], 1.0);
        // 10000^(-2/64) and 10000^(-62/64)
        assert!((f[1] - 0.749_894_2).abs() < 1e-6, "{}", f[1]);
        assert!((f[31] - 1.333_521_4e-4).abs() < 1e-9, "{}", f[31]);
        assert!(f.windows(2).all(|w| w[1] < w[0]));
        let linear = inv_freq(64, 10000.0, RopeScaling::Linear { factor: 4.0 });
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
        let base = inv_freq(64, 500_000.0, RopeScaling::None);
        let scaled = inv_freq(64, 500_000.0, scaling);
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
    fn tables_hold_cos_and_sin_of_the_f32_angle() {
        let f = inv_freq(8, 10000.0, RopeScaling::None);
        let (cos, sin) = rope_table(&f, 5);
        assert_eq!(cos.len(), 5 * 4);
        assert!(cos[..4].iter().all(|&c| c == 1.0) && sin[..4].iter().all(|&s| s == 0.0));
        let angle = f[1] * 3.0;
        assert_eq!(cos[3 * 4 + 1], angle.cos());
        assert_eq!(sin[3 * 4 + 1], angle.sin());
    }
}
