//! GPU plumbing with no model knowledge: adapter and device ([`GpuContext`]),
//! buffers (upload, read-back, row-chunked tensors), shader sources and the
//! pipeline cache, dispatch-size helpers.

pub mod buffers;
pub mod context;

use std::collections::HashMap;

pub use context::{list_adapters, AdapterDetails, AdapterReport, GpuContext};

use crate::error::Result;

/// The WGSL sources, one op per file; the entry point is named after the op.
pub const SHADERS: &[(&str, &str)] = &[
    ("embedding", include_str!("../../shaders/embedding.wgsl")),
    ("layer_norm", include_str!("../../shaders/layer_norm.wgsl")),
    ("matmul", include_str!("../../shaders/matmul.wgsl")),
    (
        "matmul_subgroup",
        include_str!("../../shaders/matmul_subgroup.wgsl"),
    ),
    ("matmul_bt", include_str!("../../shaders/matmul_bt.wgsl")),
    (
        "matmul_bt_subgroup",
        include_str!("../../shaders/matmul_bt_subgroup.wgsl"),
    ),
    ("matvec", include_str!("../../shaders/matvec.wgsl")),
    ("matvec_f16", include_str!("../../shaders/matvec_f16.wgsl")),
    (
        "matvec_f16_subgroup",
        include_str!("../../shaders/matvec_f16_subgroup.wgsl"),
    ),
    ("matmul_f16", include_str!("../../shaders/matmul_f16.wgsl")),
    (
        "matmul_f16_subgroup",
        include_str!("../../shaders/matmul_f16_subgroup.wgsl"),
    ),
    ("matvec_bt", include_str!("../../shaders/matvec_bt.wgsl")),
    (
        "matvec_bt_f16",
        include_str!("../../shaders/matvec_bt_f16.wgsl"),
    ),
    (
        "matvec_bt_f16_subgroup",
        include_str!("../../shaders/matvec_bt_f16_subgroup.wgsl"),
    ),
    (
        "matmul_bt_f16",
        include_str!("../../shaders/matmul_bt_f16.wgsl"),
    ),
    (
        "matmul_bt_f16_subgroup",
        include_str!("../../shaders/matmul_bt_f16_subgroup.wgsl"),
    ),
    (
        "embedding_f16",
        include_str!("../../shaders/embedding_f16.wgsl"),
    ),
    ("attention", include_str!("../../shaders/attention.wgsl")),
    (
        "attention_subgroup",
        include_str!("../../shaders/attention_subgroup.wgsl"),
    ),
    (
        "sparse_attention",
        include_str!("../../shaders/sparse_attention.wgsl"),
    ),
    (
        "sparse_attention_subgroup",
        include_str!("../../shaders/sparse_attention_subgroup.wgsl"),
    ),
    ("kv_store", include_str!("../../shaders/kv_store.wgsl")),
    ("moe_gate", include_str!("../../shaders/moe_gate.wgsl")),
    ("moe_route", include_str!("../../shaders/moe_route.wgsl")),
    ("moe_matmul", include_str!("../../shaders/moe_matmul.wgsl")),
    (
        "moe_matmul_subgroup",
        include_str!("../../shaders/moe_matmul_subgroup.wgsl"),
    ),
    (
        "moe_matmul_f16",
        include_str!("../../shaders/moe_matmul_f16.wgsl"),
    ),
    (
        "moe_matmul_f16_subgroup",
        include_str!("../../shaders/moe_matmul_f16_subgroup.wgsl"),
    ),
    (
        "moe_combine",
        include_str!("../../shaders/moe_combine.wgsl"),
    ),
    ("row_norm", include_str!("../../shaders/row_norm.wgsl")),
];

/// Source of the shader named `name`.
pub fn shader_source(name: &str) -> Option<&'static str> {
    SHADERS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// Kernel variants that need the SUBGROUP feature (subgroups of at least 8 lanes).
pub fn needs_subgroups(name: &str) -> bool {
    name.ends_with("_subgroup")
}

/// Workgroup size used for every kernel (the `WG` override constant).
pub const WORKGROUP: u32 = 32;

/// Workgroup size kernel `name` is compiled with on a device whose subgroups have at
/// most `subgroup_max` lanes: [`WORKGROUP`], except the subgroup matrix-vector kernels,
/// which run one subgroup per workgroup (their rows are few, so on a CPU adapter
/// smaller workgroups spread a one-token step over more cores).
pub fn workgroup_for(name: &str, subgroup_max: u32) -> u32 {
    if name.starts_with("matvec") && name.ends_with("_subgroup") {
        subgroup_max.clamp(8, 256)
    } else {
        WORKGROUP
    }
}

/// Compiled compute pipelines keyed by kernel name, with the workgroup size each was
/// compiled with. Built once per device; every pipeline uses an automatic layout with
/// one bind group.
pub struct Pipelines {
    map: HashMap<&'static str, (wgpu::ComputePipeline, u32)>,
}

impl Pipelines {
    /// Compile every kernel inside an error scope.
    pub fn new(ctx: &GpuContext) -> Result<Self> {
        ctx.scoped("pipeline creation", || {
            let mut map = HashMap::new();
            let subgroups = ctx.features.contains(wgpu::Features::SUBGROUP)
                && std::env::var_os("WGFORMER_PORTABLE_KERNELS").is_none();
            for (name, src) in SHADERS {
                if needs_subgroups(name) && !subgroups {
                    continue;
                }
                let module = ctx
                    .device
                    .create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(name),
                        source: wgpu::ShaderSource::Wgsl((*src).into()),
                    });
                let wg = workgroup_for(name, ctx.subgroup_max_size);
                let constants = [("WG", wg as f64)];
                let pipeline =
                    ctx.device
                        .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                            label: Some(name),
                            layout: None,
                            module: &module,
                            entry_point: Some(name),
                            compilation_options: wgpu::PipelineCompilationOptions {
                                constants: &constants,
                                zero_initialize_workgroup_memory: false,
                            },
                            cache: None,
                        });
                map.insert(*name, (pipeline, wg));
            }
            Ok(Pipelines { map })
        })
    }

    /// Whether kernel `name` was compiled for this device.
    pub fn has(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    /// `name`'s subgroup variant when the device has it, else `name` (the portable kernel).
    pub fn best(&self, name: &'static str) -> &'static str {
        SHADERS
            .iter()
            .map(|(n, _)| *n)
            .find(|n| n.strip_suffix("_subgroup") == Some(name) && self.has(n))
            .unwrap_or(name)
    }

    /// The pipeline of kernel `name` (a name from [`SHADERS`]).
    pub fn get(&self, name: &str) -> &wgpu::ComputePipeline {
        &self.map[name].0
    }

    /// The workgroup size kernel `name` was compiled with.
    pub fn workgroup(&self, name: &str) -> u32 {
        self.map[name].1
    }

    /// A bind group for kernel `name` with `buffers` at bindings 0, 1, ...
    pub fn bind(&self, ctx: &GpuContext, name: &str, buffers: &[&wgpu::Buffer]) -> wgpu::BindGroup {
        let layout = self.get(name).get_bind_group_layout(0);
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
    let groups = n.div_ceil(WORKGROUP as usize).max(1);
    if groups <= 65535 {
        (groups as u32, 1)
    } else {
        let y = groups.div_ceil(65535);
        (groups.div_ceil(y) as u32, y as u32)
    }
}

/// Record one dispatch into `pass`.
pub fn dispatch(
    pass: &mut wgpu::ComputePass<'_>,
    pipelines: &Pipelines,
    name: &str,
    bind: &wgpu::BindGroup,
    groups: (u32, u32, u32),
) {
    pass.set_pipeline(pipelines.get(name));
    pass.set_bind_group(0, bind, &[]);
    pass.dispatch_workgroups(groups.0, groups.1, groups.2);
}
