//! The worker loop on the engine thread: take jobs, build and swap models, admit
//! waiting generations, run forwards, and give the generations their turn (the steps:
//! `steps.rs`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::forwards::{
    forward_alone, forward_reply, forward_tokens, QueuedForward, TokenizedForward,
};
use super::generation::{prompt_ids, Active, Waiting};
use super::load::{build, publish, DeviceSlot, Loaded};
use super::options::EngineOptions;
use super::requests::GenEvent;
use super::requests::Job;
use super::state::{shutting_down, timeout_error};
use super::state::{EngineState, Phase, BUILD_TICK, IDLE_TICK};
use crate::error::{Error, Result};
use crate::gpu::{profile, GpuContext};
use crate::model::kv_pool::{PoolStats, SeqKv, PAGE};
use crate::model::sampling::{token_logprob, Sampler};
use crate::model::MAX_PREFILL_PARTS;
use crate::model::{CapturedForward, PendingStep};
use crate::tokenizer::TextStream;

pub(super) struct Worker {
    pub(super) state: Arc<EngineState>,
    pub(super) options: Arc<EngineOptions>,
    pub(super) loaded: Option<Arc<Loaded>>,
    pub(super) slot: Option<DeviceSlot>,
    pub(super) active: Vec<Active>,
    pub(super) waiting: VecDeque<Waiting>,
    /// The model being built beside the one serving, and the loads waiting for it.
    pub(super) building: Option<Building>,
    pub(super) loads: VecDeque<Load>,
    /// The decode step submitted and not yet read back, if any.
    pub(super) in_flight: Option<InFlight>,
    /// Generations started (their serials).
    pub(super) started_generations: u64,
    /// When the last decode step was read back: a step's seconds run from its
    /// submission or that, the later (steps in flight overlap).
    pub(super) last_landed: Instant,
}

/// A decode step on the device, its tokens not yet read: the model, its rows (the
/// generations' serials, in order), when it was submitted, the host's seconds
/// recording and submitting it, and whether it was chained to the step before.
pub(super) struct InFlight {
    pub(super) step: PendingStep,
    pub(super) model: Arc<Loaded>,
    pub(super) rows: Vec<u64>,
    pub(super) deadline: Instant,
    pub(super) started: Instant,
    pub(super) host: f64,
    pub(super) chained: bool,
}

impl InFlight {
    /// A step submitted (not chained) for the generations `rows`, in its rows' order.
    pub(super) fn new(
        step: PendingStep,
        model: &Arc<Loaded>,
        rows: Vec<u64>,
        (deadline, started): (Instant, Instant),
        host: f64,
    ) -> Self {
        InFlight {
            step,
            model: model.clone(),
            rows,
            deadline,
            started,
            host,
            chained: false,
        }
    }
}

/// An initialize: its config, where its files may come from, its deadline and reply.
pub(super) struct Load {
    config: serde_json::Value,
    access: crate::files::FileAccess,
    deadline: Instant,
    reply: tokio::sync::oneshot::Sender<Result<crate::config::ModelConfig>>,
}

/// A build running on its own thread while the engine keeps serving the old model
/// (streams keep flowing); its result is swapped in at a turn of the loop.
pub(super) struct Building {
    result: Receiver<(Result<Loaded>, Option<DeviceSlot>)>,
    deadline: Instant,
    reply: tokio::sync::oneshot::Sender<Result<crate::config::ModelConfig>>,
    started: Instant,
}

/// Run one model traversal `f` of kind `step`; every `every`-th one (0: never) with
/// each dispatch timed, its kernels' device time added to the scheduler's figures.
/// Profiling never fails the traversal: timestamps that cannot be read are skipped.
pub(super) fn traverse<T>(
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

pub(super) fn run(
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
        building: None,
        loads: VecDeque::new(),
        in_flight: None,
        started_generations: 0,
        last_landed: Instant::now(),
    };
    while !stop.load(Ordering::SeqCst) {
        w.state.beat();
        // With generations running, do not wait for requests between steps; otherwise
        // wait (a tick at a time) for one.
        let idle = w.active.is_empty() && w.waiting.is_empty() && w.in_flight.is_none();
        let wait = match (idle, w.building.is_some()) {
            (false, _) => Duration::ZERO,
            (true, true) => BUILD_TICK, // nothing to step: look at the build often
            (true, false) => IDLE_TICK,
        };
        let job = match rx.recv_timeout(wait) {
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
        w.finish_build();
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
    pub(super) fn started(&self) {
        self.state.waiting.fetch_sub(1, Ordering::SeqCst);
    }

    /// End every generation, wait for the device, then drop the models and the
    /// device here, on the engine thread, before the process exits.
    pub(super) fn teardown(&mut self) {
        // a build in progress finishes (its device handles are dropped here, on the
        // engine thread); its caller and those waiting to load hear the service stops
        if let Some(b) = self.building.take() {
            let _ = b.result.recv_timeout(Duration::from_secs(60));
            let _ = b.reply.send(Err(shutting_down()));
        }
        for l in self.loads.drain(..) {
            let _ = l.reply.send(Err(shutting_down()));
        }
        drop(self.in_flight.take());
        for a in self.active.drain(..) {
            let _ = a.events.send(GenEvent::Error(shutting_down()));
        }
        for wt in self.waiting.drain(..) {
            let _ = wt.events.send(GenEvent::Error(shutting_down()));
        }
        if let Some(s) = &self.slot {
            let _ = s.ctx.wait_idle();
        }
        drop(self.loaded.take());
        drop(self.slot.take());
        tracing::info!("engine stopped; device released");
    }

    pub(super) fn handle(&mut self, job: Job) {
        match job {
            Job::Initialize {
                config,
                access,
                deadline,
                reply,
            } => {
                self.started();
                self.loads.push_back(Load {
                    config,
                    access,
                    deadline,
                    reply,
                });
                self.start_build();
            }
            Job::Forward(req, deadline, reply) => self.forwards(vec![(req, deadline, reply)]),
            Job::Embed(inputs, deadline, reply) => self.embeds(inputs, deadline, reply),
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

    /// Start the next waiting load on its own thread, unless one is building. The
    /// model serving now stays in service (and in memory) until the new one is built:
    /// the memory budget already counts both, as a build never dropped the old model
    /// first.
    fn start_build(&mut self) {
        while self.building.is_none() {
            let Some(l) = self.loads.pop_front() else {
                return;
            };
            if Instant::now() > l.deadline || l.reply.is_closed() {
                let _ = l.reply.send(Err(timeout_error("loading the model")));
                continue;
            }
            let (tx, rx) = std::sync::mpsc::channel();
            let (options, mut slot) = (self.options.clone(), self.slot.clone());
            let (config, access) = (l.config, l.access);
            let spawned = std::thread::Builder::new()
                .name("wgformer-build".into())
                .spawn(move || {
                    let built = build(config, &access, &options, &mut slot);
                    let _ = tx.send((built, slot));
                });
            match spawned {
                Ok(_) => {
                    self.building = Some(Building {
                        result: rx,
                        deadline: l.deadline,
                        reply: l.reply,
                        started: Instant::now(),
                    })
                }
                Err(e) => {
                    let _ = l.reply.send(Err(Error::Io(e)));
                }
            }
        }
    }

    /// Swap in a finished build (or report its failure), then start the next load.
    pub(super) fn finish_build(&mut self) {
        let Some(b) = &self.building else { return };
        let (built, slot) = match b.result.try_recv() {
            Ok(r) => r,
            Err(std::sync::mpsc::TryRecvError::Empty) => return,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => (
                Err(Error::Unavailable(
                    "the model build stopped unexpectedly".into(),
                )),
                self.slot.clone(),
            ),
        };
        let Some(b) = self.building.take() else {
            return;
        };
        self.slot = slot;
        let built = match built {
            Ok(_) if Instant::now() > b.deadline => {
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
                    seconds = b.started.elapsed().as_secs_f64(), "model built");
                // Generations in progress keep their (old) model until they end.
                drop(self.loaded.take());
                publish(&self.state, &new, self.options.served_model_name.as_deref());
                if let Ok(mut s) = self.state.sched.lock() {
                    s.prefill_chunk = self.options.prefill_chunk_for(new.model.hardware_kernels);
                }
                self.loaded = Some(Arc::new(new));
                Ok(cfg)
            }
            Err(e) => {
                tracing::warn!(error = %e, "initialize failed; the previous model stays in service");
                Err(e)
            }
        };
        // the new pool's figures are published before the caller hears the model is in
        self.publish_generations();
        let _ = b.reply.send(r);
        self.start_build();
    }

    /// Forwards that arrived together: those without statistics share traversals
    /// (up to `MAX_PREFILL_PARTS` texts and the context's tokens each), the others run
    /// alone. Every reply is the forward's own (the same numbers as alone).
    pub(super) fn forwards(&mut self, jobs: Vec<QueuedForward>) {
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
                                next_token_ranks: Vec::new(),
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

    pub(super) fn note_device_loss(&self, e: &Error) {
        if let (Some(l), Error::DeviceLost(_)) = (&self.loaded, e) {
            if let Ok(mut m) = self.state.model.write() {
                m.device_lost = l.model.ctx.is_lost();
            }
        }
    }

    /// Admit waiting generations, first come first served, while the batch has room
    /// and the KV pool can promise their pages; the first that does not fit waits
    /// (and those behind it) until generations end.
    pub(super) fn admit(&mut self) {
        if *self.state.phase.borrow() != Phase::Serving {
            // draining: what has not started will not; its client hears so now
            for wt in self.waiting.drain(..) {
                let _ = wt.events.send(GenEvent::Error(shutting_down()));
                self.state.waiting.fetch_sub(1, Ordering::SeqCst);
            }
        }
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
            let prompt = match prompt {
                Ok(ids) if shares_a_prefix_being_prefilled(&self.active, &loaded, &ids) => {
                    // it waits for those pages to be stored, then finds them kept
                    wt.prompt = Some(ids);
                    break;
                }
                p => p,
            };
            let reserved = prompt.and_then(|ids| {
                // the one clamp of max_new_tokens: what the context holds after the prompt
                let room = loaded.model.config.context_size - ids.len();
                wt.req.max_new_tokens = wt.req.max_new_tokens.min(room);
                let kv = loaded
                    .model
                    .kv_reserve_prompt(&ids, ids.len() + wt.req.max_new_tokens)?;
                Ok((ids, kv))
            });
            let (ids, kv) = match reserved {
                Err(e) => {
                    let _ = wt.events.send(GenEvent::Error(e));
                    self.waiting.pop_front();
                    self.started();
                    continue;
                }
                Ok((ids, None)) => {
                    // the pool cannot promise the pages yet: wait for generations to end
                    wt.prompt = Some(ids);
                    break;
                }
                Ok((ids, Some(kv))) => (ids, kv),
            };
            let Some(wt) = self.waiting.pop_front() else {
                break;
            };
            self.started();
            if let Ok(mut s) = self.state.sched.lock() {
                s.queue_wait.observe(wt.queued.elapsed().as_secs_f64());
            }
            self.state.set_busy("generation prefill", wt.deadline);
            let events = wt.events.clone();
            let r = self.start(loaded, wt, ids, kv);
            self.state.clear_busy();
            match r {
                Ok(a) => self.active.push(a),
                Err(e) => {
                    let _ = events.send(GenEvent::Error(e));
                }
            }
        }
        let free = match (&self.loaded, self.waiting.is_empty()) {
            (Some(l), true) => l.model.max_batch.saturating_sub(self.active.len()),
            (Some(_), false) => 0, // the first in line waits for a place or for pages
            (None, _) => self.options.max_batch, // answered at once
        };
        self.state.free_places.store(free, Ordering::SeqCst);
        self.publish_generations();
    }

    pub(super) fn start(
        &mut self,
        loaded: Arc<Loaded>,
        wt: Waiting,
        ids: Vec<u32>,
        kv: SeqKv,
    ) -> Result<Active> {
        let Waiting {
            mut req,
            deadline,
            events,
            ..
        } = wt;
        if req.min_tokens > 0 {
            // min_tokens: the tokens that would end it cannot be picked before then
            let adjust = &mut req.sampling.adjust;
            if !req.ignore_eos {
                adjust.suppress.extend(&loaded.end_ids);
            }
            adjust.suppress.extend(&req.stop_ids);
            adjust.suppress_until = req.min_tokens;
        }
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
        self.started_generations += 1;
        // positions found in the prefix cache need no prefill
        let prefilled = kv.len();
        let json = req.json.as_ref().map(|g| g.start());
        Ok(Active {
            serial: self.started_generations,
            sampler: Sampler::new(req.sampling.clone()),
            loaded,
            kv,
            req,
            prompt: ids,
            prefilled,
            cached: prefilled,
            json,
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

    pub(super) fn publish_generations(&self) {
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

/// Fewest full pages a waiting prompt shares with one being prefilled for it to wait
/// for them (fewer are cheaper to compute again than a step's wait).
const MIN_SHARED_PAGES: usize = 2;

/// Whether `ids` start with at least [`MIN_SHARED_PAGES`] full pages of the prompt
/// of a generation still prefilling them: admitted after that prefill, the prompt
/// finds them in the prefix cache instead of computing them again beside it (as
/// requests sharing a long few-shot prefix or system prompt arrive, together).
fn shares_a_prefix_being_prefilled(active: &[Active], loaded: &Arc<Loaded>, ids: &[u32]) -> bool {
    if !loaded.model.kv.caching() {
        return false;
    }
    let most = ids.len().saturating_sub(1) / PAGE;
    active.iter().any(|a| {
        let shared = ids
            .chunks_exact(PAGE)
            .take(most)
            .zip(a.prompt.chunks_exact(PAGE))
            .take_while(|(x, y)| x == y)
            .count();
        Arc::ptr_eq(&a.loaded, loaded) && shared >= MIN_SHARED_PAGES && a.prefilled < shared * PAGE
    })
}
