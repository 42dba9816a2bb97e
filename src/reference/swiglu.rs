//! Reference SwiGLU: `silu(gate) · up` over rows of `[T, 2H]` (gate first), in f64.

/// `out[t, j] = silu(g) · u` with `g = gate_up[t, j]`, `u = gate_up[t, h + j]`.
pub fn swiglu(gate_up: &[f32], h: usize) -> Vec<f32> {
    gate_up
        .chunks(2 * h)
        .flat_map(|row| {
            (0..h).map(move |j| {
                let (g, u) = (row[j] as f64, row[h + j] as f64);
                (g / (1.0 + (-g).exp()) * u) as f32
            })
        })
        .collect()
}
