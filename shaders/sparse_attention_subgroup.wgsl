// Subgroup variant of sparse_attention.wgsl for head size 64 (same bindings and params).
// The lanes of a subgroup hold consecutive queries of one head and walk the keys
// together: for each key, lanes s < 8 load vec4s s and s + 8 of its K row (and of its V
// row) and every lane takes the 16 vec4s with subgroupBroadcast, instead of every lane
// loading the whole row (on lavapipe each storage load is a per-lane scalar loop).
// Keys after a lane's own query are masked for that lane. q and the accumulator are
// separate variables: llvmpipe keeps dynamically indexed arrays in memory.
// The subgroup's queries must share a query block: the layout's block size is a
// multiple of the subgroup size and query 0 sits at a multiple of it (forward passes and
// prompts start at 0; a one-token step has a single valid query).
// Prelude `attention` (shaders/lib/attention.wgsl): AttentionParams, MAX_HS4 and the
// online softmax (online_start / online_add / online_entropy).

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: AttentionParams;
@group(0) @binding(1) var<storage, read> qkv: array<vec4<f32>>;        // [T, 3C]
@group(0) @binding(2) var<storage, read> k: array<vec4<f32>>;          // [rows, kv_stride]
@group(0) @binding(3) var<storage, read> v: array<vec4<f32>>;          // [rows, kv_stride]
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>;  // [T, C]
@group(0) @binding(5) var<storage, read_write> entropy: array<f32>;    // [NH, T]
@group(0) @binding(6) var<storage, read> row_offsets: array<u32>;      // [query blocks + 1]
@group(0) @binding(7) var<storage, read> cols: array<u32>;             // [listed blocks]
@group(0) @binding(8) var<storage, read> tables: array<u32>;           // page table (paged KV; p.page > 0)

@compute @workgroup_size(WG)
fn sparse_attention_subgroup(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg: u32,
) {
    let t = gid.x;
    let h = wid.y;
    // the subgroup's first query and its last valid one (lanes map to consecutive
    // invocations); control flow stays uniform across the subgroup for the broadcasts
    let t0 = t - lane;
    if (t0 >= p.t) {
        return; // the whole subgroup is out of range
    }
    let valid = t < p.t;
    let tq = min(t, p.t - 1u);
    let t_last = min(t0 + sg - 1u, p.t - 1u);
    let qpos = p.pos + tq;
    let qo = (p.t0 + tq) * 3u * p.c4 + h * 16u;
    let q = load_query64(qo); // prelude `query64`
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    var a4 = vec4<f32>(0.0);
    var a5 = vec4<f32>(0.0);
    var a6 = vec4<f32>(0.0);
    var a7 = vec4<f32>(0.0);
    var a8 = vec4<f32>(0.0);
    var a9 = vec4<f32>(0.0);
    var a10 = vec4<f32>(0.0);
    var a11 = vec4<f32>(0.0);
    var a12 = vec4<f32>(0.0);
    var a13 = vec4<f32>(0.0);
    var a14 = vec4<f32>(0.0);
    var a15 = vec4<f32>(0.0);
    var m = -3.0e38;
    var l = 0.0;
    var ws = 0.0;
    let qb = (p.pos + t0) / p.block;
    let j_last = p.pos + t_last;
    for (var idx = row_offsets[qb]; idx < row_offsets[qb + 1u]; idx++) {
        let j0 = cols[idx] * p.block;
        let j1 = min(j0 + p.block, j_last + 1u);
        for (var j = j0; j < j1; j++) {
            let ko = kv_row(p.table0, j) * p.kv_stride4 + p.k_off4 + h * 16u;
            let vo = kv_row(p.table0, j) * p.kv_stride4 + p.v_off4 + h * 16u;
            let kx = k[ko + (lane & 7u)];
            let ky = k[ko + 8u + (lane & 7u)];
            let vx = v[vo + (lane & 7u)];
            let vy = v[vo + 8u + (lane & 7u)];
            let k0 = subgroupBroadcast(kx, 0u);
            let k1 = subgroupBroadcast(kx, 1u);
            let k2 = subgroupBroadcast(kx, 2u);
            let k3 = subgroupBroadcast(kx, 3u);
            let k4 = subgroupBroadcast(kx, 4u);
            let k5 = subgroupBroadcast(kx, 5u);
            let k6 = subgroupBroadcast(kx, 6u);
            let k7 = subgroupBroadcast(kx, 7u);
            let k8 = subgroupBroadcast(ky, 0u);
            let k9 = subgroupBroadcast(ky, 1u);
            let k10 = subgroupBroadcast(ky, 2u);
            let k11 = subgroupBroadcast(ky, 3u);
            let k12 = subgroupBroadcast(ky, 4u);
            let k13 = subgroupBroadcast(ky, 5u);
            let k14 = subgroupBroadcast(ky, 6u);
            let k15 = subgroupBroadcast(ky, 7u);
            let s4 = q.v0 * k0 + q.v1 * k1 + q.v2 * k2 + q.v3 * k3 + q.v4 * k4 + q.v5 * k5 + q.v6 * k6 + q.v7 * k7 + q.v8 * k8 + q.v9 * k9 + q.v10 * k10 + q.v11 * k11 + q.v12 * k12 + q.v13 * k13 + q.v14 * k14 + q.v15 * k15;
            let v0 = subgroupBroadcast(vx, 0u);
            let v1 = subgroupBroadcast(vx, 1u);
            let v2 = subgroupBroadcast(vx, 2u);
            let v3 = subgroupBroadcast(vx, 3u);
            let v4 = subgroupBroadcast(vx, 4u);
            let v5 = subgroupBroadcast(vx, 5u);
            let v6 = subgroupBroadcast(vx, 6u);
            let v7 = subgroupBroadcast(vx, 7u);
            let v8 = subgroupBroadcast(vy, 0u);
            let v9 = subgroupBroadcast(vy, 1u);
            let v10 = subgroupBroadcast(vy, 2u);
            let v11 = subgroupBroadcast(vy, 3u);
            let v12 = subgroupBroadcast(vy, 4u);
            let v13 = subgroupBroadcast(vy, 5u);
            let v14 = subgroupBroadcast(vy, 6u);
            let v15 = subgroupBroadcast(vy, 7u);
            if (j <= qpos) {
                let s = s4.x + s4.y + s4.z + s4.w;
                if (s > m) {
                    let corr = exp(m - s);
                    l *= corr;
                    ws *= corr;
                    a0 *= corr;
                    a1 *= corr;
                    a2 *= corr;
                    a3 *= corr;
                    a4 *= corr;
                    a5 *= corr;
                    a6 *= corr;
                    a7 *= corr;
                    a8 *= corr;
                    a9 *= corr;
                    a10 *= corr;
                    a11 *= corr;
                    a12 *= corr;
                    a13 *= corr;
                    a14 *= corr;
                    a15 *= corr;
                    m = s;
                }
                let e = exp(s - m);
                l += e;
                ws += e * s;
                a0 += e * v0;
                a1 += e * v1;
                a2 += e * v2;
                a3 += e * v3;
                a4 += e * v4;
                a5 += e * v5;
                a6 += e * v6;
                a7 += e * v7;
                a8 += e * v8;
                a9 += e * v9;
                a10 += e * v10;
                a11 += e * v11;
                a12 += e * v12;
                a13 += e * v13;
                a14 += e * v14;
                a15 += e * v15;
            }
        }
    }
    if (!valid) {
        return;
    }
    let inv = 1.0 / l;
    let oo = (p.t0 + t) * p.c4 + h * 16u;
    out[oo + 0u] = a0 * inv;
    out[oo + 1u] = a1 * inv;
    out[oo + 2u] = a2 * inv;
    out[oo + 3u] = a3 * inv;
    out[oo + 4u] = a4 * inv;
    out[oo + 5u] = a5 * inv;
    out[oo + 6u] = a6 * inv;
    out[oo + 7u] = a7 * inv;
    out[oo + 8u] = a8 * inv;
    out[oo + 9u] = a9 * inv;
    out[oo + 10u] = a10 * inv;
    out[oo + 11u] = a11 * inv;
    out[oo + 12u] = a12 * inv;
    out[oo + 13u] = a13 * inv;
    out[oo + 14u] = a14 * inv;
    out[oo + 15u] = a15 * inv;
    entropy[h * p.t + t] = m + log(l) - ws * inv;
}
