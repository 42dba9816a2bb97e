#!/usr/bin/env python3
"""How every client ends when the service is stopped (SIGTERM), counted.

Starts the release binary, opens WebSocket and SSE generations (and, with --queued,
requests that wait in the queue), sends SIGTERM, and sorts each client's end:
  complete        the generation finished (`complete` / `[DONE]` after a finish reason)
  shutting_down   a last message saying so (SSE `error` event or /v1 error chunk + [DONE],
                  503 SHUTTING_DOWN JSON, WebSocket `error` SHUTTING_DOWN)
  bare            cut without a last message (no close frame, truncated stream, no answer)
and the WebSocket close codes. Needs aiohttp (pip install aiohttp); not run by CI.

  python3 tools/drain_check.py --ws 6 --sse 4 --tokens 150 --shutdown-timeout 30
  python3 tools/drain_check.py --ws 6 --sse 6 --json 4 --queued 24 --tokens 400 \\
      --max-batch 16 --shutdown-timeout 5

With --burst N it instead sends N generations at once (no signal) and counts the
answers: admission takes --max-batch + --queue-depth of them, refuses the rest (503).
"""
import argparse
import asyncio
import collections
import json
import os
import signal
import subprocess

import aiohttp

CONFIG = '{"n_layer": 2, "n_embed": 64, "n_head": 2, "context_size": 1024}'


async def ws_client(base, tokens, out):
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(base.replace("http", "ws") + "/ws/inference") as ws:
            await ws.send_json({"type": "inference", "text": "drain", "stream": True,
                                "max_new_tokens": tokens, "temperature": 0})
            end = None
            async for m in ws:
                if m.type == aiohttp.WSMsgType.TEXT:
                    v = json.loads(m.data)
                    if v["type"] == "complete":
                        end = "complete"
                    elif v["type"] == "error":
                        end = "shutting_down" if v.get("error_code") == "SHUTTING_DOWN" else "error"
            code = ws.close_code
            out.append(("ws", end or "bare", code))


async def sse_client(base, path, body, out):
    async with aiohttp.ClientSession() as s:
        try:
            async with s.post(base + path, json=body) as r:
                if r.status != 200:
                    v = await r.json()
                    out.append((path, "shutting_down" if v.get("error_code") == "SHUTTING_DOWN" or "shutting" in json.dumps(v) else f"http {r.status}", None))
                    return
                text = (await r.read()).decode()
        except aiohttp.ClientError:
            out.append((path, "bare", None))
            return
    if "event: complete" in text or ('"finish_reason":"' in text and text.rstrip().endswith("[DONE]")):
        end = "complete"
    elif "SHUTTING_DOWN" in text or "shutting down" in text:
        end = "shutting_down"
    else:
        end = "bare"
    out.append((path, end, None))


async def json_client(base, tokens, out, label):
    async with aiohttp.ClientSession() as s:
        try:
            async with s.post(base + "/api/v1/generate",
                              json={"text": "drain", "max_new_tokens": tokens}) as r:
                v = await r.json()
                if r.status == 200:
                    out.append((label, "complete", None))
                else:
                    retry = "retry-after" in r.headers
                    out.append((label, "shutting_down" if v.get("error_code") == "SHUTTING_DOWN" and retry else f"http {r.status} {v.get('error_code')}", None))
        except aiohttp.ClientError:
            out.append((label, "bare", None))


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/wgformer")
    ap.add_argument("--ws", type=int, default=6)
    ap.add_argument("--sse", type=int, default=4)
    ap.add_argument("--json", type=int, default=0)
    ap.add_argument("--queued", type=int, default=0)
    ap.add_argument("--tokens", type=int, default=150)
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--shutdown-timeout", type=float, default=30)
    ap.add_argument("--queue-depth", type=int, default=64)
    ap.add_argument("--burst", type=int, default=0)
    a = ap.parse_args()
    env = dict(os.environ, XDG_RUNTIME_DIR="/tmp")
    p = subprocess.Popen([a.binary, "serve", "--port", "0", "--config", CONFIG, "--log-level", "warn",
                          "--max-batch", str(a.max_batch), "--queue-depth", str(a.queue_depth),
                          "--shutdown-timeout", str(a.shutdown_timeout)],
                         stdout=subprocess.PIPE, env=env, text=True)
    base = p.stdout.readline().strip().removeprefix("wgformer listening on ")
    out = []
    if a.burst:
        await asyncio.gather(*[json_client(base, a.tokens, out, "burst") for _ in range(a.burst)])
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=120)
        print(json.dumps({"burst": a.burst, "max_batch": a.max_batch, "queue_depth": a.queue_depth,
                          "answers": dict(collections.Counter(e for _, e, _ in out))}))
        return
    tasks = [asyncio.create_task(ws_client(base, a.tokens, out)) for _ in range(a.ws)]
    for i in range(a.sse):
        if i % 2:
            body = {"prompt": "drain", "max_tokens": a.tokens, "stream": True}
            tasks.append(asyncio.create_task(sse_client(base, "/v1/completions", body, out)))
        else:
            body = {"text": "drain", "max_new_tokens": a.tokens, "stream": True}
            tasks.append(asyncio.create_task(sse_client(base, "/api/v1/generate", body, out)))
    tasks += [asyncio.create_task(json_client(base, a.tokens, out, "json")) for _ in range(a.json)]
    await asyncio.sleep(1.0)  # all running
    tasks += [asyncio.create_task(json_client(base, 5, out, "queued")) for _ in range(a.queued)]
    await asyncio.sleep(0.5)
    p.send_signal(signal.SIGTERM)
    await asyncio.gather(*tasks, return_exceptions=True)
    rc = p.wait(timeout=120)
    counts = collections.Counter((kind, end) for kind, end, _ in out)
    closes = collections.Counter(code for kind, _, code in out if kind == "ws")
    print(json.dumps({"exit": rc, "clients": len(out),
                      "ends": {f"{k} {e}": n for (k, e), n in sorted(counts.items())},
                      "ws_close_codes": {str(c): n for c, n in closes.items()}}, indent=1))


asyncio.run(main())
