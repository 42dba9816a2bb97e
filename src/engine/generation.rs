//! Active generations: admitted prompts, the tokens picked from their logits (on up
//! to one thread per core), streaming text with stop strings, and how each ends.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use super::load::Loaded;
use super::requests::{FinishReason, GenEvent, GenerateRequest, GenerateResult};
use crate::error::{Error, Result};
use crate::json::JsonState;
use crate::model::kv_pool::SeqKv;
use crate::model::sampling::{token_logprob, Sampler, TokenLogprob};
use crate::model::{NextToken, Readback};
use crate::tokenizer::TextStream;

/// A generation admitted: its prompt is being prefilled (chunk by chunk) or it
/// decodes, one token per engine step, in the batch of every decoding generation.
pub(super) struct Active {
    /// Which generation it is (the engine's count): a decode step in flight names its
    /// rows by it.
    pub(super) serial: u64,
    pub(super) loaded: Arc<Loaded>,
    pub(super) kv: SeqKv,
    pub(super) sampler: Sampler,
    pub(super) req: GenerateRequest,
    /// The prompt; `prefilled` of it are in the KV cache.
    pub(super) prompt: Vec<u32>,
    pub(super) prefilled: usize,
    /// Prompt tokens found in the prefix cache at admission.
    pub(super) cached: usize,
    pub(super) generated: Vec<u32>,
    /// Bytes of the text already streamed.
    pub(super) emitted: usize,
    /// The generated tokens' text, decoded a token at a time.
    pub(super) text: TextStream,
    /// Bytes of that text already searched for stop strings.
    pub(super) searched: usize,
    /// Logits after the last token in the cache to sample from, or for a greedy row
    /// the token the device picked (None while the prompt is prefilled, or while the
    /// sampled token waits for its decode step).
    pub(super) next_from: Option<NextToken>,
    /// The token picked from `next_from` (and its logprob when asked), before it is
    /// streamed (`pick_tokens` does the rows of a step together).
    pub(super) picked: Option<(u32, Option<TokenLogprob>)>,
    /// The token sampled and streamed, to run through the model next step.
    pub(super) next: Option<u32>,
    /// Constrained output (`req.json`'s grammar): how far the text is into its value.
    pub(super) json: Option<JsonState>,
    pub(super) events: mpsc::UnboundedSender<GenEvent>,
    pub(super) started: Instant,
    pub(super) prefill_time: f64,
    pub(super) deadline: Instant,
}

/// A generation accepted and waiting for a slot (a batch place and KV pages).
pub(super) struct Waiting {
    pub(super) req: GenerateRequest,
    pub(super) deadline: Instant,
    pub(super) events: mpsc::UnboundedSender<GenEvent>,
    pub(super) queued: Instant,
    /// The prompt tokenized and checked (kept while the pool is full).
    pub(super) prompt: Option<Vec<u32>>,
}

/// The prompt's token ids, checked against the model (not empty, room for a token; a
/// prompt that only scores itself, `max_new_tokens` 0, may fill the whole context).
pub(super) fn prompt_ids(loaded: &Loaded, req: &GenerateRequest) -> Result<Vec<u32>> {
    loaded.model.check_head()?;
    let ids = match &req.prompt_ids {
        Some(ids) => ids.clone(),
        None => loaded.tokenizer.encode(&req.prompt)?,
    };
    if ids.is_empty() {
        return Err(Error::InvalidInput("input text must not be empty".into()));
    }
    let ctx_len = loaded.model.config.context_size;
    let max = if req.max_new_tokens == 0 {
        ctx_len
    } else {
        ctx_len - 1
    };
    if ids.len() > max {
        return Err(Error::SequenceTooLong {
            len: ids.len(),
            max,
        });
    }
    loaded.model.check_ids(&ids)?;
    let vocab = loaded.tokenizer.vocab_size();
    req.sampling.adjust.check_ids(vocab)?;
    super::requests::check_stop_ids(&req.stop_ids, vocab)?;
    Ok(ids)
}

/// The byte length of the longest prefix of `text` that may be shown: it must not end
/// inside an unfinished character (U+FFFD from a split byte sequence) and must hold
/// back what could still become the start of a stop string.
pub(super) fn showable(text: &str, stop: &[String]) -> usize {
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
    /// Prompt tokens not yet prefilled (those found in the prefix cache never are).
    pub(super) fn unfilled(&self) -> usize {
        self.prompt.len() - self.prefilled
    }

    /// What its next step (its prompt's last chunk, or a decode step) reads back, for a
    /// generation without logprobs, changes to its logits (`sampling::LogitAdjust`) or
    /// a constrained output (`crate::json`) on a model that picks tokens on the device: only the device's argmax
    /// (greedy), or only the id of the device's draw (sampled, draw number
    /// `generated.len()`); else the logits.
    pub(super) fn readback(&self) -> Readback {
        self.readback_for(self.generated.len())
    }

    /// [`Active::readback`] for its token number `n` (a step chained behind the one
    /// in flight picks token `generated.len() + 1`).
    pub(super) fn readback_for(&self, n: usize) -> Readback {
        let model = &self.loaded.model;
        let greedy = self.req.sampling.is_greedy();
        let only_ids = self.req.logprobs.is_none()
            && !self.req.sampling.adjust.acts_at(n)
            && self.json.is_none();
        if only_ids && greedy && model.argmax_on_device {
            Readback::Argmax
        } else if only_ids && !greedy && model.sample_on_device {
            let draw = self.sampler.draw(n as u64);
            Readback::Sample(draw.into())
        } else {
            Readback::Logits
        }
    }

    /// Pick the next token from `next_from` (sampling from the logits, or the device's
    /// argmax) into `picked`, unless there is nothing to pick or no token is wanted.
    pub(super) fn pick(&mut self) {
        if self.picked.is_some() || self.req.max_new_tokens == 0 {
            return;
        }
        self.picked = match self.next_from.take() {
            Some(NextToken::Logits(logits)) => {
                let n = self.generated.len() as u64;
                let adjust = &self.req.sampling.adjust;
                let next = if !adjust.acts_at(n as usize) && self.json.is_none() {
                    self.sampler.sample(&logits, n)
                } else {
                    let mut changed = logits.to_vec();
                    adjust.apply(&mut changed, &self.prompt, &self.generated);
                    if let (Some(g), Some(state)) = (&self.req.json, self.json) {
                        // plain text that may end: the tokens that end it too
                        let mut ends = self.req.stop_ids.clone();
                        if !self.req.ignore_eos {
                            ends.extend(&self.loaded.end_ids);
                        }
                        self.loaded
                            .tokenizer
                            .json_vocab()
                            .mask(g, state, &mut changed, &ends);
                    }
                    self.sampler.sample(&changed, n)
                };
                // the model's own logprobs, before the changes
                let logprob = self.req.logprobs.map(|k| token_logprob(&logits, next, k));
                Some((next, logprob))
            }
            // a row without logprobs (`Active::readback`)
            Some(NextToken::Argmax(id) | NextToken::Sampled(id)) => Some((id, None)),
            None => None,
        };
    }

    pub(super) fn result(&self, text: String, finish_reason: FinishReason) -> GenerateResult {
        let elapsed = self.started.elapsed().as_secs_f64();
        let decode_time = (elapsed - self.prefill_time).max(1e-9);
        GenerateResult {
            text,
            tokens: self.generated.len(),
            token_ids: self.generated.clone(),
            prompt_tokens: self.prompt.len(),
            cached_tokens: self.cached,
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
pub(super) fn pick_tokens(active: &mut [Active]) {
    let mut rows: Vec<&mut Active> = active
        .iter_mut()
        .filter(|a| a.req.max_new_tokens > 0 && matches!(a.next_from, Some(NextToken::Logits(_))))
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

/// With a token picked (by [`pick_tokens`]): stream it, and either finish or queue it
/// for the next decode step.
pub(super) fn advance(a: &mut Active) -> Result<Option<GenerateResult>> {
    if a.req.max_new_tokens == 0 {
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
    // constrained JSON: the value closed (or, never picked, a token that cannot continue it)
    let json_end = match (&a.req.json, a.json) {
        (Some(g), Some(state)) => {
            a.json = g.after(state, &tok.token_bytes(next));
            a.json.is_none_or(|s| s.done())
        }
        _ => false,
    };
    tok.stream_step(&mut a.text, &a.generated)?;
    let text = a.text.text();
    // stop strings: only the text new since the last search (and the bytes before it
    // a stop string could start in) is searched
    // before min_tokens nothing ends the generation but its length
    let early = a.generated.len() < a.req.min_tokens;
    let stop_at = a
        .req
        .stop
        .iter()
        .filter(|_| !early)
        .filter_map(|s| {
            let mut from = a.searched.saturating_sub(s.len().saturating_sub(1));
            while !text.is_char_boundary(from) {
                from -= 1;
            }
            text[from..].find(s.as_str()).map(|i| from + i)
        })
        .min();
    a.searched = text.len();
    let eot = !early
        && ((!a.req.ignore_eos && a.loaded.end_ids.contains(&next))
            || a.req.stop_ids.contains(&next));
    let finish = if stop_at.is_some() || json_end {
        Some(FinishReason::Stop)
    } else if eot {
        Some(FinishReason::EndOfText)
    } else if a.generated.len() >= a.req.max_new_tokens {
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
