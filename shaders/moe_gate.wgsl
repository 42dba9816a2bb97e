// Mixture-of-Experts gating, one invocation per token:
//   probs[t, :] = softmax(logits[t, :E])            (max subtracted)
//   sel_e[t, :K] = the K most likely experts, most likely first (ties: lower index)
//   sel_w[t, :K] = their probabilities, renormalised over the K chosen when p.renorm
//                  (Mixtral, GPT-2 MoE; Qwen2-MoE's norm_topk_prob)

struct MoeGateParams {
    t: u32,  // tokens
    e: u32,  // experts (E ≤ 64)
    e4: u32, // row stride of logits (E rounded up to 4)
    k: u32,  // experts per token
    renorm: u32, // 1: the chosen weights sum to 1
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

override WG: u32 = 64u;
const MAX_E: u32 = 64u;

@group(0) @binding(0) var<uniform> p: MoeGateParams;
@group(0) @binding(1) var<storage, read> logits: array<f32>;         // [T, E4]
@group(0) @binding(2) var<storage, read_write> probs: array<f32>;    // [T, E]
@group(0) @binding(3) var<storage, read_write> sel_e: array<u32>;    // [T, K]
@group(0) @binding(4) var<storage, read_write> sel_w: array<f32>;    // [T, K]

@compute @workgroup_size(WG)
fn moe_gate(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x;
    if (t >= p.t) {
        return;
    }
    var pr: array<f32, MAX_E>;
    var m = -3.0e38;
    for (var i = 0u; i < p.e; i++) {
        m = max(m, logits[t * p.e4 + i]);
    }
    var sum = 0.0;
    for (var i = 0u; i < p.e; i++) {
        pr[i] = exp(logits[t * p.e4 + i] - m);
        sum += pr[i];
    }
    for (var i = 0u; i < p.e; i++) {
        pr[i] /= sum;
        probs[t * p.e + i] = pr[i];
    }
    // top-k by repeated selection; a chosen expert is marked with -1
    var chosen_sum = 0.0;
    for (var j = 0u; j < p.k; j++) {
        var best = 0u;
        var best_p = -1.0;
        for (var i = 0u; i < p.e; i++) {
            if (pr[i] > best_p) {
                best = i;
                best_p = pr[i];
            }
        }
        sel_e[t * p.k + j] = best;
        sel_w[t * p.k + j] = best_p;
        chosen_sum += best_p;
        pr[best] = -1.0;
    }
    if (p.renorm != 0u) {
        for (var j = 0u; j < p.k; j++) {
            sel_w[t * p.k + j] /= chosen_sum;
        }
    }
}
