// Copy n vec4s inside a compute pass: dst[dst0 + i] = src[src0 + i] (a captured
// forward's residual stream after each layer to its logit-lens buffer, and back).

struct CopyParams {
    n4: u32,
    src0: u32, // vec4 offsets
    dst0: u32,
    _pad: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: CopyParams;
@group(0) @binding(1) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn copy_rows(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = (wg.x + wg.y * nwg.x) * WG + lid;
    if (i >= p.n4) {
        return;
    }
    dst[p.dst0 + i] = src[p.src0 + i];
}
