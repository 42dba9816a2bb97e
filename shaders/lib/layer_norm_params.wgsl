// The uniform of the layer-norm kernels.
struct LayerNormParams {
    t: u32,        // rows
    c4: u32,       // C / 4
    has_bias: u32, // 0: bias is ignored (bias: false models)
    eps: f32,
}
