// Mixture-of-Experts routing, one invocation per expert e. Builds the grouped row list
// the expert matmuls run over: the token→expert assignments of expert e occupy rows
// start_e .. start_e + count_e, and each expert's segment is padded to a multiple of 16
// rows (so every row tile of the expert matmul has a single expert). Padding rows
// and the rows after the last segment are marked invalid (token 0xFFFFFFFF).
//   row_token[r]  = token of row r       row_expert[r] = expert of row r
//   slot[t, i]    = row of token t's i-th chosen expert
// Invocation 0 also writes the statistics: stats[e] = f_e (share of assignments),
// stats[E + e] = P_e (mean router probability), stats[2E] = E · Σ f_e · P_e.

struct MoeRouteParams {
    t: u32,    // tokens
    e: u32,    // experts
    k: u32,    // experts per token
    rows: u32, // rows of the grouped list (T·K + E·15)
}

override WG: u32 = 64u;
const PAD: u32 = 16u;
const INVALID: u32 = 0xFFFFFFFFu;

@group(0) @binding(0) var<uniform> p: MoeRouteParams;
@group(0) @binding(1) var<storage, read> sel_e: array<u32>;            // [T, K]
@group(0) @binding(2) var<storage, read> probs: array<f32>;            // [T, E]
@group(0) @binding(3) var<storage, read_write> row_token: array<u32>;  // [rows]
@group(0) @binding(4) var<storage, read_write> row_expert: array<u32>; // [rows]
@group(0) @binding(5) var<storage, read_write> slot: array<u32>;       // [T, K]
@group(0) @binding(6) var<storage, read_write> stats: array<f32>;      // [2E + 1]

fn count_of(e: u32) -> u32 {
    var n = 0u;
    for (var i = 0u; i < p.t * p.k; i++) {
        if (sel_e[i] == e) {
            n++;
        }
    }
    return n;
}

@compute @workgroup_size(WG)
fn moe_route(@builtin(global_invocation_id) gid: vec3<u32>) {
    let e = gid.x;
    if (e >= p.e) {
        return;
    }
    var start = 0u;
    for (var x = 0u; x < e; x++) {
        start += (count_of(x) + PAD - 1u) / PAD * PAD;
    }
    var n = 0u;
    for (var i = 0u; i < p.t * p.k; i++) {
        if (sel_e[i] == e) {
            row_token[start + n] = i / p.k;
            row_expert[start + n] = e;
            slot[i] = start + n;
            n++;
        }
    }
    let end = start + (n + PAD - 1u) / PAD * PAD;
    for (var r = start + n; r < end; r++) {
        row_token[r] = INVALID;
        row_expert[r] = e;
    }
    if (e == p.e - 1u) {
        for (var r = end; r < p.rows; r++) {
            row_token[r] = INVALID;
            row_expert[r] = 0u;
        }
    }
    if (e == 0u) {
        var loss = 0.0;
        let assignments = f32(p.t * p.k);
        for (var x = 0u; x < p.e; x++) {
            let f = f32(count_of(x)) / assignments;
            var pm = 0.0;
            for (var t = 0u; t < p.t; t++) {
                pm += probs[t * p.e + x];
            }
            pm /= f32(p.t);
            stats[x] = f;
            stats[p.e + x] = pm;
            loss += f * pm;
        }
        stats[2u * p.e] = f32(p.e) * loss;
    }
}
