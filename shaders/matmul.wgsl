// out[M, N] (=|+=) act(a[M, K] · b[K, N] + bias[N])
// b is stored [in, out] as in GPT-2 checkpoints. Epilogue flags:
//   bit 0: add bias, bit 1: GELU (tanh form), bit 2: accumulate into out (residual add),
//   and prelude epilogue's ROTARY and KV_STORE (a qkv projection).
// Register blocking: each invocation computes 8 rows × 4 columns (one vec4). All
// invocations of a workgroup share the same rows, so the loads of `a` are uniform
// (cheap on SIMD-over-lanes CPUs such as lavapipe) and each load of `b` feeds 8 FMAs.
// Weights are `W` read through `load_w4` (prelude shaders/lib/weights_*.wgsl): f32 here,
// packed half floats in `matmul_f16`, which is this file with the f16 prelude.

// b is stored in column panels: N / P panels of P columns, each [K, P] row-major
// (P = 64 when N % 64 == 0, else P = N, which is plain row-major [K, N]). A workgroup
// then walks K through contiguous memory, which the CPU's prefetchers follow; p4 = P / 4.
// The uniform `MatmulParams` comes from the prelude shaders/lib/matmul_params.wgsl.

override WG: u32 = 64u;
const TM: u32 = 8u;

@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;       // [M, K]
@group(0) @binding(2) var<storage, read> b: array<W>;      // [K, N]
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;    // [N] (or a dummy)
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>; // [M, N]
// the KV pool (prelude epilogue's KV_STORE: a qkv projection's keys and values)
@group(0) @binding(5) var<storage, read_write> k_pool: array<vec4<u32>>; // [pool rows, KV] (or a stand-in)
@group(0) @binding(6) var<storage, read_write> v_pool: array<vec4<u32>>; // [pool rows, KV] (or a stand-in)
@group(0) @binding(7) var<storage, read> slots: array<u32>;              // [M] (or a stand-in)
// the rotation (prelude epilogue's ROTARY)
@group(0) @binding(8) var<storage, read> positions: array<u32>;  // [M] (or a stand-in)
@group(0) @binding(9) var<storage, read> rope: array<vec4<f32>>; // [positions, 2, HS] (or a stand-in)

@compute @workgroup_size(WG)
fn matmul(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let col = gid.x;
    let row0 = wid.y * TM;
    let n4 = p.n4;
    let k4 = p.k4;
    let colc = min(col, n4 - 1u);
    let p4 = p.p4;
    let base = (colc / p4) * (4u * k4 * p4) + colc % p4; // this column's panel
    var rows: array<u32, 8>;
    for (var r = 0u; r < TM; r++) {
        rows[r] = min(row0 + r, p.m - 1u) * k4;
    }
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var acc4 = vec4<f32>(0.0);
    var acc5 = vec4<f32>(0.0);
    var acc6 = vec4<f32>(0.0);
    var acc7 = vec4<f32>(0.0);
    for (var k = 0u; k < k4; k++) {
        let bi = base + 4u * k * p4;
        let b0 = load_w4(b[bi]);
        let b1 = load_w4(b[bi + p4]);
        let b2 = load_w4(b[bi + 2u * p4]);
        let b3 = load_w4(b[bi + 3u * p4]);
        var av = a[rows[0] + k];
        acc0 += av.x * b0 + av.y * b1 + av.z * b2 + av.w * b3;
        av = a[rows[1] + k];
        acc1 += av.x * b0 + av.y * b1 + av.z * b2 + av.w * b3;
        av = a[rows[2] + k];
        acc2 += av.x * b0 + av.y * b1 + av.z * b2 + av.w * b3;
        av = a[rows[3] + k];
        acc3 += av.x * b0 + av.y * b1 + av.z * b2 + av.w * b3;
        av = a[rows[4] + k];
        acc4 += av.x * b0 + av.y * b1 + av.z * b2 + av.w * b3;
        av = a[rows[5] + k];
        acc5 += av.x * b0 + av.y * b1 + av.z * b2 + av.w * b3;
        av = a[rows[6] + k];
        acc6 += av.x * b0 + av.y * b1 + av.z * b2 + av.w * b3;
        av = a[rows[7] + k];
        acc7 += av.x * b0 + av.y * b1 + av.z * b2 + av.w * b3;
    }
    if (col >= n4) {
        return;
    }
    let accs = array<vec4<f32>, 8>(acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7);
    for (var r = 0u; r < TM; r++) {
        let row = row0 + r;
        if (row >= p.m) {
            return;
        }
        store_epilogue(accs[r], col, row * n4 + col); // prelude epilogue
    }
}
