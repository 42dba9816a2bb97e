// The k largest values of each row of x [R, N] and the row's log-sum-exp (the logit
// lens: rows of logits over the vocabulary ids row_start .. row_start + N, one chunk
// of wte; a decode step's greedy rows: k = 1). The row is taken in windows of `span`
// columns (workgroup y; span = N for one), each window's result at
// o = out0 + (y R + r) (2k + 1):
//   out[o + 2i] = bitcast id of the i-th largest (ties: the lower id first),
//   out[o + 2i + 1] = its value,   out[o + 2k] = log Σ_j exp(x[r, j]) over the window
//   (0 when p.lse is 0: an argmax needs no normaliser).
// One workgroup per row and window: each lane keeps the k best of its strided share,
// sorted; the workgroup reduces the max and the sum of exponentials (prelude
// `workgroup_reduce`); then k rounds take the best head among the lanes' lists (a tree
// over lanes). The host merges windows (and wte chunks) in id order.
// A window with fewer than k values fills the rest with id 0xffffffff.

struct TopKParams {
    rows: u32,
    n: u32,
    k: u32, // at most MAXK
    row_start: u32,
    out0: u32,
    span: u32, // columns per window (workgroup y)
    lse: u32,  // 0: skip the log-sum-exp (an argmax), written as 0
    _pad1: u32,
}

override WG: u32 = 64u; // at most 64 (the `best_*` arrays)
const MAXK: u32 = 20u;
const NONE: u32 = 0xffffffffu;
const LOW: f32 = -3.4e38;

@group(0) @binding(0) var<uniform> p: TopKParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

var<workgroup> best_v: array<f32, 64>;
var<workgroup> best_i: array<u32, 64>;
var<workgroup> best_l: array<u32, 64>;

// Whether (v, i) ranks before (w, j): larger value, then lower id.
fn before(v: f32, i: u32, w: f32, j: u32) -> bool {
    return v > w || (v == w && i < j);
}

@compute @workgroup_size(WG)
fn top_k_rows(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let r = wg.x; // a workgroup per row and window: r < p.rows
    let base = r * p.n;
    let c0 = wg.y * p.span;
    let c1 = min(c0 + p.span, p.n);
    let k = p.k;
    var lv: array<f32, MAXK>;
    var li: array<u32, MAXK>;
    for (var i = 0u; i < MAXK; i++) {
        lv[i] = LOW;
        li[i] = NONE;
    }
    var m = LOW;
    for (var j = c0 + lid; j < c1; j += WG) {
        let v = x[base + j];
        let id = p.row_start + j;
        m = max(m, v);
        if (before(v, id, lv[k - 1u], li[k - 1u])) {
            var at = k - 1u;
            while (at > 0u && before(v, id, lv[at - 1u], li[at - 1u])) {
                lv[at] = lv[at - 1u];
                li[at] = li[at - 1u];
                at--;
            }
            lv[at] = v;
            li[at] = id;
        }
    }
    var lse = 0.0;
    if (p.lse != 0u) {
        let top = workgroup_max(lid, m);
        var s = 0.0;
        for (var j = c0 + lid; j < c1; j += WG) {
            s += exp(x[base + j] - top);
        }
        lse = top + log(workgroup_sum(lid, s));
    }
    let o = p.out0 + (wg.y * p.rows + r) * (2u * k + 1u);
    var head = 0u;
    for (var round = 0u; round < k; round++) {
        best_v[lid] = select(LOW, lv[min(head, MAXK - 1u)], head < k);
        best_i[lid] = select(NONE, li[min(head, MAXK - 1u)], head < k);
        best_l[lid] = lid;
        workgroupBarrier();
        for (var st = WG / 2u; st > 0u; st = st / 2u) {
            if (lid < st && before(best_v[lid + st], best_i[lid + st], best_v[lid], best_i[lid])) {
                best_v[lid] = best_v[lid + st];
                best_i[lid] = best_i[lid + st];
                best_l[lid] = best_l[lid + st];
            }
            workgroupBarrier();
        }
        let winner = best_l[0];
        if (lid == 0u) {
            out[o + 2u * round] = bitcast<f32>(best_i[0]);
            out[o + 2u * round + 1u] = best_v[0];
        }
        workgroupBarrier();
        if (lid == winner) {
            head++;
        }
    }
    if (lid == 0u) {
        out[o + 2u * k] = lse;
    }
}
