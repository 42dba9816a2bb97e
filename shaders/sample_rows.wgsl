// The next token of each row of logits, drawn on the device (one workgroup a row), as
// `reference::sample` and the host sampler (`model::sampling`) draw it:
//   1. top-k (0 < k < V): the ids at or above the k-th largest logit (ties kept);
//   2. weights w = exp((logit - max) · inv_t);
//   3. top-p (< 1): of those, the ids at or above the first logit in rank order where
//      the cumulative weight reaches top_p of their total (ties kept);
//   4. min-p (> 0): of those, the ids whose weight is at least min_p;
//   5. r = u · (the kept weights' sum), walked over the kept ids in id order.
// "At or above" is f32's total order, here as integer keys (`key`): the k-th largest
// key and the top-p edge are found by bisection over the 32 key bits, each step one
// pass over the row counting (or summing the weights of) the keys at or above a
// candidate, reduced across the workgroup (prelude `workgroup_reduce`). The draw: lane
// i sums the kept weights of its contiguous share of ids, a scan gives each share its
// offset, and the lane whose share holds r walks it. Sums are f32 (the host's are f64:
// a draw can differ where r or the top-p edge falls within rounding of a boundary).
// A row's spec with inv_t = 0 is not drawn here (its `picked` is left as it is); one
// with inv_t < 0 is a greedy row: its largest logit's id (`largest`).
// The logits come as the LM head writes them: up to 4 column chunks of the vocabulary
// (`[rows, n_c]` each, `logits0` .. `logits3`; a vocabulary larger than one binding),
// read through `logit`.

struct SampleParams {
    rows: u32,
    v: u32, // logits per row, all chunks
    _pad0: u32,
    _pad1: u32,
    n: vec4<u32>, // columns of each chunk (0 past the last)
}

struct Spec {
    inv_t: f32, // 1 / temperature; 0: not drawn here; < 0: the largest logit
    top_k: u32, // 0: no limit
    top_p: f32, // 1: no limit
    u: f32,     // the row's uniform number in [0, 1)
    min_p: f32, // 0: no limit
}

// A power of two, at most 256 (the prelude's `red`, and `scan`).
override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: SampleParams;
@group(0) @binding(1) var<storage, read> specs: array<Spec>;       // [rows]
@group(0) @binding(2) var<storage, read_write> picked: array<u32>; // [rows]
@group(0) @binding(3) var<storage, read> logits0: array<f32>;      // [rows, n.x]
@group(0) @binding(4) var<storage, read> logits1: array<f32>;      // [rows, n.y] (or a stand-in)
@group(0) @binding(5) var<storage, read> logits2: array<f32>;      // [rows, n.z] (or a stand-in)
@group(0) @binding(6) var<storage, read> logits3: array<f32>;      // [rows, n.w] (or a stand-in)

var<workgroup> spec_w: Spec;
var<workgroup> scan: array<f32, 256>;

// f32's total order as unsigned integers (Rust's `total_cmp`).
fn key(x: f32) -> u32 {
    let b = bitcast<u32>(x);
    if ((b & 0x80000000u) != 0u) {
        return ~b;
    }
    return b | 0x80000000u;
}

// Logit `i` of row `row`, from the chunk that holds it.
fn logit(row: u32, i: u32) -> f32 {
    var j = i;
    if (j < p.n.x) {
        return logits0[row * p.n.x + j];
    }
    j -= p.n.x;
    if (j < p.n.y) {
        return logits1[row * p.n.y + j];
    }
    j -= p.n.y;
    if (j < p.n.z) {
        return logits2[row * p.n.z + j];
    }
    j -= p.n.z;
    return logits3[row * p.n.w + j];
}

// A greedy row's pick, as `top_k_rows` (k = 1) and the host merge of its windows take
// it: the largest logit above LOW (NaN and -inf never win), the lowest id of equal
// ones; none: id 0. Lanes walk their ids in increasing order, so each keeps its first
// largest; the workgroup takes the largest value, then the lowest id holding it (ids
// as f32: exact below 2^24).
const LOW: f32 = -3.4e38;

fn largest(row: u32, lid: u32) {
    var best = LOW;
    var at = 0u;
    for (var i = lid; i < p.v; i += WG) {
        let x = logit(row, i);
        if (x > best) {
            best = x;
            at = i;
        }
    }
    let m = workgroup_max(lid, best);
    var mine = -3.0e38;
    if (best > LOW && best == m) {
        mine = -f32(at);
    }
    let first = -workgroup_max(lid, mine);
    if (lid == 0u) {
        picked[row] = select(0u, u32(first), m > LOW);
    }
}

// How many ids of row `row` have a key at or above `t`.
fn count_from(row: u32, lid: u32, t: u32) -> f32 {
    var c = 0.0;
    for (var i = lid; i < p.v; i += WG) {
        if (key(logit(row, i)) >= t) {
            c += 1.0;
        }
    }
    return workgroup_sum(lid, c);
}

// The weights of the ids with a key at or above `t`.
fn weight_from(row: u32, lid: u32, t: u32, m: f32, inv_t: f32) -> f32 {
    var s = 0.0;
    for (var i = lid; i < p.v; i += WG) {
        let x = logit(row, i);
        if (key(x) >= t) {
            s += exp((x - m) * inv_t);
        }
    }
    return workgroup_sum(lid, s);
}

// The weight of a logit `x` the draw walks: 0 unless kept by top-k and top-p (its key
// at or above `tp`) and by min-p.
fn kept_weight(x: f32, tp: u32, m: f32, s: Spec) -> f32 {
    var w = 0.0;
    if (key(x) >= tp) {
        w = exp((x - m) * s.inv_t);
        if (s.min_p > 0.0 && w < s.min_p) {
            w = 0.0;
        }
    }
    return w;
}

@compute @workgroup_size(WG)
fn sample_rows(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let row = wg.x;
    if (lid == 0u) {
        spec_w = specs[min(row, p.rows - 1u)];
    }
    let s = workgroupUniformLoad(&spec_w);
    if (row >= p.rows || s.inv_t == 0.0) {
        return;
    }
    if (s.inv_t < 0.0) {
        largest(row, lid);
        return;
    }
    var mx = -3.0e38;
    for (var i = lid; i < p.v; i += WG) {
        mx = max(mx, logit(row, i));
    }
    let m = workgroup_max(lid, mx);
    // 1. the largest key with at least k ids at or above it
    var tk = 0u;
    if (s.top_k > 0u && s.top_k < p.v) {
        for (var bit = 0u; bit < 32u; bit++) {
            let cand = tk | (0x80000000u >> bit);
            if (count_from(row, lid, cand) >= f32(s.top_k)) {
                tk = cand;
            }
        }
    }
    // 3. the largest key (of those kept) whose ids at or above it weigh top_p of all
    var tp = tk;
    if (s.top_p < 1.0) {
        let goal = s.top_p * weight_from(row, lid, tk, m, s.inv_t);
        var t = 0u;
        for (var bit = 0u; bit < 32u; bit++) {
            let cand = t | (0x80000000u >> bit);
            let w = weight_from(row, lid, max(cand, tk), m, s.inv_t);
            if (w > 0.0 && w >= goal) {
                t = cand;
            }
        }
        tp = max(t, tk);
    }
    // 4. a kept id's weight, 0 below min-p
    // 5. this lane's share of ids, its kept weight, the shares' offsets (a scan)
    let span = (p.v + WG - 1u) / WG;
    let lo = min(lid * span, p.v);
    let hi = min(lo + span, p.v);
    var own = 0.0;
    for (var i = lo; i < hi; i++) {
        own += kept_weight(logit(row, i), tp, m, s);
    }
    scan[lid] = own;
    workgroupBarrier();
    for (var d = 1u; d < WG; d *= 2u) {
        var add = 0.0;
        if (lid >= d) {
            add = scan[lid - d];
        }
        workgroupBarrier();
        scan[lid] += add;
        workgroupBarrier();
    }
    let incl = scan[lid];
    var excl = 0.0;
    if (lid > 0u) {
        excl = scan[lid - 1u];
    }
    let total = scan[WG - 1u];
    let r = s.u * total;
    // past the total (rounding): the last share with a weight takes its last id
    var with_weight = -1.0;
    if (own > 0.0) {
        with_weight = f32(lid);
    }
    let last_share = workgroup_max(lid, with_weight);
    if (last_share < 0.0) {
        // no weight anywhere (every logit -inf or NaN): id 0, as the host's argmax
        if (lid == 0u) {
            picked[row] = 0u;
        }
        return;
    }
    let holds = own > 0.0 && excl <= r && r < incl;
    let past = !(r < total) && f32(lid) == last_share;
    if (holds || past) {
        var left = r - excl;
        var last = lo;
        for (var i = lo; i < hi; i++) {
            let w = kept_weight(logit(row, i), tp, m, s);
            if (w > 0.0) {
                if (left < w) {
                    picked[row] = i;
                    return;
                }
                left -= w;
                last = i;
            }
        }
        picked[row] = last;
    }
}
