#!/usr/bin/env python3
"""Write the Hugging Face reference fixture used by tests/hf_fixture.rs.

A tiny GPT-2 (2 layers, width 64, 4 heads, vocabulary 256, context 64) built with
`transformers`, random weights (biases and layer-norm parameters perturbed so every
path of the model matters), saved with `save_pretrained` (safetensors), plus the
logits `transformers` computes for a fixed input and the ids it generates greedily.

Run (needs torch + transformers + safetensors; CI never runs this):
    python3 -m venv /tmp/ptvenv && /tmp/ptvenv/bin/pip install torch transformers safetensors
    /tmp/ptvenv/bin/python tools/make_hf_fixture.py tests/fixtures/hf-gpt2-tiny
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2LMHeadModel


def main(out_dir: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(1234)
    config = GPT2Config(
        vocab_size=256,
        n_positions=64,
        n_embd=64,
        n_layer=2,
        n_head=4,
        activation_function="gelu_new",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        layer_norm_epsilon=1e-5,
        initializer_range=0.2,
    )
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.add_(0.05 * torch.randn_like(p))
            elif ".ln_" in name or "ln_f" in name:
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(out_dir, safe_serialization=True)

    g = torch.Generator().manual_seed(99)
    input_ids = torch.randint(0, config.vocab_size, (1, 24), generator=g)
    with torch.no_grad():
        logits = model(input_ids).logits.float().contiguous()
    save_file({"logits": logits[0]}, os.path.join(out_dir, "logits.safetensors"))

    prompt = input_ids[:, :8]
    with torch.no_grad():
        generated = model.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=16,
            do_sample=False,
            pad_token_id=0,
        )
    meta = {
        "config": {
            "vocab_size": config.vocab_size,
            "context_size": config.n_positions,
            "n_layer": config.n_layer,
            "n_head": config.n_head,
            "n_embed": config.n_embd,
        },
        "input_ids": input_ids[0].tolist(),
        "greedy_prompt": prompt[0].tolist(),
        "greedy_ids": generated[0, prompt.shape[1]:].tolist(),
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
    }
    with open(os.path.join(out_dir, "fixture.json"), "w") as f:
        json.dump(meta, f, indent=1)
    # config.json / generation_config.json from save_pretrained are kept for reference.


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/hf-gpt2-tiny")
