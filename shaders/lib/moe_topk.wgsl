// The MoE gate's choice for one token from its router logits (`moe_gate`, and
// `moe_norm_gate`, which computes the logits itself):
//   probs[t, :] = softmax(logits[t, :E])            (max subtracted)
//   sel_e[t, :K] = the K most likely experts, most likely first (ties: lower index)
//   sel_w[t, :K] = their probabilities, renormalised over the K chosen when p.renorm
//                  (Mixtral, GPT-2 MoE; Qwen2-MoE's norm_topk_prob)
// The kernel declares `p` (`MoeGateParams`) and the bindings `probs`, `sel_e`, `sel_w`.

struct MoeGateParams {
    t: u32,  // tokens
    e: u32,  // experts (E ≤ 64)
    e4: u32, // row stride of the logits and the router (E rounded up to 4)
    k: u32,  // experts per token
    renorm: u32, // 1: the chosen weights sum to 1
    c4: u32,     // moe_norm_gate: vec4s of a row of x
    norm: u32,   // moe_norm_gate: the norm's flags (prelude norm_flags)
    eps: f32,    // moe_norm_gate: the norm's epsilon
    with_shared: u32, // moe_norm_gate: 1: also the shared expert's gate logit (Qwen2-MoE)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const MAX_E: u32 = 64u;

// Token `t`'s probabilities and choice from its logits `pr` (overwritten).
fn choose_experts(t: u32, pr: ptr<function, array<f32, MAX_E>>) {
    var m = -3.0e38;
    for (var i = 0u; i < p.e; i++) {
        m = max(m, (*pr)[i]);
    }
    var sum = 0.0;
    for (var i = 0u; i < p.e; i++) {
        (*pr)[i] = exp((*pr)[i] - m);
        sum += (*pr)[i];
    }
    for (var i = 0u; i < p.e; i++) {
        (*pr)[i] /= sum;
        probs[t * p.e + i] = (*pr)[i];
    }
    // top-k by repeated selection; a chosen expert is marked with -1
    var chosen_sum = 0.0;
    for (var j = 0u; j < p.k; j++) {
        var best = 0u;
        var best_p = -1.0;
        for (var i = 0u; i < p.e; i++) {
            if ((*pr)[i] > best_p) {
                best = i;
                best_p = (*pr)[i];
            }
        }
        sel_e[t * p.k + j] = best;
        sel_w[t * p.k + j] = best_p;
        chosen_sum += best_p;
        (*pr)[best] = -1.0;
    }
    if (p.renorm != 0u) {
        for (var j = 0u; j < p.k; j++) {
            sel_w[t * p.k + j] /= chosen_sum;
        }
    }
}
