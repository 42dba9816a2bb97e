// Subgroup variant of matvec_f16 (half-float weights, decode steps):
//   out[R, N] (=|+=) act(x[R, K] · w[K, N] + bias[N]), same bindings, params and epilogue.
// Each invocation computes 8 outputs of up to MR rows (workgroup y) from one vec4<u32>
// load per row of `w` (8 halves), and lane s of a subgroup loads x[r, k + s] for 8 steps
// at a time, which every lane then takes with subgroupBroadcast. On lavapipe every
// storage load is a scalar loop over the lanes, so this halves the loads per weight
// against matvec_f16, drops the per-lane reloads of x, and shares each weight load
// among the rows of the batch. Needs N % 8 == 0 and subgroups of at least 8 lanes; the
// host runs it with one subgroup per workgroup (WG = the adapter's subgroup size),
// which keeps both cores of a CPU adapter busy at N = 768.
// Preludes: matvec_params, batch_rows (MR), gelu, epilogue.

// w is stored in column panels: N / P panels of P columns, each [K, P] row-major
// (P = 64 when N % 64 == 0, else P = N, which is plain row-major [K, N]). A workgroup
// then walks K through contiguous memory, which the CPU's prefetchers follow; p4 = P / 4.

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: MatvecParams;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;       // [R, K]
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;       // [K, N] as f16 pairs
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;    // [N] (or a dummy)
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>; // [R, N]

// Columns 0..3 and 4..7 of 8 packed halves.
fn low(v: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(v.x), unpack2x16float(v.y));
}

fn high(v: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(v.z), unpack2x16float(v.w));
}

@compute @workgroup_size(WG)
fn matvec_f16_subgroup(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let col = gid.x; // in units of 8 outputs
    let n8 = p.n4 / 2u;
    let k4 = p.k4;
    let r0 = wg.y * MR;
    let nr = min(MR, p.rows - r0);
    // Every lane runs the loop (broadcasts need the whole subgroup); out-of-range
    // columns read a clamped address and are not stored, steps past K are zero in x.
    let colc = min(col, n8 - 1u);
    let p8 = p.p4 / 2u;
    let base = (colc / p8) * (4u * k4 * p8) + colc % p8; // this column's panel
    var lo: array<vec4<f32>, MR>; // outputs 0..3 of each row
    var hi: array<vec4<f32>, MR>; // outputs 4..7
    var xl: array<vec4<f32>, MR>; // this lane's step of x, per row
    for (var i = 0u; i < nr; i++) {
        lo[i] = vec4<f32>(0.0);
        hi[i] = vec4<f32>(0.0);
    }
    for (var k8 = 0u; k8 < k4; k8 += 8u) {
        let kl = k8 + (lane & 7u);
        for (var i = 0u; i < nr; i++) {
            xl[i] = select(vec4<f32>(0.0), x[(r0 + i) * k4 + min(kl, k4 - 1u)], kl < k4);
        }
        {
            let bi = base + 4u * min(k8 + 0u, k4 - 1u) * p8;
            let w0 = w[bi];
            let w1 = w[bi + p8];
            let w2 = w[bi + 2u * p8];
            let w3 = w[bi + 3u * p8];
            for (var i = 0u; i < nr; i++) {
                let xv = subgroupBroadcast(xl[i], 0u);
                lo[i] += xv.x * low(w0) + xv.y * low(w1) + xv.z * low(w2) + xv.w * low(w3);
                hi[i] += xv.x * high(w0) + xv.y * high(w1) + xv.z * high(w2) + xv.w * high(w3);
            }
        }
        {
            let bi = base + 4u * min(k8 + 1u, k4 - 1u) * p8;
            let w0 = w[bi];
            let w1 = w[bi + p8];
            let w2 = w[bi + 2u * p8];
            let w3 = w[bi + 3u * p8];
            for (var i = 0u; i < nr; i++) {
                let xv = subgroupBroadcast(xl[i], 1u);
                lo[i] += xv.x * low(w0) + xv.y * low(w1) + xv.z * low(w2) + xv.w * low(w3);
                hi[i] += xv.x * high(w0) + xv.y * high(w1) + xv.z * high(w2) + xv.w * high(w3);
            }
        }
        {
            let bi = base + 4u * min(k8 + 2u, k4 - 1u) * p8;
            let w0 = w[bi];
            let w1 = w[bi + p8];
            let w2 = w[bi + 2u * p8];
            let w3 = w[bi + 3u * p8];
            for (var i = 0u; i < nr; i++) {
                let xv = subgroupBroadcast(xl[i], 2u);
                lo[i] += xv.x * low(w0) + xv.y * low(w1) + xv.z * low(w2) + xv.w * low(w3);
                hi[i] += xv.x * high(w0) + xv.y * high(w1) + xv.z * high(w2) + xv.w * high(w3);
            }
        }
        {
            let bi = base + 4u * min(k8 + 3u, k4 - 1u) * p8;
            let w0 = w[bi];
            let w1 = w[bi + p8];
            let w2 = w[bi + 2u * p8];
            let w3 = w[bi + 3u * p8];
            for (var i = 0u; i < nr; i++) {
                let xv = subgroupBroadcast(xl[i], 3u);
                lo[i] += xv.x * low(w0) + xv.y * low(w1) + xv.z * low(w2) + xv.w * low(w3);
                hi[i] += xv.x * high(w0) + xv.y * high(w1) + xv.z * high(w2) + xv.w * high(w3);
            }
        }
        {
            let bi = base + 4u * min(k8 + 4u, k4 - 1u) * p8;
            let w0 = w[bi];
            let w1 = w[bi + p8];
            let w2 = w[bi + 2u * p8];
            let w3 = w[bi + 3u * p8];
            for (var i = 0u; i < nr; i++) {
                let xv = subgroupBroadcast(xl[i], 4u);
                lo[i] += xv.x * low(w0) + xv.y * low(w1) + xv.z * low(w2) + xv.w * low(w3);
                hi[i] += xv.x * high(w0) + xv.y * high(w1) + xv.z * high(w2) + xv.w * high(w3);
            }
        }
        {
            let bi = base + 4u * min(k8 + 5u, k4 - 1u) * p8;
            let w0 = w[bi];
            let w1 = w[bi + p8];
            let w2 = w[bi + 2u * p8];
            let w3 = w[bi + 3u * p8];
            for (var i = 0u; i < nr; i++) {
                let xv = subgroupBroadcast(xl[i], 5u);
                lo[i] += xv.x * low(w0) + xv.y * low(w1) + xv.z * low(w2) + xv.w * low(w3);
                hi[i] += xv.x * high(w0) + xv.y * high(w1) + xv.z * high(w2) + xv.w * high(w3);
            }
        }
        {
            let bi = base + 4u * min(k8 + 6u, k4 - 1u) * p8;
            let w0 = w[bi];
            let w1 = w[bi + p8];
            let w2 = w[bi + 2u * p8];
            let w3 = w[bi + 3u * p8];
            for (var i = 0u; i < nr; i++) {
                let xv = subgroupBroadcast(xl[i], 6u);
                lo[i] += xv.x * low(w0) + xv.y * low(w1) + xv.z * low(w2) + xv.w * low(w3);
                hi[i] += xv.x * high(w0) + xv.y * high(w1) + xv.z * high(w2) + xv.w * high(w3);
            }
        }
        {
            let bi = base + 4u * min(k8 + 7u, k4 - 1u) * p8;
            let w0 = w[bi];
            let w1 = w[bi + p8];
            let w2 = w[bi + 2u * p8];
            let w3 = w[bi + 3u * p8];
            for (var i = 0u; i < nr; i++) {
                let xv = subgroupBroadcast(xl[i], 7u);
                lo[i] += xv.x * low(w0) + xv.y * low(w1) + xv.z * low(w2) + xv.w * low(w3);
                hi[i] += xv.x * high(w0) + xv.y * high(w1) + xv.z * high(w2) + xv.w * high(w3);
            }
        }
    }
    if (col >= n8) {
        return;
    }
    for (var i = 0u; i < nr; i++) {
        let at = (r0 + i) * p.n4 + 2u * col;
        store_epilogue(lo[i], 2u * col, at);
        store_epilogue(hi[i], 2u * col + 1u, at + 1u);
    }
}
