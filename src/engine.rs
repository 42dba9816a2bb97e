//! The one thread that owns the GPU device and the model. Requests arrive on a
//! bounded queue with a oneshot reply; a full queue is refused at once (the server
//! answers 503), never a panic. An initialize builds the new model next to the old
//! one and swaps it in only when the build succeeded.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use serde::Serialize;
use tokio::sync::oneshot;

use crate::config::{DeviceChoice, ModelConfig};
use crate::error::{Error, Result};
use crate::gpu::{AdapterDetails, GpuContext, Pipelines};
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

/// What is loaded, for `/status` and health.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ModelSnapshot {
    pub config: Option<ModelConfig>,
    pub adapter: Option<AdapterDetails>,
    pub total_parameters: usize,
    pub model_size_mb: f64,
    pub device_memory_mb: f64,
    pub device_lost: bool,
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
}

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

    fn submit<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T>>) -> Job,
    ) -> Result<oneshot::Receiver<Result<T>>> {
        let (tx, rx) = oneshot::channel();
        self.queued.fetch_add(1, Ordering::SeqCst);
        match self.tx.try_send(make(tx)) {
            Ok(()) => Ok(rx),
            Err(e) => {
                self.queued.fetch_sub(1, Ordering::SeqCst);
                Err(Error::Unavailable(match e {
                    TrySendError::Full(_) => format!(
                        "the engine queue is full ({} waiting); retry shortly",
                        self.capacity
                    ),
                    TrySendError::Disconnected(_) => "the engine has stopped".into(),
                }))
            }
        }
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

fn run(rx: Receiver<Job>, state: Arc<EngineState>, queued: Arc<AtomicUsize>) {
    let mut loaded: Option<Loaded> = None;
    let mut slot: Option<DeviceSlot> = None;
    while let Ok(job) = rx.recv() {
        match job {
            Job::Initialize(cfg, reply) => {
                let started = Instant::now();
                let r = build(cfg, &mut slot);
                let r = match r {
                    Ok(new) => {
                        let cfg = new.model.config.clone();
                        tracing::info!(params = new.model.parameter_count, adapter = %new.model.ctx.details.label(),
                            seconds = started.elapsed().as_secs_f64(), "model built");
                        // Drop the old model first, then publish the new one.
                        drop(loaded.take());
                        publish(&state, &new.model);
                        loaded = Some(new);
                        Ok(cfg)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "initialize failed; the previous model stays in service");
                        Err(e)
                    }
                };
                let _ = reply.send(r);
            }
            Job::Forward(req, reply) => {
                let r = match &loaded {
                    None => Err(Error::ModelNotInitialized),
                    Some(l) => forward(l, &req),
                };
                if let (Ok(out), Ok(mut c)) = (&r, state.counters.write()) {
                    c.total_inferences += 1;
                    c.total_tokens += out.tokens as u64;
                    c.total_time += out.seconds;
                    c.last_inference_time = out.seconds;
                }
                if let (Some(l), Err(Error::DeviceLost(_))) = (&loaded, &r) {
                    if let Ok(mut m) = state.model.write() {
                        m.device_lost = l.model.ctx.is_lost();
                    }
                }
                let _ = reply.send(r);
            }
        }
        queued.fetch_sub(1, Ordering::SeqCst);
    }
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
    Ok(Loaded { model, tokenizer })
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
