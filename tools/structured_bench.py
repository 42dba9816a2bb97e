#!/usr/bin/env python3
"""Milliseconds a token plain, in JSON mode and under a JSON Schema (docs/benchmarks.md,
"Structured outputs"). Start a server first, e.g.
    wgformer serve --port 8012 --config '{"dtype": "float16", "seed": 1}'
then: python3 tools/structured_bench.py http://127.0.0.1:8012
48-token completions with ignore_eos and a logit bias on end-of-text, so every row is
picked on the host in all three; the three interleaved, the first round a warm-up;
medians of the rest."""
import statistics
import sys
import time

import requests

B = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8012"
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 4
SCHEMA = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 12},
    "age": {"type": "integer", "minimum": 0, "maximum": 120},
    "tags": {"type": "array", "items": {"type": "string", "pattern": "^[a-z]+$"}, "maxItems": 3},
    "ok": {"type": "boolean"}}, "required": ["name", "age", "tags", "ok"]}
FORMATS = {"plain": None, "json_object": {"type": "json_object"},
           "json_schema": {"type": "json_schema", "json_schema": {"name": "p", "schema": SCHEMA}}}

times = {k: [] for k in FORMATS}
for rep in range(ROUNDS):
    for k, f in FORMATS.items():
        body = {"prompt": "Person as JSON:", "max_tokens": 48, "temperature": 1.0, "seed": rep,
                "ignore_eos": True, "logit_bias": {"50256": -1}}
        if f:
            body["response_format"] = f
        t = time.time()
        r = requests.post(B + "/v1/completions", json=body)
        assert r.status_code == 200, r.text
        dt = time.time() - t
        n = r.json()["usage"]["completion_tokens"]
        if rep > 0:
            times[k].append(dt / n * 1000)
for k, v in times.items():
    print(f"{k:12} median {statistics.median(v):6.1f} ms a token  {[round(x, 1) for x in v]}")
