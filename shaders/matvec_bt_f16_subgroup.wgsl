// Subgroup variant of matvec_bt_f16 (LM head for decode rows, half-float wte):
//   out[out_row0 + r, N] = a[a_row0 + r] · b[N, K]ᵀ, same bindings and params.
// Each invocation computes 4 outputs from one vec4<u32> load (8 halves) per row of `b`
// and step of 8 along K; lane s of a subgroup loads the 8 values of `a` for step kb + s
// of each row, which every lane then takes with subgroupBroadcast. On lavapipe every
// storage load is a scalar loop over the lanes, so this halves the loads per weight
// against matvec_bt_f16, drops the per-lane reloads of `a`, and shares each weight load
// (and its unpacking) among the invocation's rows.
// ROWS (an override: 1, 4 or 8, `gpu::BATCH_ROWS`) rows of the batch per invocation,
// in separate accumulators (llvmpipe keeps arrays indexed by a variable in memory),
// rows ROWS · workgroup y ..; the host covers a batch
// with groups of 8 and one group of 4 or 8 over its end (`RowsOp::cover`: rows past
// the batch are computed, never stored), or single rows. Every row is computed by the same
// expression (`row_dot8`) in every variant, so its numbers do not depend on the batch.
// Needs K % 8 == 0 and subgroups of at least 8 lanes; the host runs one subgroup per
// workgroup. Preludes: matvec_bt_params (MatvecBtParams, store4).

override WG: u32 = 64u;
override ROWS: u32 = 1u;

@group(0) @binding(0) var<uniform> p: MatvecBtParams;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;     // [a_row0 + R, K]
@group(0) @binding(2) var<storage, read> b: array<vec4<u32>>;     // [N, K] as f16 pairs
@group(0) @binding(3) var<storage, read_write> out: array<f32>;   // [out_row0 + R, N]

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

// One row's step of 8 along K: its values (x0, x1) against 4 rows of b.
fn row_dot8(x0: vec4<f32>, x1: vec4<f32>, b0: vec4<u32>, b1: vec4<u32>, b2: vec4<u32>, b3: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(
        dot(x0, low(b0)) + dot(x1, high(b0)),
        dot(x0, low(b1)) + dot(x1, high(b1)),
        dot(x0, low(b2)) + dot(x1, high(b2)),
        dot(x0, low(b3)) + dot(x1, high(b3)),
    );
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
    // Every lane runs the loop (broadcasts need the whole subgroup); out-of-range
    // outputs read clamped rows and are not stored, steps past K read zeros of `a`.
    let w0 = row_base8(min(col0, last), k8);
    let w1 = row_base8(min(col0 + 1u, last), k8);
    let w2 = row_base8(min(col0 + 2u, last), k8);
    let w3 = row_base8(min(col0 + 3u, last), k8);
    let a0 = p.a_row0 + wg.y * ROWS;
    var xa0 = vec4<f32>(0.0);
    var xb0 = vec4<f32>(0.0);
    var c0 = vec4<f32>(0.0);
    var xa1 = vec4<f32>(0.0);
    var xb1 = vec4<f32>(0.0);
    var c1 = vec4<f32>(0.0);
    var xa2 = vec4<f32>(0.0);
    var xb2 = vec4<f32>(0.0);
    var c2 = vec4<f32>(0.0);
    var xa3 = vec4<f32>(0.0);
    var xb3 = vec4<f32>(0.0);
    var c3 = vec4<f32>(0.0);
    var xa4 = vec4<f32>(0.0);
    var xb4 = vec4<f32>(0.0);
    var c4 = vec4<f32>(0.0);
    var xa5 = vec4<f32>(0.0);
    var xb5 = vec4<f32>(0.0);
    var c5 = vec4<f32>(0.0);
    var xa6 = vec4<f32>(0.0);
    var xb6 = vec4<f32>(0.0);
    var c6 = vec4<f32>(0.0);
    var xa7 = vec4<f32>(0.0);
    var xb7 = vec4<f32>(0.0);
    var c7 = vec4<f32>(0.0);
    for (var kb = 0u; kb < k8; kb += 8u) {
        let s = kb + (lane & 7u);
        let g = a0 * p.k4 + 2u * min(s, k8 - 1u);
        xa0 = select(vec4<f32>(0.0), a[g + 0u * p.k4], s < k8);
        xb0 = select(vec4<f32>(0.0), a[g + 0u * p.k4 + 1u], s < k8);
        if (ROWS > 1u) {
            xa1 = select(vec4<f32>(0.0), a[g + 1u * p.k4], s < k8);
            xb1 = select(vec4<f32>(0.0), a[g + 1u * p.k4 + 1u], s < k8);
            xa2 = select(vec4<f32>(0.0), a[g + 2u * p.k4], s < k8);
            xb2 = select(vec4<f32>(0.0), a[g + 2u * p.k4 + 1u], s < k8);
            xa3 = select(vec4<f32>(0.0), a[g + 3u * p.k4], s < k8);
            xb3 = select(vec4<f32>(0.0), a[g + 3u * p.k4 + 1u], s < k8);
        }
        if (ROWS > 4u) {
            xa4 = select(vec4<f32>(0.0), a[g + 4u * p.k4], s < k8);
            xb4 = select(vec4<f32>(0.0), a[g + 4u * p.k4 + 1u], s < k8);
            xa5 = select(vec4<f32>(0.0), a[g + 5u * p.k4], s < k8);
            xb5 = select(vec4<f32>(0.0), a[g + 5u * p.k4 + 1u], s < k8);
            xa6 = select(vec4<f32>(0.0), a[g + 6u * p.k4], s < k8);
            xb6 = select(vec4<f32>(0.0), a[g + 6u * p.k4 + 1u], s < k8);
            xa7 = select(vec4<f32>(0.0), a[g + 7u * p.k4], s < k8);
            xb7 = select(vec4<f32>(0.0), a[g + 7u * p.k4 + 1u], s < k8);
        }
        {
            let kk = min(kb + 0u, k8 - 1u) * 32u;
            let b0 = b[w0 + kk];
            let b1 = b[w1 + kk];
            let b2 = b[w2 + kk];
            let b3 = b[w3 + kk];
            c0 += row_dot8(subgroupBroadcast(xa0, 0u), subgroupBroadcast(xb0, 0u), b0, b1, b2, b3);
            if (ROWS > 1u) {
                c1 += row_dot8(subgroupBroadcast(xa1, 0u), subgroupBroadcast(xb1, 0u), b0, b1, b2, b3);
                c2 += row_dot8(subgroupBroadcast(xa2, 0u), subgroupBroadcast(xb2, 0u), b0, b1, b2, b3);
                c3 += row_dot8(subgroupBroadcast(xa3, 0u), subgroupBroadcast(xb3, 0u), b0, b1, b2, b3);
            }
            if (ROWS > 4u) {
                c4 += row_dot8(subgroupBroadcast(xa4, 0u), subgroupBroadcast(xb4, 0u), b0, b1, b2, b3);
                c5 += row_dot8(subgroupBroadcast(xa5, 0u), subgroupBroadcast(xb5, 0u), b0, b1, b2, b3);
                c6 += row_dot8(subgroupBroadcast(xa6, 0u), subgroupBroadcast(xb6, 0u), b0, b1, b2, b3);
                c7 += row_dot8(subgroupBroadcast(xa7, 0u), subgroupBroadcast(xb7, 0u), b0, b1, b2, b3);
            }
        }
        {
            let kk = min(kb + 1u, k8 - 1u) * 32u;
            let b0 = b[w0 + kk];
            let b1 = b[w1 + kk];
            let b2 = b[w2 + kk];
            let b3 = b[w3 + kk];
            c0 += row_dot8(subgroupBroadcast(xa0, 1u), subgroupBroadcast(xb0, 1u), b0, b1, b2, b3);
            if (ROWS > 1u) {
                c1 += row_dot8(subgroupBroadcast(xa1, 1u), subgroupBroadcast(xb1, 1u), b0, b1, b2, b3);
                c2 += row_dot8(subgroupBroadcast(xa2, 1u), subgroupBroadcast(xb2, 1u), b0, b1, b2, b3);
                c3 += row_dot8(subgroupBroadcast(xa3, 1u), subgroupBroadcast(xb3, 1u), b0, b1, b2, b3);
            }
            if (ROWS > 4u) {
                c4 += row_dot8(subgroupBroadcast(xa4, 1u), subgroupBroadcast(xb4, 1u), b0, b1, b2, b3);
                c5 += row_dot8(subgroupBroadcast(xa5, 1u), subgroupBroadcast(xb5, 1u), b0, b1, b2, b3);
                c6 += row_dot8(subgroupBroadcast(xa6, 1u), subgroupBroadcast(xb6, 1u), b0, b1, b2, b3);
                c7 += row_dot8(subgroupBroadcast(xa7, 1u), subgroupBroadcast(xb7, 1u), b0, b1, b2, b3);
            }
        }
        {
            let kk = min(kb + 2u, k8 - 1u) * 32u;
            let b0 = b[w0 + kk];
            let b1 = b[w1 + kk];
            let b2 = b[w2 + kk];
            let b3 = b[w3 + kk];
            c0 += row_dot8(subgroupBroadcast(xa0, 2u), subgroupBroadcast(xb0, 2u), b0, b1, b2, b3);
            if (ROWS > 1u) {
                c1 += row_dot8(subgroupBroadcast(xa1, 2u), subgroupBroadcast(xb1, 2u), b0, b1, b2, b3);
                c2 += row_dot8(subgroupBroadcast(xa2, 2u), subgroupBroadcast(xb2, 2u), b0, b1, b2, b3);
                c3 += row_dot8(subgroupBroadcast(xa3, 2u), subgroupBroadcast(xb3, 2u), b0, b1, b2, b3);
            }
            if (ROWS > 4u) {
                c4 += row_dot8(subgroupBroadcast(xa4, 2u), subgroupBroadcast(xb4, 2u), b0, b1, b2, b3);
                c5 += row_dot8(subgroupBroadcast(xa5, 2u), subgroupBroadcast(xb5, 2u), b0, b1, b2, b3);
                c6 += row_dot8(subgroupBroadcast(xa6, 2u), subgroupBroadcast(xb6, 2u), b0, b1, b2, b3);
                c7 += row_dot8(subgroupBroadcast(xa7, 2u), subgroupBroadcast(xb7, 2u), b0, b1, b2, b3);
            }
        }
        {
            let kk = min(kb + 3u, k8 - 1u) * 32u;
            let b0 = b[w0 + kk];
            let b1 = b[w1 + kk];
            let b2 = b[w2 + kk];
            let b3 = b[w3 + kk];
            c0 += row_dot8(subgroupBroadcast(xa0, 3u), subgroupBroadcast(xb0, 3u), b0, b1, b2, b3);
            if (ROWS > 1u) {
                c1 += row_dot8(subgroupBroadcast(xa1, 3u), subgroupBroadcast(xb1, 3u), b0, b1, b2, b3);
                c2 += row_dot8(subgroupBroadcast(xa2, 3u), subgroupBroadcast(xb2, 3u), b0, b1, b2, b3);
                c3 += row_dot8(subgroupBroadcast(xa3, 3u), subgroupBroadcast(xb3, 3u), b0, b1, b2, b3);
            }
            if (ROWS > 4u) {
                c4 += row_dot8(subgroupBroadcast(xa4, 3u), subgroupBroadcast(xb4, 3u), b0, b1, b2, b3);
                c5 += row_dot8(subgroupBroadcast(xa5, 3u), subgroupBroadcast(xb5, 3u), b0, b1, b2, b3);
                c6 += row_dot8(subgroupBroadcast(xa6, 3u), subgroupBroadcast(xb6, 3u), b0, b1, b2, b3);
                c7 += row_dot8(subgroupBroadcast(xa7, 3u), subgroupBroadcast(xb7, 3u), b0, b1, b2, b3);
            }
        }
        {
            let kk = min(kb + 4u, k8 - 1u) * 32u;
            let b0 = b[w0 + kk];
            let b1 = b[w1 + kk];
            let b2 = b[w2 + kk];
            let b3 = b[w3 + kk];
            c0 += row_dot8(subgroupBroadcast(xa0, 4u), subgroupBroadcast(xb0, 4u), b0, b1, b2, b3);
            if (ROWS > 1u) {
                c1 += row_dot8(subgroupBroadcast(xa1, 4u), subgroupBroadcast(xb1, 4u), b0, b1, b2, b3);
                c2 += row_dot8(subgroupBroadcast(xa2, 4u), subgroupBroadcast(xb2, 4u), b0, b1, b2, b3);
                c3 += row_dot8(subgroupBroadcast(xa3, 4u), subgroupBroadcast(xb3, 4u), b0, b1, b2, b3);
            }
            if (ROWS > 4u) {
                c4 += row_dot8(subgroupBroadcast(xa4, 4u), subgroupBroadcast(xb4, 4u), b0, b1, b2, b3);
                c5 += row_dot8(subgroupBroadcast(xa5, 4u), subgroupBroadcast(xb5, 4u), b0, b1, b2, b3);
                c6 += row_dot8(subgroupBroadcast(xa6, 4u), subgroupBroadcast(xb6, 4u), b0, b1, b2, b3);
                c7 += row_dot8(subgroupBroadcast(xa7, 4u), subgroupBroadcast(xb7, 4u), b0, b1, b2, b3);
            }
        }
        {
            let kk = min(kb + 5u, k8 - 1u) * 32u;
            let b0 = b[w0 + kk];
            let b1 = b[w1 + kk];
            let b2 = b[w2 + kk];
            let b3 = b[w3 + kk];
            c0 += row_dot8(subgroupBroadcast(xa0, 5u), subgroupBroadcast(xb0, 5u), b0, b1, b2, b3);
            if (ROWS > 1u) {
                c1 += row_dot8(subgroupBroadcast(xa1, 5u), subgroupBroadcast(xb1, 5u), b0, b1, b2, b3);
                c2 += row_dot8(subgroupBroadcast(xa2, 5u), subgroupBroadcast(xb2, 5u), b0, b1, b2, b3);
                c3 += row_dot8(subgroupBroadcast(xa3, 5u), subgroupBroadcast(xb3, 5u), b0, b1, b2, b3);
            }
            if (ROWS > 4u) {
                c4 += row_dot8(subgroupBroadcast(xa4, 5u), subgroupBroadcast(xb4, 5u), b0, b1, b2, b3);
                c5 += row_dot8(subgroupBroadcast(xa5, 5u), subgroupBroadcast(xb5, 5u), b0, b1, b2, b3);
                c6 += row_dot8(subgroupBroadcast(xa6, 5u), subgroupBroadcast(xb6, 5u), b0, b1, b2, b3);
                c7 += row_dot8(subgroupBroadcast(xa7, 5u), subgroupBroadcast(xb7, 5u), b0, b1, b2, b3);
            }
        }
        {
            let kk = min(kb + 6u, k8 - 1u) * 32u;
            let b0 = b[w0 + kk];
            let b1 = b[w1 + kk];
            let b2 = b[w2 + kk];
            let b3 = b[w3 + kk];
            c0 += row_dot8(subgroupBroadcast(xa0, 6u), subgroupBroadcast(xb0, 6u), b0, b1, b2, b3);
            if (ROWS > 1u) {
                c1 += row_dot8(subgroupBroadcast(xa1, 6u), subgroupBroadcast(xb1, 6u), b0, b1, b2, b3);
                c2 += row_dot8(subgroupBroadcast(xa2, 6u), subgroupBroadcast(xb2, 6u), b0, b1, b2, b3);
                c3 += row_dot8(subgroupBroadcast(xa3, 6u), subgroupBroadcast(xb3, 6u), b0, b1, b2, b3);
            }
            if (ROWS > 4u) {
                c4 += row_dot8(subgroupBroadcast(xa4, 6u), subgroupBroadcast(xb4, 6u), b0, b1, b2, b3);
                c5 += row_dot8(subgroupBroadcast(xa5, 6u), subgroupBroadcast(xb5, 6u), b0, b1, b2, b3);
                c6 += row_dot8(subgroupBroadcast(xa6, 6u), subgroupBroadcast(xb6, 6u), b0, b1, b2, b3);
                c7 += row_dot8(subgroupBroadcast(xa7, 6u), subgroupBroadcast(xb7, 6u), b0, b1, b2, b3);
            }
        }
        {
            let kk = min(kb + 7u, k8 - 1u) * 32u;
            let b0 = b[w0 + kk];
            let b1 = b[w1 + kk];
            let b2 = b[w2 + kk];
            let b3 = b[w3 + kk];
            c0 += row_dot8(subgroupBroadcast(xa0, 7u), subgroupBroadcast(xb0, 7u), b0, b1, b2, b3);
            if (ROWS > 1u) {
                c1 += row_dot8(subgroupBroadcast(xa1, 7u), subgroupBroadcast(xb1, 7u), b0, b1, b2, b3);
                c2 += row_dot8(subgroupBroadcast(xa2, 7u), subgroupBroadcast(xb2, 7u), b0, b1, b2, b3);
                c3 += row_dot8(subgroupBroadcast(xa3, 7u), subgroupBroadcast(xb3, 7u), b0, b1, b2, b3);
            }
            if (ROWS > 4u) {
                c4 += row_dot8(subgroupBroadcast(xa4, 7u), subgroupBroadcast(xb4, 7u), b0, b1, b2, b3);
                c5 += row_dot8(subgroupBroadcast(xa5, 7u), subgroupBroadcast(xb5, 7u), b0, b1, b2, b3);
                c6 += row_dot8(subgroupBroadcast(xa6, 7u), subgroupBroadcast(xb6, 7u), b0, b1, b2, b3);
                c7 += row_dot8(subgroupBroadcast(xa7, 7u), subgroupBroadcast(xb7, 7u), b0, b1, b2, b3);
            }
        }
    }
    store4(c0, wg.y * ROWS + 0u, col0);
    if (ROWS > 1u) {
        store4(c1, wg.y * ROWS + 1u, col0);
        store4(c2, wg.y * ROWS + 2u, col0);
        store4(c3, wg.y * ROWS + 3u, col0);
    }
    if (ROWS > 4u) {
        store4(c4, wg.y * ROWS + 4u, col0);
        store4(c5, wg.y * ROWS + 5u, col0);
        store4(c6, wg.y * ROWS + 6u, col0);
        store4(c7, wg.y * ROWS + 7u, col0);
    }
}
