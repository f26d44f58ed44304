// Thread selection (H) and liveness (T).
import type { Reply, Session } from '../session';
import { ProtocolError } from '../packet';
import { parseThreadId } from '../threadId';

export function handleH(s: Session, t: string): Reply {
  const op = t[1];
  if (op !== 'g' && op !== 'c') return '';
  const sel = parseThreadId(t.slice(2));
  if (sel.kind === 'vcpu' && !s.guest.isOnline(sel.vcpu)) return 'E01';
  if (op === 'g') {
    s.gVcpu = sel.kind === 'vcpu' ? sel.vcpu : undefined; // 0/-1: the last stopped VCPU
    s.suffixVcpu = undefined; // an explicit Hg picks the memory thread too
  }
  else s.cVcpu = sel.kind === 'vcpu' ? sel.vcpu : sel.kind === 'all' ? 'all' : undefined;
  return 'OK';
}

export function handleThreadAlive(s: Session, t: string): Reply {
  const sel = parseThreadId(t.slice(1));
  if (sel.kind !== 'vcpu') throw new ProtocolError('T needs a thread id');
  return s.guest.isOnline(sel.vcpu) ? 'OK' : 'E01';
}
