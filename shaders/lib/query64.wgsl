// A query of a head of 64 dimensions, scaled by 1 / sqrt(64), as 16 vec4s in separate
// fields (llvmpipe keeps arrays indexed by a variable in memory): the query of the
// subgroup attention kernels (prelude after `attention` and `kv_read`; the kernel
// declares `qkv`).
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

// s4 + qa · vec4 i of the keys + qb · vec4 i + 1 (prelude kv_read: one load over half
// floats where the pair shares one).
fn key_pair_dot(s4: vec4<f32>, qa: vec4<f32>, qb: vec4<f32>, i: u32) -> vec4<f32> {
    let kk = key_pair(i);
    return s4 + qa * kk[0] + qb * kk[1];
}

// q · the key at vec4 `ko`, summed one vec4 after the other.
fn key_dot64(q: Query64, ko: u32) -> f32 {
    var s4 = key_pair_dot(vec4<f32>(0.0), q.v0, q.v1, ko);
    s4 = key_pair_dot(s4, q.v2, q.v3, ko + 2u);
    s4 = key_pair_dot(s4, q.v4, q.v5, ko + 4u);
    s4 = key_pair_dot(s4, q.v6, q.v7, ko + 6u);
    s4 = key_pair_dot(s4, q.v8, q.v9, ko + 8u);
    s4 = key_pair_dot(s4, q.v10, q.v11, ko + 10u);
    s4 = key_pair_dot(s4, q.v12, q.v13, ko + 12u);
    s4 = key_pair_dot(s4, q.v14, q.v15, ko + 14u);
    return s4.x + s4.y + s4.z + s4.w;
}
