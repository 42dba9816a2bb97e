// A norm folded into the kernel after it: its flags (`p.norm`) and a vec4 of the row
// normalised with its statistics (`norm4`), shared by the hardware matrix-vector
// kernels (prelude norm_prologue takes the statistics across the workgroup) and the
// tiled matmuls (prelude stage_tile: the lanes staging a row take them). The kernel
// declares `p` (with `norm`) and the norm's `norm_w`, `norm_b`.

// p.norm: normalise x (LayerNorm unless NORM_RMS), add the norm's bias (NORM_BIAS).
const NORM_ON: u32 = 1u;
const NORM_RMS: u32 = 2u;
const NORM_BIAS: u32 = 4u;

// Vec4 `c4` of the row, `v`, normalised with the statistics `st` (as it is without a
// norm).
fn norm4(v: vec4<f32>, c4: u32, st: vec2<f32>) -> vec4<f32> {
    if ((p.norm & NORM_ON) == 0u) {
        return v;
    }
    var o = (v - st.x) * st.y * norm_w[c4];
    if ((p.norm & NORM_BIAS) != 0u) {
        o += norm_b[c4];
    }
    return o;
}
