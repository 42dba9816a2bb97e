// LM head for the rows of a decode step (and the last position of a prefill):
//   out[r, N] = a[a_row0 + r, :] · b[N, K]ᵀ (b is a row chunk of wte), r < R.
// One invocation per 4 outputs and up to MR rows (workgroup y): each step loads one
// vec4 of each of 4 rows of `b` once for the group's rows, and their vec4s of `a`
// (uniform).
// Preludes: matvec_bt_params, batch_rows (MR).
// Weights are `W` read through `load_w4` (prelude shaders/lib/weights_*.wgsl): f32 here,
// packed half floats in `matvec_bt_f16`, which is this file with the f16 prelude.

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: MatvecBtParams;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;     // [a_row0 + R, K]
@group(0) @binding(2) var<storage, read> b: array<W>;     // [N, K]
@group(0) @binding(3) var<storage, read_write> out: array<f32>;   // [R, N]

// wte is stored in row groups (`kernels::matmul_bt::to_row_groups`): for every 32 rows
// and every 8 columns, the 8 values of each row of the group, so the rows a subgroup
// reads side by side lie side by side in memory. Start of `row`, in units of 4 values:
fn row_base(row: u32, k4: u32) -> u32 {
    return (row / 32u) * ((k4 + 1u) / 2u) * 64u + (row % 32u) * 2u;
}

// Columns 4k .. 4k + 3 of a row, from its start, in units of 4 values.
fn col_step(k: u32) -> u32 {
    return (k / 2u) * 64u + (k % 2u);
}

@compute @workgroup_size(WG)
fn matvec_bt(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>) {
    let col0 = gid.x * 4u;
    if (col0 >= p.n) {
        return;
    }
    let k4 = p.k4;
    let last = p.n - 1u;
    let w0 = row_base(min(col0, last), k4);
    let w1 = row_base(min(col0 + 1u, last), k4);
    let w2 = row_base(min(col0 + 2u, last), k4);
    let w3 = row_base(min(col0 + 3u, last), k4);
    let r0 = wg.y * MR;
    let nr = min(MR, p.rows - r0);
    var acc: array<vec4<f32>, MR>;
    for (var i = 0u; i < nr; i++) {
        acc[i] = vec4<f32>(0.0);
    }
    for (var k = 0u; k < k4; k++) {
        let b0 = load_w4(b[w0 + col_step(k)]);
        let b1 = load_w4(b[w1 + col_step(k)]);
        let b2 = load_w4(b[w2 + col_step(k)]);
        let b3 = load_w4(b[w3 + col_step(k)]);
        for (var i = 0u; i < nr; i++) {
            let x = a[(p.a_row0 + r0 + i) * k4 + k];
            acc[i] += vec4<f32>(dot(x, b0), dot(x, b1), dot(x, b2), dot(x, b3));
        }
    }
    for (var i = 0u; i < nr; i++) {
        store4(acc[i], (r0 + i) * p.n, col0);
    }
}
