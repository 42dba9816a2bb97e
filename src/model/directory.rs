//! A Hugging Face model directory: `config.json` (the family and every dimension),
//! weights as `model.safetensors` or shards listed by `model.safetensors.index.json`,
//! `tokenizer.json`, `tokenizer_config.json` (BOS / EOS tokens, `add_bos_token`) and
//! `generation_config.json` (`eos_token_id`). Only the safetensors headers are read
//! when the directory is opened; each tensor's bytes are read when the build asks for
//! it ([`ModelDir::load`]) and dropped once it is on the device, so loading never
//! holds more than one tensor on the host. Errors name the directory as the client
//! gave it and the file or tensor at fault, never a server path.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use serde_json::Value;

use super::family::{self, Architecture, Family, Mlp, NormKind, Positions};
use super::weights::{extend_f32, TensorSpec};
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::files::{try_vec_with_capacity, FileAccess};
use crate::tokenizer::Tokenizer;

/// Largest JSON file of a directory read (configs, the shard index).
const MAX_JSON_BYTES: u64 = 64 << 20;
/// Largest safetensors header read.
const MAX_HEADER_BYTES: u64 = 100 << 20;

/// A Hugging Face tensor that is part of one of ours, with the shape it must have.
type Part = (String, Vec<usize>);

/// One tensor of a shard: where its bytes are.
#[derive(Clone, Debug)]
struct Entry {
    shard: usize,
    dtype: Option<safetensors::Dtype>,
    dtype_name: String,
    shape: Vec<usize>,
    /// Byte range in the shard file.
    begin: u64,
    end: u64,
}

struct Shard {
    /// The file's name inside the directory (for errors).
    name: String,
    file: std::fs::File,
}

/// An opened model directory: its architecture, where each tensor is, the tokenizer
/// files and the stop tokens.
pub struct ModelDir {
    /// The directory as the client named it.
    pub name: String,
    pub arch: Architecture,
    shards: Vec<Shard>,
    tensors: HashMap<String, Entry>,
    /// Where the language model's tensors are: `model.`, or a multimodal checkpoint's
    /// (`language_model.model.` as Gemma 3's are published, `model.language_model.` as
    /// transformers 5 saves them).
    prefix: &'static str,
    /// A base model's checkpoint without an LM head (see [`crate::model::Model::headless`]).
    pub headless: bool,
    /// How a text's embedding is pooled: the sentence-transformers pooling config's
    /// mode, else the family's ([`Pooling::default_for`]).
    pub pooling: Pooling,
    /// An encoder's rows of the position table before position 0 (RoBERTa's
    /// `pad_token_id + 1`).
    position_offset: usize,
    /// sentence-transformers' `max_seq_length` (`sentence_bert_config.json`): the
    /// longest text the model was tuned on, its default context.
    seq_limit: Option<usize>,
    /// An encoder with token types: its position table gets a second half with type
    /// 1's embedding, which a pair's second text reads ([`ModelDir::load`]).
    pub typed_pairs: bool,
    /// Bytes of the weight files.
    pub weight_bytes: u64,
    /// `tokenizer.json`, when the directory has one.
    pub tokenizer: Option<PathBuf>,
    pub special: SpecialTokens,
    /// The chat templates (`(name, source)`): `chat_template.jinja`, else
    /// `tokenizer_config.json`'s `chat_template`.
    pub chat_templates: Vec<(String, String)>,
}

/// What `tokenizer_config.json` and `generation_config.json` say about special tokens.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpecialTokens {
    /// `add_bos_token` (absent: the tokenizer's own post-processor decides).
    pub add_bos: Option<bool>,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    /// `generation_config.json`'s `eos_token_id` (an int or a list), and its
    /// `bos_token_id`.
    pub eos_ids: Vec<u32>,
    pub bos_id: Option<u32>,
}

fn bad(dir: &str, detail: impl std::fmt::Display) -> Error {
    Error::Config(format!("model {dir:?}: {detail}"))
}

/// A file name inside the directory: relative, no `..`, and (symbolic links
/// resolved) still inside it.
fn inside(root: &Path, dir: &str, name: &str) -> Result<PathBuf> {
    let rel = Path::new(name);
    let plain = !name.is_empty()
        && !name.contains('\0')
        && rel.components().all(|c| matches!(c, Component::Normal(_)));
    let outside = || {
        bad(
            dir,
            format!("{name:?} is not a file inside the model directory"),
        )
    };
    if !plain {
        return Err(outside());
    }
    let full = root.join(rel);
    match full.canonicalize() {
        Ok(c) if c.starts_with(root) => Ok(c),
        Ok(_) => Err(outside()),
        Err(_) => Err(bad(dir, format!("{name} is missing"))),
    }
}

fn read_json(root: &Path, dir: &str, name: &str, required: bool) -> Result<Option<Value>> {
    let path = root.join(name);
    if !path.exists() {
        return if required {
            Err(bad(dir, format!("{name} is missing")))
        } else {
            Ok(None)
        };
    }
    let path = inside(root, dir, name)?;
    let len = std::fs::metadata(&path)
        .map_err(|e| bad(dir, format!("cannot read {name}: {}", e.kind())))?
        .len();
    if len > MAX_JSON_BYTES {
        return Err(bad(
            dir,
            format!("{name} has {len} bytes, more than a config holds"),
        ));
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| bad(dir, format!("cannot read {name}: {}", e.kind())))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| bad(dir, format!("{name} is not valid JSON: {e}")))
}

/// A token written as a string or as an object with `content`.
/// How a text's embedding is made of its hidden states (sentence-transformers'
/// `1_Pooling/config.json`: `pooling_mode_lasttoken`, `_cls_token`, `_mean_tokens`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// The last token's (decoder embedding models: Qwen3-Embedding, e5-mistral).
    Last,
    /// The first token's (`[CLS]`: bge).
    First,
    /// The mean of every token's (all-MiniLM, e5, gte).
    Mean,
}

impl Pooling {
    /// A family's pooling when the directory names none: the mean for encoders (as
    /// sentence-transformers pools a model without its pooling config), else the
    /// last token's.
    pub fn default_for(family: Family) -> Pooling {
        match family.encoder() {
            true => Pooling::Mean,
            false => Pooling::Last,
        }
    }
}

/// A cross-encoder's classification head, on the host (two small matrix-vector
/// products a text): `out(tanh(dense(h)))` of the first token's hidden state `h` —
/// BERT's pooler then classifier, RoBERTa's classification head.
#[derive(Clone, Debug)]
pub struct Classifier {
    /// `[C, C]` as stored (`[out, in]`) and its bias.
    pub dense: (Vec<f32>, Vec<f32>),
    /// `[labels, C]` and its bias.
    pub out: (Vec<f32>, Vec<f32>),
}

impl Classifier {
    pub fn labels(&self) -> usize {
        self.out.1.len()
    }

    /// The logits of the first token's hidden state `h` (`[labels]`).
    pub fn logits(&self, h: &[f32]) -> Vec<f32> {
        let linear = |(w, b): &(Vec<f32>, Vec<f32>), x: &[f32]| -> Vec<f64> {
            b.iter()
                .zip(w.chunks(x.len()))
                .map(|(&bo, row)| {
                    bo as f64
                        + row
                            .iter()
                            .zip(x)
                            .map(|(&a, &v)| a as f64 * v as f64)
                            .sum::<f64>()
                })
                .collect()
        };
        let mid: Vec<f32> = linear(&self.dense, h)
            .iter()
            .map(|v| v.tanh() as f32)
            .collect();
        linear(&self.out, &mid).iter().map(|&v| v as f32).collect()
    }
}

/// The pooling a sentence-transformers directory names: its `modules.json`'s Pooling
/// module's `config.json` (else `1_Pooling/config.json`); `None` without one. A mode
/// this service does not pool by (max, weighted mean, …) is the load's error.
fn pooling_of(root: &Path, dir: &str) -> Result<Option<Pooling>> {
    let modules = read_json(root, dir, "modules.json", false)?;
    let path = modules
        .as_ref()
        .and_then(Value::as_array)
        .and_then(|m| {
            m.iter().find(|x| {
                x.get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.ends_with("models.Pooling"))
            })
        })
        .and_then(|x| x.get("path").and_then(Value::as_str))
        .unwrap_or("1_Pooling");
    let Some(cfg) = read_json(root, dir, &format!("{path}/config.json"), false)? else {
        return Ok(None);
    };
    let on = |key: &str| cfg.get(key).and_then(Value::as_bool).unwrap_or(false);
    let modes = [
        ("pooling_mode_cls_token", Pooling::First),
        ("pooling_mode_mean_tokens", Pooling::Mean),
        ("pooling_mode_lasttoken", Pooling::Last),
    ];
    let unsupported = [
        "pooling_mode_max_tokens",
        "pooling_mode_mean_sqrt_len_tokens",
        "pooling_mode_weightedmean_tokens",
    ];
    let chosen: Vec<Pooling> = modes.iter().filter(|(k, _)| on(k)).map(|m| m.1).collect();
    match (chosen.as_slice(), unsupported.iter().find(|k| on(k))) {
        ([one], None) => Ok(Some(*one)),
        (_, Some(k)) => Err(bad(
            dir,
            format!("{path}/config.json: {k} is not supported (cls_token, mean_tokens, lasttoken)"),
        )),
        _ => Err(bad(
            dir,
            format!("{path}/config.json must turn on one of pooling_mode_cls_token, pooling_mode_mean_tokens, pooling_mode_lasttoken"),
        )),
    }
}

fn token_string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

fn token_ids(v: Option<&Value>) -> Vec<u32> {
    match v {
        Some(Value::Number(n)) => n.as_u64().map(|x| x as u32).into_iter().collect(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_u64)
            .map(|x| x as u32)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(unix)]
fn read_at(file: &std::fs::File, buf: &mut [u8], at: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, at)
}

#[cfg(windows)]
fn read_at(file: &std::fs::File, mut buf: &mut [u8], mut at: u64) -> std::io::Result<()> {
    while !buf.is_empty() {
        let n = std::os::windows::fs::FileExt::seek_read(file, buf, at)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf = &mut buf[n..];
        at += n as u64;
    }
    Ok(())
}

fn dtype_of(name: &str) -> Option<(safetensors::Dtype, u64)> {
    use safetensors::Dtype;
    match name {
        "F32" => Some((Dtype::F32, 4)),
        "F16" => Some((Dtype::F16, 2)),
        "BF16" => Some((Dtype::BF16, 2)),
        _ => None,
    }
}

/// Read a shard's header: every tensor's dtype, shape and byte range, checked against
/// the file's length.
fn read_header(
    dir: &str,
    shard: usize,
    name: &str,
    file: &std::fs::File,
) -> Result<Vec<(String, Entry)>> {
    let fail = |why: String| {
        bad(
            dir,
            format!("{name} is not a valid safetensors file: {why}"),
        )
    };
    let len = file
        .metadata()
        .map_err(|e| fail(e.kind().to_string()))?
        .len();
    let mut n8 = [0u8; 8];
    read_at(file, &mut n8, 0).map_err(|_| fail("shorter than its header".into()))?;
    let n = u64::from_le_bytes(n8);
    if n > MAX_HEADER_BYTES || 8 + n > len {
        return Err(fail(format!("a header of {n} bytes in a file of {len}")));
    }
    let mut header = try_vec_with_capacity::<u8>(n as usize, "safetensors header")?;
    header.resize(n as usize, 0);
    read_at(file, &mut header, 8).map_err(|e| fail(e.kind().to_string()))?;
    let map: serde_json::Map<String, Value> =
        serde_json::from_slice(&header).map_err(|e| fail(format!("header: {e}")))?;
    let data0 = 8 + n;
    let mut out = Vec::with_capacity(map.len());
    for (tensor, info) in map {
        if tensor == "__metadata__" {
            continue;
        }
        let dtype_name = info
            .get("dtype")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let shape: Option<Vec<usize>> = info
            .get("shape")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(|d| d.as_u64().map(|d| d as usize)).collect());
        let offsets: Option<Vec<u64>> = info
            .get("data_offsets")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(Value::as_u64).collect());
        let (Some(shape), Some(offsets)) = (shape, offsets) else {
            return Err(fail(format!(
                "tensor {tensor} has no shape or data_offsets"
            )));
        };
        let [b, e] = offsets[..] else {
            return Err(fail(format!(
                "tensor {tensor}: data_offsets must be two numbers"
            )));
        };
        let numel = shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
        let dtype = dtype_of(&dtype_name);
        let sized = match (numel, dtype) {
            (Some(numel), Some((_, size))) => numel.checked_mul(size) == Some(e.wrapping_sub(b)),
            _ => true, // an unsupported dtype is reported if the tensor is asked for
        };
        if e < b || data0 + e > len || !sized {
            return Err(fail(format!(
                "tensor {tensor}: bytes {b}..{e} do not fit its shape {shape:?} ({dtype_name}) in the file"
            )));
        }
        out.push((
            tensor,
            Entry {
                shard,
                dtype: dtype.map(|d| d.0),
                dtype_name,
                shape,
                begin: data0 + b,
                end: data0 + e,
            },
        ));
    }
    Ok(out)
}

impl ModelDir {
    /// Open the directory at `root` (resolved by the caller under the file-access
    /// rules), which the client called `name`: read its configs and the headers of its
    /// weight files.
    pub fn open(name: &str, root: &Path) -> Result<ModelDir> {
        let dir = name;
        let root = root
            .canonicalize()
            .map_err(|_| bad(dir, "is not a model directory"))?;
        if !root.is_dir() {
            return Err(bad(
                dir,
                "is not a directory (name a Hugging Face model directory)",
            ));
        }
        let config = read_json(&root, dir, "config.json", true)?.unwrap_or_default();
        let mut arch = family::from_hf_config(&config.to_string())
            .map_err(|e| bad(dir, e.to_string().trim_start_matches("invalid config: ")))?;

        // weight files: the index's shards, or model.safetensors
        let mut files: Vec<String> = Vec::new();
        let mut expected: HashMap<String, String> = HashMap::new();
        if let Some(index) = read_json(&root, dir, "model.safetensors.index.json", false)? {
            let map = index
                .get("weight_map")
                .and_then(Value::as_object)
                .ok_or_else(|| bad(dir, "model.safetensors.index.json has no weight_map"))?;
            for (tensor, file) in map {
                let file = file.as_str().ok_or_else(|| {
                    bad(
                        dir,
                        format!("model.safetensors.index.json: {tensor} names no file"),
                    )
                })?;
                if !files.iter().any(|f| f == file) {
                    files.push(file.to_string());
                }
                expected.insert(tensor.clone(), file.to_string());
            }
        } else if root.join("model.safetensors").exists() {
            files.push("model.safetensors".into());
        } else {
            return Err(bad(
                dir,
                "has no weights: model.safetensors or model.safetensors.index.json with its shards",
            ));
        }
        let mut shards = Vec::with_capacity(files.len());
        let mut tensors = HashMap::new();
        let mut weight_bytes = 0u64;
        for (i, f) in files.iter().enumerate() {
            let path = inside(&root, dir, f)?;
            let file = std::fs::File::open(&path)
                .map_err(|e| bad(dir, format!("cannot read {f}: {}", e.kind())))?;
            weight_bytes += file.metadata().map(|m| m.len()).unwrap_or(0);
            for (tensor, entry) in read_header(dir, i, f, &file)? {
                tensors.insert(tensor, entry);
            }
            shards.push(Shard {
                name: f.clone(),
                file,
            });
        }
        for (tensor, file) in &expected {
            match tensors.get(tensor) {
                Some(e) if shards[e.shard].name == *file => {}
                _ => {
                    return Err(bad(
                        dir,
                        format!("model.safetensors.index.json puts {tensor} in {file}, which does not hold it"),
                    ))
                }
            }
        }

        let tokenizer_config = read_json(&root, dir, "tokenizer_config.json", false)?;
        let generation = read_json(&root, dir, "generation_config.json", false)?;
        let tc = tokenizer_config.as_ref();
        let special = SpecialTokens {
            add_bos: tc
                .and_then(|t| t.get("add_bos_token"))
                .and_then(Value::as_bool),
            bos_token: token_string(tc.and_then(|t| t.get("bos_token"))),
            eos_token: token_string(tc.and_then(|t| t.get("eos_token"))),
            eos_ids: token_ids(generation.as_ref().and_then(|g| g.get("eos_token_id"))),
            bos_id: token_ids(generation.as_ref().and_then(|g| g.get("bos_token_id")))
                .first()
                .copied(),
        };
        let jinja = match root.join("chat_template.jinja").exists() {
            true => {
                let path = inside(&root, dir, "chat_template.jinja")?;
                Some(std::fs::read_to_string(path).map_err(|e| {
                    bad(
                        dir,
                        format!("cannot read chat_template.jinja: {}", e.kind()),
                    )
                })?)
            }
            false => None,
        };
        let chat_templates = crate::chat::templates_of(jinja, tc)
            .map_err(|e| bad(dir, format!("tokenizer_config.json: {e}")))?;
        let tokenizer = root
            .join("tokenizer.json")
            .exists()
            .then(|| inside(&root, dir, "tokenizer.json"))
            .transpose()?;
        // (a base model's checkpoint, `Qwen3Model`, `MistralModel`, …, names its tensors
        // without `model.`; an encoder's are under `embeddings.` and `encoder.`, or
        // with its task model's prefix)
        let encoder = arch.family.encoder();
        let (prefixes, embedding): (&[&'static str], _) = match encoder {
            true => (
                &["", "bert.", "roberta.", "model."],
                "embeddings.word_embeddings.weight",
            ),
            false => (
                &[
                    "language_model.model.",
                    "model.language_model.",
                    "model.",
                    "",
                ],
                "embed_tokens.weight",
            ),
        };
        let prefix = prefixes
            .iter()
            .copied()
            .find(|p| tensors.contains_key(&format!("{p}{embedding}")))
            .unwrap_or(prefixes[0]);
        let position_offset = match encoder {
            true => family::position_offset(config.as_object().unwrap_or(&Default::default()))
                .map_err(|e| bad(dir, e.to_string().trim_start_matches("invalid config: ")))?,
            false => 0,
        };
        // a cross-encoder's head reads the first token
        let classifies = encoder
            && ["classifier.weight", "classifier.out_proj.weight"]
                .iter()
                .any(|n| tensors.contains_key(*n));
        let pooling = match classifies {
            true => Pooling::First,
            false => pooling_of(&root, dir)?.unwrap_or(Pooling::default_for(arch.family)),
        };
        let typed_pairs = encoder
            && tensors
                .get(&format!("{prefix}embeddings.token_type_embeddings.weight"))
                .is_some_and(|e| e.shape.first().is_some_and(|&n| n >= 2));
        let seq_limit = read_json(&root, dir, "sentence_bert_config.json", false)?
            .and_then(|c| c.get("max_seq_length").and_then(Value::as_u64))
            .map(|n| n as usize)
            .filter(|&n| n > 0);
        // such a checkpoint has no LM head: with an untied config (e5-mistral's), the
        // token embedding stands in for it so the model builds, and only embeddings are
        // served
        let headless = encoder
            || (arch.family != Family::Gpt2
                && prefix.is_empty()
                && !arch.tied_head
                && !tensors.contains_key("lm_head.weight"));
        arch.tied_head |= headless;
        Ok(ModelDir {
            prefix,
            headless,
            pooling,
            position_offset,
            seq_limit,
            typed_pairs,
            name: name.to_string(),
            arch,
            shards,
            tensors,
            weight_bytes,
            tokenizer,
            special,
            chat_templates,
        })
    }

    /// Fill `cfg` from the directory's architecture. Keys the client gave (`given`)
    /// must agree with it (a `CONFIG_ERROR` names both values), except the service's
    /// own options; `context_size`, when given, caps the directory's positions.
    pub fn apply(&self, cfg: &mut ModelConfig, given: &[String]) -> Result<()> {
        let a = &self.arch;
        if a.mlp_bias && a.family.gated_mlp() {
            return Err(bad(&self.name, "mlp_bias is not supported"));
        }
        let hidden = match a.mlp {
            Mlp::Gelu { hidden } | Mlp::SwiGlu { hidden } => hidden,
        };
        let (NormKind::Layer { eps } | NormKind::Rms { eps }) = a.norm;
        let learned = a.positions == Positions::Learned;
        let cap = if given.iter().any(|g| g == "context_size") {
            if cfg.context_size > a.max_positions {
                return Err(bad(
                    &self.name,
                    format!(
                        "context_size ({}) exceeds the model's positions ({})",
                        cfg.context_size, a.max_positions
                    ),
                ));
            }
            cfg.context_size
        } else if learned {
            // (an embedding model: as long as sentence-transformers lets a text be)
            a.max_positions.min(self.seq_limit.unwrap_or(usize::MAX))
        } else {
            // rotary families: up to the service's default context unless asked
            a.max_positions.min(DEFAULT_ROTARY_CONTEXT)
        };
        let dims: [(&str, usize, usize); 8] = [
            ("vocab_size", cfg.vocab_size, a.vocab_size),
            ("n_layer", cfg.n_layer, a.n_layer),
            ("n_head", cfg.n_head, a.n_head),
            ("n_embed", cfg.n_embed, a.hidden_size),
            ("context_size", cfg.context_size, cap),
            (
                "use_moe",
                usize::from(cfg.use_moe),
                usize::from(a.moe.is_some()),
            ),
            (
                "moe_num_experts",
                cfg.moe_num_experts,
                a.moe.as_ref().map_or(cfg.moe_num_experts, |m| m.experts),
            ),
            (
                "moe_top_k",
                cfg.moe_top_k,
                a.moe.as_ref().map_or(cfg.moe_top_k, |m| m.top_k),
            ),
        ];
        for (key, mine, theirs) in dims {
            if given.iter().any(|g| g == key) && mine != theirs {
                return Err(bad(
                    &self.name,
                    format!("config {key} ({mine}) disagrees with the directory's ({theirs})"),
                ));
            }
        }
        let family_given = given.iter().any(|g| g == "architecture");
        if family_given && cfg.architecture != a.family {
            return Err(bad(
                &self.name,
                format!(
                    "config architecture ({:?}) disagrees with the directory's ({:?})",
                    cfg.architecture, a.family
                ),
            ));
        }
        cfg.architecture = a.family;
        cfg.vocab_size = a.vocab_size;
        cfg.n_layer = a.n_layer;
        cfg.n_head = a.n_head;
        cfg.n_embed = a.hidden_size;
        cfg.context_size = cap;
        cfg.n_kv_head = (a.n_kv_head != a.n_head).then_some(a.n_kv_head);
        cfg.head_dim = (a.head_dim * a.n_head != a.hidden_size).then_some(a.head_dim);
        cfg.intermediate_size = Some(hidden);
        if a.family == Family::Gpt2 && hidden % a.hidden_size == 0 {
            cfg.intermediate_size = None;
            cfg.ffn_hidden_multiplier = hidden / a.hidden_size;
        }
        cfg.norm_eps = eps;
        if let Positions::Rotary {
            theta,
            scaling,
            partial,
        } = &a.positions
        {
            cfg.rope_theta = *theta;
            cfg.rope_scaling = scaling.clone();
            cfg.partial_rotary_factor = *partial;
        }
        cfg.sliding_window = a.sliding_window;
        cfg.sliding_window_pattern = a.sliding_window_pattern;
        cfg.rope_local_theta = a.rope_local_theta;
        cfg.query_pre_attn_scalar = a.query_pre_attn_scalar;
        [cfg.attn_logit_softcapping, cfg.final_logit_softcapping] = a.softcaps;
        cfg.nope_layers = a.nope_layers.clone();
        [
            cfg.embedding_multiplier,
            cfg.attention_multiplier,
            cfg.residual_multiplier,
            cfg.logits_scaling,
        ] = a.multipliers;
        cfg.tie_word_embeddings = a.tied_head;
        cfg.bias = if a.family == Family::Gpt2 {
            self.tensor("h.0.attn.c_attn.bias").is_some()
                || self.tensor("transformer.h.0.attn.c_attn.bias").is_some()
        } else {
            a.o_bias
        };
        cfg.qkv_bias = a.family.llama_like().then_some(a.qkv_bias);
        cfg.use_moe = a.moe.is_some();
        if let Some(m) = &a.moe {
            cfg.moe_num_experts = m.experts;
            cfg.moe_top_k = m.top_k;
            cfg.moe_intermediate_size = Some(m.hidden);
            cfg.moe_norm_topk_prob = m.norm_topk_prob;
            cfg.moe_shared_expert_size = m.shared_expert_hidden;
            cfg.moe_decoder_sparse_step = m.decoder_sparse_step;
            cfg.moe_mlp_only_layers = m.mlp_only_layers.clone();
        }
        cfg.validate().map_err(|e| {
            bad(
                &self.name,
                e.to_string().trim_start_matches("invalid config: "),
            )
        })
    }

    /// The directory's `tokenizer.json` (none without one), adding special tokens as
    /// `AutoTokenizer(text)` does: the post-processor's, and the BOS when
    /// `add_bos_token` says so, never twice.
    pub fn load_tokenizer(&self, max_bytes: u64) -> Result<Option<Tokenizer>> {
        let Some(path) = &self.tokenizer else {
            return Ok(None);
        };
        let name = format!("{}/tokenizer.json", self.name);
        let bytes = FileAccess::Any(None).read("tokenizer", &name, path, max_bytes)?;
        let t = Tokenizer::from_bytes(&bytes, &name)?;
        let bos = self
            .special
            .bos_token
            .as_deref()
            .and_then(|b| t.token_id(b))
            .or(self.special.bos_id);
        // a template that does not compile is the load's error, named
        let chat = match self.chat_templates.is_empty() {
            true => None,
            false => Some(
                crate::chat::ChatTemplates::new(
                    self.chat_templates.clone(),
                    self.special.bos_token.clone(),
                    self.special.eos_token.clone(),
                )
                .map_err(|e| {
                    bad(
                        &self.name,
                        e.to_string().trim_start_matches("invalid config: "),
                    )
                })?,
            ),
        };
        Ok(Some(
            t.with_special_tokens(self.special.add_bos, bos)
                .with_chat(chat),
        ))
    }

    /// The tokens that end a generation: the tokenizer's `eos_token` and
    /// `generation_config.json`'s `eos_token_id`s, each once.
    pub fn end_ids(&self, tokenizer: &Tokenizer) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .special
            .eos_token
            .as_deref()
            .and_then(|e| tokenizer.token_id(e))
            .into_iter()
            .chain(self.special.eos_ids.iter().copied())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    fn tensor(&self, name: &str) -> Option<&Entry> {
        self.tensors.get(name)
    }

    /// The Hugging Face tensors our tensor `spec` is made of, in groups: each group's
    /// parts (each with the shape it must have) are stacked row-wise and, when the
    /// group says so, transposed (the Llama families store linears `[out, in]`, ours
    /// are `[in, out]`); the groups follow one another (experts on a leading axis).
    fn plan(&self, spec: &TensorSpec) -> Result<Vec<Group>> {
        let name = spec.name.as_str();
        let one = |n: String, shape: Vec<usize>, transpose: bool| {
            Ok(vec![Group {
                parts: vec![(n, shape)],
                transpose,
            }])
        };
        if self.arch.family.encoder() {
            return self.plan_encoder(spec);
        }
        if self.arch.family == Family::Gpt2 {
            let found = [name.to_string(), format!("transformer.{name}")]
                .into_iter()
                .find(|n| self.tensors.contains_key(n))
                .unwrap_or_else(|| name.to_string());
            return one(found, spec.shape.clone(), false);
        }
        let a = &self.arch;
        let (q, kv) = (a.n_head * a.head_dim, a.n_kv_head * a.head_dim);
        let m = self.prefix;
        match name {
            "wte.weight" => {
                return one(format!("{m}embed_tokens.weight"), spec.shape.clone(), false)
            }
            "ln_f.weight" => return one(format!("{m}norm.weight"), spec.shape.clone(), false),
            "ln_f.bias" => return one(format!("{m}norm.bias"), spec.shape.clone(), false),
            "lm_head.weight" => {
                // beside the language model's `model.` where that is a prefix's end
                let head = match m.strip_suffix("model.") {
                    Some(outer) if outer.ends_with('.') => format!("{outer}lm_head.weight"),
                    _ => "lm_head.weight".into(),
                };
                return one(head, spec.shape.clone(), false);
            }
            _ => {}
        }
        let (layer, rest) = name
            .strip_prefix("h.")
            .and_then(|r| r.split_once('.'))
            .ok_or_else(|| bad(&self.name, format!("no tensor for {name}")))?;
        let p = format!("{m}layers.{layer}.");
        let c = a.hidden_size;
        // a group of linears [out, in] stacked and transposed into ours
        let linears = |names: &[(String, usize)]| Group {
            parts: names
                .iter()
                .map(|(n, out)| (format!("{p}{n}"), vec![*out, c]))
                .collect(),
            transpose: true,
        };
        let plain = |n: &str, shape: Vec<usize>| Group {
            parts: vec![(format!("{p}{n}"), shape)],
            transpose: false,
        };
        let down = |n: String, h: usize| Group {
            parts: vec![(format!("{p}{n}"), vec![c, h])],
            transpose: true,
        };
        // where the MoE block keeps its router and experts, and their projections' names
        let mixtral = a.family == Family::Mixtral;
        let (moe, router, [gate, up, down_name]) = if mixtral {
            (
                "block_sparse_moe",
                "block_sparse_moe.gate.weight",
                ["w1", "w3", "w2"],
            )
        } else {
            (
                "mlp",
                "mlp.gate.weight",
                ["gate_proj", "up_proj", "down_proj"],
            )
        };
        let experts = a.moe.as_ref().map_or(0, |m| m.experts);
        let swiglu = |prefix: &str, h: usize| {
            linears(&[
                (format!("{prefix}{gate}.weight"), h),
                (format!("{prefix}{up}.weight"), h),
            ])
        };
        Ok(match rest {
            "ln_1.weight" => vec![plain("input_layernorm.weight", vec![c])],
            // StarCoder2's LayerNorms have biases
            "ln_1.bias" => vec![plain("input_layernorm.bias", vec![c])],
            "ln_2.bias" => vec![plain("post_attention_layernorm.bias", vec![c])],
            // Gemma: the norm before the MLP is pre_feedforward_layernorm, and
            // post_attention_layernorm is what its name says (after the attention)
            "ln_2.weight" if a.family.post_norms() && a.family.gemma() => {
                vec![plain("pre_feedforward_layernorm.weight", vec![c])]
            }
            "ln_2.weight" => vec![plain("post_attention_layernorm.weight", vec![c])],
            // GLM-4's: post_attention_layernorm is the Llama block's (before the MLP)
            "attn.post_norm.weight" if a.family == Family::Glm4 => {
                vec![plain("post_self_attn_layernorm.weight", vec![c])]
            }
            "mlp.post_norm.weight" if a.family == Family::Glm4 => {
                vec![plain("post_mlp_layernorm.weight", vec![c])]
            }
            "attn.post_norm.weight" => vec![plain("post_attention_layernorm.weight", vec![c])],
            "mlp.post_norm.weight" => vec![plain("post_feedforward_layernorm.weight", vec![c])],
            // Phi-3's q, k and v in one projection, in our order
            "attn.c_attn.weight" if a.family == Family::Phi3 => {
                vec![linears(&[("self_attn.qkv_proj.weight".into(), q + 2 * kv)])]
            }
            "attn.c_attn.weight" => vec![linears(&[
                ("self_attn.q_proj.weight".into(), q),
                ("self_attn.k_proj.weight".into(), kv),
                ("self_attn.v_proj.weight".into(), kv),
            ])],
            "attn.c_attn.bias" => vec![Group {
                parts: [("q", q), ("k", kv), ("v", kv)]
                    .iter()
                    .map(|(x, n)| (format!("{p}self_attn.{x}_proj.bias"), vec![*n]))
                    .collect(),
                transpose: false,
            }],
            // (OLMo 2's span every query head and every key head: [Q], [KV])
            "attn.head_norm.weight" => vec![Group {
                parts: [("q", q), ("k", kv)]
                    .iter()
                    .map(|&(x, width)| {
                        let n = if a.family.whole_head_norm() {
                            width
                        } else {
                            a.head_dim
                        };
                        (format!("{p}self_attn.{x}_norm.weight"), vec![n])
                    })
                    .collect(),
                transpose: false,
            }],
            "attn.c_proj.weight" => vec![down("self_attn.o_proj.weight".into(), q)],
            "attn.c_proj.bias" => vec![plain("self_attn.o_proj.bias", vec![c])],
            // Phi-3's and GLM's gate and up in one projection, gate first as ours
            "mlp.c_fc.weight" if a.family.fused_gate_up() => vec![linears(&[(
                "mlp.gate_up_proj.weight".into(),
                spec.shape[1],
            )])],
            // StarCoder2's GELU MLP: GPT-2's names, Linear's [out, in]
            "mlp.c_fc.weight" if !a.family.gated_mlp() => {
                vec![linears(&[("mlp.c_fc.weight".into(), spec.shape[1])])]
            }
            "mlp.c_fc.bias" => vec![plain("mlp.c_fc.bias", vec![spec.shape[0]])],
            "mlp.c_proj.weight" if !a.family.gated_mlp() => {
                vec![down("mlp.c_proj.weight".into(), spec.shape[0])]
            }
            "mlp.c_proj.bias" => vec![plain("mlp.c_proj.bias", vec![c])],
            "mlp.c_fc.weight" => vec![linears(&[
                ("mlp.gate_proj.weight".into(), spec.shape[1] / 2),
                ("mlp.up_proj.weight".into(), spec.shape[1] / 2),
            ])],
            "mlp.c_proj.weight" => vec![down("mlp.down_proj.weight".into(), spec.shape[0])],
            "mlp.router.weight" => vec![Group {
                parts: vec![(format!("{p}{router}"), vec![experts, c])],
                transpose: true,
            }],
            "mlp.experts.c_fc.weight" => (0..experts)
                .map(|e| swiglu(&format!("{moe}.experts.{e}."), spec.shape[2] / 2))
                .collect(),
            "mlp.experts.c_proj.weight" => (0..experts)
                .map(|e| {
                    down(
                        format!("{moe}.experts.{e}.{down_name}.weight"),
                        spec.shape[1],
                    )
                })
                .collect(),
            "mlp.shared.c_fc.weight" => vec![linears(&[
                (
                    "mlp.shared_expert.gate_proj.weight".into(),
                    spec.shape[1] / 2,
                ),
                ("mlp.shared_expert.up_proj.weight".into(), spec.shape[1] / 2),
            ])],
            "mlp.shared.c_proj.weight" => {
                vec![down(
                    "mlp.shared_expert.down_proj.weight".into(),
                    spec.shape[0],
                )]
            }
            "mlp.shared.gate.weight" => vec![Group {
                parts: vec![(format!("{p}mlp.shared_expert_gate.weight"), vec![1, c])],
                transpose: true,
            }],
            _ => return Err(bad(&self.name, format!("no tensor for {name}"))),
        })
    }

    /// [`ModelDir::plan`] for an encoder (`BertModel`'s names): its linears `[out, in]`
    /// transposed into ours, q, k and v stacked; its position table is
    /// [`ModelDir::load`]'s.
    fn plan_encoder(&self, spec: &TensorSpec) -> Result<Vec<Group>> {
        let name = spec.name.as_str();
        let m = self.prefix;
        let a = &self.arch;
        let c = a.hidden_size;
        let group = |parts: Vec<Part>, transpose: bool| Ok(vec![Group { parts, transpose }]);
        // a LayerNorm's weight or bias (`gamma` / `beta` in older checkpoints, as
        // transformers renames them)
        let norm = |base: String, bias: bool| {
            let (new, old) = if bias {
                ("bias", "beta")
            } else {
                ("weight", "gamma")
            };
            let old = format!("{base}.{old}");
            let n = match self.tensors.contains_key(&old) {
                true => old,
                false => format!("{base}.{new}"),
            };
            group(vec![(n, vec![c])], false)
        };
        match name {
            "wte.weight" => {
                return group(
                    vec![(
                        format!("{m}embeddings.word_embeddings.weight"),
                        spec.shape.clone(),
                    )],
                    false,
                )
            }
            "ln_e.weight" | "ln_e.bias" => {
                return norm(format!("{m}embeddings.LayerNorm"), name.ends_with("bias"))
            }
            _ => {}
        }
        let (layer, rest) = name
            .strip_prefix("h.")
            .and_then(|r| r.split_once('.'))
            .ok_or_else(|| bad(&self.name, format!("no tensor for {name}")))?;
        let p = format!("{m}encoder.layer.{layer}.");
        let h = match a.mlp {
            Mlp::Gelu { hidden } | Mlp::SwiGlu { hidden } => hidden,
        };
        let qkv = |what: &str, shape: Vec<usize>| -> Vec<Part> {
            ["query", "key", "value"]
                .iter()
                .map(|x| (format!("{p}attention.self.{x}.{what}"), shape.clone()))
                .collect()
        };
        match rest {
            "attn.c_attn.weight" => group(qkv("weight", vec![c, c]), true),
            "attn.c_attn.bias" => group(qkv("bias", vec![c]), false),
            "attn.c_proj.weight" => group(
                vec![(format!("{p}attention.output.dense.weight"), vec![c, c])],
                true,
            ),
            "attn.c_proj.bias" => group(
                vec![(format!("{p}attention.output.dense.bias"), vec![c])],
                false,
            ),
            "ln_2.weight" | "ln_2.bias" => norm(
                format!("{p}attention.output.LayerNorm"),
                rest.ends_with("bias"),
            ),
            "mlp.c_fc.weight" => group(
                vec![(format!("{p}intermediate.dense.weight"), vec![h, c])],
                true,
            ),
            "mlp.c_fc.bias" => group(
                vec![(format!("{p}intermediate.dense.bias"), vec![h])],
                false,
            ),
            "mlp.c_proj.weight" => {
                group(vec![(format!("{p}output.dense.weight"), vec![c, h])], true)
            }
            "mlp.c_proj.bias" => group(vec![(format!("{p}output.dense.bias"), vec![c])], false),
            "ln_3.weight" | "ln_3.bias" => {
                norm(format!("{p}output.LayerNorm"), rest.ends_with("bias"))
            }
            _ => Err(bad(&self.name, format!("no tensor for {name}"))),
        }
    }

    /// An encoder's position table as ours: its rows from position 0 (past RoBERTa's
    /// padding rows) for the context, each with the token-type embedding of type 0
    /// added (every text is one segment, as sentence-transformers encodes it).
    fn encoder_positions(&self, spec: &TensorSpec) -> Result<Vec<f32>> {
        let m = self.prefix;
        let c = self.arch.hidden_size;
        let table = format!("{m}embeddings.position_embeddings.weight");
        let rows = self.tensor(&table).map_or(0, |e| e.shape[0]);
        let mut pos = Vec::new();
        self.read(&(table, vec![rows, c]), &mut pos)?;
        let types = format!("{m}embeddings.token_type_embeddings.weight");
        // (no table: types add nothing)
        let mut table = vec![0.0; 2 * c];
        if let Some(e) = self.tensor(&types) {
            table.clear();
            self.read(&(types, e.shape.clone()), &mut table)?;
            if table.len() < c {
                return Err(bad(&self.name, "token_type_embeddings has no row"));
            }
        }
        let start = self.position_offset * c;
        let want = spec.numel();
        let rows = pos.get(start..start + want).ok_or_else(|| {
            bad(
                &self.name,
                format!(
                    "position_embeddings has {rows} rows, the context needs {}",
                    self.position_offset + spec.shape[0]
                ),
            )
        })?;
        let typed = |t: &[f32]| -> Vec<f32> {
            rows.chunks(c)
                .flat_map(|r| r.iter().zip(t).map(|(p, t)| p + t))
                .collect()
        };
        let mut out = typed(&table[..c]);
        // the second half: the same positions with type 1 (a pair's second text)
        if self.typed_pairs {
            out.extend(typed(&table[c..2 * c]));
        }
        Ok(out)
    }

    /// A cross-encoder's classification head (`BertForSequenceClassification`'s pooler
    /// and classifier, `XLMRobertaForSequenceClassification`'s classification head),
    /// read now; `None` for an encoder without one.
    pub fn classifier(&self) -> Result<Option<Classifier>> {
        let m = self.prefix;
        let names = [
            (format!("{m}pooler.dense"), "classifier".to_string()),
            ("classifier.dense".into(), "classifier.out_proj".into()),
        ];
        let Some((dense, out)) = names
            .into_iter()
            .find(|(_, o)| self.tensors.contains_key(&format!("{o}.weight")))
        else {
            return Ok(None);
        };
        let c = self.arch.hidden_size;
        let labels = self.tensors[&format!("{out}.weight")].shape[0];
        let read = |n: String, shape: Vec<usize>| -> Result<Vec<f32>> {
            let mut v = Vec::new();
            self.read(&(n, shape), &mut v)?;
            Ok(v)
        };
        Ok(Some(Classifier {
            dense: (
                read(format!("{dense}.weight"), vec![c, c])?,
                read(format!("{dense}.bias"), vec![c])?,
            ),
            out: (
                read(format!("{out}.weight"), vec![labels, c])?,
                read(format!("{out}.bias"), vec![labels])?,
            ),
        }))
    }

    /// The f32 values of one Hugging Face tensor, checked against `shape`.
    fn read(&self, (name, shape): &Part, out: &mut Vec<f32>) -> Result<()> {
        let e = self
            .tensor(name)
            .ok_or_else(|| bad(&self.name, format!("tensor {name} is missing")))?;
        if &e.shape != shape {
            return Err(bad(
                &self.name,
                format!(
                    "tensor {name} has shape {:?}, the config needs {shape:?}",
                    e.shape
                ),
            ));
        }
        let shard = &self.shards[e.shard];
        let dtype = e.dtype.ok_or_else(|| {
            bad(
                &self.name,
                format!(
                    "tensor {name} has dtype {}; F32, F16 and BF16 are supported",
                    e.dtype_name
                ),
            )
        })?;
        let len = (e.end - e.begin) as usize;
        let mut bytes = try_vec_with_capacity::<u8>(len, name)?;
        bytes.resize(len, 0);
        read_at(&shard.file, &mut bytes, e.begin).map_err(|err| {
            bad(
                &self.name,
                format!("cannot read {}: {}", shard.name, err.kind()),
            )
        })?;
        extend_f32(out, dtype, &bytes, &format!("tensor {name}"))
    }

    /// The values of our tensor `spec` (f32, whatever the file stores), read from the
    /// weight files now ([`ModelDir::plan`]).
    pub fn load(&self, spec: &TensorSpec) -> Result<Vec<f32>> {
        if self.arch.family.encoder() && spec.name == "wpe.weight" {
            return self.encoder_positions(spec);
        }
        let mut out = try_vec_with_capacity::<f32>(spec.numel(), &spec.name)?;
        for group in self.plan(spec)? {
            let mut part = Vec::new();
            for p in &group.parts {
                self.read(p, &mut part)?;
            }
            if group.transpose {
                // stacked [out, in] rows → ours [in, out]
                let cols = group.parts[0].1.last().copied().unwrap_or(1).max(1);
                let rows = part.len() / cols;
                let start = out.len();
                out.resize(start + part.len(), 0.0);
                let t = &mut out[start..];
                for r in 0..rows {
                    for c in 0..cols {
                        t[c * rows + r] = part[r * cols + c];
                    }
                }
            } else {
                out.extend_from_slice(&part);
            }
        }
        // Gemma's RMSNorms multiply by 1 + weight (`Gemma2RMSNorm`, `Gemma3RMSNorm`): ours
        // by the weight
        if self.arch.family.gemma() && is_norm_weight(&spec.name) {
            out.iter_mut().for_each(|w| *w += 1.0);
        }
        if out.len() != spec.numel() {
            return Err(bad(
                &self.name,
                format!(
                    "{} holds {} values, the config needs {:?}",
                    spec.name,
                    out.len(),
                    spec.shape
                ),
            ));
        }
        Ok(out)
    }
}

/// Whether our tensor `name` is a norm's weight (the blocks' and the final one, the
/// post-norms, the heads' norms).
fn is_norm_weight(name: &str) -> bool {
    name == "ln_f.weight"
        || [
            ".ln_1.weight",
            ".ln_2.weight",
            ".attn.post_norm.weight",
            ".mlp.post_norm.weight",
            ".attn.head_norm.weight",
        ]
        .iter()
        .any(|s| name.ends_with(s))
}

/// Hugging Face tensors stacked into (part of) one of ours ([`ModelDir::plan`]).
struct Group {
    parts: Vec<Part>,
    transpose: bool,
}

/// Positions a rotary model gets when the client names no `context_size` (the
/// activations are sized for the full context once; Llama 3.2's 131,072 would not fit).
pub const DEFAULT_ROTARY_CONTEXT: usize = 4096;
