//! The engine's generation steps (the worker's turn at its generations): the decode
//! step in flight read and the next one chained to it, tokens picked and streamed,
//! prompts prefilled (apart, or riding on the batch's decode step: a mixed step), and
//! the batched decode step, left in flight where every row is picked on the device.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::generation::{advance, pick_tokens, Active};
use super::load::Loaded;
use super::requests::{GenEvent, GenerateResult};
use super::scheduler::{traverse, InFlight, Worker};
use super::state::timeout_error;
use crate::error::Error;
use crate::model::kv_pool::SeqKv;
use crate::model::MAX_PREFILL_PARTS;
use crate::model::{NextToken, Readback};

impl Worker {
    /// One engine step: the decode step in flight, if any, is read (the one after it
    /// submitted first when the batch goes on as it is, [`Worker::chain`]); every
    /// generation with logits or a picked id samples and streams its next token; then
    /// one prefill traversal (chunks of the oldest prompts still prefilling); then the
    /// decoding generations not already in flight run their tokens through the model
    /// together (one batch per model). Prefill first: a prompt admitted between steps
    /// is prefilled before the running batch's next decode step, not after it, so a
    /// generation joining a batch waits for one traversal less; the running ones do the
    /// same work in the same rotation (a prefill between two of their decode steps).
    /// Where the model's steps mix, a short prompt is prefilled *in* that decode step
    /// ([`Worker::mix`]): one traversal for both.
    pub(super) fn step(&mut self) {
        if self.active.is_empty() && self.in_flight.is_none() {
            return;
        }
        // the next decode step goes in behind the one in flight when the batch goes
        // on as it is; then the one in flight is read
        let ahead = self.chain();
        self.land();
        self.in_flight = ahead;
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
            let r = advance(&mut a);
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
        if let Some(f) = &self.in_flight {
            // their token is on the device already, in the step in flight
            for a in self
                .active
                .iter_mut()
                .filter(|a| f.rows.contains(&a.serial))
            {
                a.next = None;
            }
        }
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

    pub(super) fn finish(&self, a: &Active, result: GenerateResult) {
        if let Ok(mut c) = self.state.counters.write() {
            c.total_tokens += (result.prompt_tokens + result.tokens) as u64;
        }
        let _ = a.events.send(GenEvent::Complete(result));
    }

    /// The batched decode step(s): every generation holding a sampled token. A lone
    /// batch whose every row is picked on the device is left in flight: read at the
    /// next engine step, after the host has submitted the step behind it
    /// ([`Worker::chain`]); any other batch is run and read here.
    pub(super) fn decode(&mut self) {
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
            let lone = ready.is_empty() && batch.len() <= cap && self.in_flight.is_none();
            for group in batch.chunks(cap) {
                let deadline = self.latest_deadline(group.iter().copied());
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
                let serials: Vec<u64> = picked.iter().map(|a| a.serial).collect();
                for a in picked.iter_mut() {
                    let id = a.next.take().unwrap_or(0);
                    rows.push((&mut a.kv, id));
                }
                let (every, ctx) = (self.options.profile_every, &model.model.ctx);
                let host0 = host_seconds(&model.model);
                let stays = lone && model.model.can_draw() && !want.contains(&Readback::Logits);
                if stays {
                    let r = traverse(&self.state, every, ctx, "decode", || {
                        model.model.decode_submit(&mut rows, &want)
                    });
                    drop(rows);
                    self.state.clear_busy();
                    match r {
                        Ok(step) => {
                            let host = host_seconds(&model.model) - host0;
                            let f = InFlight::new(step, &model, serials, (deadline, started), host);
                            self.in_flight = Some(f);
                        }
                        Err(e) => {
                            self.note_device_loss(&e);
                            failed.extend(group.iter().map(|&i| (i, e.duplicate())));
                        }
                    }
                    continue;
                }
                let r = traverse(&self.state, every, ctx, "decode", || {
                    model.model.decode_select(&mut rows, &want)
                });
                let host = host_seconds(&model.model) - host0;
                drop(rows);
                self.state.clear_busy();
                match r {
                    Ok(logits) => {
                        for (a, l) in picked.iter_mut().zip(logits) {
                            a.next_from = Some(l);
                        }
                        self.last_landed = Instant::now();
                        let seconds = started.elapsed().as_secs_f64();
                        self.decoded(group.len(), seconds, host, false);
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

    /// Count a decode step of `rows` generations read back: its seconds, the host's.
    fn decoded(&self, rows: usize, seconds: f64, host: f64, chained: bool) {
        if let Ok(mut s) = self.state.sched.lock() {
            s.batch_size.observe(rows as f64);
            s.decode_steps += 1;
            s.chained_steps += chained as u64;
            s.decode_seconds += seconds;
            s.step_host_seconds += host;
            s.current_batch = rows;
        }
    }

    /// Submit the decode step after the one in flight, before reading that one, when
    /// the batch goes on as it is: every running generation is a row of that step, in
    /// order (none ended or prefilling; generations admitted since may follow them if
    /// they ride along, [`Worker::joiners_ride`]: their prompts then go in the same
    /// step, a mixed one), and each takes its next token on the device and still wants
    /// one after the token in flight (`max_new_tokens`). The new step's rows take the
    /// ids the one in flight picks, on the device: the host never keeps the device
    /// waiting between them. A row whose generation ends with the token in flight (a
    /// stop string, the end of text) wastes its share of the new step. Returns the new
    /// step in flight.
    fn chain(&mut self) -> Option<InFlight> {
        let f = self.in_flight.as_ref()?;
        let n = f.rows.len();
        let batch_first = self.active.len() >= n
            && self.active[..n]
                .iter()
                .zip(&f.rows)
                .all(|(a, &s)| a.serial == s);
        if !batch_first || !self.joiners_ride(&f.model, n) {
            return None;
        }
        let now = Instant::now();
        let mut want = Vec::with_capacity(n);
        for a in &self.active[..n] {
            // the step in flight picks token `generated.len()`, the new one the next
            let next = a.generated.len() + 1;
            let goes_on = a.prefilled == a.prompt.len()
                && a.next.is_none()
                && a.next_from.is_none()
                && a.picked.is_none()
                && next < a.req.max_new_tokens
                && !a.events.is_closed()
                && now < a.deadline;
            match a.readback_for(next) {
                w if goes_on && w != Readback::Logits => want.push(w),
                _ => return None,
            }
        }
        let model = f.model.clone();
        let deadline = self.active.iter().map(|a| a.deadline).max()?;
        // the joiners' whole prompts (indices among them, and in the batch)
        let whole: Vec<(usize, usize)> = self.active[n..]
            .iter()
            .enumerate()
            .map(|(j, a)| (j, a.prompt.len()))
            .collect();
        let joined: Vec<(usize, usize)> = whole.iter().map(|&(j, end)| (n + j, end)).collect();
        let rows: Vec<u64> = self.active.iter().map(|a| a.serial).collect();
        let host0 = host_seconds(&model.model);
        let (batch, joiners) = self.active.split_at_mut(n);
        let mut kvs: Vec<&mut SeqKv> = batch.iter_mut().map(|a| &mut a.kv).collect();
        let (_, mut parts) = step_rows(joiners, &[], &whole);
        let (every, ctx) = (self.options.profile_every, &model.model.ctx);
        self.state.set_busy("decode step", deadline);
        let r = traverse(&self.state, every, ctx, "decode", || {
            if parts.is_empty() {
                model.model.decode_chain(&mut kvs, &want, &f.step)
            } else {
                model
                    .model
                    .mixed_chain(&mut kvs, &want, &mut parts, &f.step)
            }
        });
        drop((kvs, parts));
        self.state.clear_busy();
        match r {
            Ok(step) => {
                if !joined.is_empty() {
                    // their first tokens, and their time, land with the step
                    self.prefilled(&joined, vec![None; joined.len()], 0.0);
                    if let Ok(mut s) = self.state.sched.lock() {
                        s.mixed_steps += 1;
                    }
                }
                let host = host_seconds(&model.model) - host0;
                let mut f = InFlight::new(step, &model, rows, (deadline, now), host);
                f.chained = true;
                Some(f)
            }
            Err(e) => {
                tracing::warn!(error = %e, "a decode step could not be chained; the batch steps one at a time");
                None
            }
        }
    }

    /// Whether the generations after the batch's `n` rows (those the step in flight
    /// does not hold: generations just admitted) can ride on its chained step: each a
    /// short prompt of `model` waiting whole, its first token picked on the device,
    /// all of them beside the batch in one mixed step (at most `MAX_PREFILL_PARTS`).
    fn joiners_ride(&self, model: &Arc<Loaded>, n: usize) -> bool {
        let joiners = &self.active[n..];
        if joiners.is_empty() {
            return true;
        }
        let Some(limit) = model.model.mixed_rows() else {
            return false;
        };
        // (rows still to prefill: a prompt found in the prefix cache rides with its rest)
        let rows: usize = joiners.iter().map(Active::unfilled).sum();
        let now = Instant::now();
        joiners.len() <= MAX_PREFILL_PARTS
            && rows <= limit.prompt
            && n + rows <= limit.total
            && joiners.iter().all(|a| {
                Arc::ptr_eq(&a.loaded, model)
                    && a.unfilled() > 0
                    && a.generated.is_empty()
                    && a.req.max_new_tokens > 0
                    && a.readback() != Readback::Logits
                    && !a.events.is_closed()
                    && now < a.deadline
            })
    }

    /// Read the decode step in flight: each of its generations still running gets its
    /// token (one that ended meanwhile has its token dropped).
    fn land(&mut self) {
        let Some(InFlight {
            step,
            model,
            rows,
            deadline,
            started,
            host,
            chained,
        }) = self.in_flight.take()
        else {
            return;
        };
        self.state.set_busy("decode step", deadline);
        let r = model.model.decode_wait(step);
        self.state.clear_busy();
        let now = Instant::now();
        let seconds = now
            .duration_since(started.max(self.last_landed))
            .as_secs_f64();
        self.last_landed = now;
        match r {
            Ok(tokens) => {
                for (serial, t) in rows.iter().zip(tokens) {
                    if let Some(a) = self.active.iter_mut().find(|a| a.serial == *serial) {
                        if a.generated.is_empty() {
                            // a prompt's first token (a mixed step in flight)
                            a.prefill_time += seconds;
                        }
                        a.next_from = Some(t);
                    }
                }
                self.decoded(rows.len(), seconds, host, chained);
            }
            Err(e) => {
                self.note_device_loss(&e);
                let failed = (0..self.active.len())
                    .filter(|&i| rows.contains(&self.active[i].serial))
                    .map(|i| (i, e.duplicate()))
                    .collect();
                self.drop_failed(failed);
            }
        }
    }

    /// Prefill prompts, oldest first, up to `prefill_chunk` tokens in all this step (a
    /// long prompt takes several steps; several short ones share one traversal, up to
    /// `MAX_PREFILL_PARTS` of one model). On a model whose steps can mix decode rows
    /// and prompts ([`crate::model::Model::mixed_rows`]), short prompts (at most its
    /// `prompt` rows each) that fit beside the running generations' decode rows ride
    /// on their decode step ([`Worker::mix`]), as a generation joining a batch does: a
    /// short prompt then takes the deferred blocks, as alone; a longer one takes the
    /// matmul, with the other long ones, as alone. More short prompts than fit (a
    /// burst of arrivals; or with a decode batch too large for them beside it in a
    /// context) are prefilled together in one traversal, as on a model that does not
    /// mix: the matmul, a step of many rows, reads each weight once.
    pub(super) fn prefill(&mut self) {
        let Some(first) = self
            .active
            .iter()
            .position(|a| a.prefilled < a.prompt.len())
        else {
            return;
        };
        let model = self.active[first].loaded.clone();
        let Some(limit) = model.model.mixed_rows() else {
            return self.prefill_traversal(&model, |_| true);
        };
        let ours = |a: &Active| Arc::ptr_eq(&a.loaded, &model);
        let short = |a: &Active| a.unfilled() <= limit.prompt;
        let waiting = |a: &Active| a.prefilled < a.prompt.len() && ours(a);
        let decoding = self
            .active
            .iter()
            .filter(|a| a.next.is_some() && ours(a))
            .count();
        let short_rows: usize = self
            .active
            .iter()
            .filter(|a| waiting(a) && short(a))
            .map(Active::unfilled)
            .sum();
        if short_rows == 0 || short_rows > limit.prompt || decoding + short_rows > limit.total {
            return self.prefill_traversal(&model, |_| true);
        }
        if self.active.iter().any(|a| waiting(a) && !short(a)) {
            self.prefill_traversal(&model, |a| !short(a));
        }
        // (indices taken after that traversal, which drops the generations it fails)
        let decode: Vec<usize> = (0..self.active.len())
            .filter(|&i| self.active[i].next.is_some() && ours(&self.active[i]))
            .collect();
        let picked = self.chunks(&model, limit.prompt, short);
        self.mix(&model, decode, picked);
    }

    /// One prefill traversal of `model`'s prompts that `take` says, oldest first.
    fn prefill_traversal(&mut self, model: &Arc<Loaded>, take: impl Fn(&Active) -> bool) {
        // a step's rows live in activations sized for the model's context
        let budget = self
            .options
            .prefill_chunk_for(model.model.hardware_kernels)
            .min(model.model.config.context_size)
            .max(1);
        let picked = self.chunks(model, budget, take);
        self.state.set_busy(
            "generation prefill",
            self.latest_deadline(picked.iter().map(|p| p.0)),
        );
        let started = Instant::now();
        let (_, mut parts) = step_rows(&mut self.active, &[], &picked);
        let (every, ctx) = (self.options.profile_every, &model.model.ctx);
        let host0 = host_seconds(&model.model);
        let r = traverse(&self.state, every, ctx, "prefill", || {
            model.model.prefill_select(&mut parts)
        });
        let host = host_seconds(&model.model) - host0;
        drop(parts);
        self.state.clear_busy();
        let seconds = started.elapsed().as_secs_f64();
        match r {
            Ok(logits) => {
                self.prefilled(&picked, logits, seconds);
                if let Ok(mut s) = self.state.sched.lock() {
                    s.prefill_steps += 1;
                    s.prefill_seconds += seconds;
                    s.step_host_seconds += host;
                }
            }
            Err(e) => {
                self.note_device_loss(&e);
                self.drop_failed(picked.iter().map(|&(i, _)| (i, e.duplicate())).collect());
            }
        }
    }

    /// A mixed step: the decode step of `model`'s generations at `decode` and the
    /// prompt chunks `picked` (short prompts, whole: [`Worker::prefill`]) in one
    /// traversal ([`crate::model::Model::mixed_select`]): a generation joining a
    /// running batch costs the batch no traversal of its own, and its prompt one step.
    /// Each row is computed as in a step alone, so the tokens are the same.
    fn mix(&mut self, model: &Arc<Loaded>, decode: Vec<usize>, picked: Vec<(usize, usize)>) {
        let deadline =
            self.latest_deadline(decode.iter().copied().chain(picked.iter().map(|p| p.0)));
        self.state.set_busy("mixed step", deadline);
        let started = Instant::now();
        let want: Vec<Readback> = decode.iter().map(|&i| self.active[i].readback()).collect();
        // every row of the step the batch, its prompts whole and every token picked on
        // the device: the step stays in flight, the next one chained to it
        let a = &self.active;
        let lone = (0..a.len()).all(|i| a[i].next.is_none() || decode.contains(&i));
        let whole = picked.iter().all(|&(i, end)| end == a[i].prompt.len());
        let ids_only = !want.contains(&Readback::Logits)
            && picked
                .iter()
                .all(|&(i, _)| a[i].readback() != Readback::Logits);
        if lone && whole && ids_only && !decode.is_empty() && model.model.can_draw() {
            return self.mix_in_flight(model, decode, picked, want, (deadline, started));
        }
        let (mut rows, mut parts) = step_rows(&mut self.active, &decode, &picked);
        let (every, ctx) = (self.options.profile_every, &model.model.ctx);
        let host0 = host_seconds(&model.model);
        let r = traverse(&self.state, every, ctx, "mixed", || {
            model.model.mixed_select(&mut rows, &want, &mut parts)
        });
        let host = host_seconds(&model.model) - host0;
        drop((rows, parts));
        self.state.clear_busy();
        let seconds = started.elapsed().as_secs_f64();
        match r {
            Ok((tokens, logits)) => {
                for (&i, t) in decode.iter().zip(tokens) {
                    self.active[i].next_from = Some(t);
                }
                self.prefilled(&picked, logits, seconds);
                if decode.is_empty() {
                    if let Ok(mut s) = self.state.sched.lock() {
                        s.prefill_steps += 1;
                        s.prefill_seconds += seconds;
                        s.step_host_seconds += host;
                    }
                } else {
                    self.last_landed = Instant::now();
                    self.decoded(decode.len(), seconds, host, false);
                    if let Ok(mut s) = self.state.sched.lock() {
                        s.mixed_steps += 1;
                    }
                }
            }
            Err(e) => self.fail_rows(&e, &decode, &picked),
        }
    }

    /// [`Worker::mix`]'s step submitted and left in flight (`Model::mixed_submit`): its
    /// rows are the decode rows, then the prompts, in the batch's order, so at the next
    /// turn the decode step after it is chained to it ([`Worker::chain`]) and the
    /// joining generations' first tokens land with the others' ([`Worker::land`]).
    fn mix_in_flight(
        &mut self,
        model: &Arc<Loaded>,
        decode: Vec<usize>,
        picked: Vec<(usize, usize)>,
        want: Vec<Readback>,
        (deadline, started): (Instant, Instant),
    ) {
        let serials: Vec<u64> = decode
            .iter()
            .chain(picked.iter().map(|(i, _)| i))
            .map(|&i| self.active[i].serial)
            .collect();
        let (mut rows, mut parts) = step_rows(&mut self.active, &decode, &picked);
        let (every, ctx) = (self.options.profile_every, &model.model.ctx);
        let host0 = host_seconds(&model.model);
        let r = traverse(&self.state, every, ctx, "mixed", || {
            model.model.mixed_submit(&mut rows, &want, &mut parts)
        });
        drop((rows, parts));
        self.state.clear_busy();
        match r {
            Ok(step) => {
                // the prompts' time is counted when their first tokens land
                self.prefilled(&picked, vec![None; picked.len()], 0.0);
                if let Ok(mut s) = self.state.sched.lock() {
                    s.mixed_steps += 1;
                }
                let host = host_seconds(&model.model) - host0;
                let f = InFlight::new(step, model, serials, (deadline, started), host);
                self.in_flight = Some(f);
            }
            Err(e) => self.fail_rows(&e, &decode, &picked),
        }
    }

    /// End the generations of a failed step's decode rows and prompts with `e`.
    fn fail_rows(&mut self, e: &Error, decode: &[usize], picked: &[(usize, usize)]) {
        self.note_device_loss(e);
        let rows = decode.iter().chain(picked.iter().map(|(i, _)| i));
        self.drop_failed(rows.map(|&i| (i, e.duplicate())).collect());
    }

    /// The next chunks of `model`'s prompts still prefilling that `take` says, oldest
    /// first, at most `budget` tokens and `MAX_PREFILL_PARTS` chunks in all: (index,
    /// end of the chunk) each.
    fn chunks(
        &self,
        model: &Arc<Loaded>,
        mut budget: usize,
        take: impl Fn(&Active) -> bool,
    ) -> Vec<(usize, usize)> {
        let mut picked = Vec::new();
        for (i, a) in self.active.iter().enumerate() {
            if budget == 0 || picked.len() == MAX_PREFILL_PARTS {
                break;
            }
            if a.prefilled < a.prompt.len() && Arc::ptr_eq(&a.loaded, model) && take(a) {
                let end = (a.prefilled + budget).min(a.prompt.len());
                budget -= end - a.prefilled;
                picked.push((i, end));
            }
        }
        picked
    }

    /// The latest deadline of the generations at these indices (now, if none).
    fn latest_deadline(&self, rows: impl IntoIterator<Item = usize>) -> Instant {
        rows.into_iter()
            .map(|i| self.active[i].deadline)
            .max()
            .unwrap_or_else(Instant::now)
    }

    /// The prompts at `picked`'s indices prefilled to their chunk's end, in
    /// `seconds`: a prompt's last chunk leaves what its first token needs.
    fn prefilled(
        &mut self,
        picked: &[(usize, usize)],
        logits: Vec<Option<NextToken>>,
        seconds: f64,
    ) {
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
        }
    }

    /// End the generations at these indices with their errors.
    pub(super) fn drop_failed(&mut self, mut failed: Vec<(usize, Error)>) {
        failed.sort_by_key(|(i, _)| std::cmp::Reverse(*i));
        for (i, e) in failed {
            let a = self.active.remove(i);
            let _ = a.events.send(GenEvent::Error(e));
        }
    }
}

/// Seconds the host has spent recording and submitting `model`'s steps.
fn host_seconds(model: &crate::model::Model) -> f64 {
    let t = *model.host_times.lock().unwrap_or_else(|e| e.into_inner());
    t.record_s + t.submit_s
}

/// A prompt chunk of a step: the generation's pages, the chunk's tokens, and what its
/// last token reads back (its prompt's last chunk: what the first token needs).
type PromptChunk<'a> = (&'a mut SeqKv, &'a [u32], Option<Readback>);

/// A step's rows: the decode rows of the generations at `decode` (their sampled
/// tokens taken) and the prompt chunks of those at `picked`, each from its prefilled
/// tokens to the chunk's end, its last chunk reading back what its first token needs.
fn step_rows<'a>(
    active: &'a mut [Active],
    decode: &[usize],
    picked: &[(usize, usize)],
) -> (Vec<(&'a mut SeqKv, u32)>, Vec<PromptChunk<'a>>) {
    let (mut rows, mut parts) = (Vec::new(), Vec::with_capacity(picked.len()));
    for (i, a) in active.iter_mut().enumerate() {
        if decode.contains(&i) {
            let id = a.next.take().unwrap_or(0);
            rows.push((&mut a.kv, id));
        } else if let Some(&(_, end)) = picked.iter().find(|(j, _)| *j == i) {
            let asks = (end == a.prompt.len()).then(|| a.readback());
            parts.push((&mut a.kv, &a.prompt[a.prefilled..end], asks));
        }
    }
    (rows, parts)
}
