// Causal multi-head attention over the paged KV cache (the generation path). Keys and
// values of every generation live in pages of PAGE positions taken from one pool; query
// row t of this step belongs to one generation: rows[t] = (offset of its page table in
// `tables`, its absolute position), and key j of that generation is at pool row
//   tables[offset + j / PAGE] * PAGE + j % PAGE.
// The rows of a step may belong to different generations (a batched decode step) or to
// one (a prefill chunk: consecutive positions, one table); each row is computed alone,
// by the same code, so its numbers do not depend on the rows around it.
//   out[t, h] = Σ_{j ≤ pos_t} softmax_j(q_t · k_j / sqrt(HS)) v_j
// With p.block > 0 the block-sparse layout restricts the keys to the blocks listed for
// the query's block, keys after the query masked (prelude `paged_walk`).
// One invocation per (row, head); online softmax in f32 (prelude `attention`), the row
// folded in as the forward kernels fold theirs (prelude `attend_row`).

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: AttentionParams;
@group(0) @binding(1) var<storage, read> qkv: array<vec4<f32>>;        // [T, 3C]
@group(0) @binding(2) var<storage, read> k: array<vec4<u32>>;     // [pool rows, C] (prelude kv_read)
@group(0) @binding(3) var<storage, read> v: array<vec4<u32>>;     // [pool rows, C] (prelude kv_read)
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>;  // [T, C]
// bindings 5-8 (rows, tables, row_offsets, cols): prelude paged_walk

@compute @workgroup_size(WG)
fn attention_paged(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let t = gid.x;
    let h = wid.y;
    if (t >= p.t) {
        return;
    }
    let hs4 = p.hs4;
    var q: array<vec4<f32>, MAX_HS4>;
    var acc: array<vec4<f32>, MAX_HS4>;
    row_start(&q, &acc, t * qkv_stride4() + h * hs4, hs4); // prelude `attend_row`
    let table = rows[t].x;
    let qpos = rows[t].y;
    let keys = walk_of(qpos);
    var sm = online_start();
    for (var i = 0u; i < keys.len; i++) {
        let j = walk_key(keys, i);
        if (sees(qpos, j)) {
            let ko = kv_row(table, j) * pool_stride4() + kv_head4(h);
            row_key(&q, &acc, &sm, ko, ko, hs4);
        }
    }
    row_finish(&acc, sm, t * p.c4 + h * hs4, hs4);
}
