// Mixture-of-Experts routing, one invocation per expert e, all experts in one
// workgroup (E ≤ 64 = WG). Builds the grouped row list the expert matmuls run over: the
// token→expert assignments of expert e occupy rows start_e .. start_e + count_e, and
// each expert's segment is padded to a multiple of 16 rows (so every row tile of the
// expert matmul has a single expert). Padding rows and the rows after the last
// segment are marked invalid (token 0xFFFFFFFF).
//   row_token[r]  = token of row r       row_expert[r] = expert of row r
//   slot[t, i]    = row of token t's i-th chosen expert
// Statistics: stats[e] = f_e (share of assignments), stats[E + e] = P_e (mean router
// probability), each by its expert's invocation; stats[2E] = E · Σ f_e · P_e by
// invocation 0.
// Each invocation walks the assignments twice and the tokens once, sharing its count
// through workgroup memory: linear in T, as llvmpipe needs (it stops a shader's loops
// after 65,535 iterations in all; counting every earlier expert's assignments again,
// as this kernel once did, got there with 64 experts from ~520 tokens).

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

var<workgroup> counts: array<u32, 64>;
var<workgroup> products: array<f32, 64>;

@compute @workgroup_size(WG)
fn moe_route(@builtin(local_invocation_index) e: u32) {
    let live = e < p.e;
    var n = 0u;
    if (live) {
        for (var i = 0u; i < p.t * p.k; i++) {
            if (sel_e[i] == e) {
                n++;
            }
        }
        counts[e] = n;
    }
    workgroupBarrier();
    var start = 0u;
    if (live) {
        for (var x = 0u; x < e; x++) {
            start += (counts[x] + PAD - 1u) / PAD * PAD;
        }
        var at = 0u;
        for (var i = 0u; i < p.t * p.k; i++) {
            if (sel_e[i] == e) {
                row_token[start + at] = i / p.k;
                row_expert[start + at] = e;
                slot[i] = start + at;
                at++;
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
        let f = f32(n) / f32(p.t * p.k);
        var pm = 0.0;
        for (var t = 0u; t < p.t; t++) {
            pm += probs[t * p.e + e];
        }
        pm /= f32(p.t);
        stats[e] = f;
        stats[p.e + e] = pm;
        products[e] = f * pm;
    }
    workgroupBarrier();
    if (e == 0u) {
        var loss = 0.0;
        for (var x = 0u; x < p.e; x++) {
            loss += products[x];
        }
        stats[2u * p.e] = f32(p.e) * loss;
    }
}
