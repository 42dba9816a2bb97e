// A decode step's whole MLP in one dispatch (the hardware decode blocks in three
// dispatches), its residual add deferred. Workgroup (i, row) takes hidden units
// i · CH .. (i + 1) · CH (CH = 4 · p.chunk4):
//   1. stages the row of the residual stream (x + bias + Σ partial rows of the
//      attention, prelude stage_x; chunk 0 writes it to x_out) and normalises it;
//   2. computes its hidden units, act(x̂ · w_up[:, chunk] + b_up) — GELU, or SwiGLU
//      silu(gate) · up with w_up = gate | up — as `matvec_splitk` does (lane groups
//      split K, the partial sums meet in workgroup memory as a tree);
//   3. multiplies them by their rows of w_down, leaving
//      out[row, i, :] = hidden[chunk] · w_down[chunk, :],
//      chunk i's share of the down projection, as a partial row: the next kernel reads
//      x + bias + Σ_i out[row, i] (prelude residual_parts), in chunk order.
// w_up `[C, H]` (SwiGLU `[C, 2H]`) and w_down `[H, C]` are stored in column panels as
// for `matvec` (p.up_p4, p.down_p4: panel widths / 4). Every row is computed by the
// same code: its numbers do not depend on its batch. Preludes: the weight type `W` /
// `load_w4`, gelu, workgroup_reduce, norm_prologue, residual_parts, stage_x,
// splitk_reduce.

override WG: u32 = 256u;

struct MlpParams {
    k4: u32,      // vec4s of a row of x (C / 4)
    parts: u32,   // partial rows per row of x read (prelude residual_parts)
    norm: u32,    // NORM_* (prelude norm_prologue), STAGE_BIAS (prelude residual_parts)
    eps: f32,     // the norm's epsilon
    flags: u32,   // MLP_BIAS, MLP_GELU, MLP_SWIGLU
    h4: u32,      // vec4s of the hidden layer (H / 4)
    chunk4: u32,  // vec4s of hidden units a workgroup takes: a power of two, at most 32
    up_p4: u32,   // w_up's panel width / 4
    down_p4: u32, // w_down's panel width / 4
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// p.flags
const MLP_BIAS: u32 = 1u;
const MLP_GELU: u32 = 2u;
const MLP_SWIGLU: u32 = 4u;

@group(0) @binding(0) var<uniform> p: MlpParams;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;          // [R, C] (base)
@group(0) @binding(2) var<storage, read> parts: array<vec4<f32>>;      // [R, P, C]
@group(0) @binding(3) var<storage, read> res_bias: array<vec4<f32>>;   // [C] (STAGE_BIAS; or a dummy)
@group(0) @binding(4) var<storage, read_write> x_out: array<vec4<f32>>; // [R, C]
@group(0) @binding(5) var<storage, read> norm_w: array<vec4<f32>>;     // [C]
@group(0) @binding(6) var<storage, read> norm_b: array<vec4<f32>>;     // [C] (NORM_BIAS; or a dummy)
@group(0) @binding(7) var<storage, read> w_up: array<W>;               // [C, H | 2H] in panels
@group(0) @binding(8) var<storage, read> b_up: array<vec4<f32>>;       // [H | 2H] (MLP_BIAS; or a dummy)
@group(0) @binding(9) var<storage, read> w_down: array<W>;             // [H, C] in panels
@group(0) @binding(10) var<storage, read_write> out: array<vec4<f32>>; // [R, H / CH, C]

var<workgroup> hid: array<vec4<f32>, 32>;

@compute @workgroup_size(WG)
fn mlp_partial(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
) {
    let i = wg.x;
    let row = wg.y;
    let st = x_begin(row, lid, i == 0u);
    let k4 = p.k4;
    let ch4 = p.chunk4;
    let swiglu = (p.flags & MLP_SWIGLU) != 0u;
    // 2. the chunk's columns of w_up (the gate's, then the up half's), COLS4 = cols
    var cols = ch4;
    if (swiglu) {
        cols = 2u * ch4;
    }
    let c = lid % cols;
    let g = lid / cols;
    let groups = WG / cols;
    var col = i * ch4 + c;
    if (c >= ch4) {
        col = p.h4 + i * ch4 + (c - ch4);
    }
    let up_base = (col / p.up_p4) * (4u * k4 * p.up_p4) + col % p.up_p4;
    var acc = vec4<f32>(0.0);
    for (var r = g; r < 4u * k4; r += groups) {
        acc += x_at(row, r, st) * load_w4(w_up[up_base + r * p.up_p4]);
    }
    let sum = sum_groups(lid, cols, acc); // prelude splitk_reduce
    workgroupBarrier(); // every lane has read its sum before `part` holds the columns
    if (g == 0u) {
        var o = sum;
        if ((p.flags & MLP_BIAS) != 0u) {
            o += b_up[col];
        }
        part[c] = o;
    }
    workgroupBarrier();
    if (lid < ch4) {
        var a = part[lid];
        if (swiglu) {
            a = silu_gate(a, part[lid + ch4]);
        } else if ((p.flags & MLP_GELU) != 0u) {
            a = gelu(a);
        }
        hid[lid] = a;
    }
    workgroupBarrier();
    // 3. the chunk's share of the down projection
    let h0 = i * 4u * ch4; // the chunk's first row of w_down
    let nparts = p.h4 / ch4;
    for (var j = lid; j < k4; j += WG) {
        let base = (j / p.down_p4) * (4u * p.h4 * p.down_p4) + j % p.down_p4;
        var o = vec4<f32>(0.0);
        for (var u = 0u; u < 4u * ch4; u++) {
            o += hid[u / 4u][u % 4u] * load_w4(w_down[base + (h0 + u) * p.down_p4]);
        }
        out[(row * nparts + i) * k4 + j] = o;
    }
}
