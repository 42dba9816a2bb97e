#!/bin/bash
# Pack a GPU run (../shared/gpu/pack.sh) after removing stale release binaries: pack.sh
# packs every executable in target/release/deps whose dep-info names a test, bench or
# the library, one file per source (`it`, `bench_shaders`, `lib_unit`), and when
# several binaries share a source the last in name order wins, whatever its age. Old
# ones pile up: a test or bench file renamed or moved, or the same target built under
# another profile or flags (`cargo bench`, a worktree sharing target/), leaves its old
# binary behind. Packed, those ran old tests on the GPU machine and an old shader
# bench overwrote the current one; on 2026-12-06 they also tripled the carry (62 MB of
# the 64 MiB a device call carries), and on 2026-12-07 a bench binary of the day
# before sorted after the current one. So every test, bench and library binary that
# this checkout's `cargo build --release --all-targets` (pack.sh's own build) does not
# produce now is removed first.
#   tools/gpu_pack.sh            # from anywhere in the checkout
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
current=$(cargo build --release --all-targets --message-format=json 2>/dev/null |
  python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["executable"])')
[ -n "$current" ] || { echo "cargo build --release --all-targets produced nothing" >&2; exit 1; }
for d in target/release/deps/*.d; do
  [ -e "$d" ] || continue
  f=${d%.d}; [ -x "$f" ] || continue
  src=$(head -1 "$d" | sed 's/^[^:]*: //; s/ .*//')
  case $src in
    tests/*|benches/*|src/lib.rs)
      if ! grep -qxF "$PWD/$f" <<< "$current"; then
        echo "stale: $(basename "$f") ($src)"; rm -f "$f" "$d"
      fi ;;
  esac
done
bash ../shared/gpu/pack.sh
