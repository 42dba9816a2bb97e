//! State shared with the server without waiting for the queue: what is loaded,
//! counters, the watchdog (deadlines and heartbeats) and the scheduler's statistics.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::ModelConfig;
use crate::error::Error;
use crate::gpu::{profile, AdapterDetails};
use crate::model::kv_pool::PoolStats;
use crate::stats::{Histogram, BATCH, SECONDS};
use crate::tokenizer::Tokenizer;

/// What is loaded, for `/status` and health.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ModelSnapshot {
    /// Name clients use for the model (OpenAI `model`): the checkpoint's file stem, or
    /// `wgformer` for seeded weights.
    pub model_id: String,
    /// When it was built (Unix seconds).
    pub created: u64,
    pub config: Option<ModelConfig>,
    pub adapter: Option<AdapterDetails>,
    pub total_parameters: usize,
    pub model_size_mb: f64,
    pub device_memory_mb: f64,
    pub device_lost: bool,
    /// The model is a cross-encoder (a classification head scores pairs of texts).
    pub cross_encoder: bool,
    /// Generations running, and the device memory their KV caches hold.
    pub active_generations: usize,
    pub kv_cache_mb: f64,
}

/// Counters for `/status`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Counters {
    pub total_inferences: u64,
    pub total_tokens: u64,
    pub total_time: f64,
    pub last_inference_time: f64,
}

/// What the engine thread is doing now, for the watchdog.
#[derive(Clone, Copy, Debug)]
pub(super) struct Busy {
    pub(super) what: &'static str,
    pub(super) since: Instant,
    pub(super) deadline: Instant,
}

/// Where the service is in its life. Draining: no new work is taken and waiting
/// generations are answered `SHUTTING_DOWN`; running ones go on. Closing: the
/// shutdown deadline passed; every wait on the engine ends with `SHUTTING_DOWN` now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Serving,
    Draining,
    Closing,
}

/// Shared, readable without waiting for the queue.
pub struct EngineState {
    /// Serving, draining or closing; waits subscribe to it.
    pub(super) phase: tokio::sync::watch::Sender<Phase>,
    pub model: RwLock<ModelSnapshot>,
    /// The loaded model's tokenizer, for work that needs no device.
    pub tokenizer: RwLock<Option<Arc<Tokenizer>>>,
    pub counters: RwLock<Counters>,
    /// Requests accepted and not yet started (forwards, initializes, generations
    /// waiting for a slot).
    pub(super) waiting: AtomicUsize,
    /// Generations running.
    pub(super) running: AtomicUsize,
    /// Generations the scheduler could start now (batch places free and nothing held
    /// back by the KV pool), as of its last turn: admission takes that many beyond
    /// the queue's capacity.
    pub(super) free_places: AtomicUsize,
    /// Milliseconds since `born` at the engine loop's last turn.
    pub(super) heartbeat_ms: AtomicU64,
    pub(super) born: Instant,
    pub(super) busy: Mutex<Option<Busy>>,
    /// Loads given up on: their deadline passed.
    pub timeouts: AtomicU64,
    /// Model traversals run (decode steps and prefills), for `profile_every`.
    pub(super) traversals: AtomicU64,
    /// The scheduler's figures.
    pub sched: Mutex<SchedStats>,
}

/// What the scheduler does, for `/status` and `/metrics`.
#[derive(Clone, Debug)]
pub struct SchedStats {
    /// Generations per decode step.
    pub batch_size: Histogram,
    /// Seconds from accepting a generation to admitting it.
    pub queue_wait: Histogram,
    /// Forwards per traversal (forwards that arrive together share one).
    pub forward_batch_size: Histogram,
    pub decode_steps: u64,
    /// Of those, the steps submitted behind the one before while it ran, their
    /// tokens the ones it picked on the device (`Model::decode_chain`).
    pub chained_steps: u64,
    /// Of those, the steps that prefilled prompt chunks too (`Model::mixed_select`: a
    /// generation joining the batch without a traversal of its own).
    pub mixed_steps: u64,
    /// Seconds in decode steps (the model's step, read-back included).
    pub decode_seconds: f64,
    pub prefill_chunks: u64,
    /// Prefill traversals (each takes up to `MAX_PREFILL_PARTS` chunks) and their seconds.
    pub prefill_steps: u64,
    pub prefill_seconds: f64,
    /// Prompt tokens a prefill step takes for the loaded model (`--prefill-chunk`, or
    /// the adapter's default; 0 before a model is loaded).
    pub prefill_chunk: usize,
    /// Of the decode and prefill seconds, those the host spent recording and submitting
    /// the steps' dispatches (the rest: the device's work and the read-back).
    pub step_host_seconds: f64,
    /// Seconds the engine loop spent working (jobs taken, generations admitted,
    /// sampled, streamed and stepped); less the decode and prefill seconds, the host's
    /// share of serving.
    pub busy_seconds: f64,
    /// Tokens sampled and streamed, all generations.
    pub generated_tokens: u64,
    /// (when, tokens) of the recent engine steps, for a current tokens/s.
    pub(super) recent: VecDeque<(Instant, usize)>,
    /// Generations in the last decode step.
    pub current_batch: usize,
    pub decoding: usize,
    pub prefilling: usize,
    /// Generations accepted and waiting for a batch place or KV pages.
    pub waiting: usize,
    /// The loaded model's KV pool (zeros before a model is loaded).
    pub kv: PoolStats,
    /// Device time by (traversal kind, kernel) over the profiled traversals
    /// (`EngineOptions::profile_every`), and how many of each kind were profiled.
    pub kernels: BTreeMap<(&'static str, String), KernelTime>,
    pub profiled_steps: BTreeMap<&'static str, u64>,
}

/// Dispatches of one kernel in the profiled traversals, and their device seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct KernelTime {
    pub dispatches: u64,
    pub seconds: f64,
}

/// The window of [`SchedStats::tokens_per_second`].
pub(super) const RATE_WINDOW: Duration = Duration::from_secs(10);

impl SchedStats {
    pub(super) fn tokens(&mut self, n: usize) {
        let now = Instant::now();
        self.generated_tokens += n as u64;
        self.recent.push_back((now, n));
        while self
            .recent
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW)
        {
            self.recent.pop_front();
        }
    }

    /// Tokens generated per second over the last 10 s, all generations together.
    pub fn tokens_per_second(&self) -> f64 {
        let now = Instant::now();
        let n: usize = self
            .recent
            .iter()
            .filter(|(t, _)| now.duration_since(*t) <= RATE_WINDOW)
            .map(|(_, n)| n)
            .sum();
        n as f64 / RATE_WINDOW.as_secs_f64()
    }

    /// Add a profiled traversal of kind `step` (its dispatches' device times).
    pub(super) fn profiled(&mut self, step: &'static str, p: &profile::Profile) {
        *self.profiled_steps.entry(step).or_default() += 1;
        for d in &p.dispatches {
            let k = self.kernels.entry((step, d.kernel.clone())).or_default();
            k.dispatches += 1;
            k.seconds += d.ms / 1e3;
        }
    }
}

impl Default for SchedStats {
    fn default() -> Self {
        SchedStats {
            batch_size: Histogram::new(BATCH),
            queue_wait: Histogram::new(SECONDS),
            forward_batch_size: Histogram::new(BATCH),
            decode_steps: 0,
            chained_steps: 0,
            mixed_steps: 0,
            decode_seconds: 0.0,
            prefill_chunks: 0,
            prefill_steps: 0,
            prefill_seconds: 0.0,
            step_host_seconds: 0.0,
            prefill_chunk: 0,
            busy_seconds: 0.0,
            generated_tokens: 0,
            recent: VecDeque::new(),
            current_batch: 0,
            decoding: 0,
            prefilling: 0,
            waiting: 0,
            kv: PoolStats::default(),
            kernels: BTreeMap::new(),
            profiled_steps: BTreeMap::new(),
        }
    }
}

impl Default for EngineState {
    fn default() -> Self {
        EngineState {
            phase: tokio::sync::watch::Sender::new(Phase::Serving),
            model: RwLock::default(),
            tokenizer: RwLock::default(),
            counters: RwLock::default(),
            waiting: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            free_places: AtomicUsize::new(0),
            heartbeat_ms: AtomicU64::new(0),
            born: Instant::now(),
            busy: Mutex::new(None),
            timeouts: AtomicU64::new(0),
            traversals: AtomicU64::new(0),
            sched: Mutex::default(),
        }
    }
}

/// How long past its deadline one piece of work may run before the engine counts as
/// stalled; how long the idle loop may go without a turn.
pub(super) const STALL_GRACE: Duration = Duration::from_secs(10);
/// The idle engine loop wakes this often to look at the stop flag.
pub(super) const IDLE_TICK: Duration = Duration::from_millis(100);
/// With nothing to step but a model building, the loop looks at the build this often.
pub(super) const BUILD_TICK: Duration = Duration::from_millis(2);

impl EngineState {
    pub(super) fn beat(&self) {
        self.heartbeat_ms
            .store(self.born.elapsed().as_millis() as u64, Ordering::SeqCst);
    }

    pub(super) fn set_busy(&self, what: &'static str, deadline: Instant) {
        if let Ok(mut b) = self.busy.lock() {
            *b = Some(Busy {
                what,
                since: Instant::now(),
                deadline,
            });
        }
    }

    pub(super) fn clear_busy(&self) {
        if let Ok(mut b) = self.busy.lock() {
            *b = None;
        }
        self.beat();
    }

    /// Why the engine looks stuck, or `None` when it makes progress: one piece of
    /// work past its deadline (plus a grace), or a loop that stopped turning.
    pub fn stalled(&self) -> Option<String> {
        let now = Instant::now();
        if let Some(b) = self.busy.lock().ok().and_then(|b| *b) {
            if now > b.deadline + STALL_GRACE {
                return Some(format!(
                    "the engine has been working on one {} for {:.0} s, past its deadline",
                    b.what,
                    (now - b.since).as_secs_f64()
                ));
            }
            return None;
        }
        let since = self.seconds_since_progress();
        (since > STALL_GRACE.as_secs_f64()).then(|| {
            format!(
                "the engine loop has not turned for {since:.0} s (the engine thread may have died)"
            )
        })
    }

    /// Seconds since the engine last finished a piece of work or idled.
    pub fn seconds_since_progress(&self) -> f64 {
        let beat = Duration::from_millis(self.heartbeat_ms.load(Ordering::SeqCst));
        (self.born.elapsed().saturating_sub(beat)).as_secs_f64()
    }
}

/// The error of work ended by the shutdown.
pub fn shutting_down() -> Error {
    Error::ShuttingDown("retry on another replica or after the restart".into())
}

/// The error of work that passed its deadline.
pub(super) fn timeout_error(what: &str) -> Error {
    Error::Timeout(format!(
        "{what} did not finish within the server's deadline (--request-timeout / --load-timeout); retry later or ask for less work"
    ))
}
