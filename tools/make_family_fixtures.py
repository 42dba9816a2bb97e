#!/usr/bin/env python3
"""Write the Hugging Face model-directory fixtures of tests/it/families.rs.

One tiny random-weight model per family, built and saved by `transformers` itself
(`save_pretrained`), with a tiny byte-level BPE tokenizer trained here, and the numbers
`transformers` computes for them: the ids `AutoTokenizer` gives a fixed text, the f32
logits of those ids, the last position's hidden state after the final norm
(`last_hidden`: fixtures written since it was added), and the ids `generate` picks
greedily.

  llama    GQA (4 heads, 2 KV heads), head_dim 16, llama3 rope scaling, untied head,
           bf16 weights in 3 shards with an index, transformers-5 config layout,
           BOS added by the tokenizer, generation_config eos a list
  qwen2    q/k/v biases, tied head, linear rope scaling written as transformers 4 did
           (`rope_theta` + `rope_scaling` with `type`), f32 weights, no BOS
  mistral  sliding window of 8 (shorter than the text), GQA, f16 weights,
           transformers-4 layout (`rope_theta`, `rope_scaling` yarn: factor 4 over an
           original context of 32, the default band and attention factor)
  mixtral  4 SwiGLU experts, top-2 renormalised, GQA, bf16, untied head
  qwen2_moe  4 experts top-2 without renormalisation (norm_topk_prob false), a shared
           expert behind a sigmoid gate, layer 1 dense (mlp_only_layers), q/k/v biases
  qwen3    an RMSNorm on each query and key head (q_norm, k_norm), head_dim 32 wider
           than hidden/heads, GQA, tied head, bf16, no BOS
  qwen3_moe  Qwen3's heads with 4 experts top-2 renormalised, no shared expert, layer 1
           dense (mlp_only_layers), f32
  phi3     q/k/v in one qkv_proj and gate/up in one gate_up_proj, GQA, a sliding window
           of 8, bf16, BOS added
  phi4_mini  Phi-4-mini's positions: longrope (short and long factors, an original
           context of 32 in a model of 128, so the attention factor scales cos and sin)
           over 0.75 of each head (partial_rotary_factor: 12 of 16 dimensions), tied
           head, transformers-4 layout; the greedy prompt is longer than the original
           context and the full text's logits too (transformers' long factors), and
           `logits_short` holds the logits of the first 32 ids (its short factors)
  granite  Granite 3's scalars: the embedding (x12), the scores (an attention_multiplier
           of 1/64, not 1/sqrt(16)), each residual add (x0.22) and the logits (/8),
           GQA, tied head, bf16
  smollm3  the Llama block with layer 1 of 2 unrotated (no_rope_layers [1, 0]), GQA,
           tied head, bf16, no BOS
  gemma3   Gemma 3's block: q/k head norms, norms after the attention and the MLP,
           GELU-gated MLP, the embedding scaled by √hidden, (1 + w) norms; heads of
           256 (wider than hidden), one KV head, query_pre_attn_scalar 128 (not the head
           size), layers sliding (window 8) / full / sliding with rotary bases 10,000
           and 1,000,000 (linear scaling 8 on the full layer), tied head, bf16
  gemma    Gemma 1's block: the Llama block with (1 + w) norms, the GELU gate and the
           embedding scaled by √hidden; one KV head (Gemma 2B's multi-query
           attention), heads of 32 wider than hidden/heads, tied head, bf16, and
           `hidden_act: "gelu"` in config.json as the published configs write it
           (transformers reads it as the tanh approximation)
  glm      GLM-4-9B-chat-hf's block: q/k/v biases (attention_bias), gate and up in one
           gate_up_proj, half of each head rotated in adjacent pairs (GPT-J's layout,
           not Llama's halves: partial_rotary_factor 0.5 by GlmConfig's default),
           GQA, untied head, bf16
  glm4     GLM-4-0414's: GLM's block with norms after the attention and the MLP too
           (post_self_attn_layernorm, post_mlp_layernorm), f32
  starcoder2  rotary positions and GQA with LayerNorms and a GELU MLP (GPT-2's), biases
           on every linear and norm (use_bias), a sliding window of 8, tied head, f16
  cohere   Command-R's / Aya's parallel block: one LayerNorm without bias before both
           the attention and the MLP, both added to the stream; rotary positions in
           adjacent pairs; the logits times logit_scale (0.5 here); GQA, tied, bf16
  cohere2  Command R7B's: Cohere's block over 4 layers, 0-2 windowed (8) and rotated,
           layer 3 global without positions (Cohere2Config's default layer_types), f32
  olmo2    OLMo 2's block: no norm before the attention nor the MLP, one after each,
           and q_norm / k_norm each one RMSNorm over all the query (key) heads, a weight
           a channel; GQA, untied head, bf16
  gemma2   Gemma 2's block: Gemma 3's without the head norms, layers alternating
           sliding (window 8) and full as Gemma2Config's default has them, heads of 32,
           GQA, query_pre_attn_scalar 24, and its soft caps at values these tiny
           weights reach (the scores at 0.02, the logits at 0.5: Gemma 2's 50 and 30
           would change nothing here; the script checks that each cap moves the
           logits), tied head, bf16

The weights are rounded to the dtype they are stored in before the reference numbers
are computed (in f32), so a loader that converts them exactly reproduces the logits.

Run (needs torch + transformers + tokenizers; CI never runs this):
    python3 -m venv /tmp/pyenv && /tmp/pyenv/bin/pip install torch transformers
    /tmp/pyenv/bin/python tools/make_family_fixtures.py tests/fixtures/families [NAME ...]
(names: only those fixtures; the others are left as they are)
"""
import json
import os
import shutil
import zlib
import sys

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    MistralConfig,
    MixtralConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2MoeConfig,
    Phi3Config,
    Qwen3Config,
    Qwen3MoeConfig,
    GemmaConfig,
    GlmConfig,
    Glm4Config,
    Gemma2Config,
    Gemma3TextConfig,
    GraniteConfig,
    CohereConfig,
    Cohere2Config,
    Olmo2Config,
    Starcoder2Config,
    SmolLM3Config,
)

TEXT = (
    "The quick brown fox jumps over the lazy dog. Tiny models of every family "
    "speak the same bytes: attention, rotary positions, grouped heads."
)
CORPUS = [TEXT, "Hello world! Transformers run on GPUs, and on CPUs too."] * 4


def train_tokenizer(bos: bool) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer)
    if bos:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 0)]
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def perturb(model: torch.nn.Module) -> None:
    """Random norms and biases, so that every path of the block matters."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.add_(0.1 * torch.randn_like(p))
            elif "norm" in name:
                p.add_(0.2 * torch.randn_like(p))


def round_to(model: torch.nn.Module, dtype: torch.dtype) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(dtype).to(torch.float32))


def edit_config(path: str, edit) -> None:
    """Rewrite the directory's config.json by `edit` (a function changing the dict)."""
    cfg_path = os.path.join(path, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    edit(cfg)
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2)


def to_transformers4(path: str, scaling) -> None:
    """Rewrite config.json in the transformers-4 layout: `rope_theta` at the top and
    `rope_scaling` with `type` (or none) instead of `rope_parameters`."""
    def edit(cfg):
        params = cfg.pop("rope_parameters", None) or {}
        cfg["rope_theta"] = params.get("rope_theta", cfg.get("rope_theta", 10000.0))
        cfg["rope_scaling"] = scaling
    edit_config(path, edit)


def build(out: str, name: str, config, dtype, *, bos: bool, eos_ids, shard=None,
          layout4=None, greedy_len=8, short=None, uncapped=(), config_edit=None) -> None:
    if ONLY and name not in ONLY:
        return
    path = os.path.join(out, name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    torch.manual_seed(zlib.crc32(name.encode()) % 1000)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()
    perturb(model)
    round_to(model, dtype)
    kw = {"max_shard_size": shard} if shard else {}
    model.to(dtype).save_pretrained(path, **kw)
    model.to(torch.float32)
    if layout4 is not None:
        to_transformers4(path, layout4 if layout4 != "none" else None)
    if config_edit is not None:
        edit_config(path, lambda cfg: cfg.update(config_edit))
    # generation_config.json with the eos ids (an int or a list)
    with open(os.path.join(path, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": 0, "eos_token_id": eos_ids}, f, indent=2)

    tok = train_tokenizer(bos)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token={"content": "</s>", "special": True}["content"],
    )
    fast.save_pretrained(path)
    tc_path = os.path.join(path, "tokenizer_config.json")
    with open(tc_path) as f:
        tc = json.load(f)
    tc["add_bos_token"] = bos
    # one of the two spellings of a special token: an object with `content`
    tc["eos_token"] = {"__type": "AddedToken", "content": "</s>", "lstrip": False,
                       "normalized": False,
                       "rstrip": False, "single_word": False, "special": True}
    with open(tc_path, "w") as f:
        json.dump(tc, f, indent=2)

    auto = AutoTokenizer.from_pretrained(path)
    ids = auto(TEXT)["input_ids"]
    assert len(ids) <= config.max_position_embeddings
    reloaded = AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    input_ids = torch.tensor([ids])
    tensors = {}
    with torch.no_grad():
        logits = reloaded(input_ids).logits.float()[0].contiguous()
        # the last position's hidden state after the final norm (what /v1/embeddings
        # pools)
        hidden = reloaded.model(input_ids).last_hidden_state.float()[0, -1].contiguous()
        if short:
            tensors["logits_short"] = reloaded(input_ids[:, :short]).logits.float()[0].contiguous()
        prompt = input_ids[:, :greedy_len]
        # 12 greedy tokens whatever they are: no eos stops (nor is masked: min_new_tokens
        # would forbid the eos ids, which argmax may pick)
        reloaded.generation_config.eos_token_id = None
        generated = reloaded.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=12,
            do_sample=False,
            pad_token_id=1,
        )
        assert generated.shape[1] == prompt.shape[1] + 12
    # each key of `uncapped` matters: the logits move past the tests' tolerance without it
    for key in uncapped:
        old = getattr(reloaded.config, key)
        setattr(reloaded.config, key, None)
        for layer in getattr(reloaded.model, "layers", []):
            if hasattr(layer.self_attn, key):
                setattr(layer.self_attn, key, None)
        with torch.no_grad():
            moved = (reloaded(input_ids).logits.float()[0] - logits).abs().max().item()
        setattr(reloaded.config, key, old)
        for layer in getattr(reloaded.model, "layers", []):
            if hasattr(layer.self_attn, key):
                setattr(layer.self_attn, key, old)
        print(name, "without", key, "the logits move by", moved)
        assert moved > 1e-2, (key, moved)
    tensors["logits"] = logits
    tensors["last_hidden"] = hidden
    save_file(tensors, os.path.join(path, "logits.safetensors"))
    meta = {
        "text": TEXT,
        "input_ids": ids,
        "greedy_prompt": prompt[0].tolist(),
        "greedy_ids": generated[0, prompt.shape[1]:].tolist(),
        "dtype": str(dtype).replace("torch.", ""),
        **({"short_context": short} if short else {}),
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
    }
    with open(os.path.join(path, "fixture.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(name, len(ids), "tokens", sorted(os.listdir(path)))


def main(out: str, only: list) -> None:
    common = dict(
        vocab_size=300,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        max_position_embeddings=128,
        rms_norm_eps=1e-5,
        bos_token_id=0,
        eos_token_id=1,
    )
    build(
        out,
        "llama",
        LlamaConfig(
            **common,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            tie_word_embeddings=False,
            rope_parameters={
                "rope_type": "llama3",
                "rope_theta": 10000.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 32,
            },
        ),
        torch.bfloat16,
        bos=True,
        eos_ids=[1, 2],
        shard="100KB",
    )
    build(
        out,
        "qwen2",
        Qwen2Config(
            **common,
            num_attention_heads=4,
            num_key_value_heads=4,
            tie_word_embeddings=True,
            rope_parameters={"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0},
        ),
        torch.float32,
        bos=False,
        eos_ids=1,
        layout4={"type": "linear", "factor": 2.0},
    )
    build(
        out,
        "mistral",
        MistralConfig(
            **common,
            num_attention_heads=4,
            num_key_value_heads=1,
            sliding_window=8,
            tie_word_embeddings=False,
            rope_parameters={"rope_type": "yarn", "rope_theta": 500.0, "factor": 4.0,
                             "original_max_position_embeddings": 32},
        ),
        torch.float16,
        bos=True,
        eos_ids=1,
        layout4={"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32},
    )
    build(
        out,
        "mixtral",
        MixtralConfig(
            **common,
            num_attention_heads=4,
            num_key_value_heads=2,
            num_local_experts=4,
            num_experts_per_tok=2,
            sliding_window=None,
            tie_word_embeddings=False,
            router_jitter_noise=0.0,
        ),
        torch.bfloat16,
        bos=True,
        eos_ids=1,
    )
    moe = dict(common)
    moe.pop("intermediate_size")
    build(
        out,
        "qwen2_moe",
        Qwen2MoeConfig(
            **moe,
            intermediate_size=96,
            moe_intermediate_size=32,
            shared_expert_intermediate_size=48,
            num_experts=4,
            num_experts_per_tok=2,
            norm_topk_prob=False,
            decoder_sparse_step=1,
            mlp_only_layers=[1],
            num_attention_heads=4,
            num_key_value_heads=4,
            tie_word_embeddings=True,
        ),
        torch.float32,
        bos=False,
        eos_ids=[1],
    )
    build(
        out,
        "qwen3",
        Qwen3Config(
            **common,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=32,
            tie_word_embeddings=True,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        ),
        torch.bfloat16,
        bos=False,
        eos_ids=[1, 2],
    )
    build(
        out,
        "qwen3_moe",
        Qwen3MoeConfig(
            **moe,
            intermediate_size=96,
            moe_intermediate_size=32,
            num_experts=4,
            num_experts_per_tok=2,
            norm_topk_prob=True,
            decoder_sparse_step=1,
            mlp_only_layers=[1],
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            tie_word_embeddings=False,
        ),
        torch.float32,
        bos=False,
        eos_ids=1,
    )


    build(
        out,
        "phi3",
        Phi3Config(
            **common,
            num_attention_heads=4,
            num_key_value_heads=2,
            sliding_window=8,
            tie_word_embeddings=False,
            pad_token_id=1,
        ),
        torch.bfloat16,
        bos=True,
        eos_ids=1,
    )

    # Phi-4-mini's rotation, shrunk: 12 of 16 dimensions (6 pairs), longrope factors
    # drawn here (short near 1, long larger), 32 original positions of 128
    gen = torch.Generator().manual_seed(4)
    short_factor = (1.0 + 0.5 * torch.rand(6, generator=gen)).tolist()
    long_factor = (1.0 + 6.0 * torch.rand(6, generator=gen)).tolist()
    build(
        out,
        "phi4_mini",
        Phi3Config(
            **common,
            num_attention_heads=4,
            num_key_value_heads=2,
            tie_word_embeddings=True,
            original_max_position_embeddings=32,
            partial_rotary_factor=0.75,
            rope_parameters={
                "rope_type": "longrope",
                "rope_theta": 10000.0,
                "partial_rotary_factor": 0.75,
                "short_factor": short_factor,
                "long_factor": long_factor,
            },
            pad_token_id=1,
        ),
        torch.bfloat16,
        bos=True,
        eos_ids=1,
        layout4={"type": "longrope", "short_factor": short_factor, "long_factor": long_factor},
        greedy_len=40,
        short=32,
    )

    gemma = dict(common, num_hidden_layers=3, rms_norm_eps=1e-6)
    build(
        out,
        "gemma3",
        Gemma3TextConfig(
            **gemma,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=256,
            query_pre_attn_scalar=128,
            sliding_window=8,
            layer_types=["sliding_attention", "full_attention", "sliding_attention"],
            rope_parameters={
                "full_attention": {"rope_type": "linear", "rope_theta": 1_000_000.0,
                                   "factor": 8.0},
                "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
            },
            tie_word_embeddings=True,
            pad_token_id=1,
        ),
        torch.bfloat16,
        bos=True,
        eos_ids=[1, 2],
    )

    build(
        out,
        "gemma",
        GemmaConfig(
            **common,
            num_attention_heads=4,
            num_key_value_heads=1,
            head_dim=32,
            hidden_act="gelu_pytorch_tanh",
            tie_word_embeddings=True,
            pad_token_id=1,
        ),
        torch.bfloat16,
        bos=True,
        eos_ids=1,
        config_edit={"hidden_act": "gelu"},
    )

    gemma2 = Gemma2Config(
        **gemma,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        query_pre_attn_scalar=24,
        sliding_window=8,
        attn_logit_softcapping=0.02,
        final_logit_softcapping=0.5,
        tie_word_embeddings=True,
        pad_token_id=1,
    )
    build(out, "gemma2", gemma2, torch.bfloat16, bos=True, eos_ids=[1, 2],
          uncapped=("attn_logit_softcapping", "final_logit_softcapping"))

    glm = dict(common, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
               tie_word_embeddings=False, pad_token_id=1,
               rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    build(out, "glm", GlmConfig(**glm), torch.bfloat16, bos=False, eos_ids=[1, 2])
    build(out, "glm4", Glm4Config(**glm), torch.float32, bos=False, eos_ids=1)

    sc2 = {k: v for k, v in common.items() if k != "rms_norm_eps"}
    build(
        out,
        "starcoder2",
        Starcoder2Config(
            **sc2,
            num_attention_heads=4,
            num_key_value_heads=2,
            norm_epsilon=1e-5,
            use_bias=True,
            sliding_window=8,
            tie_word_embeddings=True,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        ),
        torch.float16,
        bos=False,
        eos_ids=1,
    )

    # Command-R's and Command R7B's blocks share every key but the layers and the window
    cohere = dict(sc2, num_attention_heads=4, num_key_value_heads=2, layer_norm_eps=1e-5,
                  logit_scale=0.5, tie_word_embeddings=True, pad_token_id=1,
                  rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    build(out, "cohere", CohereConfig(**cohere, use_qk_norm=False), torch.bfloat16,
          bos=True, eos_ids=1)
    build(out, "cohere2", Cohere2Config(**dict(cohere, num_hidden_layers=4), sliding_window=8),
          torch.float32, bos=True, eos_ids=1)

    build(
        out,
        "olmo2",
        Olmo2Config(
            **common,
            num_attention_heads=4,
            num_key_value_heads=2,
            tie_word_embeddings=False,
            pad_token_id=1,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        ),
        torch.bfloat16,
        bos=False,
        eos_ids=1,
    )

    build(
        out,
        "granite",
        GraniteConfig(
            **common,
            num_attention_heads=4,
            num_key_value_heads=2,
            tie_word_embeddings=True,
            embedding_multiplier=12.0,
            attention_multiplier=0.015625,
            residual_multiplier=0.22,
            logits_scaling=8.0,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        ),
        torch.bfloat16,
        bos=False,
        eos_ids=1,
    )

    build(
        out,
        "smollm3",
        SmolLM3Config(
            **common,
            num_attention_heads=4,
            num_key_value_heads=2,
            tie_word_embeddings=True,
            no_rope_layers=[1, 0],
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            pad_token_id=1,
        ),
        torch.bfloat16,
        bos=False,
        eos_ids=1,
    )


ONLY: list = []

if __name__ == "__main__":
    ONLY = sys.argv[2:]
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/families", ONLY)
