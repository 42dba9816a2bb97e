//! The model on the device — GPT-2, or a Llama-family block (RMSNorm, rotary
//! positions, grouped-query attention, SwiGLU) — config → weights (seeded init, a
//! safetensors checkpoint, or a Hugging Face directory) → one-submission forward. Weights live on the device only. This file holds the
//! model's types; each job has its own file:
//!
//! | file | its job |
//! |---|---|
//! | `build.rs` | upload weights, size activations, bind every dispatch once |
//! | `step.rs` | one traversal: step kinds, the encoders, the submission |
//! | `partials.rs` | a decode step's blocks with their residual adds deferred (hardware kernels) |
//! | `forward.rs` | the forward entry points (one, several, captured) |
//! | `generate.rs` | prefill and decode steps on the paged KV pool |
//! | `output.rs` | what a forward returns: top-k, captures |
//! | `logits.rs` | host-side logit maths (softmax, top-k, log-sum-exp) |
//! | `sampling.rs` | the sampler: temperature, top-k, top-p, seeds, logprobs |
//! | `kv_pool.rs` | the paged KV cache's page tables |
//! | `weights.rs` | tensor specs, seeded init, safetensors checkpoints |
//! | `source.rs` | where the weights come from: seeded, a checkpoint, a directory |
//! | `memory.rs` | the memory estimate, checked before anything is allocated |
//! | `family.rs` | a model family as data, read from a Hugging Face `config.json` |
//! | `directory.rs` | a Hugging Face model directory: configs, shards, tensors by name |
//! | `rope.rs` | rotary embedding frequencies (default, linear, llama3) and cos / sin tables |

mod build;
pub mod directory;
pub mod family;
mod flight;
pub mod forward;
pub mod generate;
pub mod kv_pool;
pub mod logits;
pub mod memory;
pub mod output;
mod partials;
pub mod rope;
pub mod sampling;
pub mod source;
mod step;
pub mod weights;

use std::sync::Arc;

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::files::FileAccess;
use crate::gpu::buffers::RowChunked;
use crate::gpu::GpuContext;
use crate::kernels::matmul::MatmulOp;
use crate::kernels::Pipelines;
use crate::kernels::{KernelOp, RowsOp};
use source::WeightFiles;
use weights::Checkpoint;

pub use directory::{Classifier, Pooling};
pub use flight::PendingStep;
pub use generate::{argmax_rows, NextToken, Readback};
pub use output::{Capture, CapturedForward, ForwardOutput, LayerCapture, MoeCapture, TokenProb};
pub use step::{ARGMAX_SPAN, MAX_CAPTURE_TOKENS, MAX_PREFILL_PARTS};

/// Device buffers of one transformer block (GPT-2's HF names in comments; a Llama
/// block's q/k/v are `attn_w` side by side, gate/up `fc_w`, down `fc_proj_w`).
pub struct BlockWeights {
    pub ln_1_w: wgpu::Buffer,         // ln_1.weight [C]
    pub ln_1_b: Option<wgpu::Buffer>, // ln_1.bias [C]
    pub attn_w: wgpu::Buffer,         // attn.c_attn.weight [C, 3C]
    pub attn_b: Option<wgpu::Buffer>, // attn.c_attn.bias [3C]
    /// Qwen3: q_norm's then k_norm's weights `[2, HS]`, interleaved as the heads are.
    pub head_norm_w: Option<wgpu::Buffer>,
    pub proj_w: wgpu::Buffer,         // attn.c_proj.weight [C, C]
    pub proj_b: Option<wgpu::Buffer>, // attn.c_proj.bias [C]
    pub ln_2_w: wgpu::Buffer,         // ln_2.weight [C]
    pub ln_2_b: Option<wgpu::Buffer>, // ln_2.bias [C]
    /// Gemma: the norms of the attention's and of the MLP's outputs, `[C]` each
    /// (`attn.post_norm.weight`, `mlp.post_norm.weight`).
    pub post_norms: Option<(wgpu::Buffer, wgpu::Buffer)>,
    /// An encoder's LayerNorm after the MLP (`ln_3.weight`, `ln_3.bias` `[C]`): the
    /// post-LN block normalises the stream after the attention (`ln_2`) and after the
    /// MLP (this).
    pub ln_3: Option<(wgpu::Buffer, Option<wgpu::Buffer>)>,
    pub mlp: MlpWeights,
}

/// The MLP of a block: dense (GPT-2) or Mixture-of-Experts.
pub enum MlpWeights {
    Dense {
        fc_w: wgpu::Buffer,              // mlp.c_fc.weight [C, H]
        fc_b: Option<wgpu::Buffer>,      // mlp.c_fc.bias [H]
        fc_proj_w: wgpu::Buffer,         // mlp.c_proj.weight [H, C]
        fc_proj_b: Option<wgpu::Buffer>, // mlp.c_proj.bias [C]
    },
    Moe {
        router: wgpu::Buffer,       // mlp.router.weight [C, E], columns padded to E4
        fc_w: wgpu::Buffer,         // mlp.experts.c_fc.weight [E, C, H] (SwiGLU: 2H)
        fc_b: Option<wgpu::Buffer>, // mlp.experts.c_fc.bias [E, H]
        fc_proj_w: wgpu::Buffer,    // mlp.experts.c_proj.weight [E, H, C]
        fc_proj_b: Option<wgpu::Buffer>, // mlp.experts.c_proj.bias [E, C]
        /// Qwen2-MoE's shared expert.
        shared: Option<SharedExpertWeights>,
    },
}

/// A shared expert every token takes, scaled by a sigmoid gate (Qwen2-MoE).
pub struct SharedExpertWeights {
    pub fc_w: wgpu::Buffer,   // mlp.shared.c_fc.weight [C, 2Hs] (gate | up)
    pub proj_w: wgpu::Buffer, // mlp.shared.c_proj.weight [Hs, C]
    pub gate_w: wgpu::Buffer, // mlp.shared.gate.weight [C, 1], columns padded to 4
}

impl MlpWeights {
    fn buffers(&self) -> Vec<&wgpu::Buffer> {
        match self {
            MlpWeights::Dense {
                fc_w,
                fc_b,
                fc_proj_w,
                fc_proj_b,
            } => [
                Some(fc_w),
                fc_b.as_ref(),
                Some(fc_proj_w),
                fc_proj_b.as_ref(),
            ]
            .into_iter()
            .flatten()
            .collect(),
            MlpWeights::Moe {
                router,
                fc_w,
                fc_b,
                fc_proj_w,
                fc_proj_b,
                shared,
            } => [
                Some(router),
                Some(fc_w),
                fc_b.as_ref(),
                Some(fc_proj_w),
                fc_proj_b.as_ref(),
                shared.as_ref().map(|s| &s.fc_w),
                shared.as_ref().map(|s| &s.proj_w),
                shared.as_ref().map(|s| &s.gate_w),
            ]
            .into_iter()
            .flatten()
            .collect(),
        }
    }
}

/// Every weight on the device.
pub struct DeviceWeights {
    /// wte.weight [V, C], split into bound windows when larger than one binding.
    pub wte: RowChunked,
    /// wpe.weight [context, C] (learned positions only)
    pub wpe: Option<wgpu::Buffer>,
    pub blocks: Vec<BlockWeights>,
    pub ln_f_w: wgpu::Buffer,
    pub ln_f_b: Option<wgpu::Buffer>,
    /// An encoder's LayerNorm of the embedding (`ln_e.weight`, `ln_e.bias` `[C]`).
    pub ln_e: Option<(wgpu::Buffer, Option<wgpu::Buffer>)>,
    /// lm_head.weight [V, C] when the head is not tied to wte (chunked as wte).
    pub head: Option<RowChunked>,
    /// Rotary cos and sin tables, `[context, 2, HS]` (rotary families,
    /// `kernels::rotary::device_table`).
    pub rope: Option<wgpu::Buffer>,
    /// The windowed layers' tables where they rotate with a base of their own (Gemma).
    pub rope_local: Option<wgpu::Buffer>,
}

impl DeviceWeights {
    /// The rotary table layer `l` of `cfg` rotates with.
    pub fn rope_of(&self, cfg: &ModelConfig, l: usize) -> Option<&wgpu::Buffer> {
        match (&self.rope_local, cfg.windowed_layer(l)) {
            (Some(local), true) => Some(local),
            _ => self.rope.as_ref(),
        }
    }
}

impl DeviceWeights {
    /// The LM head: its own weights, or the tied embedding.
    pub fn lm_head(&self) -> &RowChunked {
        self.head.as_ref().unwrap_or(&self.wte)
    }
}

/// Activation buffers, sized for the full context once per model.
pub struct Activations {
    pub ids: wgpu::Buffer, // [context] u32
    /// position of each row `[context]` u32 (0.. in a forward, each generation's own
    /// in a decode batch)
    pub positions: wgpu::Buffer,
    /// paged steps: per row (page-table offset, position) `[context]` `vec2<u32>`, the
    /// pool row each new row's keys and values go to `[context]` u32, and the page
    /// tables of the step's generations [max_batch · pages per context] u32
    pub kv_rows: wgpu::Buffer,
    pub kv_slots: wgpu::Buffer,
    pub kv_tables: wgpu::Buffer,
    pub x: wgpu::Buffer,      // residual stream [context, C]
    pub ln: wgpu::Buffer,     // layer-norm output [context, C]
    pub qkv: wgpu::Buffer,    // [context, Q + 2 KV] (GPT-2: 3C)
    pub att: wgpu::Buffer,    // attention output [context, max(Q, C)]
    pub hidden: wgpu::Buffer, // MLP hidden [context, H] (SwiGLU: gate | up [context, 2H])
    /// SwiGLU's gated hidden [context, H] (Llama families).
    pub gated: Option<wgpu::Buffer>,
    /// logits [context, V] as column chunks matching wte's row chunks.
    pub logits: Vec<wgpu::Buffer>,
    /// per-layer attention entropy [NH, T]
    pub entropy: Vec<wgpu::Buffer>,
    /// residual norms [(n_layer + 1), T]
    pub norms: wgpu::Buffer,
    /// always-bound stand-in for absent biases
    pub dummy: wgpu::Buffer,
    /// the K slices' sums of a split tiled matmul (`kernels::matmul`), shared by the
    /// linears, for steps of up to `split_rows` rows (0 and a stand-in when the
    /// linears' kernel does not split)
    pub split: wgpu::Buffer,
    pub split_rows: usize,
    /// Mixture-of-Experts scratch (when `use_moe`).
    pub moe: Option<MoeActivations>,
    /// The deferred decode blocks' scratch (when the model takes them).
    pub partials: Option<PartialActivations>,
    /// the largest logit of each row of a decode step (or of each prompt's last row
    /// of a prefill step) per window of a wte chunk ([`ARGMAX_SPAN`]): (id,
    /// value, log-sum-exp) [windows, rows, 3]
    pub top1: wgpu::Buffer,
    /// The draw of each sampled row of those rows ([`Readback::Sample`]: a
    /// `kernels::sample::SampleSpec` each) and the id the device drew (u32).
    pub sample_specs: wgpu::Buffer,
    pub picked: wgpu::Buffer,
    /// The rows a prefill step's LM head takes (u32, up to `max_batch` +
    /// [`MAX_PREFILL_PARTS`]): the hardware head reads them from x through this list,
    /// the software one after `gather_rows` copies them to rows 0.. of `att`; written
    /// as the step is recorded (each traversal is its own submission).
    pub gather_list: wgpu::Buffer,
    /// Host-readable ids of a decode step whose every row was picked on the device
    /// (`picked`, [u32; rows]): two, one per decode step in flight
    /// ([`PendingStep`]).
    pub picked_reads: [wgpu::Buffer; 2],
    /// host-readable: last-row logits `[V]`, then entropies and norms when captured
    pub readback: wgpu::Buffer,
}

/// Buffers of the MoE layers, shared by all layers (stats per layer).
pub struct MoeActivations {
    pub router_logits: wgpu::Buffer, // [context, E4]
    pub probs: wgpu::Buffer,         // [context, E]
    pub sel_e: wgpu::Buffer,         // [context, K] u32
    pub sel_w: wgpu::Buffer,         // [context, K]
    pub slot: wgpu::Buffer,          // [context, K] u32
    pub row_token: wgpu::Buffer,     // [rows] u32
    pub row_expert: wgpu::Buffer,    // [rows] u32
    pub hidden: wgpu::Buffer,        // [rows, H] (SwiGLU experts: gate | up [rows, 2H])
    /// SwiGLU experts' gated hidden [rows, H].
    pub gated: Option<wgpu::Buffer>,
    /// The shared expert's gate logits [context, 4] (Qwen2-MoE).
    pub shared_gate: wgpu::Buffer,
    pub out: wgpu::Buffer,        // [rows, C]
    pub stats: Vec<wgpu::Buffer>, // per layer [2E + 1]: usage, mean probability, loss
}

/// The norm of every block and of the final layer of `cfg`: RMSNorm for the Llama
/// families, LayerNorm (with bias when the model has biases) for GPT-2 and StarCoder2.
pub(crate) fn block_norm(cfg: &ModelConfig) -> crate::kernels::layer_norm::Norm {
    use crate::kernels::layer_norm::Norm;
    if cfg.architecture.rms_norm() {
        Norm::rms(cfg.norm_eps)
    } else {
        Norm {
            eps: cfg.norm_eps,
            ..Norm::layer(cfg.bias)
        }
    }
}

/// A linear layer's two dispatches over the same buffers: the matmul for the rows of
/// a forward or a prefill chunk, the matrix-vector kernel for the rows of a decode
/// step (one per generation; a row's numbers do not depend on how many there are).
pub struct Linear {
    pub matmul: MatmulOp,
    /// The matmul with the op before this linear folded into its staging (the tile
    /// kernels): a prefill chunk or a forward then skips that op's dispatch.
    pub staged: Option<Staged>,
    pub matvec: RowsOp,
    /// The matrix-vector kernel reading the residual stream with the norm before this
    /// linear folded in (hardware kernels, for the linears right after a norm: a decode
    /// step then skips the norm's dispatch).
    pub normed: Option<RowsOp>,
    /// Outputs and inputs.
    pub n: usize,
    pub k: usize,
}

/// A linear's tile matmul with the op before it folded into its staging of `a`.
pub enum Staged {
    /// The norm: `a` is the residual stream (the linears right after a norm).
    Normed(MatmulOp),
    /// SwiGLU: `a` holds the gate | up rows, staged as silu(gate) · up (the Llama MLP's
    /// down projection, flag `GATED`).
    Gated(MatmulOp),
}

/// The prepared dispatches of one block.
pub struct BlockOps {
    pub ln_1: KernelOp,
    pub c_attn: Linear,
    /// Attention within the rows of a forward (keys and values in qkv), and one per
    /// forward of a traversal several forwards share.
    pub attn: KernelOp,
    pub attn_parts: Vec<KernelOp>,
    /// The same kernel over a sequence's pages (one per prompt of a prefill step), and
    /// the portable sparse kernel for chunks off a subgroup boundary (sparse subgroup
    /// kernel only).
    pub attn_prefill: Vec<KernelOp>,
    pub attn_prefill_unaligned: Option<Vec<KernelOp>>,
    /// Decode steps: attention over each row's pages (the qkv projection's epilogue
    /// stored the new keys and values).
    pub attn_paged: KernelOp,
    /// Qwen3: the norm of each query and key head after the qkv projection, which then
    /// leaves the rotation and the KV store to it (`kernels::head_norm`).
    pub head_norm: Option<KernelOp>,
    /// The output projection: into the residual stream (`x +=`), or, with
    /// `post_norms`, into `ln`, which the attention's post-norm then adds to the stream.
    pub c_proj: Linear,
    pub ln_2: KernelOp,
    pub mlp: MlpOps,
    /// Gemma: `x += norm(ln)` after the attention and after the MLP (the output
    /// projection and the down projection write `ln` instead of adding to `x`).
    pub post_norms: Option<(KernelOp, KernelOp)>,
    /// An encoder's `x = norm(ln)` after the MLP (whose down projection adds to `ln`,
    /// the attention's normalised output).
    pub ln_3: Option<KernelOp>,
    pub norm: KernelOp,
}

/// The MLP dispatches of a block.
#[allow(clippy::large_enum_variant)] // one per block, built once
pub enum MlpOps {
    Dense {
        c_fc: Linear,
        /// SwiGLU between the two (Llama families): gate | up → gated.
        swiglu: Option<KernelOp>,
        fc_proj: Linear,
    },
    /// The grouped expert path, which scales with the rows on every step.
    Moe {
        gating: MoeGating,
        route: KernelOp,
        fc: KernelOp,
        /// SwiGLU experts: gate | up → gated, between fc and proj.
        swiglu: Option<ExpertSwiglu>,
        proj: KernelOp,
        combine: KernelOp,
        shared: Option<SharedExpertOps>,
    },
}

/// SwiGLU between a MoE block's expert projections: the `swiglu` kernel over the fc's
/// gate | up rows, or, on a step of at most [`crate::kernels::moe::FEW_ROWS`] tokens,
/// the fc itself writing the gated rows (`fc_gated`, flag `SWIGLU_OUT`).
pub struct ExpertSwiglu {
    pub swiglu: KernelOp,
    pub fc_gated: KernelOp,
}

/// How a MoE block picks each token's experts from x: the norm before the MLP, the
/// router's logits, softmax and top-k.
#[allow(clippy::large_enum_variant)] // one per MoE block, built once
pub enum MoeGating {
    /// The software kernels: the block's `ln_2`, the router's product (a [`Linear`]:
    /// matrix-vector on decode steps) and `moe_gate`.
    Separate { router: Linear, gate: KernelOp },
    /// The hardware kernels: all three in one dispatch (`moe_norm_gate`, a workgroup
    /// a token), which writes `ln` as `ln_2` would, and a shared expert's gate logit.
    Normed(KernelOp),
}

/// A shared expert's dispatches: gate | up, its sigmoid gate's logit (the software
/// kernels; the hardware kernels' [`MoeGating::Normed`] takes it), the scaled SwiGLU,
/// and the down projection added to x.
pub struct SharedExpertOps {
    pub c_fc: Linear,
    pub gate: Option<MatmulOp>,
    pub swiglu: KernelOp,
    pub fc_proj: Linear,
}

/// Every dispatch of a forward, bound once at build.
pub struct Ops {
    /// The token (and position) embedding: into `x`, an encoder's into `ln`, which
    /// `ln_e` then normalises into `x`.
    pub embedding: Vec<KernelOp>,
    pub ln_e: Option<KernelOp>,
    pub embed_norm: KernelOp,
    pub blocks: Vec<BlockOps>,
    pub ln_f: KernelOp,
    /// LM head over every row (per wte chunk): forwards.
    pub lm_head: Vec<KernelOp>,
    /// LM head for the rows of a decode step (per wte chunk).
    pub lm_head_rows: Vec<RowsOp>,
    /// The same over the residual stream with ln_f folded in (the hardware kernels):
    /// a decode step's rows, or a prefill step's asked rows (a mixed step's decode rows
    /// and the prompts' last rows) read through the gather list, so a decode row's
    /// logits are the same in a mixed step as in a decode step.
    pub lm_head_normed: Option<Vec<RowsOp>>,
    /// The soft cap of the logits after any LM head, per wte chunk (`logit_cap`;
    /// `final_logit_softcapping`, else none).
    pub logit_cap: Vec<KernelOp>,
    /// The largest logit of each decode row, per wte chunk (`top_k_rows`, k = 1).
    pub top1: Vec<KernelOp>,
    /// The draw of sampled rows over the logits (`sample_rows`), when the LM head's
    /// logits are at most `kernels::sample::MAX_CHUNKS` buffers.
    pub sample: Option<KernelOp>,
    /// The last row of each prompt of a prefill step (after ln_f) to row `prompt` of
    /// `att`, in one dispatch (`gather_rows`).
    pub last_rows: KernelOp,
    /// LM head over those rows (per wte chunk).
    pub lm_head_last: Vec<RowsOp>,
    /// A decode step's blocks with their residual adds deferred (hardware kernels,
    /// `decode_blocks` `auto`, where the model allows).
    pub partials: Option<PartialOps>,
}

/// The rows a step mixing decode rows and prompt chunks may take
/// ([`Model::mixed_select`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MixedRows {
    /// Prompt rows: a prompt of at most these tokens is short (alone, its prefill takes
    /// the same deferred blocks).
    pub prompt: usize,
    /// Rows in all, decode rows included.
    pub total: usize,
}

/// The deferred decode blocks' scratch (`partials.rs`): the stream's second buffer and
/// the partial rows of the heads and of the MLP's chunks, for steps of up to `rows`.
pub struct PartialActivations {
    pub x2: wgpu::Buffer,
    pub attn: wgpu::Buffer,
    pub mlp: wgpu::Buffer,
    /// Rows a step may have: a decode batch of `max_batch` beside a short prompt's
    /// (a mixed step), at most the context.
    pub rows: usize,
    /// The MLP the scratch was sized for.
    pub shape: crate::kernels::partials::MlpShape,
}

/// One block's deferred dispatches.
pub struct PartialBlockOps {
    pub qkv: RowsOp,
    pub attn: KernelOp,
    pub mlp: KernelOp,
}

/// Every deferred dispatch of a decode step.
pub struct PartialOps {
    pub shape: crate::kernels::partials::MlpShape,
    pub blocks: Vec<PartialBlockOps>,
    /// The first block's qkv projection takes the stream from the embedding itself
    /// (wte in one binding), so a step with these dispatches has no embedding dispatch.
    pub embeds: bool,
    /// x made whole after the last block.
    pub residual: KernelOp,
}

/// The block-sparse layout of a model and its device copy.
pub struct SparseAttention {
    pub layout: crate::sparse::BlockLayout,
    /// The kernel variant chosen for this device, head size and block size.
    pub variant: &'static str,
    pub row_offsets: wgpu::Buffer,
    pub cols: wgpu::Buffer,
}

/// Where the steps' time went on the host side of the device, summed over the steps
/// (`Model::host_times`): recording a traversal's dispatches, submitting them, and
/// waiting for the device and the read-back. The first two are the host's share: what
/// a GPU waits on between steps.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HostTimes {
    pub steps: u64,
    pub record_s: f64,
    pub submit_s: f64,
    pub wait_s: f64,
}

impl HostTimes {
    /// The steps and times since `before`.
    pub fn since(&self, before: &HostTimes) -> HostTimes {
        HostTimes {
            steps: self.steps - before.steps,
            record_s: self.record_s - before.record_s,
            submit_s: self.submit_s - before.submit_s,
            wait_s: self.wait_s - before.wait_s,
        }
    }

    /// The host's share (recording and submitting) of the steps' time.
    pub fn host_share(&self) -> f64 {
        let host = self.record_s + self.submit_s;
        host / (host + self.wait_s).max(1e-12)
    }
}

/// A built model: config, device, weights, activations and prepared dispatches.
pub struct Model {
    /// The host's times of its steps so far.
    pub host_times: std::sync::Mutex<HostTimes>,
    /// Present when `use_sparse_attention`.
    pub sparse: Option<SparseAttention>,
    pub config: ModelConfig,
    pub ctx: Arc<GpuContext>,
    pub pipelines: Arc<Pipelines>,
    pub weights: DeviceWeights,
    pub act: Activations,
    pub ops: Ops,
    pub parameter_count: usize,
    /// A base model's checkpoint without an LM head (`MistralModel`, …: an embedding
    /// model's): the token embedding stands in for the head so the model builds, and
    /// only embeddings are served.
    pub headless: bool,
    /// Which of a text's hidden states its embedding is ([`Model::embed_many`]).
    pub pooling: Pooling,
    /// A cross-encoder's classification head (scores pairs of texts:
    /// [`Model::score_pairs`]).
    pub classifier: Option<Classifier>,
    /// Where the position table's type-1 half starts (an encoder with token types: a
    /// pair's second text reads its positions there), else `None`.
    pub pair_offset: Option<usize>,
    pub parameter_bytes: u64,
    pub device_bytes: u64,
    /// The GPU-shaped kernels serve this model (config `kernels` and the adapter).
    pub hardware_kernels: bool,
    /// Greedy decode rows take their token from the device's argmax
    /// ([`Readback::Argmax`]) rather than reading their logits back.
    pub argmax_on_device: bool,
    /// Sampled rows without logprobs take their token from the device's draw
    /// ([`Readback::Sample`]): the hardware kernels, logits in at most 4 bindings.
    pub sample_on_device: bool,
    /// Keys and values of the generations, in pages.
    pub kv: kv_pool::KvPool,
    /// Most generations one decode step takes.
    pub max_batch: usize,
    /// Generation steps submitted (prefill and decode): a chained decode step follows
    /// the last ([`Model::decode_chain`]).
    pub(crate) steps: std::sync::atomic::AtomicU64,
    /// Which of `act.picked_reads` a step in flight holds.
    pub(crate) reads_held: Arc<std::sync::Mutex<[bool; 2]>>,
}

/// What a model serves generations with: the KV pool and the largest decode batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServeShape {
    /// Pages of the KV pool ([`kv_pool::PAGE`] positions each).
    pub kv_pages: usize,
    pub max_batch: usize,
    /// Keep full prompt pages for later prompts that start alike (`kv_pool`).
    pub prefix_cache: bool,
}

impl ServeShape {
    /// Room for `generations` full-context generations, batches of `max_batch`.
    pub fn for_generations(config: &ModelConfig, generations: usize, max_batch: usize) -> Self {
        ServeShape {
            kv_pages: generations * config.context_size.div_ceil(kv_pool::PAGE),
            max_batch: max_batch.max(1),
            prefix_cache: true,
        }
    }
}

/// Resolve a user config (a JSON object) into the effective config: defaults filled,
/// checkpoint or model-directory shapes applied for keys not given, validated. Any
/// path is accepted (the operator's and the tests' use); see [`resolve_config_with`].
pub fn resolve_config(value: serde_json::Value) -> Result<(ModelConfig, Option<WeightFiles>)> {
    resolve_config_with(value, &FileAccess::Any(None), u64::MAX)
}

/// [`resolve_config`] with the checkpoint or model directory named under `access`'s
/// rules, a checkpoint at most `max_bytes` long (checked before it is read).
pub fn resolve_config_with(
    value: serde_json::Value,
    access: &FileAccess,
    max_bytes: u64,
) -> Result<(ModelConfig, Option<WeightFiles>)> {
    let given: Vec<String> = value
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    let named = |key: &str| value.get(key).is_some_and(|v| !v.is_null());
    let (has_checkpoint, has_model) = (named("checkpoint"), named("model"));
    if has_checkpoint && has_model {
        return Err(Error::Config(
            "checkpoint and model both name weights: give one (model: a Hugging Face directory; checkpoint: a GPT-2 safetensors file)".into(),
        ));
    }
    if !has_checkpoint && !has_model {
        return Ok((ModelConfig::from_value(value)?, None));
    }
    if !value.is_object() {
        return Err(Error::Config(
            "config must be a JSON object of config keys".into(),
        ));
    }
    let mut cfg: ModelConfig =
        serde_json::from_value(value).map_err(|e| Error::Config(e.to_string()))?;
    if has_model {
        let name = cfg.model.clone().unwrap_or_default();
        let path = access.resolve("model", &name)?;
        access.require_dir("model", &name, &path)?;
        let dir = directory::ModelDir::open(&name, &path)?;
        dir.apply(&mut cfg, &given)?;
        return Ok((cfg, Some(WeightFiles::Directory(Box::new(dir)))));
    }
    let name = cfg.checkpoint.clone().unwrap_or_default();
    let path = access.resolve("checkpoint", &name)?;
    let bytes = access.read("checkpoint", &name, &path, max_bytes)?;
    let ckpt = Checkpoint::from_bytes(bytes, &name)?;
    ckpt.resolve_config(&mut cfg, &given)?;
    Ok((cfg, Some(WeightFiles::Checkpoint(ckpt))))
}

impl Model {
    /// Block size for the attention dispatches: the sparse layout's, or 0 (dense).
    pub fn attention_block(&self) -> usize {
        self.sparse.as_ref().map_or(0, |s| s.layout.block)
    }
}
