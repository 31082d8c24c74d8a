#!/usr/bin/env bash
# Runs a container with an installed kata-ts on a host as a new one is: no
# /run/containerd (so no shim socket folder), and no checkout to fall back on.
# Run it in a mount namespace of its own (unshare --mount --propagation
# private): it mounts an empty /run and hides the checkout behind an empty
# folder, and both go when the namespace does.
#   usage: fresh-host.sh CHECKOUT RUNTIME_BIN_DIR IMAGE_TAR IMAGE_REF
# Prints what a test checks, one `key: value` line each.
set -euo pipefail
checkout=${1:?usage: fresh-host.sh CHECKOUT RUNTIME_BIN_DIR IMAGE_TAR IMAGE_REF}
bin=${2:?runtime bin dir}
image_tar=${3:?image tarball}
image=${4:?image reference}

dir=$(mktemp -d /tmp/kfresh-XXXXXX)
cleanup() {
  if [ -n "${ctrd:-}" ]; then kill "$ctrd" 2>/dev/null || true; wait "$ctrd" 2>/dev/null || true; fi
  { grep " $dir/" /proc/self/mountinfo || true; } | awk '{print $5}' | sort -r | xargs -r -n1 umount -l
  rm -rf "$dir"
}
trap cleanup EXIT
cp "$image_tar" "$dir/image.tar"

cd /
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o ro,mode=0755 tmpfs "$checkout"
echo "socket folder before: $(stat -c %a /run/containerd/s 2>/dev/null || echo missing)"

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
PATH="$bin:/usr/sbin:/usr/bin:/sbin:/bin" containerd --config "$dir/config.toml" > "$dir/containerd.log" 2>&1 &
ctrd=$!
ctr() { command ctr -a "$dir/containerd.sock" "$@"; }
for _ in $(seq 100); do ctr version >/dev/null 2>&1 && break; sleep 0.1; done
ctr image import "$dir/image.tar" >/dev/null

set +e
out=$(ctr run --rm --runtime io.containerd.kata-ts.v2 "$image" fresh-1 sh -c 'echo "ran in $(uname -r)"' 2>&1)
code=$?
set -e
echo "run exit: $code"
echo "run output: $out"
echo "socket folder after: $(stat -c %a /run/containerd/s 2>/dev/null || echo missing)"

# A running task's shim socket: who may connect to it.
ctr run -d --runtime io.containerd.kata-ts.v2 "$image" fresh-2 sleep 600 >/dev/null
for sock in /run/containerd/s/*; do echo "shim socket: $(stat -c %a "$sock")"; done
ctr task rm --force fresh-2 >/dev/null
ctr container rm fresh-2
echo "shim sockets left: $(find /run/containerd/s -type s | wc -l)"

# A CI job with the installed defaults: the runtime folder's busybox rootfs.
set +e
out=$("$bin/kata-ts" job run -- sh -c 'echo "job ran in $(uname -r)"' 2>/dev/null)
job_code=$?
set -e
echo "job exit: $job_code"
echo "job output: $out"
if [ "$code" != 0 ]; then tail -n 40 "$dir/containerd.log" >&2; fi
