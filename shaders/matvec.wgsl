// Matrix-vector path for decode steps: out[R, N] (=|+=) act(x[R, K] · w[K, N] + bias[N])
// for the R rows of a batch (R = 1 for one generation). Same epilogue flags as matmul
// (bit 0 bias, bit 1 GELU, bit 2 accumulate). One invocation per output vec4 and group
// of up to MR rows (workgroup y): each weight vec4 is loaded once for the group's rows,
// and the loads of x are uniform.
// Preludes: matvec_params, batch_rows (MR), the weight type `W` / `load_w4` (f32, or
// half floats for `matvec_f16`: this file with each vec4 of `w` loaded as two packed
// words), gelu, epilogue.

// w is stored in column panels: N / P panels of P columns, each [K, P] row-major
// (P = 64 when N % 64 == 0, else P = N, which is plain row-major [K, N]). A workgroup
// then walks K through contiguous memory, which the CPU's prefetchers follow; p4 = P / 4.

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: MatvecParams;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;       // [R, K]
@group(0) @binding(2) var<storage, read> w: array<W>;               // [K, N]
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;    // [N] (or a dummy)
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>; // [R, N]

@compute @workgroup_size(WG)
fn matvec(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>) {
    let col = gid.x;
    if (col >= p.n4) {
        return;
    }
    let p4 = p.p4;
    let r0 = wg.y * MR;
    let nr = min(MR, p.rows - r0);
    var acc: array<vec4<f32>, MR>;
    for (var i = 0u; i < nr; i++) {
        acc[i] = vec4<f32>(0.0);
    }
    let base = (col / p4) * (4u * p.k4 * p4) + col % p4; // this column's panel
    for (var k = 0u; k < p.k4; k++) {
        let bi = base + 4u * k * p4;
        let w0 = load_w4(w[bi]);
        let w1 = load_w4(w[bi + p4]);
        let w2 = load_w4(w[bi + 2u * p4]);
        let w3 = load_w4(w[bi + 3u * p4]);
        for (var i = 0u; i < nr; i++) {
            let xv = x[(r0 + i) * p.k4 + k];
            acc[i] += xv.x * w0 + xv.y * w1 + xv.z * w2 + xv.w * w3;
        }
    }
    for (var i = 0u; i < nr; i++) {
        store_epilogue(acc[i], col, (r0 + i) * p.n4 + col);
    }
}
