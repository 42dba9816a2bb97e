// Half-float wte (`dtype: "float16"`): the same kernel as matvec_bt.wgsl (LM head for
// one position) with each vec4 of `b` loaded as a vec2<u32> and unpacked with
// unpack2x16float.

struct MatvecBtParams {
    n: u32,      // rows of b = outputs
    k4: u32,     // K / 4
    a_row0: u32, // row of `a` to multiply
    _pad: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: MatvecBtParams;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;     // [a_row0 + 1, K]
@group(0) @binding(2) var<storage, read> b: array<vec2<u32>>;     // [N, K] as f16 pairs
@group(0) @binding(3) var<storage, read_write> out: array<f32>;   // [N]

fn half4(v: vec2<u32>) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(v.x), unpack2x16float(v.y));
}

@compute @workgroup_size(WG)
fn matvec_bt_f16(@builtin(global_invocation_id) gid: vec3<u32>) {
    let col0 = gid.x * 4u;
    if (col0 >= p.n) {
        return;
    }
    let k4 = p.k4;
    let last = p.n - 1u;
    let w0 = min(col0, last) * k4;
    let w1 = min(col0 + 1u, last) * k4;
    let w2 = min(col0 + 2u, last) * k4;
    let w3 = min(col0 + 3u, last) * k4;
    let xo = p.a_row0 * k4;
    var acc = vec4<f32>(0.0);
    for (var k = 0u; k < k4; k++) {
        let x = a[xo + k];
        acc += vec4<f32>(dot(x, half4(b[w0 + k])), dot(x, half4(b[w1 + k])), dot(x, half4(b[w2 + k])), dot(x, half4(b[w3 + k])));
    }
    out[col0] = acc.x;
    if (col0 + 1u < p.n) { out[col0 + 1u] = acc.y; }
    if (col0 + 2u < p.n) { out[col0 + 2u] = acc.z; }
    if (col0 + 3u < p.n) { out[col0 + 3u] = acc.w; }
}
