// 16 rows × one vec4 of columns of a product, for the subgroup matmul kernels (the
// kernel declares `a: array<vec4<f32>>`, and `tile_weights` / `tile_product`, which say
// how its weights are laid out: prelude `tile16_panels` for column panels of `w`, or
// its own). Lane s of the subgroup loads rows s and s + 8 of `a` and every lane takes
// the 16 rows from those two loads with subgroupBroadcast: on lavapipe each storage
// load is a scalar loop over the lanes, so this cuts the loads of `a` eightfold. Needs
// subgroups of at least 8 lanes (lavapipe: 8 or 16; NVIDIA 32; AMD 32/64), and every
// lane of the subgroup must call it (broadcasts). The accumulators are separate
// variables inside the loop: llvmpipe keeps dynamically indexed arrays in memory.

// The four weight vec4s one step along K multiplies (loaded through `load_w4`).
struct Tile4 {
    b0: vec4<f32>,
    b1: vec4<f32>,
    b2: vec4<f32>,
    b3: vec4<f32>,
}

// The products of `a`'s rows at vec4 offsets `ra` (this lane's row of the first 8)
// and `rb` (of the second 8) with the weights `tile_weights(at, k)` gives at each of
// the `k4` steps along K (`at`: where this lane's weight column starts, in the
// kernel's terms).
fn tile16_subgroup(at: vec4<u32>, k4: u32, ra: u32, rb: u32) -> array<vec4<f32>, 16> {
    var c0 = vec4<f32>(0.0);
    var c1 = vec4<f32>(0.0);
    var c2 = vec4<f32>(0.0);
    var c3 = vec4<f32>(0.0);
    var c4 = vec4<f32>(0.0);
    var c5 = vec4<f32>(0.0);
    var c6 = vec4<f32>(0.0);
    var c7 = vec4<f32>(0.0);
    var c8 = vec4<f32>(0.0);
    var c9 = vec4<f32>(0.0);
    var c10 = vec4<f32>(0.0);
    var c11 = vec4<f32>(0.0);
    var c12 = vec4<f32>(0.0);
    var c13 = vec4<f32>(0.0);
    var c14 = vec4<f32>(0.0);
    var c15 = vec4<f32>(0.0);
    for (var k = 0u; k < k4; k++) {
        let t = tile_weights(at, k);
        let xa = a[ra + k];
        let xb = a[rb + k];
        let a0 = subgroupBroadcast(xa, 0u);
        c0 += tile_product(a0, t);
        let a1 = subgroupBroadcast(xa, 1u);
        c1 += tile_product(a1, t);
        let a2 = subgroupBroadcast(xa, 2u);
        c2 += tile_product(a2, t);
        let a3 = subgroupBroadcast(xa, 3u);
        c3 += tile_product(a3, t);
        let a4 = subgroupBroadcast(xa, 4u);
        c4 += tile_product(a4, t);
        let a5 = subgroupBroadcast(xa, 5u);
        c5 += tile_product(a5, t);
        let a6 = subgroupBroadcast(xa, 6u);
        c6 += tile_product(a6, t);
        let a7 = subgroupBroadcast(xa, 7u);
        c7 += tile_product(a7, t);
        let a8 = subgroupBroadcast(xb, 0u);
        c8 += tile_product(a8, t);
        let a9 = subgroupBroadcast(xb, 1u);
        c9 += tile_product(a9, t);
        let a10 = subgroupBroadcast(xb, 2u);
        c10 += tile_product(a10, t);
        let a11 = subgroupBroadcast(xb, 3u);
        c11 += tile_product(a11, t);
        let a12 = subgroupBroadcast(xb, 4u);
        c12 += tile_product(a12, t);
        let a13 = subgroupBroadcast(xb, 5u);
        c13 += tile_product(a13, t);
        let a14 = subgroupBroadcast(xb, 6u);
        c14 += tile_product(a14, t);
        let a15 = subgroupBroadcast(xb, 7u);
        c15 += tile_product(a15, t);
    }
    return array<vec4<f32>, 16>(c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15);
}
