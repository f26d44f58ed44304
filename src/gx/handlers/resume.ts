// Run control: vCont (per-thread actions, all-stop), legacy c/s/C/S, and '?'. With
// multiprocess an action names processes too (`c:p2.-1` every VCPU of domain 2, `c:p-1.-1`
// or no thread at all: every domain held); domains no action names stay stopped.
import type { Reply } from '../reply';
import type { HandlerContext } from './context';
import { ProtocolError, parseHexBig } from '../packet';
import { ThreadSel, parseThreadId } from '../threadId';
import { stopReply } from '../stopReply';
import { Guest, ResumePlan } from '../../vcpu/guest';

export const VCONT_ACTIONS = 'vCont;c;C;s;S';

export function handleStatus(s: HandlerContext): Reply {
  return stopReply(s.guest, s.lastStop, s);
}

/** Whether an action's thread id covers VCPU `v` of domain `g` (`current`: the current domain). */
function covers(sel: ThreadSel, g: Guest, v: number, current: Guest, stoppedVcpu: number): boolean {
  const pid = sel.pid;
  // No process part: every process for "all threads", else the current one; p0 ("any"): the current one.
  const inProcess = pid === 'all' || (pid === undefined && sel.kind === 'all') ? true
    : typeof pid === 'number' ? pid === g.domid : g === current;
  if (!inProcess) return false;
  return sel.kind === 'all' || (sel.kind === 'any' && v === stoppedVcpu) || (sel.kind === 'vcpu' && sel.vcpu === v);
}

interface VContAction {
  readonly kind: string;
  readonly sel: ThreadSel;
}

/** The last vCont parsed: gdb sends the same one for every stepi. */
let lastActions: { text: string; actions: readonly VContAction[] } | undefined;

/** The actions of `vCont;...`, each with the threads it names. */
function vContActions(t: string): readonly VContAction[] {
  if (lastActions?.text === t) return lastActions.actions;
  const actions = t.slice('vCont;'.length).split(';').map((a): VContAction => {
    const colon = a.indexOf(':');
    const act = colon < 0 ? a : a.slice(0, colon);
    const sel: ThreadSel = colon < 0 ? { kind: 'all', pid: 'all' } : parseThreadId(a.slice(colon + 1));
    const kind = act[0];
    if (!kind || !'cCsStr'.includes(kind)) throw new ProtocolError(`unknown vCont action '${act}'`);
    if ((kind === 'C' || kind === 'S') && !/^[CS][0-9a-fA-F]{2}$/.test(act)) throw new ProtocolError(`bad vCont action '${act}'`);
    return { kind, sel };
  });
  lastActions = { text: t, actions };
  return actions;
}

/**
 * vCont;action[:thread]...: for each VCPU of each domain held the leftmost matching
 * action applies; VCPUs no action names stay stopped. Signals cannot be delivered to a
 * guest kernel, so C/S act as c/s. The plan of every domain held (empty for those not run).
 */
export function parseVCont(s: HandlerContext, t: string): Map<Guest, ResumePlan> {
  const actions = vContActions(t);
  const current = s.guest;
  for (const { sel } of actions) {
    const g = typeof sel.pid === 'number' ? s.holding(sel.pid) : current;
    if (!g) throw new ProtocolError(`no process ${sel.pid}: domain not attached on this connection`, 0x03 /* ESRCH */);
    if (sel.kind === 'vcpu' && !g.isOnline(sel.vcpu)) throw new ProtocolError(`no thread for VCPU ${sel.vcpu}`);
  }
  const plans = new Map<Guest, ResumePlan>();
  for (const g of s.domains) {
    const cont = new Set<number>();
    let step: number | undefined;
    const stopped = s.stoppedVcpuOf(g);
    for (const v of g.vcpus()) {
      const a = actions.find(({ sel }) => covers(sel, g, v, current, stopped));
      if (!a) continue;
      if (a.kind === 'c' || a.kind === 'C') cont.add(v);
      else if (a.kind === 's' || a.kind === 'S' || a.kind === 'r') {
        // All-stop gdb steps one thread at a time; a second step request is treated as "stay".
        if (step === undefined) step = v;
      }
    }
    plans.set(g, { step, cont });
  }
  return plans;
}

export function handleVCont(s: HandlerContext, t: string): Reply | Promise<Reply> {
  if (t === 'vCont?') return VCONT_ACTIONS;
  if (!t.startsWith('vCont;')) return '';
  return s.resume(parseVCont(s, t));
}

/** c[addr], s[addr], Csig[;addr], Ssig[;addr]: act on the Hc thread (or all / the current one). */
export function handleLegacyResume(s: HandlerContext, t: string): Promise<Reply> {
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
  return s.resume(new Map([[s.guest, plan]]));
}
