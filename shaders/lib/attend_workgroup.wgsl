// The decode attention of one (row, head) by a workgroup (the hardware kernels
// `attention_paged_workgroup` and `attention_proj`): the row's keys taken CHUNK at a
// time,
//   1. lane i scores keys i, i + WG, … of the chunk (q · k over the head, q staged in
//      workgroup memory) into `score`;
//   2. the workgroup reduces the chunk's max, the lanes turn scores into e^(s - m),
//      the workgroup reduces their sum (prelude `workgroup_reduce`);
//   3. lane d accumulates dimensions d, d + WG, … of Σ e_j v_j over the chunk's keys
//      (consecutive lanes read consecutive floats of a value row).
// Across chunks the softmax is online (running max m and normaliser l), in f32.
// Block-sparse (p.block > 0): the walk visits the listed key blocks of the query's
// block (prelude `paged_walk`), keys after the query masked. WG = 64. Bindings 0-3
// here; the kernel declares `WG` and binding 4, its output; preludes attention,
// kv_read, paged_walk (bindings 5-8), workgroup_reduce.

@group(0) @binding(0) var<uniform> p: AttentionParams;
@group(0) @binding(1) var<storage, read> qkv: array<vec4<f32>>;    // [T, Q + 2 KV]
@group(0) @binding(2) var<storage, read> k: array<vec4<u32>>;      // [pool rows, KV] (prelude kv_read)
@group(0) @binding(3) var<storage, read> v: array<vec4<u32>>;      // [pool rows, KV] (prelude kv_read)

const CHUNK: u32 = 512u;
const MAX_HS: u32 = MAX_HS4 * 4u;
// a lane's dimensions of a head's output: lid + WG * a, a < LANE_DIMS (WG = 64)
const LANE_DIMS: u32 = MAX_HS4 / 16u;

var<workgroup> q: array<vec4<f32>, MAX_HS4>;
var<workgroup> score: array<f32, CHUNK>;
var<workgroup> walk: u32;

const MASKED: f32 = -3.0e38;

// Head h's output for query row t: this lane's dimensions lid + WG * a, a < LANE_DIMS
// (those below the head size). Call from uniform control flow (it holds barriers).
fn attend(t: u32, h: u32, lid: u32) -> array<f32, LANE_DIMS> {
    let hs4 = p.hs4;
    let hs = hs4 * 4u;
    let table = rows[t].x;
    let qpos = rows[t].y;
    let keys = walk_of(qpos); // prelude `paged_walk`
    if (lid == 0u) {
        walk = keys.len;
    }
    let qo = t * qkv_stride4() + h * hs4;
    for (var d = lid; d < hs4; d += WG) {
        q[d] = qkv[qo + d] * p.scale;
    }
    let n = workgroupUniformLoad(&walk); // also makes q visible to every lane
    var acc: array<f32, LANE_DIMS>; // zeros
    var m = MASKED;
    var l = 0.0;
    for (var c0 = 0u; c0 < n; c0 += CHUNK) {
        let len = min(CHUNK, n - c0);
        // 1. scores
        var top = MASKED;
        for (var i = lid; i < len; i += WG) {
            let j = walk_key(keys, c0 + i);
            var s = MASKED;
            if (sees(qpos, j)) {
                let ko = kv_row(table, j) * pool_stride4() + kv_head4(h);
                // q in workgroup memory: key_dot's loop, keys two vec4s a load
                var s4 = vec4<f32>(0.0);
                var d = 0u;
                for (; d + 1u < hs4; d += 2u) {
                    let kk = key_pair(ko + d);
                    s4 += q[d] * kk[0];
                    s4 += q[d + 1u] * kk[1];
                }
                if (d < hs4) {
                    s4 += q[d] * key4(ko + d);
                }
                s = capped(s4.x + s4.y + s4.z + s4.w);
            }
            score[i] = s;
            top = max(top, s);
        }
        // 2. weights
        let m_new = max(m, workgroup_max(lid, top));
        let corr = exp(m - m_new);
        var part = 0.0;
        for (var i = lid; i < len; i += WG) {
            let s = score[i];
            let e = select(exp(s - m_new), 0.0, s == MASKED);
            score[i] = e;
            part += e;
        }
        l = l * corr + workgroup_sum(lid, part);
        m = m_new;
        // 3. values
        for (var a = 0u; a < LANE_DIMS; a++) {
            acc[a] *= corr;
        }
        for (var i = 0u; i < len; i++) {
            let e = score[i];
            if (e == 0.0) {
                continue;
            }
            let vo = (kv_row(table, walk_key(keys, c0 + i)) * pool_stride4() + kv_head4(h)) * 4u;
            for (var a = 0u; a < LANE_DIMS; a++) {
                let d = lid + a * WG;
                if (d < hs) {
                    acc[a] += e * value1(vo + d);
                }
            }
        }
        workgroupBarrier(); // every lane done with `score` before the next chunk
    }
    for (var a = 0u; a < LANE_DIMS; a++) {
        acc[a] /= l;
    }
    return acc;
}
