// Subgroup variant of moe_matmul.wgsl (same bindings, params and flags): the grouped
// expert matmul with 16 rows × 4 columns per invocation. A workgroup's 16 rows lie in
// one expert's segment (segments are padded to 16 rows). Lane s of each subgroup loads
// rows s and s + 8 (gathered by token when flag 8 is set) and every lane takes the 16
// rows from those two loads with subgroupBroadcast, as matmul_subgroup.wgsl does.
// Weights are `W` read through `load_w4` (prelude shaders/lib/weights_*.wgsl): f32 here,
// packed half floats in `moe_matmul_f16_subgroup`, which is this file with the f16 prelude.

// Each expert's [K, N] matrix is stored in column panels (see matmul.wgsl): N / P panels
// of [K, P], P = 64 when N % 64 == 0, else N (row-major); p4 = P / 4.

struct MoeMatmulParams {
    rows: u32, // rows of the grouped list
    n4: u32,   // N / 4
    k4: u32,   // K / 4
    flags: u32,
    p4: u32,   // panel width of each expert's matrix / 4
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

override WG: u32 = 64u;
const TM: u32 = 16u;
const INVALID: u32 = 0xFFFFFFFFu;

@group(0) @binding(0) var<uniform> p: MoeMatmulParams;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;        // [T or rows, K]
@group(0) @binding(2) var<storage, read> w: array<W>;        // [E, K, N]
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;     // [E, N] (or a dummy)
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>; // [rows, N]
@group(0) @binding(5) var<storage, read> row_token: array<u32>;      // [rows]
@group(0) @binding(6) var<storage, read> row_expert: array<u32>;     // [rows]

fn activate(x: vec4<f32>) -> vec4<f32> {
    if ((p.flags & 2u) != 0u) {
        let inner = 0.7978845608028654 * (x + 0.044715 * x * x * x);
        return 0.5 * x * (1.0 + tanh(clamp(inner, vec4<f32>(-15.0), vec4<f32>(15.0))));
    }
    if ((p.flags & 4u) != 0u) {
        return max(x, vec4<f32>(0.0));
    }
    if ((p.flags & 16u) != 0u) {
        return x / (1.0 + exp(-x));
    }
    return x;
}

// Row of `a` that grouped row `r` reads, times K/4.
fn source(r: u32) -> u32 {
    let row = min(r, p.rows - 1u);
    var s = row;
    if ((p.flags & 8u) != 0u) {
        s = row_token[row];
        if (s == INVALID) {
            s = 0u;
        }
    }
    return s * p.k4;
}

@compute @workgroup_size(WG)
fn moe_matmul_subgroup(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let col = gid.x;
    let row0 = wid.y * TM;
    // Segments are [assignments | padding] and a tile never spans two: a tile whose
    // first row is padding is padding throughout, and the whole workgroup leaves.
    if (row0 >= p.rows || row_token[row0] == INVALID) {
        return;
    }
    let n4 = p.n4;
    let k4 = p.k4;
    let colc = min(col, n4 - 1u);
    let e = row_expert[row0];
    let p4 = p.p4;
    // this expert's matrix, this column's panel
    let wbase = e * k4 * 4u * n4 + (colc / p4) * (4u * k4 * p4) + colc % p4;
    let ra = source(row0 + (lane & 7u));
    let rb = source(row0 + 8u + (lane & 7u));
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
        let bi = wbase + 4u * k * p4;
        let b0 = load_w4(w[bi]);
        let b1 = load_w4(w[bi + p4]);
        let b2 = load_w4(w[bi + 2u * p4]);
        let b3 = load_w4(w[bi + 3u * p4]);
        let xa = a[ra + k];
        let xb = a[rb + k];
        let a0 = subgroupBroadcast(xa, 0u);
        c0 += a0.x * b0 + a0.y * b1 + a0.z * b2 + a0.w * b3;
        let a1 = subgroupBroadcast(xa, 1u);
        c1 += a1.x * b0 + a1.y * b1 + a1.z * b2 + a1.w * b3;
        let a2 = subgroupBroadcast(xa, 2u);
        c2 += a2.x * b0 + a2.y * b1 + a2.z * b2 + a2.w * b3;
        let a3 = subgroupBroadcast(xa, 3u);
        c3 += a3.x * b0 + a3.y * b1 + a3.z * b2 + a3.w * b3;
        let a4 = subgroupBroadcast(xa, 4u);
        c4 += a4.x * b0 + a4.y * b1 + a4.z * b2 + a4.w * b3;
        let a5 = subgroupBroadcast(xa, 5u);
        c5 += a5.x * b0 + a5.y * b1 + a5.z * b2 + a5.w * b3;
        let a6 = subgroupBroadcast(xa, 6u);
        c6 += a6.x * b0 + a6.y * b1 + a6.z * b2 + a6.w * b3;
        let a7 = subgroupBroadcast(xa, 7u);
        c7 += a7.x * b0 + a7.y * b1 + a7.z * b2 + a7.w * b3;
        let a8 = subgroupBroadcast(xb, 0u);
        c8 += a8.x * b0 + a8.y * b1 + a8.z * b2 + a8.w * b3;
        let a9 = subgroupBroadcast(xb, 1u);
        c9 += a9.x * b0 + a9.y * b1 + a9.z * b2 + a9.w * b3;
        let a10 = subgroupBroadcast(xb, 2u);
        c10 += a10.x * b0 + a10.y * b1 + a10.z * b2 + a10.w * b3;
        let a11 = subgroupBroadcast(xb, 3u);
        c11 += a11.x * b0 + a11.y * b1 + a11.z * b2 + a11.w * b3;
        let a12 = subgroupBroadcast(xb, 4u);
        c12 += a12.x * b0 + a12.y * b1 + a12.z * b2 + a12.w * b3;
        let a13 = subgroupBroadcast(xb, 5u);
        c13 += a13.x * b0 + a13.y * b1 + a13.z * b2 + a13.w * b3;
        let a14 = subgroupBroadcast(xb, 6u);
        c14 += a14.x * b0 + a14.y * b1 + a14.z * b2 + a14.w * b3;
        let a15 = subgroupBroadcast(xb, 7u);
        c15 += a15.x * b0 + a15.y * b1 + a15.z * b2 + a15.w * b3;
    }
    if (col >= n4) {
        return;
    }
    var bv = vec4<f32>(0.0);
    if ((p.flags & 1u) != 0u) {
        bv = bias[e * n4 + col];
    }
    let acc = array<vec4<f32>, 16>(c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15);
    for (var r = 0u; r < TM; r++) {
        let row = row0 + r;
        if (row >= p.rows) {
            return;
        }
        if (row_token[row] != INVALID) {
            out[row * n4 + col] = activate(acc[r] + bv);
        }
    }
}
