// Thread ids on the wire: VCPU n is thread n+1 (0 means "any" and -1 "all" in the
// protocol, so no VCPU may be 0). With multiprocess, ids are p<pid>.<tid> and the
// pid is the domain id.
import { ProtocolError } from './packet';

export type ThreadSel = { kind: 'any' } | { kind: 'all' } | { kind: 'vcpu'; vcpu: number };

export function parseThreadId(s: string): ThreadSel {
  let t = s;
  if (t.startsWith('p')) {
    const dot = t.indexOf('.');
    // "pPID" alone means every thread of that process.
    t = dot < 0 ? '-1' : t.slice(dot + 1);
  }
  if (t === '-1') return { kind: 'all' };
  if (!/^[0-9a-fA-F]{1,8}$/.test(t)) throw new ProtocolError(`bad thread id '${s.slice(0, 24)}'`);
  const n = parseInt(t, 16);
  if (n === 0) return { kind: 'any' };
  return { kind: 'vcpu', vcpu: n - 1 };
}

export function formatThreadId(vcpu: number, multiprocess: boolean, pid: number): string {
  const tid = (vcpu + 1).toString(16);
  return multiprocess ? `p${pid.toString(16)}.${tid}` : tid;
}
