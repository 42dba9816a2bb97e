#!/usr/bin/env bash
# The kernel and model tests again on lavapipe, as other adapters would run them:
# - with the subgroup widths of other GPUs. llvmpipe's subgroups are its vector width
#   / 32 lanes (LP_NATIVE_VECTOR_WIDTH): 8 on an AVX2 machine, where `cargo test`
#   runs; here 16 (Intel), 32 (NVIDIA, Apple) and 64 (AMD's wave64). The subgroup
#   kernels are written for any width of at least 8 lanes, and the host's choices
#   (which kernel may run which chunk) depend on the width;
# - on the GL backend (WGPU_BACKEND=gl): no subgroups, so the model takes the portable
#   kernels where `cargo test` takes their subgroup twins, and the shaders go through
#   naga's GLSL output instead of SPIR-V.
# Each run first checks through `wgformer info` that the adapter is the one asked for
# (a width or backend it ignores fails the run, never a silent rerun of the default).
#   bash tools/test_adapters.sh [LANES...]     (default: 16 32 64, then GL)
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}" WGFORMER_TEST_DEVICE=cpu
lanes=("$@")
gl=0
if [ ${#lanes[@]} -eq 0 ]; then
  lanes=(16 32 64)
  gl=1
fi
# every test module that compiles and runs kernels (the server's modules run the same
# model through the HTTP layer)
modules=(kernels:: shaders:: model:: families:: encoders:: moe:: partials:: fusions:: layers:: batching::)
cargo build --release -q
# the first software adapter's subgroup sizes and whether the subgroup kernels run
adapter() {
  target/release/wgformer info | python3 -c '
import json, sys
cpu = [a for a in json.load(sys.stdin) if a["device_type"] == "Cpu"]
a = cpu[0] if cpu else None
print(" ".join(str(v) for v in (a["backend"], a["subgroup_sizes"][1], a["subgroup_kernels"]))
      if a else "none")'
}
for n in "${lanes[@]}"; do
  got=$(LP_NATIVE_VECTOR_WIDTH=$((n * 32)) adapter)
  if [ "$got" != "Vulkan $n True" ]; then
    echo "lavapipe: \"$got\" with LP_NATIVE_VECTOR_WIDTH=$((n * 32)), not \"Vulkan $n True\"" >&2
    exit 1
  fi
  echo "== subgroups of $n lanes"
  LP_NATIVE_VECTOR_WIDTH=$((n * 32)) cargo test --release -q --test it -- "${modules[@]}"
done
if [ "$gl" = 1 ]; then
  got=$(WGPU_BACKEND=gl adapter)
  if [ "${got%% *}" != "Gl" ] || [ "${got##* }" != "False" ]; then
    echo "WGPU_BACKEND=gl: \"$got\", not a GL adapter without subgroup kernels" >&2
    exit 1
  fi
  echo "== the GL backend (portable kernels)"
  # one test at a time: wgpu's GL backend holds one context lock for every call and
  # panics a thread that waits more than 6 s for it ("Could not lock adapter
  # context"), which a long GL submission on llvmpipe (heads of 256, a Gemma forward)
  # makes another test's thread do; the panic then poisons the tests after it
  WGPU_BACKEND=gl cargo test --release -q --test it -- "${modules[@]}" --test-threads 1
fi
