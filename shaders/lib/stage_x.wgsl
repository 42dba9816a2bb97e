// The input row of a hardware decode kernel taken from the residual stream with
// deferred terms (prelude residual_parts): the workgroup sums the row into workgroup
// memory once (the first workgroup of the row also writes it to `x_out`, the base
// the next deferred add reads), takes the norm's statistics over it (prelude
// norm_prologue) and normalises it in place, so the kernel's loop reads
// `x_at(row, r, st)` from workgroup memory. Rows of at most 4 · MAX_STAGE4 floats.
// The kernel declares `x_out` and `WG`; preludes residual_parts, workgroup_reduce,
// norm_prologue.

const MAX_STAGE4: u32 = 512u;

// output vec4s a workgroup of `matvec_staged` computes (`kernels::matvec::STAGED_COLS4`):
// each workgroup sums the row's partial rows, so fewer, wider workgroups than
// `matvec_splitk`'s 4 (unused by `mlp_partial`)
override COLS4: u32 = 16u;

var<workgroup> xs: array<vec4<f32>, MAX_STAGE4>;

fn norm_src(i: u32) -> vec4<f32> {
    return xs[i];
}

// Stage row `row` (`first`: this workgroup writes it to x_out); returns the norm's
// statistics. Call from uniform control flow (it holds barriers).
fn x_begin(row: u32, lid: u32, first: bool) -> vec2<f32> {
    let k4 = p.k4;
    for (var c = lid; c < k4; c += WG) {
        let v = residual_at(row, c);
        xs[c] = v;
        if (first) {
            x_out[row * k4 + c] = v;
        }
    }
    // each lane reads back only its own vec4s until the barrier below
    let st = norm_stats(0u, k4, lid);
    for (var c = lid; c < k4; c += WG) {
        xs[c] = norm4(xs[c], c, st);
    }
    workgroupBarrier();
    return st;
}

// Float `r` of the staged, normalised row.
fn x_at(row: u32, r: u32, st: vec2<f32>) -> f32 {
    return xs[r / 4u][r % 4u];
}
