// One query row of one head attended by one invocation (the software kernels
// `attention`, `sparse_attention` and `attention_paged`): the query, scaled, in `q`,
// the output accumulated in `acc` under the online softmax `sm` (prelude `attention`),
// keys and values read through prelude `kv_read`. The kernel declares `qkv` and `out`
// (array<vec4<f32>>) and walks its keys; every kernel folds a key in the same order of
// operations, so their rows agree bit for bit over the same keys. (The rows are spelt
// `array<vec4<f32>, MAX_HS4>`: naga takes a pointer to an alias of that type for
// another type.)

// The query at vec4 `qo` (scaled by 1 / sqrt(HS)) and a zero output.
fn row_start(
    q: ptr<function, array<vec4<f32>, MAX_HS4>>,
    acc: ptr<function, array<vec4<f32>, MAX_HS4>>,
    qo: u32,
    hs4: u32,
) {
    for (var d = 0u; d < hs4; d++) {
        (*q)[d] = qkv[qo + d] * p.scale;
        (*acc)[d] = vec4<f32>(0.0);
    }
}

// The key at vec4 `ko` and its value at `vo` folded in: the output so far rescaled when
// the running maximum moves, then the value added with its weight.
fn row_key(
    q: ptr<function, array<vec4<f32>, MAX_HS4>>,
    acc: ptr<function, array<vec4<f32>, MAX_HS4>>,
    sm: ptr<function, Online>,
    ko: u32,
    vo: u32,
    hs4: u32,
) {
    let w = online_add(sm, capped(key_dot(q, ko, hs4)));
    if (w.x != 1.0) {
        for (var d = 0u; d < hs4; d++) {
            (*acc)[d] *= w.x;
        }
    }
    value_add(acc, w.y, vo, hs4);
}

// The row's output, normalised, to `out` at vec4 `oo`.
fn row_finish(acc: ptr<function, array<vec4<f32>, MAX_HS4>>, sm: Online, oo: u32, hs4: u32) {
    let inv = 1.0 / sm.l;
    for (var d = 0u; d < hs4; d++) {
        out[oo + d] = (*acc)[d] * inv;
    }
}
