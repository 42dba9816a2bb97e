// out[M, N] (=|+=) act(a[M, K] · b[K, N] + bias[N]) on tensor cores, for half-float
// weights (`dtype: "float16"`) on adapters with cooperative matrices
// (Features::EXPERIMENTAL_COOPERATIVE_MATRIX, 16×16×16 f16 inputs with f32
// accumulators, subgroups of 32 lanes). Epilogue flags as `matmul` (prelude `epilogue`); preludes: gelu.
//
// A workgroup of four subgroups computes a 64 × 64 tile of out. For each step of 16
// along K the lanes stage a 64 × 16 tile of `a` (rounded to f16, as cuBLAS's fp16
// GEMM takes its inputs) and a 16 × 64 tile of `b` in workgroup memory; each subgroup
// then multiplies its 32 × 32 quarter as 2 × 2 blocks of coop_mat16x16 with f32
// accumulators. K is walked in slices of p.ks (as `matmul_tiled`: each slice from zero
// accumulators, the slice sums added in order, kept per lane after a pass through
// workgroup memory); with p.split workgroup z takes slice z alone and writes its sum
// to `part` for `matmul_split_sum`, so a row's numbers are the same split or not.
// The sums go to the epilogue.
// b is stored in column panels of packed halves as for `matmul_f16`.
// (naga's SPIR-V writer wants the index of a coopLoad/coopStore pointer in a `let`.)
// With p.norm the norm before the projection is folded in, with GATED SwiGLU before
// it (preludes stage_tile, norm_fold, as `matmul_tiled`). A folded norm's staged
// (x - s) · g is not normalised yet: it goes to f16 times FOLD_SCALE, a power of two
// (exact both ways), so a residual stream up to ~10⁶ fits where f16 stops at 65,504,
// and its sums are scaled back before the epilogue; values below ~10⁻³ then lose
// relative precision as f16 subnormals, an absolute error under 10⁻⁶.
// The uniform `MatmulParams` comes from the prelude shaders/lib/matmul_params.wgsl.

enable f16;
enable wgpu_cooperative_matrix;

// Four subgroups of 32 lanes.
override WG: u32 = 128u;

// The staging scale of a folded norm's (x - s) · g (see above).
const FOLD_SCALE: f32 = 0.0625;

@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;       // [M, K]
@group(0) @binding(2) var<storage, read> b: array<vec2<u32>>;       // [K, N] as f16 pairs
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;    // [N] (or a dummy)
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>; // [M, N]
@group(0) @binding(5) var<storage, read_write> part: array<vec4<f32>>; // [slices, M, N]
// the KV pool (prelude epilogue's KV_STORE: a qkv projection's keys and values)
@group(0) @binding(6) var<storage, read_write> k_pool: array<vec4<u32>>; // [pool rows, KV] (or a stand-in)
@group(0) @binding(7) var<storage, read_write> v_pool: array<vec4<u32>>; // [pool rows, KV] (or a stand-in)
@group(0) @binding(8) var<storage, read> slots: array<u32>;              // [M] (or a stand-in)
// the norm before the projection (p.norm; preludes stage_tile, norm_fold), or stand-ins
@group(0) @binding(9) var<storage, read> norm_w: array<vec4<f32>>;   // [K]
@group(0) @binding(10) var<storage, read> norm_gw: array<vec4<f32>>; // [N]: g · w
// the rotation (prelude epilogue's ROTARY)
@group(0) @binding(11) var<storage, read> positions: array<u32>;  // [M] (or a stand-in)
@group(0) @binding(12) var<storage, read> rope: array<vec4<f32>>; // [positions, 2, HS] (or a stand-in)

var<workgroup> sa: array<f16, 1024>; // [64][16] row-major
var<workgroup> sb: array<f16, 1024>; // [16][64] row-major
var<workgroup> sc: array<f32, 4096>; // [64][64] row-major
var<workgroup> row_sums: array<vec2<f32>, 64>; // a folded norm's sums of each row

@compute @workgroup_size(WG)
fn matmul_coop(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
) {
    let row0 = wg.y * 64u;
    let col40 = wg.x * 16u; // first vec4 column of the tile
    let sg = lid / 32u;
    let r0 = (sg / 2u) * 32u; // this subgroup's quarter
    let c0 = (sg % 2u) * 32u;
    // accumulators start from zeros in workgroup memory
    for (var i = lid; i < 4096u; i += WG) {
        sc[i] = 0.0;
    }
    workgroupBarrier();
    let z00 = r0 * 64u + c0;
    let z01 = r0 * 64u + c0 + 16u;
    let z10 = (r0 + 16u) * 64u + c0;
    let z11 = (r0 + 16u) * 64u + c0 + 16u;
    let zero = coopLoadT<coop_mat16x16<f32, C>>(&sc[z00], 64u);
    let ar = lid / 2u;
    let ak = (lid % 2u) * 8u;
    let arow = row0 + ar;
    let shift = row_shift(arow);
    let normed = (p.norm & NORM_ON) != 0u;
    let scale = select(1.0, FOLD_SCALE, normed);
    // the K slices of this workgroup: all of them, or slice z of a split
    let ks = p.ks;
    var k_lo = 0u;
    var k_hi = 4u * p.k4;
    if (p.split != 0u) {
        k_lo = wg.z * ks;
        k_hi = min(k_lo + ks, k_hi);
    }
    // this lane's 8 vec4s of the tile (vec4 e = lid + i · WG: row e / 16, column e % 16)
    var tot = array<vec4<f32>, 8>();
    var sums = vec2<f32>(0.0); // row ar's, the slices' added in order
    for (var s0 = k_lo; s0 < k_hi; s0 += ks) {
        var share = vec2<f32>(0.0); // this lane's of the slice
        var c00 = zero;
        var c01 = zero;
        var c10 = zero;
        var c11 = zero;
        let s1 = min(s0 + ks, k_hi);
        for (var kt = s0; kt < s1; kt += 16u) {
            // stage a: each lane 8 values of one row
            for (var i = 0u; i < 2u; i++) {
                let kq = (kt + ak) / 4u + i;
                var v = vec4<f32>(0.0);
                if (arow < p.m && kq < p.k4) {
                    v = stage_a(arow, kq, shift, &share) * scale;
                }
                let o = ar * 16u + ak + i * 4u;
                sa[o] = f16(v.x);
                sa[o + 1u] = f16(v.y);
                sa[o + 2u] = f16(v.z);
                sa[o + 3u] = f16(v.w);
            }
            // stage b: each lane 2 vec4s (of halves) of the 16 × 64 tile
            for (var i = 0u; i < 2u; i++) {
                let e = lid + i * WG;
                let kr = e / 16u;
                let c4 = e % 16u;
                let col4 = col40 + c4;
                let krow = kt + kr;
                var w = vec2<u32>(0u);
                if (col4 < p.n4 && krow < 4u * p.k4) {
                    let base = (col4 / p.p4) * (4u * p.k4 * p.p4) + col4 % p.p4;
                    w = b[base + krow * p.p4];
                }
                let lo = unpack2x16float(w.x);
                let hi = unpack2x16float(w.y);
                let o = kr * 64u + c4 * 4u;
                sb[o] = f16(lo.x);
                sb[o + 1u] = f16(lo.y);
                sb[o + 2u] = f16(hi.x);
                sb[o + 3u] = f16(hi.y);
            }
            workgroupBarrier();
            let ao0 = r0 * 16u;
            let ao1 = (r0 + 16u) * 16u;
            let bo0 = c0;
            let bo1 = c0 + 16u;
            let a0 = coopLoadT<coop_mat16x16<f16, A>>(&sa[ao0], 16u);
            let a1 = coopLoadT<coop_mat16x16<f16, A>>(&sa[ao1], 16u);
            let b0 = coopLoadT<coop_mat16x16<f16, B>>(&sb[bo0], 64u);
            let b1 = coopLoadT<coop_mat16x16<f16, B>>(&sb[bo1], 64u);
            c00 = coopMultiplyAdd(a0, b0, c00);
            c01 = coopMultiplyAdd(a0, b1, c01);
            c10 = coopMultiplyAdd(a1, b0, c10);
            c11 = coopMultiplyAdd(a1, b1, c11);
            workgroupBarrier();
        }
        coopStoreT(c00, &sc[z00], 64u);
        coopStoreT(c01, &sc[z01], 64u);
        coopStoreT(c10, &sc[z10], 64u);
        coopStoreT(c11, &sc[z11], 64u);
        workgroupBarrier();
        for (var i = 0u; i < 8u; i++) {
            let so = ((lid + i * WG) / 16u) * 64u + ((lid + i * WG) % 16u) * 4u;
            tot[i] += vec4<f32>(sc[so], sc[so + 1u], sc[so + 2u], sc[so + 3u]) / scale;
        }
        workgroupBarrier();
        if (normed) {
            sums += row_lanes_sum(lid, 2u, share); // the 2 lanes staging row ar
        }
    }
    if (normed) {
        if (lid % 2u == 0u) {
            row_sums[ar] = sums;
            if (p.split != 0u && wg.x == 0u && arow < p.m) {
                part[stats_at(wg.z, arow)] = vec4<f32>(sums, 0.0, 0.0);
            }
        }
        workgroupBarrier();
    }
    // epilogue (or the slice's sum): 1024 vec4s of the tile, 8 per lane
    for (var i = 0u; i < 8u; i++) {
        let e = lid + i * WG;
        let row = row0 + e / 16u;
        let col = col40 + e % 16u;
        if (row < p.m && col < p.n4) {
            if (p.split != 0u) {
                part[(wg.z * p.m + row) * p.n4 + col] = tot[i];
            } else {
                let o = norm_fold(tot[i], col, row_sums[e / 16u]);
                store_epilogue(o, col, row * p.n4 + col);
            }
        }
    }
}
