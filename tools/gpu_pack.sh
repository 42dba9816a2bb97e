#!/bin/bash
# Pack a GPU run (../shared/gpu/pack.sh) after removing stale release binaries: pack.sh
# packs every executable in target/release/deps whose dep-info names a test, bench or
# the library, and a test or bench file that was renamed or moved leaves its old
# binary behind. Packed, those ran old tests on the GPU machine and an old shader
# bench overwrote the current one (both packed as bench_shaders), and they tripled the
# carry (62 MB of the 64 MiB a device call carries, on 2026-12-06).
#   tools/gpu_pack.sh            # from anywhere in the checkout
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
for d in target/release/deps/*.d; do
  [ -e "$d" ] || continue
  f=${d%.d}; [ -x "$f" ] || continue
  src=$(head -1 "$d" | sed 's/^[^:]*: //; s/ .*//')
  case $src in
    tests/*|benches/*|src/lib.rs)
      if [ ! -e "$src" ]; then echo "stale: $(basename "$f") ($src)"; rm -f "$f" "$d"; fi ;;
  esac
done
bash ../shared/gpu/pack.sh
