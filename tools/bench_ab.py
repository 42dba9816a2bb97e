#!/usr/bin/env python3
"""The A/B questions of a shader-bench run, answered from its text output.

    python3 tools/bench_ab.py bench.txt        # e.g. $OUT/bench.txt of `bash .gpu/run.sh`

The bench prints some rows twice or more, once per way of doing the same work, in
interleaved rounds: `folded` / `separate` (`matmul_fusion`, group `gpt2_staging`),
`deferred` / `per linear` (`decode_blocks`, group `gpt2_blocks`), a tile matmul whole /
`split-K` (group `matmul`). For each such pair this prints the medians of each way over
the rounds, the ratio (second / first: above 1, the first way is faster) and which way
is the default today, so a GPU session reads its decisions off one table. Rows timed in
one run only; a ratio within a few % is noise on a GPU, ±20 % on lavapipe.
"""

import re
import statistics
import sys

# (first way, second way, which is the default, what switches it)
PAIRS = [
    ("folded", "separate", "folded", "config matmul_fusion (MatmulFusion::Auto)"),
    ("deferred", "per linear", "deferred", "config decode_blocks (DecodeBlocks::Auto)"),
    ("", "split-K", "split-K up to SPLIT_MAX_ROWS rows", "matmul::SPLIT_MAX_ROWS"),
]

# `label  12.345 ms`, `ms/token`, `ms/step`, or `ms one by one, 6.789 ms together`
ROW = re.compile(r"^(?P<label>\S.*?)\s+(?P<ms>\d+\.\d+) ms(?P<unit>/token|/step)?"
                 r"(?: one by one, (?P<together>\d+\.\d+) ms together)?")


def rows(lines):
    """(label, ms) for every timed row; a together/apart row gives two labels."""
    for line in lines:
        m = ROW.match(line.rstrip())
        if not m:
            continue
        label = " ".join(m["label"].split())
        if m["together"]:
            yield label + " [one by one]", float(m["ms"])
            yield label + " [together]", float(m["together"])
        else:
            yield label + (" [ms" + m["unit"] + "]" if m["unit"] else ""), float(m["ms"])


def word_re(word):
    return re.compile(r"(?<!\S)" + re.escape(word) + r"(?!\S)")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    with open(sys.argv[1], encoding="utf-8", errors="replace") as f:
        seen = {}
        for label, ms in rows(f):
            seen.setdefault(label, []).append(ms)
    found = False
    for first, second, default, switch in PAIRS:
        table = []
        for label, times in seen.items():
            if not word_re(second).search(label):
                continue
            key = " ".join(word_re(second).sub("", label).split())
            other = key if not first else None
            if first:
                # the first way's label: the second's word replaced by the first's
                other = " ".join(word_re(second).sub(first, label).split())
            if other not in seen:
                continue
            a, b = statistics.median(seen[other]), statistics.median(times)
            table.append((key, a, b, len(seen[other]), len(times)))
        if not table:
            continue
        found = True
        name_a = first or "whole"
        print(f"\n{name_a} against {second} (default: {default}; switch: {switch})")
        print(f"{'row':<64} {name_a:>11} {second:>11} {'ratio':>7}  runs")
        for key, a, b, na, nb in sorted(table):
            print(f"{key:<64} {a:11.3f} {b:11.3f} {b / a:7.2f}  {na}/{nb}")
    if not found:
        sys.exit("no A/B rows in this output (groups gpt2_staging, gpt2_blocks, matmul)")


if __name__ == "__main__":
    main()
