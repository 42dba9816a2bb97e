// SwiGLU, the gated MLP activation of the Llama family (LlamaMLP: act_fn(gate_proj(x))
// * up_proj(x), act_fn SiLU): for each row of gate_up [T, 2H], its gate half g and up
// half u (the two projections computed by one matmul of 2H outputs),
//   out[t, j] = silu(g[t, j]) · u[t, j],   silu(x) = x / (1 + e^-x),
// or gelu(g[t, j]) · u[t, j] with flag GELU_GATE (Gemma: GELU, tanh approximation),
// times sigmoid(gate[t * 4]) with flag SCALED: Qwen2-MoE's shared expert, whose output
// a per-token sigmoid gate scales (scaling its hidden row scales its down projection
// the same). One invocation per output vec4.

struct SwigluParams {
    t: u32,     // rows
    h4: u32,    // H / 4
    flags: u32, // SCALED, GELU_GATE
    _pad1: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: SwigluParams;
@group(0) @binding(1) var<storage, read> gate_up: array<vec4<f32>>;   // [T, 2H]
@group(0) @binding(2) var<storage, read_write> out: array<vec4<f32>>; // [T, H]
@group(0) @binding(3) var<storage, read> gate: array<f32>;            // [T, 4] (SCALED)

const SCALED: u32 = 1u;
const GELU_GATE: u32 = 2u;

@compute @workgroup_size(WG)
fn swiglu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * WG;
    if (idx >= p.t * p.h4) {
        return;
    }
    let row = idx / p.h4;
    let j = idx % p.h4;
    let g = gate_up[row * 2u * p.h4 + j];
    let u = gate_up[row * 2u * p.h4 + p.h4 + j];
    var y: vec4<f32>;
    if ((p.flags & GELU_GATE) != 0u) {
        y = gelu(g) * u;
    } else {
        y = silu_gate(g, u);
    }
    if ((p.flags & SCALED) != 0u) {
        y *= 1.0 / (1.0 + exp(-gate[row * 4u]));
    }
    out[idx] = y;
}
