//! The one thread that owns the GPU device and the model. Requests arrive on a
//! bounded queue with a oneshot reply; a full queue is refused at once (the server
//! answers 503), never a panic. An initialize builds the new model next to the old
//! one and swaps it in only when the build succeeded.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::config::{DeviceChoice, ModelConfig};
use crate::error::{Error, Result};
use crate::gpu::{AdapterDetails, GpuContext, Pipelines};
use crate::model::generate::Session;
use crate::model::sampling::{Sampler, SamplingParams};
use crate::model::{resolve_config, Capture, Model};
use crate::tokenizer::Tokenizer;

/// A forward request, as the engine needs it.
#[derive(Clone, Debug)]
pub struct ForwardRequest {
    pub text: String,
    pub max_length: Option<usize>,
    pub top_k: usize,
    pub capture: bool,
}

/// A next-token prediction with its decoded text.
#[derive(Clone, Debug, Serialize)]
pub struct Prediction {
    pub token_id: u32,
    pub token: String,
    pub probability: f32,
}

/// The result of a forward.
#[derive(Clone, Debug)]
pub struct ForwardReply {
    pub tokens: usize,
    pub vocab: usize,
    pub n_embed: usize,
    pub n_head: usize,
    pub top: Vec<Prediction>,
    pub capture: Option<Capture>,
    pub seconds: f64,
    pub device_memory_mb: f64,
}

/// A text-generation request.
#[derive(Clone, Debug)]
pub struct GenerateRequest {
    pub prompt: String,
    /// Bounded by the context: at most `context_size - prompt tokens`.
    pub max_new_tokens: usize,
    pub sampling: SamplingParams,
    /// Generation ends when the text contains one of these (it is cut before it).
    pub stop: Vec<String>,
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
    },
    Complete(GenerateResult),
    Error(Error),
}

/// What is loaded, for `/status` and health.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ModelSnapshot {
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

/// Shared, readable without waiting for the queue.
#[derive(Default)]
pub struct EngineState {
    pub model: RwLock<ModelSnapshot>,
    pub counters: RwLock<Counters>,
}

enum Job {
    Initialize(serde_json::Value, oneshot::Sender<Result<ModelConfig>>),
    Forward(ForwardRequest, oneshot::Sender<Result<ForwardReply>>),
    Generate(GenerateRequest, mpsc::UnboundedSender<GenEvent>),
}

/// Handle to the engine thread; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    tx: SyncSender<Job>,
    pub state: Arc<EngineState>,
    queued: Arc<AtomicUsize>,
    capacity: usize,
}

struct Loaded {
    model: Model,
    tokenizer: Tokenizer,
    end_of_text: Option<u32>,
}

/// Generations that run at once; more wait their turn.
const MAX_ACTIVE_GENERATIONS: usize = 4;

/// Device + pipelines kept across rebuilds for the same device choice.
struct DeviceSlot {
    choice: DeviceChoice,
    ctx: Arc<GpuContext>,
    pipelines: Arc<Pipelines>,
}

impl Engine {
    /// Start the engine thread with a queue of `capacity` waiting requests.
    pub fn start(capacity: usize) -> Engine {
        let capacity = capacity.max(1);
        let (tx, rx) = sync_channel(capacity);
        let state = Arc::new(EngineState::default());
        let queued = Arc::new(AtomicUsize::new(0));
        let (s, q) = (state.clone(), queued.clone());
        std::thread::Builder::new()
            .name("wgformer-engine".into())
            .spawn(move || run(rx, s, q))
            .expect("spawn engine thread");
        Engine {
            tx,
            state,
            queued,
            capacity,
        }
    }

    /// Requests waiting or running.
    pub fn queue_depth(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    /// Maximum waiting requests.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Put `job` on the queue, or refuse at once when it is full.
    fn enqueue(&self, job: Job) -> Result<()> {
        self.queued.fetch_add(1, Ordering::SeqCst);
        self.tx.try_send(job).map_err(|e| {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            Error::Unavailable(match e {
                TrySendError::Full(_) => format!(
                    "the engine queue is full ({} waiting); retry shortly",
                    self.capacity
                ),
                TrySendError::Disconnected(_) => "the engine has stopped".into(),
            })
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

    async fn wait<T>(rx: oneshot::Receiver<Result<T>>) -> Result<T> {
        rx.await
            .map_err(|_| Error::Unavailable("the engine stopped before answering".into()))?
    }

    /// Build a model from a config object and swap it in; the old one serves on failure.
    pub async fn initialize(&self, config: serde_json::Value) -> Result<ModelConfig> {
        let rx = self.submit(|tx| Job::Initialize(config, tx))?;
        Self::wait(rx).await
    }

    /// Run a forward on the loaded model.
    pub async fn forward(&self, req: ForwardRequest) -> Result<ForwardReply> {
        let rx = self.submit(|tx| Job::Forward(req, tx))?;
        Self::wait(rx).await
    }

    /// Start a generation; its tokens, then its result (or an error), arrive on the
    /// returned channel. Dropping the receiver cancels the generation.
    pub fn generate(&self, req: GenerateRequest) -> Result<mpsc::UnboundedReceiver<GenEvent>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.enqueue(Job::Generate(req, tx))?;
        Ok(rx)
    }

    /// What is loaded (a copy; never waits for the queue).
    pub fn model_snapshot(&self) -> ModelSnapshot {
        self.state
            .model
            .read()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    /// Inference counters (a copy).
    pub fn counters(&self) -> Counters {
        self.state
            .counters
            .read()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    /// Blocking variants for code outside an async runtime.
    pub fn initialize_blocking(&self, config: serde_json::Value) -> Result<ModelConfig> {
        let rx = self.submit(|tx| Job::Initialize(config, tx))?;
        rx.blocking_recv()
            .map_err(|_| Error::Unavailable("engine stopped".into()))?
    }

    /// See [`Engine::forward`].
    pub fn forward_blocking(&self, req: ForwardRequest) -> Result<ForwardReply> {
        let rx = self.submit(|tx| Job::Forward(req, tx))?;
        rx.blocking_recv()
            .map_err(|_| Error::Unavailable("engine stopped".into()))?
    }
}

/// A generation in progress.
struct Active {
    loaded: Arc<Loaded>,
    session: Session,
    sampler: Sampler,
    req: GenerateRequest,
    prompt_tokens: usize,
    max_new: usize,
    generated: Vec<u32>,
    /// Bytes of the text already streamed.
    emitted: usize,
    logits: Vec<f32>,
    events: mpsc::UnboundedSender<GenEvent>,
    started: Instant,
    prefill_time: f64,
}

struct Worker {
    state: Arc<EngineState>,
    queued: Arc<AtomicUsize>,
    loaded: Option<Arc<Loaded>>,
    slot: Option<DeviceSlot>,
    active: Vec<Active>,
    waiting: VecDeque<(GenerateRequest, mpsc::UnboundedSender<GenEvent>)>,
}

fn run(rx: Receiver<Job>, state: Arc<EngineState>, queued: Arc<AtomicUsize>) {
    let mut w = Worker {
        state,
        queued,
        loaded: None,
        slot: None,
        active: Vec::new(),
        waiting: VecDeque::new(),
    };
    loop {
        // Fairness: with generations running, take at most one queued request between
        // rounds of generation steps; otherwise sleep until a request arrives.
        let job = if w.active.is_empty() && w.waiting.is_empty() {
            match rx.recv() {
                Ok(j) => Some(j),
                Err(_) => return,
            }
        } else {
            match rx.try_recv() {
                Ok(j) => Some(j),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => return,
            }
        };
        if let Some(job) = job {
            w.handle(job);
        }
        w.admit();
        w.step_all();
    }
}

impl Worker {
    fn done(&self) {
        self.queued.fetch_sub(1, Ordering::SeqCst);
    }

    fn handle(&mut self, job: Job) {
        match job {
            Job::Initialize(cfg, reply) => {
                let started = Instant::now();
                let r = match build(cfg, &mut self.slot) {
                    Ok(new) => {
                        let cfg = new.model.config.clone();
                        tracing::info!(params = new.model.parameter_count, adapter = %new.model.ctx.details.label(),
                            seconds = started.elapsed().as_secs_f64(), "model built");
                        // Generations in progress keep their (old) model until they end.
                        drop(self.loaded.take());
                        publish(&self.state, &new.model);
                        self.loaded = Some(Arc::new(new));
                        Ok(cfg)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "initialize failed; the previous model stays in service");
                        Err(e)
                    }
                };
                let _ = reply.send(r);
                self.done();
            }
            Job::Forward(req, reply) => {
                let r = match &self.loaded {
                    None => Err(Error::ModelNotInitialized),
                    Some(l) => forward(l, &req),
                };
                if let (Ok(out), Ok(mut c)) = (&r, self.state.counters.write()) {
                    c.total_inferences += 1;
                    c.total_tokens += out.tokens as u64;
                    c.total_time += out.seconds;
                    c.last_inference_time = out.seconds;
                }
                if let Err(e) = &r {
                    self.note_device_loss(e);
                }
                let _ = reply.send(r);
                self.done();
            }
            Job::Generate(req, events) => {
                self.waiting.push_back((req, events));
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

    /// Start waiting generations while there is room: tokenize, allocate the cache,
    /// run the prompt.
    fn admit(&mut self) {
        while self.active.len() < MAX_ACTIVE_GENERATIONS {
            let Some((req, events)) = self.waiting.pop_front() else {
                break;
            };
            if events.is_closed() {
                self.done();
                continue;
            }
            match self.start(req, events.clone()) {
                Ok(a) => self.active.push(a),
                Err(e) => {
                    let _ = events.send(GenEvent::Error(e));
                    self.done();
                }
            }
        }
        self.publish_generations();
    }

    fn start(
        &self,
        req: GenerateRequest,
        events: mpsc::UnboundedSender<GenEvent>,
    ) -> Result<Active> {
        let loaded = self.loaded.clone().ok_or(Error::ModelNotInitialized)?;
        let started = Instant::now();
        if req.prompt.is_empty() {
            return Err(Error::InvalidInput("input text must not be empty".into()));
        }
        let ids = loaded.tokenizer.encode(&req.prompt)?;
        let ctx_len = loaded.model.config.context_size;
        if ids.len() >= ctx_len {
            return Err(Error::SequenceTooLong {
                len: ids.len(),
                max: ctx_len - 1,
            });
        }
        loaded.model.check_ids(&ids)?;
        let max_new = req.max_new_tokens.min(ctx_len - ids.len()).max(1);
        let mut session = loaded.model.session(ids.len() + max_new)?;
        let logits = loaded.model.extend(&mut session, &ids)?;
        let prefill_time = started.elapsed().as_secs_f64();
        Ok(Active {
            sampler: Sampler::new(req.sampling.clone()),
            prompt_tokens: ids.len(),
            max_new,
            loaded,
            session,
            req,
            generated: Vec::new(),
            emitted: 0,
            logits,
            events,
            started,
            prefill_time,
        })
    }

    /// One token for every active generation.
    fn step_all(&mut self) {
        if self.active.is_empty() {
            return;
        }
        let mut keep = Vec::with_capacity(self.active.len());
        for mut a in std::mem::take(&mut self.active) {
            if a.events.is_closed() {
                tracing::info!(
                    tokens = a.generated.len(),
                    "generation cancelled by the client"
                );
                self.done();
                continue;
            }
            match step(&mut a) {
                Ok(None) => keep.push(a),
                Ok(Some(result)) => {
                    if let Ok(mut c) = self.state.counters.write() {
                        c.total_tokens += (result.prompt_tokens + result.tokens) as u64;
                    }
                    let _ = a.events.send(GenEvent::Complete(result));
                    self.done();
                }
                Err(e) => {
                    self.note_device_loss(&e);
                    let _ = a.events.send(GenEvent::Error(e));
                    self.done();
                }
            }
        }
        self.active = keep;
        self.publish_generations();
    }

    fn publish_generations(&self) {
        if let Ok(mut m) = self.state.model.write() {
            m.active_generations = self.active.len();
            m.kv_cache_mb = self
                .active
                .iter()
                .map(|a| a.session.cache.bytes())
                .sum::<u64>() as f64
                / (1u64 << 20) as f64;
        }
    }
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

/// Sample one token, stream it, and either finish or run it through the model.
fn step(a: &mut Active) -> Result<Option<GenerateResult>> {
    let next = a.sampler.sample(&a.logits);
    a.generated.push(next);
    let tok = &a.loaded.tokenizer;
    let text = tok.decode(&a.generated)?;
    let stop_at = a
        .req
        .stop
        .iter()
        .filter_map(|s| text.find(s.as_str()))
        .min();
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
    // The final text drops a stop string (and what follows) and the end-of-text token.
    let final_text = match (stop_at, eot) {
        (Some(i), _) => text[..i].to_string(),
        (None, true) => tok.decode(&a.generated[..a.generated.len() - 1])?,
        _ => text.clone(),
    };
    let show = if finish.is_some() {
        final_text.len().max(a.emitted)
    } else {
        showable(&text, &a.req.stop)
    };
    let piece = if show > a.emitted {
        final_text
            .get(a.emitted..show)
            .or_else(|| text.get(a.emitted..show))
            .unwrap_or("")
            .to_string()
    } else {
        String::new()
    };
    a.emitted = a.emitted.max(show);
    let _ = a.events.send(GenEvent::Token {
        index: a.generated.len() - 1,
        token_id: next,
        text: piece,
    });
    if let Some(reason) = finish {
        let elapsed = a.started.elapsed().as_secs_f64();
        let decode_time = (elapsed - a.prefill_time).max(1e-9);
        return Ok(Some(GenerateResult {
            text: final_text,
            tokens: a.generated.len(),
            token_ids: a.generated.clone(),
            prompt_tokens: a.prompt_tokens,
            finish_reason: reason,
            processing_time: elapsed,
            prefill_time: a.prefill_time,
            decode_tokens_per_second: (a.generated.len().saturating_sub(1)) as f64 / decode_time,
        }));
    }
    a.logits = a.loaded.model.extend(&mut a.session, &[next])?;
    Ok(None)
}

fn publish(state: &EngineState, m: &Model) {
    if let Ok(mut s) = state.model.write() {
        *s = ModelSnapshot {
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

fn build(cfg: serde_json::Value, slot: &mut Option<DeviceSlot>) -> Result<Loaded> {
    let (config, checkpoint) = resolve_config(cfg)?;
    let tokenizer = Tokenizer::load(config.tokenizer.as_deref())?;
    let reuse = slot
        .as_ref()
        .is_some_and(|s| s.choice == config.device && !s.ctx.is_lost());
    if !reuse {
        let ctx = Arc::new(GpuContext::new(&config.device)?);
        let pipelines = Arc::new(Pipelines::new(&ctx)?);
        *slot = Some(DeviceSlot {
            choice: config.device.clone(),
            ctx,
            pipelines,
        });
    }
    let s = slot
        .as_ref()
        .ok_or_else(|| Error::NoAdapter("no device".into()))?;
    let model = Model::build(config, checkpoint, s.ctx.clone(), s.pipelines.clone())?;
    let end_of_text = tokenizer.token_id("<|endoftext|>");
    Ok(Loaded {
        model,
        tokenizer,
        end_of_text,
    })
}

fn forward(l: &Loaded, req: &ForwardRequest) -> Result<ForwardReply> {
    if req.text.is_empty() {
        return Err(Error::InvalidInput("input text must not be empty".into()));
    }
    let mut ids = l.tokenizer.encode(&req.text)?;
    if let Some(n) = req.max_length {
        ids.truncate(n);
    }
    let out = l.model.forward(&ids, req.top_k, req.capture)?;
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
        vocab: out.vocab,
        n_embed: l.model.config.n_embed,
        n_head: l.model.config.n_head,
        top,
        capture: out.capture,
        seconds: out.seconds,
        device_memory_mb: l.model.device_bytes as f64 / (1u64 << 20) as f64,
    })
}
