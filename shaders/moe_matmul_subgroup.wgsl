// Subgroup variant of moe_matmul.wgsl (same bindings, params and flags: prelude
// `moe_matmul`): the grouped expert matmul with 16 rows × 4 columns per invocation, the
// rows (gathered by token when flag 8 is set) taken with subgroup broadcasts as in
// matmul_subgroup.wgsl (prelude `tile16_subgroup`). Weights are `W` read through
// `load_w4`: f32 here, packed half floats in `moe_matmul_f16_subgroup`, this file with
// the f16 prelude.

override WG: u32 = 64u;
const TM: u32 = 16u;

@compute @workgroup_size(WG)
fn moe_matmul_subgroup(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let col = gid.x;
    let row0 = wid.y * TM;
    if (moe_tile_is_padding(row0)) {
        return;
    }
    let colc = min(col, p.n4 - 1u);
    let e = row_expert[row0];
    let n = moe_tile_rows(row0, TM);
    if (n <= 4u) {
        moe_few_tile(e, col, row0, n); // a decode step's tile
        return;
    }
    let ra = source(row0 + (lane & 7u));
    let rb = source(row0 + 8u + (lane & 7u));
    let acc = tile16_subgroup(vec4<u32>(expert_panel(e, colc), p.p4, 0u, 0u), p.k4, ra, rb);
    if (col >= p.n4) {
        return;
    }
    let bv = expert_bias(e, col);
    for (var r = 0u; r < TM; r++) {
        let row = row0 + r;
        if (row >= p.rows) {
            return;
        }
        moe_store(row, col, acc[r] + bv);
    }
}
