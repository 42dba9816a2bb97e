//! Reference GELU, tanh form (as GPT-2).

/// `0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))`
pub fn gelu(x: f64) -> f64 {
    let inner = (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x);
    0.5 * x * (1.0 + inner.tanh())
}

/// Exact GELU, `x Φ(x) = 0.5 x (1 + erf(x / √2))` (BERT's).
pub fn gelu_erf(x: f64) -> f64 {
    0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))
}

/// Other activations of the MLP (MoE experts may use them).
pub fn relu(x: f64) -> f64 {
    x.max(0.0)
}

/// `x · sigmoid(x)`
pub fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}
