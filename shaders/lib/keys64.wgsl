// The walk over keys shared by the subgroup attention kernels of the forward (head size
// 64; prelude after `attention` and `query64`; the kernel declares `k`, `v` and
// `out`). The lanes of a subgroup hold consecutive queries of one head and take each
// key together: lanes s < 8 load vec4s s and s + 8 of its K row (and of its V row) and
// every lane takes the 16 vec4s with subgroupBroadcast, instead of every lane loading
// the whole row (on lavapipe each storage load is a per-lane scalar loop). The
// accumulator is a struct of separate fields: llvmpipe keeps dynamically indexed arrays
// in memory.

// One lane's running softmax over the keys so far: max m, normaliser l, the weighted
// sum of scores ws (for the entropy) and the weighted sum of values a0..a15.
struct Keys64 {
    m: f32,
    l: f32,
    ws: f32,
    a0: vec4<f32>,
    a1: vec4<f32>,
    a2: vec4<f32>,
    a3: vec4<f32>,
    a4: vec4<f32>,
    a5: vec4<f32>,
    a6: vec4<f32>,
    a7: vec4<f32>,
    a8: vec4<f32>,
    a9: vec4<f32>,
    a10: vec4<f32>,
    a11: vec4<f32>,
    a12: vec4<f32>,
    a13: vec4<f32>,
    a14: vec4<f32>,
    a15: vec4<f32>,
}

fn keys64_start() -> Keys64 {
    let z = vec4<f32>(0.0);
    return Keys64(-3.0e38, 0.0, 0.0, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z);
}

// `acc` with the key whose K row starts at vec4 `ko` of `k` and V row at `vo` of `v`
// when `live` (the key is not after the lane's query). Every lane of the subgroup
// calls it for the same key (the broadcasts need uniform control flow).
fn keys64_add(acc_in: Keys64, q: Query64, ko: u32, vo: u32, lane: u32, live: bool) -> Keys64 {
    var acc = acc_in;
    let kx = key4(ko + (lane & 7u));
    let ky = key4(ko + 8u + (lane & 7u));
    let vx = value4(vo + (lane & 7u));
    let vy = value4(vo + 8u + (lane & 7u));
    let k0 = subgroupBroadcast(kx, 0u);
    let k1 = subgroupBroadcast(kx, 1u);
    let k2 = subgroupBroadcast(kx, 2u);
    let k3 = subgroupBroadcast(kx, 3u);
    let k4 = subgroupBroadcast(kx, 4u);
    let k5 = subgroupBroadcast(kx, 5u);
    let k6 = subgroupBroadcast(kx, 6u);
    let k7 = subgroupBroadcast(kx, 7u);
    let k8 = subgroupBroadcast(ky, 0u);
    let k9 = subgroupBroadcast(ky, 1u);
    let k10 = subgroupBroadcast(ky, 2u);
    let k11 = subgroupBroadcast(ky, 3u);
    let k12 = subgroupBroadcast(ky, 4u);
    let k13 = subgroupBroadcast(ky, 5u);
    let k14 = subgroupBroadcast(ky, 6u);
    let k15 = subgroupBroadcast(ky, 7u);
    let s4 = q.v0 * k0 + q.v1 * k1 + q.v2 * k2 + q.v3 * k3 + q.v4 * k4 + q.v5 * k5 + q.v6 * k6 + q.v7 * k7 + q.v8 * k8 + q.v9 * k9 + q.v10 * k10 + q.v11 * k11 + q.v12 * k12 + q.v13 * k13 + q.v14 * k14 + q.v15 * k15;
    let v0 = subgroupBroadcast(vx, 0u);
    let v1 = subgroupBroadcast(vx, 1u);
    let v2 = subgroupBroadcast(vx, 2u);
    let v3 = subgroupBroadcast(vx, 3u);
    let v4 = subgroupBroadcast(vx, 4u);
    let v5 = subgroupBroadcast(vx, 5u);
    let v6 = subgroupBroadcast(vx, 6u);
    let v7 = subgroupBroadcast(vx, 7u);
    let v8 = subgroupBroadcast(vy, 0u);
    let v9 = subgroupBroadcast(vy, 1u);
    let v10 = subgroupBroadcast(vy, 2u);
    let v11 = subgroupBroadcast(vy, 3u);
    let v12 = subgroupBroadcast(vy, 4u);
    let v13 = subgroupBroadcast(vy, 5u);
    let v14 = subgroupBroadcast(vy, 6u);
    let v15 = subgroupBroadcast(vy, 7u);
    if (!live) {
        return acc;
    }
    let s = capped(s4.x + s4.y + s4.z + s4.w);
    if (s > acc.m) {
        let corr = exp(acc.m - s);
        acc.l *= corr;
        acc.ws *= corr;
        acc.a0 *= corr;
        acc.a1 *= corr;
        acc.a2 *= corr;
        acc.a3 *= corr;
        acc.a4 *= corr;
        acc.a5 *= corr;
        acc.a6 *= corr;
        acc.a7 *= corr;
        acc.a8 *= corr;
        acc.a9 *= corr;
        acc.a10 *= corr;
        acc.a11 *= corr;
        acc.a12 *= corr;
        acc.a13 *= corr;
        acc.a14 *= corr;
        acc.a15 *= corr;
        acc.m = s;
    }
    let e = exp(s - acc.m);
    acc.l += e;
    acc.ws += e * s;
    acc.a0 += e * v0;
    acc.a1 += e * v1;
    acc.a2 += e * v2;
    acc.a3 += e * v3;
    acc.a4 += e * v4;
    acc.a5 += e * v5;
    acc.a6 += e * v6;
    acc.a7 += e * v7;
    acc.a8 += e * v8;
    acc.a9 += e * v9;
    acc.a10 += e * v10;
    acc.a11 += e * v11;
    acc.a12 += e * v12;
    acc.a13 += e * v13;
    acc.a14 += e * v14;
    acc.a15 += e * v15;
    return acc;
}

// Store the lane's output (16 vec4s from vec4 `oo` of `out`) and return its entropy.
fn keys64_finish(acc: Keys64, oo: u32) -> f32 {
    let inv = 1.0 / acc.l;
    out[oo + 0u] = acc.a0 * inv;
    out[oo + 1u] = acc.a1 * inv;
    out[oo + 2u] = acc.a2 * inv;
    out[oo + 3u] = acc.a3 * inv;
    out[oo + 4u] = acc.a4 * inv;
    out[oo + 5u] = acc.a5 * inv;
    out[oo + 6u] = acc.a6 * inv;
    out[oo + 7u] = acc.a7 * inv;
    out[oo + 8u] = acc.a8 * inv;
    out[oo + 9u] = acc.a9 * inv;
    out[oo + 10u] = acc.a10 * inv;
    out[oo + 11u] = acc.a11 * inv;
    out[oo + 12u] = acc.a12 * inv;
    out[oo + 13u] = acc.a13 * inv;
    out[oo + 14u] = acc.a14 * inv;
    out[oo + 15u] = acc.a15 * inv;
    return acc.m + log(acc.l) - acc.ws * inv;
}
