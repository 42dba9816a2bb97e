// The residual stream's base rows for prelude `residual_parts` in the first block of a
// decode step (`matvec_embed_staged`): the embedding itself, wte[ids[row]] (+
// wpe[positions[row]]), as the `embedding` kernel computes it (the same expression, so
// the same numbers), with no dispatch of its own. wpe is bound as the kernel's `x`;
// wte (weights `W`, row groups: prelude `row_groups`) must fit one binding.

// (the rows' positions: prelude matvec_params' binding 8)
@group(0) @binding(15) var<storage, read> ids: array<u32>;       // [R]
@group(0) @binding(16) var<storage, read> wte: array<W>;         // [vocabulary, K]

// p.norm: add the learned position embedding (wpe, bound as `x`).
const STAGE_WPE: u32 = 16u;

fn residual_base(row: u32, c: u32) -> vec4<f32> {
    var e = load_w4(wte[row_base(ids[row], p.k4) + col_step(c)]);
    if ((p.norm & STAGE_WPE) != 0u) {
        e += x[positions[row] * p.k4 + c];
    }
    return e;
}
