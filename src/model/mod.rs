//! The GPT-2 model on the device: config → weights (seeded init or safetensors)
//! → one-submission forward. Weights live on the device only.

pub mod forward;
pub mod generate;
pub mod kv_pool;
pub mod sampling;
pub mod sparse;
pub mod weights;

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::files::FileAccess;
use crate::gpu::buffers::{self, RowChunked};
use crate::gpu::{GpuContext, Pipelines};
use crate::kernels::matmul::{self, to_panels, MatmulOp};
use crate::kernels::matmul_bt::{upload_wte, ROW_GROUP};
use crate::kernels::{KernelOp, RowsOp};
use weights::{tensor_specs, Checkpoint, WeightSource};

pub use forward::{Capture, CapturedForward, ForwardOutput, LayerCapture, MoeCapture, TokenProb};
pub use generate::{NextToken, Readback};

/// Device buffers of one transformer block (HF names in comments).
pub struct BlockWeights {
    pub ln_1_w: wgpu::Buffer,         // ln_1.weight [C]
    pub ln_1_b: Option<wgpu::Buffer>, // ln_1.bias [C]
    pub attn_w: wgpu::Buffer,         // attn.c_attn.weight [C, 3C]
    pub attn_b: Option<wgpu::Buffer>, // attn.c_attn.bias [3C]
    pub proj_w: wgpu::Buffer,         // attn.c_proj.weight [C, C]
    pub proj_b: Option<wgpu::Buffer>, // attn.c_proj.bias [C]
    pub ln_2_w: wgpu::Buffer,         // ln_2.weight [C]
    pub ln_2_b: Option<wgpu::Buffer>, // ln_2.bias [C]
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
        fc_w: wgpu::Buffer,         // mlp.experts.c_fc.weight [E, C, H]
        fc_b: Option<wgpu::Buffer>, // mlp.experts.c_fc.bias [E, H]
        fc_proj_w: wgpu::Buffer,    // mlp.experts.c_proj.weight [E, H, C]
        fc_proj_b: Option<wgpu::Buffer>, // mlp.experts.c_proj.bias [E, C]
    },
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
            } => [
                Some(router),
                Some(fc_w),
                fc_b.as_ref(),
                Some(fc_proj_w),
                fc_proj_b.as_ref(),
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
    /// wpe.weight [context, C]
    pub wpe: wgpu::Buffer,
    pub blocks: Vec<BlockWeights>,
    pub ln_f_w: wgpu::Buffer,
    pub ln_f_b: Option<wgpu::Buffer>,
}

/// Activation buffers, sized for the full context once per model.
pub struct Activations {
    pub ids: wgpu::Buffer, // [context] u32
    /// position of each row [context] u32 (0.. in a forward, each generation's own
    /// in a decode batch)
    pub positions: wgpu::Buffer,
    /// paged steps: per row (page-table offset, position) [context] vec2<u32>, the
    /// pool row each new row's keys and values go to [context] u32, and the page
    /// tables of the step's generations [max_batch · pages per context] u32
    pub kv_rows: wgpu::Buffer,
    pub kv_slots: wgpu::Buffer,
    pub kv_tables: wgpu::Buffer,
    pub x: wgpu::Buffer,      // residual stream [context, C]
    pub ln: wgpu::Buffer,     // layer-norm output [context, C]
    pub qkv: wgpu::Buffer,    // [context, 3C]
    pub att: wgpu::Buffer,    // attention output [context, C]
    pub hidden: wgpu::Buffer, // MLP hidden [context, H]
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
    /// the largest logit of each row of a decode step (or of each prompt's last row
    /// of a prefill step) per window of a wte chunk (`forward::ARGMAX_SPAN`): (id,
    /// value, log-sum-exp) [windows, rows, 3]
    pub top1: wgpu::Buffer,
    /// host-readable: last-row logits [V], then entropies and norms when captured
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
    pub hidden: wgpu::Buffer,        // [rows, H]
    pub out: wgpu::Buffer,           // [rows, C]
    pub stats: Vec<wgpu::Buffer>,    // per layer [2E + 1]: usage, mean probability, loss
}

/// A linear layer's two dispatches over the same buffers: the matmul for the rows of
/// a forward or a prefill chunk, the matrix-vector kernel for the rows of a decode
/// step (one per generation; a row's numbers do not depend on how many there are).
pub struct Linear {
    pub matmul: MatmulOp,
    pub matvec: RowsOp,
    /// Outputs and inputs.
    pub n: usize,
    pub k: usize,
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
    /// Generation steps: store the rows' keys and values in the pool, attend over it.
    pub kv_store: KernelOp,
    pub attn_paged: KernelOp,
    pub c_proj: Linear,
    pub ln_2: KernelOp,
    pub mlp: MlpOps,
    pub norm: KernelOp,
}

/// The MLP dispatches of a block.
#[allow(clippy::large_enum_variant)] // one per block, built once
pub enum MlpOps {
    Dense {
        c_fc: Linear,
        fc_proj: Linear,
    },
    /// The grouped expert path, which scales with the rows on every step.
    Moe {
        router: MatmulOp,
        gate: KernelOp,
        route: KernelOp,
        fc: KernelOp,
        proj: KernelOp,
        combine: KernelOp,
    },
}

/// Every dispatch of a forward, bound once at build.
pub struct Ops {
    pub embedding: Vec<KernelOp>,
    pub embed_norm: KernelOp,
    pub blocks: Vec<BlockOps>,
    pub ln_f: KernelOp,
    /// LM head over every row (per wte chunk): forwards.
    pub lm_head: Vec<KernelOp>,
    /// LM head for the rows of a decode step (per wte chunk).
    pub lm_head_rows: Vec<RowsOp>,
    /// The largest logit of each decode row, per wte chunk (`top_k_rows`, k = 1).
    pub top1: Vec<KernelOp>,
    /// The last row of each prompt of a prefill step to row `prompt` of `att`
    /// (one op a prompt: a pass's dispatches of one op share its uniform).
    pub last_rows: Vec<KernelOp>,
    /// LM head over those rows (per wte chunk).
    pub lm_head_last: Vec<RowsOp>,
}

/// The block-sparse layout of a model and its device copy.
pub struct SparseAttention {
    pub layout: sparse::BlockLayout,
    /// The kernel variant chosen for this device, head size and block size.
    pub variant: &'static str,
    pub row_offsets: wgpu::Buffer,
    pub cols: wgpu::Buffer,
}

/// A built model: config, device, weights, activations and prepared dispatches.
pub struct Model {
    /// Present when `use_sparse_attention`.
    pub sparse: Option<SparseAttention>,
    pub config: ModelConfig,
    pub ctx: Arc<GpuContext>,
    pub pipelines: Arc<Pipelines>,
    pub weights: DeviceWeights,
    pub act: Activations,
    pub ops: Ops,
    pub parameter_count: usize,
    pub parameter_bytes: u64,
    pub device_bytes: u64,
    /// The GPU-shaped kernels serve this model (config `kernels` and the adapter).
    pub hardware_kernels: bool,
    /// Greedy decode rows take their token from the device's argmax
    /// ([`Readback::Argmax`]) rather than reading their logits back.
    pub argmax_on_device: bool,
    /// Keys and values of the generations, in pages.
    pub kv: kv_pool::KvPool,
    /// Most generations one decode step takes.
    pub max_batch: usize,
}

/// What a model serves generations with: the KV pool and the largest decode batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServeShape {
    /// Pages of the KV pool ([`kv_pool::PAGE`] positions each).
    pub kv_pages: usize,
    pub max_batch: usize,
}

impl ServeShape {
    /// Room for `generations` full-context generations, batches of `max_batch`.
    pub fn for_generations(config: &ModelConfig, generations: usize, max_batch: usize) -> Self {
        ServeShape {
            kv_pages: generations * config.context_size.div_ceil(kv_pool::PAGE),
            max_batch: max_batch.max(1),
        }
    }
}

/// The rows of a step whose tiled matmuls split K and the floats of the scratch they
/// fill (`Activations::split`): on adapters whose linears take the tiled kernels, up
/// to [`matmul::SPLIT_MAX_ROWS`] rows (at most the context, and what one binding
/// holds); else none, and a stand-in of 4 floats.
fn split_scratch(cfg: &ModelConfig, ctx: &GpuContext, pl: &Pipelines) -> (usize, usize) {
    let hardware = cfg.kernels.hardware(ctx.details.is_software());
    let lin = matmul::variant_for(pl, hardware, cfg.dtype == crate::config::Dtype::Float16);
    if !matmul::splits_k(lin) {
        return (0, 4);
    }
    let per_row = usize::try_from(matmul::split_row_floats(
        cfg.n_embed,
        cfg.ffn_hidden(),
        !cfg.use_moe,
    ))
    .unwrap_or(usize::MAX / 4)
    .max(1);
    let fits = (ctx.max_binding_bytes() / (per_row as u64 * 4)) as usize;
    let rows = matmul::SPLIT_MAX_ROWS.min(cfg.context_size).min(fits);
    (rows, (rows * per_row).max(4))
}

/// Resolve a user config (a JSON object) into the effective config: defaults filled,
/// checkpoint shapes applied for keys not given, validated. Any checkpoint path is
/// accepted (the operator's and the tests' use); see [`resolve_config_with`].
pub fn resolve_config(value: serde_json::Value) -> Result<(ModelConfig, Option<Checkpoint>)> {
    resolve_config_with(value, &FileAccess::Any, u64::MAX)
}

/// [`resolve_config`] with the checkpoint named under `access`'s rules and at most
/// `max_bytes` long (checked before it is read).
pub fn resolve_config_with(
    value: serde_json::Value,
    access: &FileAccess,
    max_bytes: u64,
) -> Result<(ModelConfig, Option<Checkpoint>)> {
    let given: Vec<String> = value
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    let has_checkpoint = value.get("checkpoint").is_some_and(|v| !v.is_null());
    if !has_checkpoint {
        return Ok((ModelConfig::from_value(value)?, None));
    }
    let mut cfg: ModelConfig =
        serde_json::from_value(value).map_err(|e| Error::Config(e.to_string()))?;
    let name = cfg.checkpoint.clone().unwrap_or_default();
    let path = access.resolve("checkpoint", &name)?;
    let bytes = access.read("checkpoint", &name, &path, max_bytes)?;
    let ckpt = Checkpoint::from_bytes(bytes, &name)?;
    ckpt.resolve_config(&mut cfg, &given)?;
    Ok((cfg, Some(ckpt)))
}

impl Model {
    /// Block size for the attention dispatches: the sparse layout's, or 0 (dense).
    pub fn attention_block(&self) -> usize {
        self.sparse.as_ref().map_or(0, |s| s.layout.block)
    }

    /// Build a model from an effective config on `ctx`. With `checkpoint` the weights
    /// come from the file, else from the seeded initialisation. Generations get a KV
    /// pool for 4 full-context generations and batches of up to 16 (the service sizes
    /// both with [`Model::build_with`]).
    pub fn build(
        config: ModelConfig,
        checkpoint: Option<Checkpoint>,
        ctx: Arc<GpuContext>,
        pipelines: Arc<Pipelines>,
    ) -> Result<Model> {
        let shape = ServeShape::for_generations(&config, 4, 16);
        Self::build_with(config, checkpoint, ctx, pipelines, shape)
    }

    /// [`Model::build`] with the KV pool and batch size given.
    pub fn build_with(
        config: ModelConfig,
        checkpoint: Option<Checkpoint>,
        ctx: Arc<GpuContext>,
        pipelines: Arc<Pipelines>,
        shape: ServeShape,
    ) -> Result<Model> {
        config.validate()?;
        let source = match checkpoint {
            Some(c) => WeightSource::Checkpoint(c),
            None => WeightSource::Seeded(config.seed),
        };
        let c2 = ctx.clone();
        ctx.scoped("model build", move || {
            Self::build_inner(config, &source, c2, pipelines, shape)
        })
    }

    fn build_inner(
        config: ModelConfig,
        source: &WeightSource,
        ctx: Arc<GpuContext>,
        pipelines: Arc<Pipelines>,
        shape: ServeShape,
    ) -> Result<Model> {
        let c = config.n_embed;
        let ctxlen = config.context_size;
        let h = config.ffn_hidden();
        // Row chunks of wte: each chunk, and the logits chunk [context, rows] it
        // produces, must fit one storage binding.
        let max_bind = ctx.max_binding_bytes();
        let row_bytes = (c.div_ceil(8) * 8).max(ctxlen) * 4;
        let rows_per_chunk = (buffers::rows_per_binding(max_bind, row_bytes as u64) / ROW_GROUP
            * ROW_GROUP)
            .max(ROW_GROUP);
        for (what, bytes) in [("qkv", ctxlen * 3 * c * 4), ("MLP hidden", ctxlen * h * 4)] {
            if bytes as u64 > max_bind {
                return Err(Error::Config(format!(
                    "context_size ({ctxlen}) is too large for this adapter: the {what} activation ({bytes} bytes) exceeds its binding limit ({max_bind} bytes)"
                )));
            }
        }

        // llvmpipe would cut the attention's loops short past this context, silently
        let hs = config.head_size();
        let max_ctx = crate::gpu::context::llvmpipe_max_context(hs);
        if ctx.details.is_llvmpipe() && ctxlen > max_ctx {
            return Err(Error::Config(format!(
                "context_size ({ctxlen}) is too long for heads of {hs} dimensions on llvmpipe (this software adapter), which stops a shader's loops after {} iterations: at most {max_ctx} positions with this head size; use a shorter context, more heads for the same n_embed, or a GPU",
                crate::gpu::context::LLVMPIPE_LOOP_ITERATIONS
            )));
        }

        // Upload tensor by tensor; the host copy of each is dropped right after.
        let specs = tensor_specs(&config);
        let mut wte = None;
        let mut map: HashMap<String, wgpu::Buffer> = HashMap::new();
        let mut parameter_bytes = 0u64;
        let e = config.moe_num_experts;
        let e4 = e.div_ceil(4) * 4;
        let half = config.dtype == crate::config::Dtype::Float16;
        for (i, spec) in specs.iter().enumerate() {
            let mut values = source.values(spec, i)?;
            if spec.name == "wte.weight" {
                // in row groups, and half floats with dtype float16 (the variant names
                // only pick the precision)
                let precision = if half { "embedding_f16" } else { "embedding" };
                parameter_bytes += (values.len() * if half { 2 } else { 4 }) as u64;
                wte = Some(upload_wte(
                    &ctx,
                    precision,
                    &values,
                    values.len() / c,
                    c,
                    rows_per_chunk,
                ));
                continue;
            }
            if weights::stored_in_panels(&spec.name) {
                values = to_panels(&values, spec.shape[0], spec.shape[1]);
            }
            if spec.name.contains(".mlp.experts.") && spec.name.ends_with(".weight") {
                // [E, K, N]: each expert's matrix in panels
                let (k, n) = (spec.shape[1], spec.shape[2]);
                values = crate::kernels::moe::experts_to_panels(&values, k, n);
            }
            if half && weights::stored_as_f16(&spec.name) {
                values = weights::pack_f16(&values);
            }
            parameter_bytes += (values.len() * 4) as u64;
            if spec.name.ends_with("mlp.router.weight") {
                // pad the router's columns to a multiple of 4 for the vec4 matmul
                if e4 != e {
                    values = values
                        .chunks(e)
                        .flat_map(|r| r.iter().copied().chain(std::iter::repeat_n(0.0, e4 - e)))
                        .collect();
                }
                values = to_panels(&values, c, e4);
            }
            if spec.name.contains("mlp.experts.") && (values.len() * 4) as u64 > max_bind {
                return Err(Error::Config(format!(
                    "{} ({} bytes) exceeds the adapter's binding limit ({max_bind} bytes): use fewer experts or a smaller width",
                    spec.name,
                    values.len() * 4
                )));
            }
            map.insert(
                spec.name.clone(),
                buffers::upload(&ctx, &spec.name, &values),
            );
        }
        let wte = wte.ok_or_else(|| Error::Config("wte.weight missing".into()))?;
        let mut take = |n: &str| map.remove(n);
        let need = |b: Option<wgpu::Buffer>, n: &str| {
            b.ok_or_else(|| Error::Checkpoint(format!("{n} missing")))
        };
        let mut blocks = Vec::with_capacity(config.n_layer);
        for l in 0..config.n_layer {
            let p = |s: &str| format!("h.{l}.{s}");
            blocks.push(BlockWeights {
                ln_1_w: need(take(&p("ln_1.weight")), "ln_1.weight")?,
                ln_1_b: take(&p("ln_1.bias")),
                attn_w: need(take(&p("attn.c_attn.weight")), "c_attn.weight")?,
                attn_b: take(&p("attn.c_attn.bias")),
                proj_w: need(take(&p("attn.c_proj.weight")), "attn.c_proj.weight")?,
                proj_b: take(&p("attn.c_proj.bias")),
                ln_2_w: need(take(&p("ln_2.weight")), "ln_2.weight")?,
                ln_2_b: take(&p("ln_2.bias")),
                mlp: if config.use_moe {
                    MlpWeights::Moe {
                        router: need(take(&p("mlp.router.weight")), "mlp.router.weight")?,
                        fc_w: need(
                            take(&p("mlp.experts.c_fc.weight")),
                            "mlp.experts.c_fc.weight",
                        )?,
                        fc_b: take(&p("mlp.experts.c_fc.bias")),
                        fc_proj_w: need(
                            take(&p("mlp.experts.c_proj.weight")),
                            "mlp.experts.c_proj.weight",
                        )?,
                        fc_proj_b: take(&p("mlp.experts.c_proj.bias")),
                    }
                } else {
                    MlpWeights::Dense {
                        fc_w: need(take(&p("mlp.c_fc.weight")), "mlp.c_fc.weight")?,
                        fc_b: take(&p("mlp.c_fc.bias")),
                        fc_proj_w: need(take(&p("mlp.c_proj.weight")), "mlp.c_proj.weight")?,
                        fc_proj_b: take(&p("mlp.c_proj.bias")),
                    }
                },
            });
        }
        let weights = DeviceWeights {
            wte,
            wpe: need(take("wpe.weight"), "wpe.weight")?,
            blocks,
            ln_f_w: need(take("ln_f.weight"), "ln_f.weight")?,
            ln_f_b: take("ln_f.bias"),
        };

        let nh = config.n_head;
        let kv = kv_pool::KvPool::new(&ctx, config.n_layer, c, shape.kv_pages)?;
        let max_batch = shape.max_batch.clamp(1, ctxlen);
        // rows (a decode step's, a prefill step's last rows) and windows of the argmax
        // over every wte chunk
        let argmax_rows = max_batch.max(forward::MAX_PREFILL_PARTS);
        let argmax_windows = generate::argmax_windows(&weights.wte.chunks);
        let (split_rows, split_floats) = split_scratch(&config, &ctx, &pipelines);
        let act = Activations {
            ids: buffers::storage(&ctx, "ids", ctxlen),
            positions: buffers::storage(&ctx, "positions", ctxlen),
            kv_rows: buffers::storage(&ctx, "kv rows", 2 * ctxlen),
            kv_slots: buffers::storage(&ctx, "kv slots", ctxlen),
            kv_tables: buffers::storage(
                &ctx,
                "kv tables",
                max_batch.max(forward::MAX_PREFILL_PARTS) * ctxlen.div_ceil(kv_pool::PAGE),
            ),
            x: buffers::storage(&ctx, "x", ctxlen * c),
            ln: buffers::storage(&ctx, "ln", ctxlen * c),
            qkv: buffers::storage(&ctx, "qkv", ctxlen * 3 * c),
            att: buffers::storage(&ctx, "att", ctxlen * c),
            hidden: buffers::storage(&ctx, "hidden", ctxlen * h),
            logits: weights
                .wte
                .chunks
                .iter()
                .map(|ch| buffers::storage(&ctx, "logits", ctxlen * ch.rows))
                .collect(),
            entropy: (0..config.n_layer)
                .map(|_| buffers::storage(&ctx, "entropy", nh * ctxlen))
                .collect(),
            norms: buffers::storage(&ctx, "norms", (config.n_layer + 1) * ctxlen),
            dummy: buffers::storage(&ctx, "dummy", 4),
            split: buffers::storage(&ctx, "split scratch", split_floats),
            split_rows,
            top1: buffers::storage(&ctx, "top1", 3 * argmax_rows * argmax_windows),
            readback: buffers::staging(
                &ctx,
                "readback",
                config.vocab_size * max_batch.max(forward::MAX_PREFILL_PARTS)
                    + 3 * argmax_rows * argmax_windows
                    + config.n_layer * nh * ctxlen
                    + (config.n_layer + 1) * ctxlen
                    + config.n_layer * (2 * e + 1),
            ),
            moe: config.use_moe.then(|| {
                let k = config.moe_top_k;
                let rows = crate::kernels::moe::grouped_rows(ctxlen, e, k);
                let st = |n: &str, f: usize| buffers::storage(&ctx, n, f);
                MoeActivations {
                    router_logits: st("moe router logits", ctxlen * e4),
                    probs: st("moe probs", ctxlen * e),
                    sel_e: st("moe sel_e", ctxlen * k),
                    sel_w: st("moe sel_w", ctxlen * k),
                    slot: st("moe slot", ctxlen * k),
                    row_token: st("moe row_token", rows),
                    row_expert: st("moe row_expert", rows),
                    hidden: st("moe hidden", rows * h),
                    out: st("moe out", rows * c),
                    stats: (0..config.n_layer)
                        .map(|_| st("moe stats", 2 * e + 1))
                        .collect(),
                }
            }),
        };
        let sparse = config.use_sparse_attention.then(|| {
            let layout = sparse::BlockLayout::new(
                ctxlen,
                config.sparse_block_size,
                config.sparse_local_blocks,
                config.sparse_global_blocks,
                config.sparse_stride,
            );
            let (row_offsets, cols) = layout.upload(&ctx);
            let variant = crate::kernels::attention::sparse_attention_variant(
                &ctx,
                &pipelines,
                config.head_size(),
                layout.block,
                config.kernels.hardware(ctx.details.is_software()),
            );
            SparseAttention {
                layout,
                variant,
                row_offsets,
                cols,
            }
        });
        let ops = forward::bind_ops(
            &ctx,
            &pipelines,
            &weights,
            &act,
            &kv,
            sparse.as_ref(),
            &config,
        );
        let block_bytes = |b: &BlockWeights| -> u64 {
            [&b.ln_1_w, &b.attn_w, &b.proj_w, &b.ln_2_w]
                .iter()
                .map(|x| x.size())
                .sum::<u64>()
                + [&b.ln_1_b, &b.attn_b, &b.proj_b, &b.ln_2_b]
                    .iter()
                    .map(|x| x.as_ref().map_or(0, |x| x.size()))
                    .sum::<u64>()
                + b.mlp.buffers().iter().map(|x| x.size()).sum::<u64>()
        };
        let moe_bytes = act.moe.as_ref().map_or(0, |m| {
            [
                &m.router_logits,
                &m.probs,
                &m.sel_e,
                &m.sel_w,
                &m.slot,
                &m.row_token,
                &m.row_expert,
                &m.hidden,
                &m.out,
            ]
            .iter()
            .map(|b| b.size())
            .sum::<u64>()
                + m.stats.iter().map(|b| b.size()).sum::<u64>()
        });
        let device_bytes = weights.wte.bytes()
            + weights.wpe.size()
            + weights.ln_f_w.size()
            + weights.ln_f_b.as_ref().map_or(0, |b| b.size())
            + weights.blocks.iter().map(block_bytes).sum::<u64>()
            + [
                &act.ids,
                &act.positions,
                &act.kv_rows,
                &act.kv_slots,
                &act.kv_tables,
                &act.x,
                &act.ln,
                &act.qkv,
                &act.att,
                &act.hidden,
                &act.norms,
                &act.dummy,
            ]
            .iter()
            .map(|b| b.size())
            .sum::<u64>()
            + act
                .logits
                .iter()
                .chain(&act.entropy)
                .map(|b| b.size())
                .sum::<u64>()
            + moe_bytes
            + kv.pages as u64 * kv.page_bytes;
        let hardware_kernels = config.kernels.hardware(ctx.details.is_software());
        Ok(Model {
            kv,
            max_batch,
            sparse,
            hardware_kernels,
            argmax_on_device: hardware_kernels,
            parameter_count: config.parameter_count(),
            config,
            ctx,
            pipelines,
            weights,
            act,
            ops,
            parameter_bytes,
            device_bytes,
        })
    }
}
