// 16 rows × one vec4 of columns of a product, for the subgroup matmul kernels (the
// kernel declares `a: array<vec4<f32>>` and weights `w: array<W>`, read through
// `load_w4` of a weights prelude). Lane s of the subgroup loads rows s and s + 8 of
// `a` and every lane takes the 16 rows from those two loads with subgroupBroadcast: on
// lavapipe each storage load is a scalar loop over the lanes, so this cuts the loads of
// `a` eightfold. Needs subgroups of at least 8 lanes (lavapipe: 8 or 16; NVIDIA 32; AMD
// 32/64), and every lane of the subgroup must call it (broadcasts). The accumulators
// are separate variables inside the loop: llvmpipe keeps dynamically indexed arrays in
// memory.

// The products of `a`'s rows at vec4 offsets `ra` (this lane's row of the first 8)
// and `rb` (of the second 8) with the weight column whose panel starts at `wbase`
// (panels of `p4` vec4s, `k4` vec4s of K).
fn tile16_subgroup(wbase: u32, p4: u32, k4: u32, ra: u32, rb: u32) -> array<vec4<f32>, 16> {
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
        let bi = wbase + 4u * k * p4;
        let b0 = load_w4(w[bi]);
        let b1 = load_w4(w[bi + p4]);
        let b2 = load_w4(w[bi + 2u * p4]);
        let b3 = load_w4(w[bi + 3u * p4]);
        let xa = a[ra + k];
        let xb = a[rb + k];
        let a0 = subgroupBroadcast(xa, 0u);
        c0 += a0.x * b0 + a0.y * b1 + a0.z * b2 + a0.w * b3;
        let a1 = subgroupBroadcast(xa, 1u);
        c1 += a1.x * b0 + a1.y * b1 + a1.z * b2 + a1.w * b3;
        let a2 = subgroupBroadcast(xa, 2u);
        c2 += a2.x * b0 + a2.y * b1 + a2.z * b2 + a2.w * b3;
        let a3 = subgroupBroadcast(xa, 3u);
        c3 += a3.x * b0 + a3.y * b1 + a3.z * b2 + a3.w * b3;
        let a4 = subgroupBroadcast(xa, 4u);
        c4 += a4.x * b0 + a4.y * b1 + a4.z * b2 + a4.w * b3;
        let a5 = subgroupBroadcast(xa, 5u);
        c5 += a5.x * b0 + a5.y * b1 + a5.z * b2 + a5.w * b3;
        let a6 = subgroupBroadcast(xa, 6u);
        c6 += a6.x * b0 + a6.y * b1 + a6.z * b2 + a6.w * b3;
        let a7 = subgroupBroadcast(xa, 7u);
        c7 += a7.x * b0 + a7.y * b1 + a7.z * b2 + a7.w * b3;
        let a8 = subgroupBroadcast(xb, 0u);
        c8 += a8.x * b0 + a8.y * b1 + a8.z * b2 + a8.w * b3;
        let a9 = subgroupBroadcast(xb, 1u);
        c9 += a9.x * b0 + a9.y * b1 + a9.z * b2 + a9.w * b3;
        let a10 = subgroupBroadcast(xb, 2u);
        c10 += a10.x * b0 + a10.y * b1 + a10.z * b2 + a10.w * b3;
        let a11 = subgroupBroadcast(xb, 3u);
        c11 += a11.x * b0 + a11.y * b1 + a11.z * b2 + a11.w * b3;
        let a12 = subgroupBroadcast(xb, 4u);
        c12 += a12.x * b0 + a12.y * b1 + a12.z * b2 + a12.w * b3;
        let a13 = subgroupBroadcast(xb, 5u);
        c13 += a13.x * b0 + a13.y * b1 + a13.z * b2 + a13.w * b3;
        let a14 = subgroupBroadcast(xb, 6u);
        c14 += a14.x * b0 + a14.y * b1 + a14.z * b2 + a14.w * b3;
        let a15 = subgroupBroadcast(xb, 7u);
        c15 += a15.x * b0 + a15.y * b1 + a15.z * b2 + a15.w * b3;
    }
    return array<vec4<f32>, 16>(c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15);
}
