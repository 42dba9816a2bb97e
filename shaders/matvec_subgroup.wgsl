// Subgroup variant of matvec (one-token steps): out[N] (=|+=) act(x[K] · w[K, N] + bias[N]),
// same bindings, params and epilogue. Lane s of a subgroup loads x[k + s] for 8 rows at a
// time and every lane takes them with subgroupBroadcast, instead of every lane loading
// every x: on lavapipe each storage load is a scalar loop over the lanes, so this drops
// a fifth of the loads. Needs subgroups of at least 8 lanes; the host runs it with one
// subgroup per workgroup (WG = the adapter's subgroup size), which keeps both cores of a
// CPU adapter busy at N = 768.

// w is stored in column panels: N / P panels of P columns, each [K, P] row-major
// (P = 64 when N % 64 == 0, else P = N, which is plain row-major [K, N]). A workgroup
// then walks K through contiguous memory, which the CPU's prefetchers follow; p4 = P / 4.

struct MatvecParams {
    n4: u32,
    k4: u32,
    flags: u32,
    p4: u32, // panel width of w / 4
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: MatvecParams;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;       // [K]
@group(0) @binding(2) var<storage, read> w: array<vec4<f32>>;       // [K, N]
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;    // [N] (or a dummy)
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>; // [N]

fn gelu(x: vec4<f32>) -> vec4<f32> {
    let inner = 0.7978845608028654 * (x + 0.044715 * x * x * x);
    return 0.5 * x * (1.0 + tanh(clamp(inner, vec4<f32>(-15.0), vec4<f32>(15.0))));
}

@compute @workgroup_size(WG)
fn matvec_subgroup(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let col = gid.x;
    let n4 = p.n4;
    let k4 = p.k4;
    // Every lane runs the loop (broadcasts need the whole subgroup); out-of-range
    // columns read a clamped address and are not stored, rows past K are zero in x.
    let colc = min(col, n4 - 1u);
    let p4 = p.p4;
    let base = (colc / p4) * (4u * k4 * p4) + colc % p4; // this column's panel
    var acc = vec4<f32>(0.0);
    for (var k8 = 0u; k8 < k4; k8 += 8u) {
        let kl = k8 + (lane & 7u);
        let xl = select(vec4<f32>(0.0), x[min(kl, k4 - 1u)], kl < k4);
        {
            let xv = subgroupBroadcast(xl, 0u);
            let bi = base + 4u * min(k8 + 0u, k4 - 1u) * p4;
            acc += xv.x * w[bi] + xv.y * w[bi + p4] + xv.z * w[bi + 2u * p4] + xv.w * w[bi + 3u * p4];
        }
        {
            let xv = subgroupBroadcast(xl, 1u);
            let bi = base + 4u * min(k8 + 1u, k4 - 1u) * p4;
            acc += xv.x * w[bi] + xv.y * w[bi + p4] + xv.z * w[bi + 2u * p4] + xv.w * w[bi + 3u * p4];
        }
        {
            let xv = subgroupBroadcast(xl, 2u);
            let bi = base + 4u * min(k8 + 2u, k4 - 1u) * p4;
            acc += xv.x * w[bi] + xv.y * w[bi + p4] + xv.z * w[bi + 2u * p4] + xv.w * w[bi + 3u * p4];
        }
        {
            let xv = subgroupBroadcast(xl, 3u);
            let bi = base + 4u * min(k8 + 3u, k4 - 1u) * p4;
            acc += xv.x * w[bi] + xv.y * w[bi + p4] + xv.z * w[bi + 2u * p4] + xv.w * w[bi + 3u * p4];
        }
        {
            let xv = subgroupBroadcast(xl, 4u);
            let bi = base + 4u * min(k8 + 4u, k4 - 1u) * p4;
            acc += xv.x * w[bi] + xv.y * w[bi + p4] + xv.z * w[bi + 2u * p4] + xv.w * w[bi + 3u * p4];
        }
        {
            let xv = subgroupBroadcast(xl, 5u);
            let bi = base + 4u * min(k8 + 5u, k4 - 1u) * p4;
            acc += xv.x * w[bi] + xv.y * w[bi + p4] + xv.z * w[bi + 2u * p4] + xv.w * w[bi + 3u * p4];
        }
        {
            let xv = subgroupBroadcast(xl, 6u);
            let bi = base + 4u * min(k8 + 6u, k4 - 1u) * p4;
            acc += xv.x * w[bi] + xv.y * w[bi + p4] + xv.z * w[bi + 2u * p4] + xv.w * w[bi + 3u * p4];
        }
        {
            let xv = subgroupBroadcast(xl, 7u);
            let bi = base + 4u * min(k8 + 7u, k4 - 1u) * p4;
            acc += xv.x * w[bi] + xv.y * w[bi + p4] + xv.z * w[bi + 2u * p4] + xv.w * w[bi + 3u * p4];
        }
    }
    if (col >= n4) {
        return;
    }
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
