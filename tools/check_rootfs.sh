#!/usr/bin/env bash
# Check the runtime image's filesystem without Docker: build the Dockerfile's runtime
# stage root filesystem with debootstrap and the same package list (read from the
# Dockerfile), put the release binary in, and run it there as the image's user with a
# read-only root and a tmpfs /tmp: the adapter must be found (lavapipe here) and the
# probes must answer. Needs root, network to deb.debian.org and target/release/wgformer.
#   sudo bash tools/check_rootfs.sh [ROOT]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${1:-/tmp/wgformer-rootfs}
BIN=target/release/wgformer
[ -x "$BIN" ] || { echo "build $BIN first (cargo build --release --bin wgformer)"; exit 2; }
# the runtime stage's packages: the apt-get install line after the last FROM
PKGS=$(awk '/^FROM /{stage++} stage==2 && /apt-get install/ {for (i=1;i<=NF;i++) if ($i !~ /^-|apt-get|install|&&|\\/) print $i}' Dockerfile | sort -u | paste -sd, -)
SUITE=$(awk '/^FROM debian:/{split($2,a,":"); s=a[2]} END{sub(/-slim$/,"",s); print s}' Dockerfile)
echo "== runtime stage: debian $SUITE with $PKGS"
if [ ! -x "$ROOT/usr/bin/vulkaninfo" ] && [ ! -e "$ROOT/etc/debian_version" ]; then
  debootstrap --variant=minbase --include="$PKGS" "$SUITE" "$ROOT" http://deb.debian.org/debian >/dev/null
fi
install -m 0755 "$BIN" "$ROOT/usr/local/bin/wgformer"
chroot "$ROOT" sh -c 'id wgformer >/dev/null 2>&1 || useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin wgformer'
PORT=${PORT:-18431}
CONFIG='{"vocab_size": 512, "n_layer": 1, "n_embed": 32, "n_head": 2, "context_size": 32}'
# a private mount namespace: the root read-only, /tmp a tmpfs, /proc and /dev for wgpu
unshare --mount --propagation private bash -c "
  set -e
  mount --bind '$ROOT' '$ROOT' && mount -o remount,bind,ro '$ROOT'
  mount -t tmpfs tmpfs '$ROOT/tmp'
  mount -t proc proc '$ROOT/proc'
  mount --rbind /dev '$ROOT/dev'
  echo '== as uid 10001, read-only root:'
  chroot '$ROOT' setpriv --reuid 10001 --regid 10001 --clear-groups \
    env -i PATH=/usr/local/bin:/usr/bin:/bin XDG_RUNTIME_DIR=/tmp HOME=/nonexistent \
    sh -c 'touch /usr/local/bin/x 2>/dev/null && echo WRITABLE ROOT || echo root is read-only; \
           wgformer info | grep -E \"\\\"(name|device_type)\\\"\" | head -4; \
           WGFORMER_HOST=0.0.0.0 WGFORMER_PORT=$PORT WGFORMER_MODELS_DIR=/tmp \
           wgformer serve --config '\''$CONFIG'\'' --log-level warn & pid=\$!; \
           for i in \$(seq 1 120); do wgformer probe http://127.0.0.1:$PORT/api/v1/health/ready 2>/dev/null && break; sleep 0.5; done; \
           for p in ready health ping; do wgformer probe http://127.0.0.1:$PORT/api/v1/health/\$p && echo \"probe /api/v1/health/\$p: 200\"; done; \
           kill -TERM \$pid; wait \$pid; echo \"exit status after SIGTERM: \$?\"'
"
