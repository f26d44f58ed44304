# Running the Xen lab: start (boot + guests + stub), stop, status, exec.
# shellcheck shell=bash

LAB_BOOT_TIMEOUT=${LAB_BOOT_TIMEOUT:-300}
LAB_QEMU_MEM=${LAB_QEMU_MEM:-2560}
LAB_DOM0_MEM=${LAB_DOM0_MEM:-768M}
LAB_DEPS_EXCLUDE=${LAB_DEPS_EXCLUDE:-node-gyp node-addon-api}
LAB_DEFAULT_STUB_CMD='node /opt/gdbsx/bin/gdbsx -a $DOMID $WIDTH $PORT --host 0.0.0.0'
SERIAL_LOG=$LAB_RUN/serial.log
QEMU_PIDFILE=$LAB_RUN/qemu.pid
TESTKERNEL_DIR=$LAB_REPO/test/lab/testkernel/build

# The host-side client (test/lab/client.ts). `npm run build` compiles it into dist/;
# without dist/ it is compiled on its own into $LAB_RUN/client/.
lab_client_js() {
  local built=$LAB_REPO/dist/test/lab/client.js
  if [ -f "$built" ] && [ "$built" -nt "$LAB_SRC/client.ts" ]; then
    echo "$built"; return 0
  fi
  local own=$LAB_RUN/client/client.js
  if [ ! -f "$own" ] || [ "$LAB_SRC/client.ts" -nt "$own" ]; then
    local tsc=$LAB_REPO/node_modules/typescript/bin/tsc
    [ -f "$tsc" ] || die "no dist/test/lab/client.js and no typescript to compile it: run npm ci && npm run build"
    mkdir -p "$LAB_RUN/client"
    node "$tsc" --outDir "$LAB_RUN/client" --module commonjs --target es2022 --strict --esModuleInterop \
      --types node --typeRoots "$LAB_REPO/node_modules/@types" --skipLibCheck "$LAB_SRC/client.ts" >&2 \
      || die "compiling test/lab/client.ts failed"
  fi
  echo "$own"
}
labctl() { node "$(lab_client_js)" "$@"; }

qemu_alive() {
  local pid=$1
  [ -n "$pid" ] && [ -d "/proc/$pid" ] && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q qemu-system
}

state_get() { # state_get <js expression on s> ; prints '' if no state
  [ -f "$LAB_STATE" ] || return 0
  node -e 'const s = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); const v = ('"$1"'); if (v !== undefined && v !== null) console.log(typeof v === "object" ? JSON.stringify(v) : v)' "$LAB_STATE" 2>/dev/null || true
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The ELF class of a file: 32 or 64.
elf_width() {
  case "$(od -An -tu1 -j4 -N1 "$1" | tr -d ' ')" in 1) echo 32 ;; 2) echo 64 ;; *) echo 0 ;; esac
}

# The guests of this start, one line each: name type width kernel ramdisk memory vcpus port.
# LAB_GUESTS picks among pv, pvh and the test kernels' names (default: all).
lab_guest_list() {
  local port=$((LAB_PORT_BASE + 1)) g want=${LAB_GUESTS:-all}
  want=${want//,/ }   # LAB_GUESTS=pv,pvh or "pv pvh"
  local cands=("pv pv 64 /lab/vmlinuz /lab/guest-initrd.gz ${LAB_LINUX_MEM:-256} 2"
               "pvh pvh 64 /lab/vmlinuz /lab/guest-initrd.gz ${LAB_LINUX_MEM:-256} 2")
  local elf
  for elf in "$TESTKERNEL_DIR"/testkernel*.elf; do
    [ -f "$elf" ] || continue
    local n w
    n=$(basename "$elf" .elf)
    w=$(elf_width "$elf")
    cands+=("$n pvh $w /lab/testkernel/$n.elf - ${LAB_TESTKERNEL_MEM:-32} 2")
  done
  for g in "${cands[@]}"; do
    set -- $g
    if [ "$want" = all ] || [[ " $want " == *" $1 "* ]]; then
      echo "$g $port"
      port=$((port + 1))
    fi
  done
}

# The per-start part of dom0's initramfs: init, config, guest configs, the project's
# code at /opt/gdbsx, test kernels, and LAB_EXTRA_FILES.
build_project_cpio() {
  local out=$1 r
  r=$LAB_RUN/project-root
  rm -rf "$r"; mkdir -p "$r/lab/guests" "$r/opt/gdbsx/test/lab" "$r/lab/testkernel"
  install -m 755 "$LAB_SRC/dom0/init" "$r/init"
  cat > "$r/lab/config.sh" <<EOF
LAB_AGENT_PORT=$LAB_PORT_BASE
LAB_XEN=$LAB_XEN
LAB_DOM0_WEIGHT=${LAB_DOM0_WEIGHT:-2048}
EOF
  # guest configs
  local name type width kernel ramdisk mem vcpus port
  while read -r name type width kernel ramdisk mem vcpus port; do
    {
      echo "name = \"lab-$name\""
      echo "type = \"$type\""
      echo "kernel = \"$kernel\""
      [ "$ramdisk" != - ] && echo "ramdisk = \"$ramdisk\""
      [ "$ramdisk" != - ] && echo "extra = \"console=hvc0 quiet$([ "${LAB_USERSPIN:-on}" = off ] && echo ' gdbsx_lab_userspin=off')$([ "${LAB_FLIP:-off}" = on ] && echo ' gdbsx_lab_flip=on')\""
      echo "memory = $mem"
      echo "vcpus = $vcpus"
      # HVM-type guests: no rdtsc intercept. QEMU's CPU model has no invariant TSC, so Xen's
      # default mode emulates rdtsc for them, and under the emulated SVM a PVH guest now and
      # then triple-faulted right after an intercepted rdtsc (docs/lab.md). Hardware with an
      # invariant TSC gets native mode by default anyway. LAB_TSC_MODE=default reproduces it.
      [ "$type" = pvh ] && [ "${LAB_TSC_MODE:-native}" != default ] && echo "tsc_mode = \"${LAB_TSC_MODE:-native}\""
      # the test kernels spin: under TCG every spinning VCPU costs a host core, so they
      # get a low weight and a cap (percent of one CPU); pausing and stepping are unchanged
      case "$name" in testkernel*)
        echo "cpu_weight = ${LAB_TESTKERNEL_WEIGHT:-64}"
        [ "${LAB_TESTKERNEL_CAP:-10}" != 0 ] && echo "cap = ${LAB_TESTKERNEL_CAP:-10}" ;;
      esac
      echo 'on_crash = "preserve"'
      echo 'on_poweroff = "preserve"'
      echo 'on_reboot = "preserve"'
    } > "$r/lab/guests/$name.cfg"
  done < <(lab_guest_list)
  local elf
  for elf in "$TESTKERNEL_DIR"/testkernel*.elf; do
    [ -f "$elf" ] && cp "$elf" "$r/lab/testkernel/"
  done
  # the project
  local p=$r/opt/gdbsx d
  cp "$LAB_REPO/package.json" "$p/"
  [ -d "$LAB_REPO/dist" ] && cp -a "$LAB_REPO/dist" "$p/dist"
  [ -d "$LAB_REPO/bin" ] && cp -a "$LAB_REPO/bin" "$p/bin"
  if [ -f "$LAB_REPO/build/Release/xg.node" ]; then
    mkdir -p "$p/build/Release"; cp "$LAB_REPO/build/Release/xg.node" "$p/build/Release/"
  fi
  if [ -d "$LAB_REPO/guest/build" ]; then
    mkdir -p "$p/guest"; cp -a "$LAB_REPO/guest/build" "$p/guest/build"
  fi
  cp "$LAB_SRC/dom0-agent.js" "$p/test/lab/"
  while read -r d; do
    [ -n "$d" ] || continue
    mkdir -p "$p/$(dirname "$d")"
    cp -a "$LAB_REPO/$d" "$p/$d"
  done < <(node "$LAB_SRC/lib/runtime-deps.js" "$LAB_REPO" --exclude "$LAB_DEPS_EXCLUDE")
  # another stub's files: "LOCAL[:DOM0PATH] ..." (default DOM0PATH /opt/extra/<name>)
  local spec src dst
  for spec in ${LAB_EXTRA_FILES:-}; do
    src=${spec%%:*}
    if [[ "$spec" == *:* ]]; then dst=${spec#*:}; else dst=/opt/extra/$(basename "$src"); fi
    [ -e "$src" ] || die "LAB_EXTRA_FILES: $src does not exist"
    mkdir -p "$r$(dirname "$dst")"
    cp -a "$src" "$r$dst"
  done
  make_cpio "$r" "$out"
  rm -rf "$r"
}

write_initial_state() {
  LAB_J_GUESTS=$(lab_guest_list) LAB_J_XEN_IMAGE=$1 LAB_J_QEMU_PID=$2 LAB_J_STUB_CMD=${LAB_STUB_CMD:-$LAB_DEFAULT_STUB_CMD} \
  LAB_J_STUB=${LAB_STUB:-on} LAB_J_KSYMS=$CACHE_LINUX/kallsyms.elf LAB_J_TK=$TESTKERNEL_DIR \
  LAB_J_EXTRA=${LAB_EXTRA_FILES:-} LAB_J_BASE=$LAB_PORT_BASE LAB_J_N=$LAB_NPORTS LAB_J_XEN=$LAB_XEN \
  LAB_J_REF_GDBSX=$( [ -x "$CACHE_REF_GDBSX/gdbsx" ] && echo "$CACHE_REF_GDBSX/gdbsx" || true) \
  LAB_J_CACHE=$LAB_CACHE LAB_J_RUN=$LAB_RUN LAB_J_SERIAL=$SERIAL_LOG LAB_J_STATE=$LAB_STATE \
  LAB_J_USERSPIN=${LAB_USERSPIN:-on} LAB_J_LINUX_CAP=${LAB_LINUX_CAP:-50} LAB_J_USER_ADDR=$LAB_USER_ADDR LAB_J_USER_TEXTS=$(printf '%s\n' "${LAB_USER_TEXTS[@]}") \
  node -e '
    const e = process.env;
    const base = Number(e.LAB_J_BASE);
    const guests = {};
    for (const line of e.LAB_J_GUESTS.split("\n").filter(Boolean)) {
      const [name, type, width, kernel, ramdisk, mem, vcpus, port] = line.split(/\s+/);
      const tk = name.startsWith("testkernel");
      const symbols = tk ? e.LAB_J_TK + "/" + name + ".elf" : e.LAB_J_KSYMS;
      guests[name] = {
        name, xlName: "lab-" + name, type, width: Number(width), domid: null, vcpus: Number(vcpus),
        memoryMiB: Number(mem), kernel, ramdisk: ramdisk === "-" ? null : ramdisk,
        cfg: "/lab/guests/" + name + ".cfg", consoleLog: "/var/log/xen/console/guest-lab-" + name + ".log",
        symbols,
        stub: { port: Number(port), dom0Pid: null, log: "/var/log/stub-" + name + ".log", running: false },
        // the Linux guests run one user process per VCPU, pinned to it, each with its
        // own string at the same user address (test/lab/guest/userspin.c)
        userWorkload: tk || e.LAB_J_USERSPIN === "off" ? null : {
          address: e.LAB_J_USER_ADDR,
          strings: e.LAB_J_USER_TEXTS.split("\n").filter(Boolean).slice(0, Number(vcpus)),
          programs: Array.from({ length: Number(vcpus) }, (_, i) => "/bin/userspin" + i),
        },
        capAfterBoot: tk || e.LAB_J_USERSPIN === "off" || !Number(e.LAB_J_LINUX_CAP) ? null : Number(e.LAB_J_LINUX_CAP),
        gdb: "gdb " + symbols + " -ex \x27set remotetimeout 30\x27 -ex \x27target remote 127.0.0.1:" + port + "\x27",
      };
    }
    const st = {
      version: 1, status: "booting", startedAt: new Date().toISOString(),
      qemuPid: Number(e.LAB_J_QEMU_PID), xen: e.LAB_J_XEN, xenImage: e.LAB_J_XEN_IMAGE,
      // the reference gdbsx: tools/debugger/gdbsx built from the gdbsx hypervisor source (host path; the bench copies it into dom0)
      referenceGdbsx: e.LAB_J_REF_GDBSX || null,
      serialLog: e.LAB_J_SERIAL, runDir: e.LAB_J_RUN, cacheDir: e.LAB_J_CACHE,
      agent: { host: "127.0.0.1", port: base },
      ports: { base, count: Number(e.LAB_J_N), forwarded: Array.from({ length: Number(e.LAB_J_N) }, (_, i) => base + i) },
      stub: { enabled: e.LAB_J_STUB !== "off", cmd: e.LAB_J_STUB_CMD, extraFiles: e.LAB_J_EXTRA },
      guests, timings: {},
    };
    require("fs").writeFileSync(e.LAB_J_STATE, JSON.stringify(st, null, 2) + "\n");
  '
}

# A start that went wrong: show the end of the console, mark the state failed, and
# stop QEMU unless LAB_KEEP=1 (then 'lab.sh exec' and 'lab.sh stop' still work).
start_failed() {
  tail -40 "$SERIAL_LOG" >&2 || true
  labctl set-state status failed >/dev/null 2>&1 || true
  if [ "${LAB_KEEP:-0}" = 1 ]; then
    die "$1 (serial log: $SERIAL_LOG); QEMU kept running (LAB_KEEP=1): lab.sh stop when done"
  fi
  lab_stop >/dev/null 2>&1 || true
  labctl set-state status failed >/dev/null 2>&1 || true
  die "$1 (serial log: $SERIAL_LOG); QEMU stopped (LAB_KEEP=1 keeps it for a look)"
}

lab_start() {
  local t0=$SECONDS pid
  mkdir -p "$LAB_RUN"
  pid=$(state_get s.qemuPid)
  if qemu_alive "$pid"; then
    log "the lab is already running (QEMU pid $pid); 'lab.sh stop' or 'lab.sh restart' first"
    lab_status
    return 0
  fi
  build_all
  cache_paths
  local xen_image
  case "$LAB_XEN" in
    gdbsx) xen_image=$CACHE_XEN_GDBSX/xen ;;
    stock) xen_image=$CACHE_XEN_STOCK/xen ;;
    *) die "LAB_XEN must be gdbsx or stock, not $LAB_XEN" ;;
  esac
  local i p fwd=""
  for ((i = 0; i < LAB_NPORTS; i++)); do
    p=$((LAB_PORT_BASE + i))
    port_in_use "$p" && die "port 127.0.0.1:$p is in use (another lab? set LAB_PORT_BASE)"
    fwd+=",hostfwd=tcp:127.0.0.1:$p-:$p"
  done
  [ -f "$LAB_REPO/dist/test/lab/client.js" ] || log "note: no dist/ (run npm run build): dom0 gets no project code"
  local t1=$SECONDS
  build_project_cpio "$LAB_RUN/project.cpio"
  cat "$CACHE_BASE/base.cpio" "$LAB_RUN/project.cpio" > "$LAB_RUN/dom0-initrd.cpio"
  local t_cpio=$((SECONDS - t1))
  rm -f "$SERIAL_LOG" "$QEMU_PIDFILE"
  local xen_args="dom0_mem=$LAB_DOM0_MEM,max:$LAB_DOM0_MEM console=com1 com1=115200,8n1 guest_loglvl=all noreboot ${LAB_XEN_ARGS:-}"
  local dom0_args="console=hvc0 quiet ${LAB_DOM0_ARGS:-}"
  local qemu_bin fwdir fw=()
  qemu_bin=$(qemu_cmd)
  for fwdir in "${QEMU_FIRMWARE_DIRS[@]}"; do fw+=(-L "$fwdir"); done
  local qemu=("$qemu_bin" "${fw[@]}" -accel tcg -cpu qemu64,+svm,+npt -m "$LAB_QEMU_MEM" -smp 2
    -nographic -no-reboot -monitor none
    -kernel "$xen_image" -append "$xen_args"
    -initrd "$CACHE_LINUX/vmlinuz $dom0_args,$LAB_RUN/dom0-initrd.cpio"
    -netdev "user,id=n0,restrict=on$fwd" -device e1000,netdev=n0
    -pidfile "$QEMU_PIDFILE")
  echo "${qemu[*]}" > "$LAB_RUN/qemu.cmdline"
  log "booting Xen ($LAB_XEN: $xen_image) under QEMU/TCG; serial console: $SERIAL_LOG"
  local t_boot=$SECONDS
  setsid "${qemu[@]}" < /dev/null > "$SERIAL_LOG" 2>&1 &
  local launched=$!
  for i in $(seq 50); do [ -s "$QEMU_PIDFILE" ] && break; sleep 0.1; done
  pid=$(cat "$QEMU_PIDFILE" 2>/dev/null || echo "$launched")
  write_initial_state "$xen_image" "$pid"
  # wait for dom0's init
  local deadline=$((SECONDS + LAB_BOOT_TIMEOUT))
  while :; do
    if grep -q 'GDBSX-LAB-READY' "$SERIAL_LOG" 2>/dev/null; then break; fi
    if ! qemu_alive "$pid"; then start_failed "QEMU exited during boot"; fi
    if grep -qE 'GDBSX-LAB-FAILED|Kernel panic|Panic on CPU' "$SERIAL_LOG" 2>/dev/null; then
      start_failed "dom0 failed to come up"
    fi
    [ $SECONDS -lt $deadline ] || start_failed "no ready marker from dom0 after $LAB_BOOT_TIMEOUT s"
    sleep 0.5
  done
  local t_ready=$((SECONDS - t_boot))
  log "dom0 ready after $t_ready s"
  labctl set-timing cpioSeconds "$t_cpio" dom0ReadySeconds "$t_ready" > /dev/null
  # guests, stubs, state (client.ts does the talking)
  labctl setup || start_failed "setting up the guests or the stubs failed"
  lab_kallsyms_elf || log "warning: no symbol file for the Linux guests (see above)"
  labctl set-timing startSeconds "$((SECONDS - t0))" > /dev/null
  lab_summary
}

# Symbols for the Linux guests: dom0's /proc/kallsyms (same kernel image) as an ELF
# for gdb, made at the first start after a kernel change and cached beside the kernel.
lab_kallsyms_elf() {
  local elf=$CACHE_LINUX/kallsyms.elf
  [ -f "$elf" ] && return 0
  labctl get /proc/kallsyms "$LAB_RUN/kallsyms.txt" || return 1
  bash "$LAB_SRC/lib/kallsyms-elf.sh" "$LAB_RUN/kallsyms.txt" "$elf"
}

lab_summary() {
  echo
  echo "Xen lab is up ($(state_get s.xen) hypervisor), state file: $LAB_STATE"
  echo "  control agent: 127.0.0.1:$(state_get s.agent.port)   e.g. bash test/lab/lab.sh exec 'xl list'"
  echo "  serial console log: $SERIAL_LOG"
  node -e '
    const s = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    for (const g of Object.values(s.guests)) {
      console.log(`  ${g.name.padEnd(13)} domid ${String(g.domid).padEnd(3)} ${g.type.toUpperCase().padEnd(3)} ${g.width}-bit  stub ${g.stub.running ? "listening" : "NOT running"} on ${g.stub.port}`);
      if (!g.stub.running && g.stub.error) console.log(`      stub: ${g.stub.error.split("\n").slice(-3).join(" | ")}`);
      if (g.userWorkload) console.log(`      user workload: ${g.userWorkload.strings.map((t, i) => `VCPU ${i} "${t}"`).join(", ")} at ${g.userWorkload.address}`);
      console.log(`      ${g.gdb}`);
    }
    console.log(`  timings: ${JSON.stringify(s.timings)}`);
  ' "$LAB_STATE"
}

lab_stop() {
  local pid
  pid=$(state_get s.qemuPid)
  [ -z "$pid" ] && [ -s "$QEMU_PIDFILE" ] && pid=$(cat "$QEMU_PIDFILE")
  if ! qemu_alive "$pid"; then
    log "not running"
  else
    log "stopping QEMU (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for i in $(seq 50); do qemu_alive "$pid" || break; sleep 0.2; done
    if qemu_alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; sleep 0.5; fi
    qemu_alive "$pid" && die "QEMU (pid $pid) would not stop"
  fi
  if [ -f "$LAB_STATE" ]; then labctl set-state status stopped >/dev/null 2>&1 || true; fi
  rm -f "$QEMU_PIDFILE" "$LAB_RUN/dom0-initrd.cpio" "$LAB_RUN/project.cpio"
}

lab_status() {
  local pid
  pid=$(state_get s.qemuPid)
  if [ -z "$pid" ]; then echo "no lab state at $LAB_STATE"; return 1; fi
  if qemu_alive "$pid"; then
    echo "QEMU running (pid $pid), status $(state_get s.status), xen $(state_get s.xen)"
    labctl exec 'xl list' || true
    lab_summary
  else
    echo "not running (last state: $LAB_STATE, status $(state_get s.status))"
    return 1
  fi
}
