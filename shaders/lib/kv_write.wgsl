// How keys and values go into the paged KV pool: the kernel declares `k_pool` and
// `v_pool` as array<vec4<u32>>. Vec4 `i` of a pool (counted in vec4s of f32, as the
// layouts do) is stored as f32 bits, or with `half` as half floats, two vec4s of them
// in each vec4<u32> (the other half is another vec4's: its own memory locations).

fn put_key(i: u32, o: vec4<f32>, half: bool) {
    if (!half) {
        k_pool[i] = bitcast<vec4<u32>>(o);
    } else if ((i & 1u) == 0u) {
        k_pool[i >> 1u].x = pack2x16float(o.xy);
        k_pool[i >> 1u].y = pack2x16float(o.zw);
    } else {
        k_pool[i >> 1u].z = pack2x16float(o.xy);
        k_pool[i >> 1u].w = pack2x16float(o.zw);
    }
}

fn put_value(i: u32, o: vec4<f32>, half: bool) {
    if (!half) {
        v_pool[i] = bitcast<vec4<u32>>(o);
    } else if ((i & 1u) == 0u) {
        v_pool[i >> 1u].x = pack2x16float(o.xy);
        v_pool[i >> 1u].y = pack2x16float(o.zw);
    } else {
        v_pool[i >> 1u].z = pack2x16float(o.xy);
        v_pool[i >> 1u].w = pack2x16float(o.zw);
    }
}
