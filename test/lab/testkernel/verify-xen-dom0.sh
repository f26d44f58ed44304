#!/usr/bin/env bash
# Boot each test kernel on a real Xen, without any toolstack: Xen under
# QEMU/TCG (-cpu qemu64,+svm,+npt, like the lab) with the test kernel as a
# PVH dom0 (dom0=pvh dom0-iommu=none). This exercises the PVH entry, Xen
# detection, the hypercall page, VCPUOP_initialise/VCPUOP_up and the
# console (as dom0, CONSOLEIO_write is allowed, so lines appear without the
# "(d0)" prefix; the boot trace on port 0xe9 appears as "(d0) tk: ...").
#
# Usage: XEN=/path/to/xen verify-xen-dom0.sh [64|32|32pae ...]  (default: 64 32)
# XEN defaults to the newest xen image in the lab cache
# (${GDBSX_LAB_CACHE:-/var/cache/gdbsx-lab}/xen-*/*/xen), which is only read.
# Needs qemu-system-x86_64. Logs: build/verify-xen-*.log. ~1-2 min per image.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$here/build
"$here/build.sh" >/dev/null

xen=${XEN:-}
if [ -z "$xen" ]; then
    xen=$(ls -t "${GDBSX_LAB_CACHE:-/var/cache/gdbsx-lab}"/xen-*/*/xen 2>/dev/null | head -n1 || true)
fi
[ -n "$xen" ] && [ -f "$xen" ] || { echo "verify-xen-dom0: no Xen image (set XEN=/path/to/xen)" >&2; exit 2; }
command -v qemu-system-x86_64 >/dev/null || { echo "verify-xen-dom0: qemu-system-x86_64 not found" >&2; exit 2; }
timeout_s=${TK_XEN_TIMEOUT:-300}

fail=0
run_one() {
    local w=$1 elf arch log qpid i ok=0
    case "$w" in
        64) elf=$out/testkernel64.elf; arch=x86_64 ;;
        32) elf=$out/testkernel32.elf; arch=i386 ;;
        32pae) "$here/build.sh" pae >/dev/null; elf=$out/pae/testkernel32pae.elf; arch=i386 ;;
        *) echo "unknown image $w" >&2; exit 2 ;;
    esac
    log=$out/verify-xen-$w.log
    echo "$(basename "$elf"): Xen $xen, PVH dom0, 2 vcpus"
    qemu-system-x86_64 -accel tcg -cpu qemu64,+svm,+npt -m 512 -smp 2 \
        -display none -monitor none -net none -no-reboot -serial "file:$log" \
        -kernel "$xen" \
        -append "console=com1 com1=115200,8n1 dom0=pvh dom0-iommu=none dom0_mem=64M dom0_max_vcpus=2 loglvl=all guest_loglvl=all noreboot" \
        -initrd "$elf" 2>"$log.qemu" &
    qpid=$!
    for ((i = 0; i < timeout_s; i++)); do
        if grep -q "cpu(s) online" "$log" 2>/dev/null; then ok=1; break; fi
        grep -q "Triple fault\|Panic on CPU" "$log" 2>/dev/null && break
        kill -0 "$qpid" 2>/dev/null || break
        sleep 1
    done
    [ $ok = 1 ] && sleep 3   # let cpu1's line and a few ticks through
    kill "$qpid" 2>/dev/null || true
    wait "$qpid" 2>/dev/null || true
    for re in "^\(d0\) tk: pvh entry" \
              "^\(d0\) tk: xen cpuid base 40000[0-9a-f]00, hypercall page" \
              "^tk: up cpu0: gdbsx test kernel $arch on xen" \
              "^tk: up cpu1" \
              "^tk: 2 cpu\(s\) online, tk_magic=600dcafe"; do
        if grep -Eq "$re" "$log"; then echo "  ok   /$re/"; else echo "  FAIL /$re/ (see $log)"; fail=1; fi
    done
    if grep -q "trap\|Triple fault" "$log"; then
        echo "  FAIL exception/triple fault:"; grep "trap\|Triple fault" "$log" | head -3; fail=1
    fi
}

widths=("$@")
[ ${#widths[@]} -gt 0 ] || widths=(64 32)
for w in "${widths[@]}"; do
    run_one "$w"
done
if [ $fail = 0 ]; then echo "verify-xen-dom0: all checks passed"; else echo "verify-xen-dom0: FAILED"; fi
exit $fail
