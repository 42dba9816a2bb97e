// LM head for hardware GPUs (the rows of a decode step, the last rows of a prefill):
//   out[out_row0 + r, N] = x[a_row0 + r, :] · b[N, K]ᵀ  (b a row chunk of wte)
// with the final norm folded in when p.norm is set (prelude norm_prologue: x is then
// the residual stream). One workgroup per (32-row group of b, batch row): wte is stored
// in row groups (`kernels::matmul_bt::to_row_groups`: for each 8 columns, the 8 values
// of each of the group's 32 rows side by side), so lane l takes row l % 32 of the group
// and every 8th block of 8 columns from l / 32: the 32 lanes of a block read 32
// adjacent 8-value runs, and the workgroup walks the group's memory front to back. The
// 8 partial sums of a row meet in workgroup memory, added in lane order. `matvec_bt`
// (one lane per 4 outputs walking all of K) leaves a GPU mostly idle: 12,565 lanes for
// GPT-2's 50,257 outputs, against 402,048 here. Each row is computed by the same code,
// so its numbers do not depend on its batch. Preludes: matvec_bt_params, the weight
// type `W` / `load_w4` (f32, or packed half floats for `matvec_bt_f16_groups`),
// workgroup_reduce, norm_prologue. With p.gather the rows are the listed rows of x (a
// prefill step's asked rows, no gather dispatch before it).

// 32 rows × 8 lanes along K (`part` and the prelude's tree hold 256).
override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: MatvecBtParams;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;       // [a_row0 + R, K]
@group(0) @binding(2) var<storage, read> b: array<W>;               // [N, K] in row groups
@group(0) @binding(3) var<storage, read_write> out: array<f32>;     // [out_row0 + R, N]
@group(0) @binding(4) var<storage, read> norm_w: array<vec4<f32>>;  // [K] (p.norm; or a dummy)
@group(0) @binding(5) var<storage, read> norm_b: array<vec4<f32>>;  // [K] (NORM_BIAS; or a dummy)
@group(0) @binding(6) var<storage, read> rows_list: array<u32>;     // rows of x (p.gather; or a dummy)

var<workgroup> part: array<f32, 256>;

// the norm prologue's statistics are x's
fn norm_src(i: u32) -> vec4<f32> {
    return x[i];
}

@compute @workgroup_size(WG)
fn matvec_bt_groups(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
) {
    let group = wg.x;
    let r = wg.y; // batch row of this dispatch: r < p.rows
    let rr = lid % 32u;
    let k4 = p.k4;
    let k8 = (k4 + 1u) / 2u;
    // a prefill step's asked rows are read where they lie in the stream (p.gather)
    var xrow = p.a_row0 + r;
    if (p.gather != 0u) {
        xrow = rows_list[xrow];
    }
    let xr = xrow * k4;
    let st = norm_stats(xr, k4, lid);
    var acc = 0.0;
    for (var c8 = lid / 32u; c8 < k8; c8 += WG / 32u) {
        // 8 values of row rr: two stored vec4s (f32 or packed halves)
        let wi = ((group * k8 + c8) * 32u + rr) * 2u;
        acc += dot(norm4(x[xr + 2u * c8], 2u * c8, st), load_w4(b[wi]));
        if (2u * c8 + 1u < k4) {
            acc += dot(norm4(x[xr + 2u * c8 + 1u], 2u * c8 + 1u, st), load_w4(b[wi + 1u]));
        }
    }
    part[lid] = acc;
    workgroupBarrier();
    let col = group * 32u + lid;
    if (lid < 32u && col < p.n) {
        var s = part[lid];
        for (var j = 1u; j < WG / 32u; j++) {
            s += part[j * 32u + lid];
        }
        out[(p.out_row0 + r) * p.n + col] = s;
    }
}
