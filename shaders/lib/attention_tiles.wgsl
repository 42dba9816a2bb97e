// What the tiled attention kernels share (after prelude `attention`): a query's state,
// the key/value tile staged in workgroup memory, folding one staged key into a query,
// and writing a query's result. The kernel declares the bindings `p`, `qkv`, `k`, `v`,
// `out` and `entropy` with the layouts of `attention`.

// keys per tile: 16, 8 in a wide pipeline (heads of up to 256), so a tile of keys and
// one of values stay 8 KB each
const BKV: u32 = 512u / MAX_HS4;

var<workgroup> tk: array<vec4<f32>, 512>; // [BKV][hs4]
var<workgroup> tv: array<vec4<f32>, 512>;

// One query of one head: q (scaled), the output accumulator, the online softmax.
struct Query {
    q: array<vec4<f32>, MAX_HS4>,
    acc: array<vec4<f32>, MAX_HS4>,
    sm: Online,
}

fn query_start(t: u32, h: u32) -> Query {
    var qs: Query;
    let qo = (p.t0 + t) * qkv_stride4() + h * p.hs4;
    for (var d = 0u; d < p.hs4; d++) {
        qs.q[d] = qkv[qo + d] * p.scale;
        qs.acc[d] = vec4<f32>(0.0);
    }
    qs.sm = online_start();
    return qs;
}

// Keys j0 .. j0 + BKV (zeros past `last`) of the key/value head query head h reads into
// tk / tv, `lanes` lanes sharing the loads (adjacent lanes, adjacent vec4s).
fn stage_tile(j0: u32, last: u32, h: u32, lid: u32, lanes: u32) {
    let hs4 = p.hs4;
    for (var i = lid; i < BKV * hs4; i += lanes) {
        let j = j0 + i / hs4;
        let d = i % hs4;
        var kv = vec4<f32>(0.0);
        var vv = vec4<f32>(0.0);
        if (j <= last) {
            kv = key4(kv_row(p.table0, j) * p.kv_stride4 + p.k_off4 + kv_head4(h) + d);
            vv = value4(kv_row(p.table0, j) * p.kv_stride4 + p.v_off4 + kv_head4(h) + d);
        }
        tk[i] = kv;
        tv[i] = vv;
    }
}

// Fold staged key jj (and its value) into the query.
fn fold_staged(qs: ptr<function, Query>, jj: u32) {
    let hs4 = p.hs4;
    var s4 = vec4<f32>(0.0);
    for (var d = 0u; d < hs4; d++) {
        s4 += (*qs).q[d] * tk[jj * hs4 + d];
    }
    // (a pointer into *qs as an argument trips naga's SPIR-V writer: go through a local)
    var sm = (*qs).sm;
    let w = online_add(&sm, capped(s4.x + s4.y + s4.z + s4.w));
    (*qs).sm = sm;
    for (var d = 0u; d < hs4; d++) {
        (*qs).acc[d] = (*qs).acc[d] * w.x + w.y * tv[jj * hs4 + d];
    }
}

fn query_finish(qs: Query, t: u32, h: u32) {
    let inv = 1.0 / qs.sm.l;
    let oo = (p.t0 + t) * p.c4 + h * p.hs4;
    for (var d = 0u; d < p.hs4; d++) {
        out[oo + d] = qs.acc[d] * inv;
    }
    entropy[h * p.t + t] = online_entropy(qs.sm);
}
