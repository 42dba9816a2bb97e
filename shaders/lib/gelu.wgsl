// GELU, tanh approximation (GPT-2's), on a vec4; the argument of tanh is clamped so
// that large inputs cannot overflow to NaN.
fn gelu(x: vec4<f32>) -> vec4<f32> {
    let inner = 0.7978845608028654 * (x + 0.044715 * x * x * x);
    return 0.5 * x * (1.0 + tanh(clamp(inner, vec4<f32>(-15.0), vec4<f32>(15.0))));
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
