# Shared settings and helpers for the Xen lab (sourced by lab.sh).
# shellcheck shell=bash

LAB_CACHE=${GDBSX_LAB_CACHE:-/var/cache/gdbsx-lab}
LAB_RUN=${GDBSX_LAB_RUN:-/tmp/gdbsx-lab}
LAB_STATE=${GDBSX_LAB_STATE:-$LAB_RUN/state.json}
LAB_PORT_BASE=${LAB_PORT_BASE:-27100}
LAB_NPORTS=10                       # base .. base+9 are forwarded 127.0.0.1 -> dom0
LAB_XEN=${LAB_XEN:-gdbsx}           # gdbsx (our build, CONFIG_GDBSX=y) | stock (Debian's)
LAB_JOBS=${LAB_JOBS:-$(nproc)}

# Bump when a recipe changes in a way the version keys cannot see.
XEN_RECIPE=1
QEMU_RECIPE=1
REF_GDBSX_RECIPE=1

# The lab's QEMU: Debian's qemu source with the lab's patch (test/lab/qemu/*.patch),
# this target only, these configure flags (part of its cache key).
QEMU_CONFIGURE_FLAGS=(--target-list=x86_64-softmmu --disable-docs --disable-werror --enable-slirp
  --disable-gtk --disable-sdl --disable-vnc --disable-opengl --disable-spice --disable-tools
  --disable-guest-agent --disable-xen --disable-kvm --enable-tcg)
QEMU_BUILD_PACKAGES=(ninja-build meson libglib2.0-dev libpixman-1-dev libslirp-dev zlib1g-dev
  libfdt-dev pkg-config python3 patch dpkg-dev)
# The dfsg source has no firmware: the BIOS and the e1000 option ROM come from the
# installed qemu-system-x86 package (and its seabios / ipxe-qemu dependencies).
QEMU_FIRMWARE_DIRS=(/usr/share/qemu /usr/share/seabios /usr/lib/ipxe/qemu)

DEB_SUITE=bookworm

# The Linux guests' user-mode workload (test/lab/guest/userspin.c): per VCPU one process
# pinned to it with this string at this user address (also in the state file).
LAB_USER_ADDR=0x5a5a0000
LAB_USER_TEXTS=("gdbsx user data of vcpu 0" "gdbsx user data of vcpu 1")

ts() { date +%H:%M:%S; }
log() { echo "[lab $(ts)] $*" >&2; }
die() { echo "[lab $(ts)] ERROR: $*" >&2; exit 1; }

# Every failure says what failed. With set -e a failing command ends the script; this
# ERR trap (inherited by functions through set -E) names the command, its exit status,
# the file and line, and the call stack first. In subshells and command substitutions
# it stays silent: their failure reaches the parent, whose own trap then reports the
# line that used them (die's messages are reported by die itself).
lab_on_err() {
  local rc=$1 cmd=$2 i stack=""
  [ "${BASH_SUBSHELL:-0}" = 0 ] || return 0
  for ((i = 1; i < ${#FUNCNAME[@]}; i++)); do
    stack+=" ${FUNCNAME[$i]}@$(basename "${BASH_SOURCE[$i]:-?}"):${BASH_LINENO[$((i - 1))]}"
  done
  echo "[lab $(ts)] FAILED (exit $rc): $cmd" >&2
  echo "[lab $(ts)]   at${stack:- (top level)}" >&2
}
lab_err_trap() {
  set -E
  trap 'lab_on_err $? "$BASH_COMMAND"' ERR
}

# A short hash of stdin.
hash_stdin() { sha256sum | cut -c1-12; }

# Candidate version of a binary package, empty if unknown.
apt_candidate() {
  apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { print $2; exit }' | sed 's/(none)//'
}

apt_installed_version() {
  { dpkg-query -W -f='${Status} ${Version}\n' "$1" 2>/dev/null || true; } | awk '$3 == "installed" { print $4 }'
}

APT_UPDATED=0
apt_update_once() {
  [ "$APT_UPDATED" = 1 ] && return 0
  log "apt-get update"
  apt-get -o DPkg::Lock::Timeout=900 update -qq >&2 || die "apt-get update failed"
  APT_UPDATED=1
}

# Make sure Debian's source index for bookworm main is known (apt-get source xen).
apt_ensure_deb_src() {
  if [ -z "$(apt-cache showsrc xen 2>/dev/null | awk '/^Version:/ {print $2; exit}')" ]; then
    if ! grep -rqsE '^(Types:.*deb-src|deb-src )' /etc/apt/sources.list /etc/apt/sources.list.d/; then
      log "adding a deb-src entry for $DEB_SUITE main (/etc/apt/sources.list.d/gdbsx-lab-src.sources)"
      cat > /etc/apt/sources.list.d/gdbsx-lab-src.sources <<EOF
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $DEB_SUITE
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    fi
    APT_UPDATED=0
    apt_update_once
  fi
}

# Install host packages that are missing (idempotent, waits for the dpkg lock).
apt_ensure() {
  local missing=() p installed
  # dpkg-query exits 1 when any of them was never installed (it still lists the
  # others): that is the normal case on a fresh machine, not an error.
  installed=" $( { dpkg-query -W -f='${Status} ${Package}\n' "$@" 2>/dev/null || true; } | awk '$3 == "installed" { printf "%s ", $4 }') "
  for p in "$@"; do
    [[ "$installed" == *" $p "* ]] || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  # a machine that never ran apt-get update knows no candidates: update first
  for p in "${missing[@]}"; do
    [ -n "$(apt_candidate "$p")" ] || { apt_update_once; break; }
  done
  log "apt-get install ${missing[*]}"
  mkdir -p "$LAB_CACHE"
  if ! DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -q \
    --no-install-recommends "${missing[@]}" > "$LAB_CACHE/apt-install.log" 2>&1; then
    tail -20 "$LAB_CACHE/apt-install.log" >&2
    die "apt-get install ${missing[*]} failed (log: $LAB_CACHE/apt-install.log)"
  fi
}

# What the host needs to build and run the lab (qemu-system-x86 for the firmware and the
# libraries the lab's own QEMU links with; gcc + libc6-dev for the guests' static programs).
HOST_PACKAGES=(qemu-system-x86 flex bison cpio busybox-static python3 make gcc libc6-dev
  dpkg-dev xz-utils gzip kmod binutils util-linux)

# The cached .deb of package $1 version $2, if any (apt-get download writes an
# epoch's colon as %3a).
deb_file() {
  local dir=$LAB_CACHE/debs v=${2//:/%3a}
  ls "$dir/${1}_${v}_"*.deb 2>/dev/null | head -1 || true
}

# Download a .deb of the candidate version into the cache (once); prints its path.
deb_fetch() {
  local pkg=$1 ver=${2:-}
  [ -n "$ver" ] || ver=$(apt_candidate "$pkg")
  [ -n "$ver" ] || die "no candidate version for $pkg (apt-get update?)"
  mkdir -p "$LAB_CACHE/debs"
  local f
  f=$(deb_file "$pkg" "$ver")
  if [ -z "$f" ]; then
    (cd "$LAB_CACHE/debs" && apt-get download -q "$pkg=$ver" >/dev/null 2>&1) || die "apt-get download $pkg=$ver failed"
    f=$(deb_file "$pkg" "$ver")
    [ -n "$f" ] || die "apt-get download $pkg=$ver left no .deb in $LAB_CACHE/debs"
  fi
  echo "$f"
}

# Resolve every version the cache keys depend on. Sets LAB_V_* variables. apt-cache
# is slow (about 1 s a call), so the answer is remembered until apt's lists or dpkg's
# status change.
resolve_versions() {
  [ -n "${LAB_V_RESOLVED:-}" ] && return 0
  local memo_key memo
  memo_key=$( { stat -c '%n %Y %s' /var/lib/apt/lists /var/lib/apt/lists/*Sources* /var/lib/dpkg/status 2>/dev/null;
    node --version; echo "${LAB_KERNEL_PKG:-} ${LAB_XEN_SRC_VERSION:-} ${LAB_QEMU_SRC_VERSION:-}"; } | hash_stdin)
  memo=$LAB_CACHE/versions/$memo_key.env
  if [ -f "$memo" ]; then
    # shellcheck disable=SC1090
    . "$memo"
    if [ -n "${LAB_V_QEMU_SRC:-}" ]; then
      LAB_V_RESOLVED=1
      return 0
    fi
  fi
  if [ -z "$(apt_candidate xen-utils-4.17)" ]; then apt_update_once; fi
  apt_ensure_deb_src
  LAB_V_XEN_SRC=${LAB_XEN_SRC_VERSION:-$(apt-cache showsrc xen | awk '/^Version:/ {print $2}' | sort -V | tail -1)}
  LAB_V_QEMU_SRC=${LAB_QEMU_SRC_VERSION:-$(apt-cache showsrc qemu | awk '/^Version:/ {print $2}' | sort -V | tail -1)}
  LAB_KERNEL_PKG=${LAB_KERNEL_PKG:-$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')}
  [ -n "$LAB_KERNEL_PKG" ] || die "cannot find Debian's kernel package (linux-image-amd64's dependency)"
  local cands
  cands=$(apt-cache policy xen-hypervisor-4.17-amd64 xen-utils-4.17 "$LAB_KERNEL_PKG" 2>/dev/null \
    | awk '/^[^ ].*:$/ { pkg = substr($0, 1, length($0) - 1) } /Candidate:/ { print pkg, $2 }')
  LAB_V_XEN_HYP=$(awk '$1 == "xen-hypervisor-4.17-amd64" { print $2 }' <<< "$cands")
  LAB_V_XEN_UTILS=$(awk '$1 == "xen-utils-4.17" { print $2 }' <<< "$cands")
  LAB_V_KERNEL=$(awk -v k="$LAB_KERNEL_PKG" '$1 == k { print $2 }' <<< "$cands")
  LAB_V_BUSYBOX=$(apt_installed_version busybox-static)
  # not installed yet on a fresh machine (apt_ensure comes later): the version it will get
  [ -n "$LAB_V_BUSYBOX" ] || LAB_V_BUSYBOX=$(apt_candidate busybox-static)
  LAB_V_NODE=$(node --version)
  local what
  for what in LAB_V_XEN_SRC LAB_V_QEMU_SRC LAB_V_XEN_HYP LAB_V_XEN_UTILS LAB_V_KERNEL LAB_V_BUSYBOX; do
    [ -n "${!what}" ] && [ "${!what}" != "(none)" ] || die "could not resolve $what"
  done
  mkdir -p "$LAB_CACHE/versions"
  for what in LAB_V_XEN_SRC LAB_V_QEMU_SRC LAB_V_XEN_HYP LAB_V_XEN_UTILS LAB_KERNEL_PKG LAB_V_KERNEL LAB_V_BUSYBOX LAB_V_NODE; do
    printf '%s=%q\n' "$what" "${!what}"
  done > "$memo.tmp.$$" && mv "$memo.tmp.$$" "$memo"
  LAB_V_RESOLVED=1
}

# Cache directories, one per component, each keyed by what goes into it.
cache_paths() {
  resolve_versions
  local lib_dir
  lib_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  CACHE_XEN_GDBSX=$LAB_CACHE/xen-gdbsx/${LAB_V_XEN_SRC}-r$XEN_RECIPE
  CACHE_XEN_STOCK=$LAB_CACHE/xen-stock/$LAB_V_XEN_HYP
  # the reference gdbsx: the same source version as the gdbsx hypervisor (lib/ref-gdbsx.sh)
  CACHE_REF_GDBSX=$LAB_CACHE/ref-gdbsx/${LAB_V_XEN_SRC}-r$REF_GDBSX_RECIPE
  CACHE_LINUX=$LAB_CACHE/linux/${LAB_KERNEL_PKG}_$LAB_V_KERNEL
  QEMU_PATCHES=("$lib_dir"/../qemu/*.patch)
  LAB_QEMU_KEY=$( { cat "${QEMU_PATCHES[@]}"; echo "${QEMU_CONFIGURE_FLAGS[*]}"; } | hash_stdin)
  CACHE_QEMU=$LAB_CACHE/qemu/${LAB_V_QEMU_SRC//:/_}-$LAB_QEMU_KEY-r$QEMU_RECIPE
  local node_id
  node_id="$LAB_V_NODE $(stat -c '%s %Y' "$(readlink -f "$(command -v node)")")"
  LAB_BASE_KEY=$( { echo "$LAB_KERNEL_PKG $LAB_V_KERNEL"; echo "xen-utils $LAB_V_XEN_UTILS";
    echo "busybox $LAB_V_BUSYBOX"; echo "node $node_id"; cat "$lib_dir/build.sh";
    echo "user $LAB_USER_ADDR ${LAB_USER_TEXTS[*]}"; cat "$lib_dir/../guest/userspin.c"; gcc --version | head -1; } | hash_stdin)
  CACHE_BASE=$LAB_CACHE/dom0-base/$LAB_BASE_KEY
}
