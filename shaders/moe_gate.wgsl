// Mixture-of-Experts gating from the router's logits, one invocation per token: the
// softmax over the experts and the top-k (prelude moe_topk's `choose_experts`). The
// hardware kernels take the norm, the router and this in one dispatch
// (`moe_norm_gate`).

override WG: u32 = 64u;

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
    for (var i = 0u; i < p.e; i++) {
        pr[i] = logits[t * p.e4 + i];
    }
    choose_experts(t, &pr);
}
