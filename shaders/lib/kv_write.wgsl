// How keys and values go into the paged KV pool: the kernel declares `k_pool` and
// `v_pool` as array<vec4<u32>>. Vec4 `i` of a pool (counted in vec4s of f32, as the
// layouts do) is stored as f32 bits, or with KV_HALF as half floats, two vec4s of them
// in each vec4<u32> (the other half is another vec4's: its own memory locations).
//
// Both are pipeline constants (`kernels::Spec`): each writer is compiled as a plain
// projection and as a qkv projection over either pool. A software adapter runs every
// branch of a kernel for all its lanes, masked, taken or not, so a store or a rotation
// a projection never makes would still cost it on every output unless compiled out.

// The epilogue can store keys and values and rotate queries and keys (prelude
// `epilogue`'s KV_STORE and ROTARY flags then decide, per dispatch).
override QKV: bool = false;
// The pool holds half floats.
override KV_HALF: bool = false;

fn put_key(i: u32, o: vec4<f32>) {
    if (!KV_HALF) {
        k_pool[i] = bitcast<vec4<u32>>(o);
    } else if ((i & 1u) == 0u) {
        k_pool[i >> 1u].x = pack2x16float(o.xy);
        k_pool[i >> 1u].y = pack2x16float(o.zw);
    } else {
        k_pool[i >> 1u].z = pack2x16float(o.xy);
        k_pool[i >> 1u].w = pack2x16float(o.zw);
    }
}

fn put_value(i: u32, o: vec4<f32>) {
    if (!KV_HALF) {
        v_pool[i] = bitcast<vec4<u32>>(o);
    } else if ((i & 1u) == 0u) {
        v_pool[i >> 1u].x = pack2x16float(o.xy);
        v_pool[i >> 1u].y = pack2x16float(o.zw);
    } else {
        v_pool[i >> 1u].z = pack2x16float(o.xy);
        v_pool[i >> 1u].w = pack2x16float(o.zw);
    }
}
