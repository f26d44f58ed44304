// Run control: vCont (per-thread actions, all-stop), legacy c/s/C/S, and '?'.
import type { Reply, Session } from '../session';
import { ProtocolError, parseHexBig } from '../packet';
import { parseThreadId } from '../threadId';
import { stopReply } from '../stopReply';
import { ResumePlan } from '../../vcpu/guest';

export const VCONT_ACTIONS = 'vCont;c;C;s;S';

export function handleStatus(s: Session): Reply {
  return stopReply(s.guest, s.lastStop, s);
}

/**
 * vCont;action[:thread]...: for each VCPU the leftmost matching action applies;
 * VCPUs no action names stay stopped. Signals cannot be delivered to a guest
 * kernel, so C/S act as c/s.
 */
export function parseVCont(s: Session, t: string): ResumePlan {
  const actions = t.slice('vCont;'.length).split(';').map((a) => {
    const colon = a.indexOf(':');
    const act = colon < 0 ? a : a.slice(0, colon);
    const sel = colon < 0 ? { kind: 'all' as const } : parseThreadId(a.slice(colon + 1));
    const kind = act[0];
    if (!kind || !'cCsStr'.includes(kind)) throw new ProtocolError(`unknown vCont action '${act}'`);
    if ((kind === 'C' || kind === 'S') && !/^[CS][0-9a-fA-F]{2}$/.test(act)) throw new ProtocolError(`bad vCont action '${act}'`);
    return { kind, sel };
  });
  const cont = new Set<number>();
  let step: number | undefined;
  for (const v of s.guest.vcpus()) {
    const a = actions.find(({ sel }) => sel.kind === 'all' || (sel.kind === 'any' && v === s.stoppedVcpu) || (sel.kind === 'vcpu' && sel.vcpu === v));
    if (!a) continue;
    if (a.kind === 'c' || a.kind === 'C') cont.add(v);
    else if (a.kind === 's' || a.kind === 'S' || a.kind === 'r') {
      // All-stop gdb steps one thread at a time; a second step request is treated as "stay".
      if (step === undefined) step = v;
    }
  }
  for (const a of actions) {
    if (a.sel.kind === 'vcpu' && !s.guest.isOnline(a.sel.vcpu)) throw new ProtocolError(`no thread for VCPU ${a.sel.vcpu}`);
  }
  return { step, cont };
}

export function handleVCont(s: Session, t: string): Reply | Promise<Reply> {
  if (t === 'vCont?') return VCONT_ACTIONS;
  if (!t.startsWith('vCont;')) return '';
  const plan = parseVCont(s, t);
  return s.runUntilStop(() => s.guest.resume(plan));
}

/** c[addr], s[addr], Csig[;addr], Ssig[;addr]: act on the Hc thread (or all / the current one). */
export function handleLegacyResume(s: Session, t: string): Promise<Reply> {
  const op = t[0];
  let rest = t.slice(1);
  if (op === 'C' || op === 'S') {
    const semi = rest.indexOf(';');
    rest = semi < 0 ? '' : rest.slice(semi + 1);
  }
  const target = typeof s.cVcpu === 'number' ? s.cVcpu : s.stoppedVcpu;
  if (rest) {
    const pc = parseHexBig(rest);
    const buf = Buffer.alloc(s.guest.arch.ptrBytes);
    if (buf.length === 8) buf.writeBigUInt64LE(pc);
    else buf.writeUInt32LE(Number(pc & 0xffffffffn));
    s.guest.writeRegisters(target, new Map([[s.guest.arch.pcReg, buf]]));
  }
  let plan: ResumePlan;
  if (op === 's' || op === 'S') plan = { step: target, cont: new Set() };
  else if (typeof s.cVcpu === 'number') plan = { cont: new Set([s.cVcpu]) };
  else plan = { cont: new Set(s.guest.vcpus()) };
  return s.runUntilStop(() => s.guest.resume(plan));
}
