#!/usr/bin/env python3
"""CPU baseline for docs/benchmarks.md: PyTorch eager forward of GPT-2 small
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
