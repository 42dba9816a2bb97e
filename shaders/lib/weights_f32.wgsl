// Weights as f32: `W` is one stored vec4 of weights, `load_w4` reads it as f32.
alias W = vec4<f32>;

fn load_w4(v: W) -> vec4<f32> {
    return v;
}

// The weights are f32 (see weights_f16.wgsl).
const W_HALVES: bool = false;
