// GELU, tanh approximation (GPT-2's), on a vec4; the argument of tanh is clamped so
// that large inputs cannot overflow to NaN.
fn gelu(x: vec4<f32>) -> vec4<f32> {
    let inner = 0.7978845608028654 * (x + 0.044715 * x * x * x);
    return 0.5 * x * (1.0 + tanh(clamp(inner, vec4<f32>(-15.0), vec4<f32>(15.0))));
}

// Exact GELU, x Φ(x) = 0.5 x (1 + erf(x / √2)) (BERT's `gelu`), on a vec4; erf by
// Abramowitz and Stegun's 7.1.26 (absolute error below 1.5e-7, f32's own rounding at
// these magnitudes).
fn gelu_erf(x: vec4<f32>) -> vec4<f32> {
    let z = abs(x) * 0.7071067811865476;
    let k = 1.0 / (1.0 + 0.3275911 * z);
    let poly = k * (0.254829592 + k * (-0.284496736 + k * (1.421413741 + k * (-1.453152027 + k * 1.061405429))));
    let erf = sign(x) * (1.0 - poly * exp(-z * z));
    return 0.5 * x * (1.0 + erf);
}

// SiLU of a vec4: x / (1 + e^-x) (the Llama families' and the experts' activation).
fn silu(x: vec4<f32>) -> vec4<f32> {
    return x / (1.0 + exp(-x));
}

// SwiGLU's gating of a vec4: silu(g) · u (the `swiglu` kernel, the fused MLP and the
// tile matmuls' gated staging all take it from here, so their numbers agree).
fn silu_gate(g: vec4<f32>, u: vec4<f32>) -> vec4<f32> {
    return silu(g) * u;
}
