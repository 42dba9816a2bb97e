//! GPU plumbing with no model knowledge: adapter and device ([`GpuContext`]),
//! buffers (upload, read-back, row-chunked tensors), shader sources and the
//! pipeline cache, dispatch-size helpers.

pub mod buffers;
pub mod context;
pub mod profile;

use std::collections::HashMap;

pub use context::{list_adapters, AdapterDetails, AdapterReport, GpuContext};

use crate::error::Result;

/// Which adapters a kernel is shaped for (design.md, 12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelClass {
    /// Serves every adapter (no GPU-shaped twin yet).
    Any,
    /// Shaped for software adapters (lavapipe: one invocation walks a row, no
    /// barriers); a hardware twin exists.
    Software,
    /// Shaped for hardware GPUs (workgroup reductions, coalesced loads).
    Hardware,
}

/// How a kernel reads its weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    F32,
    /// Packed IEEE half floats (`dtype: "float16"`).
    F16,
}

/// The workgroup size a kernel is compiled with (its `WG` override).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workgroup {
    /// [`WORKGROUP`].
    Standard,
    /// One subgroup (the subgroup matrix-vector kernels: their rows are few, so on a
    /// CPU adapter smaller workgroups spread a one-token step over more cores).
    Subgroup,
    /// A fixed size (the workgroup-reduction kernels).
    Fixed(u32),
}

/// One compiled kernel: its WGSL body, the preludes prepended to it, and what it needs.
#[derive(Clone, Copy, Debug)]
pub struct Kernel {
    /// The pipeline's key; variant names are what the model code selects.
    pub name: &'static str,
    /// The op it implements (the portable variant's name): its CPU reference and
    /// golden tests are the op's.
    pub op: &'static str,
    /// Entry point in `body`, named after the op or the technique.
    pub entry: &'static str,
    pub body: &'static str,
    /// Files of `shaders/lib/` prepended at pipeline creation, in order.
    pub preludes: &'static [&'static str],
    /// Needs the SUBGROUP feature (subgroups of at least 8 lanes).
    pub subgroups: bool,
    /// Needs cooperative matrices (16×16×16, f16 inputs, f32 accumulators) and f16 in
    /// shaders ([`GpuContext::cooperative_matrix`]).
    pub cooperative: bool,
    pub class: KernelClass,
    pub precision: Precision,
    pub workgroup: Workgroup,
    /// Declares `override ROWS` (rows of a decode batch per invocation): compiled once
    /// per value of [`BATCH_ROWS`].
    pub batch_rows: bool,
}

/// The `ROWS` values the decode-batch kernels are compiled with: a batch of R rows is
/// dispatched as groups of 8, then 4, then single rows (each row computed by the same
/// expression in every variant).
pub const BATCH_ROWS: [u32; 3] = [8, 4, 1];

impl Kernel {
    const fn new(name: &'static str, body: &'static str) -> Kernel {
        Kernel {
            name,
            op: name,
            entry: name,
            body,
            preludes: &[],
            subgroups: false,
            cooperative: false,
            class: KernelClass::Any,
            precision: Precision::F32,
            workgroup: Workgroup::Standard,
            batch_rows: false,
        }
    }
    /// Compiled for each of [`BATCH_ROWS`] (`override ROWS`).
    const fn batch(mut self) -> Kernel {
        self.batch_rows = true;
        self
    }
    /// A variant of `op`.
    const fn of(mut self, op: &'static str) -> Kernel {
        self.op = op;
        self
    }
    const fn entry(mut self, entry: &'static str) -> Kernel {
        self.entry = entry;
        self
    }
    const fn with(mut self, preludes: &'static [&'static str]) -> Kernel {
        self.preludes = preludes;
        self
    }
    /// A subgroup variant (implies the feature).
    const fn subgroup(mut self) -> Kernel {
        self.subgroups = true;
        self
    }
    const fn cooperative(mut self) -> Kernel {
        self.cooperative = true;
        self
    }
    const fn class(mut self, class: KernelClass) -> Kernel {
        self.class = class;
        self
    }
    const fn half(mut self) -> Kernel {
        self.precision = Precision::F16;
        self
    }
    const fn workgroup(mut self, w: Workgroup) -> Kernel {
        self.workgroup = w;
        self
    }

    /// The source handed to the compiler: the body's `enable` directives (WGSL wants
    /// them first), the preludes, then the rest of the body.
    pub fn source(&self) -> String {
        let is_enable = |l: &&str| l.trim_start().starts_with("enable ");
        let mut s = String::new();
        for l in self.body.lines().filter(is_enable) {
            s.push_str(l);
            s.push('\n');
        }
        for p in self.preludes {
            s.push_str(prelude(p));
            s.push('\n');
        }
        for l in self.body.lines().filter(|l| !is_enable(l)) {
            s.push_str(l);
            s.push('\n');
        }
        s
    }
}

/// The shared pieces in `shaders/lib/`.
pub const PRELUDES: &[(&str, &str)] = &[
    ("gelu", include_str!("../../shaders/lib/gelu.wgsl")),
    (
        "weights_f32",
        include_str!("../../shaders/lib/weights_f32.wgsl"),
    ),
    (
        "weights_f16",
        include_str!("../../shaders/lib/weights_f16.wgsl"),
    ),
    (
        "attention",
        include_str!("../../shaders/lib/attention.wgsl"),
    ),
    (
        "attention_tiles",
        include_str!("../../shaders/lib/attention_tiles.wgsl"),
    ),
    (
        "matmul_params",
        include_str!("../../shaders/lib/matmul_params.wgsl"),
    ),
    (
        "matvec_params",
        include_str!("../../shaders/lib/matvec_params.wgsl"),
    ),
    (
        "matvec_bt_params",
        include_str!("../../shaders/lib/matvec_bt_params.wgsl"),
    ),
    (
        "layer_norm_params",
        include_str!("../../shaders/lib/layer_norm_params.wgsl"),
    ),
    ("epilogue", include_str!("../../shaders/lib/epilogue.wgsl")),
    (
        "workgroup_reduce",
        include_str!("../../shaders/lib/workgroup_reduce.wgsl"),
    ),
    (
        "paged_walk",
        include_str!("../../shaders/lib/paged_walk.wgsl"),
    ),
    ("query64", include_str!("../../shaders/lib/query64.wgsl")),
];

fn prelude(name: &str) -> &'static str {
    PRELUDES
        .iter()
        .find(|(n, _)| *n == name)
        .map_or("", |(_, s)| *s)
}

macro_rules! wgsl {
    ($file:literal) => {
        include_str!(concat!("../../shaders/", $file, ".wgsl"))
    };
}

const MATMUL_F32: &[&str] = &["matmul_params", "weights_f32", "gelu", "epilogue"];
const MATMUL_F16: &[&str] = &["matmul_params", "weights_f16", "gelu", "epilogue"];
const MATVEC_F32: &[&str] = &["matvec_params", "weights_f32", "gelu", "epilogue"];
const MATVEC_F16: &[&str] = &["matvec_params", "weights_f16", "gelu", "epilogue"];
const MATVEC_SUBGROUP: &[&str] = &["matvec_params", "gelu", "epilogue"];
const MATVEC_BT_F32: &[&str] = &["matvec_bt_params", "weights_f32"];
const MATVEC_BT_F16: &[&str] = &["matvec_bt_params", "weights_f16"];
const MATVEC_BT_SUBGROUP: &[&str] = &["matvec_bt_params"];
// the matmul kernels without a weight type: tensor cores, the split-K sum
const MATMUL_UNTYPED: &[&str] = &["matmul_params", "gelu", "epilogue"];
const LAYER_NORM: &[&str] = &["layer_norm_params"];
const LAYER_NORM_WG: &[&str] = &["layer_norm_params", "workgroup_reduce"];
const F32_ONLY: &[&str] = &["weights_f32"];
const F16_ONLY: &[&str] = &["weights_f16"];
const ATTENTION: &[&str] = &["attention"];
const ATTENTION_TILES: &[&str] = &["attention", "attention_tiles"];
// the paged (generation) attention kernels: which keys a row walks
const ATTENTION_PAGED: &[&str] = &["attention", "paged_walk"];
const ATTENTION_PAGED_WG: &[&str] = &["attention", "paged_walk", "workgroup_reduce"];
// the subgroup kernels (head size 64): their query in separate variables
const ATTENTION_SUBGROUP: &[&str] = &["attention", "query64"];
const ATTENTION_PAGED_SUBGROUP: &[&str] = &["attention", "paged_walk", "query64"];
const WORKGROUP_REDUCE: &[&str] = &["workgroup_reduce"];
use KernelClass::{Hardware, Software};

/// Every kernel: the typed table the pipelines, the model's variant choice, the tests
/// and the bench read (one op per WGSL file; variants that differ only in the weight
/// type share the file and differ in their prelude).
pub const KERNELS: &[Kernel] = &[
    Kernel::new("embedding", wgsl!("embedding")).with(F32_ONLY),
    Kernel::new("embedding_f16", wgsl!("embedding"))
        .of("embedding")
        .entry("embedding")
        .with(F16_ONLY)
        .half(),
    Kernel::new("layer_norm", wgsl!("layer_norm"))
        .with(LAYER_NORM)
        .class(Software),
    Kernel::new("layer_norm_workgroup", wgsl!("layer_norm_workgroup"))
        .with(LAYER_NORM_WG)
        .of("layer_norm")
        .class(Hardware)
        .workgroup(Workgroup::Fixed(256)),
    Kernel::new("matmul", wgsl!("matmul")).with(MATMUL_F32),
    Kernel::new("matmul_subgroup", wgsl!("matmul_subgroup"))
        .with(MATMUL_F32)
        .of("matmul")
        .subgroup(),
    Kernel::new("matmul_f16", wgsl!("matmul"))
        .with(MATMUL_F16)
        .of("matmul")
        .entry("matmul")
        .half(),
    Kernel::new("matmul_f16_subgroup", wgsl!("matmul_subgroup"))
        .with(MATMUL_F16)
        .of("matmul")
        .entry("matmul_subgroup")
        .subgroup()
        .half(),
    Kernel::new("matmul_tiled", wgsl!("matmul_tiled"))
        .with(MATMUL_F32)
        .of("matmul")
        .class(Hardware)
        .workgroup(Workgroup::Fixed(256)),
    Kernel::new("matmul_f16_tiled", wgsl!("matmul_tiled"))
        .with(MATMUL_F16)
        .of("matmul")
        .entry("matmul_tiled")
        .class(Hardware)
        .half()
        .workgroup(Workgroup::Fixed(256)),
    Kernel::new("matmul_split_sum", wgsl!("matmul_split_sum"))
        .with(MATMUL_UNTYPED)
        .class(Hardware),
    Kernel::new("matmul_coop", wgsl!("matmul_coop"))
        .with(MATMUL_UNTYPED)
        .of("matmul")
        .class(Hardware)
        .half()
        .cooperative()
        .workgroup(Workgroup::Fixed(128)),
    Kernel::new("matmul_bt", wgsl!("matmul_bt")).with(F32_ONLY),
    Kernel::new("matmul_bt_subgroup", wgsl!("matmul_bt_subgroup"))
        .of("matmul_bt")
        .with(F32_ONLY)
        .subgroup(),
    Kernel::new("matmul_bt_f16", wgsl!("matmul_bt"))
        .of("matmul_bt")
        .entry("matmul_bt")
        .with(F16_ONLY)
        .half(),
    Kernel::new("matmul_bt_f16_subgroup", wgsl!("matmul_bt_subgroup"))
        .of("matmul_bt")
        .entry("matmul_bt_subgroup")
        .with(F16_ONLY)
        .subgroup()
        .half(),
    Kernel::new("matvec", wgsl!("matvec"))
        .with(MATVEC_F32)
        .class(Software)
        .batch(),
    Kernel::new("matvec_f16", wgsl!("matvec"))
        .with(MATVEC_F16)
        .of("matvec")
        .entry("matvec")
        .class(Software)
        .half()
        .batch(),
    Kernel::new("matvec_f16_subgroup", wgsl!("matvec_f16_subgroup"))
        .with(MATVEC_SUBGROUP)
        .of("matvec")
        .subgroup()
        .class(Software)
        .half()
        .workgroup(Workgroup::Subgroup)
        .batch(),
    Kernel::new("matvec_splitk", wgsl!("matvec_splitk"))
        .with(MATVEC_F32)
        .of("matvec")
        .class(Hardware)
        .workgroup(Workgroup::Fixed(256)),
    Kernel::new("matvec_f16_splitk", wgsl!("matvec_splitk"))
        .with(MATVEC_F16)
        .of("matvec")
        .entry("matvec_splitk")
        .class(Hardware)
        .half()
        .workgroup(Workgroup::Fixed(256)),
    Kernel::new("matvec_bt", wgsl!("matvec_bt"))
        .with(MATVEC_BT_F32)
        .batch(),
    Kernel::new("matvec_bt_f16", wgsl!("matvec_bt"))
        .of("matvec_bt")
        .entry("matvec_bt")
        .with(MATVEC_BT_F16)
        .half()
        .batch(),
    Kernel::new("matvec_bt_f16_subgroup", wgsl!("matvec_bt_f16_subgroup"))
        .of("matvec_bt")
        .with(MATVEC_BT_SUBGROUP)
        .batch()
        .subgroup()
        .half()
        .workgroup(Workgroup::Subgroup),
    Kernel::new("attention", wgsl!("attention")).with(ATTENTION),
    Kernel::new("attention_subgroup", wgsl!("attention_subgroup"))
        .with(ATTENTION_SUBGROUP)
        .of("attention")
        .subgroup(),
    Kernel::new("attention_tiled", wgsl!("attention_tiled"))
        .with(ATTENTION_TILES)
        .of("attention")
        .class(Hardware)
        .workgroup(Workgroup::Fixed(64)),
    Kernel::new("sparse_attention", wgsl!("sparse_attention")).with(ATTENTION),
    Kernel::new(
        "sparse_attention_subgroup",
        wgsl!("sparse_attention_subgroup"),
    )
    .with(ATTENTION_SUBGROUP)
    .of("sparse_attention")
    .subgroup(),
    Kernel::new("sparse_attention_tiled", wgsl!("sparse_attention_tiled"))
        .with(ATTENTION_TILES)
        .of("sparse_attention")
        .class(Hardware)
        .workgroup(Workgroup::Fixed(64)),
    Kernel::new("attention_paged", wgsl!("attention_paged"))
        .with(ATTENTION_PAGED)
        .class(Software),
    Kernel::new(
        "attention_paged_subgroup",
        wgsl!("attention_paged_subgroup"),
    )
    .with(ATTENTION_PAGED_SUBGROUP)
    .of("attention_paged")
    .class(Software)
    .subgroup()
    .workgroup(Workgroup::Subgroup),
    Kernel::new(
        "attention_paged_workgroup",
        wgsl!("attention_paged_workgroup"),
    )
    .with(ATTENTION_PAGED_WG)
    .of("attention_paged")
    .class(Hardware)
    .workgroup(Workgroup::Fixed(64)),
    Kernel::new("attention_weights", wgsl!("attention_weights")).with(ATTENTION),
    Kernel::new("kv_store", wgsl!("kv_store")),
    Kernel::new("copy_rows", wgsl!("copy_rows")),
    Kernel::new("top_k_rows", wgsl!("top_k_rows"))
        .with(WORKGROUP_REDUCE)
        .workgroup(Workgroup::Fixed(64)),
    Kernel::new("moe_gate", wgsl!("moe_gate")),
    Kernel::new("moe_route", wgsl!("moe_route")).workgroup(Workgroup::Fixed(64)),
    Kernel::new("moe_matmul", wgsl!("moe_matmul")).with(F32_ONLY),
    Kernel::new("moe_matmul_subgroup", wgsl!("moe_matmul_subgroup"))
        .of("moe_matmul")
        .with(F32_ONLY)
        .subgroup(),
    Kernel::new("moe_matmul_f16", wgsl!("moe_matmul"))
        .of("moe_matmul")
        .entry("moe_matmul")
        .with(F16_ONLY)
        .half(),
    Kernel::new("moe_matmul_f16_subgroup", wgsl!("moe_matmul_subgroup"))
        .of("moe_matmul")
        .entry("moe_matmul_subgroup")
        .with(F16_ONLY)
        .subgroup()
        .half(),
    Kernel::new("moe_combine", wgsl!("moe_combine")),
    Kernel::new("row_norm", wgsl!("row_norm")),
];

/// The table entry of kernel `name`.
pub fn kernel(name: &str) -> Option<&'static Kernel> {
    KERNELS.iter().find(|k| k.name == name)
}

/// The composed source of kernel `name` (preludes, then its body).
pub fn shader_source(name: &str) -> Option<String> {
    kernel(name).map(Kernel::source)
}

/// Workgroup size used by the standard kernels (the `WG` override constant).
pub const WORKGROUP: u32 = 32;

/// The workgroup size `k` is compiled with on a device whose subgroups have at most
/// `subgroup_max` lanes.
pub fn workgroup_for(k: &Kernel, subgroup_max: u32) -> u32 {
    match k.workgroup {
        Workgroup::Standard => WORKGROUP,
        Workgroup::Subgroup => subgroup_max.clamp(8, 256),
        Workgroup::Fixed(n) => n,
    }
}

/// Compiled compute pipelines keyed by kernel name and `ROWS` (1 for kernels without
/// it), with the workgroup size each was compiled with. Built once per device; every
/// pipeline uses an automatic layout with one bind group.
pub struct Pipelines {
    map: HashMap<(&'static str, u32), (wgpu::ComputePipeline, u32)>,
}

impl Pipelines {
    /// Compile every kernel inside an error scope.
    pub fn new(ctx: &GpuContext) -> Result<Self> {
        ctx.scoped("pipeline creation", || {
            let mut map = HashMap::new();
            let subgroups = ctx.features.contains(wgpu::Features::SUBGROUP)
                && std::env::var_os("WGFORMER_PORTABLE_KERNELS").is_none();
            for k in KERNELS {
                if (k.subgroups && !subgroups) || (k.cooperative && !ctx.cooperative_matrix) {
                    continue;
                }
                let name = k.name;
                let module = ctx
                    .device
                    .create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(name),
                        source: wgpu::ShaderSource::Wgsl(k.source().into()),
                    });
                let wg = workgroup_for(k, ctx.subgroup_max_size);
                let rows: &[u32] = if k.batch_rows { &BATCH_ROWS } else { &[1] };
                for &r in rows {
                    let mut constants = vec![("WG", wg as f64)];
                    if k.batch_rows {
                        constants.push(("ROWS", r as f64));
                    }
                    let pipeline =
                        ctx.device
                            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                                label: Some(name),
                                layout: None,
                                module: &module,
                                entry_point: Some(k.entry),
                                compilation_options: wgpu::PipelineCompilationOptions {
                                    constants: &constants,
                                    zero_initialize_workgroup_memory: false,
                                },
                                cache: None,
                            });
                    map.insert((name, r), (pipeline, wg));
                }
            }
            Ok(Pipelines { map })
        })
        .map(|mut pl| {
            // A tensor-core kernel serves only after it matched the CPU reference here:
            // its results cannot be checked on the CI's software adapter.
            if pl.has("matmul_coop") {
                if let Err(e) = crate::kernels::matmul::self_test(ctx, &pl, "matmul_coop") {
                    tracing::warn!(error = %e, "matmul_coop failed its self-test; the tiled kernel serves instead");
                    pl.map.remove(&("matmul_coop", 1));
                }
            }
            pl
        })
    }

    /// Whether kernel `name` was compiled for this device.
    pub fn has(&self, name: &str) -> bool {
        self.map.keys().any(|(n, r)| *n == name && *r == 1)
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

    fn entry(&self, name: &str, rows: u32) -> &(wgpu::ComputePipeline, u32) {
        self.map
            .iter()
            .find(|((n, r), _)| *n == name && *r == rows)
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("kernel {name} (ROWS {rows}) was not compiled"))
    }

    /// The pipeline of kernel `name` (a name from [`KERNELS`]) compiled with `ROWS`
    /// = `rows` (1 for kernels without it).
    pub fn get(&self, name: &str, rows: u32) -> &wgpu::ComputePipeline {
        &self.entry(name, rows).0
    }

    /// The workgroup size kernel `name` was compiled with.
    pub fn workgroup(&self, name: &str) -> u32 {
        self.entry(name, 1).1
    }

    /// A bind group for kernel `name` (its `rows` pipeline) with `buffers` at
    /// bindings 0, 1, ...
    pub fn bind(
        &self,
        ctx: &GpuContext,
        name: &str,
        rows: u32,
        buffers: &[&wgpu::Buffer],
    ) -> wgpu::BindGroup {
        let layout = self.get(name, rows).get_bind_group_layout(0);
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(name),
            layout: &layout,
            entries: &entries,
        })
    }
}

/// Workgroups for `n` invocations in 1-D, folded into (x, y) so that neither
/// exceeds 65,535; shaders rebuild the index as `gid.x + gid.y * nwg.x * WG`.
pub fn grid_1d(n: usize) -> (u32, u32) {
    grid_groups(n.div_ceil(WORKGROUP as usize))
}

/// `groups` workgroups folded into (x, y) so that neither exceeds 65,535; shaders
/// rebuild the index as `wg.x + wg.y * nwg.x` and skip indices past the end.
pub fn grid_groups(groups: usize) -> (u32, u32) {
    let groups = groups.max(1);
    if groups <= 65535 {
        (groups as u32, 1)
    } else {
        let y = groups.div_ceil(65535);
        (groups.div_ceil(y) as u32, y as u32)
    }
}

static DISPATCHES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Dispatches recorded by this process so far (the bench counts a step's with it).
pub fn dispatch_count() -> u64 {
    DISPATCHES.load(std::sync::atomic::Ordering::Relaxed)
}

/// Record one dispatch into `pass`.
pub fn dispatch(
    pass: &mut wgpu::ComputePass<'_>,
    pipelines: &Pipelines,
    (name, rows): (&str, u32),
    bind: &wgpu::BindGroup,
    groups: (u32, u32, u32),
) {
    DISPATCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    pass.set_pipeline(pipelines.get(name, rows));
    pass.set_bind_group(0, bind, &[]);
    profile::around(pass, name, rows, groups, |pass| {
        pass.dispatch_workgroups(groups.0, groups.1, groups.2)
    });
}
