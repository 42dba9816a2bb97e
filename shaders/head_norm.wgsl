// Qwen3's per-head RMSNorm of the queries and keys, then what a qkv projection's
// epilogue does to them: for each row and each query or key head h of qkv,
//   head = head · rsqrt(mean(head²) + eps) · g[q or k][:]
// (g: the query heads' weights, then the key heads'; [2, HS], interleaved as the
// heads are), rotated at the row's position with ROTARY, and with KV_STORE the key
// heads and the value heads (as they are) stored to the row's pool row. The norm needs
// a head's whole sum of squares, which no epilogue lane has, so a model with it runs
// its qkv projection without ROTARY and KV_STORE and this kernel after it.
// One invocation per (row, head) walks its head in vec4s (a head is at most 64 of
// them): no workgroup memory, no barrier, the same code on every adapter.
// With p.whole (OLMo 2's q_norm and k_norm) the norm spans all the query heads, and
// all the key heads, of a row, each channel with its own weight (g: [Q + KV], the
// heads interleaved as they are): one invocation per (row, part), part 0 the query
// heads, 1 the key heads, 2.. the value heads (stored as they are), so no invocation
// reads values another has normalised.
// Preludes: gelu, epilogue, kv_write (the epilogue's `rotated` and `store_kv`).

struct HeadNormParams {
    t: u32,     // rows
    heads: u32, // heads in a qkv row: NH + 2 NKV
    n4: u32,    // vec4s in a qkv row
    flags: u32, // ROTARY | KV_STORE (prelude epilogue)
    kv_q4: u32, // vec4s of the query heads (Q / 4); the key heads follow
    kv4: u32,   // vec4s of the key heads (KV / 4); the value heads follow
    head4: u32, // HS / 4
    rot4: u32,  // ROTARY: vec4s rotated in a row (the query and key heads)
    eps: f32,
    whole: u32, // 1: one norm over all the query heads and one over all the key heads
    _pad1: u32,
    _pad2: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: HeadNormParams;
@group(0) @binding(1) var<storage, read_write> out: array<vec4<f32>>;    // qkv [T, Q + 2 KV]
@group(0) @binding(2) var<storage, read> g: array<vec4<f32>>;            // [2, HS] ([Q + KV] whole)
@group(0) @binding(3) var<storage, read_write> k_pool: array<vec4<u32>>; // [pool rows, KV] (or a dummy)
@group(0) @binding(4) var<storage, read_write> v_pool: array<vec4<u32>>; // [pool rows, KV] (or a dummy)
@group(0) @binding(5) var<storage, read> slots: array<u32>;              // [T] (or a dummy)
@group(0) @binding(6) var<storage, read> positions: array<u32>;          // [T] (or a dummy)
@group(0) @binding(7) var<storage, read> rope: array<vec4<f32>>;         // [positions, 2, HS] (or a dummy)
// read by the epilogue's bias step only, which this kernel never takes: not bound
@group(0) @binding(8) var<storage, read> bias: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn head_norm(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    // the spans a row is walked in: its heads, or (whole) its query heads, its key
    // heads and its value heads one by one
    let kv_heads = p.kv4 / p.head4;
    let spans = select(p.heads, 2u + kv_heads, p.whole != 0u);
    if (i >= p.t * spans) {
        return;
    }
    let row = i / spans;
    let span = i % spans;
    var col0 = span * p.head4;
    var len4 = p.head4;
    if (p.whole != 0u) {
        col0 = select(select(p.kv_q4, 0u, span == 0u), p.kv_q4 + p.kv4 + (span - 2u) * p.head4, span >= 2u);
        len4 = select(select(p.kv4, p.kv_q4, span == 0u), p.head4, span >= 2u);
    }
    let at = row * p.n4 + col0;
    if (col0 >= p.kv_q4 + p.kv4) {
        // a value head: to the pool as it is
        for (var j = 0u; j < len4; j++) {
            store_kv(out[at + j], col0 + j, row);
        }
        return;
    }
    var ss = vec4<f32>(0.0);
    for (var j = 0u; j < len4; j++) {
        let v = out[at + j];
        ss += v * v;
    }
    let inv = inverseSqrt((ss.x + ss.y + ss.z + ss.w) / f32(4u * len4) + p.eps);
    // a head's weights (the query heads', then the key heads'), or (whole) each
    // channel's, laid out as the columns
    var g0 = select(0u, p.head4, col0 >= p.kv_q4);
    if (p.whole != 0u) {
        g0 = col0;
    }
    for (var j = 0u; j < len4; j++) {
        let o = rotated(out[at + j] * inv * g[g0 + j], col0 + j, row);
        out[at + j] = o;
        store_kv(o, col0 + j, row);
    }
}
