// GPU-shaped twin of attention_paged.wgsl (same bindings, params and results up to
// rounding): one workgroup per (row, head) instead of one invocation. The software
// kernel walks a row's keys in one lane, which on a GPU is a chain of dependent loads
// per key (an H200 spent ~5 µs per key and layer, most of a decode step at a few
// hundred positions). Here the keys are taken a chunk at a time by the whole
// workgroup (prelude `attend_workgroup`, shared with `attention_proj`).
// A row's numbers depend only on its own keys: the same in any batch.

override WG: u32 = 64u;

// bindings 0-3 (p, qkv, k, v): prelude attend_workgroup
@group(0) @binding(4) var<storage, read_write> out: array<f32>;        // [T, C]
// bindings 5-8 (rows, tables, row_offsets, cols): prelude paged_walk

@compute @workgroup_size(WG)
fn attention_paged_workgroup(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let t = wid.x; // one workgroup row per query row: t < p.t
    let h = wid.y;
    let o = attend(t, h, lid);
    let hs = p.hs4 * 4u;
    let oo = t * p.c4 * 4u + h * hs;
    for (var a = 0u; a < LANE_DIMS; a++) {
        let d = lid + a * WG;
        if (d < hs) {
            out[oo + d] = o[a];
        }
    }
}
