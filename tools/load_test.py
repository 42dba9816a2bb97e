#!/usr/bin/env python3
"""Bounded loopback load test of the wgformer HTTP service (standard library only).

Starts `target/release/wgformer serve --port 0` with a model config, warms it up,
then sends N mixed requests (forward with and without capture, generation as JSON and
as Server-Sent Events, status, health, ping, metrics, bad input) from C concurrent clients, all to 127.0.0.1, and reports
errors, latency percentiles and the server's resident memory before and after.
It stops by itself: the request count is fixed and every request has a timeout.

    cargo build --release
    python3 tools/load_test.py [--requests 1000] [--clients 16] [--config JSON]
"""
import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def call(base, i):
    """The i-th request of the mix: (expected status, method, path, body)."""
    kind = i % 12
    if kind == 10:
        return 200, "POST", "/api/v1/generate", {"text": f"Story {i}:", "max_new_tokens": 4, "seed": i}
    if kind == 11:
        return 200, "POST", "/api/v1/generate", {"text": "Stream this", "max_new_tokens": 3, "stream": True}
    if kind in (0, 1, 2, 3):
        return 200, "POST", "/api/v1/forward", {"text": f"Request number {i} asks the model something.", "top_k": 5}
    if kind == 4:
        return 200, "POST", "/api/v1/forward", {"text": "Capture the internals, please.", "capture_data": True}
    if kind == 5:
        return 200, "GET", "/api/v1/status", None
    if kind == 6:
        return 200, "GET", "/api/v1/health/health", None
    if kind == 7:
        return 200, "GET", "/api/v1/health/ping", None
    if kind == 8:
        return 200, "GET", "/metrics", None
    return 400, "POST", "/api/v1/forward", {"text": ""}


def send(base, method, path, body, timeout=120):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as e:
        e.read()
        return e.code


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--config", default='{"n_layer": 2, "seed": 1}')
    ap.add_argument("--binary", default="target/release/wgformer")
    a = ap.parse_args()

    env = dict(os.environ, XDG_RUNTIME_DIR=os.environ.get("XDG_RUNTIME_DIR", "/tmp"))
    srv = subprocess.Popen([a.binary, "serve", "--port", "0", "--queue-depth", "256", "--config", a.config, "--log-level", "warn"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    try:
        line = srv.stdout.readline()
        base = line.strip().rsplit(" ", 1)[-1]
        # warm-up: every kind twice
        for i in range(24):
            send(base, *call(base, i)[1:])
        before = rss_mb(srv.pid)
        lat, errors, lock = [], [], threading.Lock()
        counter = iter(range(a.requests))

        def worker():
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                want, method, path, body = call(base, i)
                t = time.perf_counter()
                try:
                    got = send(base, method, path, body)
                except Exception as e:  # connection errors count as errors
                    got = repr(e)
                dt = time.perf_counter() - t
                with lock:
                    lat.append(dt)
                    if got != want:
                        errors.append((i, path, got))

        start = time.perf_counter()
        threads = [threading.Thread(target=worker) for _ in range(a.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
        after = rss_mb(srv.pid)
        lat.sort()
        q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1e3
        print(f"config {a.config}")
        print(f"{a.requests} requests from {a.clients} clients in {wall:.1f} s ({a.requests / wall:.1f} req/s)")
        print(f"unexpected answers: {len(errors)} {errors[:5]}")
        print(f"latency ms: p50 {q(0.5):.1f}  p90 {q(0.9):.1f}  p99 {q(0.99):.1f}  max {lat[-1] * 1e3:.1f}")
        growth = 100.0 * (after - before) / before
        print(f"server RSS: {before:.1f} MB after warm-up, {after:.1f} MB after the run ({growth:+.2f} %)")
        ok = not errors and growth <= 5.0
        print("PASS" if ok else "FAIL")
        return 0 if ok else 1
    finally:
        srv.send_signal(signal.SIGTERM)
        try:
            srv.wait(timeout=30)
        except subprocess.TimeoutExpired:
            srv.kill()


if __name__ == "__main__":
    sys.exit(main())
