// Subgroup variant of matmul_bt (same bindings and params): out[M, N] = a[M, K] · b[N, K]ᵀ,
// the tied LM head. Each invocation computes 16 rows × 4 columns; rows of `a` are loaded
// once per subgroup (lanes s and s + 8) and shared with subgroupBroadcast, as in
// matmul_subgroup.wgsl. Needs subgroups of at least 8 lanes.
// Weights are `W` read through `load_w4` (prelude shaders/lib/weights_*.wgsl): f32 here,
// packed half floats in `matmul_bt_f16_subgroup`, which is this file with the f16 prelude.

struct MatmulBtParams {
    m: u32,  // rows of a and out
    n: u32,  // rows of b = columns of out
    k4: u32, // K / 4
    a_row0: u32, // row of `a` that output row 0 reads (last-position logits)
}

override WG: u32 = 64u;
const TM: u32 = 16u;

@group(0) @binding(0) var<uniform> p: MatmulBtParams;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;     // [a_row0 + M, K]
@group(0) @binding(2) var<storage, read> b: array<W>;     // [N, K]
@group(0) @binding(3) var<storage, read_write> out: array<f32>;   // [M, N]

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

fn store(row: u32, col0: u32, v: vec4<f32>) {
    let o = row * p.n + col0;
    if (col0 < p.n) { out[o] = v.x; }
    if (col0 + 1u < p.n) { out[o + 1u] = v.y; }
    if (col0 + 2u < p.n) { out[o + 2u] = v.z; }
    if (col0 + 3u < p.n) { out[o + 3u] = v.w; }
}

@compute @workgroup_size(WG)
fn matmul_bt_subgroup(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let col0 = gid.x * 4u;
    let row0 = wid.y * TM;
    let k4 = p.k4;
    let last = p.n - 1u;
    let w0 = row_base(min(col0, last), k4);
    let w1 = row_base(min(col0 + 1u, last), k4);
    let w2 = row_base(min(col0 + 2u, last), k4);
    let w3 = row_base(min(col0 + 3u, last), k4);
    let ra = (p.a_row0 + min(row0 + (lane & 7u), p.m - 1u)) * k4;
    let rb = (p.a_row0 + min(row0 + 8u + (lane & 7u), p.m - 1u)) * k4;
    var c0 = vec4<f32>(0.0);
    var c1 = vec4<f32>(0.0);
    var c2 = vec4<f32>(0.0);
    var c3 = vec4<f32>(0.0);
    var c4 = vec4<f32>(0.0);
    var c5 = vec4<f32>(0.0);
    var c6 = vec4<f32>(0.0);
    var c7 = vec4<f32>(0.0);
    var c8 = vec4<f32>(0.0);
    var c9 = vec4<f32>(0.0);
    var c10 = vec4<f32>(0.0);
    var c11 = vec4<f32>(0.0);
    var c12 = vec4<f32>(0.0);
    var c13 = vec4<f32>(0.0);
    var c14 = vec4<f32>(0.0);
    var c15 = vec4<f32>(0.0);
    for (var k = 0u; k < k4; k++) {
        let b0 = load_w4(b[w0 + col_step(k)]);
        let b1 = load_w4(b[w1 + col_step(k)]);
        let b2 = load_w4(b[w2 + col_step(k)]);
        let b3 = load_w4(b[w3 + col_step(k)]);
        let xa = a[ra + k];
        let xb = a[rb + k];
        let a0 = subgroupBroadcast(xa, 0u);
        c0 += vec4<f32>(dot(a0, b0), dot(a0, b1), dot(a0, b2), dot(a0, b3));
        let a1 = subgroupBroadcast(xa, 1u);
        c1 += vec4<f32>(dot(a1, b0), dot(a1, b1), dot(a1, b2), dot(a1, b3));
        let a2 = subgroupBroadcast(xa, 2u);
        c2 += vec4<f32>(dot(a2, b0), dot(a2, b1), dot(a2, b2), dot(a2, b3));
        let a3 = subgroupBroadcast(xa, 3u);
        c3 += vec4<f32>(dot(a3, b0), dot(a3, b1), dot(a3, b2), dot(a3, b3));
        let a4 = subgroupBroadcast(xa, 4u);
        c4 += vec4<f32>(dot(a4, b0), dot(a4, b1), dot(a4, b2), dot(a4, b3));
        let a5 = subgroupBroadcast(xa, 5u);
        c5 += vec4<f32>(dot(a5, b0), dot(a5, b1), dot(a5, b2), dot(a5, b3));
        let a6 = subgroupBroadcast(xa, 6u);
        c6 += vec4<f32>(dot(a6, b0), dot(a6, b1), dot(a6, b2), dot(a6, b3));
        let a7 = subgroupBroadcast(xa, 7u);
        c7 += vec4<f32>(dot(a7, b0), dot(a7, b1), dot(a7, b2), dot(a7, b3));
        let a8 = subgroupBroadcast(xb, 0u);
        c8 += vec4<f32>(dot(a8, b0), dot(a8, b1), dot(a8, b2), dot(a8, b3));
        let a9 = subgroupBroadcast(xb, 1u);
        c9 += vec4<f32>(dot(a9, b0), dot(a9, b1), dot(a9, b2), dot(a9, b3));
        let a10 = subgroupBroadcast(xb, 2u);
        c10 += vec4<f32>(dot(a10, b0), dot(a10, b1), dot(a10, b2), dot(a10, b3));
        let a11 = subgroupBroadcast(xb, 3u);
        c11 += vec4<f32>(dot(a11, b0), dot(a11, b1), dot(a11, b2), dot(a11, b3));
        let a12 = subgroupBroadcast(xb, 4u);
        c12 += vec4<f32>(dot(a12, b0), dot(a12, b1), dot(a12, b2), dot(a12, b3));
        let a13 = subgroupBroadcast(xb, 5u);
        c13 += vec4<f32>(dot(a13, b0), dot(a13, b1), dot(a13, b2), dot(a13, b3));
        let a14 = subgroupBroadcast(xb, 6u);
        c14 += vec4<f32>(dot(a14, b0), dot(a14, b1), dot(a14, b2), dot(a14, b3));
        let a15 = subgroupBroadcast(xb, 7u);
        c15 += vec4<f32>(dot(a15, b0), dot(a15, b1), dot(a15, b2), dot(a15, b3));
    }
    let acc = array<vec4<f32>, 16>(c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15);
    for (var r = 0u; r < TM; r++) {
        if (row0 + r >= p.m) {
            return;
        }
        store(row0 + r, col0, acc[r]);
    }
}
