#!/usr/bin/env bash
# A minimal container rootfs: static busybox with its applets, /etc/passwd and
# /etc/group, plus an unprivileged user for tests of the spec's user field.
#   usage: build-busybox-rootfs.sh OUT_DIR
set -euo pipefail
out=${1:?usage: build-busybox-rootfs.sh OUT_DIR}
rm -rf "$out" && mkdir -p "$out"/{bin,etc,tmp,proc,sys,dev,root,home/user}
install -m 0755 /bin/busybox "$out/bin/busybox"
for applet in $("$out/bin/busybox" --list); do
  [ -e "$out/bin/$applet" ] || ln "$out/bin/busybox" "$out/bin/$applet"
done
chmod 1777 "$out/tmp"
printf 'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$out/etc/passwd"
printf 'root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n' > "$out/etc/group"
chown 1000:1000 "$out/home/user"
