// The epilogue of the matmul and matrix-vector kernels (after prelude `gelu`):
// out[at] (=|+=) act(o + bias[col]) by p.flags: bit 0 bias, bit 1 GELU, bit 2
// accumulate (the residual add). The kernel declares `p`, `bias` and `out`. Returns the
// value stored.
fn store_epilogue(acc: vec4<f32>, col: u32, at: u32) -> vec4<f32> {
    var o = acc;
    if ((p.flags & 1u) != 0u) {
        o += bias[col];
    }
    if ((p.flags & 2u) != 0u) {
        o = gelu(o);
    }
    if ((p.flags & 4u) != 0u) {
        o += out[at];
    }
    out[at] = o;
    return o;
}
