//! Per-dispatch GPU times from timestamp queries: where a traversal's time goes,
//! kernel by kernel, on the device that runs it.
//!
//! [`profile`] arms a recorder on the calling thread and runs a closure that encodes
//! and submits work as usual (a decode step, a prefill traversal, a bench pass). Every
//! dispatch recorded through [`super::dispatch`] on that thread while it is armed is
//! bracketed by two timestamps written inside its compute pass; when the closure
//! returns, the timestamps are resolved and read back, and each dispatch's time is the
//! interval between its two. Needs `TIMESTAMP_QUERY_INSIDE_PASSES` (Vulkan adapters
//! have it, lavapipe included); [`available`] says whether the device was opened with
//! it. Nothing is written when no recorder is armed, so serving pays only a
//! thread-local check per dispatch.
//!
//! The interval is what the device spent from the end of the work before the dispatch
//! to the end of the dispatch: on GPUs that run independent dispatches concurrently
//! the intervals of overlapping dispatches blur, on lavapipe (one dispatch at a time)
//! they are exact.

use std::cell::RefCell;

use super::buffers;
use super::context::GpuContext;
use crate::error::{Error, Result};

/// The device must have been opened with inside-pass timestamps.
pub fn available(ctx: &GpuContext) -> bool {
    ctx.features
        .contains(wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES)
}

/// One recorded dispatch: its kernel (and `ROWS` override), its grid and its time.
#[derive(Clone, Debug, PartialEq)]
pub struct DispatchTime {
    pub kernel: String,
    pub rows: u32,
    pub groups: (u32, u32, u32),
    pub ms: f64,
}

/// Dispatches [`profile`] records at most (two timestamps each; wgpu's query sets
/// hold 4,096). Dispatches past it run unrecorded and are counted in
/// [`Profile::unrecorded`].
pub const MAX_DISPATCHES: u32 = wgpu::QUERY_SET_MAX_QUERIES / 2;

/// What [`profile`] recorded.
#[derive(Clone, Debug, Default)]
pub struct Profile {
    /// Recorded dispatches in the order they were encoded.
    pub dispatches: Vec<DispatchTime>,
    /// Dispatches past [`MAX_DISPATCHES`], run but not timed.
    pub unrecorded: usize,
}

/// Dispatches of one kernel with one grid, added up ([`Profile::by_kernel`]).
#[derive(Clone, Debug, PartialEq)]
pub struct KernelTotal {
    pub kernel: String,
    pub rows: u32,
    pub groups: (u32, u32, u32),
    pub count: usize,
    pub ms: f64,
}

impl Profile {
    /// Sum of every recorded dispatch's time.
    pub fn total_ms(&self) -> f64 {
        self.dispatches.iter().map(|d| d.ms).sum()
    }

    /// Dispatches grouped by kernel, `ROWS` and grid (a linear's shape shows in its
    /// grid), largest total first; ties keep the order of first appearance.
    pub fn by_kernel(&self) -> Vec<KernelTotal> {
        let mut out: Vec<KernelTotal> = Vec::new();
        for d in &self.dispatches {
            match out
                .iter_mut()
                .find(|t| t.kernel == d.kernel && t.rows == d.rows && t.groups == d.groups)
            {
                Some(t) => {
                    t.count += 1;
                    t.ms += d.ms;
                }
                None => out.push(KernelTotal {
                    kernel: d.kernel.clone(),
                    rows: d.rows,
                    groups: d.groups,
                    count: 1,
                    ms: d.ms,
                }),
            }
        }
        out.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        out
    }
}

struct Recorder {
    set: wgpu::QuerySet,
    labels: Vec<(String, u32, (u32, u32, u32))>,
    unrecorded: usize,
}

thread_local! {
    static ARMED: RefCell<Option<Recorder>> = const { RefCell::new(None) };
}

/// Record `dispatch` into `pass`, bracketed by timestamps when a recorder is armed on
/// this thread (called by [`super::dispatch`] for every dispatch).
pub(super) fn around(
    pass: &mut wgpu::ComputePass<'_>,
    kernel: &str,
    rows: u32,
    groups: (u32, u32, u32),
    dispatch: impl FnOnce(&mut wgpu::ComputePass<'_>),
) {
    ARMED.with(|armed| match armed.borrow_mut().as_mut() {
        Some(r) if (r.labels.len() as u32) < MAX_DISPATCHES => {
            let i = 2 * r.labels.len() as u32;
            pass.write_timestamp(&r.set, i);
            dispatch(pass);
            pass.write_timestamp(&r.set, i + 1);
            r.labels.push((kernel.to_string(), rows, groups));
        }
        Some(r) => {
            r.unrecorded += 1;
            dispatch(pass);
        }
        None => dispatch(pass),
    })
}

/// Run `f` (which encodes, submits and waits for its work on this thread) with every
/// dispatch timed; returns its result and the times. Errors are `f`'s (or a profile
/// already armed on this thread, or an adapter without the feature, before `f` runs);
/// timestamps that cannot be read after `f` succeeded leave the profile empty, every
/// dispatch counted in [`Profile::unrecorded`].
pub fn profile<R>(ctx: &GpuContext, f: impl FnOnce() -> Result<R>) -> Result<(R, Profile)> {
    if !available(ctx) {
        return Err(Error::Gpu {
            context: "profile".into(),
            message: "the device has no timestamp queries inside passes".into(),
        });
    }
    let set = ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
        label: Some("profile"),
        ty: wgpu::QueryType::Timestamp,
        count: 2 * MAX_DISPATCHES,
    });
    let nested = ARMED.with(|armed| {
        let mut armed = armed.borrow_mut();
        if armed.is_some() {
            return true;
        }
        *armed = Some(Recorder {
            set,
            labels: Vec::new(),
            unrecorded: 0,
        });
        false
    });
    if nested {
        return Err(Error::Gpu {
            context: "profile".into(),
            message: "a profile is already being recorded on this thread".into(),
        });
    }
    // disarmed when `f` returns or unwinds
    struct Disarm;
    impl Drop for Disarm {
        fn drop(&mut self) {
            ARMED.with(|armed| armed.borrow_mut().take());
        }
    }
    let disarm = Disarm;
    let result = f();
    let rec = ARMED
        .with(|armed| armed.borrow_mut().take())
        .expect("armed above");
    drop(disarm);
    let value = result?;
    let recorded = rec.labels.len();
    let profile = match read_times(ctx, rec) {
        Ok(p) => p,
        Err(e) => {
            // the work itself succeeded: its value is the caller's either way
            tracing::warn!(error = %e, "dispatch timestamps could not be read");
            Profile {
                dispatches: Vec::new(),
                unrecorded: recorded,
            }
        }
    };
    Ok((value, profile))
}

/// Resolve and read back a recorder's timestamps: each dispatch's time.
fn read_times(ctx: &GpuContext, rec: Recorder) -> Result<Profile> {
    let n = 2 * rec.labels.len() as u32;
    let mut dispatches = Vec::with_capacity(rec.labels.len());
    if n > 0 {
        let bytes = n as u64 * 8;
        let resolve = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("profile resolve"),
            size: bytes,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let read = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("profile read"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("profile"),
            });
        enc.resolve_query_set(&rec.set, 0..n, &resolve, 0);
        enc.copy_buffer_to_buffer(&resolve, 0, &read, 0, bytes);
        ctx.queue.submit([enc.finish()]);
        let ticks: Vec<u64> = buffers::map_with(ctx, &read, bytes, |b| {
            b.chunks_exact(8)
                .map(|t| u64::from_le_bytes(t.try_into().expect("8 bytes")))
                .collect()
        })?;
        let period_ns = ctx.queue.get_timestamp_period() as f64;
        for (i, (kernel, rows, groups)) in rec.labels.into_iter().enumerate() {
            let (a, b) = (ticks[2 * i], ticks[2 * i + 1]);
            dispatches.push(DispatchTime {
                kernel,
                rows,
                groups,
                ms: b.saturating_sub(a) as f64 * period_ns / 1e6,
            });
        }
    }
    Ok(Profile {
        dispatches,
        unrecorded: rec.unrecorded,
    })
}

#[cfg(test)]
mod tests {
    use super::{DispatchTime, Profile};

    fn d(kernel: &str, groups: u32, ms: f64) -> DispatchTime {
        DispatchTime {
            kernel: kernel.into(),
            rows: 1,
            groups: (groups, 1, 1),
            ms,
        }
    }

    #[test]
    fn by_kernel_groups_kernel_and_grid_largest_first() {
        let p = Profile {
            dispatches: vec![
                d("matvec", 36, 1.0),
                d("layer_norm", 1, 0.25),
                d("matvec", 48, 2.0),
                d("matvec", 36, 1.5),
                d("layer_norm", 1, 0.25),
            ],
            unrecorded: 0,
        };
        let t = p.by_kernel();
        assert_eq!(t.len(), 3);
        assert_eq!(
            (t[0].kernel.as_str(), t[0].groups.0, t[0].count),
            ("matvec", 36, 2)
        );
        assert!((t[0].ms - 2.5).abs() < 1e-12);
        assert_eq!((t[1].groups.0, t[1].count), (48, 1));
        assert_eq!((t[2].kernel.as_str(), t[2].count), ("layer_norm", 2));
        assert!((p.total_ms() - 5.0).abs() < 1e-12);
    }
}
