// The uniform of the matrix-vector kernels: out[N] (=|+=) act(x[K] · w[K, N] + bias).
struct MatvecParams {
    n4: u32,
    k4: u32,
    flags: u32, // bit 0 bias, bit 1 GELU, bit 2 accumulate
    p4: u32,    // panel width of w / 4
}
