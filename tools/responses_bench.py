#!/usr/bin/env python3
"""Milliseconds a request through /v1/chat/completions and /v1/responses, whole and
streamed (docs/benchmarks.md, "The Responses API"): the same one-message conversation,
16 new tokens (ignore_eos), seeded; the five interleaved, 21 rounds, the first a
warm-up; medians of the rest. Needs a model with a chat template, e.g.
    wgformer serve --port 8431 --models-dir DIR --config '{"model": "NAME"}'
    python3 tools/responses_bench.py http://127.0.0.1:8431"""
import statistics
import sys
import time

import requests

B = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8431"
N = 16
COMMON = {"max_tokens": N, "ignore_eos": True, "temperature": 1, "seed": 1}


def chat(stream):
    body = {"messages": [{"role": "user", "content": "Hello there"}], **COMMON, "stream": stream}
    return requests.post(B + "/v1/chat/completions", json=body, stream=stream)


def resp(stream, store=True):
    body = {"input": "Hello there", **COMMON, "stream": stream, "store": store}
    body["max_output_tokens"] = body.pop("max_tokens")
    return requests.post(B + "/v1/responses", json=body, stream=stream)


WAYS = {"chat": lambda: chat(False), "responses": lambda: resp(False),
        "responses store:false": lambda: resp(False, False),
        "chat stream": lambda: chat(True), "responses stream": lambda: resp(True)}
times = {k: [] for k in WAYS}
for rep in range(21):
    for k, f in WAYS.items():
        t0 = time.perf_counter()
        r = f()
        body = r.content
        assert r.status_code == 200, body[:300]
        if rep:
            times[k].append((time.perf_counter() - t0) * 1000)
for k, v in times.items():
    print(f"{k:22} median {statistics.median(v):6.2f} ms  (min {min(v):.2f}, max {max(v):.2f})")
