// Reductions across a workgroup of WG lanes (WG a power of two, at most 256; the
// kernel declares `WG`): the lanes' values meet in workgroup memory as a tree and every
// lane gets the result. Call from uniform control flow (they hold barriers).

var<workgroup> red: array<f32, 256>;

// The sum of `v` over the workgroup.
fn workgroup_sum(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier();
    return total;
}

// The largest `v` over the workgroup.
fn workgroup_max(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            red[lid] = max(red[lid], red[lid + s]);
        }
        workgroupBarrier();
    }
    let top = red[0];
    workgroupBarrier();
    return top;
}
