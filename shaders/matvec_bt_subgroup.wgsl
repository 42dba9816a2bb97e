// Subgroup variant of matvec_bt (LM head for one position): out[N] = a[a_row0] · b[N, K]ᵀ,
// same bindings and params. Each invocation computes 4 outputs; per block of 8 columns
// of K, lane s of a subgroup loads the 8 values of `a` for block kb + s and every lane
// takes them with subgroupBroadcast, instead of every lane loading all of `a`: on
// lavapipe each storage load is a scalar loop over the lanes. Needs subgroups of at
// least 8 lanes; the host runs one subgroup per workgroup.

struct MatvecBtParams {
    n: u32,      // rows of b = outputs
    k4: u32,     // K / 4
    a_row0: u32, // row of `a` to multiply
    _pad: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: MatvecBtParams;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;     // [a_row0 + 1, K]
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;     // [N, K] in row groups
@group(0) @binding(3) var<storage, read_write> out: array<f32>;   // [N]

// wte is stored in row groups (`kernels::matmul_bt::to_row_groups`): for every 32 rows
// and every 8 columns, the 8 values of each row of the group, so the rows a subgroup
// reads side by side lie side by side in memory. Start of `row`, in units of 4 values;
// the block of columns 8j .. 8j + 7 is at + 64j (and + 64j + 1 for its second half).
fn row_base(row: u32, k4: u32) -> u32 {
    return (row / 32u) * ((k4 + 1u) / 2u) * 64u + (row % 32u) * 2u;
}

@compute @workgroup_size(WG)
fn matvec_bt_subgroup(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let col0 = gid.x * 4u;
    let k4 = p.k4;
    let k8 = (k4 + 1u) / 2u;
    let last = p.n - 1u;
    // Every lane runs the loop (broadcasts need the whole subgroup); out-of-range
    // outputs read clamped rows and are not stored, columns past K read zeros of `a`
    // (and zero padding of `b`).
    let w0 = row_base(min(col0, last), k4);
    let w1 = row_base(min(col0 + 1u, last), k4);
    let w2 = row_base(min(col0 + 2u, last), k4);
    let w3 = row_base(min(col0 + 3u, last), k4);
    let xo = p.a_row0 * k4;
    var acc = vec4<f32>(0.0);
    for (var kb = 0u; kb < k8; kb += 8u) {
        let u0 = 2u * (kb + (lane & 7u));
        let xl0 = select(vec4<f32>(0.0), a[xo + min(u0, k4 - 1u)], u0 < k4);
        let xl1 = select(vec4<f32>(0.0), a[xo + min(u0 + 1u, k4 - 1u)], u0 + 1u < k4);
        {
            let x0 = subgroupBroadcast(xl0, 0u);
            let x1 = subgroupBroadcast(xl1, 0u);
            let o = min(kb + 0u, k8 - 1u) * 64u;
            acc += vec4<f32>(
                dot(x0, b[w0 + o]) + dot(x1, b[w0 + o + 1u]),
                dot(x0, b[w1 + o]) + dot(x1, b[w1 + o + 1u]),
                dot(x0, b[w2 + o]) + dot(x1, b[w2 + o + 1u]),
                dot(x0, b[w3 + o]) + dot(x1, b[w3 + o + 1u]),
            );
        }
        {
            let x0 = subgroupBroadcast(xl0, 1u);
            let x1 = subgroupBroadcast(xl1, 1u);
            let o = min(kb + 1u, k8 - 1u) * 64u;
            acc += vec4<f32>(
                dot(x0, b[w0 + o]) + dot(x1, b[w0 + o + 1u]),
                dot(x0, b[w1 + o]) + dot(x1, b[w1 + o + 1u]),
                dot(x0, b[w2 + o]) + dot(x1, b[w2 + o + 1u]),
                dot(x0, b[w3 + o]) + dot(x1, b[w3 + o + 1u]),
            );
        }
        {
            let x0 = subgroupBroadcast(xl0, 2u);
            let x1 = subgroupBroadcast(xl1, 2u);
            let o = min(kb + 2u, k8 - 1u) * 64u;
            acc += vec4<f32>(
                dot(x0, b[w0 + o]) + dot(x1, b[w0 + o + 1u]),
                dot(x0, b[w1 + o]) + dot(x1, b[w1 + o + 1u]),
                dot(x0, b[w2 + o]) + dot(x1, b[w2 + o + 1u]),
                dot(x0, b[w3 + o]) + dot(x1, b[w3 + o + 1u]),
            );
        }
        {
            let x0 = subgroupBroadcast(xl0, 3u);
            let x1 = subgroupBroadcast(xl1, 3u);
            let o = min(kb + 3u, k8 - 1u) * 64u;
            acc += vec4<f32>(
                dot(x0, b[w0 + o]) + dot(x1, b[w0 + o + 1u]),
                dot(x0, b[w1 + o]) + dot(x1, b[w1 + o + 1u]),
                dot(x0, b[w2 + o]) + dot(x1, b[w2 + o + 1u]),
                dot(x0, b[w3 + o]) + dot(x1, b[w3 + o + 1u]),
            );
        }
        {
            let x0 = subgroupBroadcast(xl0, 4u);
            let x1 = subgroupBroadcast(xl1, 4u);
            let o = min(kb + 4u, k8 - 1u) * 64u;
            acc += vec4<f32>(
                dot(x0, b[w0 + o]) + dot(x1, b[w0 + o + 1u]),
                dot(x0, b[w1 + o]) + dot(x1, b[w1 + o + 1u]),
                dot(x0, b[w2 + o]) + dot(x1, b[w2 + o + 1u]),
                dot(x0, b[w3 + o]) + dot(x1, b[w3 + o + 1u]),
            );
        }
        {
            let x0 = subgroupBroadcast(xl0, 5u);
            let x1 = subgroupBroadcast(xl1, 5u);
            let o = min(kb + 5u, k8 - 1u) * 64u;
            acc += vec4<f32>(
                dot(x0, b[w0 + o]) + dot(x1, b[w0 + o + 1u]),
                dot(x0, b[w1 + o]) + dot(x1, b[w1 + o + 1u]),
                dot(x0, b[w2 + o]) + dot(x1, b[w2 + o + 1u]),
                dot(x0, b[w3 + o]) + dot(x1, b[w3 + o + 1u]),
            );
        }
        {
            let x0 = subgroupBroadcast(xl0, 6u);
            let x1 = subgroupBroadcast(xl1, 6u);
            let o = min(kb + 6u, k8 - 1u) * 64u;
            acc += vec4<f32>(
                dot(x0, b[w0 + o]) + dot(x1, b[w0 + o + 1u]),
                dot(x0, b[w1 + o]) + dot(x1, b[w1 + o + 1u]),
                dot(x0, b[w2 + o]) + dot(x1, b[w2 + o + 1u]),
                dot(x0, b[w3 + o]) + dot(x1, b[w3 + o + 1u]),
            );
        }
        {
            let x0 = subgroupBroadcast(xl0, 7u);
            let x1 = subgroupBroadcast(xl1, 7u);
            let o = min(kb + 7u, k8 - 1u) * 64u;
            acc += vec4<f32>(
                dot(x0, b[w0 + o]) + dot(x1, b[w0 + o + 1u]),
                dot(x0, b[w1 + o]) + dot(x1, b[w1 + o + 1u]),
                dot(x0, b[w2 + o]) + dot(x1, b[w2 + o + 1u]),
                dot(x0, b[w3 + o]) + dot(x1, b[w3 + o + 1u]),
            );
        }
    }
    if (col0 < p.n) { out[col0] = acc.x; }
    if (col0 + 1u < p.n) { out[col0 + 1u] = acc.y; }
    if (col0 + 2u < p.n) { out[col0 + 2u] = acc.z; }
    if (col0 + 3u < p.n) { out[col0 + 3u] = acc.w; }
}
