// Where each row's target token stands in this chunk of logits (ids row_start ..
// row_start + n), given its logit v = tv[tv0 + r] (`token_target`): at o = out0 + 2 r,
//   out[o]     = how many ids of the chunk rank before it: a larger logit, or an equal
//                one with a lower id (the order of `top_k_rows`),
//   out[o + 1] = the chunk's log Σ_j exp(x[r, j]).
// The host sums the counts over the chunks (the rank: 0 = the model's first choice) and
// takes logprob = v − log Σ over the chunks' sums. One workgroup per row; the counts
// are summed as floats (exact below 2^24 ids).

struct RankParams {
    rows: u32,
    n: u32,
    row_start: u32,
    tv0: u32,
    out0: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

override WG: u32 = 64u; // a power of two, at most 256 (prelude `workgroup_reduce`)
const LOW: f32 = -3.4e38;

@group(0) @binding(0) var<uniform> p: RankParams;
@group(0) @binding(1) var<storage, read> targets: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> tv: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn token_rank(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let r = wg.x; // a workgroup per row: r < p.rows
    let base = r * p.n;
    let t = targets[r];
    let v = tv[p.tv0 + r];
    var m = LOW;
    var ahead = 0.0;
    for (var j = lid; j < p.n; j += WG) {
        let xj = x[base + j];
        m = max(m, xj);
        if (xj > v || (xj == v && p.row_start + j < t)) {
            ahead += 1.0;
        }
    }
    let top = workgroup_max(lid, m);
    var s = 0.0;
    for (var j = lid; j < p.n; j += WG) {
        s += exp(x[base + j] - top);
    }
    let lse = top + log(workgroup_sum(lid, s));
    let count = workgroup_sum(lid, ahead);
    if (lid == 0u) {
        out[p.out0 + 2u * r] = count;
        out[p.out0 + 2u * r + 1u] = lse;
    }
}
