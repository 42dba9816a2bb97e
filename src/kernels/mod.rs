//! One file per op: the `#[repr(C)]` params mirroring the WGSL uniform, an
//! `encode_*` fn that records a dispatch (and never submits), and a `run_*` fn that
//! uploads host data, submits, waits and reads back (tests and the bench use it).

pub mod attention;
pub mod embedding;
pub mod kv_store;
pub mod layer_norm;
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
    bind: wgpu::BindGroup,
    params: wgpu::Buffer,
}

impl KernelOp {
    /// Bind `buffers` at bindings 1.. after a fresh uniform of type `P` at binding 0.
    pub fn new<P: bytemuck::Pod>(
        ctx: &GpuContext,
        pipelines: &Pipelines,
        name: &'static str,
        buffers: &[&wgpu::Buffer],
    ) -> Self {
        let params = buffers::uniform::<P>(ctx, name);
        let mut all = vec![&params];
        all.extend_from_slice(buffers);
        let bind = pipelines.bind(ctx, name, &all);
        KernelOp { name, bind, params }
    }

    /// Write `params` (applied at the next submit) and record the dispatch.
    pub fn encode<P: bytemuck::Pod>(
        &self,
        queue: &wgpu::Queue,
        pass: &mut wgpu::ComputePass<'_>,
        pipelines: &Pipelines,
        params: &P,
        groups: (u32, u32, u32),
    ) {
        queue.write_buffer(&self.params, 0, bytemuck::bytes_of(params));
        dispatch(pass, pipelines, self.name, &self.bind, groups);
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
