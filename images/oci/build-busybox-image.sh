#!/usr/bin/env bash
# Packs the busybox rootfs into OCI image tarballs that `ctr image import` takes,
# with no registry. Two images share one layer:
#   OUT_TAR         docker.io/library/kata-ts-busybox:latest       (root, cwd /)
#   OUT_TAR-user    docker.io/library/kata-ts-busybox-user:latest  (User 1000:1000, cwd /home/user),
#                   so tests can see the image config's user reach the process (ctr 1.6 has no --user).
#   usage: build-busybox-image.sh OUT_TAR ROOTFS_DIR
set -euo pipefail
out=${1:?usage: build-busybox-image.sh OUT_TAR ROOTFS_DIR}
rootfs=${2:?usage: build-busybox-image.sh OUT_TAR ROOTFS_DIR}
[[ $out == *.tar ]] || { echo "OUT_TAR must end in .tar: $out" >&2; exit 1; }
[ -x "$rootfs/bin/busybox" ] || { echo "no busybox rootfs at $rootfs" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Deterministic tar: sorted, fixed mtime, numeric ids. Ownership is kept rather
# than forced to 0:0 because the rootfs script chowns /home/user to 1000:1000.
dtar() { tar --sort=name --numeric-owner --mtime=@0 "$@"; }

# digest FILE -> sets $hex and $size (globals, so a failure stops the script under set -e).
digest() { hex=$(sha256sum "$1" | cut -d' ' -f1); size=$(stat -c %s "$1"); }

dtar --exclude=./.stamp -C "$rootfs" -cf "$work/layer.tar" .  # .stamp is make's, not the image's
digest "$work/layer.tar"
layer_hex=$hex layer_size=$size
arch=$(dpkg --print-architecture)  # amd64/arm64: the same names OCI uses

# image NAME OUT_TAR EXTRA_CONFIG_JSON WORKDIR
image() {
  local name=$1 tarball=$2 extra=$3 workdir=$4 dir
  dir=$(mktemp -d -p "$work") && chmod 755 "$dir"
  mkdir -p "$dir/blobs/sha256"
  cp "$work/layer.tar" "$dir/blobs/sha256/$layer_hex"

  printf '{"architecture":"%s","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["/bin/sh"],"WorkingDir":"%s"%s},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$arch" "$workdir" "$extra" "$layer_hex" > "$dir/config"
  digest "$dir/config"
  mv "$dir/config" "$dir/blobs/sha256/$hex"
  local config_hex=$hex config_size=$size

  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
    "$config_hex" "$config_size" "$layer_hex" "$layer_size" > "$dir/manifest"
  digest "$dir/manifest"
  mv "$dir/manifest" "$dir/blobs/sha256/$hex"
  local manifest_hex=$hex manifest_size=$size

  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"%s","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"latest"}}]}' \
    "$manifest_hex" "$manifest_size" "$arch" "$name" > "$dir/index.json"
  printf '{"imageLayoutVersion":"1.0.0"}' > "$dir/oci-layout"

  mkdir -p "$(dirname "$tarball")"
  dtar --owner=0 --group=0 -C "$dir" -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
}

image docker.io/library/kata-ts-busybox:latest "$out" '' /
image docker.io/library/kata-ts-busybox-user:latest "${out%.tar}-user.tar" ',"User":"1000:1000"' /home/user
