//! Decode-step matrix-vector path (`shaders/matvec.wgsl`): for the R rows of a batch
//! (one per generation), `out[R, N] (=|+=) act(x[R, K] · w[K, N] + bias)`, same
//! epilogue flags as matmul. A row's numbers do not depend on R.

use bytemuck::{Pod, Zeroable};

use super::matmul::{panel_width, store_weights};
use super::Pipelines;
use super::{submit_pass, HostProduct, LinearBuffers, RowsOp};
use crate::error::Result;
use crate::gpu::{buffers, GpuContext};

/// Mirrors `MatvecParams` in the WGSL.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct MatvecParams {
    pub n4: u32,
    pub k4: u32,
    pub flags: u32,
    pub p4: u32,
    pub rows: u32,
    pub row0: u32,
    /// The batch's end: a `ROWS` group that passes it computes those rows and does
    /// not store them.
    pub row_end: u32,
    pub _pad: u32,
}

/// Output vec4s one workgroup of the split-K kernels computes (their `COLS4`).
pub const SPLITK_COLS4: usize = 4;

/// Workgroups of `variant` for `n` outputs when compiled with `wg` lanes.
fn workgroups(variant: &str, n: usize, wg: usize) -> usize {
    match variant {
        "matvec_splitk" | "matvec_f16_splitk" => (n / 4).div_ceil(SPLITK_COLS4),
        "matvec_f16_subgroup" => (n / 8).div_ceil(wg),
        _ => (n / 4).div_ceil(wg),
    }
}

/// The matrix-vector kernel for `n` outputs: the split-K kernels on hardware GPUs,
/// else the software ones (`matvec`, or for half floats the fastest of
/// [`best_f16_variant`]).
pub fn variant_for(pipelines: &Pipelines, hardware: bool, half: bool, n: usize) -> &'static str {
    match (hardware, half) {
        (true, false) => "matvec_splitk",
        (true, true) => "matvec_f16_splitk",
        (false, false) => "matvec",
        (false, true) => best_f16_variant(pipelines, n),
    }
}

/// The fastest half-float-weight variant for `n` outputs on this device:
/// `matvec_f16_subgroup` needs subgroups and `n % 8 == 0`.
pub fn best_f16_variant(pipelines: &Pipelines, n: usize) -> &'static str {
    if n.is_multiple_of(8) && pipelines.has("matvec_f16_subgroup") {
        "matvec_f16_subgroup"
    } else {
        "matvec_f16"
    }
}

/// Op for `variant`: `matvec` / `matvec_splitk`, or `matvec_f16` /
/// `matvec_f16_subgroup` / `matvec_f16_splitk` for half-float weights.
pub fn matvec_variant_op(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
    io: &LinearBuffers,
) -> RowsOp {
    RowsOp::new::<MatvecParams>(ctx, pipelines, variant, &[io.x, io.w, io.bias, io.out])
}

/// Record `out[r, n] (=|+=) act(x[r, k] · w[k, n] + bias)` for `rows` rows.
pub fn encode_matvec(
    pass: &mut wgpu::ComputePass<'_>,
    op: &RowsOp,
    rows: usize,
    n: usize,
    k: usize,
    flags: u32,
) {
    let gx = workgroups(op.name, n, op.workgroup as usize);
    for (o, row0, groups) in op.cover(rows) {
        let p = MatvecParams {
            n4: (n / 4) as u32,
            k4: (k / 4) as u32,
            flags,
            p4: (panel_width(n) / 4) as u32,
            rows: groups as u32,
            row0: row0 as u32,
            row_end: rows as u32,
            _pad: 0,
        };
        o.encode(pass, &p, (gx as u32, groups as u32, 1));
    }
}

/// Upload `p` (its weights `[K, N]` stored as `variant` reads them), run, read back
/// `out[R, N]` for the R rows of `p.x`.
pub fn run_matvec(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
    p: &HostProduct,
) -> Result<Vec<f32>> {
    let (rows, n, k) = (p.rows(), p.n, p.k);
    let x = buffers::upload(ctx, "x", p.x);
    let w = buffers::upload(ctx, "w", &store_weights(variant, p.w, k, n));
    let bias = buffers::upload(ctx, "bias", p.bias.unwrap_or(&[0.0; 4]));
    let out = match p.out_init {
        Some(o) => buffers::upload(ctx, "out", o),
        None => buffers::storage(ctx, "out", rows * n),
    };
    let io = LinearBuffers {
        x: &x,
        w: &w,
        bias: &bias,
        out: &out,
    };
    let op = matvec_variant_op(ctx, pipelines, variant, &io);
    submit_pass(ctx, "matvec", |pass| {
        encode_matvec(pass, &op, rows, n, k, p.flags)
    })?;
    buffers::read_floats(ctx, &out, 0, rows * n)
}
