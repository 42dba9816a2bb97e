//! The CPU truth: plain loops with f64 accumulators and a max-subtracted softmax.
//! Never optimised; the same names as `kernels/`. Golden tests compare against it.

pub mod attention;
pub mod embedding;
pub mod gelu;
pub mod head_norm;
pub mod kv_store;
pub mod layer_norm;
pub mod logit_cap;
pub mod matmul;
pub mod model;
pub mod moe;
pub mod partials;
pub mod rotary;
pub mod row_norm;
pub mod sample;
pub mod swiglu;
pub mod token_rank;

/// How many values of `a` and `b` differ in their bits (and by how much the lengths
/// differ): 0 when one computation gave exactly the other's numbers.
pub fn bits_differ(a: &[f32], b: &[f32]) -> usize {
    let same = a
        .iter()
        .zip(b)
        .filter(|(x, y)| x.to_bits() == y.to_bits())
        .count();
    a.len().max(b.len()) - same
}

/// Element-wise comparison with tolerance `atol + rtol·|reference|`.
/// On failure the message lists the first mismatches, the max diff and the count.
pub fn compare(name: &str, got: &[f32], want: &[f32], atol: f64, rtol: f64) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!(
            "{name}: length {} != reference length {}",
            got.len(),
            want.len()
        ));
    }
    let mut bad = Vec::new();
    let mut max_diff = 0.0f64;
    let mut count = 0;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let (g, w) = (g as f64, w as f64);
        let d = (g - w).abs();
        if d.is_nan() || d > max_diff {
            max_diff = if d.is_nan() { f64::INFINITY } else { d };
        }
        // NaN differences fail too
        if d.is_nan() || d > atol + rtol * w.abs() {
            count += 1;
            if bad.len() < 5 {
                bad.push(format!("[{i}] got {g} want {w}"));
            }
        }
    }
    if count == 0 {
        Ok(())
    } else {
        Err(format!(
            "{name}: {count} of {} values outside atol {atol} + rtol {rtol}; max diff {max_diff:e}; first: {}",
            got.len(),
            bad.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::bits_differ;

    #[test]
    fn bits_differ_counts_every_value_not_identical() {
        assert_eq!(bits_differ(&[1.0, 2.0, f32::NAN], &[1.0, 2.0, f32::NAN]), 0);
        // equal as numbers, not in their bits; one ulp apart; a missing value
        assert_eq!(bits_differ(&[0.0, 1.0], &[-0.0, 1.0]), 1);
        assert_eq!(
            bits_differ(&[1.0], &[f32::from_bits(1.0f32.to_bits() + 1)]),
            1
        );
        assert_eq!(bits_differ(&[1.0, 2.0], &[1.0]), 1);
    }
}
