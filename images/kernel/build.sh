#!/usr/bin/env bash
# Builds the guest kernel (PVH-bootable vmlinux) from Debian's linux-source-6.1
# with config-fragment.txt applied on top of allnoconfig.
# The result is cached outside the clone, keyed by the source package version,
# the fragment and RECIPE (bump it when the build steps change what is built),
# so an unchanged rebuild costs nothing. Beside OUT_FILE it writes OUT_FILE.key:
# that key and the file's sha256, which `kata-ts check` compares.
#   usage: build.sh OUT_FILE
#          build.sh --key        prints the key of the current inputs (kata-ts check)
set -euo pipefail
RECIPE=1
here=$(cd "$(dirname "$0")" && pwd)
cache=${KATA_TS_CACHE:-/var/cache/kata-ts}
src_tar=/usr/src/linux-source-6.1.tar.xz

src_version=$(dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null) \
  || { echo "kernel: linux-source-6.1 is not installed (apt-get install linux-source-6.1)" >&2; exit 1; }
key=$( { echo "$src_version recipe $RECIPE"; cat "$here/config-fragment.txt"; } | sha256sum | cut -c1-16)
if [ "${1:-}" = --key ]; then echo "$key"; exit 0; fi
out=$(realpath -m "${1:?usage: build.sh OUT_FILE}")
[ -f "$src_tar" ] || { echo "kernel: $src_tar missing (apt-get install linux-source-6.1)" >&2; exit 1; }
cached="$cache/kernel/$key"

if [ ! -f "$cached/vmlinux" ]; then
  echo "kernel: building linux-source $src_version (key $key); this takes several minutes" >&2
  work="$cache/kernel/work-$key"
  rm -rf "$work" && mkdir -p "$work"
  tar -C "$work" -xf "$src_tar"
  cd "$work/linux-source-6.1"
  make -s allnoconfig
  apply_fragment() {
    local verb name value
    while read -r verb name value; do
      case "$verb" in
        ''|'#'*) ;;
        enable) scripts/config --enable "$name" ;;
        disable) scripts/config --disable "$name" ;;
        set) scripts/config --set-val "$name" "$value" ;;
        str) scripts/config --set-str "$name" "$value" ;;
        *) echo "kernel: bad fragment line: $verb $name" >&2; exit 1 ;;
      esac
    done < "$here/config-fragment.txt"
  }
  # Twice: some options only appear once their parent is on.
  apply_fragment; make -s olddefconfig
  apply_fragment; make -s olddefconfig
  # Options silently dropped by unmet dependencies would make a different kernel than the fragment says.
  missing=0
  while read -r verb name _; do
    case "$verb" in
      enable) grep -q "^CONFIG_$name=y" .config || { echo "kernel: CONFIG_$name did not stay enabled" >&2; missing=1; } ;;
      disable) if grep -q "^CONFIG_$name=[ym]" .config; then echo "kernel: CONFIG_$name did not stay disabled" >&2; missing=1; fi ;;
    esac
  done < "$here/config-fragment.txt"
  [ "$missing" = 0 ] || exit 1
  make -s -j"$(nproc)" vmlinux
  mkdir -p "$cached.tmp"
  strip -o "$cached.tmp/vmlinux" vmlinux
  cp .config "$cached.tmp/config"
  cd / && rm -rf "$work"
  rm -rf "$cached" && mv "$cached.tmp" "$cached"
fi
mkdir -p "$(dirname "$out")"
cp --reflink=auto "$cached/vmlinux" "$out.tmp" && mv "$out.tmp" "$out"
cp "$cached/config" "$(dirname "$out")/vmlinux.config"
printf 'key=%s\nsha256=%s\nlinux_source=%s\nrecipe=%s\n' "$key" "$(sha256sum < "$out" | cut -d' ' -f1)" "$src_version" "$RECIPE" > "$out.key.tmp"
mv "$out.key.tmp" "$out.key"
echo "kernel: $out ($(stat -c %s "$out") bytes, key $key)" >&2
