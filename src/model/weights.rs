//! The parameter tensors of a model under our canonical names (GPT-2's Hugging Face
//! names; the Llama families' q/k/v and gate/up projections fused, every linear as
//! `[in, out]`): their shapes, the seeded deterministic initialisation, and loading
//! from a `.safetensors` file or a Hugging Face model directory
//! ([`super::directory::ModelDir`] maps their names to ours).

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::files::{try_filled, try_vec_with_capacity};

/// How a tensor is initialised.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// Normal with mean 0 and this standard deviation.
    Normal(f32),
    Zeros,
    Ones,
}

/// One learned tensor: Hugging Face name, shape, init.
#[derive(Clone, Debug)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub init: Init,
}

impl TensorSpec {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Every learned tensor of the model, in a fixed order (this order also numbers the
/// random streams of the initialisation, so it must not change).
pub fn tensor_specs(cfg: &ModelConfig) -> Vec<TensorSpec> {
    if cfg.architecture.llama_like() {
        return llama_specs(cfg);
    }
    let (c, h) = (cfg.n_embed, cfg.ffn_hidden());
    let std = 0.02f32;
    let proj_std = 0.02 / (2.0 * cfg.n_layer as f32).sqrt();
    let mut specs = Vec::new();
    let mut add =
        |name: String, shape: Vec<usize>, init: Init| specs.push(TensorSpec { name, shape, init });
    add(
        "wte.weight".into(),
        vec![cfg.vocab_size, c],
        Init::Normal(std),
    );
    add(
        "wpe.weight".into(),
        vec![cfg.context_size, c],
        Init::Normal(std),
    );
    // an encoder (post-LN): the embedding's norm, none before the attention, ln_2 after
    // it, ln_3 after the MLP, no final norm
    let encoder = cfg.architecture.encoder();
    let norm = |add: &mut dyn FnMut(String, Vec<usize>, Init), name: String| {
        add(format!("{name}.weight"), vec![c], Init::Ones);
        if cfg.bias {
            add(format!("{name}.bias"), vec![c], Init::Zeros);
        }
    };
    if encoder {
        norm(&mut add, "ln_e".into());
    }
    for l in 0..cfg.n_layer {
        let p = format!("h.{l}.");
        if !encoder {
            norm(&mut add, format!("{p}ln_1"));
        }
        add(
            format!("{p}attn.c_attn.weight"),
            vec![c, 3 * c],
            Init::Normal(std),
        );
        if cfg.bias {
            add(format!("{p}attn.c_attn.bias"), vec![3 * c], Init::Zeros);
        }
        add(
            format!("{p}attn.c_proj.weight"),
            vec![c, c],
            Init::Normal(proj_std),
        );
        if cfg.bias {
            add(format!("{p}attn.c_proj.bias"), vec![c], Init::Zeros);
        }
        add(format!("{p}ln_2.weight"), vec![c], Init::Ones);
        if cfg.bias {
            add(format!("{p}ln_2.bias"), vec![c], Init::Zeros);
        }
        if cfg.is_moe_layer(l) {
            // Our MoE layout: a router and every expert's weights stacked on a leading E axis.
            let e = cfg.moe_num_experts;
            add(
                format!("{p}mlp.router.weight"),
                vec![c, e],
                Init::Normal(std),
            );
            add(
                format!("{p}mlp.experts.c_fc.weight"),
                vec![e, c, h],
                Init::Normal(std),
            );
            if cfg.bias {
                add(format!("{p}mlp.experts.c_fc.bias"), vec![e, h], Init::Zeros);
            }
            add(
                format!("{p}mlp.experts.c_proj.weight"),
                vec![e, h, c],
                Init::Normal(proj_std),
            );
            if cfg.bias {
                add(
                    format!("{p}mlp.experts.c_proj.bias"),
                    vec![e, c],
                    Init::Zeros,
                );
            }
        } else {
            add(format!("{p}mlp.c_fc.weight"), vec![c, h], Init::Normal(std));
            if cfg.bias {
                add(format!("{p}mlp.c_fc.bias"), vec![h], Init::Zeros);
            }
            add(
                format!("{p}mlp.c_proj.weight"),
                vec![h, c],
                Init::Normal(proj_std),
            );
            if cfg.bias {
                add(format!("{p}mlp.c_proj.bias"), vec![c], Init::Zeros);
            }
        }
        if encoder {
            norm(&mut add, format!("{p}ln_3"));
        }
    }
    if !encoder {
        norm(&mut add, "ln_f".into());
    }
    if !cfg.tie_word_embeddings {
        add(
            "lm_head.weight".into(),
            vec![cfg.vocab_size, c],
            Init::Normal(std),
        );
    }
    specs
}

/// The tensors of a Llama-family model under our names: `attn.c_attn` is q, k and v
/// side by side (`[C, Q + 2 KV]`), `mlp.c_fc` gate and up (`[C, 2H]`), `mlp.c_proj`
/// the down projection; RMSNorm weights only; no position table.
fn llama_specs(cfg: &ModelConfig) -> Vec<TensorSpec> {
    let (c, h, heads) = (cfg.n_embed, cfg.ffn_hidden(), cfg.heads());
    let std = 0.02f32;
    let mut specs = Vec::new();
    let mut add =
        |name: String, shape: Vec<usize>, init: Init| specs.push(TensorSpec { name, shape, init });
    add(
        "wte.weight".into(),
        vec![cfg.vocab_size, c],
        Init::Normal(std),
    );
    for l in 0..cfg.n_layer {
        let p = format!("h.{l}.");
        let pre = cfg.architecture.pre_norms();
        if pre {
            add(format!("{p}ln_1.weight"), vec![c], Init::Ones);
        }
        if cfg.has_norm_bias() {
            add(format!("{p}ln_1.bias"), vec![c], Init::Zeros);
        }
        let qkv = heads.qkv_width();
        add(
            format!("{p}attn.c_attn.weight"),
            vec![c, qkv],
            Init::Normal(std),
        );
        if cfg.has_qkv_bias() {
            add(format!("{p}attn.c_attn.bias"), vec![qkv], Init::Zeros);
        }
        if cfg.architecture.head_norm() {
            // the query heads' RMSNorm weights, then the key heads' (Qwen3)
            // (OLMo 2's: a weight a channel of the query heads, then of the key heads)
            let shape = match cfg.architecture.whole_head_norm() {
                true => vec![heads.q_width() + heads.kv_width()],
                false => vec![2, heads.hs],
            };
            add(format!("{p}attn.head_norm.weight"), shape, Init::Ones);
        }
        let q = heads.q_width();
        add(
            format!("{p}attn.c_proj.weight"),
            vec![q, c],
            Init::Normal(std),
        );
        if cfg.has_o_bias() {
            add(format!("{p}attn.c_proj.bias"), vec![c], Init::Zeros);
        }
        if cfg.architecture.post_norms() {
            // the norm of the attention's output, before the residual add (Gemma)
            add(format!("{p}attn.post_norm.weight"), vec![c], Init::Ones);
        }
        if pre && !cfg.architecture.parallel_block() {
            add(format!("{p}ln_2.weight"), vec![c], Init::Ones);
            if cfg.has_norm_bias() {
                add(format!("{p}ln_2.bias"), vec![c], Init::Zeros);
            }
        }
        if cfg.architecture.post_norms() {
            add(format!("{p}mlp.post_norm.weight"), vec![c], Init::Ones);
        }
        if cfg.is_moe_layer(l) {
            // a router, every expert's gate|up and down stacked on a leading E axis,
            // and a shared expert with its sigmoid gate (Qwen2-MoE)
            let (e, he) = (cfg.moe_num_experts, cfg.moe_hidden());
            add(
                format!("{p}mlp.router.weight"),
                vec![c, e],
                Init::Normal(std),
            );
            add(
                format!("{p}mlp.experts.c_fc.weight"),
                vec![e, c, 2 * he],
                Init::Normal(std),
            );
            add(
                format!("{p}mlp.experts.c_proj.weight"),
                vec![e, he, c],
                Init::Normal(std),
            );
            if let Some(hs) = cfg.moe_shared_expert_size {
                add(
                    format!("{p}mlp.shared.c_fc.weight"),
                    vec![c, 2 * hs],
                    Init::Normal(std),
                );
                add(
                    format!("{p}mlp.shared.c_proj.weight"),
                    vec![hs, c],
                    Init::Normal(std),
                );
                add(
                    format!("{p}mlp.shared.gate.weight"),
                    vec![c, 1],
                    Init::Normal(std),
                );
            }
        } else {
            // gate | up (SwiGLU), or the hidden layer alone (StarCoder2's GELU MLP)
            let first = cfg.ffn_first_width();
            add(
                format!("{p}mlp.c_fc.weight"),
                vec![c, first],
                Init::Normal(std),
            );
            if cfg.has_mlp_bias() {
                add(format!("{p}mlp.c_fc.bias"), vec![first], Init::Zeros);
            }
            add(
                format!("{p}mlp.c_proj.weight"),
                vec![h, c],
                Init::Normal(std),
            );
            if cfg.has_mlp_bias() {
                add(format!("{p}mlp.c_proj.bias"), vec![c], Init::Zeros);
            }
        }
    }
    add("ln_f.weight".into(), vec![c], Init::Ones);
    if cfg.has_norm_bias() {
        add("ln_f.bias".into(), vec![c], Init::Zeros);
    }
    if !cfg.tie_word_embeddings {
        add(
            "lm_head.weight".into(),
            vec![cfg.vocab_size, c],
            Init::Normal(std),
        );
    }
    specs
}

/// Elements per independently seeded block of a tensor: blocks are generated in
/// parallel, and the values do not depend on the number of threads.
const INIT_BLOCK: usize = 1 << 20;

/// The values of tensor number `index` for `seed`: the same on every machine.
pub fn init_tensor(spec: &TensorSpec, index: usize, seed: u64) -> Result<Vec<f32>> {
    let n = spec.numel();
    Ok(match spec.init {
        Init::Zeros => try_filled(n, 0.0, &spec.name)?,
        Init::Ones => try_filled(n, 1.0, &spec.name)?,
        Init::Normal(std) => {
            let mut out = try_filled(n, 0.0f32, &spec.name)?;
            let normal = Normal::new(0.0f32, std).expect("std is positive and finite");
            let threads = std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(8);
            let blocks: Vec<(usize, &mut [f32])> = out.chunks_mut(INIT_BLOCK).enumerate().collect();
            let per = blocks.len().div_ceil(threads).max(1);
            let mut groups: Vec<Vec<(usize, &mut [f32])>> = Vec::new();
            let mut it = blocks.into_iter().peekable();
            while it.peek().is_some() {
                groups.push(it.by_ref().take(per).collect());
            }
            std::thread::scope(|s| {
                for group in groups {
                    s.spawn(move || {
                        for (b, block) in group {
                            let mut rng = ChaCha8Rng::seed_from_u64(seed);
                            rng.set_stream(((index as u64) << 32) | b as u64);
                            for v in block.iter_mut() {
                                *v = normal.sample(&mut rng);
                            }
                        }
                    });
                }
            });
            out
        }
    })
}

/// A `.safetensors` checkpoint in the Hugging Face GPT-2 layout, read into memory.
pub struct Checkpoint {
    bytes: Vec<u8>,
    /// How errors name the file (the client's name when a client gave it).
    path: String,
}

/// Strip the optional `transformer.` prefix of `GPT2LMHeadModel` files.
fn canonical(name: &str) -> &str {
    name.strip_prefix("transformer.").unwrap_or(name)
}

/// Buffers and heads that are not learned weights of the transformer.
fn ignored(name: &str) -> bool {
    name.ends_with(".attn.bias") || name.ends_with(".attn.masked_bias") || name == "lm_head.weight"
}

/// Convert safetensors data of `dtype` (F32, F16 or BF16) to f32 values appended to
/// `out`; `what` names the tensor in the error.
pub fn extend_f32(
    out: &mut Vec<f32>,
    dtype: safetensors::Dtype,
    data: &[u8],
    what: &str,
) -> Result<()> {
    use safetensors::Dtype;
    match dtype {
        Dtype::F32 => out.extend(
            data.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        ),
        Dtype::F16 => out.extend(
            data.chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()),
        ),
        Dtype::BF16 => out.extend(
            data.chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()),
        ),
        other => {
            return Err(Error::Checkpoint(format!(
                "{what} has dtype {other:?}; F32, F16 and BF16 are supported"
            )))
        }
    }
    Ok(())
}

impl Checkpoint {
    /// Read the checkpoint at `path` (any path: the operator's or a test's).
    pub fn open(path: &str) -> Result<Self> {
        let bytes = std::fs::read(path)
            .map_err(|e| Error::Checkpoint(format!("cannot read checkpoint {path}: {e}")))?;
        Self::from_bytes(bytes, path)
    }

    /// A checkpoint from its bytes; `path` names it in errors.
    pub fn from_bytes(bytes: Vec<u8>, path: &str) -> Result<Self> {
        safetensors::SafeTensors::deserialize(&bytes).map_err(|e| {
            Error::Checkpoint(format!("{path} is not a valid safetensors file: {e}"))
        })?;
        Ok(Checkpoint {
            bytes,
            path: path.to_string(),
        })
    }

    fn tensors(&self) -> safetensors::SafeTensors<'_> {
        safetensors::SafeTensors::deserialize(&self.bytes).expect("validated in open")
    }

    /// Shapes of the learned tensors, by canonical name.
    pub fn shapes(&self) -> std::collections::HashMap<String, Vec<usize>> {
        self.tensors()
            .iter()
            .filter(|(n, _)| !ignored(canonical(n)))
            .map(|(n, t)| (canonical(n).to_string(), t.shape().to_vec()))
            .collect()
    }

    /// Fill the config keys the caller did not give from the tensor shapes, and check
    /// that the keys they did give agree.
    pub fn resolve_config(&self, cfg: &mut ModelConfig, given: &[String]) -> Result<()> {
        let shapes = self.shapes();
        let get = |n: &str| {
            shapes
                .get(n)
                .cloned()
                .ok_or_else(|| Error::Checkpoint(format!("{}: tensor {n} is missing", self.path)))
        };
        let wte = get("wte.weight")?;
        let wpe = get("wpe.weight")?;
        let n_layer = (0..)
            .take_while(|l| shapes.contains_key(&format!("h.{l}.ln_1.weight")))
            .count();
        let moe = shapes.get("h.0.mlp.experts.c_fc.weight").cloned();
        let fc = match &moe {
            Some(s) if s.len() == 3 => vec![s[1], s[2]],
            _ => get("h.0.mlp.c_fc.weight")?,
        };
        if let Some(s) = &moe {
            let e = s[0];
            for (key, given_v, found) in [
                ("use_moe", cfg.use_moe as usize, 1usize),
                ("moe_num_experts", cfg.moe_num_experts, e),
            ] {
                if given.iter().any(|g| g == key) && given_v != found {
                    return Err(Error::Checkpoint(format!(
                        "config {key} ({given_v}) disagrees with the checkpoint ({found}) in {}",
                        self.path
                    )));
                }
            }
            cfg.use_moe = true;
            cfg.moe_num_experts = e;
        } else if cfg.use_moe {
            return Err(Error::Checkpoint(format!(
                "use_moe is set but {} has no MoE weights (h.N.mlp.experts.*)",
                self.path
            )));
        }
        let found = [
            ("vocab_size", wte[0]),
            ("n_embed", wte[1]),
            ("context_size", wpe[0]),
            ("n_layer", n_layer),
            ("ffn_hidden_multiplier", fc[1] / wte[1].max(1)),
        ];
        for (key, value) in found {
            let slot = match key {
                "vocab_size" => &mut cfg.vocab_size,
                "n_embed" => &mut cfg.n_embed,
                "context_size" => &mut cfg.context_size,
                "n_layer" => &mut cfg.n_layer,
                _ => &mut cfg.ffn_hidden_multiplier,
            };
            if given.iter().any(|g| g == key) && *slot != value {
                return Err(Error::Checkpoint(format!(
                    "config {key} ({}) disagrees with the checkpoint ({value}) in {}",
                    *slot, self.path
                )));
            }
            *slot = value;
        }
        let has_bias = shapes.contains_key("h.0.attn.c_attn.bias");
        if given.iter().any(|g| g == "bias") && cfg.bias != has_bias {
            return Err(Error::Checkpoint(format!(
                "config bias ({}) disagrees with the checkpoint ({has_bias}) in {}",
                cfg.bias, self.path
            )));
        }
        cfg.bias = has_bias;
        cfg.validate()
    }

    /// The values of `spec` (f32, f16 or bf16 in the file), checked against its shape.
    pub fn load(&self, spec: &TensorSpec) -> Result<Vec<f32>> {
        let st = self.tensors();
        let view = st
            .tensor(&spec.name)
            .or_else(|_| st.tensor(&format!("transformer.{}", spec.name)))
            .map_err(|_| {
                Error::Checkpoint(format!("{}: tensor {} is missing", self.path, spec.name))
            })?;
        if view.shape() != spec.shape.as_slice() {
            return Err(Error::Checkpoint(format!(
                "{}: tensor {} has shape {:?}, the config needs {:?}",
                self.path,
                spec.name,
                view.shape(),
                spec.shape
            )));
        }
        let mut out = try_vec_with_capacity(spec.numel(), &spec.name)?;
        let what = format!("{}: tensor {}", self.path, spec.name);
        extend_f32(&mut out, view.dtype(), view.data(), &what)?;
        Ok(out)
    }
}

/// Whether tensor `name` is a block's linear weight `[K, N]` read by the matmul and
/// matrix-vector kernels, which take it in column panels
/// ([`crate::kernels::matmul::to_panels`]); the experts' `[E, K, N]` weights are stored
/// in panels expert by expert ([`crate::kernels::moe::store_experts`]).
pub fn stored_in_panels(name: &str) -> bool {
    [
        ".attn.c_attn.weight",
        ".attn.c_proj.weight",
        ".mlp.c_fc.weight",
        ".mlp.c_proj.weight",
        ".mlp.shared.c_fc.weight",
        ".mlp.shared.c_proj.weight",
    ]
    .iter()
    .any(|s| name.ends_with(s))
}

/// Whether tensor `name` is stored as half floats when `dtype` is float16: the linear
/// weights of the blocks, experts included, and the token embedding (also the tied LM
/// head); not the position embedding, layer norms, biases or routers.
pub fn stored_as_f16(name: &str) -> bool {
    name == "wte.weight"
        || name == "lm_head.weight"
        || [
            ".attn.c_attn.weight",
            ".attn.c_proj.weight",
            ".mlp.c_fc.weight",
            ".mlp.c_proj.weight",
            ".mlp.experts.c_fc.weight",
            ".mlp.experts.c_proj.weight",
            ".mlp.shared.c_fc.weight",
            ".mlp.shared.c_proj.weight",
        ]
        .iter()
        .any(|s| name.ends_with(s))
}

/// Whether tensor `name` is a gate `[C, N]` whose columns are padded to a multiple of
/// 4 for the vec4 matmul (the MoE router, the shared expert's gate).
pub fn padded_gate(name: &str) -> bool {
    name.ends_with(".mlp.router.weight") || name.ends_with(".mlp.shared.gate.weight")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_count_equals_parameter_count() {
        for (bias, use_moe) in [(true, false), (false, false), (true, true), (false, true)] {
            let cfg = ModelConfig {
                bias,
                use_moe,
                moe_num_experts: 3,
                ..ModelConfig::default()
            };
            let n: usize = tensor_specs(&cfg).iter().map(|s| s.numel()).sum();
            assert_eq!(n, cfg.parameter_count());
        }
        // the Llama families: grouped heads, biases by family, experts, a shared one,
        // Qwen3's head norms
        for arch in [
            "llama",
            "qwen2",
            "mixtral",
            "qwen2_moe",
            "qwen3",
            "qwen3_moe",
        ] {
            let mut v = serde_json::json!({
                "architecture": arch, "n_embed": 64, "n_head": 4, "n_kv_head": 2,
                "head_dim": 32, "n_layer": 3, "intermediate_size": 96, "vocab_size": 50,
                "moe_num_experts": 4, "moe_top_k": 2, "moe_intermediate_size": 32,
                "moe_mlp_only_layers": [1],
            });
            if arch == "qwen2_moe" {
                v["moe_shared_expert_size"] = 48.into();
            }
            let cfg = ModelConfig::from_value(v).unwrap();
            let n: usize = tensor_specs(&cfg).iter().map(|s| s.numel()).sum();
            assert_eq!(n, cfg.parameter_count(), "{arch}");
        }
    }

    #[test]
    fn init_is_deterministic_and_seed_dependent() {
        let spec = TensorSpec {
            name: "x".into(),
            shape: vec![3, 1 << 19],
            init: Init::Normal(0.02),
        };
        let a = init_tensor(&spec, 5, 7).unwrap();
        let b = init_tensor(&spec, 5, 7).unwrap();
        let c = init_tensor(&spec, 5, 8).unwrap();
        let d = init_tensor(&spec, 6, 7).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
        let mean = a.iter().map(|&v| v as f64).sum::<f64>() / a.len() as f64;
        let var = a.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / a.len() as f64;
        assert!(mean.abs() < 1e-4, "mean {mean}");
        assert!((var.sqrt() - 0.02).abs() < 1e-4, "std {}", var.sqrt());
    }
}
