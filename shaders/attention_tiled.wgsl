// Causal multi-head self-attention for hardware GPUs (flash-style): the same inputs,
// outputs and entropy as `attention` (see there for the layouts of qkv, k and v).
// A workgroup takes a block of WG queries of one head (one lane per query, its q and
// its output accumulator in registers) and walks the keys in tiles of BKV: the lanes
// load each tile of keys and values into workgroup memory together (adjacent lanes,
// adjacent vec4s), wait, and every lane folds the tile into its online softmax (f32,
// running max subtracted). Each key and value is read from memory once per block of
// queries instead of once per query, which makes long prompts compute-bound. With
// grouped-query heads (G = NH / NKV query heads a key/value head) the workgroup takes
// the G heads of one key/value head for a block of WG / G queries (lane = query · G +
// head in the group), so each staged key and value serves the whole group: the grid is
// ceil(T / (WG / G)) × NKV.
// Preludes `attention` (AttentionParams, MAX_HS4, the online softmax) and
// `attention_tiles` (the staged tile, Query, query_start / fold_staged / query_finish).

override WG: u32 = 64u; // queries per workgroup

@group(0) @binding(0) var<uniform> p: AttentionParams;
@group(0) @binding(1) var<storage, read> qkv: array<vec4<f32>>;        // [T, 3C]
@group(0) @binding(2) var<storage, read> k: array<vec4<u32>>;          // [rows, kv_stride]
@group(0) @binding(3) var<storage, read> v: array<vec4<u32>>;          // [rows, kv_stride]
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>;  // [T, C]
@group(0) @binding(5) var<storage, read_write> entropy: array<f32>;    // [NH, T]
@group(0) @binding(6) var<storage, read> tables: array<u32>;           // page table (paged KV; p.page > 0)

@compute @workgroup_size(WG)
fn attention_tiled(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
) {
    let g = group_size();
    let per = WG / g; // queries per workgroup
    let q0 = wg.x * per;
    let h = wg.y * g + lid % g; // this lane's query head, in the workgroup's group
    let t = q0 + lid / g;
    let live = lid < per * g && t < p.t;
    var qs = query_start(min(t, p.t - 1u), h);
    // keys from the first query's window ..= pos + the block's last query
    let last = last_key(p.pos + min(q0 + per, p.t) - 1u);
    let mine = last_key(p.pos + t); // the last key this lane's query sees
    let oldest = first_key(mine); // and the first
    for (var j0 = first_key(p.pos + q0); j0 <= last; j0 += BKV) {
        stage_tile(j0, last, h, lid, WG);
        workgroupBarrier();
        if (live) {
            for (var jj = 0u; jj < BKV && j0 + jj <= mine; jj++) {
                if (j0 + jj >= oldest) {
                    fold_staged(&qs, jj);
                }
            }
        }
        workgroupBarrier();
    }
    if (live) {
        query_finish(qs, t, h);
    }
}
