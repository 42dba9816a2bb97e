// Subgroup variant of matvec_f16 (half-float weights, one-token steps):
//   out[N] (=|+=) act(x[K] · w[K, N] + bias[N]), same bindings, params and epilogue.
// Each invocation computes 8 outputs from one vec4<u32> load per row of `w` (8 halves),
// and lane s of a subgroup loads x[k + s] for 8 rows at a time, which every lane then
// takes with subgroupBroadcast. On lavapipe every storage load is a scalar loop over the
// lanes, so this halves the loads per weight against matvec_f16 and drops the
// per-lane reloads of x. Needs N % 8 == 0 and subgroups of at least 8 lanes; the host
// runs it with one subgroup per workgroup (WG = the adapter's subgroup size), which
// keeps both cores of a CPU adapter busy at N = 768.

// w is stored in column panels: N / P panels of P columns, each [K, P] row-major
// (P = 64 when N % 64 == 0, else P = N, which is plain row-major [K, N]). A workgroup
// then walks K through contiguous memory, which the CPU's prefetchers follow; p4 = P / 4.
// The uniform `MatvecParams` comes from the prelude shaders/lib/matvec_params.wgsl.

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: MatvecParams;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;       // [K]
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;       // [K, N] as f16 pairs
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;    // [N] (or a dummy)
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>; // [N]

// Columns 0..3 and 4..7 of 8 packed halves.
fn low(v: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(v.x), unpack2x16float(v.y));
}

fn high(v: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(v.z), unpack2x16float(v.w));
}

fn store(col: u32, v: vec4<f32>) {
    var acc = v;
    if ((p.flags & 1u) != 0u) {
        acc += bias[col];
    }
    if ((p.flags & 2u) != 0u) {
        acc = gelu(acc);
    }
    if ((p.flags & 4u) != 0u) {
        acc += out[col];
    }
    out[col] = acc;
}

@compute @workgroup_size(WG)
fn matvec_f16_subgroup(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let col = gid.x; // in units of 8 outputs
    let n8 = p.n4 / 2u;
    let k4 = p.k4;
    // Every lane runs the loop (broadcasts need the whole subgroup); out-of-range
    // columns read a clamped address and are not stored, rows past K are zero in x.
    let colc = min(col, n8 - 1u);
    let p8 = p.p4 / 2u;
    let base = (colc / p8) * (4u * k4 * p8) + colc % p8; // this column's panel
    var lo = vec4<f32>(0.0);
    var hi = vec4<f32>(0.0);
    for (var k8 = 0u; k8 < k4; k8 += 8u) {
        let kl = k8 + (lane & 7u);
        let xl = select(vec4<f32>(0.0), x[min(kl, k4 - 1u)], kl < k4);
        {
            let xv = subgroupBroadcast(xl, 0u);
            let bi = base + 4u * min(k8 + 0u, k4 - 1u) * p8;
            let w0 = w[bi];
            let w1 = w[bi + p8];
            let w2 = w[bi + 2u * p8];
            let w3 = w[bi + 3u * p8];
            lo += xv.x * low(w0) + xv.y * low(w1) + xv.z * low(w2) + xv.w * low(w3);
            hi += xv.x * high(w0) + xv.y * high(w1) + xv.z * high(w2) + xv.w * high(w3);
        }
        {
            let xv = subgroupBroadcast(xl, 1u);
            let bi = base + 4u * min(k8 + 1u, k4 - 1u) * p8;
            let w0 = w[bi];
            let w1 = w[bi + p8];
            let w2 = w[bi + 2u * p8];
            let w3 = w[bi + 3u * p8];
            lo += xv.x * low(w0) + xv.y * low(w1) + xv.z * low(w2) + xv.w * low(w3);
            hi += xv.x * high(w0) + xv.y * high(w1) + xv.z * high(w2) + xv.w * high(w3);
        }
        {
            let xv = subgroupBroadcast(xl, 2u);
            let bi = base + 4u * min(k8 + 2u, k4 - 1u) * p8;
            let w0 = w[bi];
            let w1 = w[bi + p8];
            let w2 = w[bi + 2u * p8];
            let w3 = w[bi + 3u * p8];
            lo += xv.x * low(w0) + xv.y * low(w1) + xv.z * low(w2) + xv.w * low(w3);
            hi += xv.x * high(w0) + xv.y * high(w1) + xv.z * high(w2) + xv.w * high(w3);
        }
        {
            let xv = subgroupBroadcast(xl, 3u);
            let bi = base + 4u * min(k8 + 3u, k4 - 1u) * p8;
            let w0 = w[bi];
            let w1 = w[bi + p8];
            let w2 = w[bi + 2u * p8];
            let w3 = w[bi + 3u * p8];
            lo += xv.x * low(w0) + xv.y * low(w1) + xv.z * low(w2) + xv.w * low(w3);
            hi += xv.x * high(w0) + xv.y * high(w1) + xv.z * high(w2) + xv.w * high(w3);
        }
        {
            let xv = subgroupBroadcast(xl, 4u);
            let bi = base + 4u * min(k8 + 4u, k4 - 1u) * p8;
            let w0 = w[bi];
            let w1 = w[bi + p8];
            let w2 = w[bi + 2u * p8];
            let w3 = w[bi + 3u * p8];
            lo += xv.x * low(w0) + xv.y * low(w1) + xv.z * low(w2) + xv.w * low(w3);
            hi += xv.x * high(w0) + xv.y * high(w1) + xv.z * high(w2) + xv.w * high(w3);
        }
        {
            let xv = subgroupBroadcast(xl, 5u);
            let bi = base + 4u * min(k8 + 5u, k4 - 1u) * p8;
            let w0 = w[bi];
            let w1 = w[bi + p8];
            let w2 = w[bi + 2u * p8];
            let w3 = w[bi + 3u * p8];
            lo += xv.x * low(w0) + xv.y * low(w1) + xv.z * low(w2) + xv.w * low(w3);
            hi += xv.x * high(w0) + xv.y * high(w1) + xv.z * high(w2) + xv.w * high(w3);
        }
        {
            let xv = subgroupBroadcast(xl, 6u);
            let bi = base + 4u * min(k8 + 6u, k4 - 1u) * p8;
            let w0 = w[bi];
            let w1 = w[bi + p8];
            let w2 = w[bi + 2u * p8];
            let w3 = w[bi + 3u * p8];
            lo += xv.x * low(w0) + xv.y * low(w1) + xv.z * low(w2) + xv.w * low(w3);
            hi += xv.x * high(w0) + xv.y * high(w1) + xv.z * high(w2) + xv.w * high(w3);
        }
        {
            let xv = subgroupBroadcast(xl, 7u);
            let bi = base + 4u * min(k8 + 7u, k4 - 1u) * p8;
            let w0 = w[bi];
            let w1 = w[bi + p8];
            let w2 = w[bi + 2u * p8];
            let w3 = w[bi + 3u * p8];
            lo += xv.x * low(w0) + xv.y * low(w1) + xv.z * low(w2) + xv.w * low(w3);
            hi += xv.x * high(w0) + xv.y * high(w1) + xv.z * high(w2) + xv.w * high(w3);
        }
    }
    if (col >= n8) {
        return;
    }
    store(2u * col, lo);
    store(2u * col + 1u, hi);
}
