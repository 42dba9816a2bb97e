#!/usr/bin/env python3
"""Time to first token with and without the prefix cache (docs/benchmarks.md, "The
prefix cache"). Start a server first, e.g.
    wgformer serve --port 8020 --config '{"dtype": "float16"}' [--no-prefix-cache]
then: python3 tools/prefix_cache_bench.py http://127.0.0.1:8020
Three measurements: questions after one shared 180-token text (max_tokens 1), a
6-turn conversation's time to first token per turn, and n=4 choices of new prompts."""
import statistics
import sys
import time

import requests

B = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8020"
SYSTEM = ("You are a helpful assistant for a small bookshop. Customers ask about opening hours, "
          "orders, returns and recommendations. Keep answers short and friendly. ") * 6


def complete(body):
    t = time.time()
    r = requests.post(B + "/v1/completions", json=body)
    assert r.status_code == 200, r.text
    return time.time() - t, r.json()


def shared_text():
    qs = ["Hello", "When do you open?", "Can I return a book?", "Do you sell maps?",
          "Any thriller tips?", "Is parking free?", "Do you ship abroad?", "Gift cards?"]
    times = [complete({"prompt": SYSTEM + "Customer: " + q + "\nAssistant:", "max_tokens": 1,
                       "temperature": 0})[0] for q in qs]
    print("shared text: first %.3f s, later median %.3f s" % (times[0], statistics.median(times[1:])))


def conversation():
    conv = "System: You answer questions about the solar system briefly.\n"
    out = []
    for q in ["What is the largest planet?", "How many moons does it have?",
              "Which planet is closest to the sun?", "Is Pluto a planet?",
              "What is the hottest planet?", "Which planet has rings?"]:
        conv += "User: " + q + "\nAssistant:"
        t, c = complete({"prompt": conv, "max_tokens": 1, "temperature": 0})
        _, a = complete({"prompt": conv, "max_tokens": 24, "temperature": 0, "stop": ["\n"]})
        conv += a["choices"][0]["text"] + "\n"
        out.append((c["usage"]["prompt_tokens"], round(t, 3)))
    print("conversation (prompt tokens, s):", out)


def choices():
    ts = [round(complete({"prompt": "%d %s" % (k, SYSTEM), "max_tokens": 1, "n": 4,
                          "temperature": 1, "seed": k})[0], 3) for k in range(3)]
    print("n=4 of a new 180-token prompt (s):", ts)


shared_text()
conversation()
choices()
kv = requests.get(B + "/api/v1/status").json()["batching"]["kv_pool"]
print({k: kv.get(k) for k in ("prefix_cache", "pages_cached", "prompt_tokens", "prefix_cache_hit_tokens")})
