//! LM head for the rows of a decode step (`shaders/matvec_bt.wgsl`):
//! `out[r, N] = a[row0 + r] · b[N, K]ᵀ`; a row's numbers do not depend on R.

use bytemuck::{Pod, Zeroable};

use super::Pipelines;
use super::{submit_pass, HostProduct, RowsOp};
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
    pub _pad: [u32; 3],
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
    RowsOp::new::<MatvecBtParams>(ctx, pipelines, variant, &[a, b, out])
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
    let gx = n.div_ceil(4 * op.workgroup as usize) as u32;
    for (o, row0, groups) in op.cover(rows) {
        let p = MatvecBtParams {
            n: n as u32,
            k4: (k / 4) as u32,
            a_row0: (a_row0 + row0) as u32,
            out_row0: (out_row0 + row0) as u32,
            rows: (rows - row0) as u32,
            _pad: [0; 3],
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
