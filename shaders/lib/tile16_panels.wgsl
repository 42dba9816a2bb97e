// The weights of the subgroup matmul tile (prelude `tile16_subgroup`) in column panels
// of `w: array<W>` (`matmul`'s layout, read through `load_w4`): `at.x` is the start of
// this lane's column in its panel, `at.y` the panel's width in vec4s. A step along K
// takes 4 rows of the column's vec4 and adds a.x · row 0 + … + a.w · row 3.

fn tile_weights(at: vec4<u32>, k: u32) -> Tile4 {
    let bi = at.x + 4u * k * at.y;
    return Tile4(
        load_w4(w[bi]),
        load_w4(w[bi + at.y]),
        load_w4(w[bi + 2u * at.y]),
        load_w4(w[bi + 3u * at.y]),
    );
}

fn tile_product(a: vec4<f32>, t: Tile4) -> vec4<f32> {
    return a.x * t.b0 + a.y * t.b1 + a.z * t.b2 + a.w * t.b3;
}
