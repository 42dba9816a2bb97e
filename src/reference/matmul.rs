//! Reference matmuls: `a · b` with `b [K, N]`, and `a · bᵀ` with `b [N, K]`.

use super::gelu::gelu;

/// `out[M, N] = a[M, K] · b[K, N] (+ bias)`, optionally GELU, optionally added to `residual`.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    a: &[f32],
    b: &[f32],
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    m: usize,
    n: usize,
    k: usize,
    apply_gelu: bool,
) -> Vec<f32> {
    let mut out = vec![0.0f32; m * n];
    let mut acc = vec![0.0f64; n];
    for i in 0..m {
        acc.iter_mut().for_each(|v| *v = 0.0);
        for p in 0..k {
            let av = a[i * k + p] as f64;
            let brow = &b[p * n..(p + 1) * n];
            for (j, &bv) in brow.iter().enumerate() {
                acc[j] += av * bv as f64;
            }
        }
        for j in 0..n {
            let mut v = acc[j];
            if let Some(bias) = bias {
                v += bias[j] as f64;
            }
            if apply_gelu {
                v = gelu(v);
            }
            if let Some(r) = residual {
                v += r[i * n + j] as f64;
            }
            out[i * n + j] = v as f32;
        }
    }
    out
}

/// `out[M, N] = a[M, K] · b[N, K]ᵀ` (the tied LM head).
pub fn matmul_bt(a: &[f32], b: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; m * n];
    for i in 0..m {
        let arow = &a[i * k..(i + 1) * k];
        for j in 0..n {
            let brow = &b[j * k..(j + 1) * k];
            let s: f64 = arow
                .iter()
                .zip(brow)
                .map(|(&x, &y)| x as f64 * y as f64)
                .sum();
            out[i * n + j] = s as f32;
        }
    }
    out
}
