// Append the keys and values of T new rows to the paged KV pool: row t goes to pool
// row slots[t] (its sequence's page for that position, chosen on the host). A qkv row
// is Q (NH heads) | K (NKV heads) | V (NKV heads); with Q = NH · HS, KV = NKV · HS:
//   k_pool[slots[t], :] = qkv[t, Q : Q + KV],  v_pool[slots[t], :] = qkv[t, Q + KV : Q + 2 KV]

struct KvStoreParams {
    t: u32,   // new rows
    kv4: u32, // KV / 4: a pool row
    q4: u32,  // Q / 4: the queries before the keys in a qkv row
    _pad1: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: KvStoreParams;
@group(0) @binding(1) var<storage, read> qkv: array<vec4<f32>>;          // [T, Q + 2 KV]
@group(0) @binding(2) var<storage, read_write> k_pool: array<vec4<f32>>; // [pool rows, KV]
@group(0) @binding(3) var<storage, read_write> v_pool: array<vec4<f32>>; // [pool rows, KV]
@group(0) @binding(4) var<storage, read> slots: array<u32>;              // [T]

@compute @workgroup_size(WG)
fn kv_store(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.t * p.kv4) {
        return;
    }
    let t = i / p.kv4;
    let c = i % p.kv4;
    let src = t * (p.q4 + 2u * p.kv4) + p.q4 + c;
    let dst = slots[t] * p.kv4 + c;
    k_pool[dst] = qkv[src];
    v_pool[dst] = qkv[src + p.kv4];
}
