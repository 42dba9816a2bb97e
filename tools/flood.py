#!/usr/bin/env python3
"""Slow and idle clients against a running wgformer (loopback, bounded).

Opens N connections that send a partial request header and then nothing, and M
WebSockets that upgrade and then stay silent; reports how many the server answered or
closed, how long that took, whether a normal request still succeeds meanwhile, and
the server's resident memory before, at the peak and after.

    XDG_RUNTIME_DIR=/tmp target/release/wgformer serve --port 8770 --config '{}' &
    python3 tools/flood.py --port 8770 --pid $! --slow 2000 --websockets 600
"""

import argparse
import base64
import os
import resource
import socket
import time


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def ping(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"GET /api/v1/health/ping HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        b = s.recv(4096)
        if not b:
            break
        data += b
    s.close()
    return data.split(b" ", 2)[1].decode() if data else "closed"


def open_many(port, n, first_bytes):
    socks = []
    for _ in range(n):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(first_bytes)
            socks.append(s)
        except OSError:
            break
    return socks


def count_closed(socks, wait):
    """Wait up to `wait` s for the server to answer or close each socket."""
    deadline = time.time() + wait
    done = set()
    refused = 0
    while time.time() < deadline and len(done) < len(socks):
        for i, s in enumerate(socks):
            if i in done:
                continue
            s.setblocking(False)
            try:
                b = s.recv(65536)
                if not b:
                    done.add(i)
                elif b.startswith(b"HTTP/1.1 503"):
                    refused += 1
                    done.add(i)
            except BlockingIOError:
                pass
            except OSError:
                done.add(i)
        time.sleep(0.2)
    return len(done), refused


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8770)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--slow", type=int, default=2000)
    ap.add_argument("--websockets", type=int, default=600)
    ap.add_argument("--wait", type=float, default=90)
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    before = rss_mb(a.pid)
    t0 = time.time()
    slow = open_many(a.port, a.slow, b"GET /api/v1/health/ping HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    key = base64.b64encode(os.urandom(16)).decode()
    ws = open_many(
        a.port,
        a.websockets,
        (
            "GET /ws/inference HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode(),
    )
    time.sleep(1)
    peak = rss_mb(a.pid)
    during = ping(a.port)
    slow_closed, slow_refused = count_closed(slow, a.wait)
    t_slow = time.time() - t0
    ws_closed, _ = count_closed(ws, a.wait)
    t_ws = time.time() - t0
    for s in slow + ws:
        s.close()
    time.sleep(2)
    after = rss_mb(a.pid)
    print(f"slow-header connections opened: {len(slow)}; answered 503 at once: {slow_refused}; "
          f"closed by the server: {slow_closed} within {t_slow:.1f} s")
    print(f"idle WebSockets opened: {len(ws)}; closed by the server: {ws_closed} within {t_ws:.1f} s")
    print(f"a ping during the flood: {during}; after: {ping(a.port)}")
    print(f"server RSS: before {before:.0f} MB, peak {peak:.0f} MB, after {after:.0f} MB")


if __name__ == "__main__":
    main()
