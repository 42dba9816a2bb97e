#!/usr/bin/env python3
"""Continuous batching under load (standard library only, loopback, bounded).

Starts `target/release/wgformer serve --port 0` with a model config (default: GPT-2
small shapes, seeded weights, dtype float16), then

1. for 1, 4, 8 and 16 concurrent clients (--clients): each client sends --requests
   generations of --new-tokens tokens one after the other (greedy, or as --sampling
   says), streamed over SSE;
   reports aggregate tokens/s, its ratio to one client, and percentiles of the time to
   first token and of the whole request;
2. time to first token of a 64-token prompt alone, and while --join-batch generations
   are running (it joins their batch), medians of three each, and the ratio;

or, with --forward-clients 1,8: that many clients each sending --forward-requests
forwards (no statistics) one after the other; forwards/s, latency percentiles, and
forwards per traversal (forwards that arrive together share one).

It stops by itself: request counts are fixed and every request has a timeout.

    cargo build --release
    python3 tools/batch_load.py [--clients 1,4,8,16] [--requests 2] [--rounds 3] [--config JSON]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

TIMEOUT = 900


def start(binary, config, extra):
    p = subprocess.Popen(
        [binary, "serve", "--port", "0", "--config", config, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "XDG_RUNTIME_DIR": os.environ.get("XDG_RUNTIME_DIR", "/tmp")},
    )
    for line in p.stdout:
        if "listening on" in line:
            addr = line.strip().split("listening on")[-1].strip().split()[0]
            return p, "http://" + addr.replace("http://", "")
    raise SystemExit("the service did not start")


def stream(base, body):
    """POST a streamed generation; returns (seconds to first token, seconds in all, tokens)."""
    req = urllib.request.Request(
        base + "/api/v1/generate",
        data=json.dumps({**body, "stream": True}).encode(),
        headers={"Content-Type": "application/json"},
    )
    t0 = time.perf_counter()
    first = None
    tokens = 0
    with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
        event = None
        for raw in r:
            line = raw.decode().strip()
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                if event == "token":
                    tokens += 1
                    if first is None:
                        first = time.perf_counter() - t0
                elif event == "error":
                    raise RuntimeError(line)
                elif event == "complete":
                    break
    return first or float("nan"), time.perf_counter() - t0, tokens


def run_clients(clients, client):
    """Run `client(c)` for c < clients in threads, all at once; seconds until all end."""
    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


ENGINE = [
    "wgformer_decode_steps_total",
    "wgformer_decode_steps_mixed_total",
    "wgformer_decode_seconds_total",
    "wgformer_prefill_steps_total",
    "wgformer_prefill_seconds_total",
    "wgformer_generated_tokens_total",
    "wgformer_engine_busy_seconds_total",
]


def engine_figures(base):
    with urllib.request.urlopen(base + "/metrics", timeout=60) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ENGINE:
            out[name] = float(value)
    return out


def kernel_figures(base):
    """Device seconds by (step, kernel) and profiled steps by kind, from /metrics (the
    server's --profile-every)."""
    with urllib.request.urlopen(base + "/metrics", timeout=60) as r:
        text = r.read().decode()
    seconds, steps = {}, {}
    for line in text.splitlines():
        name, _, rest = line.partition("{")
        if name not in ("wgformer_kernel_seconds_total", "wgformer_profiled_steps_total"):
            continue
        labels, _, value = rest.partition("} ")
        kv = dict(part.split("=", 1) for part in labels.split(","))
        kv = {k: v.strip('"') for k, v in kv.items()}
        if name == "wgformer_profiled_steps_total":
            steps[kv["step"]] = float(value)
        else:
            seconds[(kv["step"], kv["kernel"])] = float(value)
    return seconds, steps


def kernel_share(before, after):
    """The largest kernels between two kernel_figures: ms per profiled traversal."""
    (s0, n0), (s1, n1) = before, after
    steps = {k: n1.get(k, 0) - n0.get(k, 0) for k in n1}
    rows = []
    for key, v in s1.items():
        d = v - s0.get(key, 0.0)
        if d > 0 and steps.get(key[0], 0) > 0:
            rows.append((d, f"{key[0]}/{key[1]}", round(1e3 * d / steps[key[0]], 3)))
    rows.sort(reverse=True)
    return {"profiled_steps": steps, "ms_per_profiled_step": {name: ms for _, name, ms in rows[:10]}}


def load(base, clients, requests, new_tokens, words, sampling, kernels=False):
    lat, ttft, tokens = [], [], []
    before = engine_figures(base)
    kernels_before = kernel_figures(base) if kernels else None
    lock = threading.Lock()

    def client(c):
        for r in range(requests):
            body = {
                "text": f"Client {c} request {r} says" + " the" * words,
                "max_new_tokens": new_tokens,
                **sampling,
            }
            f, t, n = stream(base, body)
            with lock:
                lat.append(t)
                ttft.append(f)
                tokens.append(n)

    wall = run_clients(clients, client)
    after = engine_figures(base)
    d = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in ENGINE}
    steps = max(d["wgformer_decode_steps_total"], 1)
    extra = {"kernels": kernel_share(kernels_before, kernel_figures(base))} if kernels else {}
    return {
        "clients": clients,
        "requests": len(lat),
        "tokens": sum(tokens),
        "wall_s": round(wall, 3),
        "tokens_per_s": round(sum(tokens) / wall, 2),
        "ttft_p50_s": round(pct(ttft, 0.5), 3),
        "ttft_p90_s": round(pct(ttft, 0.9), 3),
        "latency_p50_s": round(pct(lat, 0.5), 3),
        "latency_p90_s": round(pct(lat, 0.9), 3),
        "latency_max_s": round(max(lat), 3),
        # where the engine's time went: decode steps (mean rows a step, ms a step) and
        # prefill traversals; the rest of the wall time is outside the model's steps
        "decode_steps": int(d["wgformer_decode_steps_total"]),
        "rows_per_step": round(d["wgformer_generated_tokens_total"] / steps, 2),
        "ms_per_step": round(1e3 * d["wgformer_decode_seconds_total"] / steps, 3),
        # of the decode steps, those that prefilled joining prompts too (no prefill
        # traversal of their own)
        "mixed_steps": int(d["wgformer_decode_steps_mixed_total"]),
        "prefill_steps": int(d["wgformer_prefill_steps_total"]),
        "prefill_s": round(d["wgformer_prefill_seconds_total"], 3),
        "decode_s": round(d["wgformer_decode_seconds_total"], 3),
        # the engine loop's host work around the steps (sampling, streaming, admitting)
        "host_s": round(
            d["wgformer_engine_busy_seconds_total"]
            - d["wgformer_decode_seconds_total"]
            - d["wgformer_prefill_seconds_total"],
            3,
        ),
        **extra,
    }


def forward_load(base, clients, requests, words):
    """`clients` clients each sending `requests` forwards one after the other."""
    lat = []
    lock = threading.Lock()

    def forward_batch():
        with urllib.request.urlopen(base + "/metrics", timeout=60) as r:
            text = r.read().decode()
        got = {}
        for line in text.splitlines():
            for k in ("sum", "count"):
                if line.startswith(f"wgformer_forward_batch_size_{k} "):
                    got[k] = float(line.split()[1])
        return got.get("sum", 0.0), got.get("count", 0.0)

    def client(c):
        for r in range(requests):
            body = json.dumps({"text": f"Client {c} request {r} says" + " the" * words, "top_k": 5}).encode()
            req = urllib.request.Request(base + "/api/v1/forward", data=body, headers={"Content-Type": "application/json"})
            t0 = time.perf_counter()
            with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
                resp.read()
            with lock:
                lat.append(time.perf_counter() - t0)

    s0, n0 = forward_batch()
    wall = run_clients(clients, client)
    s1, n1 = forward_batch()
    return {
        "what": "forward_load",
        "clients": clients,
        "requests": len(lat),
        "wall_s": round(wall, 3),
        "forwards_per_s": round(len(lat) / wall, 2),
        "latency_p50_s": round(pct(lat, 0.5), 4),
        "latency_p90_s": round(pct(lat, 0.9), 4),
        "forwards_per_traversal": round((s1 - s0) / max(n1 - n0, 1), 2),
    }


def metric(base, name):
    with urllib.request.urlopen(base + "/metrics", timeout=60) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return float("nan")


def join_ttft(base, running, new_tokens):
    """TTFT of a 64-token prompt alone, then joining `running` generations."""
    prompt = {"text": "word " * 63, "max_new_tokens": 4, "temperature": 0}
    alone = statistics.median(stream(base, prompt)[0] for _ in range(3))
    done = []
    threads = [
        threading.Thread(
            target=lambda i=i: done.append(
                stream(base, {"text": f"Background {i} says the", "max_new_tokens": new_tokens, "temperature": 0})
            )
        )
        for i in range(running)
    ]
    for t in threads:
        t.start()
    # three joins, each once they all decode together (the median, like `alone`)
    joins = []
    deadline = time.time() + TIMEOUT
    for _ in range(3):
        while metric(base, "wgformer_current_batch_size") < running and time.time() < deadline:
            time.sleep(0.05)
        if len(done) > 0:
            break  # the batch has begun to finish: later joins would not join 'running'
        joins.append(stream(base, prompt)[0])
    for t in threads:
        t.join()
    joined = statistics.median(joins)
    return {"running": running, "ttft_alone_s": round(alone, 3), "ttft_joining_s": round(joined, 3),
            "joins": len(joins), "ratio": round(joined / alone, 2)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default="target/release/wgformer")
    ap.add_argument("--config", default='{"dtype": "float16"}')
    ap.add_argument("--clients", default="1,4,8,16")
    ap.add_argument("--requests", type=int, default=1, help="generations per client")
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat the sweep over --clients; with more than one, a summary per client count: "
        "median tokens/s and the median of each round's ratio to one client (a round's "
        "counts run back to back, so a ratio does not straddle the machine's slow and fast spells)",
    )
    ap.add_argument("--join-batch", type=int, default=8)
    ap.add_argument("--prompt-words", type=int, default=24, help="' the' repeated after 'Client c request r says'")
    ap.add_argument("--serve-args", default="", help="extra flags for wgformer serve")
    ap.add_argument(
        "--profile-every",
        type=int,
        default=0,
        help="serve with --profile-every N and report each load's largest kernels "
        "(ms of device time per profiled traversal, by decode / prefill)",
    )
    ap.add_argument(
        "--sampling",
        default='{"temperature": 0}',
        help='generation parameters of the load\'s requests, e.g. \'{"temperature": 0.8, "top_p": 0.9, "seed": 1}\'',
    )
    ap.add_argument("--forward-clients", default="", help="e.g. 1,8: concurrent /forward clients (no generations)")
    ap.add_argument("--forward-requests", type=int, default=8, help="forwards per client")
    a = ap.parse_args()
    serve = a.serve_args.split() + (["--profile-every", str(a.profile_every)] if a.profile_every else [])
    proc, base = start(a.binary, a.config, serve)
    try:
        stream(base, {"text": "warm up", "max_new_tokens": 2, "temperature": 0})
        if a.forward_clients:
            first = None
            for n in [int(x) for x in a.forward_clients.split(",")]:
                row = forward_load(base, n, a.forward_requests, a.prompt_words)
                first = first or row
                row["vs_one_client"] = round(row["forwards_per_s"] / first["forwards_per_s"], 2)
                print(json.dumps(row), flush=True)
            return
        counts = [int(x) for x in a.clients.split(",")]
        by_count = {n: [] for n in counts}
        for r in range(max(a.rounds, 1)):
            rows = []
            for n in counts:
                row = load(base, n, a.requests, a.new_tokens, a.prompt_words, json.loads(a.sampling),
                           kernels=a.profile_every > 0)
                rows.append(row)
                row["vs_one_client"] = round(row["tokens_per_s"] / rows[0]["tokens_per_s"], 2)
                by_count[n].append(row)
                extra = {"round": r + 1} if a.rounds > 1 else {}
                print(json.dumps({"what": "batch_load", **extra, "prompt_words": a.prompt_words,
                                  "sampling": json.loads(a.sampling), **row}), flush=True)
        if a.rounds > 1:
            for n in counts:
                rs = by_count[n]
                ratios = [x["vs_one_client"] for x in rs]
                print(json.dumps({
                    "what": "batch_load_rounds", "clients": n, "rounds": len(rs),
                    "tokens_per_s_median": round(statistics.median(x["tokens_per_s"] for x in rs), 2),
                    "ms_per_step_median": round(statistics.median(x["ms_per_step"] for x in rs), 3),
                    "vs_one_client_median": round(statistics.median(ratios), 2),
                    "vs_one_client_min": min(ratios), "vs_one_client_max": max(ratios),
                }), flush=True)
        if a.join_batch:
            print(json.dumps({"what": "join_ttft", **join_ttft(base, a.join_batch, 4 * a.new_tokens)}), flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=60)


if __name__ == "__main__":
    sys.exit(main())
