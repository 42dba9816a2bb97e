//! Forwards (the explorer's and `/forward`'s requests): tokenize, run alone or
//! shared, and turn the model's captures into a reply.

use std::time::Instant;

use tokio::sync::oneshot;

use super::load::Loaded;
use super::requests::{ForwardReply, ForwardRequest, LayerAttention, Prediction, TokenInfo};
use crate::error::{Error, Result};
use crate::model::CapturedForward;

/// A forward waiting in the engine: the request, its deadline, where the reply goes.
pub(super) type QueuedForward = (
    ForwardRequest,
    Instant,
    oneshot::Sender<Result<ForwardReply>>,
);

/// A forward with its text tokenized.
pub(super) struct TokenizedForward {
    pub(super) ids: Vec<u32>,
    pub(super) tokens: Vec<TokenInfo>,
    pub(super) job: QueuedForward,
}

/// The tokens of a forward's text (truncated to `max_length`).
pub(super) fn forward_tokens(l: &Loaded, req: &ForwardRequest) -> Result<Vec<TokenInfo>> {
    l.model.check_head()?;
    if req.text.is_empty() {
        return Err(Error::InvalidInput("input text must not be empty".into()));
    }
    let spans = l.tokenizer.encode_spans(&req.text)?;
    let n = req.max_length.map_or(spans.len(), |n| n.min(spans.len()));
    (0..n)
        .map(|i| {
            let s = spans[i];
            // its own bytes: the text's; a character byte-level BPE split over several
            // tokens gives each of them the character's range (shared with a
            // neighbour), so such a token's own text is decoded
            let shared = (i > 0 && spans[i - 1].end > s.start)
                || spans.get(i + 1).is_some_and(|next| next.start < s.end);
            let text = match req.text.get(s.start..s.end) {
                Some(t) if !shared => t.to_string(),
                _ => l.tokenizer.decode(&[s.id])?,
            };
            Ok(TokenInfo {
                id: s.id,
                text,
                start: s.start,
                end: s.end,
            })
        })
        .collect()
}

impl ForwardRequest {
    /// Whether it may share a traversal with other forwards (no statistics asked).
    pub(super) fn shared(&self) -> bool {
        !self.capture && self.attention.is_none() && self.logit_lens == 0
    }
}

/// A forward run alone: with statistics, the chosen layers' attention weights
/// (`[NH, T, T]` each) and the logit lens when asked.
pub(super) fn forward_alone(
    l: &Loaded,
    ids: &[u32],
    req: &ForwardRequest,
) -> Result<CapturedForward> {
    if req.shared() {
        return Ok(CapturedForward {
            output: l.model.forward(ids, req.top_k, false)?,
            attention: Vec::new(),
            logit_lens: Vec::new(),
            next_token_ranks: Vec::new(),
        });
    }
    let cfg = &l.model.config;
    let lens_k = req.logit_lens;
    let sel = req.attention.as_ref();
    if let Some(&h) = sel
        .and_then(|s| s.heads.as_ref())
        .into_iter()
        .flatten()
        .find(|&&h| h >= cfg.n_head)
    {
        return Err(Error::InvalidInput(format!(
            "capture_attention head {h} does not exist (the model has {} heads, 0..{})",
            cfg.n_head,
            cfg.n_head - 1
        )));
    }
    let layers = sel.map_or_else(Vec::new, |s| s.layers(cfg.n_layer));
    l.model.forward_captured(ids, req.top_k, &layers, lens_k)
}

/// The reply of a forward from the model's output, the tokens that went in and the
/// attention weights asked for (`[NH, T, T]` per chosen layer).
pub(super) fn forward_reply(
    l: &Loaded,
    captured: CapturedForward,
    token_list: Vec<TokenInfo>,
    req: &ForwardRequest,
) -> Result<ForwardReply> {
    let CapturedForward {
        output: out,
        attention: weights,
        logit_lens,
        next_token_ranks,
    } = captured;
    let cfg = &l.model.config;
    let predictions = |tops: &[crate::model::TokenProb]| -> Result<Vec<Prediction>> {
        tops.iter()
            .map(|p| {
                Ok(Prediction {
                    token_id: p.token_id,
                    token: l.tokenizer.decode(&[p.token_id])?,
                    probability: p.probability,
                })
            })
            .collect()
    };
    let logit_lens = if req.logit_lens > 0 {
        Some(
            logit_lens
                .iter()
                .map(|layer| {
                    layer
                        .iter()
                        .map(|pos| predictions(pos))
                        .collect::<Result<Vec<_>>>()
                })
                .collect::<Result<Vec<_>>>()?,
        )
    } else {
        None
    };
    let t = out.tokens;
    let attention = match &req.attention {
        None => Vec::new(),
        Some(sel) => {
            let heads = sel.heads(cfg.n_head);
            sel.layers(cfg.n_layer)
                .into_iter()
                .zip(&weights)
                .map(|(layer, w)| {
                    let row = |h: usize, q: usize| &w[(h * t + q) * t..(h * t + q + 1) * t];
                    if sel.half {
                        // the causal triangle as f16 bytes: half the numbers, 2 bytes each
                        let mut bytes = Vec::with_capacity(heads.len() * t * (t + 1));
                        for &h in &heads {
                            for q in 0..t {
                                for &x in &row(h, q)[..=q] {
                                    bytes.extend_from_slice(&half::f16::from_f32(x).to_le_bytes());
                                }
                            }
                        }
                        use base64::Engine as _;
                        LayerAttention {
                            layer,
                            heads: heads.clone(),
                            weights: Vec::new(),
                            weights_f16: Some(
                                base64::engine::general_purpose::STANDARD.encode(bytes),
                            ),
                        }
                    } else {
                        LayerAttention {
                            layer,
                            heads: heads.clone(),
                            weights: heads
                                .iter()
                                .map(|&h| (0..t).map(|q| row(h, q).to_vec()).collect())
                                .collect(),
                            weights_f16: None,
                        }
                    }
                })
                .collect()
        }
    };
    let listed_blocks = match (&req.attention, &l.model.sparse) {
        (Some(_), Some(sp)) => {
            let b = sp.layout.block;
            Some(
                (0..t.div_ceil(b))
                    .map(|qb| {
                        (0..=qb)
                            .filter(|&kb| sp.layout.allows(qb * b, kb * b))
                            .collect()
                    })
                    .collect(),
            )
        }
        _ => None,
    };
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
        token_list,
        vocab: out.vocab,
        n_embed: l.model.config.n_embed,
        n_head: l.model.config.n_head,
        n_kv_head: Some(l.model.config.kv_heads()).filter(|&k| k != l.model.config.n_head),
        top,
        capture: out.capture,
        attention,
        listed_blocks,
        logit_lens,
        next_token_ranks,
        seconds: out.seconds,
        device_memory_mb: l.model.device_bytes as f64 / (1u64 << 20) as f64,
    })
}
