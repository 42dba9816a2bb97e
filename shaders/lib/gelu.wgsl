// GELU, tanh approximation (GPT-2's), on a vec4; the argument of tanh is clamped so
// that large inputs cannot overflow to NaN.
fn gelu(x: vec4<f32>) -> vec4<f32> {
    let inner = 0.7978845608028654 * (x + 0.044715 * x * x * x);
    return 0.5 * x * (1.0 + tanh(clamp(inner, vec4<f32>(-15.0), vec4<f32>(15.0))));
}

// SwiGLU's gating of a vec4: silu(g) · u, silu(x) = x / (1 + e^-x) (the `swiglu`
// kernel's expression).
fn silu_gate(g: vec4<f32>, u: vec4<f32>) -> vec4<f32> {
    return g / (1.0 + exp(-g)) * u;
}
