// Grouped expert matmul over the row list of moe_route.wgsl:
//   out[r, :] = act(a[src(r), :] · w[e(r)] + bias[e(r)])   for valid rows r
// where e(r) = row_expert[r], w holds every expert's [K, N] matrix one after another,
// and src(r) = row_token[r] when gathering token rows (flag 8), else r. Rows with
// token 0xFFFFFFFF are padding: computed on clamped inputs, never stored. Each
// invocation computes 8 rows × 4 columns; a workgroup's 8 rows lie in one expert's
// segment (segments are padded to 16 rows), so the weights it reads are one expert's.
// Flags: 1 bias, 2 GELU, 4 ReLU, 16 SiLU, 8 gather rows of `a` by token.
// Weights are `W` read through `load_w4` (prelude shaders/lib/weights_*.wgsl): f32 here,
// packed half floats in `moe_matmul_f16`, which is this file with the f16 prelude.

// Each expert's [K, N] matrix is stored in column panels (see matmul.wgsl): N / P panels
// of [K, P], P = 64 when N % 64 == 0, else N (row-major); p4 = P / 4.

struct MoeMatmulParams {
    rows: u32, // rows of the grouped list
    n4: u32,   // N / 4
    k4: u32,   // K / 4
    flags: u32,
    p4: u32,   // panel width of each expert's matrix / 4
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

override WG: u32 = 64u;
const TM: u32 = 8u;
const INVALID: u32 = 0xFFFFFFFFu;

@group(0) @binding(0) var<uniform> p: MoeMatmulParams;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;        // [T or rows, K]
@group(0) @binding(2) var<storage, read> w: array<W>;        // [E, K, N]
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;     // [E, N] (or a dummy)
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>; // [rows, N]
@group(0) @binding(5) var<storage, read> row_token: array<u32>;      // [rows]
@group(0) @binding(6) var<storage, read> row_expert: array<u32>;     // [rows]

fn activate(x: vec4<f32>) -> vec4<f32> {
    if ((p.flags & 2u) != 0u) {
        let inner = 0.7978845608028654 * (x + 0.044715 * x * x * x);
        return 0.5 * x * (1.0 + tanh(clamp(inner, vec4<f32>(-15.0), vec4<f32>(15.0))));
    }
    if ((p.flags & 4u) != 0u) {
        return max(x, vec4<f32>(0.0));
    }
    if ((p.flags & 16u) != 0u) {
        return x / (1.0 + exp(-x));
    }
    return x;
}

@compute @workgroup_size(WG)
fn moe_matmul(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let col = gid.x;
    let row0 = wid.y * TM;
    // Segments are [assignments | padding] and a tile never spans two: a tile whose
    // first row is padding is padding throughout, and the whole workgroup leaves.
    if (row0 >= p.rows || row_token[row0] == INVALID) {
        return;
    }
    let n4 = p.n4;
    let k4 = p.k4;
    let colc = min(col, n4 - 1u);
    let e = row_expert[row0];
    let p4 = p.p4;
    // this expert's matrix, this column's panel
    let wbase = e * k4 * 4u * n4 + (colc / p4) * (4u * k4 * p4) + colc % p4;
    var src: array<u32, 8>;
    for (var r = 0u; r < TM; r++) {
        let row = min(row0 + r, p.rows - 1u);
        var s = row;
        if ((p.flags & 8u) != 0u) {
            s = row_token[row];
            if (s == INVALID) {
                s = 0u;
            }
        }
        src[r] = s * k4;
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
    if (col >= n4) {
        return;
    }
    let accs = array<vec4<f32>, 8>(acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7);
    var bv = vec4<f32>(0.0);
    if ((p.flags & 1u) != 0u) {
        bv = bias[e * n4 + col];
    }
    for (var r = 0u; r < TM; r++) {
        let row = row0 + r;
        if (row >= p.rows) {
            return;
        }
        if (row_token[row] != INVALID) {
            out[row * n4 + col] = activate(accs[r] + bv);
        }
    }
}
