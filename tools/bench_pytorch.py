#!/usr/bin/env python3
"""CPU baseline for docs/benchmarks.md: PyTorch eager forward and KV-cache generate of GPT-2 small
(random weights, vocabulary padded to 50304 as wgformer's default) at T = 16 and 128,
two threads, median of repeated runs. Needs torch + transformers (not in CI).

    /tmp/ptvenv/bin/python tools/bench_pytorch.py
"""
import statistics
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel

torch.set_num_threads(2)
cfg = GPT2Config(vocab_size=50304, n_positions=1024, n_embd=768, n_layer=12, n_head=12)
t0 = time.perf_counter()
model = GPT2LMHeadModel(cfg).eval()
build = time.perf_counter() - t0
print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, build {build:.2f} s")
for t in (16, 128):
    ids = torch.randint(0, 50257, (1, t))
    with torch.no_grad():
        for _ in range(3):
            model(ids)
        times = []
        for _ in range(10):
            s = time.perf_counter()
            model(ids)
            times.append(time.perf_counter() - s)
    print(f"pytorch eager forward T={t}: median {statistics.median(times) * 1e3:.1f} ms")

# generate with the KV cache: 64-token prompt, 64 greedy new tokens
ids = torch.randint(0, 50257, (1, 64))
with torch.no_grad():
    model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, min_new_tokens=8, do_sample=False, pad_token_id=0)
    runs = []
    for _ in range(3):
        s = time.perf_counter()
        model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=64, min_new_tokens=64, do_sample=False, pad_token_id=0)
        runs.append(time.perf_counter() - s)
    s = time.perf_counter()
    model(ids)
    prefill = time.perf_counter() - s
total = statistics.median(runs)
print(f"pytorch generate 64 new tokens after a 64-token prompt: {total:.2f} s, "
      f"{64 / total:.1f} tokens/s overall, {63 / max(total - prefill, 1e-9):.1f} tokens/s after the prefill ({prefill * 1e3:.0f} ms)")
