// Running a VCPU for a slice and turning CPU traps into what Xen does with them:
//   - debugger attached, CONFIG_GDBSX: int3 and single-step pause the domain for the
//     debugger (do_int3/do_debug on PV, the #BP/#DB/MTF exits on VMX);
//   - debugger attached, stock Xen: domain_pause_for_debugger() is empty, so the trap is
//     swallowed (int3: rip already past it) or dropped (#DB);
//   - no debugger, HVM/PVH: the monitor ring (monitor.ts) may take the exit;
//   - otherwise the exception goes to the guest: its own handlers when the domain models
//     them (SimDomain.guestTrapHandlers), else, with no IDT, the domain crashes
//     (on_crash=preserve).
// XEN_DMOP_inject_event's exceptions are delivered when the VCPU next runs.
import { Flag } from './alu';
import { StepResult } from './cpu';
import { hex64, toBig } from './cpu-core';
import { ShutdownReason, VcpuEvent, X86EventType } from '../domctl';
import { SimDomain, SimVcpu } from './domain';
import { DebugInfo, MonitorDebugType, MonitorOutcome, hvmMonitorDebug } from './monitor';

export type TrapKind = 'int3' | 'step' | 'mtf' | 'hwbreak' | 'watch';

/** A trap that paused the domain for the debugger, a request put on the monitor ring, or a crash. */
export type ExecEvent =
  | { domid: number; vcpu: number; kind: TrapKind }
  | { domid: number; vcpu: number; kind: 'monitor'; type: MonitorDebugType }
  | { domid: number; vcpu: number; kind: 'crash'; message: string };

/** How the hypervisor was built. */
export interface ExecEnv {
  /** CONFIG_GDBSX: domain_pause_for_debugger() pauses (false: it is empty). */
  gdbsx: boolean;
}

const DR6_BS = 0x4000n;
const DR6_B0_3 = 0xfn;
/** DR6 as Linux leaves it after reading it (the reserved bits that read as 1). */
const DR6_DEFAULT = 0xffff0ff0n;
/** RFLAGS.RF: instruction breakpoints do not fire while set; cleared once an instruction completes. */
const EFLAGS_RF = 0x10000;
const VEC_DB = 1;
const VEC_BP = 3;
const NO_DEBUG_INFO: DebugInfo = { trapType: 0, insnLength: 0, pendingDbg: 0n };

/**
 * An enabled instruction breakpoint (DR7 L/G bit set, R/W = 00) on `rip`: its slot, or
 * -1. Instruction breakpoints are faults: they fire before the instruction runs.
 */
function execBreakpoint(dr: bigint[], rip: bigint): number {
  const dr7 = dr[7];
  if ((dr7 & 0xffn) === 0n) return -1;
  for (let n = 0; n < 4; n++) {
    const enabled = (dr7 >> BigInt(2 * n)) & 3n;
    const rw = (dr7 >> BigInt(16 + 4 * n)) & 3n;
    if (enabled !== 0n && rw === 0n && dr[n] === rip) return n;
  }
  return -1;
}

function where(d: SimDomain, v: SimVcpu): string {
  return `d${d.domid}v${v.id} rip ${hex64(v.cpu.ripLo, v.cpu.ripHi)}`;
}

/** Address arithmetic at the VCPU's width. */
function addrAdd(v: SimVcpu, a: bigint, delta: bigint): bigint {
  return BigInt.asUintN(v.cpu.long ? 64 : 32, a + delta);
}

/**
 * The guest kernel's own exception handlers (SimDomain.guestTrapHandlers), returning to
 * `ret`. They model Linux:
 *  - #BP: poke_int3_handler / a vanished kprobe: go back to the int3's address and run
 *    it again, which loops until the patching CPU has put the real instruction back;
 *  - #DB: exc_debug reads and clears DR6; an unexpected single-step just clears TF, an
 *    instruction breakpoint returns with RF set so that it does not fire again at once
 *    (a data breakpoint, a trap, needs none).
 * Without them the guest has no IDT and the domain crashes with `crashMessage`.
 * Returns whether the VCPU runs on.
 */
function guestException(d: SimDomain, v: SimVcpu, vector: number, ret: bigint, crash: () => void): boolean {
  if (!d.guestTrapHandlers || (vector !== VEC_BP && vector !== VEC_DB)) {
    crash();
    return false;
  }
  const cpu = v.cpu;
  if (vector === VEC_BP) {
    cpu.rip = addrAdd(v, ret, -1n);
    return true;
  }
  const dr6 = cpu.dr[6];
  cpu.dr[6] = DR6_DEFAULT;
  cpu.rip = ret;
  if (dr6 & DR6_BS) cpu.rflags &= ~Flag.TF;
  if (dr6 & execSlots(cpu.dr[7])) cpu.rflags |= EFLAGS_RF;
  return true;
}

/** DR6 B0-3 bits of the slots DR7 makes instruction breakpoints (R/W = 00): the ones RF is for. */
function execSlots(dr7: bigint): bigint {
  let m = 0n;
  for (let n = 0; n < 4; n++) if (((dr7 >> BigInt(16 + 4 * n)) & 3n) === 0n) m |= 1n << BigInt(n);
  return m;
}

/**
 * Run `v` for at most `budget` instructions, stopping as soon as it may not run any
 * more (its own trap, another VCPU's trap pausing the domain, hlt, a crash).
 * Returns the number of instructions retired.
 */
export function runVcpu(d: SimDomain, v: SimVcpu, budget: number, onEvent: (e: ExecEvent) => void, env: ExecEnv = { gdbsx: true }): number {
  const cpu = v.cpu;
  const crashWith = (message: string) => () => {
    d.shutdown(ShutdownReason.crash, message);
    onEvent({ domid: d.domid, vcpu: v.id, kind: 'crash', message });
  };
  const toDebugger = (kind: TrapKind) => {
    d.pauseForDebugger();
    onEvent({ domid: d.domid, vcpu: v.id, kind });
  };
  /** An HVM exit offered to the monitor ring (with the registers as the exit leaves them). */
  const monitor = (type: MonitorDebugType, info: DebugInfo, afterAsync?: () => void): MonitorOutcome => {
    if (!d.hvm) return 'none';
    const r = hvmMonitorDebug(d, v, type, info, afterAsync);
    if (r !== 'none') onEvent({ domid: d.domid, vcpu: v.id, kind: 'monitor', type });
    return r;
  };
  // PV: a trap in guest user mode always goes to the guest (do_int3/do_debug check guest_kernel_mode).
  const attached = () => d.debuggerAttached && (d.hvm || v.kernelMode);

  let n = 0;
  if (v.injectEvent && d.canRun(v) && !deliverInjected(d, v, env, toDebugger, crashWith)) return 0;
  cpu.armDataBreakpoints();
  while (n < budget && d.canRun(v)) {
    // TF is sampled at the start: the #DB comes after the instruction it was set for.
    const tf = (cpu.rflags & Flag.TF) !== 0;
    const rf = (cpu.rflags & EFLAGS_RF) !== 0;
    const hw = rf ? -1 : execBreakpoint(cpu.dr, toBig(cpu.ripLo, cpu.ripHi));
    if (hw >= 0) {
      // A fault: the instruction has not run. DR6 says which breakpoint (VMX writes the
      // exit qualification into the guest's DR6; the guest sees it too).
      cpu.dr[6] |= 1n << BigInt(hw);
      if (attached()) {
        if (env.gdbsx) toDebugger('hwbreak');
        // Stock Xen drops the #DB: the VCPU meets the breakpoint again and again, no progress.
        break;
      }
      const crash = crashWith(`#DB: instruction breakpoint DR${hw} with no debugger attached, ${where(d, v)}`);
      const ret = cpu.rip;
      const m = monitor('debugException', { trapType: X86EventType.hwException, insnLength: 0, pendingDbg: 0n },
        () => guestException(d, v, VEC_DB, ret, crash));
      if (m === 'stopped' || !guestException(d, v, VEC_DB, ret, crash)) break;
      continue;
    }
    const tally = v.pcTally;
    const pcKey = tally ? (cpu.ripHi & 0xfffff) * 0x100000000 + (cpu.ripLo >>> 0) : 0;
    const r = cpu.step();
    if (tally && r !== StepResult.Fault) tally.set(pcKey, (tally.get(pcKey) ?? 0) + 1);
    if (r === StepResult.Fault) {
      const f = cpu.fault;
      crashWith(`${f ? f.message : 'fault'} at ${where(d, v)}`)();
      break;
    }
    n++;
    v.instructions++;
    if (rf) cpu.rflags &= ~EFLAGS_RF;
    if (r === StepResult.Int3) {
      // int3 is a trap: rip already points past it. It takes precedence over TF.
      if (attached()) {
        if (!env.gdbsx) continue; // stock: swallowed (PV do_int3) or skipped (HVM update_guest_eip)
        v.event = VcpuEvent.breakpoint;
        toDebugger('int3');
        break;
      }
      const after = cpu.rip;
      if (d.hvm) {
        // The #BP exit leaves rip on the int3, not retired (SVM: "INT3 intercepts do not update RIP").
        cpu.rip = addrAdd(v, after, -1n);
        if (monitor('softwareBreakpoint', { trapType: X86EventType.swException, insnLength: 1, pendingDbg: 0n }) === 'stopped') {
          n--;
          v.instructions--;
          break;
        }
        cpu.rip = after;
      }
      if (!guestException(d, v, VEC_BP, after, crashWith(`#BP: int3 with no debugger attached (guest has no IDT), ${where(d, v)}`))) break;
      continue;
    }
    // Data breakpoints are traps: the instruction has run (its write is done) when the
    // #DB comes. With TF set too, one #DB reports both (DR6 gets Bn and BS).
    const dataHits = cpu.dataHits;
    if (dataHits !== 0) {
      cpu.dataHits = 0;
      cpu.dr[6] |= BigInt(dataHits);
      if (!tf) {
        if (attached()) {
          if (env.gdbsx) {
            toDebugger('watch');
            break;
          }
          // Stock: dropped, as for every #DB with the debugging flag on.
        } else {
          const crash = crashWith(`#DB: data breakpoint (DR6 0x${cpu.dr[6].toString(16)}) with no debugger attached, ${where(d, v)}`);
          const ret = cpu.rip;
          const m = monitor('debugException', { trapType: X86EventType.hwException, insnLength: 0, pendingDbg: 0n },
            () => guestException(d, v, VEC_DB, ret, crash));
          if (m === 'stopped' || !guestException(d, v, VEC_DB, ret, crash)) break;
        }
      }
    }
    if (tf) {
      cpu.dr[6] |= DR6_BS;
      if (attached()) {
        if (env.gdbsx) {
          // Xen records the step in the guest's dr6 and sets no gdbsx_vcpu_event.
          toDebugger('step');
          break;
        }
        // Stock: dropped; TF stays set and the guest crawls on, one dropped #DB per instruction.
      } else {
        const crash = crashWith(`#DB: single-step trap with no debugger attached, ${where(d, v)}`);
        const ret = cpu.rip;
        const m = monitor('debugException', { trapType: X86EventType.hwException, insnLength: 0, pendingDbg: 0n },
          () => guestException(d, v, VEC_DB, ret, crash));
        if (m === 'stopped' || !guestException(d, v, VEC_DB, ret, crash)) break;
      }
    }
    if (v.singleStep) {
      // Monitor trap flag exit (vmx.c EXIT_REASON_MONITOR_TRAP_FLAG): the monitor event
      // first, whether or not a debugger is attached, then domain_pause_for_debugger.
      const m = monitor('singlestep', NO_DEBUG_INFO);
      if (d.debuggerAttached && env.gdbsx) {
        toDebugger('mtf');
        break;
      }
      if (m === 'stopped') break;
    }
    if (r === StepResult.Halt) {
      v.halted = true;
      v.halts++;
      break;
    }
  }
  return n;
}

/**
 * Deliver the exception XEN_DMOP_inject_event queued (hvm_do_resume -> vmx_inject_event).
 * #DB/#BP with a debugger attached go to domain_pause_for_debugger instead, which on
 * stock Xen does nothing: the event is lost. Returns whether the VCPU runs on.
 */
function deliverInjected(d: SimDomain, v: SimVcpu, env: ExecEnv, toDebugger: (k: TrapKind) => void,
  crashWith: (m: string) => () => void): boolean {
  const ev = v.injectEvent;
  if (!ev) return true;
  v.injectEvent = undefined;
  if (d.debuggerAttached && (ev.vector === VEC_DB || ev.vector === VEC_BP)) {
    if (!env.gdbsx) return true;
    toDebugger(ev.vector === VEC_BP ? 'int3' : 'step');
    return false;
  }
  // Software exceptions return past the instruction that raised them; hardware ones to rip.
  const soft = ev.type === X86EventType.swException || ev.type === X86EventType.privSwException;
  const ret = soft ? addrAdd(v, v.cpu.rip, BigInt(ev.insnLen)) : v.cpu.rip;
  if (ev.vector === VEC_DB) v.cpu.dr[6] |= BigInt.asUintN(64, ev.cr2) & (DR6_B0_3 | DR6_BS); // pending_dbg
  const name = ev.vector === VEC_BP ? '#BP' : ev.vector === VEC_DB ? '#DB' : `vector ${ev.vector}`;
  return guestException(d, v, ev.vector, ret, crashWith(`${name} injected with XEN_DMOP_inject_event (guest has no IDT), ${where(d, v)}`));
}
