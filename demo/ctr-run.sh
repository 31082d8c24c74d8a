#!/usr/bin/env bash
# Starts a private containerd (own root, state, socket and config, with the
# kata-ts and runc runtimes), imports the busybox image built by `make images`,
# runs one container in a kata-ts VM with the real ctr, and stops everything.
# The shim is the one on PATH, as for the host's own containerd (make install).
#   usage: ctr-run.sh REPO_DIR [COMMAND...]
set -euo pipefail
repo=$(cd "${1:?usage: ctr-run.sh REPO_DIR [COMMAND...]}" && pwd)
shift
[ $# -gt 0 ] || set -- sh -c 'echo "hello from a kata-ts VM: $(uname -sr), $(nproc) vCPU, $(free -m | awk "/Mem/{print \$2}") MiB"'
dir=$(mktemp -d /tmp/kata-ts-demo.XXXXXX)
cat > "$dir/config.toml" <<TOML
version = 2
root = "$dir/root"
state = "$dir/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$dir/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/opt"
TOML
command -v containerd-shim-kata-ts-v2 >/dev/null || { echo "containerd-shim-kata-ts-v2 is not on PATH (make install)" >&2; exit 1; }
containerd --config "$dir/config.toml" > "$dir/containerd.log" 2>&1 &
ctrd=$!
cleanup() {
  kill "$ctrd" 2>/dev/null || true
  wait "$ctrd" 2>/dev/null || true
  { grep " $dir/" /proc/self/mountinfo || true; } | awk '{print $5}' | sort -r | xargs -r -n1 umount -l
  rm -rf "$dir"
}
trap cleanup EXIT
ctr="ctr -a $dir/containerd.sock"
for _ in $(seq 100); do $ctr version >/dev/null 2>&1 && break; sleep 0.1; done
$ctr image import "$repo/build/busybox-image.tar" >/dev/null
echo "+ ctr run --rm --runtime io.containerd.kata-ts.v2 docker.io/library/kata-ts-busybox:latest demo $*"
start=$(date +%s%N)
$ctr run --rm --runtime io.containerd.kata-ts.v2 docker.io/library/kata-ts-busybox:latest "demo-$$" "$@"
echo "(ctr run took $(( ($(date +%s%N) - start) / 1000000 )) ms, VM boot included)"
