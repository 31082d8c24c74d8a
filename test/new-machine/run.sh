#!/usr/bin/env bash
# Runs `make demo` (or the make targets given) the way a new machine runs it:
# in a fresh Debian 12 root that holds only what a new machine of ours has
# (Node 20 with npm and its settings, python3, make, g++, git, curl and the CA
# certificates), on a clone of this checkout's HEAD (what is committed, not
# the work tree), with its own /run and /tmp. Whatever a build step or the
# demo needs beyond that must come from the Makefile, or this fails.
# The guest kernel and crun caches are bind-mounted so they are not rebuilt;
# KATA_TS_FRESH_CACHE=1 builds them too (the kernel takes 6-11 minutes).
#   usage: run.sh [MAKE_TARGET...]        (default: demo)
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cache=${KATA_TS_CACHE:-/var/cache/kata-ts}
[ $# -gt 0 ] || set -- demo
say() { printf '[new-machine] %s\n' "$*" >&2; }

command -v mmdebstrap >/dev/null || { say "installing mmdebstrap"; apt-get install -y -q mmdebstrap >/dev/null; }
work=$(mktemp -d /var/tmp/kata-ts-new-machine.XXXXXX)
root=$work/root
cleanup() {
  # Everything below the root was mounted in the namespace below and went with it; this is for an interrupted run.
  { grep " $root" /proc/self/mountinfo || true; } | awk '{print $5}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

started=$(date +%s)
sources=()
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  [ -s "$f" ] && sources+=("$f")
done
say "fresh Debian 12 root in $root"
mmdebstrap --quiet --variant=apt --include=python3,make,g++,git,curl,ca-certificates \
  bookworm "$root" "${sources[@]}"

say "the machine's Node $(node --version), npm $(npm --version) and their settings"
node_bin=$(command -v node)
npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
mkdir -p "$root/usr/lib/node_modules" "$root/usr/include" "$root/usr/etc"
cp -a "$node_bin" "$root/usr/bin/node"
cp -a "$npm_dir" "$root/usr/lib/node_modules/"
ln -sfn ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/bin/npm"
ln -sfn ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/bin/npx"
cp -a /usr/include/node "$root/usr/include/"
for f in /usr/etc/npmrc /root/.npmrc; do [ -f "$f" ] && cp -a "$f" "$root$f"; done
if compgen -G '/usr/local/share/ca-certificates/*' >/dev/null; then
  cp -a /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/"
  chroot "$root" update-ca-certificates >/dev/null
fi
cp -a /etc/apt/apt.conf.d/. "$root/etc/apt/apt.conf.d/"

git clone -q "$repo" "$root/root/kata-ts"
say "clone of $(git -C "$repo" rev-parse --short HEAD)"

binds=()
if [ "${KATA_TS_FRESH_CACHE:-0}" != 1 ]; then
  for part in kernel crun; do
    if [ -d "$cache/$part" ]; then binds+=("$cache/$part:/var/cache/kata-ts/$part"); fi
  done
fi

say "make $* in the fresh root"
set +e
unshare --mount --propagation private --fork bash -euo pipefail -c '
  root=$1; shift; binds=$1; shift
  # The root a mount of its own, as on a real machine: virtiofsd remounts / in its namespace.
  mount --bind "$root" "$root"
  mount --rbind /dev "$root/dev"
  mount --rbind /sys "$root/sys"
  mount -t proc proc "$root/proc"
  mount -t tmpfs -o mode=0755 tmpfs "$root/run"
  mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
  for b in $binds; do
    mkdir -p "$root${b#*:}"
    mount --bind "${b%%:*}" "$root${b#*:}"
  done
  exec chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    ${NODE_EXTRA_CA_CERTS:+NODE_EXTRA_CA_CERTS=$NODE_EXTRA_CA_CERTS} LANG=C.UTF-8 \
    make -C /root/kata-ts "$@"
' new-machine "$root" "${binds[*]}" "$@"
code=$?
set -e
say "make $* exited $code after $(( $(date +%s) - started )) s"
exit "$code"
