//! Building a model on the engine thread: open (or reuse) the device, check the memory
//! budget before anything is allocated, size the KV pool, publish what is loaded.

use std::sync::Arc;

use super::options::EngineOptions;
use super::state::{EngineState, ModelSnapshot};
use crate::config::{DeviceChoice, ModelConfig};
use crate::error::{Error, Result};
use crate::files::FileAccess;
use crate::gpu::GpuContext;
use crate::kernels::Pipelines;
use crate::model::kv_pool::{page_bytes, PAGE};
use crate::model::source::WeightFiles;
use crate::model::{resolve_config_with, Model, ServeShape};
use crate::tokenizer::Tokenizer;

pub(super) struct Loaded {
    pub(super) model: Model,
    pub(super) tokenizer: Arc<Tokenizer>,
    /// Tokens that end a generation: the tokenizer's end of text (GPT-2's
    /// `<|endoftext|>`, a directory's `eos_token`) and `generation_config.json`'s
    /// `eos_token_id`s.
    pub(super) end_ids: Vec<u32>,
}

/// Device + pipelines kept across rebuilds for the same device choice.
#[derive(Clone)]
pub(super) struct DeviceSlot {
    pub(super) choice: DeviceChoice,
    pub(super) ctx: Arc<GpuContext>,
    pub(super) pipelines: Arc<Pipelines>,
}

pub(super) fn publish(state: &EngineState, l: &Loaded, served_name: Option<&str>) {
    let m = &l.model;
    if let Ok(mut t) = state.tokenizer.write() {
        *t = Some(l.tokenizer.clone());
    }
    // the operator's name, a model directory's name, a checkpoint's file stem, or the
    // service's name
    let named = served_name.map(str::to_string);
    let model_id = m
        .config
        .model
        .as_deref()
        .and_then(|d| std::path::Path::new(d).file_name())
        .or_else(|| {
            m.config
                .checkpoint
                .as_deref()
                .and_then(|c| std::path::Path::new(c).file_stem())
        })
        .map_or_else(
            || "wgformer".to_string(),
            |s| s.to_string_lossy().into_owned(),
        );
    let model_id = named.unwrap_or(model_id);
    if let Ok(mut s) = state.model.write() {
        *s = ModelSnapshot {
            model_id,
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            config: Some(m.config.clone()),
            adapter: Some(m.ctx.details.clone()),
            total_parameters: m.parameter_count,
            model_size_mb: m.parameter_bytes as f64 / (1u64 << 20) as f64,
            device_memory_mb: m.device_bytes as f64 / (1u64 << 20) as f64,
            device_lost: false,
            cross_encoder: m.classifier.is_some(),
            active_generations: s.active_generations,
            kv_cache_mb: s.kv_cache_mb,
        };
    }
}

/// Build a model: open (or reuse) the device, check the config's memory against the
/// budget before anything is allocated, read the files it names under `access`.
pub(super) fn build(
    value: serde_json::Value,
    access: &FileAccess,
    options: &EngineOptions,
    slot: &mut Option<DeviceSlot>,
) -> Result<Loaded> {
    if !value.is_object() {
        return Err(Error::Config(
            "config must be a JSON object of config keys".into(),
        ));
    }
    let device: DeviceChoice = match value.get("device") {
        None | Some(serde_json::Value::Null) => DeviceChoice::Auto,
        Some(d) => {
            serde_json::from_value(d.clone()).map_err(|e| Error::Config(format!("device: {e}")))?
        }
    };
    let reuse = slot
        .as_ref()
        .is_some_and(|s| s.choice == device && !s.ctx.is_lost());
    if !reuse {
        let ctx = Arc::new(GpuContext::new(&device)?);
        let pipelines = Arc::new(Pipelines::new(&ctx)?);
        *slot = Some(DeviceSlot {
            choice: device,
            ctx,
            pipelines,
        });
    }
    let s = slot
        .as_ref()
        .ok_or_else(|| Error::NoAdapter("no device".into()))?;
    let budget = options
        .max_model_bytes
        .unwrap_or_else(|| s.ctx.default_memory_budget());
    let context_given = value.get("context_size").is_some_and(|v| !v.is_null());
    let (mut config, checkpoint) = resolve_config_with(value, access, budget)?;
    fit_context(&mut config, &s.ctx, context_given);
    let pages = kv_pool_pages(&config, options, budget);
    config
        .memory_estimate(
            pages as u128
                * page_bytes(config.n_layer, config.heads().kv_width(), config.kv_half()) as u128,
            options.max_batch,
        )
        .check(budget)?;
    let shape = ServeShape {
        kv_pages: pages,
        max_batch: options.max_batch,
        prefix_cache: options.prefix_cache,
    };
    let dir = match &checkpoint {
        Some(WeightFiles::Directory(d)) => Some(d),
        _ => None,
    };
    let from_dir = match dir {
        Some(d) if config.tokenizer.is_none() => d.load_tokenizer(MAX_TOKENIZER_BYTES)?,
        _ => None,
    };
    let tokenizer = match (config.tokenizer.as_deref(), from_dir) {
        (Some(name), _) => {
            let path = access.resolve("tokenizer", name)?;
            let bytes = access.read("tokenizer", name, &path, budget.min(MAX_TOKENIZER_BYTES))?;
            Tokenizer::from_bytes(&bytes, name)?
        }
        (None, Some(t)) => t,
        (None, None) => Tokenizer::gpt2()?,
    };
    let end_ids = match dir {
        Some(d) => d.end_ids(&tokenizer),
        None => tokenizer.token_id("<|endoftext|>").into_iter().collect(),
    };
    let model = Model::build_with(
        config,
        checkpoint,
        s.ctx.clone(),
        s.pipelines.clone(),
        shape,
    )?;
    Ok(Loaded {
        model,
        tokenizer: Arc::new(tokenizer),
        end_ids,
    })
}

/// A context the client did not ask for (the default, or a model directory's
/// `min(positions, 4096)`) lowered to what llvmpipe's loop limit lets the attention
/// run for this head size, so that a model loads on the software adapter as it would
/// on a GPU (a context the client gave is theirs: too long, it is refused by name).
fn fit_context(config: &mut ModelConfig, ctx: &GpuContext, given: bool) {
    let limit = ctx.context_limit(config.head_size());
    if let Some(most) = limit.filter(|&most| !given && config.context_size > most) {
        tracing::warn!(
            from = config.context_size,
            to = most,
            head_size = config.head_size(),
            "context_size lowered to what llvmpipe runs for this head size (give context_size to choose)"
        );
        config.context_size = most;
    }
}

/// Pages of the KV pool for `config`: `--kv-pool-bytes` when set; else room for
/// `max_batch` full-context generations, but at most half of what the budget leaves
/// after the weights and activations, and at least one full-context generation.
pub fn kv_pool_pages(config: &ModelConfig, options: &EngineOptions, budget: u64) -> usize {
    let per_page =
        page_bytes(config.n_layer, config.heads().kv_width(), config.kv_half()).max(1) as u128;
    let full = config.context_size.div_ceil(PAGE) as u128;
    let pages = match options.kv_pool_bytes {
        Some(b) => b as u128 / per_page,
        None => {
            let e = config.memory_estimate(0, options.max_batch);
            let left = (budget as u128).saturating_sub(e.weights + e.activations);
            (options.max_batch as u128 * full)
                .min(left / 2 / per_page)
                .max(full)
        }
    };
    pages.clamp(1, u32::MAX as u128) as usize
}

/// Largest tokenizer.json read (GPT-2's is 2 MB; the largest public ones ~30 MB).
pub(super) const MAX_TOKENIZER_BYTES: u64 = 256 << 20;
