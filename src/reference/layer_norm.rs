//! Reference layer norm.

/// Normalise each row of `x [T, C]`; eps 1e-5 as GPT-2.
pub fn layer_norm(x: &[f32], weight: &[f32], bias: Option<&[f32]>, c: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(c) {
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / c as f64;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / c as f64;
        let rstd = 1.0 / (var + 1e-5).sqrt();
        for j in 0..c {
            let mut y = (row[j] as f64 - mean) * rstd * weight[j] as f64;
            if let Some(b) = bias {
                y += b[j] as f64;
            }
            out.push(y as f32);
        }
    }
    out
}

/// RMSNorm of each row of `x [T, C]` (Llama's `LlamaRMSNorm`):
/// `x / sqrt(mean(x²) + eps) * weight`.
pub fn rms_norm(x: &[f32], weight: &[f32], c: usize, eps: f64) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(c) {
        let ms = row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / c as f64;
        let rstd = 1.0 / (ms + eps).sqrt();
        out.extend(
            row.iter()
                .zip(weight)
                .map(|(&v, &w)| (v as f64 * rstd * w as f64) as f32),
        );
    }
    out
}
