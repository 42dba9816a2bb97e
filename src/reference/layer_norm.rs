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

/// The rows a tensor-core tile matmul's product sees with the norm before it folded
/// in (prelude norm_fold): it rounds (x - s) · weight / 16 to f16 (s the row's first
/// value; 0 for RMSNorm; `matmul_coop`'s FOLD_SCALE) and normalises by linearity, so
/// its input is rstd · (16 · f16((x - s) · weight / 16) - (mean - s) · weight) + bias,
/// row by row (the statistics in f64; LayerNorm with `eps`, RMSNorm with `rms`).
pub fn folded_rows_f16(
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    c: usize,
    rms: bool,
    eps: f64,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(c) {
        let shift = if rms { 0.0 } else { row[0] as f64 };
        let d: Vec<f64> = row.iter().map(|&v| v as f64 - shift).collect();
        let mean_d = d.iter().sum::<f64>() / c as f64;
        let sq = d.iter().map(|v| v * v).sum::<f64>() / c as f64;
        let (centre, var) = if rms {
            (0.0, sq)
        } else {
            (mean_d, (sq - mean_d * mean_d).max(0.0))
        };
        let rstd = 1.0 / (var + eps).sqrt();
        let staged: Vec<f32> = d
            .iter()
            .zip(weight)
            .map(|(&v, &w)| (v * w as f64 / 16.0) as f32)
            .collect();
        let staged = crate::gpu::f16::round_to_f16(&staged);
        for (i, (&st, &w)) in staged.iter().zip(weight).enumerate() {
            let b = bias.map_or(0.0, |b| b[i] as f64);
            out.push((rstd * (16.0 * st as f64 - centre * w as f64) + b) as f32);
        }
    }
    out
}
