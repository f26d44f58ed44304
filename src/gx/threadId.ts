// Thread ids on the wire: VCPU n is thread n+1 (0 means "any" and -1 "all" in the
// protocol, so no VCPU may be 0). With multiprocess, ids are p<pid>.<tid> and the
// pid is the domain id; a connection may hold several domains (processes).
import { ProtocolError } from './packet';

/**
 * Which process a thread id names: a domain id, 'all' (p-1), 'any' (p0), or undefined
 * when the id has no process part (the current process).
 */
export type PidSel = number | 'all' | 'any' | undefined;

export type ThreadSel = ({ kind: 'any' } | { kind: 'all' } | { kind: 'vcpu'; vcpu: number }) & { pid?: PidSel };

function parsePidPart(text: string, whole: string): PidSel {
  if (text === '-1') return 'all';
  if (!/^[0-9a-fA-F]{1,8}$/.test(text)) throw new ProtocolError(`bad thread id '${whole.slice(0, 24)}'`);
  const n = parseInt(text, 16);
  return n === 0 ? 'any' : n;
}

export function parseThreadId(s: string): ThreadSel {
  let t = s;
  let pid: PidSel;
  if (t.startsWith('p')) {
    const dot = t.indexOf('.');
    pid = parsePidPart(dot < 0 ? t.slice(1) : t.slice(1, dot), s);
    // "pPID" alone means every thread of that process.
    t = dot < 0 ? '-1' : t.slice(dot + 1);
  }
  if (t === '-1') return { kind: 'all', pid };
  if (!/^[0-9a-fA-F]{1,8}$/.test(t)) throw new ProtocolError(`bad thread id '${s.slice(0, 24)}'`);
  const n = parseInt(t, 16);
  if (n === 0) return { kind: 'any', pid };
  return { kind: 'vcpu', vcpu: n - 1, pid };
}

export function formatThreadId(vcpu: number, multiprocess: boolean, pid: number): string {
  const tid = (vcpu + 1).toString(16);
  return multiprocess ? `p${pid.toString(16)}.${tid}` : tid;
}
