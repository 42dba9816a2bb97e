//! What a forward returns: the top-k next tokens, per-layer capture statistics
//! (norms, entropies, expert usage) and the timing, as the engine and the API see them.

use serde::Serialize;

/// One of the most likely next tokens.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TokenProb {
    pub token_id: u32,
    pub probability: f32,
}

/// Statistics of one block, computed on the device.
#[derive(Clone, Debug, Serialize)]
pub struct LayerCapture {
    pub layer_idx: usize,
    /// Mean over query positions of the attention-row entropy (nats), per head.
    pub attention_entropy: Vec<f32>,
    /// Mean and max over positions of ‖x‖₂ of the residual stream after the block.
    pub residual_norm_mean: f32,
    pub residual_norm_max: f32,
    /// Block-sparse layers: the layout's block size and density over this sequence.
    pub sparse_block_size: Option<usize>,
    pub sparse_density: Option<f64>,
    /// MoE layers: routing statistics of this forward.
    pub moe: Option<MoeCapture>,
}

/// Routing statistics of one MoE layer, computed on the device.
#[derive(Clone, Debug, Serialize)]
pub struct MoeCapture {
    /// Share of the token→expert assignments that went to each expert (sums to 1).
    pub expert_usage: Vec<f32>,
    /// E · Σᵢ fᵢ · Pᵢ (1 = balanced, E = everything on one expert).
    pub load_balance_loss: f32,
    /// Each token's chosen experts and gate weights (renormalised as the model uses
    /// them), best first: `[token][k]` of (expert, weight).
    pub routing: Vec<Vec<(u32, f32)>>,
}

/// What `capture_data` asks for.
#[derive(Clone, Debug, Serialize)]
pub struct Capture {
    /// Mean ‖x‖₂ of the embedding output (token + position) over positions.
    pub embedding_norm_mean: f32,
    pub layers: Vec<LayerCapture>,
}

/// A captured forward: its output (with statistics), the attention weights asked for
/// (`[NH, T, T]` per layer, in the order asked) and the logit lens (`[layer][position]`
/// the most likely tokens, best first; empty when not asked).
#[derive(Clone, Debug)]
pub struct CapturedForward {
    pub output: ForwardOutput,
    pub attention: Vec<Vec<f32>>,
    pub logit_lens: Vec<Vec<Vec<TokenProb>>>,
    /// `(rank, logprob)` of each position's actual next token (T − 1 of them): under
    /// the final logits, or with the logit lens under each layer's (`[layer][position]`,
    /// the last layer the final one). Computed on the device.
    pub next_token_ranks: Vec<Vec<(usize, f32)>>,
}

/// Result of one forward.
#[derive(Clone, Debug)]
pub struct ForwardOutput {
    /// Tokens that went through the model (T).
    pub tokens: usize,
    /// Width of the logits (V).
    pub vocab: usize,
    /// Most likely next tokens after the last position, most likely first.
    pub top: Vec<TokenProb>,
    pub capture: Option<Capture>,
    /// Seconds from recording to the read-back finishing.
    pub seconds: f64,
}
