// The split-K sum of the hardware matrix-vector kernels (`matvec_splitk`,
// `mlp_partial`): a workgroup's WG lanes are WG / cols groups of `cols` lanes, lane
// (g, c) holding group g's partial sum of column c; the groups meet in `part` as a
// tree. The kernel declares `WG`.

var<workgroup> part: array<vec4<f32>, 256>;

// Column lid % cols summed over the groups (every lane gets its column's sum). Call
// from uniform control flow (it holds barriers).
fn sum_groups(lid: u32, cols: u32, acc: vec4<f32>) -> vec4<f32> {
    let g = lid / cols;
    part[lid] = acc;
    workgroupBarrier();
    for (var s = WG / cols / 2u; s > 0u; s = s / 2u) {
        if (g < s) {
            part[lid] += part[lid + s * cols];
        }
        workgroupBarrier();
    }
    return part[lid % cols];
}
