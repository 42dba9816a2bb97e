//! The engine: the one thread that owns the GPU device and the model. Requests arrive
//! on a bounded queue with a oneshot reply; a full queue is refused at once (the server
//! answers 503), never a panic. An initialize builds the new model next to the old
//! one, on its own thread while the old one keeps serving, and swaps it in only when
//! the build succeeded.
//!
//! | file | its job |
//! |---|---|
//! | `mod.rs` | the handle ([`Engine`]) and the generation stream |
//! | `requests.rs` | request, reply and event types; the jobs of the engine thread |
//! | `options.rs` | how the engine is run (the server's flags) |
//! | `state.rs` | shared state: what is loaded, counters, watchdog and deadlines, scheduler statistics |
//! | `scheduler.rs` | the worker loop: admit, prefill, decode, forwards |
//! | `generation.rs` | active generations: token picking, streaming, stop strings |
//! | `load.rs` | building and publishing a model, KV pool sizing |
//! | `forwards.rs` | forwards: tokens, captures, replies |
//! | `embeddings.rs` | embeddings: tokens, shared traversals without the LM head |

mod embeddings;
mod forwards;
mod generation;
mod load;
mod options;
mod requests;
mod scheduler;
mod state;
mod steps;

pub use load::kv_pool_pages;
pub use options::{EngineOptions, PREFILL_CHUNK_CPU, PREFILL_CHUNK_GPU};
pub use requests::{
    check_stop_ids, AttentionSelect, EmbedInput, EmbedReply, FinishReason, ForwardReply,
    ForwardRequest, GenEvent, GenerateRequest, GenerateResult, LayerAttention, Prediction,
    TokenInfo,
};
pub use state::{Counters, EngineState, KernelTime, ModelSnapshot, Phase, SchedStats};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::files::FileAccess;
use crate::tokenizer::Tokenizer;

use requests::Job;
use scheduler::run;
pub use state::shutting_down;
use state::{timeout_error, STALL_GRACE};

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
        let (tx, rx) = sync_channel(capacity + options.max_batch.max(1));
        let state = Arc::new(EngineState::default());
        state.beat();
        state
            .free_places
            .store(options.max_batch.max(1), Ordering::SeqCst);
        let stop = Arc::new(AtomicBool::new(false));
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let options = Arc::new(EngineOptions {
            queue_capacity: capacity,
            max_batch: options.max_batch.max(1),
            prefill_chunk: options.prefill_chunk.map(|c| c.max(1)),
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

    /// Start draining for shutdown: new work is refused with `SHUTTING_DOWN`, the
    /// generations waiting for a place are answered so at the scheduler's next turn,
    /// the running ones go on.
    pub fn drain(&self) {
        self.state.phase.send_if_modified(|p| {
            let was = *p;
            *p = (*p).max(Phase::Draining);
            *p != was
        });
    }

    /// The shutdown deadline passed: every wait on the engine (a generation's
    /// stream, a forward, a load) ends now with `SHUTTING_DOWN`, so each client gets
    /// a last message before its connection closes.
    pub fn close(&self) {
        self.state.phase.send_replace(Phase::Closing);
    }

    /// Serving, draining or closing.
    pub fn phase(&self) -> Phase {
        *self.state.phase.borrow()
    }

    /// Changes of [`Engine::phase`], for sessions that must react to them.
    pub fn watch_phase(&self) -> watch::Receiver<Phase> {
        self.state.phase.subscribe()
    }

    /// Generations the scheduler could start at once (see `EngineState::free_places`).
    fn free_places(&self) -> usize {
        self.state.free_places.load(Ordering::SeqCst)
    }

    /// Requests accepted that wait for more than a free batch place (a burst is
    /// accepted into the free places and the queue at once, before the engine thread
    /// has started any of it): never above [`Engine::capacity`].
    pub fn queue_depth(&self) -> usize {
        self.state
            .waiting
            .load(Ordering::SeqCst)
            .saturating_sub(self.free_places())
    }

    /// The most generations taken at once: `max_batch` running + `capacity` waiting.
    pub fn admission_limit(&self) -> usize {
        self.options.max_batch + self.capacity()
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

    /// Put `job` on the queue, or refuse at once when the free batch places and the
    /// `capacity` places of the queue are taken.
    fn enqueue(&self, job: Job) -> Result<()> {
        if self.phase() != Phase::Serving {
            return Err(shutting_down());
        }
        let cap = self.capacity();
        let room = cap + self.free_places();
        let full = || {
            Error::Unavailable(format!(
                "the engine queue is full ({cap} waiting, {} running); retry shortly",
                self.running()
            ))
        };
        self.state
            .waiting
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < room).then_some(n + 1)
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
    /// the work when it reaches it), or `ShuttingDown` at the shutdown deadline.
    async fn wait<T>(
        &self,
        rx: oneshot::Receiver<Result<T>>,
        deadline: Instant,
        what: &str,
    ) -> Result<T> {
        let mut phase = self.watch_phase();
        tokio::select! {
            r = tokio::time::timeout_at(deadline.into(), rx) => match r {
                Ok(r) => r.map_err(|_| {
                    Error::Unavailable("the engine stopped before answering".into())
                })?,
                Err(_) => Err(timeout_error(what)),
            },
            _ = closing(&mut phase) => Err(shutting_down()),
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
        self.wait(rx, deadline, "loading the model").await
    }

    /// Run a forward on the loaded model.
    pub async fn forward(&self, req: ForwardRequest) -> Result<ForwardReply> {
        let deadline = self.deadline(false);
        let rx = self.submit(|tx| Job::Forward(req, deadline, tx))?;
        self.wait(rx, deadline, "the forward").await
    }

    /// The embeddings of `inputs` on the loaded model (in order; a bad input's error
    /// names its index).
    pub async fn embed(&self, inputs: Vec<EmbedInput>) -> Result<EmbedReply> {
        let deadline = self.deadline(false);
        let rx = self.submit(|tx| Job::Embed(inputs, deadline, tx))?;
        self.wait(rx, deadline, "the embeddings").await
    }

    /// Start a generation; its tokens, then its result (or an error), arrive on the
    /// returned stream. Dropping the stream cancels the generation.
    pub fn generate(&self, req: GenerateRequest) -> Result<GenStream> {
        let deadline = self.deadline(false);
        let (tx, rx) = mpsc::unbounded_channel();
        self.enqueue(Job::Generate(req, deadline, tx))?;
        Ok(GenStream {
            rx,
            deadline,
            phase: self.watch_phase(),
        })
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

    /// Build the operator's model (any checkpoint path; a relative one not found from
    /// the working directory is looked up in the models directory) outside an async
    /// runtime.
    pub fn initialize_blocking(&self, config: serde_json::Value) -> Result<ModelConfig> {
        let deadline = self.deadline(true);
        let rx = self.submit(|reply| Job::Initialize {
            config,
            access: FileAccess::Any(self.options().models_dir.clone()),
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

/// Resolves once the phase is `Closing` (never, if its sender is gone).
async fn closing(phase: &mut watch::Receiver<Phase>) {
    if phase.wait_for(|p| *p == Phase::Closing).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The events of one generation, ending with `Timeout` when its deadline passes
/// (plus a grace for the engine to say so itself), or with `ShuttingDown` at the
/// shutdown deadline.
pub struct GenStream {
    rx: mpsc::UnboundedReceiver<GenEvent>,
    deadline: Instant,
    phase: watch::Receiver<Phase>,
}

impl GenStream {
    /// The next event; `None` once the engine dropped the generation. After a final
    /// event, `None`.
    pub async fn recv(&mut self) -> Option<GenEvent> {
        let limit = self.deadline + STALL_GRACE;
        let ev = tokio::select! {
            biased; // at the deadline, the error before any token still buffered
            _ = closing(&mut self.phase) => Some(GenEvent::Error(shutting_down())),
            r = tokio::time::timeout_at(limit.into(), self.rx.recv()) => match r {
                Ok(ev) => ev,
                Err(_) => Some(GenEvent::Error(timeout_error("the generation"))),
            },
        };
        if ev.as_ref().is_some_and(GenEvent::is_final) {
            // nothing follows a final event; the engine drops the generation
            self.rx.close();
        }
        ev
    }
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
            logit_lens: 0,
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
