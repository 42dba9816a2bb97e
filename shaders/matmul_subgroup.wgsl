// Subgroup variant of matmul, same bindings, params and epilogue as matmul.wgsl:
//   out[M, N] (=|+=) act(a[M, K] · b[K, N] + bias[N])
// Each invocation computes 16 rows × 4 columns (one vec4); the 16 rows are shared by
// the workgroup and taken with subgroup broadcasts (prelude `tile16_subgroup`).
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
@group(0) @binding(2) var<storage, read> w: array<W>;      // [K, N]
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
    let acc = tile16_subgroup(vec4<u32>(base, p4, 0u, 0u), k4, ra, rb); // prelude `tile16_subgroup`
    if (col >= n4) {
        return;
    }
    for (var r = 0u; r < TM; r++) {
        if (row0 + r >= p.m) {
            return;
        }
        store_epilogue(acc[r], col, (row0 + r) * n4 + col); // prelude `epilogue`
    }
}
