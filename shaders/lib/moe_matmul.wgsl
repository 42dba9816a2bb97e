// What the grouped expert matmuls (moe_matmul, moe_matmul_subgroup) share: the
// params, the bindings, and how a grouped row finds its source row and is stored.
//   out[r, :] = act(a[src(r), :] · w[e(r)] + bias[e(r)])   for valid rows r
// where e(r) = row_expert[r], w holds every expert's [K, N] matrix one after another,
// and src(r) = row_token[r] when gathering token rows (flag 8), else r. Rows with
// token 0xFFFFFFFF are padding: computed on clamped inputs, never stored. A
// workgroup's rows lie in one expert's segment (segments are padded to 16 rows), so
// the weights it reads are one expert's.
// Flags: 1 bias, 2 GELU, 4 ReLU, 16 SiLU, 8 gather rows of `a` by token, 32 SWIGLU_OUT.
// Each expert's [K, N] matrix is stored in column panels (see matmul.wgsl): N / P
// panels of [K, P], P = 64 when N % 64 == 0, else N (row-major); p4 = P / 4.
// Weights are `W` read through `load_w4` (a weights prelude); GELU from prelude `gelu`.

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

const INVALID: u32 = 0xFFFFFFFFu;

// Flag: SwiGLU into the output, for a SwiGLU expert's gate | up projection on a step
// whose tiles all hold at most 4 assignments (`kernels::moe::swiglu_in_fc`): of the
// weights' N columns gate | up, an output row takes the N / 2 values
// silu(gate + its bias) · (up + its bias), as the `swiglu` kernel takes them from the
// stored gate | up row (the same numbers), without the dispatch or the padding rows.
const SWIGLU_OUT: u32 = 32u;

fn swiglu_out() -> bool {
    return (p.flags & SWIGLU_OUT) != 0u;
}

// The vec4 columns of an output row.
fn out_n4() -> u32 {
    return select(p.n4, p.n4 / 2u, swiglu_out());
}

@group(0) @binding(0) var<uniform> p: MoeMatmulParams;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;        // [T or rows, K]
@group(0) @binding(2) var<storage, read> w: array<W>;                // [E, K, N]
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;     // [E, N] (or a dummy)
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>; // [rows, N]
@group(0) @binding(5) var<storage, read> row_token: array<u32>;      // [rows]
@group(0) @binding(6) var<storage, read> row_expert: array<u32>;     // [rows]
// the weights again, as vec4<u32>: 8 half floats a load for a tile's lone row
// (`moe_row1_halves`; with f32 weights unused)
@group(0) @binding(7) var<storage, read> w8: array<vec4<u32>>;       // [E, K, N] (as w)

fn activate(x: vec4<f32>) -> vec4<f32> {
    if ((p.flags & 2u) != 0u) {
        return gelu(x);
    }
    if ((p.flags & 4u) != 0u) {
        return max(x, vec4<f32>(0.0));
    }
    if ((p.flags & 16u) != 0u) {
        return silu(x);
    }
    return x;
}

// Whether the tile of rows from `row0` is padding throughout (segments are
// [assignments | padding] and a tile never spans two: a tile whose first row is
// padding is padding throughout, and the whole workgroup leaves).
fn moe_tile_is_padding(row0: u32) -> bool {
    return row0 >= p.rows || row_token[row0] == INVALID;
}

// The assignments among the `tm` rows of the tile from `row0` (a segment's rows are
// its assignments, then padding): a decode step's tiles hold one or two.
fn moe_tile_rows(row0: u32, tm: u32) -> u32 {
    var n = 0u;
    while (n < tm && row0 + n < p.rows && row_token[row0 + n] != INVALID) {
        n++;
    }
    return n;
}

// The expert's 4 weight vec4s of one step along K (rows 4k .. 4k + 3 of a column).
struct MoeW4 {
    b0: vec4<f32>,
    b1: vec4<f32>,
    b2: vec4<f32>,
    b3: vec4<f32>,
}

// The weight vec4s of the step whose first is at `bi` (rows `p.p4` apart in a panel).
fn moe_w4(bi: u32) -> MoeW4 {
    return MoeW4(load_w4(w[bi]), load_w4(w[bi + p.p4]), load_w4(w[bi + 2u * p.p4]), load_w4(w[bi + 3u * p.p4]));
}

// One step along K of a grouped row: x[4k .. 4k + 3] times the step's weights, in the
// order every tile takes it.
fn moe_step(av: vec4<f32>, t: MoeW4) -> vec4<f32> {
    return av.x * t.b0 + av.y * t.b1 + av.z * t.b2 + av.w * t.b3;
}

// The products of the first `n` (≤ 4) rows of the tile from `row0` with the expert's
// column from `wbase`, for a tile with few assignments: each weight vec4 loaded once
// for them, and only their products taken (a full tile computes all its rows,
// padding included). A row's expression is the tiles' (`moe_step` along K, in
// order), so its numbers do not depend on the rows around it; the rows past `n` stay
// 0 and are never stored.
fn moe_rows4(wbase: u32, row0: u32, n: u32) -> array<vec4<f32>, 4> {
    if (n == 1u) {
        // a decode step's usual tile: its token alone (a software adapter runs a
        // branch's steps for every lane, masked, so the other rows' would still cost)
        return array<vec4<f32>, 4>(moe_row1(wbase, row0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    }
    let s0 = source(row0);
    let s1 = source(row0 + 1u);
    let s2 = source(row0 + 2u);
    let s3 = source(row0 + 3u);
    var c0 = vec4<f32>(0.0);
    var c1 = vec4<f32>(0.0);
    var c2 = vec4<f32>(0.0);
    var c3 = vec4<f32>(0.0);
    for (var k = 0u; k < p.k4; k++) {
        let t = moe_w4(wbase + 4u * k * p.p4);
        c0 += moe_step(a[s0 + k], t);
        if (n > 1u) {
            c1 += moe_step(a[s1 + k], t);
        }
        if (n > 2u) {
            c2 += moe_step(a[s2 + k], t);
        }
        if (n > 3u) {
            c3 += moe_step(a[s3 + k], t);
        }
    }
    return array<vec4<f32>, 4>(c0, c1, c2, c3);
}

// `moe_rows4` of a tile with one assignment, `row0`.
fn moe_row1(wbase: u32, row0: u32) -> vec4<f32> {
    let s0 = source(row0);
    var c0 = vec4<f32>(0.0);
    for (var k = 0u; k < p.k4; k++) {
        c0 += moe_step(a[s0 + k], moe_w4(wbase + 4u * k * p.p4));
    }
    return c0;
}

// 4 weights from 2 u32s of half floats (as `load_w4` unpacks them).
fn halves4(x: u32, y: u32) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(x), unpack2x16float(y));
}

// `moe_row1` over 8 columns (vec4s 2·c8 and 2·c8 + 1) of half-float weights: one
// vec4<u32> load takes a K row's 8 halves, half the loads of two vec4 columns. Each
// column's expression is `moe_step`'s over the same halves, so its numbers are the
// other paths'. Needs N % 8 == 0 (then panels hold whole vec4<u32>s).
fn moe_row1_halves(e: u32, c8: u32, row0: u32) -> array<vec4<f32>, 2> {
    let s0 = source(row0);
    let base = expert_panel(e, 2u * c8) / 2u;
    let p8 = p.p4 / 2u;
    var lo = vec4<f32>(0.0);
    var hi = vec4<f32>(0.0);
    for (var k = 0u; k < p.k4; k++) {
        let bi = base + 4u * k * p8;
        let w0 = w8[bi];
        let w1 = w8[bi + p8];
        let w2 = w8[bi + 2u * p8];
        let w3 = w8[bi + 3u * p8];
        let av = a[s0 + k];
        lo += moe_step(av, MoeW4(halves4(w0.x, w0.y), halves4(w1.x, w1.y), halves4(w2.x, w2.y), halves4(w3.x, w3.y)));
        hi += moe_step(av, MoeW4(halves4(w0.z, w0.w), halves4(w1.z, w1.w), halves4(w2.z, w2.w), halves4(w3.z, w3.w)));
    }
    return array<vec4<f32>, 2>(lo, hi);
}

// A tile holding at most 4 assignments (a decode step's), computed and stored by
// invocation `col` of the tile from `row0` (expert `e`): a lone row over half-float
// weights 8 columns an invocation (`moe_row1_halves`; the invocations past N / 8
// have nothing to do), else `moe_rows4`, 4; with SWIGLU_OUT each column with its up
// column too, gated.
fn moe_few_tile(e: u32, col: u32, row0: u32, n: u32) {
    let gated = swiglu_out();
    let cols = out_n4();
    if (W_HALVES && n == 1u && cols % 2u == 0u) {
        if (col < cols / 2u) {
            var v = moe_halves_biased(e, col, row0);
            if (gated) {
                let u = moe_halves_biased(e, col + cols / 2u, row0);
                v = array<vec4<f32>, 2>(silu_gate(v[0], u[0]), silu_gate(v[1], u[1]));
            }
            moe_store(row0, 2u * col, v[0]);
            moe_store(row0, 2u * col + 1u, v[1]);
        }
        return;
    }
    let colc = min(col, cols - 1u);
    var v = moe_rows4_biased(e, colc, row0, n);
    if (gated) {
        let u = moe_rows4_biased(e, colc + cols, row0, n);
        v = array<vec4<f32>, 4>(silu_gate(v[0], u[0]), silu_gate(v[1], u[1]), silu_gate(v[2], u[2]), silu_gate(v[3], u[3]));
    }
    if (col < cols) {
        for (var r = 0u; r < n; r++) {
            moe_store(row0 + r, col, v[r]);
        }
    }
}

// `moe_row1_halves` of column group `c8`, each vec4 with its bias.
fn moe_halves_biased(e: u32, c8: u32, row0: u32) -> array<vec4<f32>, 2> {
    let r = moe_row1_halves(e, c8, row0);
    return array<vec4<f32>, 2>(r[0] + expert_bias(e, 2u * c8), r[1] + expert_bias(e, 2u * c8 + 1u));
}

// `moe_rows4` of column `colc`, each row with the column's bias.
fn moe_rows4_biased(e: u32, colc: u32, row0: u32, n: u32) -> array<vec4<f32>, 4> {
    let r = moe_rows4(expert_panel(e, colc), row0, n);
    let bv = expert_bias(e, colc);
    return array<vec4<f32>, 4>(r[0] + bv, r[1] + bv, r[2] + bv, r[3] + bv);
}

// Row of `a` that grouped row `r` reads, times K/4.
fn source(r: u32) -> u32 {
    let row = min(r, p.rows - 1u);
    var s = row;
    if ((p.flags & 8u) != 0u) {
        s = row_token[row];
        if (s == INVALID) {
            s = 0u;
        }
    }
    return s * p.k4;
}

// The first weight vec4 of expert `e`'s matrix in the panel of column `colc`.
fn expert_panel(e: u32, colc: u32) -> u32 {
    return e * p.k4 * 4u * p.n4 + (colc / p.p4) * (4u * p.k4 * p.p4) + colc % p.p4;
}

// The bias of expert `e` for column `col` (0 without flag 1).
fn expert_bias(e: u32, col: u32) -> vec4<f32> {
    if ((p.flags & 1u) != 0u) {
        return bias[e * p.n4 + col];
    }
    return vec4<f32>(0.0);
}

// Store grouped row `row`'s product `v` (bias added) unless it is padding.
fn moe_store(row: u32, col: u32, v: vec4<f32>) {
    if (row_token[row] != INVALID) {
        out[row * out_n4() + col] = activate(v);
    }
}
