//! The one thread that owns the GPU device and the model. Requests arrive on a
//! bounded queue with a oneshot reply; a full queue is refused at once (the server
//! answers 503), never a panic. An initialize builds the new model next to the old
//! one and swaps it in only when the build succeeded.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::config::{DeviceChoice, ModelConfig};
use crate::error::{Error, Result};
use crate::files::FileAccess;
use crate::gpu::{profile, AdapterDetails, GpuContext, Pipelines};
use crate::model::forward::MAX_PREFILL_PARTS;
use crate::model::kv_pool::{page_bytes, PoolStats, SeqKv, PAGE};
use crate::model::sampling::{token_logprob, Sampler, SamplingParams, TokenLogprob};
use crate::model::{
    resolve_config_with, Capture, CapturedForward, Model, NextToken, Readback, ServeShape,
};
use crate::stats::{Histogram, BATCH, SECONDS};
use crate::tokenizer::{TextStream, Tokenizer};

/// A forward request, as the engine needs it.
#[derive(Clone, Debug)]
pub struct ForwardRequest {
    pub text: String,
    pub max_length: Option<usize>,
    pub top_k: usize,
    pub capture: bool,
    /// The attention weights to return (implies `capture`).
    pub attention: Option<AttentionSelect>,
    /// Return the logit lens, `top_k` tokens per layer and position (implies `capture`).
    pub logit_lens: bool,
}

/// Which attention weights a forward returns: layers and heads (`None`: all), each in
/// the order asked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AttentionSelect {
    pub layers: Option<Vec<usize>>,
    pub heads: Option<Vec<usize>>,
}

impl AttentionSelect {
    /// The layers asked for, all `n_layer` when none were named.
    pub fn layers(&self, n_layer: usize) -> Vec<usize> {
        self.layers
            .clone()
            .unwrap_or_else(|| (0..n_layer).collect())
    }

    /// The heads asked for, all `n_head` when none were named.
    pub fn heads(&self, n_head: usize) -> Vec<usize> {
        self.heads.clone().unwrap_or_else(|| (0..n_head).collect())
    }
}

/// The attention weights of one layer: `weights[i]` is head `heads[i]`'s
/// `[query][key]` matrix.
#[derive(Clone, Debug)]
pub struct LayerAttention {
    pub layer: usize,
    pub heads: Vec<usize>,
    pub weights: Vec<Vec<Vec<f32>>>,
}

/// A next-token prediction with its decoded text.
#[derive(Clone, Debug, Serialize)]
pub struct Prediction {
    pub token_id: u32,
    pub token: String,
    pub probability: f32,
}

/// A token of a forward's text: its id, its text, and the bytes `start .. end` of the
/// request's text it came from.
#[derive(Clone, Debug, Serialize)]
pub struct TokenInfo {
    pub id: u32,
    pub text: String,
    pub start: usize,
    pub end: usize,
}

/// The result of a forward.
#[derive(Clone, Debug)]
pub struct ForwardReply {
    pub tokens: usize,
    /// The tokens of the text that went through the model.
    pub token_list: Vec<TokenInfo>,
    pub vocab: usize,
    pub n_embed: usize,
    pub n_head: usize,
    pub top: Vec<Prediction>,
    pub capture: Option<Capture>,
    /// With `capture_attention`: the chosen layers' weights.
    pub attention: Vec<LayerAttention>,
    /// Block-sparse models with `capture_attention`: for each query block of the
    /// text, the key blocks it attends to.
    pub listed_blocks: Option<Vec<Vec<usize>>>,
    /// With `logit_lens`: `[layer][position]` the most likely tokens, best first.
    pub logit_lens: Option<Vec<Vec<Vec<Prediction>>>>,
    pub seconds: f64,
    pub device_memory_mb: f64,
}

/// A text-generation request.
#[derive(Clone, Debug)]
pub struct GenerateRequest {
    pub prompt: String,
    /// The prompt as token ids (then `prompt` is ignored).
    pub prompt_ids: Option<Vec<u32>>,
    /// Bounded by the context: at most `context_size - prompt tokens`; 0 runs the
    /// prompt only (scoring with `prompt_logprobs`).
    pub max_new_tokens: usize,
    pub sampling: SamplingParams,
    /// Generation ends when the text contains one of these (it is cut before it).
    pub stop: Vec<String>,
    /// Each token's logprob with this many alternatives (`None`: no logprobs).
    pub logprobs: Option<usize>,
    /// Send [`GenEvent::Prompt`] first, with the prompt tokens' logprobs and this many
    /// alternatives each (`None`: no such event).
    pub prompt_logprobs: Option<usize>,
}

impl GenerateRequest {
    /// A request for `prompt` with these parameters and no logprobs.
    pub fn new(
        prompt: String,
        max_new_tokens: usize,
        sampling: SamplingParams,
        stop: Vec<String>,
    ) -> Self {
        GenerateRequest {
            prompt,
            prompt_ids: None,
            max_new_tokens,
            sampling,
            stop,
            logprobs: None,
            prompt_logprobs: None,
        }
    }
}

/// Why a generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// max_new_tokens (or the context) reached.
    Length,
    /// A stop string appeared.
    Stop,
    /// The model produced its end-of-text token.
    EndOfText,
}

/// The whole result of a generation.
#[derive(Clone, Debug, Serialize)]
pub struct GenerateResult {
    pub text: String,
    /// Tokens generated.
    pub tokens: usize,
    pub token_ids: Vec<u32>,
    pub prompt_tokens: usize,
    pub finish_reason: FinishReason,
    /// Seconds from admission to the last token.
    pub processing_time: f64,
    /// Seconds of the prompt pass (prefill).
    pub prefill_time: f64,
    /// Generated tokens per second after the prefill.
    pub decode_tokens_per_second: f64,
}

/// What a generation streams back.
#[derive(Debug)]
pub enum GenEvent {
    /// One generated token and the text it completes (may be empty while a
    /// multi-byte character or a possible stop string is still open).
    Token {
        index: usize,
        token_id: u32,
        text: String,
        /// When the request asked for logprobs.
        logprob: Option<TokenLogprob>,
    },
    /// Before the first token, when the request asked for `prompt_logprobs`: the
    /// prompt's ids and, for each but the first, its logprob given those before it.
    Prompt {
        ids: Vec<u32>,
        logprobs: Vec<Option<TokenLogprob>>,
    },
    Complete(GenerateResult),
    Error(Error),
}

impl GenEvent {
    /// `Complete` or `Error`: nothing follows.
    pub fn is_final(&self) -> bool {
        matches!(self, GenEvent::Complete(_) | GenEvent::Error(_))
    }
}

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
struct Busy {
    what: &'static str,
    since: Instant,
    deadline: Instant,
}

/// Shared, readable without waiting for the queue.
pub struct EngineState {
    pub model: RwLock<ModelSnapshot>,
    /// The loaded model's tokenizer, for work that needs no device.
    pub tokenizer: RwLock<Option<Arc<Tokenizer>>>,
    pub counters: RwLock<Counters>,
    /// Requests accepted and not yet started (forwards, initializes, generations
    /// waiting for a slot).
    waiting: AtomicUsize,
    /// Generations running.
    running: AtomicUsize,
    /// Milliseconds since `born` at the engine loop's last turn.
    heartbeat_ms: AtomicU64,
    born: Instant,
    busy: Mutex<Option<Busy>>,
    /// Loads given up on: their deadline passed.
    pub timeouts: AtomicU64,
    /// Model traversals run (decode steps and prefills), for `profile_every`.
    traversals: AtomicU64,
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
    /// Seconds in decode steps (the model's step, read-back included).
    pub decode_seconds: f64,
    pub prefill_chunks: u64,
    /// Prefill traversals (each takes up to `MAX_PREFILL_PARTS` chunks) and their seconds.
    pub prefill_steps: u64,
    pub prefill_seconds: f64,
    /// Seconds the engine loop spent working (jobs taken, generations admitted,
    /// sampled, streamed and stepped); less the decode and prefill seconds, the host's
    /// share of serving.
    pub busy_seconds: f64,
    /// Tokens sampled and streamed, all generations.
    pub generated_tokens: u64,
    /// (when, tokens) of the recent engine steps, for a current tokens/s.
    recent: VecDeque<(Instant, usize)>,
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
const RATE_WINDOW: Duration = Duration::from_secs(10);

impl SchedStats {
    fn tokens(&mut self, n: usize) {
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
    fn profiled(&mut self, step: &'static str, p: &profile::Profile) {
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
            decode_seconds: 0.0,
            prefill_chunks: 0,
            prefill_steps: 0,
            prefill_seconds: 0.0,
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
            model: RwLock::default(),
            tokenizer: RwLock::default(),
            counters: RwLock::default(),
            waiting: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
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
const STALL_GRACE: Duration = Duration::from_secs(10);
/// The idle engine loop wakes this often to look at the stop flag.
const IDLE_TICK: Duration = Duration::from_millis(100);

impl EngineState {
    fn beat(&self) {
        self.heartbeat_ms
            .store(self.born.elapsed().as_millis() as u64, Ordering::SeqCst);
    }

    fn set_busy(&self, what: &'static str, deadline: Instant) {
        if let Ok(mut b) = self.busy.lock() {
            *b = Some(Busy {
                what,
                since: Instant::now(),
                deadline,
            });
        }
    }

    fn clear_busy(&self) {
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

enum Job {
    Initialize {
        config: serde_json::Value,
        access: FileAccess,
        deadline: Instant,
        reply: oneshot::Sender<Result<ModelConfig>>,
    },
    Forward(
        ForwardRequest,
        Instant,
        oneshot::Sender<Result<ForwardReply>>,
    ),
    Generate(GenerateRequest, Instant, mpsc::UnboundedSender<GenEvent>),
}

/// How the engine is run (the server's flags).
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Requests that may wait; more are refused at once.
    pub queue_capacity: usize,
    /// Device memory a model may need (`None`: what the adapter reports).
    pub max_model_bytes: Option<u64>,
    /// Where client configs may name checkpoints and tokenizers (`None`: nowhere).
    pub models_dir: Option<PathBuf>,
    /// Deadline of a forward or a generation, from the moment it is queued.
    pub request_timeout: Duration,
    /// Deadline of building a model.
    pub load_timeout: Duration,
    /// Most generations admitted at once, all of which share each decode step.
    pub max_batch: usize,
    /// Device bytes of the paged KV cache (`None`: a share of the memory budget, see
    /// [`kv_pool_pages`]).
    pub kv_pool_bytes: Option<u64>,
    /// Prompt tokens prefilled per engine step, between decode steps (one long
    /// prompt in chunks of this, or several short ones).
    pub prefill_chunk: usize,
    /// Time every dispatch of one model traversal (decode step or prefill) in this
    /// many with device timestamps (`gpu::profile`) and add the kernels' device time to
    /// the scheduler's figures (`/metrics`); 0: never. Adapters without timestamps
    /// inside passes are not profiled.
    pub profile_every: u64,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            queue_capacity: 64,
            max_model_bytes: None,
            models_dir: None,
            request_timeout: Duration::from_secs(120),
            load_timeout: Duration::from_secs(600),
            max_batch: 16,
            kv_pool_bytes: None,
            prefill_chunk: 256,
            profile_every: 0,
        }
    }
}

/// Stops and joins the engine thread when the last [`Engine`] handle goes, so the
/// device is torn down on that thread before the process exits.
struct Lifetime {
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
    finished: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

impl Lifetime {
    /// Ask the thread to stop and wait up to `limit` for it; true when it ended.
    fn stop(&self, limit: Duration) -> bool {
        self.stop.store(true, Ordering::SeqCst);
        let ended = match self.finished.lock().ok().and_then(|mut f| f.take()) {
            Some(rx) => !matches!(rx.recv_timeout(limit), Err(RecvTimeoutError::Timeout)),
            None => true,
        };
        if ended {
            if let Some(h) = self.thread.lock().ok().and_then(|mut t| t.take()) {
                let _ = h.join();
            }
        }
        ended
    }
}

impl Drop for Lifetime {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(60));
    }
}

/// Handle to the engine thread; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    tx: SyncSender<Job>,
    pub state: Arc<EngineState>,
    options: Arc<EngineOptions>,
    access: FileAccess,
    lifetime: Arc<Lifetime>,
}

struct Loaded {
    model: Model,
    tokenizer: Arc<Tokenizer>,
    end_of_text: Option<u32>,
}

/// Device + pipelines kept across rebuilds for the same device choice.
struct DeviceSlot {
    choice: DeviceChoice,
    ctx: Arc<GpuContext>,
    pipelines: Arc<Pipelines>,
}

impl Engine {
    /// Start the engine thread with a queue of `capacity` waiting requests and the
    /// default options.
    pub fn start(capacity: usize) -> Engine {
        Self::with_options(EngineOptions {
            queue_capacity: capacity,
            ..EngineOptions::default()
        })
        .expect("default engine options")
    }

    /// Start the engine thread. Fails when the models directory cannot be opened.
    pub fn with_options(options: EngineOptions) -> std::io::Result<Engine> {
        let capacity = options.queue_capacity.max(1);
        let access = FileAccess::models_dir(options.models_dir.as_deref())?;
        // Admission is counted in `waiting`; the channel only needs room for that many.
        let (tx, rx) = sync_channel(capacity);
        let state = Arc::new(EngineState::default());
        state.beat();
        let stop = Arc::new(AtomicBool::new(false));
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let options = Arc::new(EngineOptions {
            queue_capacity: capacity,
            max_batch: options.max_batch.max(1),
            prefill_chunk: options.prefill_chunk.max(1),
            ..options
        });
        let (s, st, o) = (state.clone(), stop.clone(), options.clone());
        let thread = std::thread::Builder::new()
            .name("wgformer-engine".into())
            .spawn(move || {
                run(rx, s, st, o);
                let _ = done_tx.send(());
            })?;
        Ok(Engine {
            tx,
            state,
            options,
            access,
            lifetime: Arc::new(Lifetime {
                stop,
                thread: Mutex::new(Some(thread)),
                finished: Mutex::new(Some(done_rx)),
            }),
        })
    }

    /// Stop the engine: the work in hand ends, the device is dropped on the engine
    /// thread. Waits up to `limit`; false when the thread did not end in time.
    pub fn shutdown(&self, limit: Duration) -> bool {
        self.lifetime.stop(limit)
    }

    /// Requests accepted and not yet started.
    pub fn queue_depth(&self) -> usize {
        self.state.waiting.load(Ordering::SeqCst)
    }

    /// Generations running now.
    pub fn running(&self) -> usize {
        self.state.running.load(Ordering::SeqCst)
    }

    /// The scheduler's figures now.
    pub fn sched(&self) -> SchedStats {
        match self.state.sched.lock() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Maximum waiting requests.
    pub fn capacity(&self) -> usize {
        self.options.queue_capacity
    }

    /// The options the engine runs with.
    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// Put `job` on the queue, or refuse at once when `capacity` requests wait.
    fn enqueue(&self, job: Job) -> Result<()> {
        let cap = self.capacity();
        let full = || {
            Error::Unavailable(format!(
                "the engine queue is full ({cap} waiting); retry shortly"
            ))
        };
        self.state
            .waiting
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < cap).then_some(n + 1)
            })
            .map_err(|_| full())?;
        self.tx.try_send(job).map_err(|e| {
            self.state.waiting.fetch_sub(1, Ordering::SeqCst);
            match e {
                TrySendError::Full(_) => full(),
                TrySendError::Disconnected(_) => {
                    Error::Unavailable("the engine has stopped".into())
                }
            }
        })
    }

    fn submit<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T>>) -> Job,
    ) -> Result<oneshot::Receiver<Result<T>>> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(make(tx))?;
        Ok(rx)
    }

    /// The answer, or `Timeout` when `deadline` passes first (the engine then drops
    /// the work when it reaches it).
    async fn wait<T>(rx: oneshot::Receiver<Result<T>>, deadline: Instant, what: &str) -> Result<T> {
        match tokio::time::timeout_at(deadline.into(), rx).await {
            Ok(r) => {
                r.map_err(|_| Error::Unavailable("the engine stopped before answering".into()))?
            }
            Err(_) => Err(timeout_error(what)),
        }
    }

    fn deadline(&self, load: bool) -> Instant {
        Instant::now()
            + if load {
                self.options.load_timeout
            } else {
                self.options.request_timeout
            }
    }

    /// Build a model from a client's config object and swap it in; the old one serves
    /// on failure. Checkpoints and tokenizers come from the models directory only.
    pub async fn initialize(&self, config: serde_json::Value) -> Result<ModelConfig> {
        let deadline = self.deadline(true);
        let access = self.access.clone();
        let rx = self.submit(|reply| Job::Initialize {
            config,
            access,
            deadline,
            reply,
        })?;
        Self::wait(rx, deadline, "loading the model").await
    }

    /// Run a forward on the loaded model.
    pub async fn forward(&self, req: ForwardRequest) -> Result<ForwardReply> {
        let deadline = self.deadline(false);
        let rx = self.submit(|tx| Job::Forward(req, deadline, tx))?;
        Self::wait(rx, deadline, "the forward").await
    }

    /// Start a generation; its tokens, then its result (or an error), arrive on the
    /// returned stream. Dropping the stream cancels the generation.
    pub fn generate(&self, req: GenerateRequest) -> Result<GenStream> {
        let deadline = self.deadline(false);
        let (tx, rx) = mpsc::unbounded_channel();
        self.enqueue(Job::Generate(req, deadline, tx))?;
        Ok(GenStream { rx, deadline })
    }

    /// What is loaded (a copy; never waits for the queue).
    pub fn model_snapshot(&self) -> ModelSnapshot {
        self.state
            .model
            .read()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    /// The loaded model's tokenizer (no queue: tokenizing needs no device).
    pub fn tokenizer(&self) -> Option<Arc<Tokenizer>> {
        self.state.tokenizer.read().ok().and_then(|t| t.clone())
    }

    /// Inference counters (a copy).
    pub fn counters(&self) -> Counters {
        self.state
            .counters
            .read()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    /// Build the operator's model (any checkpoint path) outside an async runtime.
    pub fn initialize_blocking(&self, config: serde_json::Value) -> Result<ModelConfig> {
        let deadline = self.deadline(true);
        let rx = self.submit(|reply| Job::Initialize {
            config,
            access: FileAccess::Any,
            deadline,
            reply,
        })?;
        rx.blocking_recv()
            .map_err(|_| Error::Unavailable("engine stopped".into()))?
    }

    /// See [`Engine::forward`].
    pub fn forward_blocking(&self, req: ForwardRequest) -> Result<ForwardReply> {
        let deadline = self.deadline(false);
        let rx = self.submit(|tx| Job::Forward(req, deadline, tx))?;
        rx.blocking_recv()
            .map_err(|_| Error::Unavailable("engine stopped".into()))?
    }
}

fn timeout_error(what: &str) -> Error {
    Error::Timeout(format!(
        "{what} did not finish within the server's deadline (--request-timeout / --load-timeout); retry later or ask for less work"
    ))
}

/// The events of one generation, ending with `Timeout` when its deadline passes
/// (plus a grace for the engine to say so itself).
pub struct GenStream {
    rx: mpsc::UnboundedReceiver<GenEvent>,
    deadline: Instant,
}

impl GenStream {
    /// The next event; `None` once the engine dropped the generation.
    pub async fn recv(&mut self) -> Option<GenEvent> {
        let limit = self.deadline + STALL_GRACE;
        match tokio::time::timeout_at(limit.into(), self.rx.recv()).await {
            Ok(ev) => ev,
            Err(_) => Some(GenEvent::Error(timeout_error("the generation"))),
        }
    }
}

/// A generation admitted: its prompt is being prefilled (chunk by chunk) or it
/// decodes, one token per engine step, in the batch of every decoding generation.
struct Active {
    loaded: Arc<Loaded>,
    kv: SeqKv,
    sampler: Sampler,
    req: GenerateRequest,
    /// The prompt; `prefilled` of it are in the KV cache.
    prompt: Vec<u32>,
    prefilled: usize,
    max_new: usize,
    generated: Vec<u32>,
    /// Bytes of the text already streamed.
    emitted: usize,
    /// The generated tokens' text, decoded a token at a time.
    text: TextStream,
    /// Bytes of that text already searched for stop strings.
    searched: usize,
    /// Logits after the last token in the cache to sample from, or for a greedy row
    /// the token the device picked (None while the prompt is prefilled, or while the
    /// sampled token waits for its decode step).
    next_from: Option<NextToken>,
    /// The token picked from `next_from` (and its logprob when asked), before it is
    /// streamed (`pick_tokens` does the rows of a step together).
    picked: Option<(u32, Option<TokenLogprob>)>,
    /// The token sampled and streamed, to run through the model next step.
    next: Option<u32>,
    events: mpsc::UnboundedSender<GenEvent>,
    started: Instant,
    prefill_time: f64,
    deadline: Instant,
}

/// A generation accepted and waiting for a slot (a batch place and KV pages).
struct Waiting {
    req: GenerateRequest,
    deadline: Instant,
    events: mpsc::UnboundedSender<GenEvent>,
    queued: Instant,
    /// The prompt tokenized and checked (kept while the pool is full).
    prompt: Option<Vec<u32>>,
}

struct Worker {
    state: Arc<EngineState>,
    options: Arc<EngineOptions>,
    loaded: Option<Arc<Loaded>>,
    slot: Option<DeviceSlot>,
    active: Vec<Active>,
    waiting: VecDeque<Waiting>,
}

/// Run one model traversal `f` of kind `step`; every `every`-th one (0: never) with
/// each dispatch timed, its kernels' device time added to the scheduler's figures.
/// Profiling never fails the traversal: timestamps that cannot be read are skipped.
fn traverse<T>(
    state: &EngineState,
    every: u64,
    ctx: &GpuContext,
    step: &'static str,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let seen = state.traversals.fetch_add(1, Ordering::Relaxed);
    if every == 0 || !seen.is_multiple_of(every) || !profile::available(ctx) {
        return f();
    }
    let (value, p) = profile::profile(ctx, f)?;
    if let Ok(mut s) = state.sched.lock() {
        s.profiled(step, &p);
    }
    Ok(value)
}

fn run(
    rx: Receiver<Job>,
    state: Arc<EngineState>,
    stop: Arc<AtomicBool>,
    options: Arc<EngineOptions>,
) {
    let mut w = Worker {
        state,
        options,
        loaded: None,
        slot: None,
        active: Vec::new(),
        waiting: VecDeque::new(),
    };
    while !stop.load(Ordering::SeqCst) {
        w.state.beat();
        // With generations running, do not wait for requests between steps; otherwise
        // wait (a tick at a time) for one.
        let idle = w.active.is_empty() && w.waiting.is_empty();
        let job = match rx.recv_timeout(if idle { IDLE_TICK } else { Duration::ZERO }) {
            Ok(j) => Some(j),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let busy = (job.is_some() || !idle).then(Instant::now);
        if let Some(job) = job {
            // Generations only join the waiting line: take all that arrived, so they
            // start in the same step. Forwards that arrived together run together
            // (sharing traversals); at most one group of forwards or one load between
            // steps.
            let mut forwards = Vec::new();
            let mut next = Some(job);
            while let Some(job) = next.take() {
                match job {
                    Job::Generate(..) => w.handle(job),
                    Job::Forward(req, deadline, reply) => forwards.push((req, deadline, reply)),
                    other => {
                        w.forwards(std::mem::take(&mut forwards));
                        w.handle(other);
                        break;
                    }
                }
                next = rx.try_recv().ok();
            }
            w.forwards(forwards);
        }
        w.admit();
        w.step();
        if let Some(t) = busy {
            if let Ok(mut s) = w.state.sched.lock() {
                s.busy_seconds += t.elapsed().as_secs_f64();
            }
        }
        if w.active.is_empty() && !w.waiting.is_empty() {
            // the pool is held by nothing and still refuses: wait for a job rather than spin
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    w.teardown();
}

impl Worker {
    /// A request that waited has started (or was answered).
    fn started(&self) {
        self.state.waiting.fetch_sub(1, Ordering::SeqCst);
    }

    /// End every generation, wait for the device, then drop the models and the
    /// device here, on the engine thread, before the process exits.
    fn teardown(&mut self) {
        let stopping = || Error::Unavailable("the service is shutting down".into());
        for a in self.active.drain(..) {
            let _ = a.events.send(GenEvent::Error(stopping()));
        }
        for wt in self.waiting.drain(..) {
            let _ = wt.events.send(GenEvent::Error(stopping()));
        }
        if let Some(s) = &self.slot {
            let _ = s.ctx.wait_idle();
        }
        drop(self.loaded.take());
        drop(self.slot.take());
        tracing::info!("engine stopped; device released");
    }

    fn handle(&mut self, job: Job) {
        match job {
            Job::Initialize {
                config,
                access,
                deadline,
                reply,
            } => {
                self.started();
                if Instant::now() > deadline || reply.is_closed() {
                    let _ = reply.send(Err(timeout_error("loading the model")));
                    return;
                }
                self.state.set_busy("model load", deadline);
                let started = Instant::now();
                let built = build(config, &access, &self.options, &mut self.slot);
                self.state.clear_busy();
                let built = match built {
                    Ok(_) if Instant::now() > deadline => {
                        // The caller was answered TIMEOUT; do not swap in behind its back.
                        self.state.timeouts.fetch_add(1, Ordering::SeqCst);
                        Err(timeout_error("loading the model"))
                    }
                    other => other,
                };
                let r = match built {
                    Ok(new) => {
                        let cfg = new.model.config.clone();
                        tracing::info!(params = new.model.parameter_count, adapter = %new.model.ctx.details.label(),
                            kv_pool_pages = new.model.kv.pages, max_batch = new.model.max_batch,
                            seconds = started.elapsed().as_secs_f64(), "model built");
                        // Generations in progress keep their (old) model until they end.
                        drop(self.loaded.take());
                        publish(&self.state, &new);
                        self.loaded = Some(Arc::new(new));
                        Ok(cfg)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "initialize failed; the previous model stays in service");
                        Err(e)
                    }
                };
                let _ = reply.send(r);
                self.publish_generations();
            }
            Job::Forward(req, deadline, reply) => self.forwards(vec![(req, deadline, reply)]),
            Job::Generate(req, deadline, events) => {
                self.waiting.push_back(Waiting {
                    req,
                    deadline,
                    events,
                    queued: Instant::now(),
                    prompt: None,
                });
            }
        }
    }

    /// Forwards that arrived together: those without statistics share traversals
    /// (up to `MAX_PREFILL_PARTS` texts and the context's tokens each), the others run
    /// alone. Every reply is the forward's own (the same numbers as alone).
    fn forwards(&mut self, jobs: Vec<QueuedForward>) {
        if jobs.is_empty() {
            return;
        }
        let mut live = Vec::with_capacity(jobs.len());
        for (req, deadline, reply) in jobs {
            self.started();
            if Instant::now() > deadline || reply.is_closed() {
                let _ = reply.send(Err(timeout_error("the forward")));
            } else {
                live.push((req, deadline, reply));
            }
        }
        let Some(l) = self.loaded.clone() else {
            for (_, _, reply) in live {
                let _ = reply.send(Err(Error::ModelNotInitialized));
            }
            return;
        };
        // tokenize; a text that fails answers at once
        let mut ready: Vec<TokenizedForward> = Vec::with_capacity(live.len());
        for job in live {
            match forward_tokens(&l, &job.0) {
                Ok(tokens) => ready.push(TokenizedForward {
                    ids: tokens.iter().map(|t| t.id).collect(),
                    tokens,
                    job,
                }),
                Err(e) => {
                    let _ = job.2.send(Err(e));
                }
            }
        }
        let (shared, single): (Vec<_>, Vec<_>) = ready.into_iter().partition(|f| f.job.0.shared());
        let mut groups: Vec<Vec<TokenizedForward>> = single.into_iter().map(|f| vec![f]).collect();
        let context = l.model.config.context_size;
        for f in shared {
            let fits = groups.last().is_some_and(|g| {
                g[0].job.0.shared()
                    && g.len() < MAX_PREFILL_PARTS
                    && g.iter().map(|f| f.ids.len()).sum::<usize>() + f.ids.len() <= context
            });
            match groups.last_mut() {
                Some(g) if fits => g.push(f),
                _ => groups.push(vec![f]),
            }
        }
        for group in groups {
            let deadline = group
                .iter()
                .map(|f| f.job.1)
                .max()
                .unwrap_or_else(Instant::now);
            self.state.set_busy("forward", deadline);
            let results = if let [f] = group.as_slice() {
                vec![forward_alone(&l, &f.ids, &f.job.0)]
            } else {
                let batch: Vec<(&[u32], usize)> = group
                    .iter()
                    .map(|f| (f.ids.as_slice(), f.job.0.top_k))
                    .collect();
                match l.model.forward_many(&batch) {
                    Ok(outs) => outs
                        .into_iter()
                        .map(|output| {
                            Ok(CapturedForward {
                                output,
                                attention: Vec::new(),
                                logit_lens: Vec::new(),
                            })
                        })
                        .collect(),
                    Err(e) => group.iter().map(|_| Err(e.duplicate())).collect(),
                }
            };
            self.state.clear_busy();
            if let Ok(mut s) = self.state.sched.lock() {
                s.forward_batch_size.observe(group.len() as f64);
            }
            for (f, out) in group.into_iter().zip(results) {
                let r = out.and_then(|o| forward_reply(&l, o, f.tokens, &f.job.0));
                if let (Ok(out), Ok(mut c)) = (&r, self.state.counters.write()) {
                    c.total_inferences += 1;
                    c.total_tokens += out.tokens as u64;
                    c.total_time += out.seconds;
                    c.last_inference_time = out.seconds;
                }
                if let Err(e) = &r {
                    self.note_device_loss(e);
                }
                let _ = f.job.2.send(r);
            }
        }
    }

    fn note_device_loss(&self, e: &Error) {
        if let (Some(l), Error::DeviceLost(_)) = (&self.loaded, e) {
            if let Ok(mut m) = self.state.model.write() {
                m.device_lost = l.model.ctx.is_lost();
            }
        }
    }

    /// Admit waiting generations, first come first served, while the batch has room
    /// and the KV pool can promise their pages; the first that does not fit waits
    /// (and those behind it) until generations end.
    fn admit(&mut self) {
        while let Some(wt) = self.waiting.front_mut() {
            if wt.events.is_closed() {
                self.waiting.pop_front();
                self.started();
                continue;
            }
            if Instant::now() > wt.deadline {
                let _ = wt
                    .events
                    .send(GenEvent::Error(timeout_error("the generation")));
                self.waiting.pop_front();
                self.started();
                continue;
            }
            let Some(loaded) = self.loaded.clone() else {
                let _ = wt.events.send(GenEvent::Error(Error::ModelNotInitialized));
                self.waiting.pop_front();
                self.started();
                continue;
            };
            if self.active.len() >= loaded.model.max_batch {
                break;
            }
            let prompt = match wt.prompt.take() {
                Some(p) => Ok(p),
                None => prompt_ids(&loaded, &wt.req),
            };
            let reserved = prompt.and_then(|ids| {
                let max_new = wt
                    .req
                    .max_new_tokens
                    .min(loaded.model.config.context_size - ids.len());
                let kv = loaded.model.kv_reserve(ids.len() + max_new)?;
                Ok((ids, max_new, kv))
            });
            let (ids, max_new, kv) = match reserved {
                Err(e) => {
                    let _ = wt.events.send(GenEvent::Error(e));
                    self.waiting.pop_front();
                    self.started();
                    continue;
                }
                Ok((ids, _, None)) => {
                    // the pool cannot promise the pages yet: wait for generations to end
                    wt.prompt = Some(ids);
                    break;
                }
                Ok((ids, max_new, Some(kv))) => (ids, max_new, kv),
            };
            let Some(wt) = self.waiting.pop_front() else {
                break;
            };
            self.started();
            if let Ok(mut s) = self.state.sched.lock() {
                s.queue_wait.observe(wt.queued.elapsed().as_secs_f64());
            }
            self.state.set_busy("generation prefill", wt.deadline);
            let r = self.start(
                loaded,
                wt.req,
                ids,
                max_new,
                kv,
                wt.deadline,
                wt.events.clone(),
            );
            self.state.clear_busy();
            match r {
                Ok(a) => self.active.push(a),
                Err(e) => {
                    let _ = wt.events.send(GenEvent::Error(e));
                }
            }
        }
        self.publish_generations();
    }

    #[allow(clippy::too_many_arguments)]
    fn start(
        &self,
        loaded: Arc<Loaded>,
        req: GenerateRequest,
        ids: Vec<u32>,
        max_new: usize,
        kv: SeqKv,
        deadline: Instant,
        events: mpsc::UnboundedSender<GenEvent>,
    ) -> Result<Active> {
        if let Some(k) = req.prompt_logprobs {
            let v = loaded.model.config.vocab_size;
            let logits = loaded.model.forward_logits(&ids)?;
            let mut lps = vec![None];
            lps.extend(
                (1..ids.len()).map(|i| Some(token_logprob(&logits[(i - 1) * v..i * v], ids[i], k))),
            );
            let _ = events.send(GenEvent::Prompt {
                ids: ids.clone(),
                logprobs: lps,
            });
        }
        Ok(Active {
            sampler: Sampler::new(req.sampling.clone()),
            max_new,
            loaded,
            kv,
            req,
            prompt: ids,
            prefilled: 0,
            generated: Vec::new(),
            emitted: 0,
            text: TextStream::default(),
            searched: 0,
            next_from: None,
            picked: None,
            next: None,
            events,
            started: Instant::now(),
            prefill_time: 0.0,
            deadline,
        })
    }

    /// One engine step: every generation with logits samples and streams its next
    /// token; then one prefill traversal (chunks of the oldest prompts still
    /// prefilling); then the decoding generations run their tokens through the model
    /// together (one batch per model). Prefill first: a prompt admitted between steps
    /// is prefilled before the running batch's next decode step, not after it, so a
    /// generation joining a batch waits for one traversal less; the running ones do the
    /// same work in the same rotation (a prefill between two of their decode steps).
    fn step(&mut self) {
        if self.active.is_empty() {
            return;
        }
        // sample (the rows with logits in parallel), stream, finish
        pick_tokens(&mut self.active);
        let mut keep = Vec::with_capacity(self.active.len());
        let mut sampled = 0;
        for mut a in std::mem::take(&mut self.active) {
            if a.events.is_closed() {
                tracing::info!(
                    tokens = a.generated.len(),
                    "generation cancelled by the client"
                );
                continue;
            }
            if Instant::now() > a.deadline {
                tracing::warn!(tokens = a.generated.len(), "generation past its deadline");
                let _ = a
                    .events
                    .send(GenEvent::Error(timeout_error("the generation")));
                continue;
            }
            let before = a.generated.len();
            let r = sample(&mut a);
            sampled += a.generated.len() - before;
            match r {
                Ok(None) => keep.push(a),
                Ok(Some(result)) => self.finish(&a, result),
                Err(e) => {
                    let _ = a.events.send(GenEvent::Error(e));
                }
            }
        }
        self.active = keep;
        if sampled > 0 {
            if let Ok(mut s) = self.state.sched.lock() {
                s.tokens(sampled);
            }
        }
        self.prefill();
        self.decode();
        self.state
            .running
            .store(self.active.len(), Ordering::SeqCst);
        self.publish_generations();
    }

    fn finish(&self, a: &Active, result: GenerateResult) {
        if let Ok(mut c) = self.state.counters.write() {
            c.total_tokens += (result.prompt_tokens + result.tokens) as u64;
        }
        let _ = a.events.send(GenEvent::Complete(result));
    }

    /// The batched decode step(s): every generation holding a sampled token.
    fn decode(&mut self) {
        let mut ready: Vec<usize> = (0..self.active.len())
            .filter(|&i| self.active[i].next.is_some())
            .collect();
        let mut failed: Vec<(usize, Error)> = Vec::new();
        while let Some(&first) = ready.first() {
            // one batch per model (a reload leaves running generations on the old one)
            let model = self.active[first].loaded.clone();
            let cap = model.model.max_batch;
            let (batch, rest): (Vec<usize>, Vec<usize>) = ready
                .iter()
                .partition(|&&i| Arc::ptr_eq(&self.active[i].loaded, &model));
            ready = rest;
            for group in batch.chunks(cap) {
                let deadline = group
                    .iter()
                    .map(|&i| self.active[i].deadline)
                    .max()
                    .unwrap_or_else(Instant::now);
                self.state.set_busy("decode step", deadline);
                let started = Instant::now();
                let mut rows: Vec<(&mut SeqKv, u32)> = Vec::with_capacity(group.len());
                let mut picked: Vec<&mut Active> = self
                    .active
                    .iter_mut()
                    .enumerate()
                    .filter(|(i, _)| group.contains(i))
                    .map(|(_, a)| a)
                    .collect();
                let want: Vec<Readback> = picked.iter().map(|a| a.readback()).collect();
                for a in picked.iter_mut() {
                    let id = a.next.unwrap_or(0);
                    rows.push((&mut a.kv, id));
                }
                let (every, ctx) = (self.options.profile_every, &model.model.ctx);
                let r = traverse(&self.state, every, ctx, "decode", || {
                    model.model.decode_select(&mut rows, &want)
                });
                drop(rows);
                self.state.clear_busy();
                match r {
                    Ok(logits) => {
                        for (a, l) in picked.iter_mut().zip(logits) {
                            a.next = None;
                            a.next_from = Some(l);
                        }
                        if let Ok(mut s) = self.state.sched.lock() {
                            s.batch_size.observe(group.len() as f64);
                            s.decode_steps += 1;
                            s.decode_seconds += started.elapsed().as_secs_f64();
                            s.current_batch = group.len();
                        }
                    }
                    Err(e) => {
                        self.note_device_loss(&e);
                        failed.extend(group.iter().map(|&i| (i, e.duplicate())));
                    }
                }
            }
        }
        self.drop_failed(failed);
    }

    /// Prefill prompts, oldest first, up to `prefill_chunk` tokens in all this step (a
    /// long prompt takes several steps; several short ones share one traversal, up to
    /// `MAX_PREFILL_PARTS` of one model).
    fn prefill(&mut self) {
        let Some(first) = self
            .active
            .iter()
            .position(|a| a.prefilled < a.prompt.len())
        else {
            return;
        };
        let model = self.active[first].loaded.clone();
        // a step's rows live in activations sized for the model's context
        let mut budget = self
            .options
            .prefill_chunk
            .min(model.model.config.context_size)
            .max(1);
        // (index, end of this chunk)
        let mut picked: Vec<(usize, usize)> = Vec::new();
        for (i, a) in self.active.iter().enumerate() {
            if budget == 0 || picked.len() == MAX_PREFILL_PARTS {
                break;
            }
            if a.prefilled < a.prompt.len() && Arc::ptr_eq(&a.loaded, &model) {
                let end = (a.prefilled + budget).min(a.prompt.len());
                budget -= end - a.prefilled;
                picked.push((i, end));
            }
        }
        let deadline = picked
            .iter()
            .map(|&(i, _)| self.active[i].deadline)
            .max()
            .unwrap_or_else(Instant::now);
        self.state.set_busy("generation prefill", deadline);
        let started = Instant::now();
        let mut parts: Vec<(&mut SeqKv, &[u32], Option<Readback>)> =
            Vec::with_capacity(picked.len());
        for (i, a) in self.active.iter_mut().enumerate() {
            if let Some(&(_, end)) = picked.iter().find(|(j, _)| *j == i) {
                // the prompt's last chunk reads what its first token needs
                let want = (end == a.prompt.len()).then(|| a.readback());
                parts.push((&mut a.kv, &a.prompt[a.prefilled..end], want));
            }
        }
        let (every, ctx) = (self.options.profile_every, &model.model.ctx);
        let r = traverse(&self.state, every, ctx, "prefill", || {
            model.model.prefill_select(&mut parts)
        });
        drop(parts);
        self.state.clear_busy();
        let seconds = started.elapsed().as_secs_f64();
        match r {
            Ok(logits) => {
                for (&(i, end), l) in picked.iter().zip(logits) {
                    let a = &mut self.active[i];
                    a.prefilled = end;
                    a.prefill_time += seconds;
                    if end == a.prompt.len() {
                        a.next_from = l;
                    }
                }
                if let Ok(mut s) = self.state.sched.lock() {
                    s.prefill_chunks += picked.len() as u64;
                    s.prefill_steps += 1;
                    s.prefill_seconds += seconds;
                }
            }
            Err(e) => {
                self.note_device_loss(&e);
                self.drop_failed(picked.iter().map(|&(i, _)| (i, e.duplicate())).collect());
            }
        }
    }

    /// End the generations at these indices with their errors.
    fn drop_failed(&mut self, mut failed: Vec<(usize, Error)>) {
        failed.sort_by_key(|(i, _)| std::cmp::Reverse(*i));
        for (i, e) in failed {
            let a = self.active.remove(i);
            let _ = a.events.send(GenEvent::Error(e));
        }
    }

    fn publish_generations(&self) {
        let kv = self
            .loaded
            .as_ref()
            .map_or_else(PoolStats::default, |l| l.model.kv.stats());
        let decoding = self
            .active
            .iter()
            .filter(|a| a.prefilled == a.prompt.len())
            .count();
        if let Ok(mut m) = self.state.model.write() {
            m.active_generations = self.active.len();
            m.kv_cache_mb =
                (kv.used as u64 * kv.bytes / kv.pages.max(1) as u64) as f64 / (1u64 << 20) as f64;
        }
        if let Ok(mut s) = self.state.sched.lock() {
            s.kv = kv;
            s.decoding = decoding;
            s.prefilling = self.active.len() - decoding;
            s.waiting = self.waiting.len();
            if decoding == 0 {
                s.current_batch = 0;
            }
        }
    }
}

/// The prompt's token ids, checked against the model (not empty, room for a token).
fn prompt_ids(loaded: &Loaded, req: &GenerateRequest) -> Result<Vec<u32>> {
    let ids = match &req.prompt_ids {
        Some(ids) => ids.clone(),
        None => loaded.tokenizer.encode(&req.prompt)?,
    };
    if ids.is_empty() {
        return Err(Error::InvalidInput("input text must not be empty".into()));
    }
    let ctx_len = loaded.model.config.context_size;
    if ids.len() >= ctx_len {
        return Err(Error::SequenceTooLong {
            len: ids.len(),
            max: ctx_len - 1,
        });
    }
    loaded.model.check_ids(&ids)?;
    Ok(ids)
}

/// The byte length of the longest prefix of `text` that may be shown: it must not end
/// inside an unfinished character (U+FFFD from a split byte sequence) and must hold
/// back what could still become the start of a stop string.
fn showable(text: &str, stop: &[String]) -> usize {
    let mut end = text.len();
    if text.ends_with('\u{FFFD}') {
        end -= '\u{FFFD}'.len_utf8();
    }
    for s in stop {
        for k in (1..s.len()).rev() {
            if end >= k
                && text.is_char_boundary(end - k)
                && s.as_bytes().starts_with(&text.as_bytes()[end - k..end])
            {
                end -= k;
                break;
            }
        }
    }
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    end
}

impl Active {
    /// What its next step (its prompt's last chunk, or a decode step) reads back: only
    /// the device's argmax for a greedy generation without logprobs on a model that
    /// picks it there, else the logits.
    fn readback(&self) -> Readback {
        let greedy = self.req.sampling.temperature <= 0.0 && self.req.logprobs.is_none();
        if greedy && self.loaded.model.argmax_on_device {
            Readback::Argmax
        } else {
            Readback::Logits
        }
    }

    /// Pick the next token from `next_from` (sampling from the logits, or the device's
    /// argmax) into `picked`, unless there is nothing to pick or no token is wanted.
    fn pick(&mut self) {
        if self.picked.is_some() || self.max_new == 0 {
            return;
        }
        self.picked = match self.next_from.take() {
            Some(NextToken::Logits(logits)) => {
                let next = self.sampler.sample(&logits);
                let logprob = self.req.logprobs.map(|k| token_logprob(&logits, next, k));
                Some((next, logprob))
            }
            // a greedy row without logprobs (`Active::readback`)
            Some(NextToken::Argmax(id)) => Some((id, None)),
            None => None,
        };
    }

    fn result(&self, text: String, finish_reason: FinishReason) -> GenerateResult {
        let elapsed = self.started.elapsed().as_secs_f64();
        let decode_time = (elapsed - self.prefill_time).max(1e-9);
        GenerateResult {
            text,
            tokens: self.generated.len(),
            token_ids: self.generated.clone(),
            prompt_tokens: self.prompt.len(),
            finish_reason,
            processing_time: elapsed,
            prefill_time: self.prefill_time,
            decode_tokens_per_second: (self.generated.len().saturating_sub(1)) as f64 / decode_time,
        }
    }
}

/// Pick the next token of every generation holding logits, on up to one thread per
/// core: sampling and logprobs take ~0.2-0.8 ms of host time a row over a 50k
/// vocabulary, which for a batch of sampled rows on a GPU is as long as its decode
/// step. Each row has its own sampler and random stream, so the tokens do not depend on
/// the threads.
fn pick_tokens(active: &mut [Active]) {
    let mut rows: Vec<&mut Active> = active
        .iter_mut()
        .filter(|a| a.max_new > 0 && matches!(a.next_from, Some(NextToken::Logits(_))))
        .collect();
    // the cores, asked once (the standard library reads the cgroup's quota each time)
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let threads = cores.min(rows.len());
    if threads <= 1 {
        rows.iter_mut().for_each(|a| a.pick());
        return;
    }
    let per = rows.len().div_ceil(threads);
    std::thread::scope(|s| {
        let mut chunks = rows.chunks_mut(per);
        let here = chunks.next();
        for chunk in chunks {
            s.spawn(move || chunk.iter_mut().for_each(|a| a.pick()));
        }
        // the first share on this thread, while the others run
        here.into_iter().flatten().for_each(|a| a.pick());
    });
}

/// With logits in hand: sample one token, stream it, and either finish or queue it
/// for the next decode step.
fn sample(a: &mut Active) -> Result<Option<GenerateResult>> {
    if a.max_new == 0 {
        return Ok(a
            .next_from
            .take()
            .map(|_| a.result(String::new(), FinishReason::Length)));
    }
    a.pick();
    let Some((next, logprob)) = a.picked.take() else {
        return Ok(None);
    };
    a.generated.push(next);
    let loaded = a.loaded.clone();
    let tok = &loaded.tokenizer;
    tok.stream_step(&mut a.text, &a.generated)?;
    let text = a.text.text();
    // stop strings: only the text new since the last search (and the bytes before it
    // a stop string could start in) is searched
    let stop_at = a
        .req
        .stop
        .iter()
        .filter_map(|s| {
            let mut from = a.searched.saturating_sub(s.len().saturating_sub(1));
            while !text.is_char_boundary(from) {
                from -= 1;
            }
            text[from..].find(s.as_str()).map(|i| from + i)
        })
        .min();
    a.searched = text.len();
    let eot = a.loaded.end_of_text == Some(next);
    let finish = if stop_at.is_some() {
        Some(FinishReason::Stop)
    } else if eot {
        Some(FinishReason::EndOfText)
    } else if a.generated.len() >= a.max_new {
        Some(FinishReason::Length)
    } else {
        None
    };
    // The final text drops a stop string (and what follows) and the end-of-text token;
    // it holds every token's bytes (a character left incomplete as U+FFFD).
    let (show, piece, final_text) = if finish.is_some() {
        let final_text = match (stop_at, eot) {
            (Some(i), _) => text[..i].to_string(),
            (None, true) => tok.decode(&a.generated[..a.generated.len() - 1])?,
            _ => tok.stream_finish(&a.text)?,
        };
        let show = final_text.len().max(a.emitted);
        let piece = final_text.get(a.emitted..show).unwrap_or("").to_string();
        (show, piece, final_text)
    } else {
        let show = showable(text, &a.req.stop);
        let piece = text
            .get(a.emitted..show.max(a.emitted))
            .unwrap_or("")
            .to_string();
        (show, piece, String::new())
    };
    a.emitted = a.emitted.max(show);
    let _ = a.events.send(GenEvent::Token {
        index: a.generated.len() - 1,
        token_id: next,
        text: piece,
        logprob,
    });
    if let Some(reason) = finish {
        return Ok(Some(a.result(final_text, reason)));
    }
    a.next = Some(next);
    Ok(None)
}

fn publish(state: &EngineState, l: &Loaded) {
    let m = &l.model;
    if let Ok(mut t) = state.tokenizer.write() {
        *t = Some(l.tokenizer.clone());
    }
    let model_id = m
        .config
        .checkpoint
        .as_deref()
        .and_then(|c| std::path::Path::new(c).file_stem())
        .map_or_else(
            || "wgformer".to_string(),
            |s| s.to_string_lossy().into_owned(),
        );
    if let Ok(mut s) = state.model.write() {
        *s = ModelSnapshot {
            model_id,
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            config: Some(m.config.clone()),
            adapter: Some(m.ctx.details.clone()),
            total_parameters: m.parameter_count,
            model_size_mb: m.parameter_bytes as f64 / (1u64 << 20) as f64,
            device_memory_mb: m.device_bytes as f64 / (1u64 << 20) as f64,
            device_lost: false,
            active_generations: s.active_generations,
            kv_cache_mb: s.kv_cache_mb,
        };
    }
}

/// Build a model: open (or reuse) the device, check the config's memory against the
/// budget before anything is allocated, read the files it names under `access`.
fn build(
    value: serde_json::Value,
    access: &FileAccess,
    options: &EngineOptions,
    slot: &mut Option<DeviceSlot>,
) -> Result<Loaded> {
    if !value.is_object() {
        return Err(Error::Config(
            "config must be a JSON object of config keys".into(),
        ));
    }
    let device: DeviceChoice = match value.get("device") {
        None | Some(serde_json::Value::Null) => DeviceChoice::Auto,
        Some(d) => {
            serde_json::from_value(d.clone()).map_err(|e| Error::Config(format!("device: {e}")))?
        }
    };
    let reuse = slot
        .as_ref()
        .is_some_and(|s| s.choice == device && !s.ctx.is_lost());
    if !reuse {
        let ctx = Arc::new(GpuContext::new(&device)?);
        let pipelines = Arc::new(Pipelines::new(&ctx)?);
        *slot = Some(DeviceSlot {
            choice: device,
            ctx,
            pipelines,
        });
    }
    let s = slot
        .as_ref()
        .ok_or_else(|| Error::NoAdapter("no device".into()))?;
    let budget = options
        .max_model_bytes
        .unwrap_or_else(|| s.ctx.default_memory_budget());
    let (config, checkpoint) = resolve_config_with(value, access, budget)?;
    let pages = kv_pool_pages(&config, options, budget);
    config
        .memory_estimate(pages as u128 * page_bytes(config.n_layer, config.n_embed) as u128)
        .check(budget)?;
    let shape = ServeShape {
        kv_pages: pages,
        max_batch: options.max_batch,
    };
    let tokenizer = match config.tokenizer.as_deref() {
        None => Tokenizer::gpt2()?,
        Some(name) => {
            let path = access.resolve("tokenizer", name)?;
            let bytes = access.read("tokenizer", name, &path, budget.min(MAX_TOKENIZER_BYTES))?;
            Tokenizer::from_bytes(&bytes, name)?
        }
    };
    let model = Model::build_with(
        config,
        checkpoint,
        s.ctx.clone(),
        s.pipelines.clone(),
        shape,
    )?;
    let end_of_text = tokenizer.token_id("<|endoftext|>");
    Ok(Loaded {
        model,
        tokenizer: Arc::new(tokenizer),
        end_of_text,
    })
}

/// Pages of the KV pool for `config`: `--kv-pool-bytes` when set; else room for
/// `max_batch` full-context generations, but at most half of what the budget leaves
/// after the weights and activations, and at least one full-context generation.
pub fn kv_pool_pages(config: &ModelConfig, options: &EngineOptions, budget: u64) -> usize {
    let per_page = page_bytes(config.n_layer, config.n_embed).max(1) as u128;
    let full = config.context_size.div_ceil(PAGE) as u128;
    let pages = match options.kv_pool_bytes {
        Some(b) => b as u128 / per_page,
        None => {
            let e = config.memory_estimate(0);
            let left = (budget as u128).saturating_sub(e.weights + e.activations);
            (options.max_batch as u128 * full)
                .min(left / 2 / per_page)
                .max(full)
        }
    };
    pages.clamp(1, u32::MAX as u128) as usize
}

/// Largest tokenizer.json read (GPT-2's is 2 MB; the largest public ones ~30 MB).
const MAX_TOKENIZER_BYTES: u64 = 256 << 20;

/// A forward waiting in the engine: the request, its deadline, where the reply goes.
type QueuedForward = (
    ForwardRequest,
    Instant,
    oneshot::Sender<Result<ForwardReply>>,
);

/// A forward with its text tokenized.
struct TokenizedForward {
    ids: Vec<u32>,
    tokens: Vec<TokenInfo>,
    job: QueuedForward,
}

/// The tokens of a forward's text (truncated to `max_length`).
fn forward_tokens(l: &Loaded, req: &ForwardRequest) -> Result<Vec<TokenInfo>> {
    if req.text.is_empty() {
        return Err(Error::InvalidInput("input text must not be empty".into()));
    }
    let spans = l.tokenizer.encode_spans(&req.text)?;
    let n = req.max_length.map_or(spans.len(), |n| n.min(spans.len()));
    (0..n)
        .map(|i| {
            let s = spans[i];
            // its own bytes: the text's; a character byte-level BPE split over several
            // tokens gives each of them the character's range (shared with a
            // neighbour), so such a token's own text is decoded
            let shared = (i > 0 && spans[i - 1].end > s.start)
                || spans.get(i + 1).is_some_and(|next| next.start < s.end);
            let text = match req.text.get(s.start..s.end) {
                Some(t) if !shared => t.to_string(),
                _ => l.tokenizer.decode(&[s.id])?,
            };
            Ok(TokenInfo {
                id: s.id,
                text,
                start: s.start,
                end: s.end,
            })
        })
        .collect()
}

impl ForwardRequest {
    /// Whether it may share a traversal with other forwards (no statistics asked).
    fn shared(&self) -> bool {
        !self.capture && self.attention.is_none() && !self.logit_lens
    }
}

/// A forward run alone: with statistics, the chosen layers' attention weights
/// (`[NH, T, T]` each) and the logit lens when asked.
fn forward_alone(l: &Loaded, ids: &[u32], req: &ForwardRequest) -> Result<CapturedForward> {
    if req.shared() {
        return Ok(CapturedForward {
            output: l.model.forward(ids, req.top_k, false)?,
            attention: Vec::new(),
            logit_lens: Vec::new(),
        });
    }
    let cfg = &l.model.config;
    let lens_k = if req.logit_lens { req.top_k.max(1) } else { 0 };
    let sel = req.attention.as_ref();
    if let Some(&h) = sel
        .and_then(|s| s.heads.as_ref())
        .into_iter()
        .flatten()
        .find(|&&h| h >= cfg.n_head)
    {
        return Err(Error::InvalidInput(format!(
            "capture_attention head {h} does not exist (the model has {} heads, 0..{})",
            cfg.n_head,
            cfg.n_head - 1
        )));
    }
    let layers = sel.map_or_else(Vec::new, |s| s.layers(cfg.n_layer));
    l.model.forward_captured(ids, req.top_k, &layers, lens_k)
}

/// The reply of a forward from the model's output, the tokens that went in and the
/// attention weights asked for (`[NH, T, T]` per chosen layer).
fn forward_reply(
    l: &Loaded,
    captured: CapturedForward,
    token_list: Vec<TokenInfo>,
    req: &ForwardRequest,
) -> Result<ForwardReply> {
    let CapturedForward {
        output: out,
        attention: weights,
        logit_lens,
    } = captured;
    let cfg = &l.model.config;
    let predictions = |tops: &[crate::model::TokenProb]| -> Result<Vec<Prediction>> {
        tops.iter()
            .map(|p| {
                Ok(Prediction {
                    token_id: p.token_id,
                    token: l.tokenizer.decode(&[p.token_id])?,
                    probability: p.probability,
                })
            })
            .collect()
    };
    let logit_lens = if req.logit_lens {
        Some(
            logit_lens
                .iter()
                .map(|layer| {
                    layer
                        .iter()
                        .map(|pos| predictions(pos))
                        .collect::<Result<Vec<_>>>()
                })
                .collect::<Result<Vec<_>>>()?,
        )
    } else {
        None
    };
    let t = out.tokens;
    let attention = match &req.attention {
        None => Vec::new(),
        Some(sel) => {
            let heads = sel.heads(cfg.n_head);
            sel.layers(cfg.n_layer)
                .into_iter()
                .zip(&weights)
                .map(|(layer, w)| LayerAttention {
                    layer,
                    heads: heads.clone(),
                    weights: heads
                        .iter()
                        .map(|&h| {
                            (0..t)
                                .map(|q| w[(h * t + q) * t..(h * t + q + 1) * t].to_vec())
                                .collect()
                        })
                        .collect(),
                })
                .collect()
        }
    };
    let listed_blocks = match (&req.attention, &l.model.sparse) {
        (Some(_), Some(sp)) => {
            let b = sp.layout.block;
            Some(
                (0..t.div_ceil(b))
                    .map(|qb| {
                        (0..=qb)
                            .filter(|&kb| sp.layout.allows(qb * b, kb * b))
                            .collect()
                    })
                    .collect(),
            )
        }
        _ => None,
    };
    let top = out
        .top
        .iter()
        .map(|p| {
            Ok(Prediction {
                token_id: p.token_id,
                token: l.tokenizer.decode(&[p.token_id])?,
                probability: p.probability,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(ForwardReply {
        tokens: out.tokens,
        token_list,
        vocab: out.vocab,
        n_embed: l.model.config.n_embed,
        n_head: l.model.config.n_head,
        top,
        capture: out.capture,
        attention,
        listed_blocks,
        logit_lens,
        seconds: out.seconds,
        device_memory_mb: l.model.device_bytes as f64 / (1u64 << 20) as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_flags_work_past_its_deadline_and_a_dead_loop() {
        let s = EngineState::default();
        s.beat();
        assert!(s.stalled().is_none());
        s.set_busy("forward", Instant::now() + Duration::from_secs(5));
        assert!(s.stalled().is_none(), "within its deadline");
        s.set_busy(
            "forward",
            Instant::now() - STALL_GRACE - Duration::from_secs(1),
        );
        assert!(s.stalled().unwrap().contains("forward"));
        s.clear_busy();
        assert!(s.stalled().is_none());
        // a loop that stopped turning a minute ago
        let old = EngineState {
            born: Instant::now() - Duration::from_secs(60),
            ..EngineState::default()
        };
        assert!(old.stalled().unwrap().contains("not turned"));
        assert!(old.seconds_since_progress() >= 59.0);
    }

    #[test]
    fn the_queue_refuses_past_capacity_and_the_thread_joins() {
        let e = Engine::start(2);
        let cfg = || ForwardRequest {
            attention: None,
            logit_lens: false,
            text: "x".into(),
            max_length: None,
            top_k: 1,
            capture: false,
        };
        // no model: each forward is answered at once; depth never passes capacity
        for _ in 0..4 {
            let _ = e.forward_blocking(cfg());
            assert!(e.queue_depth() <= e.capacity());
        }
        assert!(e.shutdown(Duration::from_secs(10)));
        assert!(matches!(
            e.forward_blocking(cfg()),
            Err(Error::Unavailable(_))
        ));
    }
}
