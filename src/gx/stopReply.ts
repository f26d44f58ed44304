// Stop replies: T packets naming the thread, with the registers gdb needs first
// (pc, sp, fp) expedited to save a `g` round trip, swbreak/hwbreak when negotiated, and
// the data address of a watchpoint hit.
import { Guest, StopEvent } from '../vcpu/guest';
import { RegView } from './regView';
import { hexByte } from './packet';
import { formatThreadId } from './threadId';

export interface StopReplyOptions {
  multiprocess: boolean;
  swbreak: boolean;
  hwbreak: boolean;
  /** The registers the client was shown (their numbers are the ones expedited). */
  regs: RegView;
}

export function stopReply(g: Guest, ev: StopEvent, o: StopReplyOptions): string {
  if (ev.kind === 'exited') return `W${hexByte(ev.code)}${o.multiprocess ? `;process:${g.domid.toString(16)}` : ''}`;
  if (ev.kind === 'terminated') return `X${hexByte(ev.signal)}${o.multiprocess ? `;process:${g.domid.toString(16)}` : ''}`;
  let s = `T${hexByte(ev.signal)}`;
  if (ev.swbreak && o.swbreak) s += 'swbreak:;';
  if (ev.hwbreak && o.hwbreak) s += 'hwbreak:;';
  // watch/rwatch/awatch need no qSupported feature: gdb then compares the old and new values.
  if (ev.watch) s += `${ev.watch.kind}:${ev.watch.addr.toString(16)};`;
  s += `thread:${formatThreadId(ev.vcpu, o.multiprocess, g.domid)};`;
  const shown = o.regs.arch;
  for (const regno of [shown.pcReg, shown.spReg, shown.fpReg]) {
    try {
      const v = g.readRegister(ev.vcpu, o.regs.guestRegno[regno]);
      if (v) s += `${hexByte(regno)}:${v.toString('hex')};`;
    } catch {
      // Expediting is an optimisation; gdb fetches with `g` otherwise.
    }
  }
  return s;
}
