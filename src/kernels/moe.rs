//! Mixture-of-Experts kernels: gating (`moe_gate.wgsl`; `moe_norm_gate.wgsl` on
//! hardware GPUs, with the norm before it and the router's logits), routing into a grouped row
//! list (`moe_route.wgsl`), the grouped expert matmul (`moe_matmul.wgsl`) and the
//! weighted combine with the residual add (`moe_combine.wgsl`). The expert matmuls run
//! over T·K rows (plus at most 15 padding rows per expert), so their cost grows with
//! K·T, not with E·T.

use bytemuck::{Pod, Zeroable};

use super::layer_norm::{norm_flags, HostNorm, Norm};
use super::Pipelines;
use super::{submit_pass, KernelOp, LinearBuffers};
use crate::error::Result;
use crate::gpu::{buffers, grid_1d, grid_groups, GpuContext, WORKGROUP};

/// Rows each expert's segment is padded to (the route shader's `PAD`).
pub const SEGMENT_PAD: usize = 16;
/// Largest number of experts the gate keeps in registers.
pub const MAX_EXPERTS: usize = 64;

/// Flags of the grouped matmul (bias 1 and GELU 2 as in matmul).
pub const RELU: u32 = 4;
pub const GATHER: u32 = 8;
pub const SILU: u32 = 16;
/// Flag of a SwiGLU expert's gate | up projection (N = 2H): its output rows take
/// `silu(gate) · up` (H wide), as the `swiglu` kernel would from the stored gate | up;
/// only on a step whose tiles all take the few-row path ([`swiglu_in_fc`]).
pub const SWIGLU_OUT: u32 = 32;

/// The most assignments a tile of the grouped matmuls computes row by row (the
/// kernels' `moe_rows4`) rather than as a full tile.
pub const FEW_ROWS: usize = 4;

/// Whether a step of `t` tokens takes SwiGLU in its experts' gate | up projection
/// ([`SWIGLU_OUT`]) instead of dispatching the `swiglu` kernel: a token picks distinct
/// experts, so with `t` ≤ [`FEW_ROWS`] no expert holds more than [`FEW_ROWS`]
/// assignments and every tile takes the few-row path, which can gate (a decode step
/// of up to 4 rows: one dispatch fewer a block, and no SwiGLU over padding rows).
pub fn swiglu_in_fc(t: usize) -> bool {
    t <= FEW_ROWS
}

/// Rows of the grouped list for `t` tokens: T·K assignments plus padding.
pub fn grouped_rows(t: usize, e: usize, k: usize) -> usize {
    t * k + e * (SEGMENT_PAD - 1)
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct MoeGateParams {
    pub t: u32,
    pub e: u32,
    pub e4: u32,
    pub k: u32,
    pub renorm: u32,
    /// `moe_norm_gate`: vec4s of a row of x.
    pub c4: u32,
    /// `moe_norm_gate`: the norm's flags (`NORM_*` of prelude norm_flags).
    pub norm: u32,
    /// `moe_norm_gate`: the norm's epsilon.
    pub eps: f32,
    /// `moe_norm_gate`: 1 to take a shared expert's gate logit too.
    pub with_shared: u32,
    pub _pad: [u32; 3],
}

impl MoeGateParams {
    fn new(t: usize, (e, k): (usize, usize), renorm: bool) -> Self {
        MoeGateParams {
            t: t as u32,
            e: e as u32,
            e4: e.div_ceil(4) as u32 * 4,
            k: k as u32,
            renorm: u32::from(renorm),
            c4: 0,
            norm: 0,
            eps: 0.0,
            with_shared: 0,
            _pad: [0; 3],
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct MoeRouteParams {
    pub t: u32,
    pub e: u32,
    pub k: u32,
    pub rows: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct MoeMatmulParams {
    pub rows: u32,
    pub n4: u32,
    pub k4: u32,
    pub flags: u32,
    pub p4: u32,
    pub _pad: [u32; 3],
}

/// Experts' weights `w [E, K, N]` as kernel `variant` reads them: each expert's matrix
/// in column panels ([`super::matmul::to_panels`]), packed as half floats for the
/// `*_f16` variants.
pub fn store_experts(variant: &str, w: &[f32], k: usize, n: usize) -> Vec<f32> {
    super::in_precision_of(variant, experts_to_panels(w, k, n))
}

/// `w [E, K, N]` with each expert's matrix in column panels.
pub fn experts_to_panels(w: &[f32], k: usize, n: usize) -> Vec<f32> {
    w.chunks_exact(k * n)
        .flat_map(|m| super::matmul::to_panels(m, k, n))
        .collect()
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct MoeCombineParams {
    pub t: u32,
    pub c4: u32,
    pub k: u32,
    pub _pad: u32,
}

/// Gate op: bindings logits `[T, E4]`, probs `[T, E]`, sel_e `[T, K]` (u32), sel_w `[T, K]`.
pub fn moe_gate_op(
    ctx: &GpuContext,
    pl: &Pipelines,
    logits: &wgpu::Buffer,
    probs: &wgpu::Buffer,
    sel_e: &wgpu::Buffer,
    sel_w: &wgpu::Buffer,
) -> KernelOp {
    KernelOp::new::<MoeGateParams>(ctx, pl, "moe_gate", &[logits, probs, sel_e, sel_w])
}

/// Record the gate for `t` tokens over `e` experts, choosing `k`, their weights
/// renormalised to sum to 1 when `renorm`.
pub fn encode_moe_gate(
    pass: &mut wgpu::ComputePass<'_>,
    op: &KernelOp,
    t: usize,
    (e, k): (usize, usize),
    renorm: bool,
) {
    let p = MoeGateParams::new(t, (e, k), renorm);
    let (x, _) = grid_1d(t);
    op.encode(pass, &p, (x, 1, 1));
}

/// The buffers of [`moe_norm_gate_op`]: the residual stream `x [T, C]`, the norm's
/// weight and bias (or a dummy), the router `[C, E4]` (columns padded to E4, row-major),
/// and what it writes: the normalised rows `ln [T, C]` (which the experts read), and
/// the gate's `probs [T, E]`, `sel_e [T, K]` (u32), `sel_w [T, K]`; a shared expert's
/// sigmoid gate `[C, 4]` (its column 0) and its logits `[T, 4]` (Qwen2-MoE; dummies
/// without one).
pub struct NormGateBuffers<'a> {
    pub x: &'a wgpu::Buffer,
    pub norm_w: &'a wgpu::Buffer,
    pub norm_b: &'a wgpu::Buffer,
    pub router: &'a wgpu::Buffer,
    pub ln: &'a wgpu::Buffer,
    pub probs: &'a wgpu::Buffer,
    pub sel_e: &'a wgpu::Buffer,
    pub sel_w: &'a wgpu::Buffer,
    pub shared_w: &'a wgpu::Buffer,
    pub shared_gate: &'a wgpu::Buffer,
}

/// The hardware kernels' gate (`moe_norm_gate`, a workgroup a token): the norm before
/// the MoE MLP, the router's logits and the gate in one dispatch, in place of
/// `layer_norm_workgroup`, the router's matmul and `moe_gate`.
pub fn moe_norm_gate_op(ctx: &GpuContext, pl: &Pipelines, b: &NormGateBuffers) -> KernelOp {
    KernelOp::new::<MoeGateParams>(
        ctx,
        pl,
        "moe_norm_gate",
        &[
            b.x,
            b.norm_w,
            b.norm_b,
            b.router,
            b.ln,
            b.probs,
            b.sel_e,
            b.sel_w,
            b.shared_w,
            b.shared_gate,
        ],
    )
}

/// Record [`moe_norm_gate_op`] for `t` tokens of width `c` under `norm`; `shared`:
/// take the shared expert's gate logit too.
#[allow(clippy::too_many_arguments)]
pub fn encode_moe_norm_gate(
    pass: &mut wgpu::ComputePass<'_>,
    op: &KernelOp,
    (t, c): (usize, usize),
    (e, k): (usize, usize),
    renorm: bool,
    norm: Norm,
    shared: bool,
) {
    let p = MoeGateParams {
        c4: (c / 4) as u32,
        norm: norm_flags(Some(norm)),
        eps: norm.eps,
        with_shared: u32::from(shared),
        ..MoeGateParams::new(t, (e, k), renorm)
    };
    let (x, y) = grid_groups(t);
    op.encode(pass, &p, (x, y, 1));
}

/// Route op: bindings sel_e, probs, row_token, row_expert, slot, stats.
#[allow(clippy::too_many_arguments)]
pub fn moe_route_op(
    ctx: &GpuContext,
    pl: &Pipelines,
    sel_e: &wgpu::Buffer,
    probs: &wgpu::Buffer,
    row_token: &wgpu::Buffer,
    row_expert: &wgpu::Buffer,
    slot: &wgpu::Buffer,
    stats: &wgpu::Buffer,
) -> KernelOp {
    KernelOp::new::<MoeRouteParams>(
        ctx,
        pl,
        "moe_route",
        &[sel_e, probs, row_token, row_expert, slot, stats],
    )
}

/// Record the routing of `t` tokens.
pub fn encode_moe_route(
    pass: &mut wgpu::ComputePass<'_>,
    op: &KernelOp,
    t: usize,
    e: usize,
    k: usize,
) {
    let p = MoeRouteParams {
        t: t as u32,
        e: e as u32,
        k: k as u32,
        rows: grouped_rows(t, e, k) as u32,
    };
    op.encode(
        pass,
        &p,
        // every expert in one workgroup of 64 (the config allows at most 64)
        (1, 1, 1),
    );
}

/// Grouped matmul op for `variant` (of op `moe_matmul`): the linear's buffers (weights
/// `[E, K, N]`, bias `[E, N]`) and the routed rows' `(row_token, row_expert)`.
pub fn moe_matmul_variant_op(
    ctx: &GpuContext,
    pl: &Pipelines,
    variant: &'static str,
    io: &LinearBuffers,
    (row_token, row_expert): (&wgpu::Buffer, &wgpu::Buffer),
) -> KernelOp {
    KernelOp::new::<MoeMatmulParams>(
        ctx,
        pl,
        variant,
        // the weights twice: as the kernel's weight type, and as vec4<u32> (8 half
        // floats a load for a tile's lone row)
        &[io.x, io.w, io.bias, io.out, row_token, row_expert, io.w],
    )
}

/// Record the grouped matmul over the `rows` grouped rows of a step of `t` tokens,
/// `[K] → [N]` per row.
pub fn encode_moe_matmul(
    pass: &mut wgpu::ComputePass<'_>,
    op: &KernelOp,
    (t, rows): (usize, usize),
    n: usize,
    k: usize,
    flags: u32,
) {
    let p = MoeMatmulParams {
        rows: rows as u32,
        n4: (n / 4) as u32,
        k4: (k / 4) as u32,
        flags,
        p4: (super::matmul::panel_width(n) / 4) as u32,
        _pad: [0; 3],
    };
    // the output's vec4 columns: half the weights' with SwiGLU in the output
    let out4 = if flags & SWIGLU_OUT != 0 {
        debug_assert!(n.is_multiple_of(8));
        n / 8
    } else {
        n / 4
    };
    // a step of one token: every tile holds one row, which the half-float kernels
    // take 8 columns an invocation (`moe_row1_halves`), so half the workgroups
    let lone = t == 1 && op.kernel.precision == super::Precision::F16 && out4 % 2 == 0;
    let per_invocation = if lone { 2 } else { 1 };
    let gx = (out4 / per_invocation).div_ceil(WORKGROUP as usize) as u32;
    let gy = rows.div_ceil(super::matmul::tile_rows(op.kernel)) as u32;
    op.encode(pass, &p, (gx, gy, 1));
}

/// Combine op: bindings y `[rows, C]`, sel_w, slot, x `[T, C]` (accumulated into).
pub fn moe_combine_op(
    ctx: &GpuContext,
    pl: &Pipelines,
    y: &wgpu::Buffer,
    sel_w: &wgpu::Buffer,
    slot: &wgpu::Buffer,
    x: &wgpu::Buffer,
) -> KernelOp {
    KernelOp::new::<MoeCombineParams>(ctx, pl, "moe_combine", &[y, sel_w, slot, x])
}

/// Record `x[t] += Σ_i sel_w[t, i] · y[slot[t, i]]`.
pub fn encode_moe_combine(
    pass: &mut wgpu::ComputePass<'_>,
    op: &KernelOp,
    t: usize,
    c: usize,
    k: usize,
) {
    let p = MoeCombineParams {
        t: t as u32,
        c4: (c / 4) as u32,
        k: k as u32,
        _pad: 0,
    };
    let (x, y) = grid_1d(t * c / 4);
    op.encode(pass, &p, (x, y, 1));
}

/// Upload, gate, read back `(probs [T, E], sel_e [T, K], sel_w [T, K])`.
pub fn run_moe_gate(
    ctx: &GpuContext,
    pl: &Pipelines,
    logits: &[f32],
    (e, k): (usize, usize),
    renorm: bool,
) -> Result<(Vec<f32>, Vec<u32>, Vec<f32>)> {
    let e4 = e.div_ceil(4) * 4;
    let t = logits.len() / e4;
    let lb = buffers::upload(ctx, "logits", logits);
    let (pb, sb, wb) = (
        buffers::storage(ctx, "probs", t * e),
        buffers::storage(ctx, "sel_e", t * k),
        buffers::storage(ctx, "sel_w", t * k),
    );
    let op = moe_gate_op(ctx, pl, &lb, &pb, &sb, &wb);
    submit_pass(ctx, "moe_gate", |pass| {
        encode_moe_gate(pass, &op, t, (e, k), renorm)
    })?;
    let r = buffers::read_many(ctx, &[(&pb, 0, t * e), (&sb, 0, t * k), (&wb, 0, t * k)])?;
    Ok((
        r[0].clone(),
        r[1].iter().map(|x| x.to_bits()).collect(),
        r[2].clone(),
    ))
}

/// What [`run_moe_norm_gate`] reads back.
pub struct NormGate {
    /// The normalised rows `[T, C]`.
    pub ln: Vec<f32>,
    /// `[T, E]`.
    pub probs: Vec<f32>,
    /// The chosen experts `[T, K]`, most likely first.
    pub sel_e: Vec<u32>,
    /// Their weights `[T, K]`.
    pub sel_w: Vec<f32>,
    /// The shared expert's gate logits `[T]` (empty without one).
    pub shared_gate: Vec<f32>,
}

/// Upload, run `moe_norm_gate` over the rows of `x [T, C]` with `norm` (its weight
/// and bias), the router `[C, E4]` (columns padded) and a shared expert's gate `[C, 4]`
/// when given, read back what it writes.
#[allow(clippy::too_many_arguments)]
pub fn run_moe_norm_gate(
    ctx: &GpuContext,
    pl: &Pipelines,
    (x, c): (&[f32], usize),
    (norm, weight, bias): HostNorm,
    router: &[f32],
    shared_w: Option<&[f32]>,
    (e, k): (usize, usize),
    renorm: bool,
) -> Result<NormGate> {
    let t = x.len() / c;
    let up = |n: &str, d: &[f32]| buffers::upload(ctx, n, d);
    let st = |n: &str, f: usize| buffers::storage(ctx, n, f);
    let (xb, wb, bb, rb) = (
        up("x", x),
        up("norm weight", weight),
        up("norm bias", bias.unwrap_or(&[0.0; 4])),
        up("router", router),
    );
    let (lnb, pb, sb, selw) = (
        st("ln", t * c),
        st("probs", t * e),
        st("sel_e", t * k),
        st("sel_w", t * k),
    );
    let (swb, sgb) = (
        up("shared gate", shared_w.unwrap_or(&[0.0; 4])),
        st("shared gate logits", t * 4),
    );
    let op = moe_norm_gate_op(
        ctx,
        pl,
        &NormGateBuffers {
            x: &xb,
            norm_w: &wb,
            norm_b: &bb,
            router: &rb,
            ln: &lnb,
            probs: &pb,
            sel_e: &sb,
            sel_w: &selw,
            shared_w: &swb,
            shared_gate: &sgb,
        },
    );
    let shared = shared_w.is_some();
    submit_pass(ctx, "moe_norm_gate", |pass| {
        encode_moe_norm_gate(pass, &op, (t, c), (e, k), renorm, norm, shared)
    })?;
    let mut r = buffers::read_many(
        ctx,
        &[
            (&lnb, 0, t * c),
            (&pb, 0, t * e),
            (&sb, 0, t * k),
            (&selw, 0, t * k),
            (&sgb, 0, t * 4),
        ],
    )?;
    let gate4 = r.pop().unwrap_or_default();
    let shared_gate = if shared {
        gate4.chunks(4).map(|g| g[0]).collect()
    } else {
        Vec::new()
    };
    let sel_w = r.pop().unwrap_or_default();
    let sel = r.pop().unwrap_or_default();
    let probs = r.pop().unwrap_or_default();
    let ln = r.pop().unwrap_or_default();
    Ok(NormGate {
        ln,
        probs,
        sel_e: sel.iter().map(|x| x.to_bits()).collect(),
        sel_w,
        shared_gate,
    })
}

/// A MoE MLP on the host, for [`run_moe_mlp`]: the residual `x [T, C]`, its
/// normalised rows `ln [T, C]`, the router's logits `[T, E4]`, the experts' fc
/// (`w1 [E, C, H]`, `b1 [E, H]`) and proj (`w2 [E, H, C]`, `b2 [E, C]`), row-major f32;
/// `e` experts of which `k` serve each token; the fc's activation flag, or SwiGLU
/// experts (`swiglu`: `w1 [E, C, 2H]` and `b1 [E, 2H]` gate | up, gated into H).
#[derive(Clone, Copy)]
pub struct HostMoe<'a> {
    pub x: &'a [f32],
    pub ln: &'a [f32],
    pub router_logits: &'a [f32],
    pub w1: &'a [f32],
    pub b1: &'a [f32],
    pub w2: &'a [f32],
    pub b2: &'a [f32],
    pub e: usize,
    pub k: usize,
    pub c: usize,
    pub h: usize,
    pub act_flag: u32,
    pub swiglu: bool,
}

/// The whole MoE MLP of `m` on the device: gate, route, expert fc, expert proj, combine
/// into `x`, with the weights stored as kernel `variant` reads them. Returns
/// `(x, stats [2E + 1])`.
pub fn run_moe_mlp(
    ctx: &GpuContext,
    pl: &Pipelines,
    variant: &'static str,
    m: &HostMoe,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let HostMoe {
        x,
        ln,
        router_logits,
        w1,
        b1,
        w2,
        b2,
        e,
        k,
        c,
        h,
        act_flag,
        swiglu,
    } = *m;
    // the fc's outputs: gate | up for SwiGLU experts
    let h_fc = if swiglu { 2 * h } else { h };
    let t = x.len() / c;
    let rows = grouped_rows(t, e, k);
    let up = |n: &str, d: &[f32]| buffers::upload(ctx, n, d);
    let (xb, lnb, lb) = (up("x", x), up("ln", ln), up("logits", router_logits));
    let (w1b, w2b) = (
        up("w1", &store_experts(variant, w1, c, h_fc)),
        up("w2", &store_experts(variant, w2, h, c)),
    );
    let (b1b, b2b) = (up("b1", b1), up("b2", b2));
    let st = |n: &str, f: usize| buffers::storage(ctx, n, f);
    let (probs, sel_e, sel_w, slot) = (
        st("probs", t * e),
        st("sel_e", t * k),
        st("sel_w", t * k),
        st("slot", t * k),
    );
    let (row_token, row_expert, stats) = (
        st("row_token", rows),
        st("row_expert", rows),
        st("stats", 2 * e + 1),
    );
    let (hid, y) = (st("hidden", rows * h), st("y", rows * c));
    let gate_up = st("gate_up", rows * h_fc);
    let gate = moe_gate_op(ctx, pl, &lb, &probs, &sel_e, &sel_w);
    let route = moe_route_op(
        ctx,
        pl,
        &sel_e,
        &probs,
        &row_token,
        &row_expert,
        &slot,
        &stats,
    );
    let rows_of = (&row_token, &row_expert);
    // SwiGLU experts: gate | up, then the `swiglu` kernel, or both in the fc
    let gated = swiglu && !swiglu_in_fc(t);
    let fc_io = LinearBuffers {
        x: &lnb,
        w: &w1b,
        bias: &b1b,
        out: if gated { &gate_up } else { &hid },
    };
    let fc = moe_matmul_variant_op(ctx, pl, variant, &fc_io, rows_of);
    let sw = super::swiglu::swiglu_op(ctx, pl, &gate_up, &hid, None);
    let fc_flags = match (swiglu, gated) {
        (false, _) => act_flag,
        (true, true) => 0,
        (true, false) => SWIGLU_OUT,
    };
    let proj_io = LinearBuffers {
        x: &hid,
        w: &w2b,
        bias: &b2b,
        out: &y,
    };
    let proj = moe_matmul_variant_op(ctx, pl, variant, &proj_io, rows_of);
    let comb = moe_combine_op(ctx, pl, &y, &sel_w, &slot, &xb);
    submit_pass(ctx, "moe", |pass| {
        encode_moe_gate(pass, &gate, t, (e, k), true);
        encode_moe_route(pass, &route, t, e, k);
        encode_moe_matmul(pass, &fc, (t, rows), h_fc, c, 1 | GATHER | fc_flags);
        if gated {
            super::swiglu::encode_swiglu(pass, &sw, rows, h, 0);
        }
        encode_moe_matmul(pass, &proj, (t, rows), c, h, 1);
        encode_moe_combine(pass, &comb, t, c, k);
    })?;
    let mut r = buffers::read_many(ctx, &[(&xb, 0, t * c), (&stats, 0, 2 * e + 1)])?;
    let s = r.pop().unwrap_or_default();
    Ok((r.pop().unwrap_or_default(), s))
}
