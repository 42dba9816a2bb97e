// A vec4 of a row normalised with its statistics (`norm4`), for the hardware
// matrix-vector kernels (prelude norm_prologue takes the statistics across the
// workgroup). The kernel declares `p` (with `norm`) and the norm's `norm_w`, `norm_b`;
// prelude norm_flags.

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
