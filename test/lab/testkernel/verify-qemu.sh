#!/usr/bin/env bash
# Boot each test kernel under plain QEMU (PVH boot via the PHYS32_ENTRY
# note, no Xen) and check it with QEMU's own gdbstub: symbols, DWARF, paging,
# both CPUs. Needs qemu-system-x86 (qemu-system-x86_64, qemu-system-i386)
# and gdb. Builds the kernels first if needed.
# Usage: verify-qemu.sh [64|32 ...]   (default: both)
# Exit status 0 = all checks passed. Logs in build/verify-*.{serial,gdb}.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$here/build
"$here/build.sh" >/dev/null

for tool in qemu-system-x86_64 qemu-system-i386 gdb; do
    command -v "$tool" >/dev/null || { echo "verify-qemu: $tool not found (apt-get install qemu-system-x86 gdb)" >&2; exit 2; }
done

free_port() {
    local p
    for p in $(seq "${1:-12340}" 12399); do
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return 0; }
    done
    return 1
}

fail=0
check() {  # check NAME FILE REGEX
    if grep -Eq -- "$3" "$2"; then
        echo "  ok   $1"
    else
        echo "  FAIL $1 (no /$3/ in $2)"
        fail=1
    fi
}

run_one() {
    local w=$1 elf qemu arch kbase psize qpid port serial gdblog
    elf=$out/testkernel$w.elf
    if [ "$w" = 64 ]; then
        qemu=qemu-system-x86_64; arch=x86_64; kbase=0xffffffff80000000; psize=8
    else
        qemu=qemu-system-i386; arch=i386; kbase=0xc0000000; psize=4
    fi
    serial=$out/verify-$w.serial
    gdblog=$out/verify-$w.gdb
    port=$(free_port)
    rm -f "$serial"
    echo "testkernel$w.elf: $qemu -smp 2, gdbstub on 127.0.0.1:$port"
    "$qemu" -accel tcg -m 64 -smp 2 -display none -monitor none -net none \
        -no-reboot -serial "file:$serial" -gdb "tcp:127.0.0.1:$port" \
        -kernel "$elf" -append "tk-verify=$w" 2>"$out/verify-$w.qemu" &
    qpid=$!
    # wait for both CPUs to be up (printed on COM1)
    for _ in $(seq 1 100); do
        grep -q "cpu(s) online" "$serial" 2>/dev/null && break
        sleep 0.1
    done
    timeout 120 gdb -nx -q -batch \
        -ex "file $elf" \
        -ex "target remote 127.0.0.1:$port" \
        -ex 'info threads' \
        -ex 'break tk_tick' \
        -ex 'continue' \
        -ex 'bt' \
        -ex 'printf "cpu-arg=%d\n", cpu' \
        -ex 'printf "magic=%#x\n", tk_magic' \
        -ex 'printf "banner=%s\n", tk_banner' \
        -ex 'printf "counter-positive=%d\n", tk_counter > 0' \
        -ex 'printf "ticks01-positive=%d\n", tk_ticks[0] > 0 && tk_ticks[1] > 0' \
        -ex 'printf "online=%u boot_done=%u on_xen=%u\n", tk_cpus_online, tk_boot_done, tk_on_xen' \
        -ex 'printf "ptr_size=%u kbase=%#llx\n", tk_info.ptr_size, tk_info.kbase' \
        -ex 'printf "cmdline=%s\n", tk_cmdline' \
        -ex 'printf "start_magic=%#x\n", tk_boot_info.magic' \
        -ex 'printf "pc-in-tk_tick=%d\n", $pc >= (unsigned long)tk_tick && $pc < (unsigned long)tk_work' \
        -ex 'x/s &tk_banner' \
        -ex "x/xw $kbase" \
        -ex "x/xw $kbase + 0x1000" \
        -ex 'set var tk_scratch[0] = 0x5a' \
        -ex 'printf "scratch0=%#x\n", tk_scratch[0]' \
        -ex 'delete' \
        -ex 'break tk_work' \
        -ex 'continue' \
        -ex 'printf "work-arg=%u\n", n' \
        -ex 'delete' \
        -ex 'finish' \
        -ex 'printf "finish-ok=%d\n", $ == (unsigned long long)n * (n + 1) / 2' \
        -ex 'delete' \
        -ex 'thread 2' \
        -ex 'break tk_tick if cpu == 1' \
        -ex 'continue' \
        -ex 'printf "cpu1-arg=%d\n", cpu' \
        -ex 'delete' \
        -ex 'detach' \
        > "$gdblog" 2>&1 || true
    kill "$qpid" 2>/dev/null || true
    wait "$qpid" 2>/dev/null || true

    check "serial: tk: up cpu0" "$serial" "^tk: up cpu0: gdbsx test kernel $arch on bare x86"
    check "serial: second cpu up" "$serial" "^tk: up cpu1"
    check "serial: 2 cpus online" "$serial" "^tk: 2 cpu\(s\) online, tk_magic=600dcafe"
    check "gdb: 2 threads" "$gdblog" "Thread 1\.2"
    check "gdb: breakpoint at tk_tick" "$gdblog" "hit Breakpoint 1, tk_tick \(cpu=[01]\)"
    check "gdb: backtrace tk_tick <- tk_loop" "$gdblog" "in tk_loop \(cpu=[01]\)"
    check "gdb: backtrace ends at boot entry" "$gdblog" "in tk_common32 \(\)"
    check "gdb: tk_magic" "$gdblog" "^magic=0x600dcafe$"
    check "gdb: tk_banner" "$gdblog" "^banner=gdbsx test kernel $arch$"
    check "gdb: x/s tk_banner" "$gdblog" "<tk_banner>:[[:space:]]+\"gdbsx test kernel $arch\""
    check "gdb: tk_counter > 0" "$gdblog" "^counter-positive=1$"
    check "gdb: tk_ticks[0], [1] > 0" "$gdblog" "^ticks01-positive=1$"
    check "gdb: 2 cpus online, not xen" "$gdblog" "^online=2 boot_done=1 on_xen=0$"
    check "gdb: pointer size / kbase" "$gdblog" "^ptr_size=$psize kbase=$kbase$"
    check "gdb: start_info copied" "$gdblog" "^start_magic=0x336ec578$"
    check "gdb: cmdline" "$gdblog" "^cmdline=tk-verify=$w$"
    check "gdb: pc in tk_tick" "$gdblog" "^pc-in-tk_tick=1$"
    check "gdb: KBASE page unmapped" "$gdblog" "Cannot access memory at address $kbase$"
    check "gdb: KBASE+0x1000 mapped" "$gdblog" "^$kbase"'[0-9a-f]*1000:|^0x[0-9a-f]+1000:'
    check "gdb: memory write" "$gdblog" "^scratch0=0x5a$"
    check "gdb: tk_work argument" "$gdblog" "^work-arg=1[0-6][0-9]$"
    check "gdb: finish returns n(n+1)/2" "$gdblog" "^finish-ok=1$"
    check "gdb: conditional break on cpu1" "$gdblog" "^cpu1-arg=1$"
}

widths=("$@")
[ ${#widths[@]} -gt 0 ] || widths=(64 32)
for w in "${widths[@]}"; do
    run_one "$w"
done
if [ $fail = 0 ]; then echo "verify-qemu: all checks passed"; else echo "verify-qemu: FAILED"; fi
exit $fail
