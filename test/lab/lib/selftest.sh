# lab.sh selftest: checks that a started lab does what docs/lab.md says (agent, guests,
# stubs reachable from the host's gdb, a breakpoint on the PV and the PVH guest). Ends with "N passed, M failed".
# shellcheck shell=bash

lab_selftest() {
  local passed=0 failed=0
  ok() { passed=$((passed + 1)); echo "ok   - $*"; }
  nok() { failed=$((failed + 1)); echo "FAIL - $*"; }
  check() { local what=$1; shift; if "$@" >/dev/null 2>&1; then ok "$what"; else nok "$what"; fi; }

  apt_ensure gdb
  local pid
  pid=$(state_get s.qemuPid)
  if ! qemu_alive "$pid"; then
    nok "lab running (no live QEMU in $LAB_STATE; lab.sh start first)"
    echo "$passed passed, $failed failed"
    return 1
  fi
  ok "QEMU running (pid $pid)"
  check "state status is ready" test "$(state_get s.status)" = ready
  check "agent answers ping" labctl ping
  local xl
  xl=$(labctl exec 'xl list' 2>/dev/null || true)
  local names n
  names=$(state_get 'Object.keys(s.guests).join(" ")')
  for n in $names; do
    local xlname domid port running width symbols vcpus
    xlname=$(state_get "s.guests['$n'].xlName")
    domid=$(state_get "s.guests['$n'].domid")
    port=$(state_get "s.guests['$n'].stub.port")
    running=$(state_get "s.guests['$n'].stub.running")
    width=$(state_get "s.guests['$n'].width")
    vcpus=$(state_get "s.guests['$n'].vcpus")
    symbols=$(state_get "s.guests['$n'].symbols")
    if awk -v n="$xlname" -v d="$domid" '$1 == n && $2 == d { found = 1 } END { exit !found }' <<< "$xl"; then
      ok "$n: xl list shows $xlname as domain $domid"
    else
      nok "$n: xl list does not show $xlname as domain $domid"
      continue
    fi
    if [ "$running" != true ]; then
      nok "$n: stub not running ($(state_get "s.guests['$n'].stub.error"))"
      continue
    fi
    local arch=i386:x86-64
    [ "$width" = 32 ] && arch=i386
    local sym=()
    [ -n "$symbols" ] && [ -f "$symbols" ] && sym=("$symbols")
    local out
    out=$(timeout 120 gdb -nx -q -batch "${sym[@]}" -ex "set architecture $arch" -ex 'set remotetimeout 30' -ex "target remote 127.0.0.1:$port" \
      -ex 'info threads' -ex 'info registers' -ex 'x/2i $pc' -ex 'detach' 2>&1 || true)
    local threads
    threads=$(grep -c 'Thread [0-9]*\.[0-9]* "VCPU' <<< "$out" || true)
    if [ "$threads" = "$vcpus" ] && grep -q 'Inferior 1 .* detached' <<< "$out"; then
      ok "$n: gdb on 127.0.0.1:$port: $threads VCPU threads, registers, memory, detach"
    else
      nok "$n: gdb on 127.0.0.1:$port: expected $vcpus VCPU threads and a detach; got: $(tail -5 <<< "$out" | tr '\n' ' ')"
    fi
  done
  # a software breakpoint: on the PV guest with CONFIG_GDBSX (stock Xen has no trap path
  # for PV), on the PVH guest with either (the lab's QEMU sends its int3 to Xen)
  local bn fn want
  for bn in pv pvh; do
    [[ " $names " == *" $bn "* ]] && [ "$(state_get "s.guests.$bn.stub.running")" = true ] || continue
    [ "${LAB_SELFTEST_QUICK:-0}" != 1 ] || continue
    [ "$bn" = pv ] && [ "$(state_get s.xen)" != gdbsx ] && continue
    fn=__schedule; [ "$bn" = pv ] && fn=xen_safe_halt
    local symbols port out
    symbols=$(state_get "s.guests.$bn.symbols")
    port=$(state_get "s.guests.$bn.stub.port")
    [ -f "$symbols" ] || continue
    out=$(timeout 180 gdb -nx -q -batch "$symbols" -ex 'set remotetimeout 30' -ex "target remote 127.0.0.1:$port" -ex "break $fn" \
      -ex 'continue' -ex 'delete' -ex 'detach' 2>&1 || true)
    want="hit Breakpoint 1, .* in $fn"
    if grep -q "$want" <<< "$out"; then
      ok "$bn: software breakpoint at $fn hit"
    else
      nok "$bn: software breakpoint at $fn: $(tail -4 <<< "$out" | tr '\n' ' ')"
    fi
  done
  echo "$passed passed, $failed failed"
  [ "$failed" = 0 ] || exit 1   # the summary above says what failed
}
