# Build steps of the Xen lab: everything here lands in $LAB_CACHE, keyed by versions
# (see cache_paths in common.sh). Each step is skipped when its result is present.
# shellcheck shell=bash

# Publish a finished directory atomically: build into $1.tmp.$$, then rename.
publish_dir() {
  local tmp=$1 final=$2
  rm -rf "$final"
  mkdir -p "$(dirname "$final")"
  mv "$tmp" "$final"
}

# Debian's stock hypervisor (no CONFIG_GDBSX) and its config, from the .deb.
build_xen_stock() {
  [ -f "$CACHE_XEN_STOCK/xen" ] && return 0
  log "xen-stock: xen-hypervisor-4.17-amd64 $LAB_V_XEN_HYP"
  local deb tmp=$CACHE_XEN_STOCK.tmp.$$
  deb=$(deb_fetch xen-hypervisor-4.17-amd64 "$LAB_V_XEN_HYP")
  rm -rf "$tmp"; mkdir -p "$tmp/x"
  dpkg -x "$deb" "$tmp/x"
  gunzip -c "$tmp"/x/boot/xen-4.17-amd64.gz > "$tmp/xen"
  cp "$tmp"/x/boot/xen-4.17-amd64.config "$tmp/config"
  rm -rf "$tmp/x"
  echo "xen-hypervisor-4.17-amd64 $LAB_V_XEN_HYP" > "$tmp/VERSION"
  publish_dir "$tmp" "$CACHE_XEN_STOCK"
}

# Xen built from Debian's source with CONFIG_EXPERT=y CONFIG_GDBSX=y on top of
# Debian's own config.
build_xen_gdbsx() {
  [ -f "$CACHE_XEN_GDBSX/xen" ] && return 0
  build_xen_stock
  local t0=$SECONDS
  local work=$LAB_CACHE/work/xen-src.$$ tmp=$CACHE_XEN_GDBSX.tmp.$$
  log "xen-gdbsx: Debian source xen $LAB_V_XEN_SRC, CONFIG_GDBSX=y, make -j$LAB_JOBS (about 2-3 min)"
  rm -rf "$work" "$tmp"; mkdir -p "$work" "$tmp"
  (cd "$work" && apt-get source --download-only -q "xen=$LAB_V_XEN_SRC" >/dev/null 2>&1) \
    || die "apt-get source xen=$LAB_V_XEN_SRC failed"
  (cd "$work" && dpkg-source -x ./xen_*.dsc src >/dev/null 2>&1) || die "dpkg-source -x failed"
  local src=$work/src/xen
  cp "$CACHE_XEN_STOCK/config" "$src/.config"
  printf 'CONFIG_EXPERT=y\nCONFIG_GDBSX=y\n' >> "$src/.config"
  make -C "$src" olddefconfig > "$tmp/build.log" 2>&1 || { tail -20 "$tmp/build.log" >&2; die "make olddefconfig failed"; }
  grep -qx 'CONFIG_EXPERT=y' "$src/.config" && grep -qx 'CONFIG_GDBSX=y' "$src/.config" \
    || die "CONFIG_EXPERT/CONFIG_GDBSX did not stick in $src/.config"
  if ! make -C "$src" -j"$LAB_JOBS" >> "$tmp/build.log" 2>&1; then
    tail -30 "$tmp/build.log" >&2
    die "Xen build failed (log: $tmp/build.log)"
  fi
  cp "$src/xen" "$tmp/xen"
  cp "$src/xen-syms" "$tmp/xen-syms"
  cp "$src/.config" "$tmp/config"
  echo "xen source $LAB_V_XEN_SRC + CONFIG_EXPERT=y CONFIG_GDBSX=y (recipe $XEN_RECIPE), built in $((SECONDS - t0)) s" > "$tmp/VERSION"
  rm -rf "$work"
  publish_dir "$tmp" "$CACHE_XEN_GDBSX"
  log "xen-gdbsx: built in $((SECONDS - t0)) s -> $CACHE_XEN_GDBSX/xen"
}

# The lab's QEMU: qemu-system-x86_64 from Debian's qemu source (Debian's patches
# applied by dpkg-source) plus the lab's patches in test/lab/qemu/ (INT3 and the SVM #BP
# intercept: see docs/lab.md), x86_64-softmmu only. 3 minutes on a quiet 2-core machine, up to 12 loaded.
build_qemu() {
  [ -x "$CACHE_QEMU/qemu-system-x86_64" ] && return 0
  apt_ensure "${QEMU_BUILD_PACKAGES[@]}"
  local t0=$SECONDS
  local work=$LAB_CACHE/work/qemu-src.$$ tmp=$CACHE_QEMU.tmp.$$ log
  log "qemu: Debian source qemu $LAB_V_QEMU_SRC + $(basename -a "${QEMU_PATCHES[@]}" | tr '\n' ' ')(3-12 min; log: $tmp/build.log)"
  rm -rf "$work" "$tmp"; mkdir -p "$work" "$tmp"
  log=$tmp/build.log
  (cd "$work" && apt-get source --download-only -q "qemu=$LAB_V_QEMU_SRC" > "$log" 2>&1) \
    || { tail -20 "$log" >&2; die "apt-get source qemu=$LAB_V_QEMU_SRC failed"; }
  (cd "$work" && dpkg-source -x ./qemu_*.dsc src >> "$log" 2>&1) || { tail -20 "$log" >&2; die "dpkg-source -x (qemu) failed"; }
  local src=$work/src p
  for p in "${QEMU_PATCHES[@]}"; do
    if ! patch -d "$src" -p1 --forward --batch < "$p" >> "$log" 2>&1; then
      tail -20 "$log" >&2
      die "the lab's QEMU patch $(basename "$p") does not apply to qemu $LAB_V_QEMU_SRC"
    fi
  done
  # the INT3 patch did what it says (and not into a .rej)
  grep -q 'SVM_EXIT_EXCP_BASE + EXCP03_INT3' "$src/target/i386/tcg/excp_helper.c" \
    || die "the INT3 intercept patch is not in $src/target/i386/tcg/excp_helper.c"
  ! find "$src" -name '*.rej' | grep -q . || die "QEMU patch left .rej files in $src"
  mkdir -p "$src/build-lab"
  if ! (cd "$src/build-lab" && ../configure "${QEMU_CONFIGURE_FLAGS[@]}") >> "$log" 2>&1; then
    tail -30 "$log" >&2
    die "QEMU configure failed (log: $log)"
  fi
  if ! (cd "$src/build-lab" && ninja -j"$LAB_JOBS" qemu-system-x86_64) >> "$log" 2>&1; then
    tail -30 "$log" >&2
    die "QEMU build failed (log: $log)"
  fi
  cp "$src/build-lab/qemu-system-x86_64" "$tmp/qemu-system-x86_64"
  strip "$tmp/qemu-system-x86_64" 2>/dev/null || true
  cp "${QEMU_PATCHES[@]}" "$tmp/"
  "$tmp/qemu-system-x86_64" --version | head -1 > "$tmp/VERSION.qemu" || die "the built QEMU does not run"
  echo "qemu source $LAB_V_QEMU_SRC + $(basename -a "${QEMU_PATCHES[@]}" | tr '\n' ' ')(recipe $QEMU_RECIPE), built in $((SECONDS - t0)) s" > "$tmp/VERSION"
  rm -rf "$work"
  publish_dir "$tmp" "$CACHE_QEMU"
  log "qemu: built in $((SECONDS - t0)) s -> $CACHE_QEMU/qemu-system-x86_64"
}

# The QEMU command for this lab: the patched build unless LAB_QEMU names another binary.
qemu_cmd() {
  if [ -n "${LAB_QEMU:-}" ]; then
    echo "$LAB_QEMU"
  else
    echo "$CACHE_QEMU/qemu-system-x86_64"
  fi
}

# Debian's kernel package, unpacked (vmlinuz for dom0 and the guests, modules for dom0).
build_linux() {
  [ -f "$CACHE_LINUX/.done" ] && return 0
  log "linux: $LAB_KERNEL_PKG $LAB_V_KERNEL"
  local deb tmp=$CACHE_LINUX.tmp.$$
  deb=$(deb_fetch "$LAB_KERNEL_PKG" "$LAB_V_KERNEL")
  rm -rf "$tmp"; mkdir -p "$tmp/root"
  dpkg -x "$deb" "$tmp/root"
  cp "$tmp"/root/boot/vmlinuz-* "$tmp/vmlinuz"
  ls "$tmp/root/lib/modules" > "$tmp/KVER"
  # the .deb has no modules.dep (its postinst runs depmod)
  depmod -b "$tmp/root" "$(cat "$tmp/KVER")" || die "depmod failed"
  touch "$tmp/.done"
  echo "$LAB_KERNEL_PKG $LAB_V_KERNEL" > "$tmp/VERSION"
  publish_dir "$tmp" "$CACHE_LINUX"
}

# Xen's userspace (xen-utils-4.17 and everything it depends on), unpacked into a
# staging root: dom0 gets the binaries it needs plus their libraries from there.
XEN_UTILS_STAGE=
build_xen_utils_stage() {
  XEN_UTILS_STAGE=$LAB_CACHE/xen-utils/$LAB_V_XEN_UTILS
  [ -f "$XEN_UTILS_STAGE/.done" ] && return 0
  log "xen-utils: xen-utils-4.17 $LAB_V_XEN_UTILS and its dependencies (apt-get download, dpkg -x)"
  local pkgs f tmp=$XEN_UTILS_STAGE.tmp.$$
  mapfile -t pkgs < <(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
    --no-breaks --no-replaces --no-enhances xen-utils-4.17 xenstore-utils libgcc-s1 | grep -v '^ ' | grep -v '^<' | sort -u)
  rm -rf "$tmp"; mkdir -p "$tmp/debs"
  (cd "$tmp/debs" && apt-get download -q "${pkgs[@]}" >/dev/null 2>&1) || die "apt-get download of xen-utils' dependencies failed"
  for f in "$tmp"/debs/*.deb; do
    dpkg -x "$f" "$tmp"
  done
  ls "$tmp/debs" > "$tmp/DEBS"
  rm -rf "$tmp/debs"
  touch "$tmp/.done"
  publish_dir "$tmp" "$XEN_UTILS_STAGE"
}

# Print the libraries (host paths) an ELF file needs, resolved inside root $1
# (empty root = the host), one per line, the loader included.
elf_libs() {
  local root=$1 bin=$2
  if [ -n "$root" ]; then
    "$root/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" \
      --library-path "$root/lib/x86_64-linux-gnu:$root/usr/lib/x86_64-linux-gnu" --list "$bin" 2>/dev/null
  else
    ldd "$bin" 2>/dev/null
  fi | awk '/=>/ { if ($3 ~ /^\//) print $3; next } /^\s*\// { print $1 }'
}

# Copy ELF file $2 (from root $1) and its libraries into rootfs $3 at path $4.
install_elf() {
  local root=$1 src=$2 rootfs=$3 dst=$4 lib rel
  mkdir -p "$rootfs$(dirname "$dst")"
  cp -L "$src" "$rootfs$dst"
  while read -r lib; do
    [ -n "$lib" ] || continue
    rel=${lib#"$root"}
    case "$rel" in
      */ld-linux-x86-64.so.2) rel=/lib64/ld-linux-x86-64.so.2 ;;
    esac
    [ -e "$rootfs$rel" ] && continue
    mkdir -p "$rootfs$(dirname "$rel")"
    cp -L "$lib" "$rootfs$rel"
  done < <(elf_libs "$root" "$src")
}

# The module list dom0 loads, dependencies first, from modules.dep.
DOM0_MODULES="xen-evtchn xen-privcmd xen-gntdev xen-gntalloc xenfs e1000"
module_order() {
  local moddir=$1; shift
  local -A seen=()
  local order=()
  _mod_visit() {
    local path=$1
    [ -n "${seen[$path]:-}" ] && return 0
    seen[$path]=1
    local line deps d
    line=$(grep -m1 "^$path:" "$moddir/modules.dep") || die "module $path not in modules.dep"
    deps=${line#*:}
    for d in $deps; do _mod_visit "$d"; done
    order+=("$path")
  }
  local m path
  for m in "$@"; do
    path=$(grep -m1 -E "/$m\.ko(\.[a-z]+)?:" "$moddir/modules.dep" | cut -d: -f1) || true
    [ -n "$path" ] || die "module $m not found in $moddir/modules.dep"
    _mod_visit "$path"
  done
  printf '%s\n' "${order[@]}"
}

# Write a newc cpio of directory $1 to file $2 (owner root, sorted, reproducible).
make_cpio() {
  (cd "$1" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) > "$2"
}

# The guests' user-mode workload (test/lab/guest/userspin.c), one static program per
# VCPU: userspin0 pinned to CPU 0, userspin1 to CPU 1, each with its string at
# LAB_USER_ADDR (common.sh). Built into directory $1.
build_userspin() {
  local dir=$1 cpu text
  local src=$LAB_SRC/guest/userspin.c
  for cpu in 0 1; do
    text=${LAB_USER_TEXTS[$cpu]}
    gcc -static -O2 -Wall -Wextra -Werror -DUSERSPIN_CPU="$cpu" -DUSERSPIN_ADDR="${LAB_USER_ADDR}UL" \
      -DUSERSPIN_TEXT="\"$text\"" -o "$dir/userspin$cpu" "$src" \
      || die "gcc -static $src failed (needs gcc and libc6-dev)"
    strip "$dir/userspin$cpu"
  done
}

# The guests' initramfs: busybox, the user-mode workload, and an init that starts the
# workload, says hello and loops forever.
build_guest_initrd() {
  local out=$1 r
  r=$(mktemp -d)
  mkdir -p "$r"/{bin,proc,sys,dev,tmp}
  cp /bin/busybox "$r/bin/busybox"
  ln -s busybox "$r/bin/sh"
  build_userspin "$r/bin"
  cat > "$r/init" <<'EOF'
#!/bin/sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
# the user-mode workload: one spinning process per VCPU (see docs/lab.md);
# LAB_USERSPIN=off puts gdbsx_lab_userspin=off on the guest's command line
user=0
for cpu in 0 1; do
  if [ -d /sys/devices/system/cpu/cpu$cpu ] && ! grep -q 'gdbsx_lab_userspin=off' /proc/cmdline; then
    /bin/userspin$cpu > /tmp/userspin$cpu.log 2>&1 &
  fi
done
# LAB_FLIP=on (gdbsx_lab_flip=on): Linux patching its own code far more often than in
# real use, the sched_switch tracepoint's static key flipped every 50 ms (text_poke_bp:
# int3s planted across the VCPUs while they sync; the debugger must never show them).
# Off by default: under TCG the PV guest soft-locked in it, with no debugger attached,
# in one boot of two.
if grep -q 'gdbsx_lab_flip=on' /proc/cmdline && mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null; then
  ev=/sys/kernel/tracing/events/sched/sched_switch/enable
  ( while :; do echo 1 > $ev; sleep 0.05; echo 0 > $ev; sleep 0.05; done ) > /dev/null 2>&1 &
  echo "GDBSX-LAB-FLIP on"
fi
i=0
while [ $i -lt 100 ] && ! grep -q 'gdbsx_lab_userspin=off' /proc/cmdline; do
  user=$(cat /tmp/userspin*.log 2>/dev/null | grep -c '^GDBSX-LAB-USER ')
  [ "$user" -ge "$(grep -c ^processor /proc/cpuinfo)" ] && break
  i=$((i + 1))
  sleep 0.1
done
cat /tmp/userspin*.log
echo "GDBSX-LAB-GUEST-READY $(uname -r) vcpus=$(grep -c ^processor /proc/cpuinfo) userspin=$user"
n=0
while :; do
  n=$((n + 1))
  sleep 5
done
EOF
  chmod 755 "$r/init"
  make_cpio "$r" /dev/stdout | gzip -9 > "$out"
  rm -rf "$r"
}

# dom0's base initramfs (cached): busybox, kernel modules, Xen's tools, node, the
# guest kernel and initramfs. The per-start part (init, project code) is appended
# at start time (see run.sh).
build_dom0_base() {
  [ -f "$CACHE_BASE/base.cpio" ] && return 0
  build_linux
  build_xen_utils_stage
  log "dom0-base: building $CACHE_BASE"
  local tmp=$CACHE_BASE.tmp.$$ r
  rm -rf "$tmp"; mkdir -p "$tmp"
  r=$tmp/root
  mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,run,tmp,root,etc/xen,var/lib/xen,var/lib/xenstored,var/log/xen,var/run,lab,opt}
  # busybox (static)
  cp /bin/busybox "$r/bin/busybox"
  ln -s busybox "$r/bin/sh"
  # Xen tools
  local stg=$XEN_UTILS_STAGE b
  for b in xl xenstored xenconsoled xen-init-dom0 xenconsole xenstore-control libxl-save-helper; do
    install_elf "$stg" "$stg/usr/lib/xen-4.17/bin/$b" "$r" "/usr/lib/xen-4.17/bin/$b"
  done
  for b in xenstore-read xenstore-write xenstore-ls xenstore-list xenstore-rm; do
    [ -e "$stg/usr/bin/$b" ] && install_elf "$stg" "$stg/usr/bin/$b" "$r" "/usr/bin/$b"
  done
  # xl aborts without libgcc_s ("must be installed for pthread_cancel to work")
  cp -L "$stg/lib/x86_64-linux-gnu/libgcc_s.so.1" "$r/lib/x86_64-linux-gnu/libgcc_s.so.1"
  : > "$r/etc/xen/xl.conf"
  # node, the host's own
  install_elf "" "$(readlink -f "$(command -v node)")" "$r" /usr/bin/node
  # name service basics some code wants
  printf 'root:x:0:0:root:/root:/bin/sh\n' > "$r/etc/passwd"
  printf 'root:x:0:\n' > "$r/etc/group"
  printf '127.0.0.1 localhost\n' > "$r/etc/hosts"
  printf '/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu\n' > "$r/etc/ld.so.conf"
  ldconfig -r "$r" 2>/dev/null || true
  # kernel modules
  local kver moddir m mods
  kver=$(cat "$CACHE_LINUX/KVER")
  moddir=$CACHE_LINUX/root/lib/modules/$kver
  mods=$(module_order "$moddir" $DOM0_MODULES)
  : > "$r/lab/modules.list"
  for m in $mods; do
    mkdir -p "$r/lib/modules/$kver/$(dirname "$m")"
    cp "$moddir/$m" "$r/lib/modules/$kver/$m"
    echo "/lib/modules/$kver/$m" >> "$r/lab/modules.list"
  done
  # what the guests boot
  cp "$CACHE_LINUX/vmlinuz" "$r/lab/vmlinuz"
  build_guest_initrd "$r/lab/guest-initrd.gz"
  {
    echo "kernel $LAB_KERNEL_PKG $LAB_V_KERNEL ($kver)"
    echo "xen-utils $LAB_V_XEN_UTILS"
    echo "busybox $LAB_V_BUSYBOX"
    echo "node $LAB_V_NODE"
  } > "$r/lab/VERSIONS"
  cp "$r/lab/VERSIONS" "$tmp/VERSIONS"
  make_cpio "$r" "$tmp/base.cpio"
  (cd "$r" && find . -type f | LC_ALL=C sort) > "$tmp/MANIFEST"
  rm -rf "$r"
  publish_dir "$tmp" "$CACHE_BASE"
  log "dom0-base: $(du -h "$CACHE_BASE/base.cpio" | cut -f1)"
  # keep the three newest bases (a running lab has its own copy in $LAB_RUN)
  local old
  for old in $(ls -t "$LAB_CACHE/dom0-base" | tail -n +4); do rm -rf "${LAB_CACHE:?}/dom0-base/$old"; done
}

# Everything, with a lock so two lab runs on one machine do not build at once.
build_all() {
  local t0=$SECONDS
  apt_ensure "${HOST_PACKAGES[@]}"
  cache_paths
  mkdir -p "$LAB_CACHE"
  exec 9> "$LAB_CACHE/.lock"
  flock 9
  # leftovers of interrupted builds (we hold the lock: nobody else is building)
  rm -rf "$LAB_CACHE"/*/*.tmp.* "$LAB_CACHE/work"
  build_qemu
  build_xen_stock
  build_xen_gdbsx
  build_ref_gdbsx_or_warn
  build_linux
  build_dom0_base
  flock -u 9
  exec 9>&-
  log "cache ready in $((SECONDS - t0)) s: $LAB_CACHE"
  log "  qemu:        $CACHE_QEMU/qemu-system-x86_64"
  log "  xen (gdbsx): $CACHE_XEN_GDBSX/xen"
  log "  xen (stock): $CACHE_XEN_STOCK/xen"
  log "  ref gdbsx:   $CACHE_REF_GDBSX/gdbsx$([ -x "$CACHE_REF_GDBSX/gdbsx" ] || echo ' (not built)')"
  log "  linux:       $CACHE_LINUX/vmlinuz"
  log "  dom0 base:   $CACHE_BASE/base.cpio"
}
