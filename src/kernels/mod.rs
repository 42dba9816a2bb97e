//! The kernels: the catalogue ([`catalogue`]: every kernel as typed data), its
//! compilation for a device ([`Pipelines`]), and one file per op: the `#[repr(C)]`
//! params mirroring the WGSL uniform, an `*_op` fn that binds buffers once, an
//! `encode_*` fn that records a dispatch (and never submits), and a `run_*` fn that
//! uploads host data, submits, waits and reads back (tests and the bench use it).

pub mod attention;
pub mod catalogue;
pub mod embedding;
pub mod fusion;
pub mod head_norm;
pub mod kv_store;
pub mod layer_norm;
pub mod logit_cap;
pub mod logit_lens;
pub mod matmul;
pub mod matmul_bt;
pub mod matvec;
pub mod matvec_bt;
pub mod moe;
pub mod partials;
mod pipelines;
pub mod rotary;
pub mod row_norm;
pub mod sample;
pub mod swiglu;
pub mod token_rank;

pub use catalogue::{kernel, shader_source, KernelClass, Precision, BATCH_ROWS, KERNELS};
pub use pipelines::{Pipelines, Spec};

use crate::error::Result;
use crate::gpu::{buffers, dispatch, GpuContext};

/// One prepared dispatch of a kernel: its pipeline, its bind group and its own
/// uniform buffer. Built once (at model build); each forward writes the uniform and
/// records it.
pub struct KernelOp {
    pub name: &'static str,
    /// Its catalogue entry, looked up once at build (not on every dispatch).
    pub kernel: &'static catalogue::Kernel,
    /// The `ROWS` its pipeline was compiled with (1 unless a decode-batch kernel).
    pub rows: u32,
    /// Compiled with `QKV` ([`Spec`]): its epilogue can store keys and values and
    /// rotate.
    pub qkv: bool,
    /// The workgroup size its pipeline was compiled with.
    pub workgroup: u32,
    pipeline: wgpu::ComputePipeline,
    queue: wgpu::Queue,
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
        Self::with_spec::<P>(ctx, pipelines, name, Spec::rows(1), buffers)
    }

    /// [`KernelOp::new`] for the pipeline of `name` compiled with `spec`.
    pub fn with_spec<P: bytemuck::Pod>(
        ctx: &GpuContext,
        pipelines: &Pipelines,
        name: &'static str,
        spec: Spec,
        buffers: &[&wgpu::Buffer],
    ) -> Self {
        let params = buffers::uniform::<P>(ctx, name);
        let mut all = vec![&params];
        all.extend_from_slice(buffers);
        let pipeline = pipelines.get_spec(name, spec);
        let entry = kernel(name).unwrap_or_else(|| panic!("kernel {name} is not in the catalogue"));
        let layout = pipeline.get_bind_group_layout(0);
        let entries: Vec<wgpu::BindGroupEntry> = all
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        let bind = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(name),
            layout: &layout,
            entries: &entries,
        });
        KernelOp {
            name,
            kernel: entry,
            rows: spec.rows,
            qkv: spec.qkv,
            workgroup: pipelines.workgroup(name),
            pipeline,
            queue: ctx.queue.clone(),
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
        pass: &mut wgpu::ComputePass<'_>,
        params: &P,
        groups: (u32, u32, u32),
    ) {
        let bytes = bytemuck::bytes_of(params);
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        if written.as_slice() != bytes {
            self.queue.write_buffer(&self.params, 0, bytes);
            written.clear();
            written.extend_from_slice(bytes);
        }
        dispatch(
            pass,
            &self.pipeline,
            (self.name, self.rows),
            &self.bind,
            groups,
        );
    }
}

/// The dispatches of one decode-batch kernel over the same buffers: one op per `ROWS`
/// the kernel is compiled with ([`BATCH_ROWS`]; one op with `ROWS` = 1 for
/// a kernel without the constant).
pub struct RowsOp {
    pub name: &'static str,
    /// The workgroup size its pipelines were compiled with.
    pub workgroup: u32,
    ops: Vec<KernelOp>,
}

impl RowsOp {
    /// Bind `buffers` for every `ROWS` variant of `name` compiled with `spec` (its
    /// `rows` each `ROWS`).
    pub fn new<P: bytemuck::Pod>(
        ctx: &GpuContext,
        pipelines: &Pipelines,
        name: &'static str,
        spec: Spec,
        buffers: &[&wgpu::Buffer],
    ) -> Self {
        let batch = kernel(name).is_some_and(|k| k.batch_rows);
        let rows: &[u32] = if batch { &BATCH_ROWS } else { &[1] };
        RowsOp {
            name,
            workgroup: pipelines.workgroup(name),
            ops: rows
                .iter()
                .map(|&r| {
                    KernelOp::with_spec::<P>(ctx, pipelines, name, spec.with_rows(r), buffers)
                })
                .collect(),
        }
    }

    /// Whether its pipelines were compiled with `QKV` ([`Spec`]).
    pub fn qkv(&self) -> bool {
        self.ops.first().is_some_and(|o| o.qkv)
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

/// The buffers of a linear layer's kernels (matmul, matrix-vector, grouped MoE
/// matmul): input `x [rows, K]`, weights `w` stored as the variant reads them,
/// `bias [N]` (any buffer when unused), output `out [rows, N]`.
#[derive(Clone, Copy)]
pub struct LinearBuffers<'a> {
    pub x: &'a wgpu::Buffer,
    pub w: &'a wgpu::Buffer,
    pub bias: &'a wgpu::Buffer,
    pub out: &'a wgpu::Buffer,
}

/// A matrix product on the host, for the `run_*` helpers (the tests and the bench):
/// `x [M, K]` (M = `x.len() / k`) times weights of `n` outputs (`[K, N]` for the matmul
/// and matrix-vector kernels, `[N, K]` for the `_bt` ones), and for the kernels with
/// the epilogue a bias, the output's prior content (for `ACCUMULATE`) and the flags.
#[derive(Clone, Copy)]
pub struct HostProduct<'a> {
    pub x: &'a [f32],
    pub w: &'a [f32],
    pub n: usize,
    pub k: usize,
    pub bias: Option<&'a [f32]>,
    pub out_init: Option<&'a [f32]>,
    pub flags: u32,
}

impl<'a> HostProduct<'a> {
    /// `x · w` with no bias, a fresh output and no flags.
    pub fn new(x: &'a [f32], w: &'a [f32], n: usize, k: usize) -> Self {
        HostProduct {
            x,
            w,
            n,
            k,
            bias: None,
            out_init: None,
            flags: 0,
        }
    }

    /// With the epilogue: `bias`, the output's prior content, the flags.
    pub fn epilogue(
        self,
        bias: Option<&'a [f32]>,
        out_init: Option<&'a [f32]>,
        flags: u32,
    ) -> Self {
        HostProduct {
            bias,
            out_init,
            flags,
            ..self
        }
    }

    /// Rows of `x` (at least 1).
    pub fn rows(&self) -> usize {
        (self.x.len() / self.k.max(1)).max(1)
    }
}

/// Whether kernel `variant` reads its weights as half floats (the table's precision).
pub fn half_precision(variant: &str) -> bool {
    kernel(variant).is_some_and(|k| k.precision == Precision::F16)
}

/// Weight values in the precision kernel `variant` reads: packed as half floats (two
/// per 32-bit word) for the `*_f16` variants, else as they are.
pub fn in_precision_of(variant: &str, values: Vec<f32>) -> Vec<f32> {
    if half_precision(variant) {
        crate::gpu::f16::pack_f16(&values)
    } else {
        values
    }
}

/// Weights as the CPU reference must see them for kernel `variant`: the `*_f16`
/// variants read half floats, so the reference gets the values rounded to half
/// precision.
pub fn seen_by(variant: &str, w: &[f32]) -> Vec<f32> {
    if half_precision(variant) {
        crate::gpu::f16::round_to_f16(w)
    } else {
        w.to_vec()
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
