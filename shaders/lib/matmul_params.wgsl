// The uniform of the matmul kernels: out[M, N] (=|+=) act(a[M, K] · b[K, N] + bias).
struct MatmulParams {
    m: u32,     // rows of a and out
    n4: u32,    // N / 4
    k4: u32,    // K / 4
    flags: u32, // bit 0 bias, bit 1 GELU, bit 2 accumulate, bit 3 KV_STORE (prelude epilogue)
    p4: u32,    // panel width of b / 4 (P = 64 when N % 64 == 0, else N)
    ks: u32,    // K slice of the tiled kernels (a multiple of 16; fixed per weight shape)
    split: u32, // tiled kernels: 1 = slice z per workgroup z into `part`, 0 = all slices
    kv_q4: u32, // KV_STORE: vec4s of the queries before the keys in a row of out
    kv4: u32,   // KV_STORE: vec4s of a pool row (the keys; the values follow them in out)
    norm: u32,  // tiled kernels: the norm before the projection (preludes norm_flags, norm_fold), 0: a as it is
    eps: f32,   // its epsilon
    head4: u32, // ROTARY (prelude epilogue): HS / 4, vec4s in a head
    rot4: u32,  // ROTARY: vec4s of a row rotated (the query and key heads)
}
