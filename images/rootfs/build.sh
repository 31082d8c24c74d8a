#!/usr/bin/env bash
# Builds the guest rootfs image that QEMU exposes as a read-only nvdimm:
# the kata-ts init, Node and the libraries it needs, the bundled agent with its
# addon, the statically linked crun from images/crun/build.sh, and busybox.
# The image is an ext4 at 2 MiB behind an NVDIMM_PFN_INFO block, so the guest
# mounts it with DAX. Beside it, OUT_IMAGE.key records the sha256 of every
# input and of the image, and the guest's crun and node versions, for
# `kata-ts check` and `kata-ts env`.
#   usage: build.sh OUT_IMAGE AGENT_BUNDLE NATIVE_ADDON CRUN PFN_TOOL
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build.sh OUT_IMAGE AGENT_BUNDLE NATIVE_ADDON CRUN PFN_TOOL}
agent=${2:?agent bundle}
addon=${3:?native addon}
crun=${4:?static crun}
pfn_tool=${5:?pfn tool}
tree="$out.tree"

rm -rf "$tree" && mkdir -p "$tree"/usr/{bin,sbin,lib/x86_64-linux-gnu,lib64,lib/kata-ts} "$tree"/{proc,sys,dev,run,tmp,root,etc}
ln -s usr/bin "$tree/bin"
ln -s usr/sbin "$tree/sbin"
ln -s usr/lib "$tree/lib"
ln -s usr/lib64 "$tree/lib64"
chmod 1777 "$tree/tmp"

copy_with_libs() {
  local bin=$1 dest=$2
  install -m 0755 -s "$bin" "$tree$dest"
  ldd "$bin" | awk '/=> \//{print $3} /^[ \t]*\/lib64\//{print $1}' | while read -r lib; do
    case "$lib" in
      */ld-linux-x86-64.so.2) cp -L "$lib" "$tree/usr/lib64/ld-linux-x86-64.so.2" ;;
      *) cp -L "$lib" "$tree/usr/lib/x86_64-linux-gnu/$(basename "$lib")" ;;
    esac
  done
}

gcc -static -O2 -s -Wall -Wextra -Werror -o "$tree/usr/sbin/init" "$here/init.c"
copy_with_libs /usr/bin/node /usr/bin/node
# Static: under TCG the dynamic loader costs each crun command ~170 ms.
if readelf -l "$crun" | grep 'Requesting program interpreter' >/dev/null; then
  echo "rootfs: $crun is dynamically linked; build it with images/crun/build.sh" >&2
  exit 1
fi
install -m 0755 "$crun" "$tree/usr/bin/crun"
install -m 0755 /bin/busybox "$tree/usr/bin/busybox"
for applet in $("$tree/usr/bin/busybox" --list); do
  [ -e "$tree/usr/bin/$applet" ] || ln -s busybox "$tree/usr/bin/$applet"
done
install -m 0644 "$agent" "$tree/usr/lib/kata-ts/agent.cjs"
install -m 0644 "$here/../../agent/loader/agent-loader.cjs" "$tree/usr/lib/kata-ts/agent-loader.cjs"
# V8 code cache for the bundle, made with the same node binary the guest runs.
KATA_TS_MAKE_CODE_CACHE=1 "$tree/usr/bin/node" "$tree/usr/lib/kata-ts/agent-loader.cjs"
install -m 0755 "$addon" "$tree/usr/lib/kata-ts/kata_ts_native.node"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$tree/etc/passwd"
printf 'root:x:0:\n' > "$tree/etc/group"
printf 'kata-ts guest\n' > "$tree/etc/issue"

# ext4 needs headroom for metadata; the image must be a multiple of 2 MiB.
content=$(du -sb "$tree" | cut -f1)
mib=$(( (content * 115 / 100) / 1048576 + 16 ))
mib=$(( (mib + 1) / 2 * 2 ))
rm -f "$out.tmp"
truncate -s $(( (mib + 2) * 1048576 )) "$out.tmp"
mkfs.ext4 -q -F -b 4096 -O ^has_journal -L kata-ts-rootfs -E offset=2097152,root_owner=0:0 -d "$tree" "$out.tmp" "${mib}M"
node "$pfn_tool" "$out.tmp"
mv "$out.tmp" "$out"

# key: the inputs' digests only; input= lines say where each was, relative to the checkout
# when in it, so the record stays true when the checkout moves and an installed copy names no checkout.
checkout=$(cd "$here/../.." && pwd)
inputs=$(for f in "$here/build.sh" "$here/init.c" "$checkout/agent/loader/agent-loader.cjs" "$agent" "$addon" "$crun" \
  "$pfn_tool" /usr/bin/node /bin/busybox; do
  printf '%s %s\n' "$(sha256sum < "$f" | cut -d' ' -f1)" "$(realpath --relative-base="$checkout" "$f")"
done)
{
  printf 'key=%s\n' "$(cut -d' ' -f1 <<<"$inputs" | sha256sum | cut -c1-16)"
  printf 'sha256=%s\n' "$(sha256sum < "$out" | cut -d' ' -f1)"
  printf 'crun=%s\n' "$("$crun" --version | head -n1)"
  printf 'node=%s\n' "$("$tree/usr/bin/node" --version)"
  sed 's/^/input=/' <<<"$inputs"
} > "$out.key.tmp"
mv "$out.key.tmp" "$out.key"
echo "rootfs: $out $(( $(stat -c %s "$out") / 1048576 )) MiB image, $(( content / 1048576 )) MiB of files" >&2
