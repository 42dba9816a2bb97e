// Token + position embedding: out[t, :] = wte[ids[t], :] · scale + wpe[positions[t], :],
// or the token embedding alone for models without a learned position table (p.learned
// 0: the rotary families, whose positions enter in the attention); scale is 1 but for
// Gemma's √hidden.
// Positions are per row: 0 .. T in a forward, each generation's own in a decode batch.
// wte may be split into row chunks (bound windows); each dispatch covers one chunk
// and writes only the tokens whose id falls inside [row_start, row_start + rows).
// Weights are `W` read through `load_w4` (prelude shaders/lib/weights_*.wgsl): f32 here,
// packed half floats in `embedding_f16`, which is this file with the f16 prelude.

struct EmbeddingParams {
    t: u32,          // tokens
    c4: u32,         // C / 4
    row_start: u32,  // first vocabulary row held by this wte chunk
    rows: u32,       // rows in this chunk
    learned: u32,    // 1: add the learned position embedding wpe
    scale: f32,      // the token embedding's factor
    _pad1: u32,
    _pad2: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: EmbeddingParams;
@group(0) @binding(1) var<storage, read> ids: array<u32>;          // [T]
@group(0) @binding(2) var<storage, read> wte: array<W>;    // [rows, C]
@group(0) @binding(3) var<storage, read> wpe: array<vec4<f32>>;    // [context, C]
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>; // [T, C]
@group(0) @binding(5) var<storage, read> positions: array<u32>;    // [T]

@compute @workgroup_size(WG)
fn embedding(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.t * p.c4) {
        return;
    }
    let t = i / p.c4;
    let c = i % p.c4;
    let id = ids[t];
    if (id < p.row_start || id >= p.row_start + p.rows) {
        return;
    }
    var e = load_w4(wte[row_base(id - p.row_start, p.c4) + col_step(c)]) * p.scale;
    if (p.learned != 0u) {
        e += wpe[positions[t] * p.c4 + c];
    }
    out[i] = e;
}
