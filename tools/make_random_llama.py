#!/usr/bin/env python3
"""Write a random-weight Llama model directory of a chosen size (bf16 safetensors,
sharded, with config.json and generation_config.json), for measuring the loader
(host memory while loading a checkpoint of ~500 MB) and for GPU runs of a model shape
no hub can be reached for. Not a fixture: nothing it writes is committed.

    /tmp/pyenv/bin/python tools/make_random_llama.py /tmp/llama-500m \\
        --hidden 1024 --layers 16 --heads 16 --kv-heads 8 --intermediate 2816 --vocab 32000
"""
import argparse

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--intermediate", type=int, default=2816)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--shard", default="200MB")
    a = ap.parse_args()
    config = LlamaConfig(
        vocab_size=a.vocab,
        hidden_size=a.hidden,
        intermediate_size=a.intermediate,
        num_hidden_layers=a.layers,
        num_attention_heads=a.heads,
        num_key_value_heads=a.kv_heads,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    model = model.to_empty(device="cpu").to(torch.bfloat16)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.02)
    model.save_pretrained(a.out, max_shard_size=a.shard)
    n = sum(p.numel() for p in model.parameters())
    print(f"{a.out}: {n} parameters, {2 * n / 1e6:.0f} MB of bf16 weights")


if __name__ == "__main__":
    main()
