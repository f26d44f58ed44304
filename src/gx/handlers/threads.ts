// Thread selection (H) and liveness (T). With multiprocess a thread id names its
// process (domain): Hg pP.T makes domain P the current one (registers, memory,
// breakpoints, the target description and `monitor` act on it).
import type { Reply } from '../reply';
import type { HandlerContext } from './context';
import type { Guest } from '../../vcpu/guest';
import { ProtocolError } from '../packet';
import { PidSel, parseThreadId } from '../threadId';

/** The domain a thread id's process part names: a held domain, or the current one (no pid, p0, p-1). */
export function domainOf(s: HandlerContext, pid: PidSel): Guest | undefined {
  return typeof pid === 'number' ? s.holding(pid) : s.guest;
}

export function handleH(s: HandlerContext, t: string): Reply {
  const op = t[1];
  if (op !== 'g' && op !== 'c') return '';
  const sel = parseThreadId(t.slice(2));
  const g = domainOf(s, sel.pid);
  if (!g) return 'E01';
  if (sel.kind === 'vcpu' && !g.isOnline(sel.vcpu)) return 'E01';
  if (op === 'g') {
    if (typeof sel.pid === 'number') s.select(sel.pid);
    s.gVcpu = sel.kind === 'vcpu' ? sel.vcpu : undefined; // 0/-1: the last stopped VCPU
    s.suffixVcpu = undefined; // an explicit Hg picks the memory thread too
  } else if (g === s.guest) {
    // Legacy c/s act on the current domain; an Hc of another one's thread has nothing to select there.
    s.cVcpu = sel.kind === 'vcpu' ? sel.vcpu : sel.kind === 'all' ? 'all' : undefined;
  }
  return 'OK';
}

export function handleThreadAlive(s: HandlerContext, t: string): Reply {
  const sel = parseThreadId(t.slice(1));
  if (sel.kind !== 'vcpu') throw new ProtocolError('T needs a thread id');
  const g = domainOf(s, sel.pid);
  return g?.isOnline(sel.vcpu) ? 'OK' : 'E01';
}
