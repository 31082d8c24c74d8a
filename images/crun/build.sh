#!/usr/bin/env bash
# Builds the guest's crun: Debian 12's crun source package (upstream tarball
# plus Debian's patches), statically linked and stripped. Under TCG every
# dynamically linked crun command pays for loading ten shared libraries
# (`crun --version` ≈ 380 ms in the guest, ≈ 210 ms static), and the agent runs
# crun for every run, exec, kill and delete.
# The result is cached outside the clone, keyed by the two source tarballs'
# sha256, the configure and link flags and RECIPE (bump it when the build steps
# change what is built), so an unchanged rebuild costs nothing.
#   usage: build.sh OUT_FILE
set -euo pipefail
RECIPE=1
out=$(realpath -m "${1:?usage: build.sh OUT_FILE}")
cache=${KATA_TS_CACHE:-/var/cache/kata-ts}

version=1.8.1
debian_revision=1+deb12u1
pool=http://deb.debian.org/debian/pool/main/c/crun
orig_tar=crun_$version.orig.tar.xz
orig_sha256=01b68269d94e5fe11106a9b14c2f144be03b16ec798951f4efa6aa16ba9da29a
debian_tar=crun_$version-$debian_revision.debian.tar.xz
debian_sha256=4688a1fea2d19c6e2e38f5bad8c9c5f85be4d6033eb91dbb241c413e647e59e0
# No systemd or CRIU in the guest; libgcrypt is only for optional features and
# would drag libgpg-error into the static link. eBPF stays: crun needs it for
# the cgroup v2 device rules.
# yajl is the copy crun ships (libocispec/yajl), linked in statically; crun 1.8.1's
# own sources do not get that copy's headers on their include path, so CPPFLAGS
# names it (relative: crun's sources compile in the top folder), and no yajl
# headers from the host are needed or used.
# The compiler and linker hardening Debian builds its crun with (dpkg-buildflags
# with hardening=+all), less PIE, which a fully static binary does not take.
configure_flags=(--disable-systemd --disable-criu --enable-embedded-yajl ac_cv_search_gcry_check_version=no
  "CFLAGS=-g -O2 -fstack-protector-strong -fstack-clash-protection -fcf-protection -Wformat -Werror=format-security"
  "CPPFLAGS=-D_FORTIFY_SOURCE=2 -Ilibocispec/yajl/src/headers")
make_flags=("LDFLAGS=-all-static -Wl,-z,relro -Wl,-z,now")

die() { echo "crun: $*" >&2; exit 1; }
# The key describes the whole build: no flags from the environment or from a calling make.
unset MAKEFLAGS MFLAGS MAKELEVEL CC CFLAGS CPPFLAGS LDFLAGS LIBS

key=$(printf '%s\n' "$orig_sha256" "$debian_sha256" "${configure_flags[*]}" "${make_flags[*]}" "recipe $RECIPE" | sha256sum | cut -c1-16)
cached="$cache/crun/$key"

if [ -f "$cached/crun" ]; then
  echo "crun: using cached build $cached (key $key)" >&2
else
  echo "crun: building crun $version-$debian_revision statically (key $key); this takes about a minute" >&2
  for tool in curl xz patch gcc make gperf pkg-config strip readelf; do
    command -v "$tool" >/dev/null || die "$tool missing (make apt installs the build dependencies)"
  done
  for pc in libcap libseccomp; do
    pkg-config --exists "$pc" || die "$pc development files missing (apt-get install $pc-dev)"
  done
  mkdir -p "$cache/crun" || die "cannot create $cache/crun (set KATA_TS_CACHE to a writable directory)"
  work=$(mktemp -d "${TMPDIR:-/tmp}/kata-ts-crun.XXXXXX")
  stage="$cached.tmp.$$"
  trap 'rm -rf "$work" "$stage"' EXIT

  fetch() {
    local name=$1 sha256=$2
    curl -fsSL --retry 3 -o "$work/$name" "$pool/$name" || die "cannot download $pool/$name"
    echo "$sha256  $work/$name" | sha256sum -c --quiet - >/dev/null 2>&1 \
      || die "$name: sha256 mismatch (expected $sha256, got $(sha256sum "$work/$name" | cut -d' ' -f1))"
  }
  fetch "$orig_tar" "$orig_sha256"
  fetch "$debian_tar" "$debian_sha256"

  tar -C "$work" -xJf "$work/$orig_tar"
  src="$work/crun-$version"
  [ -d "$src" ] || die "$orig_tar did not unpack to crun-$version"
  tar -C "$src" -xJf "$work/$debian_tar"
  while read -r p _; do
    case "$p" in ''|'#'*) continue ;; esac
    patch -s -p1 -d "$src" < "$src/debian/patches/$p" || die "patch $p does not apply"
  done < "$src/debian/patches/series"

  cd "$src"
  ./configure -q "${configure_flags[@]}" >"$work/configure.log" 2>&1 \
    || { tail -n 30 "$work/configure.log" >&2; die "configure failed"; }
  # `all`, not `crun`: it also builds the embedded yajl and git-version.h.
  make -s -j"$(nproc)" "${make_flags[@]}" >"$work/make.log" 2>&1 \
    || { tail -n 30 "$work/make.log" >&2; die "make failed"; }
  [ -x crun ] || die "make finished without building crun"
  strip crun
  if readelf -l crun | grep 'Requesting program interpreter' >/dev/null; then
    die "crun came out dynamically linked"
  fi
  features=$(./crun --version) || die "the built crun does not run"
  for feature in +CAP +SECCOMP +EBPF +YAJL; do
    grep -q -- "$feature" <<<"$features" || die "the built crun lacks $feature: $features"
  done

  rm -rf "$stage" && mkdir -p "$stage"
  cp crun "$stage/crun"
  printf '%s\n' "$features" > "$stage/version"
  cd /
  # Another build of the same key may have finished first; its result is the same.
  if [ ! -f "$cached/crun" ]; then
    rm -rf "$cached"
    mv -T "$stage" "$cached" 2>/dev/null || [ -f "$cached/crun" ] || die "cannot store the build in $cached"
  fi
fi

mkdir -p "$(dirname "$out")"
cp "$cached/crun" "$out.tmp" && chmod 0755 "$out.tmp" && mv "$out.tmp" "$out"
echo "crun: $out ($(stat -c %s "$out") bytes, static, key $key)" >&2
