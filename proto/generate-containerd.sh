#!/usr/bin/env bash
# Generates TypeScript for the containerd shim v2 protocol with protobufjs
# (pbjs static module + pbts declarations) from the .proto files of Debian's
# containerd, cgroups and gogo packages: the same version as the containerd we
# run, never retyped. ttrpc 1.1 ships its envelope only as Go structs, so its
# three messages are written out in proto/ttrpc.proto.
set -euo pipefail
cd "$(dirname "$0")/.."
G=/usr/share/gocode/src
CTRD=$G/github.com/containerd/containerd
sources=(
  "$CTRD/runtime/v2/task/shim.proto"
  "$CTRD/api/types/mount.proto"
  "$CTRD/api/types/task/task.proto"
  "$CTRD/api/events/task.proto"
  "$CTRD/api/services/ttrpc/events/v1/events.proto"
  "$CTRD/pkg/runtimeoptions/v1/api.proto"
  "$G/github.com/containerd/cgroups/v2/stats/metrics.proto"
  "$G/github.com/gogo/googleapis/google/rpc/status.proto"
)
for f in "${sources[@]}"; do
  [ -f "$f" ] || { echo "missing $f (apt-get install golang-github-containerd-containerd-dev golang-github-containerd-cgroups-dev golang-github-gogo-googleapis-dev golang-github-gogo-protobuf-dev libprotobuf-dev)" >&2; exit 1; }
done
out=proto/gen/containerd
rm -rf "$out" && mkdir -p "$out"
npx pbjs -t static-module -w es6 --es6 --force-number --no-verify --no-convert --no-delimited --no-service --sparse \
  -p "$G" -p "$G/github.com/gogo/protobuf" -p "$G/github.com/gogo/googleapis" -p /usr/include \
  -o "$out/containerd.js" proto/ttrpc.proto "${sources[@]}"
npx pbts --no-comments -o "$out/containerd.d.ts" "$out/containerd.js"
