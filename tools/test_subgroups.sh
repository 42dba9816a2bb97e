#!/usr/bin/env bash
# The kernel and model tests again on lavapipe with the subgroup widths of other GPUs.
# llvmpipe's subgroups are its vector width / 32 lanes (LP_NATIVE_VECTOR_WIDTH): 8 on an
# AVX2 machine, where `cargo test` runs; here 16 (Intel), 32 (NVIDIA, Apple) and 64
# (AMD's wave64). The subgroup kernels are written for any width of at least 8 lanes,
# and the host's choices (which kernel may run which chunk) depend on the width: a
# width the adapter does not take fails the run (checked through `wgformer info`),
# never a silent rerun at 8.
#   bash tools/test_subgroups.sh [LANES...]     (default: 16 32 64)
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}" WGFORMER_TEST_DEVICE=cpu
lanes=("$@")
[ ${#lanes[@]} -gt 0 ] || lanes=(16 32 64)
# every test module that compiles and runs kernels (the server's modules run the same
# model through the HTTP layer)
modules=(kernels:: shaders:: model:: families:: moe:: partials:: fusions:: layers:: batching::)
cargo build --release -q
for n in "${lanes[@]}"; do
  export LP_NATIVE_VECTOR_WIDTH=$((n * 32))
  got=$(target/release/wgformer info | python3 -c '
import json, sys
sizes = [a["subgroup_sizes"] for a in json.load(sys.stdin)
         if a["backend"] == "Vulkan" and a["device_type"] == "Cpu"]
print(sizes[0][1] if sizes else "no lavapipe adapter")')
  if [ "$got" != "$n" ]; then
    echo "lavapipe runs subgroups of $got lanes with LP_NATIVE_VECTOR_WIDTH=$LP_NATIVE_VECTOR_WIDTH, not $n" >&2
    exit 1
  fi
  echo "== subgroups of $n lanes"
  cargo test --release -q --test it -- "${modules[@]}"
done
