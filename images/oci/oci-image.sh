# Packs a rootfs folder into an OCI image tarball that `ctr image import` takes,
# with no registry. Sourced by the image scripts beside it; needs $work (a
# scratch folder the caller removes).
#   oci_layer ROOTFS                          tars ROOTFS into $work/layer.tar (sets layer_hex, layer_size)
#   oci_image NAME OUT_TAR CONFIG_JSON        one image of that layer; CONFIG_JSON is the image config's "config"

# Deterministic tar: sorted, fixed mtime, numeric ids. Ownership is kept rather
# than forced to 0:0: a rootfs may chown a home folder to its user.
dtar() { tar --sort=name --numeric-owner --mtime=@0 "$@"; }

# digest FILE -> sets $hex and $size (globals, so a failure stops the script under set -e).
digest() { hex=$(sha256sum "$1" | cut -d' ' -f1); size=$(stat -c %s "$1"); }

oci_layer() {
  dtar --exclude=./.stamp -C "$1" -cf "$work/layer.tar" .  # .stamp is make's, not the image's
  digest "$work/layer.tar"
  layer_hex=$hex layer_size=$size
}

oci_image() {
  local name=$1 tarball=$2 config=$3 dir arch
  arch=$(dpkg --print-architecture)  # amd64/arm64: the same names OCI uses
  dir=$(mktemp -d -p "$work") && chmod 755 "$dir"
  mkdir -p "$dir/blobs/sha256"
  cp "$work/layer.tar" "$dir/blobs/sha256/$layer_hex"

  printf '{"architecture":"%s","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$arch" "$config" "$layer_hex" > "$dir/config"
  digest "$dir/config"
  mv "$dir/config" "$dir/blobs/sha256/$hex"
  local config_hex=$hex config_size=$size

  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
    "$config_hex" "$config_size" "$layer_hex" "$layer_size" > "$dir/manifest"
  digest "$dir/manifest"
  mv "$dir/manifest" "$dir/blobs/sha256/$hex"
  local manifest_hex=$hex manifest_size=$size

  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"%s","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
    "$manifest_hex" "$manifest_size" "$arch" "$name" "${name##*:}" > "$dir/index.json"
  printf '{"imageLayoutVersion":"1.0.0"}' > "$dir/oci-layout"

  mkdir -p "$(dirname "$tarball")"
  dtar --owner=0 --group=0 -C "$dir" -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
}
