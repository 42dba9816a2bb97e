// Append the keys and values of T new tokens to a generation's KV cache:
//   k_cache[pos + t, :] = qkv[t, C : 2C],  v_cache[pos + t, :] = qkv[t, 2C : 3C]

struct KvStoreParams {
    t: u32,   // new tokens
    c4: u32,  // C / 4
    pos: u32, // cache row of the first new token
    _pad: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: KvStoreParams;
@group(0) @binding(1) var<storage, read> qkv: array<vec4<f32>>;           // [T, 3C]
@group(0) @binding(2) var<storage, read_write> k_cache: array<vec4<f32>>;  // [context, C]
@group(0) @binding(3) var<storage, read_write> v_cache: array<vec4<f32>>;  // [context, C]

@compute @workgroup_size(WG)
fn kv_store(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.t * p.c4) {
        return;
    }
    let t = i / p.c4;
    let c = i % p.c4;
    let src = t * 3u * p.c4 + p.c4 + c;
    let dst = (p.pos + t) * p.c4 + c;
    k_cache[dst] = qkv[src];
    v_cache[dst] = qkv[src + p.c4];
}
