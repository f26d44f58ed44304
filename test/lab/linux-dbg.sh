#!/usr/bin/env bash
# The lab kernel's vmlinux with DWARF (Debian's linux-image-<ver>-dbg of the exact
# version the lab boots), for `crash vmlinux <snapshot>`: downloaded once (~860 MB .deb,
# ~10 s from Debian's mirror), only vmlinux kept (~630 MB, ~2 min to unpack), cached like
# the lab's kernel in $GDBSX_LAB_CACHE/linux-dbg/<pkg>_<ver>/vmlinux. Prints its path.
# Separate from build.sh on purpose: build.sh is part of dom0-base's cache key.
set -euo pipefail
LAB_SRC=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib/common.sh
. "$LAB_SRC/lib/common.sh"
cache_paths
dir=$LAB_CACHE/linux-dbg/${LAB_KERNEL_PKG}_$LAB_V_KERNEL
if [ ! -s "$dir/vmlinux" ]; then
  mkdir -p "$LAB_CACHE/linux-dbg"
  exec 8>"$LAB_CACHE/linux-dbg/.lock"
  flock 8
  if [ ! -s "$dir/vmlinux" ]; then
    tmp=$dir.tmp.$$
    rm -rf "$tmp"; mkdir -p "$tmp"
    log "linux-dbg: ${LAB_KERNEL_PKG}-dbg $LAB_V_KERNEL (apt-get download, ~860 MB)"
    (cd "$tmp" && apt-get download -q "${LAB_KERNEL_PKG}-dbg=$LAB_V_KERNEL" >/dev/null 2>&1) || { rm -rf "$tmp"; die "apt-get download ${LAB_KERNEL_PKG}-dbg=$LAB_V_KERNEL failed"; }
    log "linux-dbg: unpacking vmlinux"
    dpkg-deb --fsys-tarfile "$tmp"/*.deb | tar -x -C "$tmp" --wildcards './usr/lib/debug/boot/vmlinux-*'
    mv "$tmp"/usr/lib/debug/boot/vmlinux-* "$tmp/vmlinux"
    rm -rf "$tmp"/*.deb "$tmp/usr"
    echo "${LAB_KERNEL_PKG}-dbg $LAB_V_KERNEL" > "$tmp/VERSION"
    rm -rf "$dir"; mv "$tmp" "$dir"
  fi
fi
echo "$dir/vmlinux"
