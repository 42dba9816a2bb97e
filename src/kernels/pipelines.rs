//! The catalogue compiled for one device: every kernel the device can run, once per
//! `ROWS` value, with the workgroup size it was compiled with. Built once per device
//! (inside an error scope); the tensor-core matmul serves only after its self-test.

use std::collections::HashMap;

use super::catalogue::{kernel, workgroup_for, BATCH_ROWS, KERNELS, MAX_STORAGE_BINDINGS};
use crate::error::{Error, Result};
use crate::gpu::GpuContext;

/// One kernel compiled for this device.
struct Compiled {
    /// The `WG` it was compiled with.
    workgroup: u32,
    /// `(ROWS, KV_HALF, pipeline)`: `ROWS` = 1 for a kernel without the constant;
    /// `KV_HALF` both ways for the KV readers (prelude `kv_read`), else false.
    by_rows: Vec<(u32, bool, wgpu::ComputePipeline)>,
}

/// Compiled compute pipelines keyed by kernel name, each with automatic layout and
/// one bind group.
pub struct Pipelines {
    map: HashMap<&'static str, Compiled>,
}

impl Pipelines {
    /// Compile every kernel the device supports inside an error scope, then self-test
    /// the kernels whose results the CI's software adapter cannot check.
    pub fn new(ctx: &GpuContext) -> Result<Self> {
        let allowed = ctx.limits.max_storage_buffers_per_shader_stage;
        if allowed < MAX_STORAGE_BINDINGS {
            return Err(Error::Gpu {
                context: "adapter limits".into(),
                message: format!(
                    "{} allows {allowed} storage buffers a shader stage; wgformer's kernels bind up to {MAX_STORAGE_BINDINGS}",
                    ctx.details.label()
                ),
            });
        }
        let mut pl = ctx.scoped("pipeline creation", || {
            let mut map = HashMap::new();
            let subgroups = ctx.features.contains(wgpu::Features::SUBGROUP)
                && std::env::var_os("WGFORMER_PORTABLE_KERNELS").is_none();
            for k in KERNELS {
                if (k.subgroups && !subgroups) || (k.cooperative && !ctx.cooperative_matrix) {
                    continue;
                }
                let module = ctx
                    .device
                    .create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(k.name),
                        source: wgpu::ShaderSource::Wgsl(k.source().into()),
                    });
                let wg = workgroup_for(k, ctx.subgroup_max_size);
                let rows: &[u32] = if k.batch_rows { &BATCH_ROWS } else { &[1] };
                let reads_kv = k.all_preludes().any(|p| p.name == "kv_read");
                let halves: &[bool] = if reads_kv { &[false, true] } else { &[false] };
                let specs = rows
                    .iter()
                    .flat_map(|&r| halves.iter().map(move |&h| (r, h)));
                let by_rows = specs
                    .map(|(r, half)| {
                        let mut constants = vec![("WG", wg as f64)];
                        if k.batch_rows {
                            constants.push(("ROWS", r as f64));
                        }
                        if reads_kv {
                            constants.push(("KV_HALF", f64::from(u8::from(half))));
                        }
                        let pipeline =
                            ctx.device
                                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                                    label: Some(k.name),
                                    layout: None,
                                    module: &module,
                                    entry_point: Some(k.entry),
                                    compilation_options: wgpu::PipelineCompilationOptions {
                                        constants: &constants,
                                        zero_initialize_workgroup_memory: false,
                                    },
                                    cache: None,
                                });
                        (r, half, pipeline)
                    })
                    .collect();
                map.insert(
                    k.name,
                    Compiled {
                        workgroup: wg,
                        by_rows,
                    },
                );
            }
            Ok(Pipelines { map })
        })?;
        // A tensor-core kernel serves only after it matched the CPU reference here:
        // its results cannot be checked on the CI's software adapter.
        if pl.has("matmul_coop") {
            if let Err(e) = super::matmul::self_test(ctx, &pl, "matmul_coop") {
                tracing::warn!(error = %e, "matmul_coop failed its self-test; the tiled kernel serves instead");
                pl.map.remove("matmul_coop");
            }
        }
        Ok(pl)
    }

    /// Whether kernel `name` was compiled for this device.
    pub fn has(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    /// `name`'s subgroup twin (same op, class and precision) when the device has it,
    /// else `name` (the portable kernel).
    pub fn best(&self, name: &'static str) -> &'static str {
        let Some(base) = kernel(name) else {
            return name;
        };
        KERNELS
            .iter()
            .find(|k| {
                k.subgroups
                    && k.op == base.op
                    && k.class == base.class
                    && k.precision == base.precision
                    && self.has(k.name)
            })
            .map_or(name, |k| k.name)
    }

    /// The compiled kernels of `name`'s op with `name`'s weight precision (subgroup
    /// and hardware variants alike), `name` first: what the tests and the bench check
    /// against one reference.
    pub fn variants(&self, name: &str) -> Vec<&'static str> {
        let Some(base) = kernel(name) else {
            return Vec::new();
        };
        KERNELS
            .iter()
            .filter(|k| k.op == base.op && k.precision == base.precision && self.has(k.name))
            .map(|k| k.name)
            .collect()
    }

    fn compiled(&self, name: &str) -> &Compiled {
        self.map
            .get(name)
            .unwrap_or_else(|| panic!("kernel {name} was not compiled"))
    }

    /// The pipeline of kernel `name` (a name from [`KERNELS`]) compiled with `ROWS`
    /// = `rows` (1 for kernels without it).
    pub fn get(&self, name: &str, rows: u32) -> &wgpu::ComputePipeline {
        self.get_spec(name, rows, false)
    }

    /// [`Pipelines::get`] of a KV reader compiled with `KV_HALF` = `kv_half`.
    pub fn get_spec(&self, name: &str, rows: u32, kv_half: bool) -> &wgpu::ComputePipeline {
        self.compiled(name)
            .by_rows
            .iter()
            .find(|(r, h, _)| *r == rows && *h == kv_half)
            .map(|(_, _, p)| p)
            .unwrap_or_else(|| {
                panic!("kernel {name} was not compiled with ROWS {rows}, KV_HALF {kv_half}")
            })
    }

    /// The workgroup size kernel `name` was compiled with.
    pub fn workgroup(&self, name: &str) -> u32 {
        self.compiled(name).workgroup
    }
}
