// Subgroup variant of matmul, same bindings, params and epilogue as matmul.wgsl:
//   out[M, N] (=|+=) act(a[M, K] · b[K, N] + bias[N])
// Each invocation computes 16 rows × 4 columns (one vec4); the 16 rows are shared by
// the workgroup. Lane s of each subgroup loads rows s and s + 8 of `a`, and every lane
// takes the 16 rows from those two loads with subgroupBroadcast: on lavapipe each
// storage load is a scalar loop over the lanes, so this cuts the loads of `a` eightfold.
// Needs subgroups of at least 8 lanes (lavapipe: 8 or 16; NVIDIA 32; AMD 32/64).
// The accumulators are separate variables, not an array: llvmpipe keeps dynamically
// indexed arrays in memory.
// Weights are `W` read through `load_w4` (prelude shaders/lib/weights_*.wgsl): f32 here,
// packed half floats in `matmul_f16_subgroup`, which is this file with the f16 prelude.

// b is stored in column panels: N / P panels of P columns, each [K, P] row-major
// (P = 64 when N % 64 == 0, else P = N, which is plain row-major [K, N]). A workgroup
// then walks K through contiguous memory, which the CPU's prefetchers follow; p4 = P / 4.
// The uniform `MatmulParams` comes from the prelude shaders/lib/matmul_params.wgsl.

override WG: u32 = 64u;
const TM: u32 = 16u;

@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;       // [M, K]
@group(0) @binding(2) var<storage, read> b: array<W>;      // [K, N]
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;    // [N] (or a dummy)
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>; // [M, N]

// Epilogue for one output vec4: bias, GELU, residual accumulate.
fn store(row: u32, col: u32, acc: vec4<f32>) {
    var v = acc;
    if ((p.flags & 1u) != 0u) {
        v += bias[col];
    }
    if ((p.flags & 2u) != 0u) {
        v = gelu(v);
    }
    let o = row * p.n4 + col;
    if ((p.flags & 4u) != 0u) {
        v += out[o];
    }
    out[o] = v;
}

@compute @workgroup_size(WG)
fn matmul_subgroup(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let col = gid.x;
    let row0 = wid.y * TM;
    let n4 = p.n4;
    let k4 = p.k4;
    // Every lane runs the loop (broadcasts need the whole subgroup); out-of-range
    // columns and rows read clamped addresses and are not stored.
    let colc = min(col, n4 - 1u);
    let p4 = p.p4;
    let base = (colc / p4) * (4u * k4 * p4) + colc % p4; // this column's panel
    let ra = min(row0 + (lane & 7u), p.m - 1u) * k4;
    let rb = min(row0 + 8u + (lane & 7u), p.m - 1u) * k4;
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
        let bi = base + 4u * k * p4;
        let b0 = load_w4(b[bi]);
        let b1 = load_w4(b[bi + p4]);
        let b2 = load_w4(b[bi + 2u * p4]);
        let b3 = load_w4(b[bi + 3u * p4]);
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
    let acc = array<vec4<f32>, 16>(c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15);
    for (var r = 0u; r < TM; r++) {
        if (row0 + r >= p.m) {
            return;
        }
        store(row0 + r, col, acc[r]);
    }
}
