#!/usr/bin/env bash
# The pod sandbox image for CRI tests and walk-throughs, built here instead of
# pulled: a static pause binary, run as 65535 like Kubernetes' own.
#   usage: build-pause-image.sh OUT_TAR          (image localhost/kata-ts-pause:latest)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build-pause-image.sh OUT_TAR}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
. "$here/oci-image.sh"

mkdir -p "$work/rootfs"
gcc -static -O2 -s -Wall -Wextra -Werror -o "$work/rootfs/pause" "$here/pause.c"
oci_layer "$work/rootfs"
oci_image localhost/kata-ts-pause:latest "$out" '{"Entrypoint":["/pause"],"User":"65535:65535","WorkingDir":"/"}'
