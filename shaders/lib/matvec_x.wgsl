// The input row of `matvec_splitk` read from x as it is (the norm, when folded in,
// applied as each vec4 is read: prelude norm_prologue); its twin `stage_x` reads the
// residual stream with deferred terms. The kernel declares `p` (with `k4`) and `x`.

// output vec4s a workgroup of `matvec_splitk` computes (`kernels::matvec::SPLITK_COLS4`)
override COLS4: u32 = 4u;

fn norm_src(i: u32) -> vec4<f32> {
    return x[i];
}

// The norm's statistics of row `row` (`first` unused: nothing is written).
fn x_begin(row: u32, lid: u32, first: bool) -> vec2<f32> {
    return norm_stats(row * p.k4, p.k4, lid);
}

// Float `r` of row `row`, normalised with `st`.
fn x_at(row: u32, r: u32, st: vec2<f32>) -> f32 {
    return norm4(x[row * p.k4 + r / 4u], r / 4u, st)[r % 4u];
}
