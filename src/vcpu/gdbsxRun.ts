// Run control through gdbsx's domctls (hypervisors built with CONFIG_GDBSX): with
// debugging on, Xen pauses the domain on a guest-kernel int3 or a single-step trap and
// reports the VCPU through gdbsx_domstatus; gdbsx_pausevcpu holds single VCPUs.
import createDebug from 'debug';
import { DomainInfo, VcpuEvent } from '../xg/domctl';
import { Errno, isXenError } from '../xg/errors';
import { writeField } from '../xg/context';
import { PollingRun, RunControl, RunHost, RunLimits, WaitOutcome } from './runControl';
import { ResumePlan, Sig, StopEvent } from './stop';

const log = createDebug('gdbsx:vcpu');

/** Longest burst with debugging off in which the guest takes its own int3s (ms). */
const BURST_MS = 50;
/** Meetings in a row of a guest int3 that memory no longer shows before the guest gets it anyway. */
const GONE_AGAIN_MAX = 3;

interface PendingEvent {
  vcpu: number;
  /** The int3 address when the event was one of our breakpoints. */
  bp?: bigint;
  /** The int3 address when it was the guest's own (e.g. Linux patching its code). */
  guestInt3?: bigint;
}

export class GdbsxRun extends PollingRun implements RunControl {
  readonly name = 'gdbsx domctls';
  readonly limits: RunLimits;
  private readonly hvm: boolean;
  private readonly pending: PendingEvent[] = [];
  private unsubscribe: (() => void) | undefined;
  /** VCPUs we hold with gdbsx_pausevcpu during a resume, and the step we armed. */
  private readonly held: number[] = [];
  private armed: { vcpu: number; mtf: boolean } | undefined;
  /** Whether Xen single-steps this domain with the monitor trap flag (learnt at the first step). */
  private mtf: boolean | undefined;
  /** Per VCPU: the guest int3 it met that memory no longer shows, and how often in a row. */
  private readonly goneAgain = new Map<number, { addr: bigint; n: number }>();
  /** Bursts in which the guest handled its own int3s. */
  private guestInt3Bursts = 0;

  get counters(): Readonly<Record<string, number>> {
    return { 'guest int3s handled by the guest': this.guestInt3Bursts };
  }

  constructor(h: RunHost, hvm: boolean) {
    super(h);
    this.hvm = hvm;
    // Verified on PV (real Xen) only: in the lab, debug registers set through
    // setvcpucontext never fired for PVH. Unsupported rather than silently inert; the
    // same debug registers carry watchpoints.
    this.limits = hvm ? {
      hwBreak: 'hardware breakpoints are not offered for HVM/PVH guests on the gdbsx path',
      watch: 'hardware watchpoints (debug registers) are not offered for HVM/PVH guests on the gdbsx path',
    } : {};
    this.unsubscribe = h.xc.hc.onDebuggerEvent?.(() => this.wake?.());
  }

  /** Turn debugging on (Xen then hands guest-kernel traps to us). */
  static enable(h: RunHost): void {
    h.xc.setDebugging(h.domid, true);
  }

  forgetEarlierEvents(): void {
    this.drainEvents();
    this.pending.length = 0;
  }

  /** Read-to-clear every pending debug event, rewinding VCPUs that hit our int3. */
  private drainEvents(): void {
    const { xc, domid, vcpuSet: vcpus, bps } = this.h;
    for (let i = 0; i <= vcpus.maxVcpu + 1; i++) {
      const st = xc.domStatus(domid);
      if (st.vcpuId < 0 || st.vcpuId === 0xffffffff) break;
      this.owed++; // each event came with its trap's pause (domain_pause_for_debugger)
      const ev: PendingEvent = { vcpu: st.vcpuId };
      if (st.vcpuEvent === VcpuEvent.breakpoint) {
        // int3 is a trap: Xen leaves rip after it. Put it back on our breakpoint.
        const bp = vcpus.pc(st.vcpuId) - 1n;
        vcpus.setPc(st.vcpuId, bp);
        if (bps.has(bp)) ev.bp = bp;
        else {
          // The guest's own int3 (Xen gives every kernel int3 to the debugger), or ours
          // removed since. Linux plants them while patching live code (static keys,
          // jump labels, ftrace) and for kprobes: resuming after it would run the middle
          // of the instruction being patched. Back onto it: the VCPU then runs what is
          // there when it resumes (the finished patch), or, int3 still there, the guest
          // handles it itself (letGuestHandle). Never a stop for gdb.
          ev.guestInt3 = bp;
        }
      }
      log('event: vcpu %d, type %d%s', ev.vcpu, st.vcpuEvent, ev.bp !== undefined ? ` at our int3 0x${ev.bp.toString(16)}` :
        ev.guestInt3 !== undefined ? ` at the guest's int3 0x${ev.guestInt3.toString(16)}` : '');
      this.pending.push(ev);
    }
  }

  /** A queued trap not to report: its int3 gone since (removed by gdb), or the guest's own. */
  private stale(ev: PendingEvent): boolean {
    if (ev.bp !== undefined) return !this.h.bps.has(ev.bp);
    return ev.guestInt3 !== undefined;
  }

  /** A queued event still worth reporting for a VCPU about to run. */
  private takePending(plan: ResumePlan): PendingEvent | undefined {
    for (let i = 0; i < this.pending.length; i++) {
      const ev = this.pending[i];
      const runs = plan.cont.has(ev.vcpu) || plan.step === ev.vcpu;
      if (!runs) continue;
      // A breakpoint gdb removed since: the VCPU just runs the original instruction.
      if (this.stale(ev)) {
        this.pending.splice(i--, 1);
        continue;
      }
      // Stepping a VCPU that sits on a reported breakpoint means "step over it".
      if (plan.step === ev.vcpu) {
        this.pending.splice(i--, 1);
        continue;
      }
      this.pending.splice(i, 1);
      return ev;
    }
    return undefined;
  }

  /**
   * Undo the pauses we owe (ours and our traps'), no more: someone else's `xl pause`
   * stays. Careful: the guest may run and trap again between two of our unpauses (a
   * step often has): once it has run, what we still thought we owed was too many
   * (an eventless #DB counted twice, say); undoing it would undo the new trap's pause
   * and let a VCPU run on from just after an int3 (seen in the lab: #UD at ktime_get+1).
   */
  unpauseFully(stepFrom?: bigint): DomainInfo {
    const { xc, domid, vcpuSet: vcpus } = this.h;
    this.h.invalidate(); // the guest is about to run: cached memory goes stale
    const armed = this.armed;
    // Read after each unpause; before the first only if none is made (one domctl less per resume).
    let info: DomainInfo | undefined;
    while (this.owed > 0) {
      try {
        xc.unpauseDomain(domid);
      } catch (e) {
        if (!isXenError(e, Errno.EINVAL)) throw e;
        this.owed = 0; // not paused at all: someone unpaused it for us
        break;
      }
      this.owed--;
      info = xc.getDomainInfo(domid);
      if (!info.paused) {
        this.owed = 0; // running: whatever we still counted was not there
        break;
      }
      if (this.owed === 0) break;
      // Still paused with more to undo: has the guest run (and trapped) meanwhile?
      const rest = this.owed;
      const queued = this.pending.length;
      this.drainEvents(); // counts the new traps' pauses
      // (Xen's CPU time is no help: coarse, and not even monotonic under nested virtualization.)
      let newTrap = this.pending.length > queued;
      if (!newTrap && armed !== undefined && stepFrom !== undefined) {
        vcpus.invalidate(armed.vcpu);
        newTrap = vcpus.pc(armed.vcpu) !== stepFrom;
      }
      if (newTrap) {
        this.owed -= rest; // it ran, so it had been fully unpaused: the rest was not there
        break;
      }
    }
    info ??= xc.getDomainInfo(domid);
    if (!info.paused) this.foreignPaused = false;
    return info; // the latest state: a step has often trapped already
  }

  async resume(plan: ResumePlan): Promise<StopEvent> {
    if (this.running) throw new Error('resume while running');
    const queued = this.takeQueuedInterrupt(plan);
    if (queued) return queued;
    const ev = this.takePending(plan);
    if (ev) return this.stopFor(ev);

    const { xc, domid, vcpuSet: vcpus } = this.h;
    const runs = new Set(plan.cont);
    if (plan.step !== undefined) runs.add(plan.step);
    const held = vcpus.list().filter((v) => !runs.has(v));
    if (runs.size === 0) return { kind: 'stopped', vcpu: vcpus.list()[0], signal: Sig.TRAP };

    const stepFrom = plan.step !== undefined ? vcpus.pc(plan.step) : undefined;
    if (plan.step !== undefined) this.armed = { vcpu: plan.step, mtf: this.armStep(plan.step) };
    try {
      for (const v of held) {
        xc.pauseVcpu(domid, v);
        this.held.push(v);
      }
    } catch (e) {
      this.settle();
      throw e;
    }

    vcpus.invalidate();
    this.running = true;
    this.resumedOnce = true;
    this.interruptRequested = false;
    let outcome: WaitOutcome;
    // Still paused by someone else since the last stop, no trap of ours: it did not run
    // (a step cannot have been taken), and gdb is told again.
    let foreign = false;
    try {
      const queued = this.pending.length;
      const latest = this.unpauseFully(stepFrom);
      foreign = latest.paused && this.foreignPaused && this.pending.length === queued;
      outcome = foreign ? 'paused' : await this.waitForPause(plan.step !== undefined && plan.cont.size === 0 ? this.h.stepTimeoutMs : 0, latest);
    } finally {
      this.running = false;
    }
    // release() ran meanwhile (connection lost, signal): it has already cleaned up.
    if (this.released) return { kind: 'terminated', signal: Sig.KILL, message: 'detached\n' };
    if (typeof outcome === 'object') {
      if (outcome.kind === 'stopped') this.settle();
      return outcome;
    }
    this.settle();
    this.drainEvents();

    if (foreign) return this.pausedStop(plan, 'paused');
    // A #DB (a step, a hardware breakpoint) pauses without an event: counted here, one
    // per VCPU that took one. When unsure, count it: one pause too many undoes
    // someone's `xl pause` at worst; one too few would leave the guest paused for good.
    const stepped = plan.step !== undefined && (outcome === 'paused' || vcpus.pc(plan.step) !== stepFrom);
    const hwHits = this.hwHitsOf(runs);
    this.owed += hwHits.filter((v) => v !== plan.step).length + (stepped || hwHits.includes(plan.step ?? -1) ? 1 : 0);
    // The guest's own int3s: never a stop. Sitting on them (rewound), their VCPUs would
    // only meet them again; unless something else is to be reported, let the guest
    // handle them and go on running (or report the step, if the stepped VCPU met one).
    const guestInt3s = this.pending.filter((e) => e.guestInt3 !== undefined && runs.has(e.vcpu));
    // Only events of VCPUs that ran: an older hit of a held VCPU stays queued (reporting
    // it as the end of another thread's step would break gdb's step-over).
    const bpHit = this.takeEventOf(runs);
    if (bpHit) return this.stopFor(bpHit);
    const hwHit = this.takeHwHit(runs);
    if (hwHit !== undefined) return { kind: 'stopped', vcpu: hwHit.vcpu, signal: Sig.TRAP, ...this.h.hw.stopFields(hwHit.slot) };
    if (guestInt3s.length > 0) log('guest int3s of vcpus %o, outcome %o', guestInt3s.map((e) => e.vcpu), outcome);
    if (guestInt3s.length > 0 && outcome === 'paused') {
      const steppedOnIt = guestInt3s.some((e) => e.vcpu === plan.step);
      await this.letGuestHandle(guestInt3s, held);
      if (this.released) return { kind: 'terminated', signal: Sig.KILL, message: 'detached\n' };
      if (steppedOnIt && plan.step !== undefined) return { kind: 'stopped', vcpu: plan.step, signal: Sig.TRAP };
      if (plan.step === undefined || vcpus.pc(plan.step) === stepFrom) return this.resume(plan);
    }
    if (plan.step !== undefined && outcome === 'timeout') {
      return {
        kind: 'stopped', vcpu: plan.step, signal: Sig.TRAP,
        message: `the single-step on VCPU ${plan.step} did not trap within ${this.h.stepTimeoutMs} ms (a PV VCPU in guest user mode cannot be stepped by Xen); the guest was paused instead\n`,
      };
    }
    if (plan.step !== undefined && outcome === 'paused') return { kind: 'stopped', vcpu: plan.step, signal: Sig.TRAP };
    return this.pausedStop(plan, outcome === 'timeout' ? 'interrupted' : outcome);
  }

  /**
   * Let the guest take its own int3s as it would with no debugger: a short burst with
   * debugging off (Xen then delivers the #BP to the guest's handler) and our int3s out
   * (met then, one would be an unknown int3 to the guest), the VCPUs gdb holds still
   * held, until each VCPU that met one is past it (in its handler, or the patch done),
   * at most BURST_MS. The domain is paused by us before and after.
   */
  private async letGuestHandle(evs: PendingEvent[], held: readonly number[]): Promise<void> {
    const { xc, domid, vcpuSet: vcpus } = this.h;
    // Gone from memory: patched meanwhile, and the VCPU runs the finished instruction.
    // Unless it meets it again and again at once: then what it executes is not what
    // memory says (seen in the lab under QEMU/TCG), and only the guest can deal with
    // it, as it would with no debugger.
    const waiting = evs.filter((e) => {
      if (this.h.isInt3At(e.guestInt3 as bigint, e.vcpu)) return true;
      const again = this.goneAgain.get(e.vcpu);
      const n = again !== undefined && again.addr === e.guestInt3 ? again.n + 1 : 1;
      this.goneAgain.set(e.vcpu, { addr: e.guestInt3 as bigint, n });
      return n >= GONE_AGAIN_MAX;
    });
    if (waiting.length === 0) {
      log('guest int3s at %o: gone already', evs.map((e) => '0x' + (e.guestInt3 as bigint).toString(16)));
      return;
    }
    for (const e of waiting) this.goneAgain.delete(e.vcpu);
    const heldNow: number[] = [];
    let putBack: (() => void) | undefined;
    let debuggingOff = false;
    try {
      for (const v of held) {
        xc.pauseVcpu(domid, v);
        heldNow.push(v);
      }
      putBack = this.h.bps.lift();
      xc.setDebugging(domid, false);
      debuggingOff = true;
      this.unpauseFully();
      const start = Date.now();
      for (;;) {
        if (this.released) return; // detach ran meanwhile (it restores everything itself)
        vcpus.invalidate();
        const past = waiting.every((e) => vcpus.pc(e.vcpu) !== e.guestInt3 || !this.h.isInt3At(e.guestInt3 as bigint, e.vcpu));
        if (past || Date.now() - start > BURST_MS) break;
        await this.nap(0);
      }
      this.pause();
      this.guestInt3Bursts++;
      log('guest int3s at %o: handled by the guest in %d ms', waiting.map((e) => '0x' + (e.guestInt3 as bigint).toString(16)), Date.now() - start);
    } finally {
      if (!this.released) {
        if (debuggingOff) xc.setDebugging(domid, true);
        putBack?.();
        for (const v of heldNow) {
          try { xc.unpauseVcpu(domid, v); } catch (e) { log('unpausevcpu %d: %s', v, (e as Error).message); }
        }
        vcpus.invalidate();
        this.h.invalidate();
      }
    }
  }

  /** The VCPUs (of those that ran) whose DR6 shows a hit of one of our hardware breakpoints. */
  private hwHitsOf(vcpus: ReadonlySet<number>): number[] {
    const { hw } = this.h;
    if (hw.size === 0) return [];
    return [...vcpus].filter((v) => hw.hit(this.h.vcpuSet.context(v)) !== undefined);
  }

  /** A VCPU (of those that ran) stopped on one of our debug registers, and the slot; our DR6 bits are cleared. */
  private takeHwHit(vcpus: ReadonlySet<number>): { vcpu: number; slot: number } | undefined {
    const { hw } = this.h;
    if (hw.size === 0) return undefined;
    for (const v of [...vcpus].sort((a, b) => a - b)) {
      const c = this.h.vcpuSet.context(v);
      const hit = hw.hit(c);
      if (!hit) continue;
      writeField(c.buf, c.layout, 'dr6', hit.dr6);
      this.h.vcpuSet.put(v, c);
      return { vcpu: v, slot: hit.slot };
    }
    return undefined;
  }

  /** The first queued event of a VCPU in `vcpus` whose breakpoint (if any) is still there. */
  private takeEventOf(vcpus: ReadonlySet<number>): PendingEvent | undefined {
    for (let i = 0; i < this.pending.length; i++) {
      const ev = this.pending[i];
      if (!vcpus.has(ev.vcpu)) continue;
      this.pending.splice(i--, 1);
      if (!this.stale(ev)) return ev;
    }
    return undefined;
  }

  private stopFor(ev: PendingEvent): StopEvent {
    return { kind: 'stopped', vcpu: ev.vcpu, signal: Sig.TRAP, swbreak: ev.bp !== undefined };
  }

  /** Single-step: MTF where Xen offers it (HVM on VMX, invisible to the guest), else TF. */
  private armStep(vcpu: number): boolean {
    if (this.hvm && this.mtf !== false) {
      try {
        this.h.xc.debugOp(this.h.domid, vcpu, true);
        this.mtf = true;
        return true;
      } catch (e) {
        if (!isXenError(e, Errno.EOPNOTSUPP) && !isXenError(e, Errno.EINVAL)) throw e;
        this.mtf = false; // not on this CPU (SVM): don't ask again every step
      }
    }
    this.h.vcpuSet.setTrapFlag(vcpu, true);
    return false;
  }

  /**
   * With the domain paused: let held VCPUs go again (they stay stopped while the
   * domain is paused) and take the single-step off.
   */
  private settle(): void {
    const { xc, domid, vcpuSet: vcpus } = this.h;
    for (const v of this.held.splice(0)) {
      try { xc.unpauseVcpu(domid, v); } catch (e) { log('unpausevcpu %d: %s', v, (e as Error).message); }
    }
    const armed = this.armed;
    this.armed = undefined;
    vcpus.invalidate();
    if (!armed) return;
    try {
      if (armed.mtf) xc.debugOp(domid, armed.vcpu, false);
      else vcpus.setTrapFlag(armed.vcpu, false);
    } catch (e) {
      log('clearing single-step on vcpu %d: %s', armed.vcpu, (e as Error).message);
    }
    // The stepped VCPU's cached context is the one just written (fetched after the run,
    // TF cleared): the stop reply reads it without another getvcpucontext.
    if (armed.mtf) vcpus.invalidate();
  }

  release(): void {
    this.released = true;
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    const { xc, domid, vcpuSet: vcpus } = this.h;
    this.wake?.();
    vcpus.invalidate();
    try {
      this.drainEvents(); // rewinds VCPUs sitting just after one of our int3s
    } catch (e) {
      log('detach: drain events: %s', (e as Error).message);
    }
    this.settle();
    for (const v of vcpus.list()) {
      try { vcpus.setTrapFlag(v, false); } catch { /* offline or gone */ }
      if (this.mtf) {
        try { xc.debugOp(domid, v, false); } catch { /* best effort */ }
      }
    }
    vcpus.invalidate();
    try { xc.setDebugging(domid, false); } catch (e) { log('detach: setdebugging: %s', (e as Error).message); }
  }

  /** Detach undoes our pauses and our traps'; someone else's stay. */
  unpauseAtDetach(): void {
    this.unpauseFully();
  }
}
