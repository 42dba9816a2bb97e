// Block-sparse causal multi-head attention for hardware GPUs: the same inputs, outputs
// and layout as `sparse_attention` (query t at absolute position pos + t, in query
// block qb, sees the key blocks listed for qb in the CSR layout, in ascending order),
// tiled like `attention_tiled`: a workgroup takes WG queries of one head (WG / G queries
// of the G query heads of one key/value head with grouped-query heads), walks the keys
// in tiles of BKV staged in workgroup memory, and each lane folds in the keys its
// query block lists (online softmax, entropy as the other kernels). A tile that no
// query of the workgroup lists is neither loaded nor visited, so the work follows the
// layout's density.
// Preludes `attention` (AttentionParams, MAX_HS4, the online softmax) and
// `attention_tiles` (the staged tile, Query, query_start / fold_staged / query_finish).

override WG: u32 = 64u; // queries per workgroup

@group(0) @binding(0) var<uniform> p: AttentionParams;
@group(0) @binding(1) var<storage, read> qkv: array<vec4<f32>>;        // [T, 3C]
@group(0) @binding(2) var<storage, read> k: array<vec4<u32>>;          // [rows, kv_stride]
@group(0) @binding(3) var<storage, read> v: array<vec4<u32>>;          // [rows, kv_stride]
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>;  // [T, C]
@group(0) @binding(5) var<storage, read_write> entropy: array<f32>;    // [NH, T]
@group(0) @binding(6) var<storage, read> row_offsets: array<u32>;      // [query blocks + 1]
@group(0) @binding(7) var<storage, read> cols: array<u32>;             // [listed blocks]
@group(0) @binding(8) var<storage, read> tables: array<u32>;           // page table (paged KV; p.page > 0)

var<workgroup> wanted: atomic<u32>; // some query of the workgroup lists a key of this tile

@compute @workgroup_size(WG)
fn sparse_attention_tiled(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
) {
    // a key/value head's G query heads together, as attention_tiled
    let g = group_size();
    let per = WG / g; // queries per workgroup
    let q0 = wg.x * per;
    let h = wg.y * g + lid % g;
    let t = q0 + lid / g;
    let live = lid < per * g && t < p.t;
    var qs = query_start(min(t, p.t - 1u), h);
    let mine = p.pos + t; // the last key this lane's query sees
    // this lane's listed key blocks: cols[next .. end], ascending
    var next = 0u;
    var end = 0u;
    if (live) {
        let qb = mine / p.block;
        next = row_offsets[qb];
        end = row_offsets[qb + 1u];
    }
    let last = p.pos + min(q0 + per, p.t) - 1u;
    for (var j0 = 0u; j0 <= last; j0 += BKV) {
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
        stage_tile(j0, last, h, lid, WG);
        workgroupBarrier();
        if (live) {
            for (var jj = 0u; jj < BKV && j0 + jj <= mine; jj++) {
                let kb = (j0 + jj) / p.block;
                while (next < end && cols[next] < kb) {
                    next++;
                }
                if (next < end && cols[next] == kb && sees(mine, j0 + jj)) {
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
