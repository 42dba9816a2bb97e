// Causal multi-head self-attention. Queries come from a fused qkv buffer (q | k | v:
// NH query heads, NKV key heads, NKV value heads a row); keys and values from `k` and
// `v`, which are either that same qkv buffer (a forward pass) or the KV cache of a
// generation (rows of NKV heads, rows 0 .. pos + T). Query t sits at absolute position
// pos + t; query head h reads key/value head h / (NH / NKV) (grouped-query attention):
//   out[t, h] = Σ_{j ≤ pos + t, in the window} softmax_j(q_t · k_j / sqrt(HS)) v_j
// One invocation per (query t, head h), online (streaming) softmax in f32 with the
// running max subtracted. Also writes the entropy of each attention row, in nats,
// to entropy[h, t] for capture.
// Prelude `attention` (shaders/lib/attention.wgsl): AttentionParams, MAX_HS4 and the
// online softmax (online_start / online_add / online_entropy); prelude `attend_row`
// the row's start, its fold of a key and its end, shared with the other software
// kernels.

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: AttentionParams;
@group(0) @binding(1) var<storage, read> qkv: array<vec4<f32>>;        // [T, 3C]
@group(0) @binding(2) var<storage, read> k: array<vec4<u32>>;          // [rows, kv_stride]
@group(0) @binding(3) var<storage, read> v: array<vec4<u32>>;          // [rows, kv_stride]
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>;  // [T, C]
@group(0) @binding(5) var<storage, read_write> entropy: array<f32>;    // [NH, T]
@group(0) @binding(6) var<storage, read> tables: array<u32>;           // page table (paged KV; p.page > 0)

@compute @workgroup_size(WG)
fn attention(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
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
    let kvh = kv_head4(h);
    for (var j = first_key(p.pos + t); j <= last_key(p.pos + t); j++) {
        let row = kv_row(p.table0, j) * p.kv_stride4 + kvh;
        row_key(&q, &acc, &sm, row + p.k_off4, row + p.v_off4, hs4);
    }
    row_finish(&acc, sm, (p.t0 + t) * p.c4 + h * hs4, hs4);
    entropy[h * p.t + t] = online_entropy(sm);
}
