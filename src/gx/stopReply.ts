// Stop replies: T packets naming the thread, with the registers gdb needs first
// (pc, sp, fp) expedited to save a `g` round trip, and swbreak when negotiated.
import { Guest, StopEvent } from '../vcpu/guest';
import { hexByte } from './packet';
import { formatThreadId } from './threadId';

export interface StopReplyOptions {
  multiprocess: boolean;
  swbreak: boolean;
  hwbreak: boolean;
}

export function stopReply(g: Guest, ev: StopEvent, o: StopReplyOptions): string {
  if (ev.kind === 'exited') return `W${hexByte(ev.code)}${o.multiprocess ? `;process:${g.domid.toString(16)}` : ''}`;
  if (ev.kind === 'terminated') return `X${hexByte(ev.signal)}${o.multiprocess ? `;process:${g.domid.toString(16)}` : ''}`;
  let s = `T${hexByte(ev.signal)}`;
  if (ev.swbreak && o.swbreak) s += 'swbreak:;';
  if (ev.hwbreak && o.hwbreak) s += 'hwbreak:;';
  s += `thread:${formatThreadId(ev.vcpu, o.multiprocess, g.domid)};`;
  for (const regno of [g.arch.pcReg, g.arch.spReg, g.arch.fpReg]) {
    try {
      const v = g.readRegister(ev.vcpu, regno);
      if (v) s += `${hexByte(regno)}:${v.toString('hex')};`;
    } catch {
      // Expediting is an optimisation; gdb fetches with `g` otherwise.
    }
  }
  return s;
}
