// Gemma 2's soft cap of the logits, in place over a chunk of them after the LM head:
// z = cap · tanh(z / cap) for the first n floats (tanh's argument clamped, as GELU's,
// so that no implementation overflows to NaN; tanh(±15) is ±1 in f32).

struct CapParams {
    n: u32,
    cap: f32,
    _pad0: u32,
    _pad1: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: CapParams;
@group(0) @binding(1) var<storage, read_write> z: array<f32>;

@compute @workgroup_size(WG)
fn logit_cap(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = (wg.x + wg.y * nwg.x) * WG + lid;
    if (i >= p.n) {
        return;
    }
    z[i] = p.cap * tanh(clamp(z[i] / p.cap, -15.0, 15.0));
}
