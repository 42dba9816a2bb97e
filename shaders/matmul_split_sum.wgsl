// The second pass of a split-K `matmul_tiled` (p.split = 1): out[M, N] (=|+=)
// act(Σ_z part[z] + bias[N]) with the K slices' sums added in order from zero, as the
// unsplit kernel adds them, then a folded norm (p.norm: the slices' sums of the row,
// added in the same order; prelude norm_fold) and the epilogue (flags as `matmul`).
// One lane per vec4 of out. Preludes: matmul_params, gelu, epilogue, norm_flags,
// norm_fold.

@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(1) var<storage, read> part: array<vec4<f32>>;    // [slices, M, N]
@group(0) @binding(2) var<storage, read> bias: array<vec4<f32>>;    // [N] (or a dummy)
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>; // [M, N]
// the KV pool (prelude epilogue's KV_STORE: a qkv projection's keys and values)
@group(0) @binding(4) var<storage, read_write> k_pool: array<vec4<u32>>; // [pool rows, KV] (or a stand-in)
@group(0) @binding(5) var<storage, read_write> v_pool: array<vec4<u32>>; // [pool rows, KV] (or a stand-in)
@group(0) @binding(6) var<storage, read> slots: array<u32>;              // [M] (or a stand-in)
@group(0) @binding(7) var<storage, read> norm_gw: array<vec4<f32>>;      // [N] (p.norm; or a stand-in)
// the rotation (prelude epilogue's ROTARY)
@group(0) @binding(8) var<storage, read> positions: array<u32>;  // [M] (or a stand-in)
@group(0) @binding(9) var<storage, read> rope: array<vec4<f32>>; // [positions, 2, HS] (or a stand-in)

override WG: u32 = 64u;

@compute @workgroup_size(WG)
fn matmul_split_sum(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = gid.x + gid.y * nwg.x * WG;
    let size = p.m * p.n4;
    if (i >= size) {
        return;
    }
    let slices = (4u * p.k4 + p.ks - 1u) / p.ks;
    var t = vec4<f32>(0.0);
    for (var z = 0u; z < slices; z++) {
        t += part[z * size + i];
    }
    var sums = vec2<f32>(0.0);
    if ((p.norm & NORM_ON) != 0u) {
        for (var z = 0u; z < slices; z++) {
            sums += part[stats_at(z, i / p.n4)].xy;
        }
    }
    store_epilogue(norm_fold(t, i % p.n4, sums), i % p.n4, i);
}
