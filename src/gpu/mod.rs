//! GPU plumbing with no model knowledge: adapter and device ([`GpuContext`]),
//! buffers (upload, read-back, row-chunked tensors), half-float packing, per-dispatch
//! timing, dispatch-size helpers and the one function every dispatch goes through.
//! Which kernels exist and how they are compiled is `kernels/`'s business.

pub mod buffers;
pub mod context;
pub mod f16;
pub mod profile;

pub use context::{list_adapters, AdapterDetails, AdapterReport, GpuContext};

/// Workgroup size used by the standard kernels (the `WG` override constant).
pub const WORKGROUP: u32 = 32;

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

/// Record one dispatch of `pipeline` (kernel `name` compiled with `ROWS` = `rows`,
/// for the profile's labels) into `pass`.
pub fn dispatch(
    pass: &mut wgpu::ComputePass<'_>,
    pipeline: &wgpu::ComputePipeline,
    (name, rows): (&'static str, u32),
    bind: &wgpu::BindGroup,
    groups: (u32, u32, u32),
) {
    DISPATCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    pass.set_pipeline(pipeline);
    pass.set_bind_group(0, bind, &[]);
    profile::around(pass, name, rows, groups, |pass| {
        pass.dispatch_workgroups(groups.0, groups.1, groups.2)
    });
}
