// LLDB's additions to stop information (lldb/docs/resources/lldbgdbremote.md, "Stop reply
// packet extensions", qThreadStopInfo, jThreadsInfo). With them LLDB learns every VCPU's
// name, pc, sp and fp from the stop itself instead of asking register by register for each
// thread after each stop. Sent only to a client that asked with QListThreadsInStopReply
// (gdb never does), so gdb's stop replies stay as they were.
import type { Guest, StopEvent } from '../vcpu/guest';
import type { RegView } from './regView';
import { escapeBinary } from './packet';
import { formatThreadId } from './threadId';

/** A VCPU's thread name, as LLDB and gdb (qXfer:threads) show it. */
export function vcpuName(vcpu: number): string {
  return `VCPU ${vcpu}`;
}

/** The registers expedited with a stop: pc, sp, fp and flags (lldbgdbremote.md, "Best Practices"). */
export function expeditedRegs(regs: RegView, withFlags: boolean): number[] {
  const a = regs.arch;
  const nums = [a.pcReg, a.spReg, a.fpReg];
  if (withFlags) {
    const flags = a.regs.findIndex((r) => r.type === 'i386_eflags');
    if (flags >= 0) nums.push(flags);
  }
  return nums;
}

/** Register number (shown numbering) -> little-endian value, for those the VCPU holds. */
export function readExpedited(g: Guest, vcpu: number, regs: RegView, nums: readonly number[]): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  for (const n of nums) {
    try {
      const v = g.readRegister(vcpu, regs.guestRegno[n]);
      if (v) out.set(n, v);
    } catch {
      // Expediting saves round trips only: the client reads what is missing.
    }
  }
  return out;
}

/** LLDB's `reason` for the thread that stopped: only where the stop says so for certain. */
function reasonOf(ev: StopEvent, vcpu: number): string | undefined {
  if (ev.kind !== 'stopped' || ev.vcpu !== vcpu) return undefined;
  return ev.swbreak || ev.hwbreak ? 'breakpoint' : undefined;
}

/**
 * The fields LLDB adds to a T reply for `vcpu`: its name, the whole thread list and each
 * thread's pc (QListThreadsInStopReply), so no qfThreadInfo and no per-thread pc read follow.
 * The stopping VCPU's reply also carries `jstopinfo` (hex JSON, the key lldb-server uses
 * for the threads' stop information): here every VCPU's, with its pc/sp/fp/flags, so LLDB
 * sends neither qThreadStopInfo nor register reads per VCPU.
 */
export function lldbStopFields(g: Guest, vcpu: number, ev: StopEvent, regs: RegView, multiprocess: boolean): string {
  const vcpus = g.vcpus();
  const pcs = vcpus.map((v) => {
    try {
      return g.pc(v).toString(16);
    } catch {
      return '0';
    }
  });
  const reason = reasonOf(ev, vcpu);
  // The name has no ':', ';' or packet characters, so it goes as text (`hexname` otherwise).
  let s = `name:${vcpuName(vcpu)};${reason ? `reason:${reason};` : ''}` +
    `threads:${vcpus.map((v) => formatThreadId(v, multiprocess, g.domid)).join(',')};thread-pcs:${pcs.join(',')};`;
  if (ev.kind === 'stopped' && ev.vcpu === vcpu) {
    s += `jstopinfo:${Buffer.from(JSON.stringify(threadInfos(g, ev, regs)), 'utf8').toString('hex')};`;
  }
  return s;
}

/** One thread's entry in jThreadsInfo: what its stop reply says, registers keyed in decimal. */
interface ThreadInfo {
  tid: number;
  name: string;
  signal: number;
  reason?: string;
  registers: Record<string, string>;
}

/** Every VCPU's stop information: name, signal (0: stopped with the others), reason, pc/sp/fp/flags. */
function threadInfos(g: Guest, ev: StopEvent, regs: RegView): ThreadInfo[] {
  const nums = expeditedRegs(regs, true);
  return g.vcpus().map((v) => {
    const registers: Record<string, string> = {};
    for (const [n, b] of readExpedited(g, v, regs, nums)) registers[String(n)] = b.toString('hex');
    const stoppedHere = ev.kind === 'stopped' && ev.vcpu === v;
    const reason = reasonOf(ev, v);
    // tid is decimal in JSON; VCPU n is thread n+1 as everywhere else.
    return { tid: v + 1, name: vcpuName(v), signal: stoppedHere ? ev.signal : 0, ...(reason ? { reason } : {}), registers };
  });
}

/** jThreadsInfo: every VCPU's stop information in one reply (JSON, binary-escaped). */
export function jThreadsInfo(g: Guest, ev: StopEvent, regs: RegView): Buffer {
  return escapeBinary(Buffer.from(JSON.stringify(threadInfos(g, ev, regs)), 'utf8'));
}
