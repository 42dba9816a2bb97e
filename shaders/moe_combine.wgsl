// Mixture-of-Experts combine, fused with the residual add:
//   x[t, :] += Σ_i sel_w[t, i] · y[slot[t, i], :]

struct MoeCombineParams {
    t: u32,
    c4: u32,
    k: u32,
    _pad: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: MoeCombineParams;
@group(0) @binding(1) var<storage, read> y: array<vec4<f32>>;         // [rows, C]
@group(0) @binding(2) var<storage, read> sel_w: array<f32>;           // [T, K]
@group(0) @binding(3) var<storage, read> slot: array<u32>;            // [T, K]
@group(0) @binding(4) var<storage, read_write> x: array<vec4<f32>>;   // [T, C]

@compute @workgroup_size(WG)
fn moe_combine(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.t * p.c4) {
        return;
    }
    let t = i / p.c4;
    let c = i % p.c4;
    var acc = x[i];
    for (var j = 0u; j < p.k; j++) {
        acc += sel_w[t * p.k + j] * y[slot[t * p.k + j] * p.c4 + c];
    }
    x[i] = acc;
}
