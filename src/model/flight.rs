//! Generation steps left in flight: submitted without waiting, their tokens (ids the
//! device picked) read back later, the next step chained behind one before it is read.
//!
//! - [`Model::decode_submit`], [`Model::decode_chain`], [`Model::decode_wait`]: a
//!   decode step whose every row is picked on the device, left in flight; the next one
//!   chained behind it, its ids those the first picked (copied on the device); each
//!   read back later (the engine's way with a batch that goes on).
//! - [`Model::mixed_submit`], [`Model::mixed_chain`]: the same for a mixed step (a
//!   decode batch and joining prompts, [`Model::mixed_select`]).
//!
//! Two small read-back buffers take turns: at most two steps are in flight.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::generate::{advance, readback_plan, LaidOut, NextToken, Plan, Readback};
use super::kv_pool::SeqKv;
use super::step::StepIds;
use super::Model;
use crate::error::{Error, Result};
use crate::gpu::buffers;

/// A step submitted and not yet read back ([`Model::decode_submit`],
/// [`Model::decode_chain`], [`Model::mixed_submit`], [`Model::mixed_chain`]): its asked
/// rows' ids, picked on the device, wait in one of the model's two small read-back
/// buffers for [`Model::decode_wait`].
#[derive(Debug)]
pub struct PendingStep {
    read: ReadSlot,
    index: wgpu::SubmissionIndex,
    asked: Vec<Readback>,
    /// Which generation step of the model it was.
    serial: u64,
}

impl PendingStep {
    /// Its rows.
    pub fn rows(&self) -> usize {
        self.asked.len()
    }
}

/// One of the model's two `picked_reads` buffers, held by a step in flight.
#[derive(Debug)]
struct ReadSlot {
    slot: usize,
    held: Arc<Mutex<[bool; 2]>>,
}

impl ReadSlot {
    /// A free buffer of the two, or `None` while two steps are in flight.
    fn take(held: &Arc<Mutex<[bool; 2]>>) -> Option<ReadSlot> {
        let mut h = held.lock().unwrap_or_else(|e| e.into_inner());
        let slot = h.iter().position(|busy| !busy)?;
        h[slot] = true;
        Some(ReadSlot {
            slot,
            held: held.clone(),
        })
    }
}

impl Drop for ReadSlot {
    /// The buffer is free again (a later step's copy into it is ordered after this
    /// one's on the queue).
    fn drop(&mut self) {
        self.held.lock().unwrap_or_else(|e| e.into_inner())[self.slot] = false;
    }
}

impl Model {
    /// [`Model::decode_select`] without waiting: submit the step and return at once,
    /// to read its tokens later with [`Model::decode_wait`] (the host records the next
    /// step, or streams the last one's tokens, while the device runs this one). Every
    /// row must be picked on the device ([`Readback::Argmax`] or [`Readback::Sample`]
    /// on a model that can draw): only ids come back. At most two steps may be in
    /// flight.
    pub fn decode_submit(
        &self,
        batch: &mut [(&mut SeqKv, u32)],
        want: &[Readback],
    ) -> Result<PendingStep> {
        let ids: Vec<u32> = batch.iter().map(|(_, id)| *id).collect();
        self.check_tokens(&ids)?;
        let mut kvs: Vec<&mut SeqKv> = batch.iter_mut().map(|(kv, _)| &mut **kv).collect();
        self.submit_drawn(&mut kvs, Some(&ids), want)
    }

    /// The decode step after `after` for the same generations, row for row, submitted
    /// before `after`'s tokens are read: each row's token is the one `after` picked on
    /// the device, copied there in queue order, so the host never waits between the
    /// two. `after` must be this model's last generation step (no prefill or other
    /// decode step between them). A row whose generation ends with `after`'s token
    /// wastes its share of this step (its key and value go to a position it holds).
    pub fn decode_chain(
        &self,
        kvs: &mut [&mut SeqKv],
        want: &[Readback],
        after: &PendingStep,
    ) -> Result<PendingStep> {
        self.check_chain(after, kvs.len())?;
        self.submit_drawn(kvs, None, want)
    }

    /// A step chained to `after` takes its `rows`, row for row, and follows it.
    fn check_chain(&self, after: &PendingStep, rows: usize) -> Result<()> {
        if after.serial != self.steps.load(Ordering::SeqCst) {
            return Err(Error::InvalidInput(
                "a chained decode step must follow the model's last generation step".into(),
            ));
        }
        if after.asked.len() != rows {
            return Err(Error::InvalidInput(format!(
                "a chained decode step takes the {} rows of the step before it, not {rows}",
                after.asked.len(),
            )));
        }
        Ok(())
    }

    /// Submit a decode step whose every row is picked on the device: its ids from the
    /// host, or (`None`) those the last generation step drew.
    fn submit_drawn(
        &self,
        kvs: &mut [&mut SeqKv],
        ids: Option<&[u32]>,
        want: &[Readback],
    ) -> Result<PendingStep> {
        if kvs.is_empty() || kvs.len() > self.max_batch {
            return Err(Error::InvalidInput(format!(
                "a decode step takes 1 to {} generations",
                self.max_batch
            )));
        }
        if want.len() != kvs.len() {
            return Err(Error::InvalidInput(format!(
                "{} rows but {} readbacks asked",
                kvs.len(),
                want.len()
            )));
        }
        self.check_ids_only(want.iter())?;
        let read = self.read_slot()?;
        let zeros = vec![0; kvs.len()];
        let step = self.decode_rows(kvs, ids.unwrap_or(&zeros), want)?;
        let plan = readback_plan(want, true);
        let step_ids = match ids {
            Some(ids) => StepIds::Host(ids),
            None => StepIds::Drawn(&[]),
        };
        let step = self.submit_picked("decode step", step, &plan, step_ids, read)?;
        for kv in kvs.iter_mut() {
            kv.advance(1);
        }
        Ok(step)
    }

    /// A step left in flight reads back only ids picked on the device: every `asks`
    /// an Argmax or a Sample, on a model that draws.
    fn check_ids_only<'a>(&self, mut asks: impl Iterator<Item = &'a Readback>) -> Result<()> {
        if !self.can_draw() || asks.any(|a| *a == Readback::Logits) {
            return Err(Error::InvalidInput(
                "a step in flight reads back only ids picked on the device: one Argmax or Sample per asked row, on a model that draws".into(),
            ));
        }
        Ok(())
    }

    /// One of the two read-back buffers of steps in flight, or an error while both
    /// are held.
    fn read_slot(&self) -> Result<ReadSlot> {
        ReadSlot::take(&self.reads_held).ok_or_else(|| {
            Error::InvalidInput("two decode steps are already in flight: wait for one".into())
        })
    }

    /// Submit a step whose every asked row (`step.asked`, in logits-row order) is
    /// picked on the device, its ids copied to `read`'s buffer, and return it in flight.
    fn submit_picked(
        &self,
        label: &str,
        step: LaidOut,
        plan: &Plan,
        ids: StepIds,
        read: ReadSlot,
    ) -> Result<PendingStep> {
        let staging = &self.act.picked_reads[read.slot];
        let asked = step.asked.len();
        let index = self.ctx.scoped(label, || {
            self.write_rows(&step, plan);
            let kind = step.kind(plan);
            let (index, _) = self.submit_traversal(label, ids, &step.positions(), kind, |enc| {
                enc.copy_buffer_to_buffer(&self.act.picked, 0, staging, 0, asked as u64 * 4);
                asked
            });
            Ok(index)
        })?;
        Ok(PendingStep {
            read,
            index,
            asked: step.asked,
            serial: self.steps.fetch_add(1, Ordering::SeqCst) + 1,
        })
    }

    /// [`Model::mixed_select`] without waiting, as [`Model::decode_submit`]: every row
    /// asked (the decode rows, each prompt's last row) must be picked on the device,
    /// and the returned step's tokens ([`Model::decode_wait`]) are in that order. The
    /// next decode step of the same generations, in that order, may be chained to it.
    pub fn mixed_submit(
        &self,
        batch: &mut [(&mut SeqKv, u32)],
        want: &[Readback],
        parts: &mut [(&mut SeqKv, &[u32], Option<Readback>)],
    ) -> Result<PendingStep> {
        self.submit_mixed(batch, want, parts, false)
    }

    /// [`Model::mixed_submit`] chained to `after`, as [`Model::decode_chain`]: the decode
    /// rows are `after`'s generations, row for row, their tokens those `after` picks
    /// (copied on the device); `parts` are prompts joining them (their ids from the
    /// host). The next step may be chained to this one in turn, the joiners' rows after
    /// the others'.
    pub fn mixed_chain(
        &self,
        kvs: &mut [&mut SeqKv],
        want: &[Readback],
        parts: &mut [(&mut SeqKv, &[u32], Option<Readback>)],
        after: &PendingStep,
    ) -> Result<PendingStep> {
        self.check_chain(after, kvs.len())?;
        let mut batch: Vec<(&mut SeqKv, u32)> = kvs.iter_mut().map(|kv| (&mut **kv, 0)).collect();
        self.submit_mixed(&mut batch, want, parts, true)
    }

    /// Submit a mixed step whose every asked row is picked on the device; with `drawn`
    /// its decode rows' ids are those the last generation step picked.
    fn submit_mixed(
        &self,
        batch: &mut [(&mut SeqKv, u32)],
        want: &[Readback],
        parts: &mut [(&mut SeqKv, &[u32], Option<Readback>)],
        drawn: bool,
    ) -> Result<PendingStep> {
        self.check_mixed(batch.len(), want, parts)?;
        self.check_ids_only(want.iter().chain(parts.iter().filter_map(|p| p.2.as_ref())))?;
        let read = self.read_slot()?;
        let step = self.lay_out(batch, want, parts)?;
        let plan = readback_plan(&step.asked, true);
        let ids: Vec<u32> = step.rows.iter().map(|r| r.id).collect();
        let ids = if drawn {
            StepIds::Drawn(&ids[step.decode..])
        } else {
            StepIds::Host(&ids)
        };
        let pending = self.submit_picked("mixed step", step, &plan, ids, read)?;
        advance(batch, parts);
        Ok(pending)
    }

    /// The tokens of a step [`Model::decode_submit`] or [`Model::decode_chain`]
    /// submitted, one per row as its `want` asked, once the device is done with it
    /// (the steps after it may still run).
    pub fn decode_wait(&self, step: PendingStep) -> Result<Vec<NextToken>> {
        let t0 = std::time::Instant::now();
        let rows = step.asked.len();
        let ids = self.ctx.scoped("decode step read-back", || {
            buffers::map_after(
                &self.ctx,
                &self.act.picked_reads[step.read.slot],
                rows as u64 * 4,
                Some(step.index.clone()),
                |b| bytemuck::cast_slice::<u8, u32>(b).to_vec(),
            )
        })?;
        self.host_times_add(|t| t.wait_s += t0.elapsed().as_secs_f64());
        Ok(step
            .asked
            .iter()
            .zip(ids)
            .map(|(a, id)| match a {
                Readback::Argmax => NextToken::Argmax(id),
                _ => NextToken::Sampled(id),
            })
            .collect())
    }
}
