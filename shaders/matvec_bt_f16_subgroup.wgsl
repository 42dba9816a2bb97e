// Subgroup variant of matvec_bt_f16 (LM head for one position, half-float wte):
//   out[N] = a[a_row0] · b[N, K]ᵀ, same bindings and params.
// Each invocation computes 4 outputs from one vec4<u32> load (8 halves) per row of `b`
// and step of 8 along K; lane s of a subgroup loads the 8 values of `a` for step kb + s,
// which every lane then takes with subgroupBroadcast. On lavapipe every storage load is
// a scalar loop over the lanes, so this halves the loads per weight against
// matvec_bt_f16 and drops the per-lane reloads of `a`. Needs K % 8 == 0 and subgroups
// of at least 8 lanes; the host runs one subgroup per workgroup.

struct MatvecBtParams {
    n: u32,      // rows of b = outputs
    k4: u32,     // K / 4
    a_row0: u32, // row of `a` to multiply
    _pad: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: MatvecBtParams;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;     // [a_row0 + 1, K]
@group(0) @binding(2) var<storage, read> b: array<vec4<u32>>;     // [N, K] as f16 pairs
@group(0) @binding(3) var<storage, read_write> out: array<f32>;   // [N]

// Values 0..3 and 4..7 of 8 packed halves.
// wte is stored in row groups (`kernels::matmul_bt::to_row_groups`): for every 32 rows
// and every 8 columns, the 8 values of each row of the group. Start of `row`, in units
// of 8 values (one vec4<u32>); column block kk of the row is at + kk * 32.
fn row_base8(row: u32, k8: u32) -> u32 {
    return (row / 32u) * k8 * 32u + row % 32u;
}

fn low(v: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(v.x), unpack2x16float(v.y));
}

fn high(v: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(v.z), unpack2x16float(v.w));
}

@compute @workgroup_size(WG)
fn matvec_bt_f16_subgroup(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let col0 = gid.x * 4u;
    let k8 = p.k4 / 2u;
    let last = p.n - 1u;
    // Every lane runs the loop (broadcasts need the whole subgroup); out-of-range
    // outputs read clamped rows and are not stored, steps past K read zeros of `a`.
    let w0 = row_base8(min(col0, last), k8);
    let w1 = row_base8(min(col0 + 1u, last), k8);
    let w2 = row_base8(min(col0 + 2u, last), k8);
    let w3 = row_base8(min(col0 + 3u, last), k8);
    let xo = p.a_row0 * p.k4;
    var acc = vec4<f32>(0.0);
    for (var kb = 0u; kb < k8; kb += 8u) {
        let s = kb + (lane & 7u);
        let g = xo + 2u * min(s, k8 - 1u);
        let xl0 = select(vec4<f32>(0.0), a[g], s < k8);
        let xl1 = select(vec4<f32>(0.0), a[g + 1u], s < k8);
        {
            let x0 = subgroupBroadcast(xl0, 0u);
            let x1 = subgroupBroadcast(xl1, 0u);
            let kk = min(kb + 0u, k8 - 1u);
            let b0 = b[w0 + kk * 32u];
            let b1 = b[w1 + kk * 32u];
            let b2 = b[w2 + kk * 32u];
            let b3 = b[w3 + kk * 32u];
            acc += vec4<f32>(
                dot(x0, low(b0)) + dot(x1, high(b0)),
                dot(x0, low(b1)) + dot(x1, high(b1)),
                dot(x0, low(b2)) + dot(x1, high(b2)),
                dot(x0, low(b3)) + dot(x1, high(b3)),
            );
        }
        {
            let x0 = subgroupBroadcast(xl0, 1u);
            let x1 = subgroupBroadcast(xl1, 1u);
            let kk = min(kb + 1u, k8 - 1u);
            let b0 = b[w0 + kk * 32u];
            let b1 = b[w1 + kk * 32u];
            let b2 = b[w2 + kk * 32u];
            let b3 = b[w3 + kk * 32u];
            acc += vec4<f32>(
                dot(x0, low(b0)) + dot(x1, high(b0)),
                dot(x0, low(b1)) + dot(x1, high(b1)),
                dot(x0, low(b2)) + dot(x1, high(b2)),
                dot(x0, low(b3)) + dot(x1, high(b3)),
            );
        }
        {
            let x0 = subgroupBroadcast(xl0, 2u);
            let x1 = subgroupBroadcast(xl1, 2u);
            let kk = min(kb + 2u, k8 - 1u);
            let b0 = b[w0 + kk * 32u];
            let b1 = b[w1 + kk * 32u];
            let b2 = b[w2 + kk * 32u];
            let b3 = b[w3 + kk * 32u];
            acc += vec4<f32>(
                dot(x0, low(b0)) + dot(x1, high(b0)),
                dot(x0, low(b1)) + dot(x1, high(b1)),
                dot(x0, low(b2)) + dot(x1, high(b2)),
                dot(x0, low(b3)) + dot(x1, high(b3)),
            );
        }
        {
            let x0 = subgroupBroadcast(xl0, 3u);
            let x1 = subgroupBroadcast(xl1, 3u);
            let kk = min(kb + 3u, k8 - 1u);
            let b0 = b[w0 + kk * 32u];
            let b1 = b[w1 + kk * 32u];
            let b2 = b[w2 + kk * 32u];
            let b3 = b[w3 + kk * 32u];
            acc += vec4<f32>(
                dot(x0, low(b0)) + dot(x1, high(b0)),
                dot(x0, low(b1)) + dot(x1, high(b1)),
                dot(x0, low(b2)) + dot(x1, high(b2)),
                dot(x0, low(b3)) + dot(x1, high(b3)),
            );
        }
        {
            let x0 = subgroupBroadcast(xl0, 4u);
            let x1 = subgroupBroadcast(xl1, 4u);
            let kk = min(kb + 4u, k8 - 1u);
            let b0 = b[w0 + kk * 32u];
            let b1 = b[w1 + kk * 32u];
            let b2 = b[w2 + kk * 32u];
            let b3 = b[w3 + kk * 32u];
            acc += vec4<f32>(
                dot(x0, low(b0)) + dot(x1, high(b0)),
                dot(x0, low(b1)) + dot(x1, high(b1)),
                dot(x0, low(b2)) + dot(x1, high(b2)),
                dot(x0, low(b3)) + dot(x1, high(b3)),
            );
        }
        {
            let x0 = subgroupBroadcast(xl0, 5u);
            let x1 = subgroupBroadcast(xl1, 5u);
            let kk = min(kb + 5u, k8 - 1u);
            let b0 = b[w0 + kk * 32u];
            let b1 = b[w1 + kk * 32u];
            let b2 = b[w2 + kk * 32u];
            let b3 = b[w3 + kk * 32u];
            acc += vec4<f32>(
                dot(x0, low(b0)) + dot(x1, high(b0)),
                dot(x0, low(b1)) + dot(x1, high(b1)),
                dot(x0, low(b2)) + dot(x1, high(b2)),
                dot(x0, low(b3)) + dot(x1, high(b3)),
            );
        }
        {
            let x0 = subgroupBroadcast(xl0, 6u);
            let x1 = subgroupBroadcast(xl1, 6u);
            let kk = min(kb + 6u, k8 - 1u);
            let b0 = b[w0 + kk * 32u];
            let b1 = b[w1 + kk * 32u];
            let b2 = b[w2 + kk * 32u];
            let b3 = b[w3 + kk * 32u];
            acc += vec4<f32>(
                dot(x0, low(b0)) + dot(x1, high(b0)),
                dot(x0, low(b1)) + dot(x1, high(b1)),
                dot(x0, low(b2)) + dot(x1, high(b2)),
                dot(x0, low(b3)) + dot(x1, high(b3)),
            );
        }
        {
            let x0 = subgroupBroadcast(xl0, 7u);
            let x1 = subgroupBroadcast(xl1, 7u);
            let kk = min(kb + 7u, k8 - 1u);
            let b0 = b[w0 + kk * 32u];
            let b1 = b[w1 + kk * 32u];
            let b2 = b[w2 + kk * 32u];
            let b3 = b[w3 + kk * 32u];
            acc += vec4<f32>(
                dot(x0, low(b0)) + dot(x1, high(b0)),
                dot(x0, low(b1)) + dot(x1, high(b1)),
                dot(x0, low(b2)) + dot(x1, high(b2)),
                dot(x0, low(b3)) + dot(x1, high(b3)),
            );
        }
    }
    if (col0 < p.n) { out[col0] = acc.x; }
    if (col0 + 1u < p.n) { out[col0 + 1u] = acc.y; }
    if (col0 + 2u < p.n) { out[col0 + 2u] = acc.z; }
    if (col0 + 3u < p.n) { out[col0 + 3u] = acc.w; }
}
