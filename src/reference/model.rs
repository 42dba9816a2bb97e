//! Reference GPT-2 forward on the CPU from host weights (HF names), built from the
//! reference ops. Slow; used by golden tests at small shapes.

use std::collections::HashMap;

use super::{
    attention::{attention, attention_masked},
    embedding::embedding,
    layer_norm::layer_norm,
    matmul,
};
use crate::config::ModelConfig;

/// Full logits `[T, V]` for `ids`.
pub fn forward(cfg: &ModelConfig, w: &HashMap<String, Vec<f32>>, ids: &[u32]) -> Vec<f32> {
    let (c, h, t) = (cfg.n_embed, cfg.ffn_hidden(), ids.len());
    let get = |n: &str| w.get(n).map(|v| v.as_slice());
    let must = |n: &str| get(n).unwrap_or_else(|| panic!("missing {n}"));
    let mut x = embedding(ids, must("wte.weight"), must("wpe.weight"), c, 0);
    for l in 0..cfg.n_layer {
        let p = |s: &str| format!("h.{l}.{s}");
        let ln1 = layer_norm(&x, must(&p("ln_1.weight")), get(&p("ln_1.bias")), c);
        let qkv = matmul::matmul(
            &ln1,
            must(&p("attn.c_attn.weight")),
            get(&p("attn.c_attn.bias")),
            None,
            t,
            3 * c,
            c,
            false,
        );
        let (att, _) = if cfg.use_sparse_attention {
            let layout = crate::sparse::BlockLayout::new(
                cfg.context_size,
                cfg.sparse_block_size,
                cfg.sparse_local_blocks,
                cfg.sparse_global_blocks,
                cfg.sparse_stride,
            );
            attention_masked(&qkv, cfg.heads(), |i, j| layout.allows(i, j))
        } else {
            attention(&qkv, cfg.heads())
        };
        x = matmul::matmul(
            &att,
            must(&p("attn.c_proj.weight")),
            get(&p("attn.c_proj.bias")),
            Some(&x),
            t,
            c,
            c,
            false,
        );
        let ln2 = layer_norm(&x, must(&p("ln_2.weight")), get(&p("ln_2.bias")), c);
        if cfg.use_moe {
            let e = cfg.moe_num_experts;
            let split = |n: &str| -> Vec<Vec<f32>> {
                must(&p(n))
                    .chunks(must(&p(n)).len() / e)
                    .map(|x| x.to_vec())
                    .collect()
            };
            let split_opt = |n: &str| -> Vec<Option<Vec<f32>>> {
                match get(&p(n)) {
                    Some(v) => v.chunks(v.len() / e).map(|x| Some(x.to_vec())).collect(),
                    None => vec![None; e],
                }
            };
            let (out, _, _) = super::moe::moe_mlp(
                &x,
                &ln2,
                must(&p("mlp.router.weight")),
                &split("mlp.experts.c_fc.weight"),
                &split_opt("mlp.experts.c_fc.bias"),
                &split("mlp.experts.c_proj.weight"),
                &split_opt("mlp.experts.c_proj.bias"),
                cfg.moe_top_k,
                cfg.moe_activation,
                c,
            );
            x = out;
            continue;
        }
        let hid = matmul::matmul(
            &ln2,
            must(&p("mlp.c_fc.weight")),
            get(&p("mlp.c_fc.bias")),
            None,
            t,
            h,
            c,
            true,
        );
        x = matmul::matmul(
            &hid,
            must(&p("mlp.c_proj.weight")),
            get(&p("mlp.c_proj.bias")),
            Some(&x),
            t,
            c,
            h,
            false,
        );
    }
    let lnf = layer_norm(&x, must("ln_f.weight"), get("ln_f.bias"), c);
    matmul::matmul_bt(&lnf, must("wte.weight"), t, cfg.vocab_size, c)
}
