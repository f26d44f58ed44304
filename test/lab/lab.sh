#!/usr/bin/env bash
# The Xen lab: a real Xen 4.17 (with CONFIG_GDBSX) under QEMU/TCG, a PV dom0 running
# the project's code, PV and PVH guests, and the stub reachable from the host's gdb.
# See docs/lab.md.
set -euo pipefail
LAB_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LAB_REPO=$(cd "$LAB_SRC/../.." && pwd)
# shellcheck source=lib/common.sh
. "$LAB_SRC/lib/common.sh"
# shellcheck source=lib/build.sh
. "$LAB_SRC/lib/build.sh"
# shellcheck source=lib/ref-gdbsx.sh
. "$LAB_SRC/lib/ref-gdbsx.sh"
# shellcheck source=lib/run.sh
. "$LAB_SRC/lib/run.sh"
# shellcheck source=lib/selftest.sh
. "$LAB_SRC/lib/selftest.sh"
lab_err_trap

usage() {
  cat <<'EOF2'
usage: bash test/lab/lab.sh COMMAND
  build              install what is missing (apt) and build the cache (Xen, dom0 base)
  start              build if needed, boot Xen + dom0, create the guests, start the stubs
                     (the default command)
  stop               stop QEMU (by the pid in the state file)
  restart            stop, then start
  status             is it running; xl list; guests, ports, gdb commands
  exec CMD...        run CMD with sh -c in dom0; prints its output, exits with its code
  stub start|stop|restart NAME   (re)start the stub for guest NAME (pv, pvh, testkernel64)
  recreate NAME      destroy guest NAME and create it again (new domid), restart its stub
  gdb [NAME]         print the gdb command for a guest's stub (default pv)
  kallsyms           dom0's /proc/kallsyms (also the PV guest's symbols)
  selftest           check a started lab: agent, guests, gdb through each stub, a PV breakpoint
  console            follow the serial console log (Xen + dom0)
  paths              print the cache paths for the current versions
Environment: LAB_XEN=gdbsx|stock  LAB_STUB_CMD  LAB_STUB=off  LAB_EXTRA_FILES  LAB_GUESTS
  LAB_PORT_BASE (27100)  GDBSX_LAB_CACHE (/var/cache/gdbsx-lab)  GDBSX_LAB_RUN (/tmp/gdbsx-lab)
EOF2
}

cmd=${1:-start}
shift || true
case "$cmd" in
  build) build_all ;;
  start) lab_start ;;
  stop) lab_stop ;;
  restart) lab_stop; lab_start ;;
  status) lab_status ;;
  exec) [ $# -gt 0 ] || die "usage: lab.sh exec CMD"; labctl exec "$*" ;;
  stub) labctl stub "$@" ;;
  recreate) [ $# -eq 1 ] || die "usage: lab.sh recreate NAME"; labctl recreate "$1" ;;
  gdb) labctl gdb "${1:-pv}" ;;
  kallsyms) labctl kallsyms ;;
  selftest) lab_selftest ;;
  console) tail -n +1 -f "$SERIAL_LOG" ;;
  paths)
    cache_paths
    echo "qemu       $CACHE_QEMU"
    echo "xen-gdbsx  $CACHE_XEN_GDBSX"; echo "xen-stock  $CACHE_XEN_STOCK"
    echo "ref-gdbsx  $CACHE_REF_GDBSX"
    echo "linux      $CACHE_LINUX"; echo "dom0-base  $CACHE_BASE"
    echo "state      $LAB_STATE"; echo "serial     $SERIAL_LOG" ;;
  -h|--help|help) usage ;;
  *) usage >&2; exit 2 ;;
esac
