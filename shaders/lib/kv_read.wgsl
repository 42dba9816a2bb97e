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
