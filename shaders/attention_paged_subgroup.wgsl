// Subgroup variant of attention_paged.wgsl for head size 64 on software adapters (same
// bindings, params and results up to rounding): one subgroup per (row, head) instead
// of one invocation, so a lone decode row fills the lanes that attention_paged leaves
// idle (on lavapipe a storage load costs every lane of the SIMD vector, active or
// not). The walk (prelude `paged_walk`) takes CHUNK = 8 keys a step:
//   1. lane i < 8 takes key i of the chunk: its pool row (page table), and its score
//      q · k over the whole head, q held by every lane in separate variables
//      (llvmpipe keeps arrays indexed by a variable in memory);
//   2. the chunk's max (subgroupMax) moves the running max m, lane i computes
//      e_i = e^(s_i - m) and the normaliser grows by their subgroupAdd;
//   3. lane s < 8 adds Σ_i e_i v_i over vec4s s and s + 8 of the head, e_i and the
//      key's row taken with subgroupBroadcast.
// Across chunks the softmax is online, in f32 (as attention_paged_workgroup). Each K
// and V row is loaded once. Needs subgroups of at least 8 lanes (lanes past 8 idle);
// the host runs one subgroup per workgroup (WG = the adapter's subgroup size); should a
// workgroup hold several subgroups, each computes the whole row and they store the same
// numbers. A row's numbers depend only on its own keys: the same in any batch.

override WG: u32 = 8u;
const CHUNK: u32 = 8u;
const MASKED: f32 = -3.0e38;

@group(0) @binding(0) var<uniform> p: AttentionParams;
@group(0) @binding(1) var<storage, read> qkv: array<vec4<f32>>;        // [T, 3C]
@group(0) @binding(2) var<storage, read> k: array<vec4<u32>>;     // [pool rows, C] (prelude kv_read)
@group(0) @binding(3) var<storage, read> v: array<vec4<u32>>;     // [pool rows, C] (prelude kv_read)
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>;  // [T, C]
// bindings 5-8 (rows, tables, row_offsets, cols): prelude paged_walk

// a0 += e · vec4 `vo` of the V pool, a1 += e · the vec4 8 further (this lane's vec4s
// of the key's value row).
fn add_value(a0: ptr<function, vec4<f32>>, a1: ptr<function, vec4<f32>>, e: f32, vo: u32) {
    *a0 += e * value4(vo);
    *a1 += e * value4(vo + 8u);
}

@compute @workgroup_size(WG)
fn attention_paged_subgroup(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let t = wid.x; // one workgroup per query row: t < p.t
    let h = wid.y;
    let head = h * 16u;
    let qo = t * qkv_stride4() + head;
    let q = load_query64(qo); // prelude `query64`
    let ld = lane & 7u; // this lane's vec4s of the output: ld and ld + 8
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    let table = rows[t].x;
    let qpos = rows[t].y;
    let keys = walk_of(qpos);
    var m = MASKED;
    var l = 0.0;
    for (var c0 = 0u; c0 < keys.len; c0 += CHUNK) {
        // 1. lane i < CHUNK: key c0 + i (masked: past the walk, or after the query)
        let i = c0 + min(lane, CHUNK - 1u);
        let j = walk_key(keys, min(i, keys.len - 1u));
        let live = lane < CHUNK && i < keys.len && sees(qpos, j);
        let ko = kv_row(table, min(j, qpos)) * pool_stride4() + kv_head4(h);
        let s = select(MASKED, capped(key_dot64(q, ko)), live);
        // 2. weights
        let m_new = max(m, subgroupMax(s));
        let corr = exp(m - m_new);
        let e = select(0.0, exp(s - m_new), live);
        l = l * corr + subgroupAdd(e);
        m = m_new;
        a0 *= corr;
        a1 *= corr;
        // 3. values
        add_value(&a0, &a1, subgroupBroadcast(e, 0u), subgroupBroadcast(ko, 0u) + ld);
        add_value(&a0, &a1, subgroupBroadcast(e, 1u), subgroupBroadcast(ko, 1u) + ld);
        add_value(&a0, &a1, subgroupBroadcast(e, 2u), subgroupBroadcast(ko, 2u) + ld);
        add_value(&a0, &a1, subgroupBroadcast(e, 3u), subgroupBroadcast(ko, 3u) + ld);
        add_value(&a0, &a1, subgroupBroadcast(e, 4u), subgroupBroadcast(ko, 4u) + ld);
        add_value(&a0, &a1, subgroupBroadcast(e, 5u), subgroupBroadcast(ko, 5u) + ld);
        add_value(&a0, &a1, subgroupBroadcast(e, 6u), subgroupBroadcast(ko, 6u) + ld);
        add_value(&a0, &a1, subgroupBroadcast(e, 7u), subgroupBroadcast(ko, 7u) + ld);
    }
    if (lane < 8u) {
        let oo = t * p.c4 + head + ld;
        out[oo] = a0 / l;
        out[oo + 8u] = a1 / l;
    }
}
