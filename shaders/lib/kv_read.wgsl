// How the attention kernels read keys and values: the kernel declares `k` and `v` as
// array<vec4<u32>> (a forward's qkv or an f32 pool: f32 bits; compiled with KV_HALF,
// the paged pool's half floats, two vec4s of them in each vec4<u32>). Indices count
// vec4s (or floats) of f32, as the layouts do. KV_HALF is a pipeline constant (each
// reader is compiled both ways), not a uniform: the loads sit in the kernels' inner
// loops, where a software adapter pays for a branch.

override KV_HALF: bool = false;

// vec4 `i` of half floats, from the vec4<u32> that holds it.
fn halves4(w: vec4<u32>, i: u32) -> vec4<f32> {
    var h = w.xy;
    if ((i & 1u) != 0u) {
        h = w.zw;
    }
    return vec4<f32>(unpack2x16float(h.x), unpack2x16float(h.y));
}

fn key4(i: u32) -> vec4<f32> {
    if (KV_HALF) {
        return halves4(k[i >> 1u], i);
    }
    return bitcast<vec4<f32>>(k[i]);
}

fn value4(i: u32) -> vec4<f32> {
    if (KV_HALF) {
        return halves4(v[i >> 1u], i);
    }
    return bitcast<vec4<f32>>(v[i]);
}

// Float `i` of the values.
fn value1(i: u32) -> f32 {
    if (KV_HALF) {
        return unpack2x16float(v[i >> 3u][(i >> 1u) & 3u])[i & 1u];
    }
    return bitcast<f32>(v[i >> 2u][i & 3u]);
}

// Both vec4s of half floats a vec4<u32> holds.
fn halves8(w: vec4<u32>) -> array<vec4<f32>, 2> {
    return array<vec4<f32>, 2>(
        vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y)),
        vec4<f32>(unpack2x16float(w.z), unpack2x16float(w.w)),
    );
}

// Vec4s i and i + 1 of the keys (values): over the pool's half floats one load where
// the two share a vec4<u32> (i even), else two. For the GPU kernels, whose branch is
// uniform; the software kernels' loops below take it once a key.
fn key_pair(i: u32) -> array<vec4<f32>, 2> {
    if (KV_HALF && (i & 1u) == 0u) {
        return halves8(k[i >> 1u]);
    }
    return array<vec4<f32>, 2>(key4(i), key4(i + 1u));
}

// q · the key at vec4 `ko` over the head's `hs4` vec4s, summed one vec4 after the other
// (the pair loads change no rounding): over half floats an odd first vec4 alone, then
// two vec4s a load.
fn key_dot(q: ptr<function, array<vec4<f32>, MAX_HS4>>, ko: u32, hs4: u32) -> f32 {
    var s4 = vec4<f32>(0.0);
    var d = 0u;
    if (KV_HALF) {
        if ((ko & 1u) != 0u && hs4 > 0u) {
            s4 += (*q)[0] * key4(ko);
            d = 1u;
        }
        for (; d + 1u < hs4; d += 2u) {
            let kk = halves8(k[(ko + d) >> 1u]);
            s4 += (*q)[d] * kk[0];
            s4 += (*q)[d + 1u] * kk[1];
        }
    }
    for (; d < hs4; d++) {
        s4 += (*q)[d] * key4(ko + d);
    }
    return s4.x + s4.y + s4.z + s4.w;
}

// acc += e · the value at vec4 `vo` over the head's `hs4` vec4s (as `key_dot`).
fn value_add(acc: ptr<function, array<vec4<f32>, MAX_HS4>>, e: f32, vo: u32, hs4: u32) {
    var d = 0u;
    if (KV_HALF) {
        if ((vo & 1u) != 0u && hs4 > 0u) {
            (*acc)[0] += e * value4(vo);
            d = 1u;
        }
        for (; d + 1u < hs4; d += 2u) {
            let vv = halves8(v[(vo + d) >> 1u]);
            (*acc)[d] += e * vv[0];
            (*acc)[d + 1u] += e * vv[1];
        }
    }
    for (; d < hs4; d++) {
        (*acc)[d] += e * value4(vo + d);
    }
}
