//! Reference SwiGLU: `silu(gate) · up` over rows of `[T, 2H]` (gate first), in f64;
//! and Gemma's GELU-gated twin.

/// `out[t, j] = act(g) · u` with `g = gate_up[t, j]`, `u = gate_up[t, h + j]`.
fn gated(gate_up: &[f32], h: usize, act: fn(f64) -> f64) -> Vec<f32> {
    gate_up
        .chunks(2 * h)
        .flat_map(|row| (0..h).map(move |j| (act(row[j] as f64) * row[h + j] as f64) as f32))
        .collect()
}

/// `out[t, j] = silu(g) · u` with `g = gate_up[t, j]`, `u = gate_up[t, h + j]`.
pub fn swiglu(gate_up: &[f32], h: usize) -> Vec<f32> {
    gated(gate_up, h, |g| g / (1.0 + (-g).exp()))
}

/// Gemma's gating: `out[t, j] = gelu(g) · u` (GELU's tanh approximation).
pub fn geglu(gate_up: &[f32], h: usize) -> Vec<f32> {
    gated(gate_up, h, super::gelu::gelu)
}

/// [`swiglu`] with row `t` scaled by `sigmoid(gate[t * 4])` (a shared expert's gate).
pub fn swiglu_scaled(gate_up: &[f32], h: usize, gate: &[f32]) -> Vec<f32> {
    let mut out = swiglu(gate_up, h);
    for (t, row) in out.chunks_mut(h).enumerate() {
        let s = 1.0 / (1.0 + (-(gate[t * 4] as f64)).exp());
        row.iter_mut().for_each(|v| *v = (*v as f64 * s) as f32);
    }
    out
}
