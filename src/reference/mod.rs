//! The CPU truth: plain loops with f64 accumulators and a max-subtracted softmax.
//! Never optimised; the same names as `kernels/`. Golden tests compare against it.

pub mod attention;
pub mod embedding;
pub mod gelu;
pub mod kv_store;
pub mod layer_norm;
pub mod matmul;
pub mod model;
pub mod moe;
pub mod row_norm;

/// Weights as the reference must see them for kernel `variant`: the `*_f16` variants
/// read half floats, so the reference gets the values rounded to half precision.
pub fn seen_by(variant: &str, w: &[f32]) -> Vec<f32> {
    if crate::kernels::half_precision(variant) {
        crate::model::weights::round_to_f16(w)
    } else {
        w.to_vec()
    }
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
