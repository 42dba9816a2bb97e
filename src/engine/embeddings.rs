//! Embeddings (`/v1/embeddings`): tokenize each input, run them in shared traversals
//! without the LM head (up to `MAX_PREFILL_PARTS` inputs and the context's tokens
//! each), and answer every input's last hidden state.

use std::time::Instant;

use tokio::sync::oneshot;

use super::load::Loaded;
use super::requests::{EmbedInput, EmbedReply};
use super::scheduler::Worker;
use super::state::timeout_error;
use crate::error::{Error, Result};
use crate::model::MAX_PREFILL_PARTS;

/// Each input's tokens and where its second text starts (a pair's; else its
/// length); an error names the input at fault (`input[i]`).
fn input_ids(l: &Loaded, inputs: &[EmbedInput]) -> Result<Vec<(Vec<u32>, usize)>> {
    inputs
        .iter()
        .enumerate()
        .map(|(i, input)| {
            let (ids, second) = match input {
                EmbedInput::Text(text) => {
                    let ids = l.tokenizer.encode(text)?;
                    let n = ids.len();
                    (ids, n)
                }
                EmbedInput::Ids(ids) => (ids.clone(), ids.len()),
                EmbedInput::Pair(a, b) => l.tokenizer.encode_pair(a, b)?,
            };
            l.model.check_ids(&ids).map_err(|e| at_input(i, e))?;
            Ok((ids, second))
        })
        .collect()
}

/// `e` about input `i`.
fn at_input(i: usize, e: Error) -> Error {
    match e {
        Error::InvalidInput(m) => Error::InvalidInput(format!("input[{i}]: {m}")),
        Error::SequenceTooLong { len, max } => Error::InvalidInput(format!(
            "input[{i}] is {len} tokens, more than the model's context of {max}"
        )),
        other => other,
    }
}

/// The inputs in groups of consecutive ones that share a traversal.
fn groups(lens: &[usize], context: usize) -> Vec<std::ops::Range<usize>> {
    let mut out: Vec<std::ops::Range<usize>> = Vec::new();
    let mut tokens = 0;
    for (i, &n) in lens.iter().enumerate() {
        match out.last_mut() {
            Some(g) if g.len() < MAX_PREFILL_PARTS && tokens + n <= context => {
                g.end = i + 1;
                tokens += n;
            }
            _ => {
                out.push(i..i + 1);
                tokens = n;
            }
        }
    }
    out
}

impl Worker {
    /// Answer an embeddings request: its inputs' last hidden states, in order.
    pub(super) fn embeds(
        &mut self,
        inputs: Vec<EmbedInput>,
        deadline: Instant,
        reply: oneshot::Sender<Result<EmbedReply>>,
    ) {
        self.started();
        if Instant::now() > deadline || reply.is_closed() {
            let _ = reply.send(Err(timeout_error("the embeddings")));
            return;
        }
        let Some(l) = self.loaded.clone() else {
            let _ = reply.send(Err(Error::ModelNotInitialized));
            return;
        };
        let start = Instant::now();
        self.state.set_busy("embeddings", deadline);
        let r = self.embed_all(&l, &inputs, deadline);
        self.state.clear_busy();
        let r = r.map(|(vectors, tokens)| EmbedReply {
            vectors,
            tokens,
            seconds: start.elapsed().as_secs_f64(),
        });
        match &r {
            Ok(out) => {
                if let Ok(mut c) = self.state.counters.write() {
                    c.total_inferences += 1;
                    c.total_tokens += out.tokens.iter().sum::<usize>() as u64;
                    c.total_time += out.seconds;
                    c.last_inference_time = out.seconds;
                }
            }
            Err(e) => self.note_device_loss(e),
        }
        let _ = reply.send(r);
    }

    fn embed_all(
        &self,
        l: &Loaded,
        inputs: &[EmbedInput],
        deadline: Instant,
    ) -> Result<(Vec<Vec<f32>>, Vec<usize>)> {
        let pairs = inputs.iter().any(|i| matches!(i, EmbedInput::Pair(..)));
        if pairs && l.model.classifier.is_none() {
            return Err(Error::InvalidInput(
                "the loaded model has no classification head: reranking needs a cross-encoder (BertForSequenceClassification, XLMRobertaForSequenceClassification)".into(),
            ));
        }
        let tokenized = input_ids(l, inputs)?;
        let lens: Vec<usize> = tokenized.iter().map(|(ids, _)| ids.len()).collect();
        let mut vectors = Vec::with_capacity(lens.len());
        for g in groups(&lens, l.model.config.context_size) {
            if Instant::now() > deadline {
                return Err(timeout_error("the embeddings"));
            }
            if pairs {
                let batch: Vec<(&[u32], usize)> = tokenized[g]
                    .iter()
                    .map(|(ids, s)| (ids.as_slice(), *s))
                    .collect();
                vectors.extend(l.model.score_pairs(&batch)?);
            } else {
                let batch: Vec<&[u32]> =
                    tokenized[g].iter().map(|(ids, _)| ids.as_slice()).collect();
                vectors.extend(l.model.embed_many(&batch)?);
            }
        }
        Ok((vectors, lens))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_group_by_count_and_context_in_order() {
        assert_eq!(groups(&[3, 4, 5], 12), vec![0..3]);
        assert_eq!(groups(&[3, 4, 5], 11), vec![0..2, 2..3]);
        assert_eq!(groups(&[10, 10, 1], 10), vec![0..1, 1..2, 2..3]);
        let many = [1; MAX_PREFILL_PARTS + 1];
        assert_eq!(
            groups(&many, 1000),
            vec![
                0..MAX_PREFILL_PARTS,
                MAX_PREFILL_PARTS..MAX_PREFILL_PARTS + 1
            ]
        );
        assert!(groups(&[], 10).is_empty());
    }
}
