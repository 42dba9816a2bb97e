// Copy n vec4s inside a compute pass: dst[dst0 + i] = src[src0 + i] (a captured
// forward's residual stream after each layer to its logit-lens buffer, and back); with
// p.c4 > 0, gather rows of c4 vec4s instead: dst row j = src row rows[j] (a step's asked
// rows for its LM head, decode rows and each prompt's last row, in one dispatch).

struct CopyParams {
    n4: u32,
    src0: u32, // vec4 offsets (a copy)
    dst0: u32,
    c4: u32,   // 0: a copy; else the vec4s of a gathered row
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: CopyParams;
@group(0) @binding(1) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> rows: array<u32>; // the gathered rows (or a stand-in)

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
    var at = p.src0 + i;
    if (p.c4 != 0u) {
        at = rows[i / p.c4] * p.c4 + i % p.c4;
    }
    dst[p.dst0 + i] = src[at];
}
