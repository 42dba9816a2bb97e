//! Generation steps over the paged KV cache ([`super::kv_pool`]). Both go through the
//! model's one traversal ([`Model::encode_step`]):
//!
//! - [`Model::prefill`]: a chunk of one generation's prompt at its next positions, on
//!   the matmul path; keys and values are stored, and the logits of the last row are
//!   read back when asked (the final chunk).
//! - [`Model::decode`]: one new token for each of up to `max_batch` generations, each
//!   at its own position and attending to its own pages, on the matrix-vector path;
//!   the logits of every row are read back.
//!
//! Every kernel computes a row by the same code whatever the rows around it, so a
//! generation's tokens are the same alone or in any batch.

use super::forward::{ChunkRows, StepKind, MAX_PREFILL_PARTS};
use super::kv_pool::SeqKv;
use super::Model;
use crate::error::{Error, Result};

/// One row of a step: the token, its generation's pages, and where it goes.
struct Row {
    id: u32,
    /// Offset of its generation's page table in the step's tables.
    table: u32,
    pos: u32,
    slot: u32,
}

impl Model {
    /// A generation's pages for up to `positions` positions, or `None` while the pool
    /// cannot promise them.
    pub fn kv_reserve(&self, positions: usize) -> Result<Option<SeqKv>> {
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
        Ok(self.kv.reserve(positions))
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
        if parts.is_empty() || parts.len() > MAX_PREFILL_PARTS {
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
        let mut rows = Vec::new();
        let mut tables = Vec::new();
        let mut chunks = Vec::with_capacity(parts.len());
        for (kv, ids, logits) in parts.iter_mut() {
            let pos = kv.len();
            let slots = kv.slots(ids.len())?;
            chunks.push(ChunkRows {
                row0: rows.len(),
                rows: ids.len(),
                pos,
                table0: tables.len(),
                logits: *logits,
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
        let wanted = chunks.iter().filter(|c| c.logits).count();
        let flat = self.run_rows(&rows, &tables, StepKind::Prefill(&chunks), wanted)?;
        let v = self.config.vocab_size;
        let mut logits = flat.chunks(v);
        let mut out = Vec::with_capacity(parts.len());
        for ((kv, ids, want), _) in parts.iter_mut().zip(&chunks) {
            kv.advance(ids.len());
            out.push(if *want {
                logits.next().map(<[f32]>::to_vec)
            } else {
                None
            });
        }
        Ok(out)
    }

    /// One token for each generation of `batch` (`(pages, token)` pairs, at most
    /// `max_batch`): returns the logits `[V]` of each, in order.
    pub fn decode(&self, batch: &mut [(&mut SeqKv, u32)]) -> Result<Vec<Vec<f32>>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        if batch.len() > self.max_batch {
            return Err(Error::InvalidInput(format!(
                "a decode step takes at most {} generations",
                self.max_batch
            )));
        }
        let ids: Vec<u32> = batch.iter().map(|(_, id)| *id).collect();
        self.check_tokens(&ids)?;
        let mut tables = Vec::new();
        let mut rows = Vec::with_capacity(batch.len());
        for (kv, _) in batch.iter() {
            self.check_room(kv.len() + 1)?;
        }
        for (kv, id) in batch.iter_mut() {
            let pos = kv.len();
            let slot = kv.slots(1)?[0];
            rows.push(Row {
                id: *id,
                table: tables.len() as u32,
                pos: pos as u32,
                slot,
            });
            tables.extend_from_slice(kv.table());
        }
        let b = rows.len();
        let flat = self.run_rows(&rows, &tables, StepKind::Decode, b)?;
        for (kv, _) in batch.iter_mut() {
            kv.advance(1);
        }
        let v = self.config.vocab_size;
        Ok(flat.chunks(v).map(<[f32]>::to_vec).collect())
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

    fn check_tokens(&self, ids: &[u32]) -> Result<()> {
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

    /// Write the step's rows, run the traversal, read back the `logit_rows` rows of
    /// logits `kind` computes (`[logit_rows, V]`).
    fn run_rows(
        &self,
        rows: &[Row],
        tables: &[u32],
        kind: StepKind,
        logit_rows: usize,
    ) -> Result<Vec<f32>> {
        let t = rows.len();
        if t > self.config.context_size {
            return Err(Error::SequenceTooLong {
                len: t,
                max: self.config.context_size,
            });
        }
        let v = self.config.vocab_size;
        self.ctx.scoped("generation step", || {
            let q = &self.ctx.queue;
            let ids: Vec<u32> = rows.iter().map(|r| r.id).collect();
            let pos: Vec<u32> = rows.iter().map(|r| r.pos).collect();
            let meta: Vec<[u32; 2]> = rows.iter().map(|r| [r.table, r.pos]).collect();
            let slots: Vec<u32> = rows.iter().map(|r| r.slot).collect();
            q.write_buffer(&self.act.kv_rows, 0, bytemuck::cast_slice(&meta));
            q.write_buffer(&self.act.kv_slots, 0, bytemuck::cast_slice(&slots));
            if !tables.is_empty() {
                q.write_buffer(&self.act.kv_tables, 0, bytemuck::cast_slice(tables));
            }
            let parts = self.submit_step("generation step", &ids, &pos, kind, |enc| {
                // logits rows [R, chunk] of every wte chunk, gathered to [R, V]
                let mut at = 0u64;
                for (buf, ch) in self.act.logits.iter().zip(&self.weights.wte.chunks) {
                    let bytes = (logit_rows * ch.rows * 4) as u64;
                    enc.copy_buffer_to_buffer(buf, 0, &self.act.readback, at, bytes);
                    at += bytes;
                }
                logit_rows * v
            })?;
            let mut out = vec![0.0; logit_rows * v];
            let mut off = 0;
            for ch in &self.weights.wte.chunks {
                for r in 0..logit_rows {
                    out[r * v + ch.row_start..r * v + ch.row_start + ch.rows]
                        .copy_from_slice(&parts[off + r * ch.rows..off + (r + 1) * ch.rows]);
                }
                off += logit_rows * ch.rows;
            }
            Ok(out)
        })
    }
}
