// Subgroup variant of matmul_bt (same bindings and params): out[M, N] = a[M, K] · b[N, K]ᵀ,
// the tied LM head. Each invocation computes 16 rows × 4 columns; rows of `a` are loaded
// once per subgroup (lanes s and s + 8) and shared with subgroupBroadcast (prelude
// `tile16_subgroup`, as matmul_subgroup.wgsl). Needs subgroups of at least 8 lanes.
// Weights are `W` read through `load_w4` (prelude shaders/lib/weights_*.wgsl): f32 here,
// packed half floats in `matmul_bt_f16_subgroup`, which is this file with the f16 prelude.

struct MatmulBtParams {
    m: u32,  // rows of a and out
    n: u32,  // rows of b = columns of out
    k4: u32, // K / 4
    a_row0: u32, // row of `a` that output row 0 reads (last-position logits)
}

override WG: u32 = 64u;
const TM: u32 = 16u;

@group(0) @binding(0) var<uniform> p: MatmulBtParams;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;     // [a_row0 + M, K]
@group(0) @binding(2) var<storage, read> b: array<W>;     // [N, K]
@group(0) @binding(3) var<storage, read_write> out: array<f32>;   // [M, N]

fn store(row: u32, col0: u32, v: vec4<f32>) {
    let o = row * p.n + col0;
    if (col0 < p.n) { out[o] = v.x; }
    if (col0 + 1u < p.n) { out[o + 1u] = v.y; }
    if (col0 + 2u < p.n) { out[o + 2u] = v.z; }
    if (col0 + 3u < p.n) { out[o + 3u] = v.w; }
}

// The weights of a step along K for prelude `tile16_subgroup`: columns 4k .. 4k + 3 of
// the 4 rows of `b` starting at `at`'s four row starts, each dotted with a row of `a`.
fn tile_weights(at: vec4<u32>, k: u32) -> Tile4 {
    let s = col_step(k);
    return Tile4(load_w4(b[at.x + s]), load_w4(b[at.y + s]), load_w4(b[at.z + s]), load_w4(b[at.w + s]));
}

fn tile_product(a: vec4<f32>, t: Tile4) -> vec4<f32> {
    return vec4<f32>(dot(a, t.b0), dot(a, t.b1), dot(a, t.b2), dot(a, t.b3));
}

@compute @workgroup_size(WG)
fn matmul_bt_subgroup(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let col0 = gid.x * 4u;
    let row0 = wid.y * TM;
    let k4 = p.k4;
    let last = p.n - 1u;
    let w0 = row_base(min(col0, last), k4);
    let w1 = row_base(min(col0 + 1u, last), k4);
    let w2 = row_base(min(col0 + 2u, last), k4);
    let w3 = row_base(min(col0 + 3u, last), k4);
    let ra = (p.a_row0 + min(row0 + (lane & 7u), p.m - 1u)) * k4;
    let rb = (p.a_row0 + min(row0 + 8u + (lane & 7u), p.m - 1u)) * k4;
    let acc = tile16_subgroup(vec4<u32>(w0, w1, w2, w3), k4, ra, rb); // prelude `tile16_subgroup`
    for (var r = 0u; r < TM; r++) {
        if (row0 + r >= p.m) {
            return;
        }
        store(row0 + r, col0, acc[r]);
    }
}
