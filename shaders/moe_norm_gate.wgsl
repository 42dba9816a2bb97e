// Mixture-of-Experts gating for hardware GPUs, one workgroup per token: the norm
// before the MoE MLP, the router's logits over the normalised row, and the gate's
// softmax and top-k (prelude moe_topk's `choose_experts`) — the software path's
// layer_norm, router matmul and moe_gate in one dispatch; with p.with_shared, also
// the logit of a shared expert's sigmoid gate (Qwen2-MoE: a matmul of its own on that
// path). The row's statistics are taken as `layer_norm_workgroup` takes them
// (prelude norm_prologue: the same shares and tree at WG = 256) and normalised as it
// does (`norm4`), so `ln`, which the experts' gathered matmuls and a shared expert
// read, holds the same numbers bit for bit; the logits are summed in another order
// than the router's matmul.
// Lanes: lane (q, j) = lid (q = lid % Q, j = lid / Q) sums vec4 q of the row's logits
// over the row's vec4s c ≡ j (mod WG / Q), Q the power of two ≥ E4 / 4 (+ 1 with the
// shared gate, whose logit is vec4 E4 / 4; at most 32: E ≤ 64); the slices meet in
// workgroup memory (a tree over j).
// Preludes: moe_topk, workgroup_reduce, norm_flags, norm_apply, norm_prologue.

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: MoeGateParams;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;        // [T, C]
@group(0) @binding(2) var<storage, read> norm_w: array<vec4<f32>>;   // [C]
@group(0) @binding(3) var<storage, read> norm_b: array<vec4<f32>>;   // [C] (or a dummy)
@group(0) @binding(4) var<storage, read> router: array<vec4<f32>>;   // [C, E4]
@group(0) @binding(5) var<storage, read_write> ln: array<vec4<f32>>; // [T, C]
@group(0) @binding(6) var<storage, read_write> probs: array<f32>;    // [T, E]
@group(0) @binding(7) var<storage, read_write> sel_e: array<u32>;    // [T, K]
@group(0) @binding(8) var<storage, read_write> sel_w: array<f32>;    // [T, K]
// p.with_shared: the shared expert's gate [C, 4] (its logit in column 0) and where its
// logits go, [T, 4] (column 0); else dummies
@group(0) @binding(9) var<storage, read> shared_w: array<vec4<f32>>;
@group(0) @binding(10) var<storage, read_write> shared_gate: array<f32>;

var<workgroup> dots: array<vec4<f32>, 256>;

fn norm_src(i: u32) -> vec4<f32> {
    return x[i];
}

@compute @workgroup_size(WG)
fn moe_norm_gate(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let row = wg.x + wg.y * nwg.x;
    if (row >= p.t) {
        return;
    }
    let base = row * p.c4;
    let st = norm_stats(base, p.c4, lid);
    let q4 = p.e4 / 4u;
    let quads = q4 + p.with_shared;
    var lanes = 1u;
    while (lanes < quads) {
        lanes *= 2u;
    }
    let q = lid % lanes;
    let j = lid / lanes;
    let slices = WG / lanes;
    var acc = vec4<f32>(0.0);
    for (var c = j; c < p.c4; c += slices) {
        let v = norm4(x[base + c], c, st);
        if (q == 0u) {
            ln[base + c] = v;
        }
        if (q < q4) {
            let r = 4u * c * q4 + q; // router row 4c, expert vec4 q
            acc += v.x * router[r] + v.y * router[r + q4] + v.z * router[r + 2u * q4]
                + v.w * router[r + 3u * q4];
        } else if (q < quads) {
            let r = 4u * c; // the shared gate's row 4c
            acc += v.x * shared_w[r] + v.y * shared_w[r + 1u] + v.z * shared_w[r + 2u]
                + v.w * shared_w[r + 3u];
        }
    }
    dots[lid] = acc;
    workgroupBarrier();
    for (var s = slices / 2u; s > 0u; s = s / 2u) {
        if (j < s) {
            dots[lid] += dots[lid + s * lanes];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        var pr: array<f32, MAX_E>;
        for (var i = 0u; i < p.e; i++) {
            pr[i] = dots[i / 4u][i % 4u];
        }
        choose_experts(row, &pr);
        if (p.with_shared != 0u) {
            shared_gate[row * 4u] = dots[q4].x;
        }
    }
}
