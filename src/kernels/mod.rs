//! One file per op: the `#[repr(C)]` params mirroring the WGSL uniform, an
//! `encode_*` fn that records a dispatch (and never submits), and a `run_*` fn that
//! uploads host data, submits, waits and reads back (tests and the bench use it).

pub mod attention;
pub mod embedding;
pub mod kv_store;
pub mod layer_norm;
pub mod logit_lens;
pub mod matmul;
pub mod matmul_bt;
pub mod matvec;
pub mod matvec_bt;
pub mod moe;
pub mod row_norm;

use crate::error::Result;
use crate::gpu::{buffers, dispatch, GpuContext, Pipelines};

/// One prepared dispatch of a kernel: its bind group and its own uniform buffer.
/// Built once (at model build); each forward writes the uniform and records it.
pub struct KernelOp {
    pub name: &'static str,
    /// The `ROWS` its pipeline was compiled with (1 unless a decode-batch kernel).
    pub rows: u32,
    bind: wgpu::BindGroup,
    params: wgpu::Buffer,
    /// The bytes last written to `params`: a step that records the op with the same
    /// parameters as the last one (most ops of consecutive decode steps) skips the write.
    written: std::sync::Mutex<Vec<u8>>,
}

impl KernelOp {
    /// Bind `buffers` at bindings 1.. after a fresh uniform of type `P` at binding 0.
    pub fn new<P: bytemuck::Pod>(
        ctx: &GpuContext,
        pipelines: &Pipelines,
        name: &'static str,
        buffers: &[&wgpu::Buffer],
    ) -> Self {
        Self::with_rows::<P>(ctx, pipelines, name, 1, buffers)
    }

    /// [`KernelOp::new`] for the pipeline of `name` compiled with `ROWS` = `rows`.
    pub fn with_rows<P: bytemuck::Pod>(
        ctx: &GpuContext,
        pipelines: &Pipelines,
        name: &'static str,
        rows: u32,
        buffers: &[&wgpu::Buffer],
    ) -> Self {
        let params = buffers::uniform::<P>(ctx, name);
        let mut all = vec![&params];
        all.extend_from_slice(buffers);
        let bind = pipelines.bind(ctx, name, rows, &all);
        KernelOp {
            name,
            rows,
            bind,
            params,
            written: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Write `params` (applied at the next submit) unless they are what the buffer
    /// already holds, and record the dispatch. An op is recorded at most once per
    /// submission (a second write would overwrite the first for both dispatches).
    pub fn encode<P: bytemuck::Pod>(
        &self,
        queue: &wgpu::Queue,
        pass: &mut wgpu::ComputePass<'_>,
        pipelines: &Pipelines,
        params: &P,
        groups: (u32, u32, u32),
    ) {
        let bytes = bytemuck::bytes_of(params);
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        if written.as_slice() != bytes {
            queue.write_buffer(&self.params, 0, bytes);
            written.clear();
            written.extend_from_slice(bytes);
        }
        dispatch(pass, pipelines, (self.name, self.rows), &self.bind, groups);
    }
}

/// The dispatches of one decode-batch kernel over the same buffers: one op per `ROWS`
/// the kernel is compiled with ([`crate::gpu::BATCH_ROWS`]; one op with `ROWS` = 1 for
/// a kernel without the constant).
pub struct RowsOp {
    pub name: &'static str,
    ops: Vec<KernelOp>,
}

impl RowsOp {
    /// Bind `buffers` for every `ROWS` variant of `name`.
    pub fn new<P: bytemuck::Pod>(
        ctx: &GpuContext,
        pipelines: &Pipelines,
        name: &'static str,
        buffers: &[&wgpu::Buffer],
    ) -> Self {
        let batch = crate::gpu::kernel(name).is_some_and(|k| k.batch_rows);
        let rows: &[u32] = if batch { &crate::gpu::BATCH_ROWS } else { &[1] };
        RowsOp {
            name,
            ops: rows
                .iter()
                .map(|&r| KernelOp::with_rows::<P>(ctx, pipelines, name, r, buffers))
                .collect(),
        }
    }

    /// The dispatches covering `rows` rows: `(op, first row, workgroup rows)` with
    /// `op.rows` rows per workgroup row: groups of the largest `ROWS` while that many
    /// remain, then the rest as one group of the smallest `ROWS` that holds it (rows
    /// past the batch are computed and not stored), or as single rows. A pass over
    /// the weights is the cost: on lavapipe one of 4 rows costs ~1.3× one of 1, one of
    /// 8 ~1.7×, so 7 rows are one padded group of 8, not 4 + 1 + 1 + 1.
    pub fn cover(&self, rows: usize) -> Vec<(&KernelOp, usize, usize)> {
        let mut out = Vec::new();
        let Some(big) = self.ops.first() else {
            return out;
        };
        let r = big.rows as usize;
        let full = rows / r;
        if full > 0 {
            out.push((big, 0, full));
        }
        let rest = rows - full * r;
        if rest > 0 {
            // the smallest `ROWS` that holds the rest (the largest always does)
            let op = self
                .ops
                .iter()
                .rev()
                .find(|o| o.rows as usize >= rest)
                .unwrap_or(big);
            let groups = rest.div_ceil(op.rows as usize);
            match out.first_mut() {
                // the same op extends its dispatch: an op's parameters are one uniform,
                // so two dispatches of it in one pass would both run with the last one's
                Some(first) if std::ptr::eq(first.0, op) => first.2 += groups,
                _ => out.push((op, full * r, groups)),
            }
        }
        out
    }
}

/// Whether kernel `variant` reads its weights as half floats (the table's precision).
pub fn half_precision(variant: &str) -> bool {
    crate::gpu::kernel(variant).is_some_and(|k| k.precision == crate::gpu::Precision::F16)
}

/// Weight values in the precision kernel `variant` reads: packed as half floats (two
/// per 32-bit word) for the `*_f16` variants, else as they are.
pub fn in_precision_of(variant: &str, values: Vec<f32>) -> Vec<f32> {
    if half_precision(variant) {
        crate::model::weights::pack_f16(&values)
    } else {
        values
    }
}

/// Record `f` into one compute pass, submit once, and wait (inside an error scope).
pub fn submit_pass(
    ctx: &GpuContext,
    label: &str,
    f: impl FnOnce(&mut wgpu::ComputePass<'_>),
) -> Result<()> {
    ctx.scoped(label, || {
        let mut enc = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(label),
                timestamp_writes: None,
            });
            f(&mut pass);
        }
        ctx.queue.submit([enc.finish()]);
        ctx.wait_idle()
    })
}
