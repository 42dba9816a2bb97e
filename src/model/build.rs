//! Building a model on the device: weights uploaded tensor by tensor (seeded or from a
//! checkpoint), activations sized once for the full context, and every dispatch bound
//! once ([`bind_ops`]) so that a step only writes uniforms and records.

use std::collections::HashMap;
use std::sync::Arc;

use super::source::{WeightFiles, WeightSource};
use super::weights::tensor_specs;
use crate::kernels::matmul::{self, to_panels};
use crate::kernels::matmul_bt::{upload_wte, ROW_GROUP};
use crate::kernels::LinearBuffers;

use super::kv_pool::KvPool;
use super::{
    generate, kv_pool, partials, weights, Activations, BlockOps, BlockWeights, DeviceWeights,
    ExpertSwiglu, Linear, MlpOps, MlpWeights, Model, MoeActivations, MoeGating, Ops, ServeShape,
    SharedExpertOps, SharedExpertWeights, SparseAttention, Staged, MAX_PREFILL_PARTS,
};
use crate::config::{Dtype, MatmulFusion, ModelConfig};
use crate::error::{Error, Result};
use crate::gpu::{buffers, GpuContext};
use crate::kernels::attention::{
    attention_op, attention_paged_op, attention_variant, paged_attention_variant, AttentionBuffers,
    PagedBuffers,
};
use crate::kernels::embedding::embedding_op;
use crate::kernels::layer_norm::layer_norm_op;
use crate::kernels::logit_cap::logit_cap_op;
use crate::kernels::logit_lens::{gather_rows_op, top_k_rows_op};
use crate::kernels::matmul::{matmul_fused_op, matmul_op, NormFold};
use crate::kernels::matmul_bt::matmul_bt_variant_op;
use crate::kernels::matvec::{self, matvec_fused_op, FusionBuffers};
use crate::kernels::matvec_bt::{self, matvec_bt_fused_op, matvec_bt_op};
use crate::kernels::moe::{
    moe_combine_op, moe_gate_op, moe_matmul_variant_op, moe_norm_gate_op, moe_route_op,
    NormGateBuffers,
};
use crate::kernels::row_norm::row_norm_op;
use crate::kernels::sample::sample_op;
use crate::kernels::swiglu::swiglu_op;
use crate::kernels::Pipelines;

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
    let per_row = usize::try_from(matmul::split_row_floats(&cfg.linear_shapes()))
        .unwrap_or(usize::MAX / 4)
        .max(1);
    let fits = (ctx.max_binding_bytes() / (per_row as u64 * 4)) as usize;
    let rows = matmul::SPLIT_MAX_ROWS.min(cfg.context_size).min(fits);
    (rows, (rows * per_row).max(4))
}

impl Model {
    /// Build a model from an effective config on `ctx`. With `checkpoint` the weights
    /// come from the file, else from the seeded initialisation. Generations get a KV
    /// pool for 4 full-context generations and batches of up to 16 (the service sizes
    /// both with [`Model::build_with`]).
    pub fn build(
        config: ModelConfig,
        checkpoint: Option<WeightFiles>,
        ctx: Arc<GpuContext>,
        pipelines: Arc<Pipelines>,
    ) -> Result<Model> {
        let shape = ServeShape::for_generations(&config, 4, 16);
        Self::build_with(config, checkpoint, ctx, pipelines, shape)
    }

    /// [`Model::build`] with the KV pool and batch size given.
    pub fn build_with(
        config: ModelConfig,
        checkpoint: Option<WeightFiles>,
        ctx: Arc<GpuContext>,
        pipelines: Arc<Pipelines>,
        shape: ServeShape,
    ) -> Result<Model> {
        config.validate()?;
        let headless = matches!(&checkpoint, Some(WeightFiles::Directory(d)) if d.headless);
        let pooling = match &checkpoint {
            Some(WeightFiles::Directory(d)) => d.pooling,
            _ => super::Pooling::default_for(config.architecture),
        };
        let (classifier, typed) = match &checkpoint {
            Some(WeightFiles::Directory(d)) => (d.classifier()?, d.typed_pairs),
            _ => (None, false),
        };
        let source = match checkpoint {
            Some(WeightFiles::Checkpoint(c)) => WeightSource::Checkpoint(c),
            Some(WeightFiles::Directory(d)) => WeightSource::Directory(d),
            None => WeightSource::Seeded(config.seed),
        };
        let c2 = ctx.clone();
        let mut model = ctx.scoped("model build", move || {
            Self::build_inner(config, &source, c2, pipelines, shape)
        })?;
        // (an encoder has no LM head: it serves embeddings only)
        model.headless = headless || model.config.architecture.encoder();
        model.pooling = pooling;
        model.classifier = classifier;
        model.pair_offset = typed.then_some(model.config.context_size);
        Ok(model)
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
        let heads = config.heads();
        let gated_mlp = config.architecture.gated_mlp();
        // the MLP buffers of the rows hold the widest of the dense MLP and the shared
        // expert (Qwen2-MoE)
        let shared_h = config.moe_shared_expert_size.unwrap_or(0);
        let (qkv_w, first_w) = (
            heads.qkv_width(),
            config.ffn_first_width().max(2 * shared_h),
        );
        let gated_w = h.max(shared_h);
        // Row chunks of wte: each chunk, and the logits chunk [context, rows] it
        // produces, must fit one storage binding.
        let max_bind = ctx.max_binding_bytes();
        let row_bytes = (c.div_ceil(8) * 8).max(ctxlen) * 4;
        let rows_per_chunk = (buffers::rows_per_binding(max_bind, row_bytes as u64) / ROW_GROUP
            * ROW_GROUP)
            .max(ROW_GROUP);
        for (what, bytes) in [
            ("qkv", ctxlen * qkv_w * 4),
            ("MLP hidden", ctxlen * first_w * 4),
        ] {
            if bytes as u64 > max_bind {
                return Err(Error::Config(format!(
                    "context_size ({ctxlen}) is too large for this adapter: the {what} activation ({bytes} bytes) exceeds its binding limit ({max_bind} bytes)"
                )));
            }
        }

        // llvmpipe would cut the attention's loops short past this context, silently
        let hs = config.head_size();
        if let Some(max_ctx) = ctx.context_limit(hs).filter(|&most| ctxlen > most) {
            return Err(Error::Config(format!(
                "context_size ({ctxlen}) is too long for heads of {hs} dimensions on llvmpipe (this software adapter), which stops a shader's loops after {} iterations: at most {max_ctx} positions with this head size; use a shorter context, more heads for the same n_embed, or a GPU",
                crate::gpu::context::LLVMPIPE_LOOP_ITERATIONS
            )));
        }

        // Upload tensor by tensor; the host copy of each is dropped right after.
        let specs = tensor_specs(&config);
        let mut wte = None;
        let mut head = None;
        let mut map: HashMap<String, wgpu::Buffer> = HashMap::new();
        let mut parameter_bytes = 0u64;
        let e = config.moe_num_experts;
        let half = config.dtype == crate::config::Dtype::Float16;
        // (a family that rotates adjacent pairs has its heads in the device's layout)
        let rotary_families =
            config.architecture.llama_like() && !config.architecture.rotates_adjacent_pairs();
        for (i, spec) in specs.iter().enumerate() {
            let mut values = source.values(spec, i)?;
            if spec.name == "wte.weight" || spec.name == "lm_head.weight" {
                // in row groups, and half floats with dtype float16 (the variant names
                // only pick the precision); an untied head chunked as wte
                let precision = if half { "embedding_f16" } else { "embedding" };
                parameter_bytes += (values.len() * if half { 2 } else { 4 }) as u64;
                let chunked = upload_wte(
                    &ctx,
                    precision,
                    &values,
                    values.len() / c,
                    c,
                    rows_per_chunk,
                );
                if spec.name == "wte.weight" {
                    wte = Some(chunked);
                } else {
                    head = Some(chunked);
                }
                continue;
            }
            fold_scalars(&config, &spec.name, &mut values);
            if rotary_families && spec.name.contains(".attn.c_attn.") {
                // each query and key head's halves interleaved (`kernels::rotary`)
                let cols = spec.shape[spec.shape.len() - 1];
                let (rotated, hs) = (heads.nh + heads.nkv, (heads.hs, config.rotary_dim()));
                values = crate::kernels::rotary::interleave_heads(&values, cols, rotated, hs);
            }
            if spec.name.ends_with(".attn.head_norm.weight") {
                // a row a head, interleaved as the heads it weighs (OLMo 2's: one row,
                // a weight a channel of every query and key head)
                let hs = (heads.hs, config.rotary_dim());
                values = match config.architecture.whole_head_norm() {
                    true => {
                        let cols = heads.q_width() + heads.kv_width();
                        let rotated = heads.nh + heads.nkv;
                        crate::kernels::rotary::interleave_heads(&values, cols, rotated, hs)
                    }
                    false => crate::kernels::rotary::interleave_heads(&values, heads.hs, 1, hs),
                };
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
                values = crate::gpu::f16::pack_f16(&values);
            }
            parameter_bytes += (values.len() * 4) as u64;
            if weights::padded_gate(&spec.name) {
                // pad a gate's columns to a multiple of 4 for the vec4 matmul
                let cols = spec.shape[1];
                let cols4 = cols.div_ceil(4) * 4;
                if cols4 != cols {
                    values = values
                        .chunks(cols)
                        .flat_map(|r| {
                            r.iter()
                                .copied()
                                .chain(std::iter::repeat_n(0.0, cols4 - cols))
                        })
                        .collect();
                }
                values = to_panels(&values, c, cols4);
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
        // (OLMo 2's blocks have no norm before the attention nor the MLP: their norm
        // ops, bound to this one stand-in, are never dispatched)
        let no_pre_norm = (!config.architecture.pre_norms())
            .then(|| buffers::upload(&ctx, "no pre-norm", &vec![1.0; c]));
        for l in 0..config.n_layer {
            let p = |s: &str| format!("h.{l}.{s}");
            let ln_1_w = match &no_pre_norm {
                None => need(take(&p("ln_1.weight")), "ln_1.weight")?,
                Some(stand_in) => stand_in.clone(),
            };
            // (a parallel block's MLP reads ln_1's output: its ln_2 op, bound to ln_1's
            // weights, is never dispatched)
            let arch = config.architecture;
            let shares = arch.parallel_block() || !(arch.pre_norms() || arch.encoder());
            let ln_2_w = match shares {
                true => ln_1_w.clone(),
                false => need(take(&p("ln_2.weight")), "ln_2.weight")?,
            };
            blocks.push(BlockWeights {
                ln_1_w,
                ln_1_b: take(&p("ln_1.bias")),
                attn_w: need(take(&p("attn.c_attn.weight")), "c_attn.weight")?,
                attn_b: take(&p("attn.c_attn.bias")),
                head_norm_w: take(&p("attn.head_norm.weight")),
                proj_w: need(take(&p("attn.c_proj.weight")), "attn.c_proj.weight")?,
                proj_b: take(&p("attn.c_proj.bias")),
                ln_2_w,
                ln_2_b: take(&p("ln_2.bias")),
                post_norms: match take(&p("attn.post_norm.weight")) {
                    Some(attn) => Some((
                        attn,
                        need(take(&p("mlp.post_norm.weight")), "mlp.post_norm.weight")?,
                    )),
                    None => None,
                },
                ln_3: match take(&p("ln_3.weight")) {
                    Some(w) => Some((w, take(&p("ln_3.bias")))),
                    None if arch.encoder() => {
                        return Err(Error::Checkpoint("ln_3.weight missing".into()))
                    }
                    None => None,
                },
                mlp: if config.is_moe_layer(l) {
                    MlpWeights::Moe {
                        shared: match take(&p("mlp.shared.c_fc.weight")) {
                            Some(fc_w) => Some(SharedExpertWeights {
                                fc_w,
                                proj_w: need(
                                    take(&p("mlp.shared.c_proj.weight")),
                                    "mlp.shared.c_proj.weight",
                                )?,
                                gate_w: need(
                                    take(&p("mlp.shared.gate.weight")),
                                    "mlp.shared.gate.weight",
                                )?,
                            }),
                            None => None,
                        },
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
        let table = |local: bool| {
            let (f, scale) = super::rope::rotation(&config, local);
            let (cos, sin) = super::rope::rope_table(&f, heads.hs / 2, ctxlen, scale);
            let table = crate::kernels::rotary::device_table(&cos, &sin, heads.hs);
            buffers::upload(&ctx, "rope", &table)
        };
        let rope = config.architecture.llama_like().then(|| table(false));
        let rope_local = config.local_rope().then(|| table(true));
        // (an encoder has no final norm: its op, bound to this stand-in, is never
        // dispatched)
        let encoder = config.architecture.encoder();
        let ln_f_w = match encoder {
            true => buffers::upload(&ctx, "no final norm", &vec![1.0; c]),
            false => need(take("ln_f.weight"), "ln_f.weight")?,
        };
        let ln_e = match take("ln_e.weight") {
            Some(w) => Some((w, take("ln_e.bias"))),
            None if encoder => return Err(Error::Checkpoint("ln_e.weight missing".into())),
            None => None,
        };
        let weights = DeviceWeights {
            wte,
            wpe: take("wpe.weight"),
            blocks,
            ln_f_w,
            ln_f_b: take("ln_f.bias"),
            ln_e,
            head,
            rope,
            rope_local,
        };

        let nh = config.n_head;
        let kv = kv_pool::KvPool::new(
            &ctx,
            config.n_layer,
            heads.kv_width(),
            shape.kv_pages,
            config.kv_half(),
            shape.prefix_cache,
        )?;
        let max_batch = shape.max_batch.clamp(1, ctxlen);
        // rows (a decode step's, a prefill step's last rows) and windows of the argmax
        // over every wte chunk
        let argmax_rows = max_batch.max(MAX_PREFILL_PARTS);
        let argmax_windows = generate::argmax_windows(&weights.wte.chunks);
        let (split_rows, split_floats) = split_scratch(&config, &ctx, &pipelines);
        let deferred =
            partials::mlp_shape(&config, config.kernels.hardware(ctx.details.is_software()));
        let act = Activations {
            partials: deferred.map(|s| {
                // a decode batch beside a short prompt's chunk (a mixed step)
                let rows = (max_batch + partials::PREFILL_ROWS).min(ctxlen);
                super::PartialActivations::new(&ctx, &config, s, rows)
            }),
            ids: buffers::storage(&ctx, "ids", ctxlen),
            positions: buffers::storage(&ctx, "positions", ctxlen),
            kv_rows: buffers::storage(&ctx, "kv rows", 2 * ctxlen),
            kv_slots: buffers::storage(&ctx, "kv slots", ctxlen),
            kv_tables: buffers::storage(
                &ctx,
                "kv tables",
                max_batch.max(MAX_PREFILL_PARTS) * ctxlen.div_ceil(kv_pool::PAGE),
            ),
            x: buffers::storage(&ctx, "x", ctxlen * c),
            ln: buffers::storage(&ctx, "ln", ctxlen * c),
            qkv: buffers::storage(&ctx, "qkv", ctxlen * qkv_w),
            att: buffers::storage(&ctx, "att", ctxlen * heads.q_width().max(c)),
            hidden: buffers::storage(&ctx, "hidden", ctxlen * first_w),
            gated: gated_mlp.then(|| buffers::storage(&ctx, "gated", ctxlen * gated_w)),
            logits: weights
                .lm_head()
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
            sample_specs: buffers::storage(&ctx, "sample specs", 5 * argmax_rows),
            picked: buffers::storage(&ctx, "picked", argmax_rows),
            gather_list: buffers::storage(&ctx, "gather list", max_batch + MAX_PREFILL_PARTS),
            picked_reads: [0, 1]
                .map(|i| buffers::staging(&ctx, &format!("picked read-back {i}"), argmax_rows)),
            readback: buffers::staging(
                &ctx,
                "readback",
                // (a shared forward's embeddings: n_embed a text)
                (config.vocab_size.max(config.n_embed) * max_batch.max(MAX_PREFILL_PARTS))
                    // (an encoder's embeddings pooled by the mean: every row's)
                    .max(config.n_embed * ctxlen)
                    + 3 * argmax_rows * argmax_windows
                    + argmax_rows
                    + config.n_layer * nh * ctxlen
                    + (config.n_layer + 1) * ctxlen
                    + config.n_layer * (2 * e + 1),
            ),
            moe: config.use_moe.then(|| {
                let k = config.moe_top_k;
                let e4 = e.div_ceil(4) * 4;
                let he = config.moe_hidden();
                let rows = crate::kernels::moe::grouped_rows(ctxlen, e, k);
                let st = |n: &str, f: usize| buffers::storage(&ctx, n, f);
                MoeActivations {
                    gated: gated_mlp.then(|| st("moe gated", rows * he)),
                    shared_gate: st("moe shared gate", if shared_h > 0 { ctxlen * 4 } else { 4 }),
                    router_logits: st("moe router logits", ctxlen * e4),
                    probs: st("moe probs", ctxlen * e),
                    // whole vec4s, so a capture copies a forward's rows in the pass
                    sel_e: st("moe sel_e", (ctxlen * k).div_ceil(4) * 4),
                    sel_w: st("moe sel_w", (ctxlen * k).div_ceil(4) * 4),
                    slot: st("moe slot", ctxlen * k),
                    row_token: st("moe row_token", rows),
                    row_expert: st("moe row_expert", rows),
                    hidden: st("moe hidden", rows * if gated_mlp { 2 * he } else { he }),
                    out: st("moe out", rows * c),
                    stats: (0..config.n_layer)
                        .map(|_| st("moe stats", 2 * e + 1))
                        .collect(),
                }
            }),
        };
        let sparse = config.use_sparse_attention.then(|| {
            let layout = crate::sparse::BlockLayout::new(
                ctxlen,
                config.sparse_block_size,
                config.sparse_local_blocks,
                config.sparse_global_blocks,
                config.sparse_stride,
            );
            let (row_offsets, cols) = crate::kernels::attention::upload_layout(&ctx, &layout);
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
        let folds = norm_folds(&ctx, &pipelines, &weights, &config)?;
        let ops = bind_ops(
            &ctx,
            &pipelines,
            &weights,
            &act,
            &kv,
            sparse.as_ref(),
            &config,
            &folds,
        );
        // (a parallel block's ln_2 is its ln_1, not counted twice)
        let arch = config.architecture;
        let shared_ln = arch.parallel_block() || !(arch.pre_norms() || arch.encoder());
        let norm_bytes = |n: &Option<(wgpu::Buffer, Option<wgpu::Buffer>)>| {
            n.as_ref()
                .map_or(0, |(w, b)| w.size() + b.as_ref().map_or(0, |b| b.size()))
        };
        let block_bytes = |b: &BlockWeights| -> u64 {
            [&b.ln_1_w, &b.attn_w, &b.proj_w, &b.ln_2_w]
                .iter()
                .map(|x| x.size())
                .sum::<u64>()
                - if shared_ln { b.ln_2_w.size() } else { 0 }
                + [&b.ln_1_b, &b.attn_b, &b.head_norm_w, &b.proj_b, &b.ln_2_b]
                    .iter()
                    .map(|x| x.as_ref().map_or(0, |x| x.size()))
                    .sum::<u64>()
                + b.post_norms
                    .as_ref()
                    .map_or(0, |(a, m)| a.size() + m.size())
                + norm_bytes(&b.ln_3)
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
                + m.gated.as_ref().map_or(0, |b| b.size())
                + m.shared_gate.size()
        });
        let device_bytes = weights.wte.bytes()
            + weights.head.as_ref().map_or(0, |h| h.bytes())
            + weights.wpe.as_ref().map_or(0, |b| b.size())
            + weights.rope.as_ref().map_or(0, |t| t.size())
            + weights.rope_local.as_ref().map_or(0, |t| t.size())
            + weights.ln_f_w.size()
            + weights.ln_f_b.as_ref().map_or(0, |b| b.size())
            + norm_bytes(&weights.ln_e)
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
                act.gated.as_ref().unwrap_or(&act.dummy),
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
            + act.partials.as_ref().map_or(0, |p| p.bytes())
            + kv.pages as u64 * kv.page_bytes;
        let hardware_kernels = config.kernels.hardware(ctx.details.is_software());
        Ok(Model {
            kv,
            max_batch,
            steps: Default::default(),
            reads_held: Default::default(),
            host_times: Default::default(),
            sparse,
            hardware_kernels,
            argmax_on_device: hardware_kernels,
            sample_on_device: hardware_kernels && ops.sample.is_some(),
            parameter_count: config.parameter_count(),
            headless: false,
            pooling: super::Pooling::Last,
            classifier: None,
            pair_offset: None,
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

/// The tile matmul variant of the blocks' linears when it folds the norm before a
/// projection and SwiGLU into its staging (the hardware kernels, `matmul_fusion`
/// The config's scalars folded into tensor `name`'s values (Hugging Face's layout,
/// before any permutation), so no kernel takes them: the query scale
/// ([`ModelConfig::query_scale`]) into the query heads' norm where the block has one (a
/// norm's weight scales its output), else into the qkv projection's query columns;
/// `residual_multiplier` into every down projection (`c_proj`: the attention's, the
/// MLP's, the experts'); `1 / logits_scaling` into the final norm.
fn fold_scalars(cfg: &ModelConfig, name: &str, values: &mut [f32]) {
    let scale = |v: &mut [f32], f: f32| v.iter_mut().for_each(|w| *w *= f);
    if let Some(f) = cfg.query_scale() {
        let (hs, q) = (cfg.head_size(), cfg.heads().q_width());
        if name.ends_with(".attn.head_norm.weight") {
            // the query heads' weights: a head's, or (OLMo 2) every channel's
            let q_weights = if cfg.architecture.whole_head_norm() {
                q
            } else {
                hs
            };
            scale(&mut values[..q_weights], f);
        } else if !cfg.architecture.head_norm() && name.contains(".attn.c_attn.") {
            let cols = cfg.heads().qkv_width();
            values
                .chunks_mut(cols)
                .for_each(|row| scale(&mut row[..q], f));
        }
    }
    if let Some(r) = cfg.residual_multiplier {
        if name.contains(".c_proj.") {
            scale(values, r);
        }
    }
    if let Some(s) = cfg.logits_scaling {
        if name.starts_with("ln_f.") {
            scale(values, 1.0 / s);
        }
    }
}

/// auto), else `None`.
fn staging_variant(cfg: &ModelConfig, ctx: &GpuContext, pl: &Pipelines) -> Option<&'static str> {
    let hardware = cfg.kernels.hardware(ctx.details.is_software());
    let lin = matmul::variant_for(pl, hardware, cfg.dtype == Dtype::Float16);
    (matmul::fuses_staging(lin) && cfg.matmul_fusion == MatmulFusion::Auto).then_some(lin)
}

/// What the tile matmuls of a block need to fold its norms ([`NormFold`]): its qkv
/// projection's (ln_1) and its dense up projection's (ln_2).
pub(super) struct BlockFolds {
    qkv: Option<NormFold>,
    up: Option<NormFold>,
}

/// Each block's [`BlockFolds`], taken on the device from its weights where the tile
/// matmuls fold the norms ([`staging_variant`]; none elsewhere, nor for MoE MLPs).
fn norm_folds(
    ctx: &GpuContext,
    pl: &Pipelines,
    w: &DeviceWeights,
    cfg: &ModelConfig,
) -> Result<Vec<BlockFolds>> {
    let lin = staging_variant(cfg, ctx, pl)
        .filter(|_| !cfg.architecture.parallel_block() && cfg.architecture.pre_norms());
    let Some(lin) = lin else {
        return Ok(w
            .blocks
            .iter()
            .map(|_| BlockFolds {
                qkv: None,
                up: None,
            })
            .collect());
    };
    let norm = super::block_norm(cfg);
    let (c, qkv_n, up_n) = (cfg.n_embed, cfg.heads().qkv_width(), cfg.ffn_first_width());
    w.blocks
        .iter()
        .map(|b| {
            let qkv = NormFold::new(
                ctx,
                pl,
                lin,
                (&b.attn_w, qkv_n, c),
                norm,
                (&b.ln_1_w, b.ln_1_b.as_ref()),
                b.attn_b.as_ref(),
            )?;
            let up = match &b.mlp {
                MlpWeights::Dense { fc_w, fc_b, .. } => Some(NormFold::new(
                    ctx,
                    pl,
                    lin,
                    (fc_w, up_n, c),
                    norm,
                    (&b.ln_2_w, b.ln_2_b.as_ref()),
                    fc_b.as_ref(),
                )?),
                MlpWeights::Moe { .. } => None,
            };
            Ok(BlockFolds { qkv: Some(qkv), up })
        })
        .collect()
}

/// Bind every dispatch once, at model build: the forward's, and the generation
/// steps' (the same modules, with the matrix-vector kernels and the paged KV pool).
/// `folds`: each block's [`norm_folds`].
#[allow(clippy::too_many_arguments)]
pub(super) fn bind_ops(
    ctx: &GpuContext,
    pl: &Pipelines,
    w: &DeviceWeights,
    a: &Activations,
    kv: &KvPool,
    sparse: Option<&SparseAttention>,
    cfg: &ModelConfig,
    folds: &[BlockFolds],
) -> Ops {
    let hs = cfg.head_size();
    let half_weights = cfg.dtype == Dtype::Float16;
    let hardware = cfg.kernels.hardware(ctx.details.is_software());
    let (c, hidden) = (cfg.n_embed, cfg.ffn_hidden());
    let heads = cfg.heads();
    // kernels with a GPU-shaped twin: layer norm, the decode attention and the
    // matrix-vector products
    let ln = if hardware {
        "layer_norm_workgroup"
    } else {
        "layer_norm"
    };
    let paged = paged_attention_variant(pl, hs, hardware);
    // kernels reading wte (embedding, LM head) and the blocks' linears: f32 weights,
    // or half floats (dtype float16)
    let lm_head_rows = matvec_bt::variant_for(pl, hardware, half_weights, c);
    let (embed, lm_head, lin, moe_lin) = if half_weights {
        (
            "embedding_f16",
            pl.best("matmul_bt_f16"),
            crate::kernels::matmul::variant_for(pl, hardware, true),
            pl.best("moe_matmul_f16"),
        )
    } else {
        (
            "embedding",
            pl.best("matmul_bt"),
            crate::kernels::matmul::variant_for(pl, hardware, false),
            pl.best("moe_matmul"),
        )
    };
    // the tile matmuls fold the norm before a projection and SwiGLU into their staging
    let staging = staging_variant(cfg, ctx, pl).is_some();
    let or_dummy =
        |b: &Option<wgpu::Buffer>| -> wgpu::Buffer { b.clone().unwrap_or_else(|| a.dummy.clone()) };
    let pool_half = kv.half;
    // a linear x[., k] -> out[., n] with both row paths; `kv`: a qkv projection whose
    // prefill chunks and decode steps store the keys and values in its epilogue
    // (`(k_pool, v_pool)` of its layer); `norm`:
    // the norm (weight, bias) before it, which the hardware matrix-vector kernels fold
    // in (their op `normed` reads the residual stream instead of `x`)
    let fused_linear = |x: &wgpu::Buffer,
                        wt: &wgpu::Buffer,
                        b: &Option<wgpu::Buffer>,
                        out: &wgpu::Buffer,
                        (n, k): (usize, usize),
                        kv: Option<(&wgpu::Buffer, &wgpu::Buffer)>,
                        norm: Option<(&wgpu::Buffer, &Option<wgpu::Buffer>)>,
                        fold: Option<&NormFold>,
                        rope: Option<&wgpu::Buffer>| {
        let bias = or_dummy(b);
        let variant = matvec::variant_for(pl, hardware, half_weights, n);
        // a qkv projection: the keys and values to the pool, the rotary families'
        // queries and keys rotated first, in every op's epilogue
        let qkv = FusionBuffers {
            kv: kv.map(|(k, v)| (k, v, &a.kv_slots)),
            kv_half: kv.is_some() && pool_half,
            positions: rope.map(|_| &a.positions),
            rope,
            ..Default::default()
        };
        let split = Some(&a.split).map(|part| (part, a.split_rows));
        // the residual stream in, the norm folded: the tile matmuls' staging (a
        // prefill chunk, a forward), the hardware matrix-vector kernels (decode)
        let norm = norm.map(|(g, nb)| (g, or_dummy(nb)));
        let stream = LinearBuffers {
            x: &a.x,
            w: wt,
            bias: &bias,
            out,
        };
        // the tile matmuls: the norm's bias carried through the weights into the op's
        let staged = norm.as_ref().zip(fold).map(|(&(g, _), fold)| {
            let io = LinearBuffers {
                bias: fold.bias.as_ref().unwrap_or(&bias),
                ..stream
            };
            let fused = FusionBuffers {
                norm: Some((g, &fold.gw)),
                ..qkv
            };
            Staged::Normed(matmul_fused_op(ctx, pl, lin, &io, split, fused))
        });
        let normed = norm
            .as_ref()
            .filter(|_| matvec::fuses_norm(variant))
            .map(|&(g, ref nb)| {
                let fused = FusionBuffers {
                    norm: Some((g, nb)),
                    ..qkv
                };
                matvec_fused_op(ctx, pl, variant, &stream, fused)
            });
        Linear {
            matmul: matmul_fused_op(
                ctx,
                pl,
                lin,
                &LinearBuffers {
                    x,
                    w: wt,
                    bias: &bias,
                    out,
                },
                split,
                qkv,
            ),
            staged,
            matvec: matvec_fused_op(
                ctx,
                pl,
                variant,
                &LinearBuffers {
                    x,
                    w: wt,
                    bias: &bias,
                    out,
                },
                qkv,
            ),
            normed,
            n,
            k,
        }
    };
    let linear =
        |x: &wgpu::Buffer,
         wt: &wgpu::Buffer,
         b: &Option<wgpu::Buffer>,
         out: &wgpu::Buffer,
         n: usize,
         k: usize| fused_linear(x, wt, b, out, (n, k), None, None, None, None);
    let (ro, cols) = match sparse {
        Some(sp) => (&sp.row_offsets, &sp.cols),
        None => (&a.dummy, &a.dummy),
    };
    // the attention of a forward and of a prefill chunk (keys and values in qkv, or in
    // the pool through the page table): the kernel this adapter and layout get
    let best_attention = match sparse {
        Some(sp) => sp.variant,
        None => attention_variant(pl, hs, hardware),
    };
    // `pooled`: k and v are the layer's pool (a prefill chunk's), of the pool's type
    let attn_op = |ent: &wgpu::Buffer,
                   (k, v, pooled): (&wgpu::Buffer, &wgpu::Buffer, bool),
                   tables: &wgpu::Buffer,
                   variant: &'static str| {
        let bufs = AttentionBuffers {
            qkv: &a.qkv,
            k,
            v,
            out: &a.att,
            entropy: ent,
            tables,
            sparse: sparse.map(|sp| (&sp.row_offsets, &sp.cols)),
            half: pooled && kv.half,
            head_size: hs,
        };
        attention_op(ctx, pl, variant, &bufs)
    };
    // where a block's output and down projections write: the residual stream, which
    // they add to, or (post-norms) `ln`, free by then, which the post-norm adds from
    let stream = if cfg.architecture.post_norms() {
        &a.ln
    } else {
        &a.x
    };
    // a parallel block (Cohere's): both linears read ln_1's output, no norm folded;
    // without pre-norms (OLMo 2's) both read the stream itself
    let parallel = cfg.architecture.parallel_block();
    let pre = cfg.architecture.pre_norms();
    let normed_in = if pre { &a.ln } else { &a.x };
    // an encoder's (post-LN) MLP reads the attention's normalised output (`ln`, from
    // ln_2) and its down projection adds to it there; ln_3 then normalises it into `x`
    let encoder = cfg.architecture.encoder();
    let (mlp_in, mlp_out) = match encoder {
        true => (&a.ln, &a.ln),
        false => (normed_in, &a.x),
    };
    let blocks = w
        .blocks
        .iter()
        .zip(&a.entropy)
        .enumerate()
        .map(|(l, (b, ent))| BlockOps {
            ln_1: layer_norm_op(ctx, pl, ln, &a.x, &b.ln_1_w, &or_dummy(&b.ln_1_b), &a.ln),
            // prefill chunks and decode steps store the keys and values in the qkv
            // projection's epilogue (the rotary families' rotated there first)
            c_attn: fused_linear(
                normed_in,
                &b.attn_w,
                &b.attn_b,
                &a.qkv,
                (heads.qkv_width(), c),
                Some((&kv.k[l], &kv.v[l])),
                // a parallel block's ln_1 is dispatched: its MLP reads it too
                (!parallel && pre).then_some((&b.ln_1_w, &b.ln_1_b)),
                folds[l].qkv.as_ref(),
                w.rope_of(cfg, l),
            ),
            attn: attn_op(ent, (&a.qkv, &a.qkv, false), &a.dummy, best_attention),
            attn_parts: (0..MAX_PREFILL_PARTS)
                .map(|_| attn_op(ent, (&a.qkv, &a.qkv, false), &a.dummy, best_attention))
                .collect(),
            attn_prefill: (0..MAX_PREFILL_PARTS)
                .map(|_| {
                    attn_op(
                        ent,
                        (&kv.k[l], &kv.v[l], true),
                        &a.kv_tables,
                        best_attention,
                    )
                })
                .collect(),
            // the sparse subgroup kernel needs a subgroup's queries in one block: chunks
            // starting off a subgroup boundary take the portable kernel
            attn_prefill_unaligned: (best_attention == "sparse_attention_subgroup").then(|| {
                (0..MAX_PREFILL_PARTS)
                    .map(|_| {
                        attn_op(
                            ent,
                            (&kv.k[l], &kv.v[l], true),
                            &a.kv_tables,
                            "sparse_attention",
                        )
                    })
                    .collect()
            }),
            attn_paged: attention_paged_op(
                ctx,
                pl,
                paged,
                &PagedBuffers {
                    qkv: &a.qkv,
                    k_pool: &kv.k[l],
                    v_pool: &kv.v[l],
                    out: &a.att,
                    rows: &a.kv_rows,
                    tables: &a.kv_tables,
                    row_offsets: ro,
                    cols,
                    half: kv.half,
                    head_size: hs,
                },
            ),
            head_norm: b.head_norm_w.as_ref().map(|g| {
                crate::kernels::head_norm::head_norm_op(
                    ctx,
                    pl,
                    &a.qkv,
                    g,
                    Some((&kv.k[l], &kv.v[l], &a.kv_slots)),
                    kv.half,
                    w.rope_of(cfg, l).map(|r| (&a.positions, r)),
                )
            }),
            c_proj: linear(&a.att, &b.proj_w, &b.proj_b, stream, c, heads.q_width()),
            post_norms: b.post_norms.as_ref().map(|(attn, mlp)| {
                let post = |g| layer_norm_op(ctx, pl, ln, &a.ln, g, &a.dummy, &a.x);
                (post(attn), post(mlp))
            }),
            ln_2: layer_norm_op(ctx, pl, ln, &a.x, &b.ln_2_w, &or_dummy(&b.ln_2_b), &a.ln),
            ln_3: b
                .ln_3
                .as_ref()
                .map(|(g, bias)| layer_norm_op(ctx, pl, ln, &a.ln, g, &or_dummy(bias), &a.x)),
            mlp: match (&b.mlp, &a.moe) {
                (
                    MlpWeights::Moe {
                        router,
                        fc_w,
                        fc_b,
                        fc_proj_w,
                        fc_proj_b,
                        shared,
                    },
                    Some(m),
                ) => {
                    // the experts' first layer into `out` (gate | up, or gated: flag
                    // SWIGLU_OUT)
                    let expert_fc = |out| {
                        let io = LinearBuffers {
                            x: &a.ln,
                            w: fc_w,
                            bias: &or_dummy(fc_b),
                            out,
                        };
                        moe_matmul_variant_op(ctx, pl, moe_lin, &io, (&m.row_token, &m.row_expert))
                    };
                    MlpOps::Moe {
                        swiglu: m.gated.as_ref().map(|gated| ExpertSwiglu {
                            swiglu: swiglu_op(ctx, pl, &m.hidden, gated, None),
                            // gate | up gated straight into `gated` on short steps
                            fc_gated: expert_fc(gated),
                        }),
                        shared: shared.as_ref().zip(a.gated.as_ref()).map(|(s, gated)| {
                            let hs = cfg.moe_shared_expert_size.unwrap_or(0);
                            SharedExpertOps {
                                c_fc: linear(&a.ln, &s.fc_w, &None, &a.hidden, 2 * hs, c),
                                // the hardware kernels' gate takes its logit
                                gate: (!hardware).then(|| {
                                    matmul_op(
                                        ctx,
                                        pl,
                                        &LinearBuffers {
                                            x: &a.ln,
                                            w: &s.gate_w,
                                            bias: &a.dummy,
                                            out: &m.shared_gate,
                                        },
                                    )
                                }),
                                swiglu: swiglu_op(ctx, pl, &a.hidden, gated, Some(&m.shared_gate)),
                                fc_proj: linear(gated, &s.proj_w, &None, &a.x, c, hs),
                            }
                        }),
                        gating: if hardware {
                            MoeGating::Normed(moe_norm_gate_op(
                                ctx,
                                pl,
                                &NormGateBuffers {
                                    x: &a.x,
                                    norm_w: &b.ln_2_w,
                                    norm_b: &or_dummy(&b.ln_2_b),
                                    router,
                                    ln: &a.ln,
                                    probs: &m.probs,
                                    sel_e: &m.sel_e,
                                    sel_w: &m.sel_w,
                                    shared_w: shared
                                        .as_ref()
                                        .filter(|_| a.gated.is_some())
                                        .map_or(&a.dummy, |s| &s.gate_w),
                                    shared_gate: &m.shared_gate,
                                },
                            ))
                        } else {
                            // the router's f32 weights by both row paths (a decode
                            // step's one row is not a 16-row tile's work)
                            let io = LinearBuffers {
                                x: &a.ln,
                                w: router,
                                bias: &a.dummy,
                                out: &m.router_logits,
                            };
                            MoeGating::Separate {
                                router: Linear {
                                    matmul: matmul_op(ctx, pl, &io),
                                    staged: None,
                                    matvec: matvec::matvec_variant_op(ctx, pl, "matvec", &io),
                                    normed: None,
                                    n: cfg.moe_num_experts.div_ceil(4) * 4,
                                    k: c,
                                },
                                gate: moe_gate_op(
                                    ctx,
                                    pl,
                                    &m.router_logits,
                                    &m.probs,
                                    &m.sel_e,
                                    &m.sel_w,
                                ),
                            }
                        },
                        route: moe_route_op(
                            ctx,
                            pl,
                            &m.sel_e,
                            &m.probs,
                            &m.row_token,
                            &m.row_expert,
                            &m.slot,
                            &m.stats[l],
                        ),
                        fc: expert_fc(&m.hidden),
                        proj: moe_matmul_variant_op(
                            ctx,
                            pl,
                            moe_lin,
                            &LinearBuffers {
                                x: m.gated.as_ref().unwrap_or(&m.hidden),
                                w: fc_proj_w,
                                bias: &or_dummy(fc_proj_b),
                                out: &m.out,
                            },
                            (&m.row_token, &m.row_expert),
                        ),
                        combine: moe_combine_op(ctx, pl, &m.out, &m.sel_w, &m.slot, &a.x),
                    }
                }
                (
                    MlpWeights::Dense {
                        fc_w,
                        fc_b,
                        fc_proj_w,
                        fc_proj_b,
                    },
                    _,
                ) => match &a.gated {
                    // SwiGLU: gate | up, then the gated hidden into the down projection
                    Some(gated) => MlpOps::Dense {
                        c_fc: fused_linear(
                            normed_in,
                            fc_w,
                            fc_b,
                            &a.hidden,
                            (2 * hidden, c),
                            None,
                            (!parallel && pre).then_some((&b.ln_2_w, &b.ln_2_b)),
                            folds[l].up.as_ref(),
                            None,
                        ),
                        swiglu: Some(swiglu_op(ctx, pl, &a.hidden, gated, None)),
                        fc_proj: Linear {
                            // the tile matmuls stage silu(gate) · up from gate | up (not
                            // Gemma's gelu(gate) · up)
                            staged: (staging && !cfg.architecture.gelu_gate()).then(|| {
                                let io = LinearBuffers {
                                    x: &a.hidden,
                                    w: fc_proj_w,
                                    bias: &or_dummy(fc_proj_b),
                                    out: stream,
                                };
                                let split = Some((&a.split, a.split_rows));
                                let none = FusionBuffers::default();
                                Staged::Gated(matmul_fused_op(ctx, pl, lin, &io, split, none))
                            }),
                            ..linear(gated, fc_proj_w, fc_proj_b, stream, c, hidden)
                        },
                    },
                    None => MlpOps::Dense {
                        c_fc: fused_linear(
                            mlp_in,
                            fc_w,
                            fc_b,
                            &a.hidden,
                            (hidden, c),
                            None,
                            (!parallel && pre).then_some((&b.ln_2_w, &b.ln_2_b)),
                            folds[l].up.as_ref(),
                            None,
                        ),
                        swiglu: None,
                        fc_proj: linear(&a.hidden, fc_proj_w, fc_proj_b, mlp_out, c, hidden),
                    },
                },
                (MlpWeights::Moe { .. }, None) => {
                    unreachable!("MoE weights come with MoE activations")
                }
            },
            norm: row_norm_op(ctx, pl, &a.x, &a.norms),
        })
        .collect();
    // the matrix-vector LM head (per wte chunk) over rows of `rows`
    let lm_head_over = |rows: &wgpu::Buffer| -> Vec<_> {
        w.lm_head()
            .chunks
            .iter()
            .zip(&a.logits)
            .map(|(ch, out)| matvec_bt_op(ctx, pl, lm_head_rows, rows, &ch.buffer, out))
            .collect()
    };
    // the hardware LM head over the residual stream with ln_f folded in (decode steps)
    let ln_f_b = or_dummy(&w.ln_f_b);
    // (a prefill step's asked rows read through the gather list, where they lie)
    let lm_head_normed = matvec_bt::fuses_norm(lm_head_rows).then(|| {
        w.lm_head()
            .chunks
            .iter()
            .zip(&a.logits)
            .map(|(ch, out)| {
                let io = (&a.x, &ch.buffer, out);
                let norm = Some((&w.ln_f_w, &ln_f_b));
                matvec_bt_fused_op(ctx, pl, lm_head_rows, io, norm, Some(&a.gather_list))
            })
            .collect()
    });
    Ops {
        embedding: w
            .wte
            .chunks
            .iter()
            .map(|ch| {
                embedding_op(
                    ctx,
                    pl,
                    embed,
                    &a.ids,
                    &ch.buffer,
                    w.wpe.as_ref().unwrap_or(&a.dummy),
                    if encoder { &a.ln } else { &a.x },
                    &a.positions,
                )
            })
            .collect(),
        ln_e: w
            .ln_e
            .as_ref()
            .map(|(g, b)| layer_norm_op(ctx, pl, ln, &a.ln, g, &or_dummy(b), &a.x)),
        embed_norm: row_norm_op(ctx, pl, &a.x, &a.norms),
        blocks,
        ln_f: layer_norm_op(ctx, pl, ln, &a.x, &w.ln_f_w, &or_dummy(&w.ln_f_b), &a.ln),
        lm_head: w
            .lm_head()
            .chunks
            .iter()
            .zip(&a.logits)
            .map(|(ch, out)| matmul_bt_variant_op(ctx, pl, lm_head, &a.ln, &ch.buffer, out))
            .collect(),
        lm_head_rows: lm_head_over(&a.ln),
        lm_head_normed,
        logit_cap: match cfg.final_logit_softcapping {
            Some(_) => a.logits.iter().map(|z| logit_cap_op(ctx, pl, z)).collect(),
            None => Vec::new(),
        },
        top1: a
            .logits
            .iter()
            .map(|lg| top_k_rows_op(ctx, pl, lg, &a.top1))
            .collect(),
        // (a vocabulary in more chunks than the kernel reads samples on the host)
        sample: (a.logits.len() <= crate::kernels::sample::MAX_CHUNKS).then(|| {
            let chunks: Vec<&wgpu::Buffer> = a.logits.iter().collect();
            sample_op(ctx, pl, &chunks, &a.sample_specs, &a.picked)
        }),
        // the prompts' last rows gathered into `att`, free once the blocks are done
        last_rows: gather_rows_op(ctx, pl, &a.ln, &a.att, &a.gather_list),
        lm_head_last: lm_head_over(&a.att),
        partials: a.partials.as_ref().map(|parts| {
            let b = partials::PartialBinding {
                ctx,
                pl,
                act: a,
                parts,
                kv,
                sparse: (ro, cols),
            };
            partials::bind(&b, w, cfg)
        }),
    }
}
