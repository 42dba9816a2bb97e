// Subgroup variant of matvec_f16 (half-float weights, decode steps):
//   out[R, N] (=|+=) act(x[R, K] · w[K, N] + bias[N]), same bindings, params and epilogue.
// Each invocation computes 8 outputs from one vec4<u32> load per row of `w` (8 halves),
// and lane s of a subgroup loads x[r, k + s] for 8 steps at a time, which every lane
// then takes with subgroupBroadcast. On lavapipe every storage load is a scalar loop
// over the lanes, so this halves the loads per weight against matvec_f16, drops the
// per-lane reloads of x, and shares each weight load (and its unpacking) among the
// invocation's rows.
// ROWS (an override: 1, 4 or 8, `gpu::BATCH_ROWS`) rows of the batch per invocation,
// in separate accumulators (llvmpipe keeps arrays indexed by a variable in memory),
// rows r0 .. r0 + ROWS with r0 = row0 + ROWS · workgroup y; the host covers a batch
// with groups of 8 and one group of 4 or 8 over its end (`RowsOp::cover`: rows past
// the batch are computed, never stored), or single rows. Every row is computed by the same
// expression (`row_step`) in every variant, so its numbers do not depend on the batch.
// Needs N % 8 == 0 and subgroups of at least 8 lanes; the host runs it with one
// subgroup per workgroup (WG = the adapter's subgroup size), which keeps both cores of
// a CPU adapter busy at N = 768. Preludes: matvec_params, gelu, epilogue.

// w is stored in column panels: N / P panels of P columns, each [K, P] row-major
// (P = 64 when N % 64 == 0, else P = N, which is plain row-major [K, N]). A workgroup
// then walks K through contiguous memory, which the CPU's prefetchers follow; p4 = P / 4.

override WG: u32 = 64u;
override ROWS: u32 = 1u;

@group(0) @binding(0) var<uniform> p: MatvecParams;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;       // [R, K]
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;       // [K, N] as f16 pairs
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;    // [N] (or a dummy)
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>; // [R, N]

// Columns 0..3 and 4..7 of 8 packed halves.
fn low(v: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(v.x), unpack2x16float(v.y));
}

fn high(v: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(v.z), unpack2x16float(v.w));
}

// One row's step along K: x[r, 4k .. 4k + 3] times 4 weight rows of 8 columns.
struct Step {
    lo: vec4<f32>,
    hi: vec4<f32>,
}

fn row_step(xv: vec4<f32>, w0: vec4<u32>, w1: vec4<u32>, w2: vec4<u32>, w3: vec4<u32>) -> Step {
    return Step(
        xv.x * low(w0) + xv.y * low(w1) + xv.z * low(w2) + xv.w * low(w3),
        xv.x * high(w0) + xv.y * high(w1) + xv.z * high(w2) + xv.w * high(w3),
    );
}

// Outputs 8 col .. 8 col + 7 of batch row `r` (not stored past the batch).
fn store_pair(lo: vec4<f32>, hi: vec4<f32>, col: u32, r: u32) {
    store_row(lo, 2u * col, r);
    store_row(hi, 2u * col + 1u, r);
}

@compute @workgroup_size(WG)
fn matvec_f16_subgroup(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let col = gid.x; // in units of 8 outputs
    let n8 = p.n4 / 2u;
    let k4 = p.k4;
    let r0 = p.row0 + wg.y * ROWS;
    // Every lane runs the loop (broadcasts need the whole subgroup); out-of-range
    // columns read a clamped address and are not stored, steps past K are zero in x.
    let colc = min(col, n8 - 1u);
    let p8 = p.p4 / 2u;
    let base = (colc / p8) * (4u * k4 * p8) + colc % p8; // this column's panel
    var xl0 = vec4<f32>(0.0);
    var lo0 = vec4<f32>(0.0);
    var hi0 = vec4<f32>(0.0);
    var xl1 = vec4<f32>(0.0);
    var lo1 = vec4<f32>(0.0);
    var hi1 = vec4<f32>(0.0);
    var xl2 = vec4<f32>(0.0);
    var lo2 = vec4<f32>(0.0);
    var hi2 = vec4<f32>(0.0);
    var xl3 = vec4<f32>(0.0);
    var lo3 = vec4<f32>(0.0);
    var hi3 = vec4<f32>(0.0);
    var xl4 = vec4<f32>(0.0);
    var lo4 = vec4<f32>(0.0);
    var hi4 = vec4<f32>(0.0);
    var xl5 = vec4<f32>(0.0);
    var lo5 = vec4<f32>(0.0);
    var hi5 = vec4<f32>(0.0);
    var xl6 = vec4<f32>(0.0);
    var lo6 = vec4<f32>(0.0);
    var hi6 = vec4<f32>(0.0);
    var xl7 = vec4<f32>(0.0);
    var lo7 = vec4<f32>(0.0);
    var hi7 = vec4<f32>(0.0);
    var s: Step;
    for (var k8 = 0u; k8 < k4; k8 += 8u) {
        let kl = k8 + (lane & 7u);
        let xk = r0 * k4 + min(kl, k4 - 1u);
        xl0 = select(vec4<f32>(0.0), x[xk + 0u * k4], kl < k4);
        if (ROWS > 1u) {
            xl1 = select(vec4<f32>(0.0), x[xk + 1u * k4], kl < k4);
            xl2 = select(vec4<f32>(0.0), x[xk + 2u * k4], kl < k4);
            xl3 = select(vec4<f32>(0.0), x[xk + 3u * k4], kl < k4);
        }
        if (ROWS > 4u) {
            xl4 = select(vec4<f32>(0.0), x[xk + 4u * k4], kl < k4);
            xl5 = select(vec4<f32>(0.0), x[xk + 5u * k4], kl < k4);
            xl6 = select(vec4<f32>(0.0), x[xk + 6u * k4], kl < k4);
            xl7 = select(vec4<f32>(0.0), x[xk + 7u * k4], kl < k4);
        }
        {
            let bi = base + 4u * min(k8 + 0u, k4 - 1u) * p8;
            let w0 = w[bi];
            let w1 = w[bi + p8];
            let w2 = w[bi + 2u * p8];
            let w3 = w[bi + 3u * p8];
            s = row_step(subgroupBroadcast(xl0, 0u), w0, w1, w2, w3);
            lo0 += s.lo;
            hi0 += s.hi;
            if (ROWS > 1u) {
                s = row_step(subgroupBroadcast(xl1, 0u), w0, w1, w2, w3);
                lo1 += s.lo;
                hi1 += s.hi;
                s = row_step(subgroupBroadcast(xl2, 0u), w0, w1, w2, w3);
                lo2 += s.lo;
                hi2 += s.hi;
                s = row_step(subgroupBroadcast(xl3, 0u), w0, w1, w2, w3);
                lo3 += s.lo;
                hi3 += s.hi;
            }
            if (ROWS > 4u) {
                s = row_step(subgroupBroadcast(xl4, 0u), w0, w1, w2, w3);
                lo4 += s.lo;
                hi4 += s.hi;
                s = row_step(subgroupBroadcast(xl5, 0u), w0, w1, w2, w3);
                lo5 += s.lo;
                hi5 += s.hi;
                s = row_step(subgroupBroadcast(xl6, 0u), w0, w1, w2, w3);
                lo6 += s.lo;
                hi6 += s.hi;
                s = row_step(subgroupBroadcast(xl7, 0u), w0, w1, w2, w3);
                lo7 += s.lo;
                hi7 += s.hi;
            }
        }
        {
            let bi = base + 4u * min(k8 + 1u, k4 - 1u) * p8;
            let w0 = w[bi];
            let w1 = w[bi + p8];
            let w2 = w[bi + 2u * p8];
            let w3 = w[bi + 3u * p8];
            s = row_step(subgroupBroadcast(xl0, 1u), w0, w1, w2, w3);
            lo0 += s.lo;
            hi0 += s.hi;
            if (ROWS > 1u) {
                s = row_step(subgroupBroadcast(xl1, 1u), w0, w1, w2, w3);
                lo1 += s.lo;
                hi1 += s.hi;
                s = row_step(subgroupBroadcast(xl2, 1u), w0, w1, w2, w3);
                lo2 += s.lo;
                hi2 += s.hi;
                s = row_step(subgroupBroadcast(xl3, 1u), w0, w1, w2, w3);
                lo3 += s.lo;
                hi3 += s.hi;
            }
            if (ROWS > 4u) {
                s = row_step(subgroupBroadcast(xl4, 1u), w0, w1, w2, w3);
                lo4 += s.lo;
                hi4 += s.hi;
                s = row_step(subgroupBroadcast(xl5, 1u), w0, w1, w2, w3);
                lo5 += s.lo;
                hi5 += s.hi;
                s = row_step(subgroupBroadcast(xl6, 1u), w0, w1, w2, w3);
                lo6 += s.lo;
                hi6 += s.hi;
                s = row_step(subgroupBroadcast(xl7, 1u), w0, w1, w2, w3);
                lo7 += s.lo;
                hi7 += s.hi;
            }
        }
        {
            let bi = base + 4u * min(k8 + 2u, k4 - 1u) * p8;
            let w0 = w[bi];
            let w1 = w[bi + p8];
            let w2 = w[bi + 2u * p8];
            let w3 = w[bi + 3u * p8];
            s = row_step(subgroupBroadcast(xl0, 2u), w0, w1, w2, w3);
            lo0 += s.lo;
            hi0 += s.hi;
            if (ROWS > 1u) {
                s = row_step(subgroupBroadcast(xl1, 2u), w0, w1, w2, w3);
                lo1 += s.lo;
                hi1 += s.hi;
                s = row_step(subgroupBroadcast(xl2, 2u), w0, w1, w2, w3);
                lo2 += s.lo;
                hi2 += s.hi;
                s = row_step(subgroupBroadcast(xl3, 2u), w0, w1, w2, w3);
                lo3 += s.lo;
                hi3 += s.hi;
            }
            if (ROWS > 4u) {
                s = row_step(subgroupBroadcast(xl4, 2u), w0, w1, w2, w3);
                lo4 += s.lo;
                hi4 += s.hi;
                s = row_step(subgroupBroadcast(xl5, 2u), w0, w1, w2, w3);
                lo5 += s.lo;
                hi5 += s.hi;
                s = row_step(subgroupBroadcast(xl6, 2u), w0, w1, w2, w3);
                lo6 += s.lo;
                hi6 += s.hi;
                s = row_step(subgroupBroadcast(xl7, 2u), w0, w1, w2, w3);
                lo7 += s.lo;
                hi7 += s.hi;
            }
        }
        {
            let bi = base + 4u * min(k8 + 3u, k4 - 1u) * p8;
            let w0 = w[bi];
            let w1 = w[bi + p8];
            let w2 = w[bi + 2u * p8];
            let w3 = w[bi + 3u * p8];
            s = row_step(subgroupBroadcast(xl0, 3u), w0, w1, w2, w3);
            lo0 += s.lo;
            hi0 += s.hi;
            if (ROWS > 1u) {
                s = row_step(subgroupBroadcast(xl1, 3u), w0, w1, w2, w3);
                lo1 += s.lo;
                hi1 += s.hi;
                s = row_step(subgroupBroadcast(xl2, 3u), w0, w1, w2, w3);
                lo2 += s.lo;
                hi2 += s.hi;
                s = row_step(subgroupBroadcast(xl3, 3u), w0, w1, w2, w3);
                lo3 += s.lo;
                hi3 += s.hi;
            }
            if (ROWS > 4u) {
                s = row_step(subgroupBroadcast(xl4, 3u), w0, w1, w2, w3);
                lo4 += s.lo;
                hi4 += s.hi;
                s = row_step(subgroupBroadcast(xl5, 3u), w0, w1, w2, w3);
                lo5 += s.lo;
                hi5 += s.hi;
                s = row_step(subgroupBroadcast(xl6, 3u), w0, w1, w2, w3);
                lo6 += s.lo;
                hi6 += s.hi;
                s = row_step(subgroupBroadcast(xl7, 3u), w0, w1, w2, w3);
                lo7 += s.lo;
                hi7 += s.hi;
            }
        }
        {
            let bi = base + 4u * min(k8 + 4u, k4 - 1u) * p8;
            let w0 = w[bi];
            let w1 = w[bi + p8];
            let w2 = w[bi + 2u * p8];
            let w3 = w[bi + 3u * p8];
            s = row_step(subgroupBroadcast(xl0, 4u), w0, w1, w2, w3);
            lo0 += s.lo;
            hi0 += s.hi;
            if (ROWS > 1u) {
                s = row_step(subgroupBroadcast(xl1, 4u), w0, w1, w2, w3);
                lo1 += s.lo;
                hi1 += s.hi;
                s = row_step(subgroupBroadcast(xl2, 4u), w0, w1, w2, w3);
                lo2 += s.lo;
                hi2 += s.hi;
                s = row_step(subgroupBroadcast(xl3, 4u), w0, w1, w2, w3);
                lo3 += s.lo;
                hi3 += s.hi;
            }
            if (ROWS > 4u) {
                s = row_step(subgroupBroadcast(xl4, 4u), w0, w1, w2, w3);
                lo4 += s.lo;
                hi4 += s.hi;
                s = row_step(subgroupBroadcast(xl5, 4u), w0, w1, w2, w3);
                lo5 += s.lo;
                hi5 += s.hi;
                s = row_step(subgroupBroadcast(xl6, 4u), w0, w1, w2, w3);
                lo6 += s.lo;
                hi6 += s.hi;
                s = row_step(subgroupBroadcast(xl7, 4u), w0, w1, w2, w3);
                lo7 += s.lo;
                hi7 += s.hi;
            }
        }
        {
            let bi = base + 4u * min(k8 + 5u, k4 - 1u) * p8;
            let w0 = w[bi];
            let w1 = w[bi + p8];
            let w2 = w[bi + 2u * p8];
            let w3 = w[bi + 3u * p8];
            s = row_step(subgroupBroadcast(xl0, 5u), w0, w1, w2, w3);
            lo0 += s.lo;
            hi0 += s.hi;
            if (ROWS > 1u) {
                s = row_step(subgroupBroadcast(xl1, 5u), w0, w1, w2, w3);
                lo1 += s.lo;
                hi1 += s.hi;
                s = row_step(subgroupBroadcast(xl2, 5u), w0, w1, w2, w3);
                lo2 += s.lo;
                hi2 += s.hi;
                s = row_step(subgroupBroadcast(xl3, 5u), w0, w1, w2, w3);
                lo3 += s.lo;
                hi3 += s.hi;
            }
            if (ROWS > 4u) {
                s = row_step(subgroupBroadcast(xl4, 5u), w0, w1, w2, w3);
                lo4 += s.lo;
                hi4 += s.hi;
                s = row_step(subgroupBroadcast(xl5, 5u), w0, w1, w2, w3);
                lo5 += s.lo;
                hi5 += s.hi;
                s = row_step(subgroupBroadcast(xl6, 5u), w0, w1, w2, w3);
                lo6 += s.lo;
                hi6 += s.hi;
                s = row_step(subgroupBroadcast(xl7, 5u), w0, w1, w2, w3);
                lo7 += s.lo;
                hi7 += s.hi;
            }
        }
        {
            let bi = base + 4u * min(k8 + 6u, k4 - 1u) * p8;
            let w0 = w[bi];
            let w1 = w[bi + p8];
            let w2 = w[bi + 2u * p8];
            let w3 = w[bi + 3u * p8];
            s = row_step(subgroupBroadcast(xl0, 6u), w0, w1, w2, w3);
            lo0 += s.lo;
            hi0 += s.hi;
            if (ROWS > 1u) {
                s = row_step(subgroupBroadcast(xl1, 6u), w0, w1, w2, w3);
                lo1 += s.lo;
                hi1 += s.hi;
                s = row_step(subgroupBroadcast(xl2, 6u), w0, w1, w2, w3);
                lo2 += s.lo;
                hi2 += s.hi;
                s = row_step(subgroupBroadcast(xl3, 6u), w0, w1, w2, w3);
                lo3 += s.lo;
                hi3 += s.hi;
            }
            if (ROWS > 4u) {
                s = row_step(subgroupBroadcast(xl4, 6u), w0, w1, w2, w3);
                lo4 += s.lo;
                hi4 += s.hi;
                s = row_step(subgroupBroadcast(xl5, 6u), w0, w1, w2, w3);
                lo5 += s.lo;
                hi5 += s.hi;
                s = row_step(subgroupBroadcast(xl6, 6u), w0, w1, w2, w3);
                lo6 += s.lo;
                hi6 += s.hi;
                s = row_step(subgroupBroadcast(xl7, 6u), w0, w1, w2, w3);
                lo7 += s.lo;
                hi7 += s.hi;
            }
        }
        {
            let bi = base + 4u * min(k8 + 7u, k4 - 1u) * p8;
            let w0 = w[bi];
            let w1 = w[bi + p8];
            let w2 = w[bi + 2u * p8];
            let w3 = w[bi + 3u * p8];
            s = row_step(subgroupBroadcast(xl0, 7u), w0, w1, w2, w3);
            lo0 += s.lo;
            hi0 += s.hi;
            if (ROWS > 1u) {
                s = row_step(subgroupBroadcast(xl1, 7u), w0, w1, w2, w3);
                lo1 += s.lo;
                hi1 += s.hi;
                s = row_step(subgroupBroadcast(xl2, 7u), w0, w1, w2, w3);
                lo2 += s.lo;
                hi2 += s.hi;
                s = row_step(subgroupBroadcast(xl3, 7u), w0, w1, w2, w3);
                lo3 += s.lo;
                hi3 += s.hi;
            }
            if (ROWS > 4u) {
                s = row_step(subgroupBroadcast(xl4, 7u), w0, w1, w2, w3);
                lo4 += s.lo;
                hi4 += s.hi;
                s = row_step(subgroupBroadcast(xl5, 7u), w0, w1, w2, w3);
                lo5 += s.lo;
                hi5 += s.hi;
                s = row_step(subgroupBroadcast(xl6, 7u), w0, w1, w2, w3);
                lo6 += s.lo;
                hi6 += s.hi;
                s = row_step(subgroupBroadcast(xl7, 7u), w0, w1, w2, w3);
                lo7 += s.lo;
                hi7 += s.hi;
            }
        }
    }
    if (col >= n8) {
        return;
    }
    store_pair(lo0, hi0, col, r0 + 0u);
    if (ROWS > 1u) {
        store_pair(lo1, hi1, col, r0 + 1u);
        store_pair(lo2, hi2, col, r0 + 2u);
        store_pair(lo3, hi3, col, r0 + 3u);
    }
    if (ROWS > 4u) {
        store_pair(lo4, hi4, col, r0 + 4u);
        store_pair(lo5, hi5, col, r0 + 5u);
        store_pair(lo6, hi6, col, r0 + 6u);
        store_pair(lo7, hi7, col, r0 + 7u);
    }
}
