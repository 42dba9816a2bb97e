// The attention weights of a forward, for `capture_attention`: for query t and head h,
//   w[h, t, j] = softmax_j(q_t · k_j / sqrt(HS)) for the keys j the query attends to
// (j ≤ t, every j in an encoder's; with p.block > 0 only the key blocks listed for
// t's query block, as in sparse_attention.wgsl), and 0 for every other key — the matrix the forward's
// attention kernels multiply V by, written out ([NH, T, T] at float p.w0 of `w`).
// One invocation per (query, head): the scores go to the row first, then their
// exponentials with the row's max subtracted, then the normalised weights; in f32.
// Prelude `attention`: AttentionParams, kv_row (keys in the forward's qkv).

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: AttentionParams;
@group(0) @binding(1) var<storage, read> qkv: array<vec4<f32>>;     // [T, 3C]
@group(0) @binding(2) var<storage, read_write> w: array<f32>;       // [.., NH, T, T]
@group(0) @binding(3) var<storage, read> row_offsets: array<u32>;   // [query blocks + 1] (sparse)
@group(0) @binding(4) var<storage, read> cols: array<u32>;          // [listed blocks] (sparse)
@group(0) @binding(5) var<storage, read> tables: array<u32>;        // unused (p.page == 0)

// Whether query t attends to key j.
fn attends(t: u32, j: u32) -> bool {
    if (!sees(t, j)) {
        return false;
    }
    if (p.block == 0u) {
        return true;
    }
    let qb = t / p.block;
    let kb = j / p.block;
    for (var r = row_offsets[qb]; r < row_offsets[qb + 1u]; r++) {
        if (cols[r] == kb) {
            return true;
        }
    }
    return false;
}

@compute @workgroup_size(WG)
fn attention_weights(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let t = gid.x;
    let h = wid.y;
    if (t >= p.t) {
        return;
    }
    let hs4 = p.hs4;
    let qo = (p.t0 + t) * qkv_stride4() + h * hs4;
    let row = p.w0 + (h * p.t + t) * p.t;
    var m = -3.0e38;
    for (var j = 0u; j < p.t; j++) {
        var s = 0.0;
        if (attends(t, j)) {
            let ko = kv_row(p.table0, j) * p.kv_stride4 + p.k_off4 + kv_head4(h);
            var s4 = vec4<f32>(0.0);
            for (var d = 0u; d < hs4; d++) {
                s4 += (qkv[qo + d] * p.scale) * qkv[ko + d];
            }
            s = capped(s4.x + s4.y + s4.z + s4.w);
            m = max(m, s);
        }
        w[row + j] = s;
    }
    var l = 0.0;
    let last = last_key(t); // t, or an encoder's last key
    for (var j = 0u; j <= last; j++) {
        var e = 0.0;
        if (attends(t, j)) {
            e = exp(w[row + j] - m);
        }
        w[row + j] = e;
        l += e;
    }
    for (var j = 0u; j <= last; j++) {
        w[row + j] = w[row + j] / l;
    }
}
