// Running a VCPU for a slice and turning CPU traps into what Xen does with them:
// int3 and single-step pause the domain for an attached debugger (do_int3/handle_DB on
// PV, the #BP/#DB/MTF exits on VMX); with no debugger they are delivered to the guest,
// which has no IDT here, so the domain crashes (on_crash=preserve).
import { Flag } from './alu';
import { StepResult } from './cpu';
import { hex64, toBig } from './cpu-core';
import { ShutdownReason, VcpuEvent } from '../domctl';
import { SimDomain, SimVcpu } from './domain';

export type TrapKind = 'int3' | 'step' | 'mtf' | 'hwbreak';

/** A trap that paused the domain for the debugger, or a crash. */
export type ExecEvent =
  | { domid: number; vcpu: number; kind: TrapKind }
  | { domid: number; vcpu: number; kind: 'crash'; message: string };

const DR6_BS = 0x4000n;

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

/**
 * Run `v` for at most `budget` instructions, stopping as soon as it may not run any
 * more (its own trap, another VCPU's trap pausing the domain, hlt, a crash).
 * Returns the number of instructions retired.
 */
export function runVcpu(d: SimDomain, v: SimVcpu, budget: number, onEvent: (e: ExecEvent) => void): number {
  const crash = (message: string) => {
    d.shutdown(ShutdownReason.crash, message);
    onEvent({ domid: d.domid, vcpu: v.id, kind: 'crash', message });
  };
  const cpu = v.cpu;
  let n = 0;
  while (n < budget && d.canRun(v)) {
    // TF is sampled at the start: the #DB comes after the instruction it was set for.
    const tf = (cpu.rflags & Flag.TF) !== 0;
    const hw = execBreakpoint(cpu.dr, toBig(cpu.ripLo, cpu.ripHi));
    if (hw >= 0) {
      if (!d.debuggerAttached) {
        crash(`#DB: instruction breakpoint DR${hw} with no debugger attached, ${where(d, v)}`);
        break;
      }
      // As Xen's #DB handling: dr6 says which breakpoint; no gdbsx_vcpu_event.
      cpu.dr[6] |= 1n << BigInt(hw);
      d.pauseForDebugger();
      onEvent({ domid: d.domid, vcpu: v.id, kind: 'hwbreak' });
      break;
    }
    const r = cpu.step();
    if (r === StepResult.Fault) {
      const f = cpu.fault;
      crash(`${f ? f.message : 'fault'} at ${where(d, v)}`);
      break;
    }
    n++;
    v.instructions++;
    if (r === StepResult.Int3) {
      // int3 is a trap: rip already points past it. It takes precedence over TF.
      if (!d.debuggerAttached) {
        crash(`#BP: int3 with no debugger attached (guest has no IDT), ${where(d, v)}`);
        break;
      }
      v.event = VcpuEvent.breakpoint;
      d.pauseForDebugger();
      onEvent({ domid: d.domid, vcpu: v.id, kind: 'int3' });
      break;
    }
    if (tf) {
      if (!d.debuggerAttached) {
        crash(`#DB: single-step trap with no debugger attached, ${where(d, v)}`);
        break;
      }
      // Xen records the step in the guest's dr6 and sets no gdbsx_vcpu_event.
      cpu.dr[6] |= DR6_BS;
      d.pauseForDebugger();
      onEvent({ domid: d.domid, vcpu: v.id, kind: 'step' });
      break;
    }
    if (v.singleStep && d.debuggerAttached) {
      // Monitor trap flag: an exit after every instruction, invisible to the guest.
      d.pauseForDebugger();
      onEvent({ domid: d.domid, vcpu: v.id, kind: 'mtf' });
      break;
    }
    if (r === StepResult.Halt) {
      v.halted = true;
      break;
    }
  }
  return n;
}
