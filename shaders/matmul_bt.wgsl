// out[M, N] = a[M, K] · b[N, K]ᵀ: the tied LM head (x · wteᵀ). b may be one row chunk
// of wte; out is the matching chunk of the logits. Each invocation computes 8 rows ×
// 4 columns; rows are shared by the workgroup (uniform loads of `a`).
// Weights are `W` read through `load_w4` (prelude shaders/lib/weights_*.wgsl): f32 here,
// packed half floats in `matmul_bt_f16`, which is this file with the f16 prelude.

struct MatmulBtParams {
    m: u32,  // rows of a and out
    n: u32,  // rows of b = columns of out
    k4: u32, // K / 4
    a_row0: u32, // row of `a` that output row 0 reads (last-position logits)
}

override WG: u32 = 64u;
const TM: u32 = 8u;

@group(0) @binding(0) var<uniform> p: MatmulBtParams;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;     // [a_row0 + M, K]
@group(0) @binding(2) var<storage, read> b: array<W>;     // [N, K]
@group(0) @binding(3) var<storage, read_write> out: array<f32>;   // [M, N]

@compute @workgroup_size(WG)
fn matmul_bt(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let col0 = gid.x * 4u;
    let row0 = wid.y * TM;
    let k4 = p.k4;
    let last = p.n - 1u;
    let b0 = row_base(min(col0, last), k4);
    let b1 = row_base(min(col0 + 1u, last), k4);
    let b2 = row_base(min(col0 + 2u, last), k4);
    let b3 = row_base(min(col0 + 3u, last), k4);
    var acc: array<vec4<f32>, 8>;
    var rows: array<u32, 8>;
    for (var r = 0u; r < TM; r++) {
        rows[r] = (p.a_row0 + min(row0 + r, p.m - 1u)) * k4;
        acc[r] = vec4<f32>(0.0);
    }
    for (var k = 0u; k < k4; k++) {
        let w0 = load_w4(b[b0 + col_step(k)]);
        let w1 = load_w4(b[b1 + col_step(k)]);
        let w2 = load_w4(b[b2 + col_step(k)]);
        let w3 = load_w4(b[b3 + col_step(k)]);
        for (var r = 0u; r < TM; r++) {
            let x = a[rows[r] + k];
            acc[r] += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
        }
    }
    for (var r = 0u; r < TM; r++) {
        let row = row0 + r;
        if (row >= p.m) {
            return;
        }
        let o = row * p.n + col0;
        let v = acc[r];
        if (col0 < p.n) { out[o] = v.x; }
        if (col0 + 1u < p.n) { out[o + 1u] = v.y; }
        if (col0 + 2u < p.n) { out[o + 2u] = v.z; }
        if (col0 + 3u < p.n) { out[o + 3u] = v.w; }
    }
}
