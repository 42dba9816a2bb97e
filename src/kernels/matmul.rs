//! Matmul with bias / GELU / residual-accumulate epilogue (`shaders/matmul.wgsl`):
//! `out[M, N] (=|+=) act(a[M, K] · b[K, N] + bias)`, weights stored `[in, out]`.

use bytemuck::{Pod, Zeroable};

use super::{submit_pass, KernelOp};
use crate::error::Result;
use crate::gpu::{buffers, GpuContext, Pipelines, WORKGROUP};

/// Rows computed by one invocation (the shader's `TM`), by kernel variant.
pub fn tile_rows(kernel: &str) -> usize {
    if crate::gpu::kernel(kernel).is_some_and(|k| k.subgroups) {
        16
    } else {
        8
    }
}

/// Epilogue flags, shared with `matvec`.
pub const BIAS: u32 = 1;
pub const GELU: u32 = 2;
pub const ACCUMULATE: u32 = 4;

/// Mirrors `MatmulParams` in the WGSL.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct MatmulParams {
    pub m: u32,
    pub n4: u32,
    pub k4: u32,
    pub flags: u32,
    pub p4: u32,
    pub _pad: [u32; 3],
}

/// Columns per panel of a weight matrix with `n` columns when `n` is a multiple of it.
pub const PANEL: usize = 64;

/// Panel width of the `[K, N]` weights the matmul and matrix-vector kernels read:
/// [`PANEL`] columns when `n` is a multiple of it, else `n` (plain row-major).
pub fn panel_width(n: usize) -> usize {
    if n.is_multiple_of(PANEL) {
        PANEL
    } else {
        n
    }
}

/// Row-major `b [K, N]` rearranged into column panels (N / P panels of `[K, P]`,
/// P = [`panel_width`]), the layout the matmul and matrix-vector kernels read:
/// a workgroup walking K then reads contiguous memory, which CPU prefetchers follow
/// (a one-token step on lavapipe is 20 % faster than with row-major weights).
pub fn to_panels(b: &[f32], k: usize, n: usize) -> Vec<f32> {
    let pw = panel_width(n);
    if pw == n {
        return b.to_vec();
    }
    let mut out = Vec::with_capacity(b.len());
    for panel in 0..n / pw {
        for row in b.chunks_exact(n).take(k) {
            out.extend_from_slice(&row[panel * pw..(panel + 1) * pw]);
        }
    }
    out
}

/// Weights `b [K, N]` as kernel `variant` reads them: in panels, and packed as half
/// floats for the `*_f16` variants.
pub fn store_weights(variant: &str, b: &[f32], k: usize, n: usize) -> Vec<f32> {
    super::in_precision_of(variant, to_panels(b, k, n))
}

/// Op with the best variant for the device: bindings a, b, bias (any buffer when unused), out.
pub fn matmul_op(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    a: &wgpu::Buffer,
    b: &wgpu::Buffer,
    bias: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> KernelOp {
    matmul_variant_op(ctx, pipelines, pipelines.best("matmul"), a, b, bias, out)
}

/// The matmul for the blocks' linears: on hardware GPUs the tensor-core kernel for
/// half-float weights where the adapter has cooperative matrices (and the kernel passed
/// its self-test), else the tiled kernels; on software adapters the best software
/// kernel for the device.
pub fn variant_for(pipelines: &Pipelines, hardware: bool, half: bool) -> &'static str {
    match (hardware, half) {
        (true, true) if pipelines.has("matmul_coop") => "matmul_coop",
        (true, false) => "matmul_tiled",
        (true, true) => "matmul_f16_tiled",
        (false, false) => pipelines.best("matmul"),
        (false, true) => pipelines.best("matmul_f16"),
    }
}

/// Op with an explicit variant (any kernel of the matmul op), for the model and the bench.
pub fn matmul_variant_op(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
    a: &wgpu::Buffer,
    b: &wgpu::Buffer,
    bias: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> KernelOp {
    KernelOp::new::<MatmulParams>(ctx, pipelines, variant, &[a, b, bias, out])
}

/// Record `out[m, n] (=|+=) act(a[m, k] · b[k, n] + bias)`.
#[allow(clippy::too_many_arguments)]
pub fn encode_matmul(
    queue: &wgpu::Queue,
    pass: &mut wgpu::ComputePass<'_>,
    pipelines: &Pipelines,
    op: &KernelOp,
    m: usize,
    n: usize,
    k: usize,
    flags: u32,
) {
    let p = MatmulParams {
        m: m as u32,
        n4: (n / 4) as u32,
        k4: (k / 4) as u32,
        flags,
        p4: (panel_width(n) / 4) as u32,
        _pad: [0; 3],
    };
    let (gx, gy) = match op.name {
        // 64 × 64 tiles of out
        "matmul_tiled" | "matmul_f16_tiled" | "matmul_coop" => {
            (n.div_ceil(64) as u32, m.div_ceil(64) as u32)
        }
        _ => (
            (n / 4).div_ceil(WORKGROUP as usize) as u32,
            m.div_ceil(tile_rows(op.name)) as u32,
        ),
    };
    op.encode(queue, pass, pipelines, &p, (gx, gy, 1));
}

/// Upload (`b` row-major, stored as `variant` reads it), run `variant`, read back.
/// `out_init` is the prior content of `out` (for ACCUMULATE).
#[allow(clippy::too_many_arguments)]
pub fn run_matmul(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
    a: &[f32],
    b: &[f32],
    bias: Option<&[f32]>,
    out_init: Option<&[f32]>,
    m: usize,
    n: usize,
    k: usize,
    flags: u32,
) -> Result<Vec<f32>> {
    let ab = buffers::upload(ctx, "a", a);
    let bb = buffers::upload(ctx, "b", &store_weights(variant, b, k, n));
    let biasb = buffers::upload(ctx, "bias", bias.unwrap_or(&[0.0; 4]));
    let out = match out_init {
        Some(o) => buffers::upload(ctx, "out", o),
        None => buffers::storage(ctx, "out", m * n),
    };
    let op = matmul_variant_op(ctx, pipelines, variant, &ab, &bb, &biasb, &out);
    submit_pass(ctx, "matmul", |pass| {
        encode_matmul(&ctx.queue, pass, pipelines, &op, m, n, k, flags)
    })?;
    buffers::read_floats(ctx, &out, 0, m * n)
}

/// Check kernel `variant` against the CPU reference on the device at hand (odd shapes,
/// every epilogue flag). Its inputs are taken at the kernel's precision: half-float
/// weights, and for the tensor-core kernel half-float activations too.
pub fn self_test(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
) -> std::result::Result<(), String> {
    use crate::model::weights::round_to_f16;
    let (m, n, k) = (70, 192, 100);
    let seq = |len: usize, seed: u32| -> Vec<f32> {
        (0..len as u32)
            .map(|i| {
                ((i.wrapping_mul(2654435761).wrapping_add(seed) >> 8) % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    };
    let (a, b, bias, init) = (seq(m * k, 1), seq(k * n, 2), seq(n, 3), seq(m * n, 4));
    let got = run_matmul(
        ctx,
        pipelines,
        variant,
        &a,
        &b,
        Some(&bias),
        Some(&init),
        m,
        n,
        k,
        BIAS | GELU | ACCUMULATE,
    )
    .map_err(|e| e.to_string())?;
    let half = super::half_precision(variant);
    let b_seen = if half { round_to_f16(&b) } else { b.clone() };
    let a_seen = if variant == "matmul_coop" {
        round_to_f16(&a)
    } else {
        a.clone()
    };
    let want =
        crate::reference::matmul::matmul(&a_seen, &b_seen, Some(&bias), Some(&init), m, n, k, true);
    crate::reference::compare(variant, &got, &want, 1e-3, 1e-3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panels_reorder_columns_and_leave_other_widths_row_major() {
        // K = 3, N = 128: two panels of 64 columns, each [3, 64] row-major
        let (k, n) = (3, 128);
        let b: Vec<f32> = (0..k * n).map(|i| i as f32).collect();
        let p = to_panels(&b, k, n);
        assert_eq!(p.len(), b.len());
        for row in 0..k {
            for col in 0..n {
                let at = (col / 64) * k * 64 + row * 64 + col % 64;
                assert_eq!(p[at], b[row * n + col], "row {row} col {col}");
            }
        }
        // N = 64 is one panel, N = 96 is not a multiple: both stay row-major
        for n in [64, 96] {
            let b: Vec<f32> = (0..k * n).map(|i| i as f32).collect();
            assert_eq!(to_panels(&b, k, n), b);
        }
        assert_eq!(panel_width(3072), 64);
        assert_eq!(panel_width(100), 100);
    }
}
