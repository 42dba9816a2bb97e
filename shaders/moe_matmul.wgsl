// Grouped expert matmul over the row list of moe_route.wgsl (params, bindings, the
// rows' sources and the store: prelude `moe_matmul`). Each invocation computes 8 rows ×
// 4 columns. Weights are `W` read through `load_w4` (prelude shaders/lib/weights_*.wgsl):
// f32 here, packed half floats in `moe_matmul_f16`, this file with the f16 prelude.

override WG: u32 = 64u;
const TM: u32 = 8u;

@compute @workgroup_size(WG)
fn moe_matmul(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let col = gid.x;
    let row0 = wid.y * TM;
    if (moe_tile_is_padding(row0)) {
        return;
    }
    let k4 = p.k4;
    let p4 = p.p4;
    let colc = min(col, p.n4 - 1u);
    let e = row_expert[row0];
    let wbase = expert_panel(e, colc);
    let n = moe_tile_rows(row0, TM);
    if (n <= 4u) {
        moe_few_tile(e, col, row0, n); // a decode step's tile
        return;
    }
    var src: array<u32, 8>;
    for (var r = 0u; r < TM; r++) {
        src[r] = source(row0 + r);
    }
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var acc4 = vec4<f32>(0.0);
    var acc5 = vec4<f32>(0.0);
    var acc6 = vec4<f32>(0.0);
    var acc7 = vec4<f32>(0.0);
    for (var k = 0u; k < k4; k++) {
        let bi = wbase + 4u * k * p4;
        let b0 = load_w4(w[bi]);
        let b1 = load_w4(w[bi + p4]);
        let b2 = load_w4(w[bi + 2u * p4]);
        let b3 = load_w4(w[bi + 3u * p4]);
        var av = a[src[0] + k];
        acc0 += av.x * b0 + av.y * b1 + av.z * b2 + av.w * b3;
        av = a[src[1] + k];
        acc1 += av.x * b0 + av.y * b1 + av.z * b2 + av.w * b3;
        av = a[src[2] + k];
        acc2 += av.x * b0 + av.y * b1 + av.z * b2 + av.w * b3;
        av = a[src[3] + k];
        acc3 += av.x * b0 + av.y * b1 + av.z * b2 + av.w * b3;
        av = a[src[4] + k];
        acc4 += av.x * b0 + av.y * b1 + av.z * b2 + av.w * b3;
        av = a[src[5] + k];
        acc5 += av.x * b0 + av.y * b1 + av.z * b2 + av.w * b3;
        av = a[src[6] + k];
        acc6 += av.x * b0 + av.y * b1 + av.z * b2 + av.w * b3;
        av = a[src[7] + k];
        acc7 += av.x * b0 + av.y * b1 + av.z * b2 + av.w * b3;
    }
    if (col >= p.n4) {
        return;
    }
    let accs = array<vec4<f32>, 8>(acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7);
    let bv = expert_bias(e, col);
    for (var r = 0u; r < TM; r++) {
        let row = row0 + r;
        if (row >= p.rows) {
            return;
        }
        moe_store(row, col, accs[r] + bv);
    }
}
