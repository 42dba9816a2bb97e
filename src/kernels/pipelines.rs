//! The catalogue compiled for one device: every kernel the device can run, once per
//! [`Spec`] it takes (`ROWS` at start; a KV pool's element type, a plain or a qkv
//! projection when first asked for), with the workgroup size it was compiled with. Built once per device
//! (inside an error scope); the tensor-core matmul serves only after its self-test.

use std::collections::HashMap;
use std::sync::Mutex;

use super::catalogue::{
    kernel, workgroup_for, Kernel, BATCH_ROWS, KERNELS, MAX_STORAGE_BINDINGS, NARROW_HEAD_SIZE,
};
use crate::error::{Error, Result};
use crate::gpu::GpuContext;

/// What one pipeline of a kernel is specialised for besides its workgroup size (its
/// pipeline constants): `ROWS`, 1 for a kernel without the constant; `KV_HALF`, a KV
/// reader (prelude `kv_read`) or a qkv writer over a half-float pool; `QKV`, a
/// projection whose epilogue can store keys and values and rotate (prelude
/// `kv_write`). The plain projection compiles the qkv epilogue out: a software adapter
/// would run it, masked, for every output of every projection. `wide`: an attention
/// kernel's pipeline for heads wider than [`NARROW_HEAD_SIZE`], compiled from
/// [`Kernel::wide_source`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spec {
    pub rows: u32,
    pub kv_half: bool,
    pub qkv: bool,
    pub wide: bool,
}

impl Spec {
    /// A kernel's pipeline for `rows` rows an invocation, nothing else specialised.
    pub const fn rows(rows: u32) -> Self {
        Spec {
            rows,
            kv_half: false,
            qkv: false,
            wide: false,
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
            wide: false,
        }
    }

    /// An attention kernel's pipeline for heads of `head_size`: the wide one past
    /// [`NARROW_HEAD_SIZE`].
    pub const fn heads(self, head_size: usize) -> Self {
        Spec {
            wide: head_size > NARROW_HEAD_SIZE,
            ..self
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
        let widths: &[bool] = if k.attends() {
            &[false, true]
        } else {
            &[false]
        };
        rows.iter()
            .flat_map(|&r| kv.iter().map(move |s| s.with_rows(r)))
            .flat_map(|s| widths.iter().map(move |&wide| Spec { wide, ..s }))
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
    kernel: &'static Kernel,
    module: wgpu::ShaderModule,
    /// An attention kernel's module for wide heads, compiled when first asked for.
    wide_module: std::sync::OnceLock<wgpu::ShaderModule>,
    /// The `WG` it was compiled with.
    workgroup: u32,
    /// Its pipelines by [`Spec`]: each `ROWS` at start, the others (a half-float
    /// pool's KV readers, the qkv projections) the first time an op asks for them, so
    /// a device compiles the ones its models use.
    by_spec: Mutex<Vec<(Spec, wgpu::ComputePipeline)>>,
}

impl Compiled {
    fn pipeline(&self, device: &wgpu::Device, spec: Spec) -> wgpu::ComputePipeline {
        let k = self.kernel;
        let mut constants = vec![("WG", f64::from(self.workgroup))];
        constants.extend(spec.constants(k));
        let module = match spec.wide {
            false => &self.module,
            true => self.wide_module.get_or_init(|| {
                device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(k.name),
                    source: wgpu::ShaderSource::Wgsl(k.wide_source().into()),
                })
            }),
        };
        device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(k.name),
            layout: None,
            module,
            entry_point: Some(k.entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &constants,
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        })
    }
}

/// Compiled compute pipelines keyed by kernel name, each with automatic layout and
/// one bind group.
pub struct Pipelines {
    device: wgpu::Device,
    map: HashMap<&'static str, Compiled>,
}

impl Pipelines {
    /// Compile every kernel the device supports inside an error scope (each `ROWS`;
    /// its other specs on first use), then self-test the kernels whose results the
    /// CI's software adapter cannot check.
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
        let device = &ctx.device;
        let mut pl = ctx.scoped("pipeline creation", || {
            let mut map = HashMap::new();
            let subgroups = ctx.features.contains(wgpu::Features::SUBGROUP)
                && std::env::var_os("WGFORMER_PORTABLE_KERNELS").is_none();
            for k in KERNELS {
                if (k.subgroups && !subgroups) || (k.cooperative && !ctx.cooperative_matrix) {
                    continue;
                }
                let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(k.name),
                    source: wgpu::ShaderSource::Wgsl(k.source().into()),
                });
                let compiled = Compiled {
                    kernel: k,
                    module,
                    wide_module: std::sync::OnceLock::new(),
                    workgroup: workgroup_for(k, ctx.subgroup_max_size),
                    by_spec: Mutex::new(Vec::new()),
                };
                let at_start: Vec<_> = Spec::all(k)
                    .into_iter()
                    .filter(|s| *s == Spec::rows(s.rows))
                    .map(|s| (s, compiled.pipeline(device, s)))
                    .collect();
                *compiled.by_spec.lock().unwrap_or_else(|e| e.into_inner()) = at_start;
                map.insert(k.name, compiled);
            }
            Ok(Pipelines {
                device: device.clone(),
                map,
            })
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
    pub fn get(&self, name: &str, rows: u32) -> wgpu::ComputePipeline {
        self.get_spec(name, Spec::rows(rows))
    }

    /// The pipeline of kernel `name` compiled with `spec`, compiled now if this is the
    /// first op to ask for it (its errors go to the caller's error scope, as a model
    /// build's; a spec the kernel does not take is a bug and panics).
    pub fn get_spec(&self, name: &str, spec: Spec) -> wgpu::ComputePipeline {
        let c = self.compiled(name);
        let mut by_spec = c.by_spec.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, p)) = by_spec.iter().find(|(s, _)| *s == spec) {
            return p.clone();
        }
        assert!(
            Spec::all(c.kernel).contains(&spec),
            "kernel {name} does not take {spec:?}"
        );
        let p = c.pipeline(&self.device, spec);
        by_spec.push((spec, p.clone()));
        p
    }

    /// The workgroup size kernel `name` was compiled with.
    pub fn workgroup(&self, name: &str) -> u32 {
        self.compiled(name).workgroup
    }
}
