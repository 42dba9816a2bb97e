// A query of a head of 64 dimensions, scaled by 1 / sqrt(64), as 16 vec4s in separate
// fields (llvmpipe keeps arrays indexed by a variable in memory): the query of the
// subgroup attention kernels (prelude after `attention`; the kernel declares `qkv`).
struct Query64 {
    v0: vec4<f32>,
    v1: vec4<f32>,
    v2: vec4<f32>,
    v3: vec4<f32>,
    v4: vec4<f32>,
    v5: vec4<f32>,
    v6: vec4<f32>,
    v7: vec4<f32>,
    v8: vec4<f32>,
    v9: vec4<f32>,
    v10: vec4<f32>,
    v11: vec4<f32>,
    v12: vec4<f32>,
    v13: vec4<f32>,
    v14: vec4<f32>,
    v15: vec4<f32>,
}

// The query whose first vec4 is qkv[qo].
fn load_query64(qo: u32) -> Query64 {
    let s = p.scale;
    return Query64(
        qkv[qo] * s, qkv[qo + 1u] * s, qkv[qo + 2u] * s, qkv[qo + 3u] * s,
        qkv[qo + 4u] * s, qkv[qo + 5u] * s, qkv[qo + 6u] * s, qkv[qo + 7u] * s,
        qkv[qo + 8u] * s, qkv[qo + 9u] * s, qkv[qo + 10u] * s, qkv[qo + 11u] * s,
        qkv[qo + 12u] * s, qkv[qo + 13u] * s, qkv[qo + 14u] * s, qkv[qo + 15u] * s,
    );
}
