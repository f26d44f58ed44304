// Run control through Xen's monitor (vm_event) ring: the stock-Xen path for HVM and
// PVH guests (no CONFIG_GDBSX needed). Xen stops just the VCPU that hit an int3, a
// monitor-trap-flag step or a debug exception and posts a request on the ring; we
// pause the rest of the domain (all-stop) and answer the request when that VCPU runs
// again. The guest's own int3s and debug exceptions (Linux patches its text with
// int3) are handed back to it at once and never reach gdb.
import createDebug from 'debug';
import { MonitorEvent, X86EventType } from '../xg/domctl';
import { Errno, XenError, isXenError } from '../xg/errors';
import { MonitorRing } from '../xg/monitorRing';
import { Reason, VmEventRequest } from '../xg/vmEvent';
import { readField, writeField } from '../xg/context';
import { PollingRun, RunControl, RunHost, RunLimits, WaitOutcome } from './runControl';
import { ResumePlan, Sig, StopEvent } from './stop';

const log = createDebug('gdbsx:monitor');

/** DR6 bits: B0-B3 (which debug register hit) and BS (single-step). */
const DR6_BS = 0x4000n;
/** B0-B3 and BS: what a #DB handed back to the guest carries as pending_dbg. */
const DR6_CAUSES = 0x400fn;
const X86_VEC_DB = 1;
const X86_VEC_BP = 3;

interface HeldStop {
  req: VmEventRequest;
  /** DR6 bits our debug exception set in the guest's DR6 (cleared again before it runs). */
  dr6Bits?: bigint;
  stop: StopEvent & { kind: 'stopped' };
  /** Told to gdb already (a held stop is reported once, answered when its VCPU runs). */
  reported: boolean;
}

export class MonitorRun extends PollingRun implements RunControl {
  readonly name = 'monitor ring (vm_event)';
  readonly limits: RunLimits;
  readonly recovered: string | undefined;
  private readonly ring: MonitorRing;
  private readonly mtf: boolean;
  private readonly unsubscribe: () => void;
  /** Our stops whose requests are not answered yet: those VCPUs stay paused by Xen until they run again. */
  private readonly held: HeldStop[] = [];
  private armed: { vcpu: number; mtf: boolean } | undefined;
  private closed = false;

  private constructor(h: RunHost, ring: MonitorRing) {
    super(h);
    this.ring = ring;
    this.recovered = ring.recovered;
    this.mtf = (ring.capabilities & (1 << MonitorEvent.singlestep)) !== 0;
    const bug = h.vcpuSet.highGprsBug ? 'this Xen (4.21.0/4.21.1) zeroes r8-r15 on every VCPU context write' : undefined;
    this.limits = {
      hold: 'all VCPUs run together: stock Xen cannot keep single VCPUs paused (only a VCPU stopped at a trap stays stopped)',
      step: this.mtf ? undefined : bug ? `single-step needs the trap flag here (no monitor trap flag on this CPU), and ${bug}` : undefined,
      hwBreak: bug,
      watch: bug,
    };
    this.unsubscribe = ring.onEvent(() => this.wake?.());
  }

  /**
   * Set up the ring (its events come on only while needed: see wantEvents); leaves
   * nothing behind if any step fails.
   */
  static open(h: RunHost): MonitorRun {
    const ring = MonitorRing.open(h.xc, h.domid, h.vcpuSet.maxVcpu + 1);
    try {
      return new MonitorRun(h, ring);
    } catch (e) {
      ring.close();
      throw e;
    }
  }

  /**
   * Turn on only the events this run needs, and the others off: with no breakpoint of
   * ours the guest's own int3s and debug exceptions never leave it, and a session that
   * only looks (or continues and stops) changes nothing in how the guest handles traps.
   */
  private wantEvents(): void {
    const want = new Map<number, boolean>([
      [MonitorEvent.softwareBreakpoint, this.h.bps.size > 0],
      [MonitorEvent.debugException, this.h.hw.size > 0 || (this.armed !== undefined && !this.armed.mtf)],
    ]);
    if (this.mtf) want.set(MonitorEvent.singlestep, this.armed?.mtf === true);
    for (const [ev, on] of want) {
      if (on && !this.ring.isEnabled(ev)) this.ring.enable(ev, true);
      else if (!on && this.ring.isEnabled(ev)) this.ring.disable(ev);
    }
  }

  forgetEarlierEvents(): void {
    this.drain(undefined);
  }

  /** Whether the byte at `rip` (in guest frame `gfn`) is still an int3: the guest's own, if it is not ours. */
  private int3In(gfn: bigint, rip: bigint, vcpu: number): boolean {
    try {
      const m = this.h.xc.hc.mapForeign(this.h.domid, [gfn], false);
      try {
        if (m.errors[0] !== 0) return this.h.isInt3At(rip, vcpu);
        const b = Buffer.alloc(1);
        m.read(Number(rip & 0xfffn), b);
        return b[0] === 0xcc;
      } finally {
        m.unmap();
      }
    } catch {
      return this.h.isInt3At(rip, vcpu);
    }
  }

  /** A VCPU's DR6 as Xen has it now (the VCPU is stopped at its event). */
  private dr6Of(vcpu: number): bigint {
    this.h.vcpuSet.invalidate(vcpu);
    const c = this.h.vcpuSet.context(vcpu);
    return readField(c.buf, c.layout, 'dr6') ?? 0n;
  }

  /** Take the DR6 bits of our own debug exceptions back out of the guest's DR6. */
  private clearOurDr6(s: HeldStop): void {
    if (!s.dr6Bits || this.h.vcpuSet.highGprsBug) return;
    try {
      this.h.vcpuSet.invalidate(s.req.vcpu);
      const c = this.h.vcpuSet.context(s.req.vcpu);
      writeField(c.buf, c.layout, 'dr6', (readField(c.buf, c.layout, 'dr6') ?? 0n) & ~s.dr6Bits);
      this.h.vcpuSet.put(s.req.vcpu, c);
    } catch (e) {
      log('clearing DR6 of vcpu %d: %s', s.req.vcpu, (e as Error).message);
    }
  }

  /** Hand an exception back to the guest, then let its VCPU go. */
  private giveBack(req: VmEventRequest, vector: number, type: number, insnLen: number, cr2 = 0n): void {
    try {
      this.h.xc.injectEvent(this.h.domid, req.vcpu, vector, type, insnLen, cr2);
    } catch (e) {
      // EBUSY: an injection is already pending for this VCPU; the int3 will trap again.
      if (!isXenError(e, Errno.EBUSY)) log('inject vector %d on vcpu %d: %s', vector, req.vcpu, (e as Error).message);
    }
    this.ring.respond(req);
  }

  /** Sort one request: ours becomes a stop (its VCPU stays paused), the guest's goes back to it. */
  private classify(req: VmEventRequest): HeldStop | undefined {
    const stop = (extra: Partial<StopEvent & { kind: 'stopped' }>): HeldStop =>
      ({ req, stop: { kind: 'stopped', vcpu: req.vcpu, signal: Sig.TRAP, ...extra }, reported: false });
    switch (req.reason) {
      case Reason.softwareBreakpoint:
        if (this.h.bps.has(req.rip)) return stop({ swbreak: true });
        if (this.int3In(req.gfn, req.rip, req.vcpu)) {
          log('guest int3 at 0x%s on vcpu %d: given back', req.rip.toString(16), req.vcpu);
          this.giveBack(req, X86_VEC_BP, X86EventType.swException, req.insnLength || 1);
        } else {
          this.ring.respond(req); // our int3, removed since: the VCPU runs the original instruction
        }
        return undefined;
      case Reason.singlestep:
        if (this.armed?.vcpu === req.vcpu && this.armed.mtf) return stop({});
        this.ring.respond(req);
        return undefined;
      case Reason.debugException: {
        // Xen leaves pending_dbg (and the request's dr6) 0; the VCPU's DR6 may say more
        // (where Xen has it up to date: not always on SVM, whose DR6 lives in the VMCB).
        const dbg = req.pendingDbg | this.dr6Of(req.vcpu);
        // Our trap-flag step: a #DB from the VCPU we armed is ours whatever DR6 says. A
        // watchpoint the stepped instruction fired comes in the same #DB: reported with it.
        if (this.armed?.vcpu === req.vcpu && !this.armed.mtf) {
          const w = this.h.hw.match(dbg & 0xfn, undefined);
          return w ? { ...stop(this.h.hw.stopFields(w.slot)), dr6Bits: DR6_BS | w.bits } : { ...stop({}), dr6Bits: DR6_BS };
        }
        const hit = this.h.hw.match(dbg, req.rip);
        if (hit) return { ...stop(this.h.hw.stopFields(hit.slot)), dr6Bits: hit.bits };
        log('guest #DB on vcpu %d at 0x%s (dr6 0x%s): given back', req.vcpu, req.rip.toString(16), dbg.toString(16));
        this.giveBack(req, X86_VEC_DB, X86EventType.hwException, 0, dbg & DR6_CAUSES);
        return undefined;
      }
      default:
        this.ring.respond(req);
        return undefined;
    }
  }

  /** Take every request on the ring; our stops are held (the first new one returned), the rest answered. */
  private drain(plan: ResumePlan | undefined): HeldStop | undefined {
    let first: HeldStop | undefined;
    for (const req of this.ring.take()) {
      const s = this.classify(req);
      if (!s) continue;
      if (plan === undefined) {
        this.ring.respond(req); // from before we came: not ours to report
        continue;
      }
      this.held.push(s);
      this.clearOurDr6(s);
      first ??= s;
    }
    return first;
  }

  private staleStop(s: HeldStop): boolean {
    if (s.stop.swbreak) return !this.h.bps.has(s.req.rip);
    if (s.stop.hwbreak || s.stop.watch) return this.h.hw.size === 0;
    return false;
  }

  /** A held stop of a VCPU about to run that is still worth reporting (gdb then sees it without running anything). */
  private takeHeld(plan: ResumePlan): HeldStop | undefined {
    for (const s of this.held) {
      const runs = plan.cont.has(s.req.vcpu) || plan.step === s.req.vcpu;
      if (!runs || s.reported) continue;
      // Removed since, or "step over it": the VCPU just runs on when answered.
      if (this.staleStop(s) || plan.step === s.req.vcpu) continue;
      s.reported = true; // its VCPU stays stopped at the trap until it runs again
      return s;
    }
    return undefined;
  }

  /** Answer the held requests of VCPUs that run in `plan` (they were stopped at a trap). */
  private releaseRunning(plan: ResumePlan): void {
    for (let i = 0; i < this.held.length; i++) {
      const s = this.held[i];
      if (!plan.cont.has(s.req.vcpu) && plan.step !== s.req.vcpu) continue;
      this.held.splice(i--, 1);
      this.ring.respond(s.req);
    }
  }

  private arm(vcpu: number): void {
    if (this.mtf) {
      this.h.xc.debugOp(this.h.domid, vcpu, true);
      this.armed = { vcpu, mtf: true };
      return;
    }
    // AMD SVM has no monitor trap flag: the trap flag's #DB comes as a debug-exception event.
    this.h.vcpuSet.setTrapFlag(vcpu, true);
    this.armed = { vcpu, mtf: false };
  }

  private disarm(): void {
    const a = this.armed;
    this.armed = undefined;
    if (!a) return;
    try {
      if (a.mtf) this.h.xc.debugOp(this.h.domid, a.vcpu, false);
      else {
        this.h.vcpuSet.invalidate(a.vcpu);
        this.h.vcpuSet.setTrapFlag(a.vcpu, false);
      }
    } catch (e) {
      log('clearing the single-step on vcpu %d: %s', a.vcpu, (e as Error).message);
    }
  }

  async resume(plan: ResumePlan): Promise<StopEvent> {
    if (this.running) throw new Error('resume while running');
    const queued = this.takeQueuedInterrupt(plan);
    if (queued) return queued;
    const earlier = this.takeHeld(plan);
    if (earlier) return earlier.stop;
    const { xc, domid, vcpuSet: vcpus } = this.h;
    if (plan.cont.size === 0 && plan.step === undefined) return { kind: 'stopped', vcpu: vcpus.list()[0], signal: Sig.TRAP };
    if (plan.step !== undefined) this.arm(plan.step);
    this.wantEvents();
    this.releaseRunning(plan);

    this.running = true;
    this.resumedOnce = true;
    this.interruptRequested = false;
    let ours: HeldStop | undefined; // set by the wait's check (a closure TypeScript cannot follow)
    let outcome: WaitOutcome;
    try {
      const latest = this.unpauseOurs();
      outcome = await this.waitForPause(plan.step !== undefined && plan.cont.size === 0 ? this.h.stepTimeoutMs : 0, latest, () => {
        ours = this.drain(plan);
        if (!ours) return undefined;
        this.pause(); // all-stop: the rest of the domain stops too
        return ours.stop;
      });
    } finally {
      this.running = false;
    }
    if (this.released) return { kind: 'terminated', signal: Sig.KILL, message: 'detached\n' };
    // A stop of our own holds our pause already, as do Ctrl-C and a timeout; someone
    // else's `xl pause` gets ours beside it in pausedStop().
    try {
      this.drain(plan); // other VCPUs' traps that raced with the pause: held or given back
    } finally {
      this.disarm();
    }
    this.h.invalidate();
    if (typeof outcome === 'object') {
      if (ours && outcome === ours.stop) ours.reported = true;
      return outcome;
    }
    if (plan.step !== undefined && outcome === 'timeout') {
      return {
        kind: 'stopped', vcpu: plan.step, signal: Sig.TRAP,
        message: `the single-step on VCPU ${plan.step} did not complete within ${this.h.stepTimeoutMs} ms (the VCPU may be halted); the guest was paused instead\n`,
      };
    }
    return this.pausedStop(plan, outcome === 'timeout' ? 'interrupted' : outcome);
  }

  release(): void {
    if (this.closed) return;
    this.closed = true;
    this.released = true;
    this.wake?.();
    this.unsubscribe();
    this.disarm();
    if (this.mtf) {
      for (const v of this.h.vcpuSet.list()) {
        try { this.h.xc.debugOp(this.h.domid, v, false); } catch { /* best effort */ }
      }
    }
    for (const s of this.held.splice(0)) {
      try { this.ring.respond(s.req); } catch (e) { log('answering vcpu %d: %s', s.req.vcpu, (e as Error).message); }
    }
    // Answers whatever is still pending, turns the events off and frees the ring.
    this.ring.close();
  }

  unpauseAtDetach(): void {
    this.unpauseOurs();
  }
}

export function isMonitorUnavailable(e: unknown): boolean {
  return e instanceof XenError && (e.errno === Errno.EOPNOTSUPP || e.errno === Errno.ENOSYS || e.errno === Errno.ENODEV);
}
