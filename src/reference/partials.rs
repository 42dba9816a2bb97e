//! Reference of the deferred residual adds (`kernels::partials`): the residual stream
//! made whole, each MLP chunk's and each attention head's share of a projection.

use super::gelu::{gelu, silu};

/// Each row of `x [R, c]` plus `bias` plus its partial rows (`parts [R, P, c]`).
pub fn residual(x: &[f32], parts: &[f32], bias: Option<&[f32]>, c: usize) -> Vec<f32> {
    let rows = x.len() / c;
    let p = parts.len() / x.len().max(1);
    let mut out = Vec::with_capacity(x.len());
    for r in 0..rows {
        for j in 0..c {
            let mut v = x[r * c + j] as f64 + bias.map_or(0.0, |b| b[j] as f64);
            for i in 0..p {
                v += parts[(r * p + i) * c + j] as f64;
            }
            out.push(v as f32);
        }
    }
    out
}

/// The MLP of the (normalised) rows `xn [R, c]` as partial rows `[R, h / chunk, c]`:
/// row i of a row's partials is `act(xn · w_up[:, chunk i] + b_up) · w_down[chunk i, :]`
/// (`swiglu`: w_up `[c, 2h]` = gate | up, act = silu(gate) · up; else GELU), so that
/// their sum is the MLP's output.
pub fn mlp_partial(
    xn: &[f32],
    (w_up, b_up): (&[f32], Option<&[f32]>),
    w_down: &[f32],
    (c, h, chunk): (usize, usize, usize),
    swiglu: bool,
) -> Vec<f32> {
    let up_w = if swiglu { 2 * h } else { h };
    let dot = |row: &[f32], col: usize| -> f64 {
        let s: f64 = (0..c)
            .map(|k| row[k] as f64 * w_up[k * up_w + col] as f64)
            .sum();
        s + b_up.map_or(0.0, |b| b[col] as f64)
    };
    let mut out = Vec::new();
    for row in xn.chunks(c) {
        let hidden: Vec<f64> = (0..h)
            .map(|u| {
                if swiglu {
                    silu(dot(row, u)) * dot(row, h + u)
                } else {
                    gelu(dot(row, u))
                }
            })
            .collect();
        for i in 0..h / chunk {
            for j in 0..c {
                let s: f64 = (i * chunk..(i + 1) * chunk)
                    .map(|u| hidden[u] * w_down[u * c + j] as f64)
                    .sum();
                out.push(s as f32);
            }
        }
    }
    out
}

/// Each head's share of the output projection of the attention rows `att [T, nh · hs]`:
/// `[T, nh, n]`, row h of a row's partials `att[:, h · hs ..][..hs] · w_o[h · hs.., :]`
/// (w_o `[nh · hs, n]`).
pub fn attention_proj(att: &[f32], w_o: &[f32], nh: usize, hs: usize, n: usize) -> Vec<f32> {
    let q = nh * hs;
    let mut out = Vec::with_capacity(att.len() / q * nh * n);
    for row in att.chunks(q) {
        for h in 0..nh {
            for j in 0..n {
                let s: f64 = (h * hs..(h + 1) * hs)
                    .map(|d| row[d] as f64 * w_o[d * n + j] as f64)
                    .sum();
                out.push(s as f32);
            }
        }
    }
    out
}
