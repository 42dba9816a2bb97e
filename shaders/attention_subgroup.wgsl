// Subgroup variant of attention.wgsl for head size 64 (same bindings and params).
// The lanes of a subgroup hold consecutive queries of one head and walk every key up
// to the last query together (prelude `keys64`); keys after a lane's own query are
// masked for that lane. Preludes `attention` (AttentionParams, the KV layouts),
// `query64` and `keys64`.

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: AttentionParams;
@group(0) @binding(1) var<storage, read> qkv: array<vec4<f32>>;        // [T, 3C]
@group(0) @binding(2) var<storage, read> k: array<vec4<u32>>;          // [rows, kv_stride]
@group(0) @binding(3) var<storage, read> v: array<vec4<u32>>;          // [rows, kv_stride]
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>;  // [T, C]
@group(0) @binding(5) var<storage, read_write> entropy: array<f32>;    // [NH, T]
@group(0) @binding(6) var<storage, read> tables: array<u32>;           // page table (paged KV; p.page > 0)

@compute @workgroup_size(WG)
fn attention_subgroup(
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
    let qo = (p.t0 + tq) * qkv_stride4() + h * 16u;
    let q = load_query64(qo); // prelude `query64`
    var acc = keys64_start(); // prelude `keys64`
    let j_last = last_key(p.pos + t_last);
    let kvh = kv_head4(h);
    for (var j = first_key(p.pos + t0); j <= j_last; j++) {
        let row = kv_row(p.table0, j) * p.kv_stride4 + kvh;
        acc = keys64_add(acc, q, row + p.k_off4, row + p.v_off4, lane, sees(qpos, j));
    }
    if (!valid) {
        return;
    }
    let oo = (p.t0 + t) * p.c4 + h * 16u;
    entropy[h * p.t + t] = keys64_finish(acc, oo);
}
