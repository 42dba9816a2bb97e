// What the attention kernels share: their uniform, the head-size bound, and the online
// (streaming) softmax over a query's keys in f32 with the running max subtracted.

struct AttentionParams {
    t: u32,          // query tokens
    c4: u32,         // vec4s of the queries (and of the output) in a row: NH · HS / 4
    hs4: u32,        // head size / 4
    nh: u32,         // heads
    scale: f32,      // 1 / sqrt(head size), divided by softcap when there is one
    pos: u32,        // absolute position of query 0
    kv_stride4: u32, // vec4s between consecutive rows of k and v
    k_off4: u32,     // vec4 offset of head 0 in a row of k
    v_off4: u32,     // vec4 offset of head 0 in a row of v
    block: u32,      // tokens per block (block-sparse kernels; 0 = dense in attention_paged)
    page: u32,       // positions per page of the paged KV pool (0: keys at row j)
    t0: u32,         // row of query 0 in qkv and out (one prompt among a prefill's)
    table0: u32,     // start of the sequence's page table in `tables`
    w0: u32,         // attention_weights: float offset of this layer's [NH, T, T] in `w`
    nkv: u32,        // key/value heads (grouped-query attention when < nh)
    window: u32,     // sliding window: keys older than this many positions masked (0 = none)
    proj_n4: u32,    // attention_proj: vec4s of the output projection's outputs
    proj_p4: u32,    // attention_proj: its weights' panel width / 4
    softcap: f32,    // the scores' soft cap (Gemma 2), 0: none
    bidirectional: u32, // 1: every query sees every key of its text (an encoder's)
}

// head size ≤ 128; the kernels' wide pipelines (heads of up to 256: Gemma) are compiled
// from this source with 64 here (`kernels::catalogue::Kernel::wide_source`)
const MAX_HS4: u32 = 32u;

// vec4s in a row of a fused qkv: the NH query heads, then NKV key heads, then NKV value
// heads.
fn qkv_stride4() -> u32 {
    return p.c4 + 2u * p.nkv * p.hs4;
}

// vec4s in a row of the paged KV pool (one layer's keys, or values): NKV heads.
fn pool_stride4() -> u32 {
    return p.nkv * p.hs4;
}

// Query heads per key/value head (grouped-query attention; 1 for multi-head).
fn group_size() -> u32 {
    return p.nh / p.nkv;
}

// vec4 offset, in a row of keys or values, of the head query head h reads: its group's
// (NH / NKV query heads share one key/value head).
fn kv_head4(h: u32) -> u32 {
    return (h / group_size()) * p.hs4;
}

// The first key a query at position qpos sees: 0, or the oldest of its sliding window.
fn first_key(qpos: u32) -> u32 {
    if (p.window == 0u || qpos < p.window) {
        return 0u;
    }
    return qpos + 1u - p.window;
}

// The last key the query at position qpos sees: its own (causal), or in an encoder's
// bidirectional attention the text's last.
fn last_key(qpos: u32) -> u32 {
    if (p.bidirectional != 0u) {
        return p.pos + p.t - 1u;
    }
    return qpos;
}

// Whether the query at position qpos sees the key at position j: causal (or not), in
// the window.
fn sees(qpos: u32, j: u32) -> bool {
    return j <= last_key(qpos) && j >= first_key(qpos);
}

// Row of key j in k and v: row `table` + j when p.page == 0 (a forward's qkv, where
// `table` is the row of the forward's first token among several forwards sharing a
// traversal, else 0; or a contiguous cache), or, in the paged KV pool, row j % page
// of the sequence's page j / page, whose page table starts at `table` in `tables`
// (every attention kernel declares `tables`).
fn kv_row(table: u32, j: u32) -> u32 {
    if (p.page == 0u) {
        return table + j;
    }
    return tables[table + j / p.page] * p.page + j % p.page;
}

// The score the softmax takes from q · k with q scaled by p.scale: as it is, or
// soft-capped, cap · tanh(s / cap) (the 1 / cap is in p.scale; tanh's argument clamped,
// as GELU's, so that no implementation overflows to NaN; tanh(±15) is ±1 in f32).
fn capped(s: f32) -> f32 {
    if (p.softcap == 0.0) {
        return s;
    }
    return p.softcap * tanh(clamp(s, -15.0, 15.0));
}

// Running max m of the scores, normaliser l = Σ e^(s - m), and ws = Σ e^(s - m) · s
// (for the entropy of the attention row).
struct Online {
    m: f32,
    l: f32,
    ws: f32,
}

fn online_start() -> Online {
    return Online(-3.0e38, 0.0, 0.0);
}

// Fold score `s` in. Returns (the factor the output accumulated so far must be scaled
// by, 1 unless the max moved; the weight of this key's value).
fn online_add(o: ptr<function, Online>, s: f32) -> vec2<f32> {
    var corr = 1.0;
    if (s > (*o).m) {
        corr = exp((*o).m - s);
        (*o).l *= corr;
        (*o).ws *= corr;
        (*o).m = s;
    }
    let e = exp(s - (*o).m);
    (*o).l += e;
    (*o).ws += e * s;
    return vec2<f32>(corr, e);
}

// Entropy (nats) of the attention row: log l + m - ws / l.
fn online_entropy(o: Online) -> f32 {
    return o.m + log(o.l) - o.ws / o.l;
}
