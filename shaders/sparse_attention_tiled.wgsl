// Block-sparse causal multi-head attention for hardware GPUs: the same inputs, outputs
// and layout as `sparse_attention` (query t at absolute position pos + t, in query
// block qb, sees the key blocks listed for qb in the CSR layout, in ascending order),
// tiled like `attention_tiled`: a workgroup takes WG queries of one head, walks the keys
// in tiles of BKV staged in workgroup memory, and each lane folds in the keys its
// query block lists (online softmax, entropy as the other kernels). A tile that no
// query of the workgroup lists is neither loaded nor visited, so the work follows the
// layout's density.
// Prelude `attention` (shaders/lib/attention.wgsl): AttentionParams, MAX_HS4 and the
// online softmax (online_start / online_add / online_entropy).

override WG: u32 = 64u;   // queries per workgroup
const BKV: u32 = 16u;     // keys per tile

@group(0) @binding(0) var<uniform> p: AttentionParams;
@group(0) @binding(1) var<storage, read> qkv: array<vec4<f32>>;        // [T, 3C]
@group(0) @binding(2) var<storage, read> k: array<vec4<f32>>;          // [rows, kv_stride]
@group(0) @binding(3) var<storage, read> v: array<vec4<f32>>;          // [rows, kv_stride]
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>;  // [T, C]
@group(0) @binding(5) var<storage, read_write> entropy: array<f32>;    // [NH, T]
@group(0) @binding(6) var<storage, read> row_offsets: array<u32>;      // [query blocks + 1]
@group(0) @binding(7) var<storage, read> cols: array<u32>;             // [listed blocks]

var<workgroup> tk: array<vec4<f32>, 512>; // [BKV][hs4]
var<workgroup> tv: array<vec4<f32>, 512>;
var<workgroup> wanted: atomic<u32>;       // some lane lists a key of this tile

@compute @workgroup_size(WG)
fn sparse_attention_tiled(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
) {
    let q0 = wg.x * WG;
    let h = wg.y;
    let t = q0 + lid;
    let live = t < p.t;
    let hs4 = p.hs4;
    var q: array<vec4<f32>, MAX_HS4>;
    var acc: array<vec4<f32>, MAX_HS4>;
    let mine = p.pos + t; // the last key this lane's query sees
    var next = 0u;        // this lane's next listed key block (index into cols)
    var end = 0u;
    if (live) {
        let qo = t * 3u * p.c4 + h * hs4;
        for (var d = 0u; d < hs4; d++) {
            q[d] = qkv[qo + d] * p.scale;
            acc[d] = vec4<f32>(0.0);
        }
        let qb = mine / p.block;
        next = row_offsets[qb];
        end = row_offsets[qb + 1u];
    }
    var sm = online_start();
    let last = p.pos + min(q0 + WG, p.t) - 1u;
    for (var j0 = 0u; j0 <= last; j0 += BKV) {
        // does any query of the workgroup list a key block of this tile?
        if (lid == 0u) {
            atomicStore(&wanted, 0u);
        }
        workgroupBarrier();
        let kb_lo = j0 / p.block;
        let kb_hi = min(j0 + BKV - 1u, last) / p.block;
        while (next < end && cols[next] < kb_lo) {
            next++;
        }
        if (j0 <= mine && next < end && cols[next] <= kb_hi) {
            atomicOr(&wanted, 1u);
        }
        if (workgroupUniformLoad(&wanted) == 0u) {
            continue;
        }
        for (var i = lid; i < BKV * hs4; i += WG) {
            let j = j0 + i / hs4;
            let d = i % hs4;
            var kv = vec4<f32>(0.0);
            var vv = vec4<f32>(0.0);
            if (j <= last) {
                kv = k[j * p.kv_stride4 + p.k_off4 + h * hs4 + d];
                vv = v[j * p.kv_stride4 + p.v_off4 + h * hs4 + d];
            }
            tk[i] = kv;
            tv[i] = vv;
        }
        workgroupBarrier();
        if (live) {
            for (var jj = 0u; jj < BKV; jj++) {
                let j = j0 + jj;
                if (j > mine) {
                    break;
                }
                let kb = j / p.block;
                while (next < end && cols[next] < kb) {
                    next++;
                }
                if (next >= end || cols[next] != kb) {
                    continue;
                }
                var s4 = vec4<f32>(0.0);
                for (var d = 0u; d < hs4; d++) {
                    s4 += q[d] * tk[jj * hs4 + d];
                }
                let s = s4.x + s4.y + s4.z + s4.w;
                let w = online_add(&sm, s);
                if (w.x != 1.0) {
                    for (var d = 0u; d < hs4; d++) {
                        acc[d] *= w.x;
                    }
                }
                let e = w.y;
                for (var d = 0u; d < hs4; d++) {
                    acc[d] += e * tv[jj * hs4 + d];
                }
            }
        }
        workgroupBarrier();
    }
    if (live) {
        let inv = 1.0 / sm.l;
        let oo = t * p.c4 + h * hs4;
        for (var d = 0u; d < hs4; d++) {
            out[oo + d] = acc[d] * inv;
        }
        entropy[h * p.t + t] = online_entropy(sm);
    }
}
