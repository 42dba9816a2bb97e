// Weights stored as IEEE half floats, two per u32 (`dtype: "float16"`): the same kernel
// as matvec.wgsl with each vec4 of `w` loaded as a vec2<u32> and unpacked with
// unpack2x16float, so a weight costs half a 32-bit load. Arithmetic stays f32.
// Matrix-vector path for one-token steps: out[N] (=|+=) act(x[K] · w[K, N] + bias[N]).
// Same epilogue flags as matmul (bit 0 bias, bit 1 GELU, bit 2 accumulate).
// One invocation per output vec4; the loads of x are uniform.

// w is stored in column panels: N / P panels of P columns, each [K, P] row-major
// (P = 64 when N % 64 == 0, else P = N, which is plain row-major [K, N]). A workgroup
// then walks K through contiguous memory, which the CPU's prefetchers follow; p4 = P / 4.

struct MatvecParams {
    n4: u32,
    k4: u32,
    flags: u32,
    p4: u32, // panel width of w / 4
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: MatvecParams;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;       // [K]
@group(0) @binding(2) var<storage, read> w: array<vec2<u32>>;       // [K, N] as f16 pairs
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;    // [N] (or a dummy)
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>; // [N]

fn half4(v: vec2<u32>) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(v.x), unpack2x16float(v.y));
}

fn gelu(x: vec4<f32>) -> vec4<f32> {
    let inner = 0.7978845608028654 * (x + 0.044715 * x * x * x);
    return 0.5 * x * (1.0 + tanh(clamp(inner, vec4<f32>(-15.0), vec4<f32>(15.0))));
}

@compute @workgroup_size(WG)
fn matvec_f16(@builtin(global_invocation_id) gid: vec3<u32>) {
    let col = gid.x;
    if (col >= p.n4) {
        return;
    }
    let n4 = p.n4;
    let p4 = p.p4;
    let base = (col / p4) * (4u * p.k4 * p4) + col % p4; // this column's panel
    var acc = vec4<f32>(0.0);
    for (var k = 0u; k < p.k4; k++) {
        let xv = x[k];
        let bi = base + 4u * k * p4;
        acc += xv.x * half4(w[bi]) + xv.y * half4(w[bi + p4]) + xv.z * half4(w[bi + 2u * p4]) + xv.w * half4(w[bi + 3u * p4]);
    }
    if ((p.flags & 1u) != 0u) {
        acc += bias[col];
    }
    if ((p.flags & 2u) != 0u) {
        acc = gelu(acc);
    }
    if ((p.flags & 4u) != 0u) {
        acc += out[col];
    }
    out[col] = acc;
}
