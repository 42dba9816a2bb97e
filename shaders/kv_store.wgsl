// Append the keys and values of T new rows to the paged KV pool: row t goes to pool
// row slots[t] (its sequence's page for that position, chosen on the host):
//   k_pool[slots[t], :] = qkv[t, C : 2C],  v_pool[slots[t], :] = qkv[t, 2C : 3C]

struct KvStoreParams {
    t: u32,  // new rows
    c4: u32, // C / 4
    _pad0: u32,
    _pad1: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: KvStoreParams;
@group(0) @binding(1) var<storage, read> qkv: array<vec4<f32>>;          // [T, 3C]
@group(0) @binding(2) var<storage, read_write> k_pool: array<vec4<f32>>; // [pool rows, C]
@group(0) @binding(3) var<storage, read_write> v_pool: array<vec4<f32>>; // [pool rows, C]
@group(0) @binding(4) var<storage, read> slots: array<u32>;              // [T]

@compute @workgroup_size(WG)
fn kv_store(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.t * p.c4) {
        return;
    }
    let t = i / p.c4;
    let c = i % p.c4;
    let src = t * 3u * p.c4 + p.c4 + c;
    let dst = slots[t] * p.c4 + c;
    k_pool[dst] = qkv[src];
    v_pool[dst] = qkv[src + p.c4];
}
