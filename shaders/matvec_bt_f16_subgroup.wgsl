// Subgroup variant of matvec_bt_f16 (LM head for decode rows, half-float wte):
//   out[r, N] = a[a_row0 + r] · b[N, K]ᵀ, same bindings and params.
// Each invocation computes 4 outputs of MR rows from one vec4<u32> load (8 halves) per
// row of `b` and step of 8 along K; lane s of a subgroup loads the 8 values of `a` for
// step kb + s of each row, which every lane then takes with subgroupBroadcast. On
// lavapipe every storage load is a scalar loop over the lanes, so this halves the loads
// per weight against matvec_bt_f16, drops the per-lane reloads of `a`, and shares each
// weight load among the MR rows. Needs K % 8 == 0 and subgroups of at least 8 lanes;
// the host runs one subgroup per workgroup.
// Preludes: matvec_bt_params (MatvecBtParams, store4), batch_rows (MR = 4).

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: MatvecBtParams;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;     // [a_row0 + R, K]
@group(0) @binding(2) var<storage, read> b: array<vec4<u32>>;     // [N, K] as f16 pairs
@group(0) @binding(3) var<storage, read_write> out: array<f32>;   // [R, N]

var<private> acc: array<vec4<f32>, MR>;
var<private> wrow: vec4<u32>; // start of this invocation's 4 rows of b

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

// Step `s` of 8 along K for the MR rows, whose values there are (x0, x1).
fn rows_dot(s: u32, x0: array<vec4<f32>, MR>, x1: array<vec4<f32>, MR>) {
    let kk = min(s, p.k4 / 2u - 1u) * 32u;
    let b0 = b[wrow.x + kk];
    let b1 = b[wrow.y + kk];
    let b2 = b[wrow.z + kk];
    let b3 = b[wrow.w + kk];
    for (var i = 0u; i < MR; i++) {
        acc[i] += vec4<f32>(
            dot(x0[i], low(b0)) + dot(x1[i], high(b0)),
            dot(x0[i], low(b1)) + dot(x1[i], high(b1)),
            dot(x0[i], low(b2)) + dot(x1[i], high(b2)),
            dot(x0[i], low(b3)) + dot(x1[i], high(b3)),
        );
    }
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
    // Every lane runs the loop (broadcasts need the whole subgroup); out-of-range
    // outputs read clamped rows and are not stored, steps past K read zeros of `a`.
    wrow = vec4<u32>(
        row_base8(min(col0, last), k8),
        row_base8(min(col0 + 1u, last), k8),
        row_base8(min(col0 + 2u, last), k8),
        row_base8(min(col0 + 3u, last), k8),
    );
    var xo: array<u32, MR>;
    for (var i = 0u; i < MR; i++) {
        xo[i] = (p.a_row0 + min(r0 + i, p.rows - 1u)) * p.k4;
        acc[i] = vec4<f32>(0.0);
    }
    var xl0: array<vec4<f32>, MR>;
    var xl1: array<vec4<f32>, MR>;
    for (var kb = 0u; kb < k8; kb += 8u) {
        let s = kb + (lane & 7u);
        for (var i = 0u; i < MR; i++) {
            let g = xo[i] + 2u * min(s, k8 - 1u);
            xl0[i] = select(vec4<f32>(0.0), a[g], s < k8);
            xl1[i] = select(vec4<f32>(0.0), a[g + 1u], s < k8);
        }
        rows_dot(kb + 0u, array<vec4<f32>, MR>(
            subgroupBroadcast(xl0[0], 0u), subgroupBroadcast(xl0[1], 0u),
            subgroupBroadcast(xl0[2], 0u), subgroupBroadcast(xl0[3], 0u)),
            array<vec4<f32>, MR>(
            subgroupBroadcast(xl1[0], 0u), subgroupBroadcast(xl1[1], 0u),
            subgroupBroadcast(xl1[2], 0u), subgroupBroadcast(xl1[3], 0u)));
        rows_dot(kb + 1u, array<vec4<f32>, MR>(
            subgroupBroadcast(xl0[0], 1u), subgroupBroadcast(xl0[1], 1u),
            subgroupBroadcast(xl0[2], 1u), subgroupBroadcast(xl0[3], 1u)),
            array<vec4<f32>, MR>(
            subgroupBroadcast(xl1[0], 1u), subgroupBroadcast(xl1[1], 1u),
            subgroupBroadcast(xl1[2], 1u), subgroupBroadcast(xl1[3], 1u)));
        rows_dot(kb + 2u, array<vec4<f32>, MR>(
            subgroupBroadcast(xl0[0], 2u), subgroupBroadcast(xl0[1], 2u),
            subgroupBroadcast(xl0[2], 2u), subgroupBroadcast(xl0[3], 2u)),
            array<vec4<f32>, MR>(
            subgroupBroadcast(xl1[0], 2u), subgroupBroadcast(xl1[1], 2u),
            subgroupBroadcast(xl1[2], 2u), subgroupBroadcast(xl1[3], 2u)));
        rows_dot(kb + 3u, array<vec4<f32>, MR>(
            subgroupBroadcast(xl0[0], 3u), subgroupBroadcast(xl0[1], 3u),
            subgroupBroadcast(xl0[2], 3u), subgroupBroadcast(xl0[3], 3u)),
            array<vec4<f32>, MR>(
            subgroupBroadcast(xl1[0], 3u), subgroupBroadcast(xl1[1], 3u),
            subgroupBroadcast(xl1[2], 3u), subgroupBroadcast(xl1[3], 3u)));
        rows_dot(kb + 4u, array<vec4<f32>, MR>(
            subgroupBroadcast(xl0[0], 4u), subgroupBroadcast(xl0[1], 4u),
            subgroupBroadcast(xl0[2], 4u), subgroupBroadcast(xl0[3], 4u)),
            array<vec4<f32>, MR>(
            subgroupBroadcast(xl1[0], 4u), subgroupBroadcast(xl1[1], 4u),
            subgroupBroadcast(xl1[2], 4u), subgroupBroadcast(xl1[3], 4u)));
        rows_dot(kb + 5u, array<vec4<f32>, MR>(
            subgroupBroadcast(xl0[0], 5u), subgroupBroadcast(xl0[1], 5u),
            subgroupBroadcast(xl0[2], 5u), subgroupBroadcast(xl0[3], 5u)),
            array<vec4<f32>, MR>(
            subgroupBroadcast(xl1[0], 5u), subgroupBroadcast(xl1[1], 5u),
            subgroupBroadcast(xl1[2], 5u), subgroupBroadcast(xl1[3], 5u)));
        rows_dot(kb + 6u, array<vec4<f32>, MR>(
            subgroupBroadcast(xl0[0], 6u), subgroupBroadcast(xl0[1], 6u),
            subgroupBroadcast(xl0[2], 6u), subgroupBroadcast(xl0[3], 6u)),
            array<vec4<f32>, MR>(
            subgroupBroadcast(xl1[0], 6u), subgroupBroadcast(xl1[1], 6u),
            subgroupBroadcast(xl1[2], 6u), subgroupBroadcast(xl1[3], 6u)));
        rows_dot(kb + 7u, array<vec4<f32>, MR>(
            subgroupBroadcast(xl0[0], 7u), subgroupBroadcast(xl0[1], 7u),
            subgroupBroadcast(xl0[2], 7u), subgroupBroadcast(xl0[3], 7u)),
            array<vec4<f32>, MR>(
            subgroupBroadcast(xl1[0], 7u), subgroupBroadcast(xl1[1], 7u),
            subgroupBroadcast(xl1[2], 7u), subgroupBroadcast(xl1[3], 7u)));
    }
    for (var i = 0u; i < MR; i++) {
        if (r0 + i < p.rows) {
            store4(acc[i], (r0 + i) * p.n, col0);
        }
    }
}
