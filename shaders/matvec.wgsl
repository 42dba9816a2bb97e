// Matrix-vector path for one-token steps: out[N] (=|+=) act(x[K] · w[K, N] + bias[N]).
// Same epilogue flags as matmul (bit 0 bias, bit 1 GELU, bit 2 accumulate).
// One invocation per output vec4; the loads of x are uniform.
// Preludes: gelu, and the weight type `W` / `load_w4` (f32, or half floats for
// `matvec_f16`: the same kernel with each vec4 of `w` loaded as two packed words).

// w is stored in column panels: N / P panels of P columns, each [K, P] row-major
// (P = 64 when N % 64 == 0, else P = N, which is plain row-major [K, N]). A workgroup
// then walks K through contiguous memory, which the CPU's prefetchers follow; p4 = P / 4.
// The uniform `MatvecParams` comes from the prelude shaders/lib/matvec_params.wgsl.

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: MatvecParams;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;       // [K]
@group(0) @binding(2) var<storage, read> w: array<W>;               // [K, N]
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;    // [N] (or a dummy)
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>; // [N]

@compute @workgroup_size(WG)
fn matvec(@builtin(global_invocation_id) gid: vec3<u32>) {
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
        acc += xv.x * load_w4(w[bi]) + xv.y * load_w4(w[bi + p4]) + xv.z * load_w4(w[bi + 2u * p4])
            + xv.w * load_w4(w[bi + 3u * p4]);
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
