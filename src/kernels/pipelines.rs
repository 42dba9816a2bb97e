//! The catalogue compiled for one device: every kernel the device can run, once per
//! [`Spec`] it takes (`ROWS`, a KV pool's element type, a plain or a qkv projection),
//! with the workgroup size it was compiled with. Built once per device
//! (inside an error scope); the tensor-core matmul serves only after its self-test.

use std::collections::HashMap;

use super::catalogue::{kernel, workgroup_for, Kernel, BATCH_ROWS, KERNELS, MAX_STORAGE_BINDINGS};
use crate::error::{Error, Result};
use crate::gpu::GpuContext;

/// What one pipeline of a kernel is specialised for besides its workgroup size (its
/// pipeline constants): `ROWS`, 1 for a kernel without the constant; `KV_HALF`, a KV
/// reader (prelude `kv_read`) or a qkv writer over a half-float pool; `QKV`, a
/// projection whose epilogue can store keys and values and rotate (prelude
/// `kv_write`). The plain projection compiles the qkv epilogue out: a software adapter
/// would run it, masked, for every output of every projection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spec {
    pub rows: u32,
    pub kv_half: bool,
    pub qkv: bool,
}

impl Spec {
    /// A kernel's pipeline for `rows` rows an invocation, nothing else specialised.
    pub const fn rows(rows: u32) -> Self {
        Spec {
            rows,
            kv_half: false,
            qkv: false,
        }
    }

    /// A KV reader's pipeline over a pool of half floats or not.
    pub const fn reader(kv_half: bool) -> Self {
        Spec {
            kv_half,
            ..Spec::rows(1)
        }
    }

    /// A projection's pipeline: a qkv projection's (over a pool of half floats or not)
    /// when `qkv`, else a plain one's.
    pub const fn projection(qkv: bool, kv_half: bool) -> Self {
        Spec {
            rows: 1,
            kv_half: qkv && kv_half,
            qkv,
        }
    }

    /// This spec with `rows` rows an invocation.
    pub const fn with_rows(self, rows: u32) -> Self {
        Spec { rows, ..self }
    }

    /// The specs kernel `k` is compiled with.
    fn all(k: &Kernel) -> Vec<Spec> {
        let rows: &[u32] = if k.batch_rows { &BATCH_ROWS } else { &[1] };
        let kv: &[Spec] = if reads_kv(k) {
            &[Spec::reader(false), Spec::reader(true)]
        } else if writes_kv(k) {
            &[
                Spec::projection(false, false),
                Spec::projection(true, false),
                Spec::projection(true, true),
            ]
        } else {
            &[Spec::rows(1)]
        };
        rows.iter()
            .flat_map(|&r| kv.iter().map(move |s| s.with_rows(r)))
            .collect()
    }

    /// Its pipeline constants besides `WG`.
    fn constants(self, k: &Kernel) -> Vec<(&'static str, f64)> {
        let mut c = Vec::new();
        if k.batch_rows {
            c.push(("ROWS", f64::from(self.rows)));
        }
        if reads_kv(k) || writes_kv(k) {
            c.push(("KV_HALF", f64::from(u8::from(self.kv_half))));
        }
        if writes_kv(k) {
            c.push(("QKV", f64::from(u8::from(self.qkv))));
        }
        c
    }
}

fn reads_kv(k: &Kernel) -> bool {
    k.all_preludes().any(|p| p.name == "kv_read")
}

fn writes_kv(k: &Kernel) -> bool {
    k.all_preludes().any(|p| p.name == "kv_write")
}

/// One kernel compiled for this device.
struct Compiled {
    /// The `WG` it was compiled with.
    workgroup: u32,
    /// Its pipelines, one per [`Spec`] it is compiled with.
    by_spec: Vec<(Spec, wgpu::ComputePipeline)>,
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
                let by_spec = Spec::all(k)
                    .into_iter()
                    .map(|spec| {
                        let mut constants = vec![("WG", wg as f64)];
                        constants.extend(spec.constants(k));
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
                        (spec, pipeline)
                    })
                    .collect();
                map.insert(
                    k.name,
                    Compiled {
                        workgroup: wg,
                        by_spec,
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
        self.get_spec(name, Spec::rows(rows))
    }

    /// The pipeline of kernel `name` compiled with `spec`.
    pub fn get_spec(&self, name: &str, spec: Spec) -> &wgpu::ComputePipeline {
        self.compiled(name)
            .by_spec
            .iter()
            .find(|(s, _)| *s == spec)
            .map(|(_, p)| p)
            .unwrap_or_else(|| panic!("kernel {name} was not compiled with {spec:?}"))
    }

    /// The workgroup size kernel `name` was compiled with.
    pub fn workgroup(&self, name: &str) -> u32 {
        self.compiled(name).workgroup
    }
}
