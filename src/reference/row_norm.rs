//! Reference row norms.

/// `‖x[t, :]‖₂` for each row of `x [T, C]`.
pub fn row_norm(x: &[f32], c: usize) -> Vec<f32> {
    x.chunks(c)
        .map(|r| r.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt() as f32)
        .collect()
}
