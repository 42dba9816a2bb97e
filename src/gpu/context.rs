//! Adapter choice, device creation with the adapter's own limits, and the
//! error hooks that turn every wgpu failure into a typed [`Error`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::config::DeviceChoice;
use crate::error::{Error, Result};

/// What `/status` and `wgformer info` report about an adapter.
#[derive(Clone, Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct AdapterDetails {
    /// Vulkan, Metal, Dx12, Gl.
    pub backend: String,
    pub name: String,
    /// DiscreteGpu, IntegratedGpu, VirtualGpu, Cpu, Other.
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    pub vendor: u32,
    pub device: u32,
}

impl AdapterDetails {
    fn from_info(info: &wgpu::AdapterInfo) -> Self {
        AdapterDetails {
            backend: format!("{:?}", info.backend),
            name: info.name.clone(),
            device_type: format!("{:?}", info.device_type),
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
            vendor: info.vendor,
            device: info.device,
        }
    }

    /// `"<backend>:<adapter name>"`, as the contract's `device` fields show it.
    pub fn label(&self) -> String {
        format!("{}:{}", self.backend.to_lowercase(), self.name)
    }

    /// A software rasteriser (lavapipe, llvmpipe, WARP, SwiftShader).
    pub fn is_software(&self) -> bool {
        self.device_type == "Cpu"
    }

    /// Mesa's llvmpipe (lavapipe on Vulkan), whose shaders stop their loops after
    /// [`LLVMPIPE_LOOP_ITERATIONS`].
    pub fn is_llvmpipe(&self) -> bool {
        self.is_software() && (self.name.contains("llvmpipe") || self.driver.contains("llvmpipe"))
    }
}

/// llvmpipe ends every loop of a shader invocation once the invocation has run this
/// many loop iterations, all its loops together (Mesa's `LP_MAX_TGSI_LOOP_ITERATIONS`,
/// "shared between every loop"), without an error: what the invocation computes after
/// that is wrong. The attention kernels are the ones whose loops can get there: see
/// [`llvmpipe_max_context`].
pub const LLVMPIPE_LOOP_ITERATIONS: usize = 65_535;

/// The longest context whose attention stays within [`LLVMPIPE_LOOP_ITERATIONS`] for
/// heads of `head_size`: a row's attention walks its keys with loops over the head's
/// vec4s inside (scores, rescale, accumulate), at most `3 · HS/4 + 1` iterations a key
/// and `3 · HS/4` more. On lavapipe the paged attention is right at this bound and
/// wrong past ~1.4× it (head size 128: right at 670 keys, wrong at 960; head size 64:
/// right at 1,330, wrong at 1,900).
pub fn llvmpipe_max_context(head_size: usize) -> usize {
    let hs4 = head_size.div_ceil(4).max(1);
    (LLVMPIPE_LOOP_ITERATIONS - 3 * hs4) / (3 * hs4 + 1)
}

/// Limits and features worth printing for an adapter.
#[derive(Clone, Debug, Serialize)]
pub struct AdapterReport {
    #[serde(flatten)]
    pub details: AdapterDetails,
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    pub max_compute_workgroup_size_x: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroups_per_dimension: u32,
    pub max_compute_workgroup_storage_size: u32,
    /// Storage buffers one kernel may bind (the catalogue's kernels bind at most
    /// [`crate::kernels::catalogue::MAX_STORAGE_BINDINGS`]).
    pub max_storage_buffers_per_shader_stage: u32,
    pub timestamp_query: bool,
    pub shader_f16: bool,
    /// The smallest and largest subgroup the adapter may run.
    pub subgroup_sizes: [u32; 2],
    /// Whether the subgroup kernel variants can run (subgroups of at least 8 lanes).
    pub subgroup_kernels: bool,
    /// Whether the tensor-core matmul can be compiled (it still serves only after its
    /// self-test passes on the device).
    pub cooperative_matrix: bool,
}

/// Whether `adapter` runs the subgroup kernel variants, which share rows across 8 lanes.
fn subgroup_kernels(adapter: &wgpu::Adapter) -> bool {
    adapter.features().contains(wgpu::Features::SUBGROUP)
        && adapter.get_info().subgroup_min_size >= 8
}

/// The features tensor cores are reached through.
const COOPERATIVE_FEATURES: wgpu::Features =
    wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX.union(wgpu::Features::SHADER_F16);

/// Whether `adapter` offers tensor cores the way `matmul_coop` uses them: 16×16×16 with
/// f16 inputs and f32 accumulators, on subgroups of exactly 32 lanes (the kernel's layout).
fn cooperative_matrix(adapter: &wgpu::Adapter) -> bool {
    let info = adapter.get_info();
    adapter.features().contains(COOPERATIVE_FEATURES)
        && info.subgroup_min_size == 32
        && info.subgroup_max_size == 32
        && adapter.cooperative_matrix_properties().iter().any(|p| {
            (p.m_size, p.n_size, p.k_size) == (16, 16, 16)
                && p.ab_type == wgpu::CooperativeScalarType::F16
                && p.cr_type == wgpu::CooperativeScalarType::F32
        })
}

/// An instance of `backends` (`WGPU_BACKEND`, when set, decides instead). Resource
/// creation fails with an out-of-memory error past 95 % of the budget the driver
/// reports (where it reports one), rather than the driver failing later.
fn new_instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    if std::env::var_os("WGPU_BACKEND").is_none() {
        desc.backends = backends;
    }
    desc.memory_budget_thresholds = wgpu::MemoryBudgetThresholds {
        for_resource_creation: Some(95),
        for_device_loss: None,
    };
    wgpu::Instance::new(desc)
}

/// The best adapter of `backends` for `choice`.
fn best_adapter(backends: wgpu::Backends, choice: &DeviceChoice) -> Option<wgpu::Adapter> {
    let instance = new_instance(backends);
    let mut adapters = pollster::block_on(instance.enumerate_adapters(backends));
    adapters.retain(|a| matches_choice(&a.get_info(), choice));
    adapters.sort_by_key(|a| rank(&a.get_info()));
    adapters.into_iter().next()
}

/// Bytes of device-local memory the adapter reports (Vulkan memory heaps); wgpu
/// itself does not expose it.
#[cfg(any(target_os = "linux", target_os = "windows", target_os = "android"))]
fn device_local_bytes(adapter: &wgpu::Adapter) -> Option<u64> {
    // SAFETY: the hal adapter is only read (memory properties of its physical device)
    // while the guard keeps it alive.
    let hal = unsafe { adapter.as_hal::<wgpu::hal::api::Vulkan>() }?;
    let props = unsafe {
        hal.shared_instance()
            .raw_instance()
            .get_physical_device_memory_properties(hal.raw_physical_device())
    };
    let total: u64 = props
        .memory_heaps_as_slice()
        .iter()
        .filter(|h| h.flags.contains(ash::vk::MemoryHeapFlags::DEVICE_LOCAL))
        .map(|h| h.size)
        .sum();
    (total > 0).then_some(total)
}

#[cfg(not(any(target_os = "linux", target_os = "windows", target_os = "android")))]
fn device_local_bytes(_adapter: &wgpu::Adapter) -> Option<u64> {
    None
}

/// Host memory available now (bytes).
pub fn host_available_bytes() -> u64 {
    let mut sys = sysinfo::System::new();
    sys.refresh_memory();
    sys.available_memory()
}

fn is_hardware(info: &wgpu::AdapterInfo) -> bool {
    matches!(
        info.device_type,
        wgpu::DeviceType::DiscreteGpu
            | wgpu::DeviceType::IntegratedGpu
            | wgpu::DeviceType::VirtualGpu
    )
}

/// Order of preference: discrete, integrated, virtual, other, CPU; Vulkan/Metal/Dx12 before Gl.
fn rank(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let ty = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    };
    let be = match info.backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    };
    (ty, be)
}

fn matches_choice(info: &wgpu::AdapterInfo, choice: &DeviceChoice) -> bool {
    match choice {
        DeviceChoice::Auto => true,
        DeviceChoice::Gpu => is_hardware(info),
        DeviceChoice::Cpu => info.device_type == wgpu::DeviceType::Cpu,
        DeviceChoice::Vulkan => info.backend == wgpu::Backend::Vulkan,
        DeviceChoice::Metal => info.backend == wgpu::Backend::Metal,
        DeviceChoice::Dx12 => info.backend == wgpu::Backend::Dx12,
        DeviceChoice::Gl => info.backend == wgpu::Backend::Gl,
    }
}

/// Every adapter wgpu sees, with limits and features.
pub fn list_adapters() -> Vec<AdapterReport> {
    let instance = new_instance(wgpu::Backends::all());
    let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    adapters
        .iter()
        .map(|a| {
            let l = a.limits();
            let f = a.features();
            let info = a.get_info();
            AdapterReport {
                details: AdapterDetails::from_info(&info),
                max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
                max_buffer_size: l.max_buffer_size,
                max_compute_workgroup_size_x: l.max_compute_workgroup_size_x,
                max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
                max_compute_workgroups_per_dimension: l.max_compute_workgroups_per_dimension,
                max_compute_workgroup_storage_size: l.max_compute_workgroup_storage_size,
                max_storage_buffers_per_shader_stage: l.max_storage_buffers_per_shader_stage,
                timestamp_query: f.contains(wgpu::Features::TIMESTAMP_QUERY),
                shader_f16: f.contains(wgpu::Features::SHADER_F16),
                subgroup_sizes: [info.subgroup_min_size, info.subgroup_max_size],
                subgroup_kernels: subgroup_kernels(a),
                cooperative_matrix: cooperative_matrix(a),
            }
        })
        .collect()
}

/// The device, its queue and what we know about the adapter behind it.
/// Created once per model build; owned by the engine thread.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub details: AdapterDetails,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    /// Caps the binding size below the adapter's limit (tests use it to exercise
    /// the splitting of large tensors at small shapes).
    pub binding_cap: Option<u64>,
    /// Largest subgroup the adapter may run (1 when unknown).
    pub subgroup_max_size: u32,
    /// Device-local memory the adapter reports (bytes), where it reports it.
    pub device_memory: Option<u64>,
    /// Cooperative matrices (16×16×16 f16 × f16 + f32) and f16 in shaders were enabled:
    /// the tensor-core matmul can be compiled.
    pub cooperative_matrix: bool,
    lost: Arc<AtomicBool>,
    lost_reason: Arc<Mutex<String>>,
    uncaptured: Arc<Mutex<Vec<String>>>,
    stand_ins: std::sync::OnceLock<StandIns>,
}

/// Two small storage buffers a kernel binds where an op has nothing to bind (a fused
/// store's pool, a norm's weights, a logits chunk past the last): one bound for writing,
/// one for reading, as a dispatch may not bind one buffer both ways.
pub struct StandIns {
    pub written: wgpu::Buffer,
    pub read: wgpu::Buffer,
}

impl GpuContext {
    /// Pick an adapter for `choice` and open a device with the adapter's own limits.
    /// Only the backend that serves is opened: Vulkan/Metal/Dx12 first, GL (EGL) only
    /// when asked for or when it offers a better adapter than the primary backends.
    pub fn new(choice: &DeviceChoice) -> Result<Self> {
        let primary = if *choice == DeviceChoice::Gl {
            None
        } else {
            best_adapter(wgpu::Backends::PRIMARY, choice)
        };
        let hardware = primary.as_ref().is_some_and(|a| is_hardware(&a.get_info()));
        let may_use_gl = matches!(
            choice,
            DeviceChoice::Auto | DeviceChoice::Gpu | DeviceChoice::Cpu | DeviceChoice::Gl
        );
        let adapter = if hardware || !may_use_gl {
            primary
        } else {
            match (primary, best_adapter(wgpu::Backends::SECONDARY, choice)) {
                (Some(p), Some(g)) if rank(&g.get_info()) < rank(&p.get_info()) => Some(g),
                (Some(p), _) => Some(p),
                (None, g) => g,
            }
        };
        let adapter = adapter.ok_or_else(|| {
            let seen: Vec<String> = list_adapters()
                .iter()
                .map(|r| format!("{} ({})", r.details.label(), r.details.device_type))
                .collect();
            Error::NoAdapter(format!(
                "no adapter matches device {:?}; adapters found: [{}]",
                choice,
                seen.join(", ")
            ))
        })?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        let mut features = wgpu::Features::empty();
        if adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
            features |= wgpu::Features::TIMESTAMP_QUERY;
        }
        // Per-dispatch times for `gpu::profile` (the bench's `profile` rows).
        if adapter.features().contains(
            wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES,
        ) {
            features |= wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES;
        }
        // On unified memory (lavapipe, integrated GPUs) weights are written straight into
        // their buffers instead of through a staging copy.
        let unified = matches!(
            info.device_type,
            wgpu::DeviceType::Cpu | wgpu::DeviceType::IntegratedGpu
        );
        if unified
            && adapter
                .features()
                .contains(wgpu::Features::MAPPABLE_PRIMARY_BUFFERS)
        {
            features |= wgpu::Features::MAPPABLE_PRIMARY_BUFFERS;
        }
        if subgroup_kernels(&adapter) {
            features |= wgpu::Features::SUBGROUP;
        }
        let cooperative_matrix = cooperative_matrix(&adapter)
            && std::env::var_os("WGFORMER_NO_COOPERATIVE_MATRIX").is_none();
        let experimental = if cooperative_matrix {
            features |= COOPERATIVE_FEATURES;
            // SAFETY: wgpu's experimental cooperative-matrix support is used only by
            // matmul_coop, which must pass a self-test against the CPU reference
            // before it serves (Pipelines::new).
            unsafe { wgpu::ExperimentalFeatures::enabled() }
        } else {
            wgpu::ExperimentalFeatures::disabled()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("wgformer"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: experimental,
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| Error::Gpu {
            context: "request_device".into(),
            message: e.to_string(),
        })?;

        let uncaptured = Arc::new(Mutex::new(Vec::new()));
        let sink = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            tracing::error!(error = %e, "uncaptured wgpu error");
            if let Ok(mut v) = sink.lock() {
                v.push(e.to_string());
            }
        }));
        let lost = Arc::new(AtomicBool::new(false));
        let lost_reason = Arc::new(Mutex::new(String::new()));
        let (flag, reason) = (lost.clone(), lost_reason.clone());
        device.set_device_lost_callback(move |r, msg| {
            // Dropping the device on purpose also reports `Destroyed`; that is not a loss.
            if r != wgpu::DeviceLostReason::Destroyed {
                tracing::error!(reason = ?r, %msg, "GPU device lost");
                flag.store(true, Ordering::SeqCst);
                if let Ok(mut s) = reason.lock() {
                    *s = format!("{r:?}: {msg}");
                }
            }
        });
        let details = AdapterDetails::from_info(&info);
        let device_memory = if info.backend == wgpu::Backend::Vulkan {
            device_local_bytes(&adapter)
        } else {
            None
        };
        tracing::info!(adapter = %details.label(), device_type = %details.device_type,
            driver = %details.driver, max_binding = limits.max_storage_buffer_binding_size,
            "GPU device opened");
        Ok(GpuContext {
            device,
            queue,
            details,
            limits,
            features,
            binding_cap: None,
            subgroup_max_size: info.subgroup_max_size.max(1),
            device_memory,
            cooperative_matrix,
            lost,
            lost_reason,
            uncaptured,
            stand_ins: std::sync::OnceLock::new(),
        })
    }

    /// The device's [`StandIns`], made on first use.
    pub fn stand_ins(&self) -> &StandIns {
        let make = |label| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: 16,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        };
        self.stand_ins.get_or_init(|| StandIns {
            written: make("stand-in (written)"),
            read: make("stand-in (read)"),
        })
    }

    /// Largest byte size one storage binding may have.
    pub fn max_binding_bytes(&self) -> u64 {
        let limit = self
            .limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size);
        self.binding_cap.map_or(limit, |cap| cap.min(limit))
    }

    /// The longest context this adapter's attention runs for heads of `head_size`:
    /// llvmpipe's loop limit ([`llvmpipe_max_context`]); `None` on other adapters.
    pub fn context_limit(&self, head_size: usize) -> Option<usize> {
        self.details
            .is_llvmpipe()
            .then(|| llvmpipe_max_context(head_size))
    }

    /// The default memory budget of a model on this device: the device-local memory
    /// the adapter reports; for software adapters (and where nothing is reported) the
    /// host's available memory, which is where their buffers live.
    pub fn default_memory_budget(&self) -> u64 {
        match self.device_memory {
            Some(bytes) if !self.details.is_software() => bytes,
            _ => host_available_bytes(),
        }
    }

    /// Whether the adapter has lost the device.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Fail with `DeviceLost` if the device is gone, else pass.
    pub fn check_alive(&self) -> Result<()> {
        if self.is_lost() {
            let why = self
                .lost_reason
                .lock()
                .map(|s| s.clone())
                .unwrap_or_default();
            return Err(Error::DeviceLost(why));
        }
        Ok(())
    }

    /// Run `f` inside validation + out-of-memory + internal error scopes; any error
    /// captured there (or reported uncaptured meanwhile) becomes a typed error.
    pub fn scoped<T>(&self, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        self.check_alive()?;
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let internal = self.device.push_error_scope(wgpu::ErrorFilter::Internal);
        let out = f();
        let internal = pollster::block_on(internal.pop());
        let validation = pollster::block_on(validation.pop());
        let oom = pollster::block_on(oom.pop());
        if let Some(e) = oom {
            return Err(Error::OutOfMemory(format!("{what}: {e}")));
        }
        if let Some(e) = validation.or(internal) {
            return Err(Error::Gpu {
                context: what.to_string(),
                message: e.to_string(),
            });
        }
        if let Some(msg) = self.take_uncaptured() {
            return Err(Error::Gpu {
                context: what.to_string(),
                message: msg,
            });
        }
        self.check_alive()?;
        out
    }

    fn take_uncaptured(&self) -> Option<String> {
        let mut v = self.uncaptured.lock().ok()?;
        if v.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut *v).join("; "))
        }
    }

    /// Block until the queue is idle.
    pub fn wait_idle(&self) -> Result<()> {
        self.wait_for(None)
    }

    /// Block until submission `index` is done (`None`: everything submitted so far);
    /// later submissions may still run.
    pub fn wait_for(&self, index: Option<wgpu::SubmissionIndex>) -> Result<()> {
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: index,
                timeout: None,
            })
            .map(|_| ())
            .map_err(|e| Error::Gpu {
                context: "poll".into(),
                message: e.to_string(),
            })
    }
}
