// The uniform of the norm kernels (layer_norm, layer_norm_workgroup): LayerNorm,
// y = (x - mean) / sqrt(var + eps) * weight (+ bias), or with NORM_RMS the RMSNorm of
// Llama-family models, y = x / sqrt(mean(x²) + eps) * weight (no mean subtracted).
struct LayerNormParams {
    t: u32,     // rows
    c4: u32,    // C / 4
    flags: u32, // NORM_BIAS | NORM_RMS | NORM_ADD
    eps: f32,
}

// Add `bias` (bias: false models and RMSNorm leave it unset; the binding is a dummy).
const NORM_BIAS: u32 = 1u;
// RMSNorm: no mean is subtracted (the variance pass sums x²).
const NORM_RMS: u32 = 2u;
// Add the normed row into y instead of writing it (a post-norm and its residual add:
// Gemma's norms after the attention and the MLP).
const NORM_ADD: u32 = 4u;
