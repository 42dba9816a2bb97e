// The logit of each row's target token, for the rows whose target lies in this chunk
// of logits (ids row_start .. row_start + n): tv[tv0 + r] = x[r, targets[r] - row_start].
// Other rows are left as they are (a row with no target: 0xffffffff). With
// `token_rank`, a captured forward's log-probability and rank of each position's actual
// next token (and, per layer, through the logit lens).

struct TargetParams {
    rows: u32,
    n: u32,
    row_start: u32,
    tv0: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: TargetParams;
@group(0) @binding(1) var<storage, read> targets: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> tv: array<f32>;

@compute @workgroup_size(WG)
fn token_target(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let r = (wg.x + wg.y * nwg.x) * WG + lid;
    if (r >= p.rows) {
        return;
    }
    let t = targets[r];
    if (t >= p.row_start && t - p.row_start < p.n) {
        tv[p.tv0 + r] = x[r * p.n + (t - p.row_start)];
    }
}
