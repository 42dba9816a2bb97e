// Decode attention and its output projection in one dispatch (the hardware decode
// blocks in three dispatches): a workgroup per (row, head) attends as
// `attention_paged_workgroup` does (prelude `attend_workgroup`), then multiplies its
// head's output by the head's rows of the output projection w_o, so that
//   parts[t, h, :] = attn(t, h) · w_o[h · HS .. (h + 1) · HS, :]
// is head h's share of attn(t) · w_o. The residual add is deferred: the next kernel
// reads x + bias + Σ_h parts[t, h] (prelude residual_parts), in head order. w_o
// `[Q, N]` (Q = NH · HS) is stored in column panels as for `matvec` (N / P panels of P
// columns, each [Q, P] row-major; p.proj_p4 = P / 4); lane j takes output vec4s j,
// j + WG, … (consecutive lanes read consecutive vec4s of a weight row). Preludes:
// attention, kv_read, paged_walk, workgroup_reduce, attend_workgroup, the weight type
// `W` / `load_w4`.

override WG: u32 = 64u;

// bindings 0-3 (p, qkv, k, v): prelude attend_workgroup
@group(0) @binding(4) var<storage, read_write> parts: array<vec4<f32>>; // [T, NH, N]
// bindings 5-8 (rows, tables, row_offsets, cols): prelude paged_walk
@group(0) @binding(9) var<storage, read> w_o: array<W>;                // [Q, N] in panels

var<workgroup> head: array<f32, MAX_HS>;

@compute @workgroup_size(WG)
fn attention_proj(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let t = wid.x; // one workgroup row per query row: t < p.t
    let h = wid.y;
    let o = attend(t, h, lid);
    let hs = p.hs4 * 4u;
    for (var a = 0u; a < LANE_DIMS; a++) {
        let d = lid + a * WG;
        if (d < hs) {
            head[d] = o[a];
        }
    }
    workgroupBarrier();
    let n4 = p.proj_n4;
    let p4 = p.proj_p4;
    let q4 = p.c4;
    let row0 = h * hs; // the head's first row of w_o
    for (var j = lid; j < n4; j += WG) {
        let base = (j / p4) * (4u * q4 * p4) + j % p4; // output vec4 j's panel
        var acc = vec4<f32>(0.0);
        for (var d = 0u; d < hs; d++) {
            acc += head[d] * load_w4(w_o[base + (row0 + d) * p4]);
        }
        parts[(t * p.nh + h) * n4 + j] = acc;
    }
}
