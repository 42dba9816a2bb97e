// Subgroup variant of matvec_bt_f16 (LM head for decode rows, half-float wte):
//   out[r, N] = a[a_row0 + r] · b[N, K]ᵀ, same bindings and params.
// Each invocation computes 4 outputs of up to MR rows (workgroup y) from one vec4<u32>
// load (8 halves) per row of `b` and step of 8 along K; lane s of a subgroup loads the 8
// values of `a` for step kb + s of each row, which every lane then takes with
// subgroupBroadcast. On lavapipe every storage load is a scalar loop over the lanes,
// so this halves the loads per weight against matvec_bt_f16, drops the per-lane
// reloads of `a`, and shares each weight load among the rows of the batch. Needs
// K % 8 == 0 and subgroups of at least 8 lanes; the host runs one subgroup per
// workgroup. Preludes: matvec_bt_params (MatvecBtParams, store4), batch_rows (MR).

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: MatvecBtParams;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;     // [a_row0 + R, K]
@group(0) @binding(2) var<storage, read> b: array<vec4<u32>>;     // [N, K] as f16 pairs
@group(0) @binding(3) var<storage, read_write> out: array<f32>;   // [R, N]

// wte is stored in row groups (`kernels::matmul_bt::to_row_groups`): for every 32 rows
// and every 8 columns, the 8 values of each row of the group. Start of `row`, in units
// of 8 values (one vec4<u32>); column block kk of the row is at + kk * 32.
fn row_base8(row: u32, k8: u32) -> u32 {
    return (row / 32u) * k8 * 32u + row % 32u;
}

// Values 0..3 and 4..7 of 8 packed halves.
fn low(v: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(v.x), unpack2x16float(v.y));
}

fn high(v: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(v.z), unpack2x16float(v.w));
}

@compute @workgroup_size(WG)
fn matvec_bt_f16_subgroup(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let col0 = gid.x * 4u;
    let k8 = p.k4 / 2u;
    let last = p.n - 1u;
    let r0 = wg.y * MR;
    let nr = min(MR, p.rows - r0);
    // Every lane runs the loop (broadcasts need the whole subgroup); out-of-range
    // outputs read clamped rows and are not stored, steps past K read zeros of `a`.
    let w0 = row_base8(min(col0, last), k8);
    let w1 = row_base8(min(col0 + 1u, last), k8);
    let w2 = row_base8(min(col0 + 2u, last), k8);
    let w3 = row_base8(min(col0 + 3u, last), k8);
    var acc: array<vec4<f32>, MR>;
    var xl0: array<vec4<f32>, MR>;
    var xl1: array<vec4<f32>, MR>;
    for (var i = 0u; i < nr; i++) {
        acc[i] = vec4<f32>(0.0);
    }
    for (var kb = 0u; kb < k8; kb += 8u) {
        let s = kb + (lane & 7u);
        for (var i = 0u; i < nr; i++) {
            let g = (p.a_row0 + r0 + i) * p.k4 + 2u * min(s, k8 - 1u);
            xl0[i] = select(vec4<f32>(0.0), a[g], s < k8);
            xl1[i] = select(vec4<f32>(0.0), a[g + 1u], s < k8);
        }
        {
            let kk = min(kb + 0u, k8 - 1u) * 32u;
            let b0 = b[w0 + kk];
            let b1 = b[w1 + kk];
            let b2 = b[w2 + kk];
            let b3 = b[w3 + kk];
            for (var i = 0u; i < nr; i++) {
                let x0 = subgroupBroadcast(xl0[i], 0u);
                let x1 = subgroupBroadcast(xl1[i], 0u);
                acc[i] += vec4<f32>(
                    dot(x0, low(b0)) + dot(x1, high(b0)),
                    dot(x0, low(b1)) + dot(x1, high(b1)),
                    dot(x0, low(b2)) + dot(x1, high(b2)),
                    dot(x0, low(b3)) + dot(x1, high(b3)),
                );
            }
        }
        {
            let kk = min(kb + 1u, k8 - 1u) * 32u;
            let b0 = b[w0 + kk];
            let b1 = b[w1 + kk];
            let b2 = b[w2 + kk];
            let b3 = b[w3 + kk];
            for (var i = 0u; i < nr; i++) {
                let x0 = subgroupBroadcast(xl0[i], 1u);
                let x1 = subgroupBroadcast(xl1[i], 1u);
                acc[i] += vec4<f32>(
                    dot(x0, low(b0)) + dot(x1, high(b0)),
                    dot(x0, low(b1)) + dot(x1, high(b1)),
                    dot(x0, low(b2)) + dot(x1, high(b2)),
                    dot(x0, low(b3)) + dot(x1, high(b3)),
                );
            }
        }
        {
            let kk = min(kb + 2u, k8 - 1u) * 32u;
            let b0 = b[w0 + kk];
            let b1 = b[w1 + kk];
            let b2 = b[w2 + kk];
            let b3 = b[w3 + kk];
            for (var i = 0u; i < nr; i++) {
                let x0 = subgroupBroadcast(xl0[i], 2u);
                let x1 = subgroupBroadcast(xl1[i], 2u);
                acc[i] += vec4<f32>(
                    dot(x0, low(b0)) + dot(x1, high(b0)),
                    dot(x0, low(b1)) + dot(x1, high(b1)),
                    dot(x0, low(b2)) + dot(x1, high(b2)),
                    dot(x0, low(b3)) + dot(x1, high(b3)),
                );
            }
        }
        {
            let kk = min(kb + 3u, k8 - 1u) * 32u;
            let b0 = b[w0 + kk];
            let b1 = b[w1 + kk];
            let b2 = b[w2 + kk];
            let b3 = b[w3 + kk];
            for (var i = 0u; i < nr; i++) {
                let x0 = subgroupBroadcast(xl0[i], 3u);
                let x1 = subgroupBroadcast(xl1[i], 3u);
                acc[i] += vec4<f32>(
                    dot(x0, low(b0)) + dot(x1, high(b0)),
                    dot(x0, low(b1)) + dot(x1, high(b1)),
                    dot(x0, low(b2)) + dot(x1, high(b2)),
                    dot(x0, low(b3)) + dot(x1, high(b3)),
                );
            }
        }
        {
            let kk = min(kb + 4u, k8 - 1u) * 32u;
            let b0 = b[w0 + kk];
            let b1 = b[w1 + kk];
            let b2 = b[w2 + kk];
            let b3 = b[w3 + kk];
            for (var i = 0u; i < nr; i++) {
                let x0 = subgroupBroadcast(xl0[i], 4u);
                let x1 = subgroupBroadcast(xl1[i], 4u);
                acc[i] += vec4<f32>(
                    dot(x0, low(b0)) + dot(x1, high(b0)),
                    dot(x0, low(b1)) + dot(x1, high(b1)),
                    dot(x0, low(b2)) + dot(x1, high(b2)),
                    dot(x0, low(b3)) + dot(x1, high(b3)),
                );
            }
        }
        {
            let kk = min(kb + 5u, k8 - 1u) * 32u;
            let b0 = b[w0 + kk];
            let b1 = b[w1 + kk];
            let b2 = b[w2 + kk];
            let b3 = b[w3 + kk];
            for (var i = 0u; i < nr; i++) {
                let x0 = subgroupBroadcast(xl0[i], 5u);
                let x1 = subgroupBroadcast(xl1[i], 5u);
                acc[i] += vec4<f32>(
                    dot(x0, low(b0)) + dot(x1, high(b0)),
                    dot(x0, low(b1)) + dot(x1, high(b1)),
                    dot(x0, low(b2)) + dot(x1, high(b2)),
                    dot(x0, low(b3)) + dot(x1, high(b3)),
                );
            }
        }
        {
            let kk = min(kb + 6u, k8 - 1u) * 32u;
            let b0 = b[w0 + kk];
            let b1 = b[w1 + kk];
            let b2 = b[w2 + kk];
            let b3 = b[w3 + kk];
            for (var i = 0u; i < nr; i++) {
                let x0 = subgroupBroadcast(xl0[i], 6u);
                let x1 = subgroupBroadcast(xl1[i], 6u);
                acc[i] += vec4<f32>(
                    dot(x0, low(b0)) + dot(x1, high(b0)),
                    dot(x0, low(b1)) + dot(x1, high(b1)),
                    dot(x0, low(b2)) + dot(x1, high(b2)),
                    dot(x0, low(b3)) + dot(x1, high(b3)),
                );
            }
        }
        {
            let kk = min(kb + 7u, k8 - 1u) * 32u;
            let b0 = b[w0 + kk];
            let b1 = b[w1 + kk];
            let b2 = b[w2 + kk];
            let b3 = b[w3 + kk];
            for (var i = 0u; i < nr; i++) {
                let x0 = subgroupBroadcast(xl0[i], 7u);
                let x1 = subgroupBroadcast(xl1[i], 7u);
                acc[i] += vec4<f32>(
                    dot(x0, low(b0)) + dot(x1, high(b0)),
                    dot(x0, low(b1)) + dot(x1, high(b1)),
                    dot(x0, low(b2)) + dot(x1, high(b2)),
                    dot(x0, low(b3)) + dot(x1, high(b3)),
                );
            }
        }
    }
    for (var i = 0u; i < nr; i++) {
        store4(acc[i], (r0 + i) * p.n, col0);
    }
}
