// out[M, N] (=|+=) act(a[M, K] · b[K, N] + bias[N]) for hardware GPUs, epilogue flags as
// `matmul` (bit 0 bias, bit 1 GELU, bit 2 accumulate). Preludes: gelu, and the weight
// type `W` / `load_w4` (f32, or packed half floats for `matmul_f16_tiled`).
//
// Workgroup-memory tiling with register blocking: a workgroup of 256 lanes computes a
// 64 × 64 tile of out. For each step of 16 along K it stages a 64 × 16 tile of `a`
// and a 16 × 64 tile of `b` in workgroup memory (each lane loads one vec4 of each:
// adjacent lanes read adjacent vec4s, so the loads coalesce), then every lane
// multiplies 4 rows × 4 columns (one vec4) out of the staged tiles, so each staged
// value feeds 4 (a) or 16 (b) FMAs. The software kernel `matmul` instead has every
// lane stream its own column of `b` from memory.
//
// K is walked in slices of p.ks (a multiple of BK, fixed by the weight's shape): each
// slice is summed from zero, and the slice sums are added in order. With p.split the
// K slices go to workgroups z = 0, 1, ... (a small grid, e.g. a prefill chunk of 16
// rows, gets the GPU's width): each writes its slice sum to `part` and
// `matmul_split_sum` adds them in the same order and applies the epilogue. Either way
// a row's numbers are the same expression, split or not, whatever its batch.
//
// b is stored in column panels as for `matmul`: N / P panels of P columns, each
// [K, P] row-major (P = 64 when N % 64 == 0, else P = N); p4 = P / 4.
// With p.norm the norm before the projection is folded in, `a` then the residual
// stream (preludes stage_tile, norm_fold: the staging lanes sum each row's statistics
// as they stage it, the epilogue normalises by linearity; a split's slices write
// their sums after their products, for `matmul_split_sum`); with GATED, SwiGLU
// before it (prelude stage_tile).
// The uniform `MatmulParams` comes from the prelude shaders/lib/matmul_params.wgsl.

// The tile shape below assumes 256 lanes.
override WG: u32 = 256u;
const BM: u32 = 64u;  // rows of the tile
const BN4: u32 = 16u; // vec4 columns of the tile (64 columns)
const BK: u32 = 16u;  // K step (4 vec4)

@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;       // [M, K]
@group(0) @binding(2) var<storage, read> b: array<W>;               // [K, N]
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

var<workgroup> ta: array<vec4<f32>, 256>; // [BM][BK / 4]: row r, k-quad q at r * 4 + q
var<workgroup> tb: array<vec4<f32>, 256>; // [BK][BN4]: k-row r, column c at r * 16 + c
var<workgroup> row_sums: array<vec2<f32>, 64>; // [BM]: a folded norm's sums of each row

@compute @workgroup_size(WG)
fn matmul_tiled(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
) {
    let row0 = wg.y * BM;
    let col0 = wg.x * BN4;
    let k4 = p.k4;
    let p4 = p.p4;
    // what this lane stages: a row r / k-quad q of `a`, a k-row kr / column cq of `b`
    let ar = lid / 4u;
    let aq = lid % 4u;
    let br = lid / BN4;
    let bc = lid % BN4;
    let bcol = col0 + bc;
    let bcol_c = min(bcol, p.n4 - 1u);
    let bbase = (bcol_c / p4) * (4u * k4 * p4) + bcol_c % p4; // this column's panel
    let arow = row0 + ar;
    let shift = row_shift(arow);
    let normed = (p.norm & NORM_ON) != 0u;
    // what this lane computes: rows tr * 4 .. + 4, vec4 column tc of the tile
    let tr = lid / BN4;
    let tc = lid % BN4;
    // the K slices of this workgroup: all of them, or slice z of a split
    let ks = p.ks;
    var k_lo = 0u;
    var k_hi = k4 * 4u;
    if (p.split != 0u) {
        k_lo = wg.z * ks;
        k_hi = min(k_lo + ks, k_hi);
    }
    var tot0 = vec4<f32>(0.0);
    var tot1 = vec4<f32>(0.0);
    var tot2 = vec4<f32>(0.0);
    var tot3 = vec4<f32>(0.0);
    var sums = vec2<f32>(0.0); // row ar's, the slices' added in order
    for (var s0 = k_lo; s0 < k_hi; s0 += ks) {
        var share = vec2<f32>(0.0); // this lane's of the slice
        var acc0 = vec4<f32>(0.0);
        var acc1 = vec4<f32>(0.0);
        var acc2 = vec4<f32>(0.0);
        var acc3 = vec4<f32>(0.0);
        let s1 = min(s0 + ks, k_hi);
        for (var kt = s0; kt < s1; kt += BK) {
            // stage (zeros past the edges of M, N and K)
            let kq = kt / 4u + aq;
            var av = vec4<f32>(0.0);
            if (arow < p.m && kq < k4) {
                av = stage_a(arow, kq, shift, &share);
            }
            ta[lid] = av;
            let krow = kt + br;
            var bv = vec4<f32>(0.0);
            if (bcol < p.n4 && krow < k4 * 4u) {
                bv = load_w4(b[bbase + krow * p4]);
            }
            tb[lid] = bv;
            workgroupBarrier();
            for (var q = 0u; q < BK / 4u; q++) {
                let b0 = tb[(q * 4u) * BN4 + tc];
                let b1 = tb[(q * 4u + 1u) * BN4 + tc];
                let b2 = tb[(q * 4u + 2u) * BN4 + tc];
                let b3 = tb[(q * 4u + 3u) * BN4 + tc];
                var x = ta[(tr * 4u) * 4u + q];
                acc0 += x.x * b0 + x.y * b1 + x.z * b2 + x.w * b3;
                x = ta[(tr * 4u + 1u) * 4u + q];
                acc1 += x.x * b0 + x.y * b1 + x.z * b2 + x.w * b3;
                x = ta[(tr * 4u + 2u) * 4u + q];
                acc2 += x.x * b0 + x.y * b1 + x.z * b2 + x.w * b3;
                x = ta[(tr * 4u + 3u) * 4u + q];
                acc3 += x.x * b0 + x.y * b1 + x.z * b2 + x.w * b3;
            }
            workgroupBarrier();
        }
        tot0 += acc0;
        tot1 += acc1;
        tot2 += acc2;
        tot3 += acc3;
        if (normed) {
            sums += row_lanes_sum(lid, 4u, share); // the 4 lanes staging row ar
        }
    }
    if (normed) {
        if (aq == 0u) {
            row_sums[ar] = sums;
            if (p.split != 0u && wg.x == 0u && arow < p.m) {
                part[stats_at(wg.z, arow)] = vec4<f32>(sums, 0.0, 0.0);
            }
        }
        workgroupBarrier();
    }
    let col = col0 + tc;
    if (col >= p.n4) {
        return;
    }
    var tots = array<vec4<f32>, 4>(tot0, tot1, tot2, tot3);
    for (var i = 0u; i < 4u; i++) {
        let row = row0 + tr * 4u + i;
        if (row >= p.m) {
            break;
        }
        if (p.split != 0u) {
            part[(wg.z * p.m + row) * p.n4 + col] = tots[i];
        } else {
            let o = norm_fold(tots[i], col, row_sums[tr * 4u + i]);
            store_epilogue(o, col, row * p.n4 + col);
        }
    }
}
