// Block-sparse causal multi-head attention: the same as attention.wgsl, but query t
// (absolute position pos + t, in query block qb = (pos + t) / block) visits only the
// key blocks listed for qb in a CSR layout (row_offsets[qb] .. row_offsets[qb + 1] into
// cols), so the work grows with the number of listed blocks, not with T². Inside a
// block, keys after the query are masked (causality holds everywhere). Online softmax
// across blocks; entropy of each attention row to entropy[h, t].
// Preludes `attention` (AttentionParams, MAX_HS4, the online softmax) and `attend_row`
// (a row's start, its fold of a key and its end: attention.wgsl's).

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: AttentionParams;
@group(0) @binding(1) var<storage, read> qkv: array<vec4<f32>>;        // [T, 3C]
@group(0) @binding(2) var<storage, read> k: array<vec4<u32>>;          // [rows, kv_stride]
@group(0) @binding(3) var<storage, read> v: array<vec4<u32>>;          // [rows, kv_stride]
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>;  // [T, C]
@group(0) @binding(5) var<storage, read_write> entropy: array<f32>;    // [NH, T]
@group(0) @binding(6) var<storage, read> row_offsets: array<u32>;      // [query blocks + 1]
@group(0) @binding(7) var<storage, read> cols: array<u32>;             // [listed blocks]
@group(0) @binding(8) var<storage, read> tables: array<u32>;           // page table (paged KV; p.page > 0)

@compute @workgroup_size(WG)
fn sparse_attention(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let t = gid.x;
    let h = wid.y;
    if (t >= p.t) {
        return;
    }
    let stride = qkv_stride4();
    let hs4 = p.hs4;
    var q: array<vec4<f32>, MAX_HS4>;
    var acc: array<vec4<f32>, MAX_HS4>;
    row_start(&q, &acc, (p.t0 + t) * stride + h * hs4, hs4); // prelude `attend_row`
    var sm = online_start();
    let qpos = p.pos + t;
    let qb = qpos / p.block;
    for (var idx = row_offsets[qb]; idx < row_offsets[qb + 1u]; idx++) {
        let kb = cols[idx];
        let j0 = max(kb * p.block, first_key(qpos));
        let j1 = min(kb * p.block + p.block, qpos + 1u);
        for (var j = j0; j < j1; j++) {
            let row = kv_row(p.table0, j) * p.kv_stride4 + kv_head4(h);
            row_key(&q, &acc, &sm, row + p.k_off4, row + p.v_off4, hs4);
        }
    }
    row_finish(&acc, sm, (p.t0 + t) * p.c4 + h * hs4, hs4);
    entropy[h * p.t + t] = online_entropy(sm);
}
