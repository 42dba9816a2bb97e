//! Generation steps over the paged KV cache ([`super::kv_pool`]). Both go through the
//! model's one traversal ([`Model::encode_step`]):
//!
//! - [`Model::prefill`]: a chunk of one generation's prompt at its next positions, on
//!   the matmul path; keys and values are stored, and the logits of the last row are
//!   read back when asked (the final chunk).
//! - [`Model::decode`]: one new token for each of up to `max_batch` generations, each
//!   at its own position and attending to its own pages, on the matrix-vector path;
//!   the logits of every row are read back, or only the id of the token picked on the
//!   device: the largest logit for greedy rows, the draw for sampled ones
//!   ([`Model::decode_select`], [`Readback`]).
//!
//! - [`Model::mixed_select`]: a decode batch and prompt chunks in one traversal (the
//!   deferred blocks, where every row takes the same dispatches).
//! - Steps left in flight and chained to each other: `flight.rs`.
//!
//! The keys and values of both go to the pool from the qkv projection's epilogue (the
//! rotary families' rotated there first): no step has a copy dispatch. The
//! pool holds f32 or half floats (`kv_cache_dtype`).
//!
//! Every kernel computes a row by the same code whatever the rows around it, so a
//! generation's tokens are the same alone or in any batch.

use super::kv_pool::SeqKv;
use std::sync::atomic::Ordering;

use super::step::{ChunkRows, StepKind, ARGMAX_SPAN, MAX_PREFILL_PARTS};
use super::{MixedRows, Model};
use crate::error::{Error, Result};
use crate::kernels::logit_lens::{parse_top_k, top_k_windows, TopK};
use crate::kernels::sample::SampleSpec;

/// What a step reads back for one of its rows (a decode row, a prompt's last row).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Readback {
    /// Its logits `[V]`: to sample from, or for log-probabilities.
    Logits,
    /// Only the id of its largest logit, taken on the device: all a greedy row needs.
    Argmax,
    /// Only the id drawn on the device by this draw (`sample_rows`, as the host
    /// sampler would draw it): a sampled row without logprobs, on a model that
    /// [`super::Model::sample_on_device`].
    Sample(SampleSpec),
}

/// A row's result, as [`Readback`] asked.
#[derive(Clone, Debug, PartialEq)]
pub enum NextToken {
    Logits(Vec<f32>),
    Argmax(u32),
    Sampled(u32),
}

/// One row of a step: the token, its generation's pages, and where it goes.
pub(super) struct Row {
    pub(super) id: u32,
    /// Offset of its generation's page table in the step's tables.
    pub(super) table: u32,
    pub(super) pos: u32,
    pub(super) slot: u32,
}

/// A step's rows laid out, their pool slots taken: a decode step's
/// ([`Model::decode_rows`]), or a step of decode rows and prompt chunks
/// ([`Model::lay_out`]).
pub(super) struct LaidOut {
    pub(super) rows: Vec<Row>,
    pub(super) tables: Vec<u32>,
    /// The prompt chunks after the decode rows: `None` for a decode step.
    chunks: Option<Vec<ChunkRows>>,
    /// Its first rows, one a generation, each with its logits.
    pub(super) decode: usize,
    /// What it reads back for each of its logits rows.
    pub(super) asked: Vec<Readback>,
}

impl LaidOut {
    /// The step kind of its traversal, reading back as `plan` says.
    pub(super) fn kind(&self, plan: &Plan) -> StepKind<'_> {
        let (argmax, sample) = (plan.argmax, !plan.specs.is_empty());
        match &self.chunks {
            None => StepKind::Decode { argmax, sample },
            Some(parts) => StepKind::Prefill {
                parts,
                decode: self.decode,
                argmax,
                sample,
            },
        }
    }

    /// Each row's position.
    pub(super) fn positions(&self) -> Vec<u32> {
        self.rows.iter().map(|r| r.pos).collect()
    }
}

/// The sequences of a step of `batch`'s decode rows and `parts`' prompt chunks hold
/// its rows (once it is submitted).
pub(super) fn advance(
    batch: &mut [(&mut SeqKv, u32)],
    parts: &mut [(&mut SeqKv, &[u32], Option<Readback>)],
) {
    for (kv, _) in batch.iter_mut() {
        kv.advance(1);
    }
    for (kv, ids, _) in parts.iter_mut() {
        kv.advance(ids.len());
    }
}

/// Windows of [`ARGMAX_SPAN`] logits the argmax takes the rows of these wte chunks in,
/// all chunks together (in id order): the `top1` results per row.
pub(super) fn argmax_windows(chunks: &[crate::gpu::buffers::Chunk]) -> usize {
    chunks
        .iter()
        .map(|ch| top_k_windows(ch.rows, ARGMAX_SPAN))
        .sum()
}

/// What a step's rows `asked` need of the device: its argmax (any row), each row's
/// draw (`SampleSpec::SKIP` for rows not drawn; empty when none is), and the rows that
/// read their logits.
pub(super) struct Plan {
    pub(super) argmax: bool,
    pub(super) specs: Vec<SampleSpec>,
    read: Vec<usize>,
}

/// What a step read back ([`Plan`]): the logits rows read, the argmax results, the
/// ids drawn.
struct StepOut {
    logits: Vec<Vec<f32>>,
    top1: Vec<f32>,
    picked: Vec<u32>,
}

/// The plan for rows asking `asked`, on a model that can (`draws`) or cannot take
/// rows' tokens with `sample_rows`: where it can, greedy rows are drawn there too
/// ([`SampleSpec::GREEDY`], the same id as the argmax), so every id a step picks lands
/// in `picked`, where the next decode step can take it ([`Model::decode_chain`]).
pub(super) fn readback_plan(asked: &[Readback], draws: bool) -> Plan {
    let read = (0..asked.len())
        .filter(|&r| asked[r] == Readback::Logits)
        .collect();
    let drawn = |a: &Readback| match a {
        Readback::Sample(_) => true,
        Readback::Argmax => draws,
        Readback::Logits => false,
    };
    let specs = asked
        .iter()
        .filter(|_| asked.iter().any(drawn))
        .map(|a| match a {
            Readback::Sample(spec) => *spec,
            Readback::Argmax if draws => SampleSpec::GREEDY,
            _ => SampleSpec::SKIP,
        })
        .collect();
    Plan {
        argmax: !draws && asked.contains(&Readback::Argmax),
        specs,
        read,
    }
}

/// Each of `t` rows' largest logit from the `top_k_rows` (k = 1) results of every
/// window of every wte chunk (`[windows, t, 3]`): windows hold ids in increasing order,
/// so a later window wins only with a larger value and ties go to the lower id, as in
/// [`super::sampling::argmax`]. A row with no value above the kernel's floor (all
/// `-inf` or NaN) gets id 0, as there. Empty when `top1` is (no argmax asked).
pub fn argmax_rows(top1: &[f32], t: usize, windows: usize) -> Vec<u32> {
    if top1.len() < windows * t * 3 {
        return Vec::new();
    }
    let best: Vec<Vec<TopK>> = (0..windows)
        .map(|i| parse_top_k(&top1[i * t * 3..], t, 1))
        .collect();
    (0..t)
        .map(|r| {
            let mut top: Option<(u32, f32)> = None;
            for (id, v) in best.iter().filter_map(|b| b[r].0.first().copied()) {
                if top.is_none_or(|(_, tv)| v > tv) {
                    top = Some((id, v));
                }
            }
            top.map_or(0, |(id, _)| id)
        })
        .collect()
}

impl Model {
    /// A generation's pages for up to `positions` positions, or `None` while the pool
    /// cannot promise them.
    pub fn kv_reserve(&self, positions: usize) -> Result<Option<SeqKv>> {
        self.kv_reserve_prompt(&[], positions)
    }

    /// [`Model::kv_reserve`] for a generation of `prompt`: it starts with the cached
    /// pages the prompt begins with ([`super::kv_pool::KvPool::reserve_prompt`]; its
    /// [`SeqKv::len`] positions need no prefill).
    pub fn kv_reserve_prompt(&self, prompt: &[u32], positions: usize) -> Result<Option<SeqKv>> {
        if positions > self.config.context_size {
            return Err(Error::SequenceTooLong {
                len: positions,
                max: self.config.context_size,
            });
        }
        if !self.kv.fits(positions) {
            return Err(Error::InvalidInput(format!(
                "the KV pool ({} positions) cannot hold a generation of {positions} positions (prompt + max_new_tokens): ask for fewer tokens, or the operator can raise --kv-pool-bytes",
                self.kv.pages * super::kv_pool::PAGE
            )));
        }
        Ok(self.kv.reserve_prompt(prompt, positions))
    }

    /// One generation alone: several tokens are a prefill chunk (matmul path), one a
    /// decode step (matrix-vector path); returns the logits `[V]` after the last.
    pub fn extend(&self, kv: &mut SeqKv, ids: &[u32]) -> Result<Vec<f32>> {
        match ids {
            [id] if !kv.is_empty() => {
                let mut out = self.decode(&mut [(kv, *id)])?;
                out.pop()
                    .ok_or_else(|| Error::InvalidInput("no logits".into()))
            }
            _ => Ok(self.prefill(kv, ids, true)?.unwrap_or_default()),
        }
    }

    /// Run `ids` (a chunk of a prompt) at positions `kv.len() ..`, store their keys and
    /// values, and with `logits` return the logits `[V]` after the last of them.
    pub fn prefill(&self, kv: &mut SeqKv, ids: &[u32], logits: bool) -> Result<Option<Vec<f32>>> {
        let mut out = self.prefill_many(&mut [(kv, ids, logits)])?;
        Ok(out.pop().flatten())
    }

    /// Chunks of up to [`MAX_PREFILL_PARTS`] prompts in one traversal (`(pages, ids,
    /// logits)` each, different generations): each prompt's rows are attended by the
    /// same kernel as alone, so its numbers do not depend on the others. Returns, per
    /// part, the logits `[V]` after its last token when asked.
    pub fn prefill_many(
        &self,
        parts: &mut [(&mut SeqKv, &[u32], bool)],
    ) -> Result<Vec<Option<Vec<f32>>>> {
        let mut select: Vec<(&mut SeqKv, &[u32], Option<Readback>)> = parts
            .iter_mut()
            .map(|(kv, ids, logits)| (&mut **kv, *ids, logits.then_some(Readback::Logits)))
            .collect();
        Ok(self
            .prefill_select(&mut select)?
            .into_iter()
            .map(|n| match n {
                Some(NextToken::Logits(l)) => Some(l),
                _ => None,
            })
            .collect())
    }

    /// [`Model::prefill_many`], each part saying what to read back after its last
    /// token (`None`: nothing, a chunk before the prompt's end): its logits, or the id
    /// of the largest, taken on the device as in [`Model::decode_select`].
    pub fn prefill_select(
        &self,
        parts: &mut [(&mut SeqKv, &[u32], Option<Readback>)],
    ) -> Result<Vec<Option<NextToken>>> {
        if parts.is_empty() {
            return Err(Error::InvalidInput(format!(
                "a prefill step takes 1 to {MAX_PREFILL_PARTS} prompts"
            )));
        }
        Ok(self.select_rows(&mut [], &[], parts)?.1)
    }

    /// The rows a step of decode rows and prompt chunks together may have
    /// ([`Model::mixed_select`]), or `None`: the model's steps cannot mix them (its
    /// decode steps do not take the deferred blocks: the software kernels,
    /// `decode_blocks` `per_linear`, a model they do not fit). A prefill step of at
    /// most `prompt` rows takes the same dispatches.
    pub fn mixed_rows(&self) -> Option<MixedRows> {
        let p = self.act.partials.as_ref()?;
        Some(MixedRows {
            prompt: p.rows.min(super::partials::PREFILL_ROWS),
            total: p.rows,
        })
    }

    /// A decode step and prompt chunks in one traversal: each of `batch`'s
    /// generations gets its next token as in [`Model::decode_select`] (`want` saying
    /// what to read back), and each part is extended as in [`Model::prefill_select`].
    /// Every row takes the deferred blocks' dispatches, which compute a row by the same
    /// code whatever the rows around it, and the decode step's LM head: a decode row's
    /// token and a prompt's first token are those of a decode step and of a prefill
    /// step alone. At most [`Model::mixed_rows`] rows (prompt rows and in all), and
    /// `max_batch` generations.
    pub fn mixed_select(
        &self,
        batch: &mut [(&mut SeqKv, u32)],
        want: &[Readback],
        parts: &mut [(&mut SeqKv, &[u32], Option<Readback>)],
    ) -> Result<(Vec<NextToken>, Vec<Option<NextToken>>)> {
        self.check_mixed(batch.len(), want, parts)?;
        self.select_rows(batch, want, parts)
    }

    /// A mixed step of `decode` rows (reading back `want`) and `parts` fits the model.
    pub(super) fn check_mixed(
        &self,
        decode: usize,
        want: &[Readback],
        parts: &[(&mut SeqKv, &[u32], Option<Readback>)],
    ) -> Result<()> {
        let Some(limit) = self.mixed_rows() else {
            return Err(Error::InvalidInput(
                "this model's steps cannot mix decode rows with prompts (they need the GPU-shaped kernels' deferred blocks): run them as a prefill step and a decode step".into(),
            ));
        };
        let prompt = parts.iter().map(|p| p.1.len()).sum::<usize>();
        let rows = decode + prompt;
        if rows == 0 || rows > limit.total || prompt > limit.prompt {
            return Err(Error::InvalidInput(format!(
                "a mixed step takes 1 to {} rows, at most {} of them prompt rows; not {rows} with {prompt}",
                limit.total, limit.prompt
            )));
        }
        self.check_batch("a mixed step", decode + parts.len(), decode, want)?;
        Ok(())
    }

    /// Run a step of `batch`'s decode rows (first; one a generation, reading back what
    /// `want` says) and `parts`' prompt chunks, reading back what each part asks after
    /// its last token.
    fn select_rows(
        &self,
        batch: &mut [(&mut SeqKv, u32)],
        want: &[Readback],
        parts: &mut [(&mut SeqKv, &[u32], Option<Readback>)],
    ) -> Result<(Vec<NextToken>, Vec<Option<NextToken>>)> {
        let step = self.lay_out(batch, want, parts)?;
        let plan = readback_plan(&step.asked, self.can_draw());
        let out = self.run_rows(&step, &plan)?;
        advance(batch, parts);
        let mut next = self.next_tokens(&step.asked, out).into_iter();
        let decoded = next.by_ref().take(batch.len()).collect();
        let out = parts
            .iter()
            .map(|p| p.2.and_then(|_| next.next()))
            .collect();
        Ok((decoded, out))
    }

    /// The rows of a step of `batch`'s decode rows (first) and `parts`' prompt chunks,
    /// their pool slots taken (the sequences advance once it is submitted), and what
    /// it reads back: `want`, then each part's ask.
    pub(super) fn lay_out(
        &self,
        batch: &mut [(&mut SeqKv, u32)],
        want: &[Readback],
        parts: &mut [(&mut SeqKv, &[u32], Option<Readback>)],
    ) -> Result<LaidOut> {
        if parts.len() > MAX_PREFILL_PARTS {
            return Err(Error::InvalidInput(format!(
                "a prefill step takes 1 to {MAX_PREFILL_PARTS} prompts"
            )));
        }
        for (kv, ids, _) in parts.iter() {
            if ids.is_empty() {
                return Err(Error::InvalidInput(
                    "nothing to extend the sequence with".into(),
                ));
            }
            self.check_tokens(ids)?;
            self.check_room(kv.len() + ids.len())?;
        }
        let ids: Vec<u32> = batch.iter().map(|(_, id)| *id).collect();
        self.check_tokens(&ids)?;
        let mut kvs: Vec<&mut SeqKv> = batch.iter_mut().map(|(kv, _)| &mut **kv).collect();
        let LaidOut {
            mut rows,
            mut tables,
            ..
        } = self.decode_rows(&mut kvs, &ids, want)?;
        let mut chunks = Vec::with_capacity(parts.len());
        for (kv, ids, want) in parts.iter_mut() {
            let pos = kv.len();
            let slots = kv.slots(ids.len())?;
            chunks.push(ChunkRows {
                row0: rows.len(),
                rows: ids.len(),
                pos,
                table0: tables.len(),
                logits: want.is_some(),
            });
            rows.extend(
                ids.iter()
                    .zip(slots)
                    .enumerate()
                    .map(|(i, (&id, slot))| Row {
                        id,
                        table: tables.len() as u32,
                        pos: (pos + i) as u32,
                        slot,
                    }),
            );
            tables.extend_from_slice(kv.table());
        }
        // the decode rows, then the parts asking, in order, are logits rows 0..
        let asked = want
            .iter()
            .copied()
            .chain(parts.iter().filter_map(|p| p.2))
            .collect();
        Ok(LaidOut {
            rows,
            tables,
            chunks: Some(chunks),
            decode: batch.len(),
            asked,
        })
    }

    /// Each asked row's result from a step's read-back: the logits rows read (in
    /// order), the argmax results of every asked row (`[windows, rows, 3]`) and the
    /// ids drawn for every asked row.
    fn next_tokens(&self, asked: &[Readback], out: StepOut) -> Vec<NextToken> {
        let top = argmax_rows(&out.top1, asked.len(), self.argmax_windows());
        let mut logits = out.logits.into_iter();
        asked
            .iter()
            .enumerate()
            .map(|(r, w)| match w {
                Readback::Logits => NextToken::Logits(logits.next().unwrap_or_default()),
                Readback::Argmax if !out.picked.is_empty() => {
                    NextToken::Argmax(out.picked.get(r).copied().unwrap_or(0))
                }
                Readback::Argmax => NextToken::Argmax(top.get(r).copied().unwrap_or(0)),
                Readback::Sample(_) => NextToken::Sampled(out.picked.get(r).copied().unwrap_or(0)),
            })
            .collect()
    }

    /// One token for each generation of `batch` (`(pages, token)` pairs, at most
    /// `max_batch`): returns the logits `[V]` of each, in order.
    pub fn decode(&self, batch: &mut [(&mut SeqKv, u32)]) -> Result<Vec<Vec<f32>>> {
        let want = vec![Readback::Logits; batch.len()];
        Ok(self
            .decode_select(batch, &want)?
            .into_iter()
            .map(|n| match n {
                NextToken::Logits(l) => l,
                NextToken::Argmax(_) | NextToken::Sampled(_) => {
                    unreachable!("every row asked for its logits")
                }
            })
            .collect())
    }

    /// [`Model::decode`], reading back for each row what `want` says: its logits, or
    /// only the id of its largest logit, taken on the device (a greedy row then moves
    /// 3 floats per wte chunk to the host instead of `V`). The logits are the same
    /// either way, and so is the token: ties go to the lower id, as in
    /// [`super::sampling::argmax`].
    pub fn decode_select(
        &self,
        batch: &mut [(&mut SeqKv, u32)],
        want: &[Readback],
    ) -> Result<Vec<NextToken>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        self.check_batch("a decode step", batch.len(), batch.len(), want)?;
        let ids: Vec<u32> = batch.iter().map(|(_, id)| *id).collect();
        self.check_tokens(&ids)?;
        let mut kvs: Vec<&mut SeqKv> = batch.iter_mut().map(|(kv, _)| &mut **kv).collect();
        let step = self.decode_rows(&mut kvs, &ids, want)?;
        let plan = readback_plan(want, self.can_draw());
        let out = self.run_rows(&step, &plan)?;
        for kv in kvs.iter_mut() {
            kv.advance(1);
        }
        Ok(self.next_tokens(want, out))
    }

    /// Whether the model takes rows' tokens with `sample_rows` (greedy and sampled
    /// ones): their logits fit the bindings the kernel reads. Only then can a decode
    /// step stay in flight ([`Model::decode_submit`]).
    pub fn can_draw(&self) -> bool {
        self.ops.sample.is_some()
    }

    /// A decode step's rows (`ids`, one per generation, at its next position, reading
    /// back what `want` says) and their page tables.
    pub(super) fn decode_rows(
        &self,
        kvs: &mut [&mut SeqKv],
        ids: &[u32],
        want: &[Readback],
    ) -> Result<LaidOut> {
        for kv in kvs.iter() {
            self.check_room(kv.len() + 1)?;
        }
        let mut tables = Vec::new();
        let mut rows = Vec::with_capacity(kvs.len());
        for (kv, &id) in kvs.iter_mut().zip(ids) {
            let pos = kv.len();
            let slot = kv.slots(1)?[0];
            rows.push(Row {
                id,
                table: tables.len() as u32,
                pos: pos as u32,
                slot,
            });
            tables.extend_from_slice(kv.table());
        }
        Ok(LaidOut {
            rows,
            tables,
            chunks: None,
            decode: kvs.len(),
            asked: want.to_vec(),
        })
    }

    /// Windows the decode step's argmax takes every wte chunk's logits in, all chunks
    /// together (in id order).
    fn argmax_windows(&self) -> usize {
        argmax_windows(&self.weights.wte.chunks)
    }

    /// `step` (named so in the error) takes at most `max_batch` generations, and a
    /// readback for each of its `rows` decode rows.
    fn check_batch(
        &self,
        step: &str,
        generations: usize,
        rows: usize,
        want: &[Readback],
    ) -> Result<()> {
        if generations > self.max_batch {
            return Err(Error::InvalidInput(format!(
                "{step} takes at most {} generations",
                self.max_batch
            )));
        }
        if want.len() != rows {
            return Err(Error::InvalidInput(format!(
                "{rows} rows but {} readbacks asked",
                want.len()
            )));
        }
        Ok(())
    }

    /// A generation may hold at most the context's positions.
    fn check_room(&self, len: usize) -> Result<()> {
        if len > self.config.context_size {
            return Err(Error::SequenceTooLong {
                len,
                max: self.config.context_size,
            });
        }
        Ok(())
    }

    pub(super) fn check_tokens(&self, ids: &[u32]) -> Result<()> {
        if let Some(&id) = ids
            .iter()
            .find(|&&id| id as usize >= self.config.vocab_size)
        {
            return Err(Error::InvalidInput(format!(
                "token {id} is outside the model's vocabulary (vocab_size {})",
                self.config.vocab_size
            )));
        }
        Ok(())
    }

    /// Write a step's rows' page-table offsets, positions and pool slots, its page
    /// tables and its rows' draws.
    pub(super) fn write_rows(&self, step: &LaidOut, plan: &Plan) {
        let (rows, tables) = (&step.rows, &step.tables);
        let q = &self.ctx.queue;
        let meta: Vec<[u32; 2]> = rows.iter().map(|r| [r.table, r.pos]).collect();
        let slots: Vec<u32> = rows.iter().map(|r| r.slot).collect();
        q.write_buffer(&self.act.kv_rows, 0, bytemuck::cast_slice(&meta));
        q.write_buffer(&self.act.kv_slots, 0, bytemuck::cast_slice(&slots));
        if !tables.is_empty() {
            q.write_buffer(&self.act.kv_tables, 0, bytemuck::cast_slice(tables));
        }
        if !plan.specs.is_empty() {
            let specs = bytemuck::cast_slice(&plan.specs);
            q.write_buffer(&self.act.sample_specs, 0, specs);
        }
    }

    /// Write the step's rows, run the traversal, read back what `plan` asks: the logits
    /// of the rows `plan.read` (`[V]` each), with `argmax` the `top1` results (`[windows,
    /// rows, 3]`), with specs the ids drawn (one per asked row).
    fn run_rows(&self, step: &LaidOut, plan: &Plan) -> Result<StepOut> {
        let (rows, kind) = (&step.rows, step.kind(plan));
        let read = &plan.read;
        let t = rows.len();
        if t > self.config.context_size {
            return Err(Error::SequenceTooLong {
                len: t,
                max: self.config.context_size,
            });
        }
        let v = self.config.vocab_size;
        let chunks = &self.weights.wte.chunks;
        // the argmax results: of every row of a decode step, of each asking prompt's
        // last row of a prefill step
        let top_rows = match kind {
            StepKind::Decode { argmax: true, .. } => t,
            StepKind::Prefill {
                parts,
                decode,
                argmax: true,
                ..
            } => decode + parts.iter().filter(|p| p.logits).count(),
            _ => 0,
        };
        let top_floats = self.argmax_windows() * top_rows * 3;
        let drawn = plan.specs.len();
        if drawn > 0 && !self.can_draw() {
            return Err(Error::InvalidInput(
                "this model cannot draw on the device (its logits span more bindings than the kernel reads): read the logits back".into(),
            ));
        }
        // a chained decode step follows only the step it was chained to
        self.steps.fetch_add(1, Ordering::SeqCst);
        self.ctx.scoped("generation step", || {
            let ids: Vec<u32> = rows.iter().map(|r| r.id).collect();
            self.write_rows(step, plan);
            let parts =
                self.submit_step("generation step", &ids, &step.positions(), kind, |enc| {
                    let rb = &self.act.readback;
                    let mut at = 0u64;
                    if top_floats > 0 {
                        enc.copy_buffer_to_buffer(&self.act.top1, 0, rb, 0, top_floats as u64 * 4);
                        at = top_floats as u64 * 4;
                    }
                    if drawn > 0 {
                        enc.copy_buffer_to_buffer(&self.act.picked, 0, rb, at, drawn as u64 * 4);
                        at += drawn as u64 * 4;
                    }
                    // the rows asked for, of every wte chunk's logits [R, chunk], runs of
                    // consecutive rows in one copy
                    for (buf, ch) in self.act.logits.iter().zip(chunks) {
                        let row_bytes = (ch.rows * 4) as u64;
                        let mut i = 0;
                        while i < read.len() {
                            let mut j = i + 1;
                            while j < read.len() && read[j] == read[j - 1] + 1 {
                                j += 1;
                            }
                            let bytes = (j - i) as u64 * row_bytes;
                            enc.copy_buffer_to_buffer(
                                buf,
                                read[i] as u64 * row_bytes,
                                rb,
                                at,
                                bytes,
                            );
                            at += bytes;
                            i = j;
                        }
                    }
                    top_floats + drawn + read.len() * v
                })?;
            let mut out = vec![vec![0.0; v]; read.len()];
            let mut off = top_floats + drawn;
            for ch in chunks {
                for row in out.iter_mut() {
                    row[ch.row_start..ch.row_start + ch.rows]
                        .copy_from_slice(&parts[off..off + ch.rows]);
                    off += ch.rows;
                }
            }
            Ok(StepOut {
                logits: out,
                top1: parts[..top_floats].to_vec(),
                picked: parts[top_floats..top_floats + drawn]
                    .iter()
                    .map(|f| f.to_bits())
                    .collect(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::argmax_rows;

    /// `[chunks, t, 3]` results from `(id, value)` per chunk and row (`None`: the
    /// kernel found nothing above its floor).
    fn results(per_chunk: &[Vec<Option<(u32, f32)>>]) -> Vec<f32> {
        per_chunk
            .iter()
            .flatten()
            .flat_map(|b| match b {
                Some((id, v)) => [f32::from_bits(*id), *v, 0.0],
                None => [f32::from_bits(u32::MAX), -3.4e38, 0.0],
            })
            .collect()
    }

    #[test]
    fn chunks_merge_to_the_first_largest_id() {
        let top1 = results(&[
            vec![Some((3, 1.0)), Some((7, 2.0)), None, Some((1, 0.5))],
            vec![Some((40, 1.5)), Some((35, 2.0)), None, Some((33, 0.25))],
        ]);
        // larger in the later chunk; a tie keeps the earlier (lower) id; nothing
        // found anywhere gives 0; the earlier chunk's larger value stays
        assert_eq!(argmax_rows(&top1, 4, 2), vec![40, 7, 0, 1]);
        assert!(argmax_rows(&[], 4, 2).is_empty());
    }
}
