// Stop replies: T packets naming the thread, with the registers gdb needs first
// (pc, sp, fp) expedited to save a `g` round trip, swbreak/hwbreak when negotiated, and
// the data address of a watchpoint hit.
import { Guest, StopEvent } from '../vcpu/guest';
import { RegView } from './regView';
import { hexByte } from './packet';
import { formatThreadId } from './threadId';
import { expeditedRegs, lldbStopFields, readExpedited } from './lldbStop';

export interface StopReplyOptions {
  multiprocess: boolean;
  swbreak: boolean;
  hwbreak: boolean;
  /** The registers the client was shown (their numbers are the ones expedited). */
  regs: RegView;
  /** LLDB asked for QListThreadsInStopReply: add its fields (lldbStop.ts). */
  listThreadsInStopReply: boolean;
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
  return s + threadFields(g, ev.vcpu, ev, o);
}

/**
 * What follows `thread:` in a T reply for `vcpu`: LLDB's fields when asked for, then the
 * expedited registers (gdb: pc, sp, fp; LLDB gets flags too).
 */
export function threadFields(g: Guest, vcpu: number, ev: StopEvent, o: StopReplyOptions): string {
  let s = o.listThreadsInStopReply ? lldbStopFields(g, vcpu, ev, o.regs, o.multiprocess) : '';
  for (const [n, v] of readExpedited(g, vcpu, o.regs, expeditedRegs(o.regs, o.listThreadsInStopReply))) {
    s += `${hexByte(n)}:${v.toString('hex')};`;
  }
  return s;
}
