// LLDB's packets (lldb/docs/resources/lldbgdbremote.md): QThreadSuffixSupported (a
// `;thread:<id>;` suffix on g/G/p/P instead of Hg first), QListThreadsInStopReply (the
// thread list, pcs and names in T replies), qThreadStopInfo<tid> (one thread's stop reply)
// and jThreadsInfo (all of them, JSON). gdb sends none of these.
import type { Reply } from '../reply';
import type { HandlerContext } from './context';
import { ProtocolError } from '../packet';
import { formatThreadId, parseThreadId } from '../threadId';
import { stopReply, threadFields } from '../stopReply';
import { jThreadsInfo } from '../lldbStop';

/** The reply to an LLDB packet, or undefined for any other packet. */
export function handleLldb(s: HandlerContext, t: string): Reply | undefined {
  switch (t) {
    case 'QThreadSuffixSupported':
      s.threadSuffix = true;
      return 'OK';
    case 'QListThreadsInStopReply':
      s.listThreadsInStopReply = true;
      return 'OK';
    // Only after a stop: while the guest runs the session answers nothing but 0x03.
    case 'jThreadsInfo': return jThreadsInfo(s.guest, s.lastStop, s.regs);
  }
  if (t.startsWith('qThreadStopInfo')) return threadStopInfo(s, t.slice('qThreadStopInfo'.length));
  return undefined;
}

/** qThreadStopInfo<tid>: the stopped VCPU gets the last stop reply, the others a T00 (stopped with it). */
function threadStopInfo(s: HandlerContext, id: string): Reply {
  const sel = parseThreadId(id);
  if (sel.kind !== 'vcpu' || !s.guest.isOnline(sel.vcpu)) return 'E01';
  const ev = s.lastStop;
  if (ev.kind !== 'stopped' || ev.vcpu === sel.vcpu) return stopReply(s.guest, ev, s);
  return `T00thread:${formatThreadId(sel.vcpu, s.multiprocess, s.guest.domid)};` + threadFields(s.guest, sel.vcpu, ev, s);
}

/**
 * g/G/p/P with LLDB's `;thread:<id>;` suffix (once QThreadSuffixSupported was asked): the
 * packet without it and the VCPU it names (undefined without a suffix: the Hg thread).
 */
export function splitThreadSuffix(s: HandlerContext, t: string): { text: string; vcpu: number | undefined } {
  const at = s.threadSuffix ? t.lastIndexOf(';thread:') : -1;
  if (at < 0 || !t.endsWith(';')) return { text: t, vcpu: undefined };
  const sel = parseThreadId(t.slice(at + ';thread:'.length, -1));
  if (sel.kind !== 'vcpu') return { text: t.slice(0, at), vcpu: undefined };
  if (!s.guest.isOnline(sel.vcpu)) throw new ProtocolError(`no thread for VCPU ${sel.vcpu}`, 0x03 /* ESRCH */);
  // LLDB sends no Hg once it has the suffix: the memory it reads next (the selected
  // thread's pc, stack) is in this thread's address space.
  s.suffixVcpu = sel.vcpu;
  return { text: t.slice(0, at), vcpu: sel.vcpu };
}
