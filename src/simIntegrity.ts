// "Is the simulated guest as we found it?": the checks behind the safety tests and
// the --sim exit report. Not paused by anyone, no VCPU held, no trap flag set, the
// code exactly as in the ELF file (so no int3 of ours left), debugging off.
import fs from 'fs';
import { SimXen } from './xg/sim';
import { parseElf } from './xg/sim/elf';

export interface GuestIntegrity {
  debugRegsEnabled: boolean[];
  controllerPauseCount: number;
  vcpuPauseCounts: number[];
  trapFlags: boolean[];
  debuggerAttached: boolean;
  /** Addresses where the loaded code differs from the ELF file. */
  codeChanges: string[];
  /** Stock Xen's monitor interface: a ring still set up, events still enabled, VCPUs waiting on it. */
  monitorRing: boolean;
  monitorEvents: number[];
  vmEventPauseCounts: number[];
  /** Guest frames still mapped by the debugger. */
  liveMappings: number;
  ok: boolean;
}

export function guestIntegrity(sim: SimXen, domid: number, image: string): GuestIntegrity {
  const st = sim.domainState(domid);
  const elf = parseElf(fs.readFileSync(image), image);
  const text = elf.segments.find((s) => elf.entry >= s.vaddr && elf.entry < s.vaddr + s.memsz) ?? elf.segments[0];
  const live = sim.readVirt(domid, text.vaddr, text.data.length);
  const codeChanges: string[] = [];
  for (let i = 0; i < text.data.length; i++) {
    if (live[i] !== text.data[i]) codeChanges.push(`0x${(text.vaddr + BigInt(i)).toString(16)}: 0x${text.data[i].toString(16)} -> 0x${live[i].toString(16)}`);
  }
  const trapFlags = st.vcpuPauseCounts.map((_, v) => (sim.registers(domid, v).rflags & 0x100n) !== 0n);
  // No debug register of ours left enabled (the demo guest itself uses none).
  const debugRegs = st.vcpuPauseCounts.map((_, v) => sim.registers(domid, v).dr7 & 0xffn);
  const m = sim.monitorState(domid);
  const liveMappings = sim.liveMappings(domid);
  const ok = debugRegs.every((b) => b === 0n) && st.controllerPauseCount === 0 && st.vcpuPauseCounts.every((n) => n === 0) && !trapFlags.some(Boolean) &&
    !st.debuggerAttached && codeChanges.length === 0 && m.ring === undefined && m.events.length === 0 && m.vmEventPause.every((n) => n === 0) &&
    liveMappings === 0;
  return {
    debugRegsEnabled: debugRegs.map((b) => b !== 0n), controllerPauseCount: st.controllerPauseCount, vcpuPauseCounts: st.vcpuPauseCounts, trapFlags,
    debuggerAttached: st.debuggerAttached, codeChanges, monitorRing: m.ring !== undefined, monitorEvents: m.events, vmEventPauseCounts: m.vmEventPause,
    liveMappings, ok,
  };
}
