// The residual stream's base rows for prelude `residual_parts`: the kernel's `x`.
fn residual_base(row: u32, c: u32) -> vec4<f32> {
    return x[row * p.k4 + c];
}
