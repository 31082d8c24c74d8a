#!/usr/bin/env bash
# Packs the busybox rootfs into OCI image tarballs that `ctr image import` takes,
# with no registry. Two images share one layer:
#   OUT_TAR         docker.io/library/kata-ts-busybox:latest       (root, cwd /)
#   OUT_TAR-user    docker.io/library/kata-ts-busybox-user:latest  (User 1000:1000, cwd /home/user),
#                   so tests can see the image config's user reach the process (ctr 1.6 has no --user).
#   usage: build-busybox-image.sh OUT_TAR ROOTFS_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build-busybox-image.sh OUT_TAR ROOTFS_DIR}
rootfs=${2:?usage: build-busybox-image.sh OUT_TAR ROOTFS_DIR}
[[ $out == *.tar ]] || { echo "OUT_TAR must end in .tar: $out" >&2; exit 1; }
[ -x "$rootfs/bin/busybox" ] || { echo "no busybox rootfs at $rootfs" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
. "$here/oci-image.sh"

oci_layer "$rootfs"
path='"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]'
oci_image docker.io/library/kata-ts-busybox:latest "$out" "{$path,\"Cmd\":[\"/bin/sh\"],\"WorkingDir\":\"/\"}"
oci_image docker.io/library/kata-ts-busybox-user:latest "${out%.tar}-user.tar" \
  "{$path,\"Cmd\":[\"/bin/sh\"],\"WorkingDir\":\"/home/user\",\"User\":\"1000:1000\"}"
