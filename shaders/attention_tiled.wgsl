// Causal multi-head self-attention for hardware GPUs (flash-style): the same inputs,
// outputs and entropy as `attention` (see there for the layouts of qkv, k and v).
// A workgroup takes a block of WG queries of one head (one lane per query, its q and
// its output accumulator in registers) and walks the keys in tiles of BKV: the lanes
// load each tile of keys and values into workgroup memory together (adjacent lanes,
// adjacent vec4s), wait, and every lane folds the tile into its online softmax (f32,
// running max subtracted). Each key and value is read from memory once per block of
// queries instead of once per query, which makes long prompts compute-bound.
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

var<workgroup> tk: array<vec4<f32>, 512>; // [BKV][hs4]
var<workgroup> tv: array<vec4<f32>, 512>;

@compute @workgroup_size(WG)
fn attention_tiled(
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
    if (live) {
        let qo = t * 3u * p.c4 + h * hs4;
        for (var d = 0u; d < hs4; d++) {
            q[d] = qkv[qo + d] * p.scale;
            acc[d] = vec4<f32>(0.0);
        }
    }
    var sm = online_start();
    // keys 0 ..= pos + the block's last query
    let last = p.pos + min(q0 + WG, p.t) - 1u;
    let mine = p.pos + t; // the last key this lane's query sees
    for (var j0 = 0u; j0 <= last; j0 += BKV) {
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
