//! LM head for the rows of a decode step (`shaders/matvec_bt.wgsl`, and for hardware
//! GPUs `shaders/matvec_bt_groups.wgsl`, which can fold the final norm in):
//! `out[r, N] = a[row0 + r] · b[N, K]ᵀ`; a row's numbers do not depend on R.

use bytemuck::{Pod, Zeroable};

use super::layer_norm::norm_flags;
use super::layer_norm::Norm;
use super::Pipelines;
use super::{submit_pass, HostProduct, RowsOp, Spec};
use crate::error::Result;
use crate::gpu::{buffers, GpuContext};

/// Mirrors `MatvecBtParams` in the WGSL.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct MatvecBtParams {
    pub n: u32,
    pub k4: u32,
    pub a_row0: u32,
    pub out_row0: u32,
    /// Rows of the batch from `a_row0` on (a `ROWS` group past them stores nothing
    /// there).
    pub rows: u32,
    /// The norm prologue's flags ([`fuses_norm`] kernels; 0: `a` as it is).
    pub norm: u32,
    pub eps: f32,
    /// [`fuses_norm`] kernels: 1 reads row `list[a_row0 + r]` of `a` for row r (the
    /// op's list binding).
    pub gather: u32,
}

/// Whether `variant` is a hardware LM head (a workgroup per 32 rows of wte) with the
/// norm prologue.
pub fn fuses_norm(variant: &str) -> bool {
    matches!(variant, "matvec_bt_groups" | "matvec_bt_f16_groups")
}

/// The LM head for decode rows: the hardware kernel on hardware GPUs, else the
/// software one (for a half-float wte the fastest of [`best_f16_variant`]).
pub fn variant_for(pipelines: &Pipelines, hardware: bool, half: bool, k: usize) -> &'static str {
    match (hardware, half) {
        (true, false) => "matvec_bt_groups",
        (true, true) => "matvec_bt_f16_groups",
        (false, false) => "matvec_bt",
        (false, true) => best_f16_variant(pipelines, k),
    }
}

/// The fastest half-float-wte variant for rows of `k` values on this device:
/// `matvec_bt_f16_subgroup` needs subgroups and `k % 8 == 0`.
pub fn best_f16_variant(pipelines: &Pipelines, k: usize) -> &'static str {
    if k.is_multiple_of(8) && pipelines.has("matvec_bt_f16_subgroup") {
        "matvec_bt_f16_subgroup"
    } else {
        "matvec_bt_f16"
    }
}

/// Op: bindings a, b (a row chunk of wte), out. `variant` is `matvec_bt`, or
/// `matvec_bt_f16` / `matvec_bt_f16_subgroup` for a half-float wte.
pub fn matvec_bt_op(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
    a: &wgpu::Buffer,
    b: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> RowsOp {
    matvec_bt_fused_op(ctx, pipelines, variant, (a, b, out), None, None)
}

/// [`matvec_bt_op`] with the final norm's (weight, bias) for a [`fuses_norm`] kernel
/// (its `a` is then the residual stream; stand-ins where there is no norm), and the
/// list of rows of `a` it reads when encoded with `gather`.
pub fn matvec_bt_fused_op(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
    (a, b, out): (&wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer),
    norm: Option<(&wgpu::Buffer, &wgpu::Buffer)>,
    list: Option<&wgpu::Buffer>,
) -> RowsOp {
    let mut all = vec![a, b, out];
    let read = &ctx.stand_ins().read;
    if fuses_norm(variant) {
        let (g, nb) = norm.unwrap_or((read, read));
        all.extend([g, nb, list.unwrap_or(read)]);
    }
    RowsOp::new::<MatvecBtParams>(ctx, pipelines, variant, Spec::rows(1), &all)
}

/// Record `out[out_row0 + r, n] = a[a_row0 + r, :k] · b[n, k]ᵀ` for `rows` rows.
pub fn encode_matvec_bt(
    pass: &mut wgpu::ComputePass<'_>,
    op: &RowsOp,
    n: usize,
    k: usize,
    a_row0: usize,
    rows: usize,
    out_row0: usize,
) {
    encode_matvec_bt_normed(pass, op, (n, k), (a_row0, rows, out_row0), None, false)
}

/// [`encode_matvec_bt`] with `norm` over each row of `a` first (a [`fuses_norm`]
/// kernel's op bound with the norm's weights); with `gather`, row r of the dispatch is
/// row `list[a_row0 + r]` of `a` (an op bound with the list).
pub fn encode_matvec_bt_normed(
    pass: &mut wgpu::ComputePass<'_>,
    op: &RowsOp,
    (n, k): (usize, usize),
    (a_row0, rows, out_row0): (usize, usize, usize),
    norm: Option<Norm>,
    gather: bool,
) {
    debug_assert!((norm.is_none() && !gather) || fuses_norm(op.name));
    let gx = if fuses_norm(op.name) {
        n.div_ceil(32) as u32
    } else {
        n.div_ceil(4 * op.workgroup as usize) as u32
    };
    for (o, row0, groups) in op.cover(rows) {
        let p = MatvecBtParams {
            n: n as u32,
            k4: (k / 4) as u32,
            a_row0: (a_row0 + row0) as u32,
            out_row0: (out_row0 + row0) as u32,
            rows: (rows - row0) as u32,
            norm: norm_flags(norm),
            eps: norm.map_or(0.0, |n| n.eps),
            gather: u32::from(gather),
        };
        o.encode(pass, &p, (gx, groups as u32, 1));
    }
}

/// Upload, run, read back `out[R, N]` of `p.w [N, K]` times rows `a_row0 .. a_row0 + R`
/// of `p.x [.., K]`.
pub fn run_matvec_bt(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
    p: &HostProduct,
    a_row0: usize,
    rows: usize,
) -> Result<Vec<f32>> {
    let (n, k) = (p.n, p.k);
    let ab = buffers::upload(ctx, "a", p.x);
    let bb = buffers::upload(ctx, "b", &super::matmul_bt::store_wte(variant, p.w, n, k));
    let out = buffers::storage(ctx, "out", rows * n);
    let op = matvec_bt_op(ctx, pipelines, variant, &ab, &bb, &out);
    submit_pass(ctx, "matvec_bt", |pass| {
        encode_matvec_bt(pass, &op, n, k, a_row0, rows, 0)
    })?;
    buffers::read_floats(ctx, &out, 0, rows * n)
}
