// Run control: how the guest is run and stopped. One interface, three paths chosen at
// attach by what the hypervisor offers: gdbsx's domctls (CONFIG_GDBSX builds), Xen's
// monitor ring (stock Xen, HVM/PVH guests; monitorRun.ts), and pause/unpause only
// (stock Xen, PV guests: nothing can trap there). What they share lives here: the
// wait for a stop, noticing death and shutdown, Ctrl-C, and undoing pauses.
import { DomainInfo, ShutdownReason } from '../xg/domctl';
import { Errno, isXenError } from '../xg/errors';
import { XenControl } from '../xg/xenctl';
import { SwBreakpoints } from './breakpoints';
import { HwBreakpoints } from './hwBreakpoints';
import { GuestMemory } from './memory';
import { RefusedError, ResumePlan, Sig, StopEvent } from './stop';
export { RefusedError } from './stop';
import { VcpuSet } from './vcpus';

/** What a run-control path may touch: the Guest facade hands it over at attach. */
export interface RunHost {
  readonly xc: XenControl;
  readonly domid: number;
  readonly vcpuSet: VcpuSet;
  readonly mem: GuestMemory;
  readonly bps: SwBreakpoints;
  readonly hw: HwBreakpoints;
  readonly stepTimeoutMs: number;
  /** Whether the byte at `addr` (as `vcpu` sees it) is an int3 now. */
  isInt3At(addr: bigint, vcpu: number): boolean;
  /** The guest is about to run: cached contexts, memory and mappings go stale. */
  invalidate(): void;
}

/** Why a path cannot do something; absent where it can. Shown to the user as given. */
export interface RunLimits {
  swBreak?: string;
  hwBreak?: string;
  /** Watchpoints (data breakpoints in the debug registers). */
  watch?: string;
  step?: string;
  /** Keeping some VCPUs stopped while others run (scheduler-locking, per-thread vCont). */
  hold?: string;
}

export interface RunControl {
  readonly name: string;
  readonly limits: RunLimits;
  readonly isRunning: boolean;
  /** The guest was resumed at least once (detach then leaves it running even if it came paused). */
  readonly resumedOnce: boolean;
  /** Run per the plan; resolves at the next stop, every VCPU stopped (all-stop). */
  resume(plan: ResumePlan): Promise<StopEvent>;
  /** Ctrl-C: stop now if running, else remember it for the next resume. */
  interrupt(): void;
  /** Forget an interrupt remembered for the next resume (Guest.halt() came after the stop). */
  cancelInterrupt(): void;
  /** Events and traps from before we came are not ours to report. */
  forgetEarlierEvents(): void;
  /**
   * Detach, with the domain paused by the caller: answer or drop pending events,
   * take steps off, and undo whatever this path turned on (debugging, the monitor ring).
   * Never throws.
   */
  release(): void;
  /** Last step of a detach, after the breakpoints are out: undo our pauses (someone else's stay). */
  unpauseAtDetach(): void;
  /** Take a pause of our own (detach while the guest runs). */
  pause(): void;
  /** What the path has done that gdb never sees, by name (for `monitor xen`). */
  readonly counters?: Readonly<Record<string, number>>;
  /** Wake a waiting resume() (detach ran; it sees the host detached). */
  wakeUp(): void;
}

/**
 * Poll intervals while waiting for the guest to stop (ms): Xen signals few stops, so
 * the poll bounds the stop latency. 1 ms for the first seconds of a run, 2 ms after.
 */
const POLL_FAST = [0, 0, 0];
const POLL_MS = 1;
const POLL_SLOW_MS = 2;
const POLL_SLOW_AFTER_MS = 5000;

export type WaitOutcome = 'paused' | 'interrupted' | 'timeout' | StopEvent;

/** The parts every path shares. */
export abstract class PollingRun {
  protected readonly h: RunHost;
  protected running = false;
  protected interruptRequested = false;
  /** An interrupt that came while stopped: reported at the next resume (gdb docs, "Interrupts"). */
  protected queuedInterrupt = false;
  protected wake: (() => void) | undefined;
  private reportedShutdown = false;
  resumedOnce = false;
  /** Set by release(): a waiting resume returns without touching the guest. */
  protected released = false;

  constructor(h: RunHost) {
    this.h = h;
  }

  get isRunning(): boolean {
    return this.running;
  }

  interrupt(): void {
    if (!this.running) {
      this.queuedInterrupt = true;
      return;
    }
    if (this.interruptRequested) return;
    this.interruptRequested = true;
    this.wake?.();
  }

  wakeUp(): void {
    this.wake?.();
  }

  cancelInterrupt(): void {
    this.queuedInterrupt = false;
  }

  /** A Ctrl-C that came while stopped, as the stop it asks for. */
  protected takeQueuedInterrupt(plan: ResumePlan): StopEvent | undefined {
    if (!this.queuedInterrupt) return undefined;
    this.queuedInterrupt = false;
    return { kind: 'stopped', vcpu: plan.step ?? [...plan.cont][0] ?? this.h.vcpuSet.list()[0], signal: Sig.INT };
  }

  /**
   * Pauses on the domain that are ours to undo: our own (attach, Ctrl-C, a stop, detach)
   * and, on the gdbsx path, the traps' (Xen's domain_pause_for_debugger is a system
   * controller pause, the same counter `xl pause` increments). Anyone else's pause is
   * theirs: never undone, however often gdb says continue. Attach took the first one.
   */
  protected owed = 1;
  /** The last stop was someone else's pause, and the domain has not run since. */
  protected foreignPaused = false;

  /** Take a pause of our own. */
  pause(): void {
    this.h.xc.pauseDomain(this.h.domid);
    this.owed++;
  }

  /** Undo the pauses we owe, no more (someone else's `xl pause` stays); returns the state after. */
  protected unpauseOurs(): DomainInfo {
    this.h.invalidate();
    while (this.owed > 0) {
      try {
        this.h.xc.unpauseDomain(this.h.domid);
      } catch (e) {
        // EINVAL: not paused at all. Someone unpaused it for us (`xl unpause`): nothing left to undo.
        if (!isXenError(e, Errno.EINVAL)) throw e;
        this.owed = 0;
        break;
      }
      this.owed--;
    }
    const info = this.h.xc.getDomainInfo(this.h.domid);
    if (!info.paused) this.foreignPaused = false;
    return info;
  }

  /** Sleep until woken or `ms` passed (0: the next turn of the event loop). */
  protected nap(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      let immediate: NodeJS.Immediate | undefined;
      const finish = () => {
        this.wake = undefined;
        if (timer) clearTimeout(timer);
        if (immediate) clearImmediate(immediate);
        resolve();
      };
      if (ms === 0) immediate = setImmediate(finish);
      else timer = setTimeout(finish, ms);
      this.wake = finish;
    });
  }

  /**
   * Wait until the domain is paused (a trap, our interrupt, or someone else), `check`
   * reports a stop of its own (monitor events), or the domain is gone. Event-driven
   * where the hypervisor offers it, otherwise a short poll that backs off.
   */
  protected async waitForPause(timeoutMs: number, latest?: DomainInfo, check?: () => StopEvent | undefined): Promise<WaitOutcome> {
    const start = Date.now();
    let tries = 0;
    for (;;) {
      // detach ran (connection lost, signal): it has restored the guest; touch nothing.
      if (this.released) return 'interrupted';
      const own = check?.();
      if (own) return own;
      const info = this.poll(latest); // the state unpause just read saves the first call
      latest = undefined;
      if ('kind' in info) return info;
      if (info.paused) {
        this.h.vcpuSet.refresh(info); // VCPUs may have come or gone while it ran
        return this.interruptRequested ? 'interrupted' : 'paused';
      }
      if (this.interruptRequested) {
        this.pause();
        continue;
      }
      if (timeoutMs > 0 && Date.now() - start > timeoutMs) {
        this.pause();
        const after = this.h.xc.getDomainInfo(this.h.domid);
        if (after.paused) return 'timeout';
      }
      const delay = tries < POLL_FAST.length ? POLL_FAST[tries++] : Date.now() - start < POLL_SLOW_AFTER_MS ? POLL_MS : POLL_SLOW_MS;
      await this.nap(delay);
    }
  }

  /** The domain's state, or the event to report (once) if it died, shut down or vanished. */
  protected poll(known?: DomainInfo): DomainInfo | StopEvent {
    let info: DomainInfo;
    const domid = this.h.domid;
    try {
      info = known ?? this.h.xc.getDomainInfo(domid);
    } catch (e) {
      if (isXenError(e, Errno.ESRCH)) return { kind: 'terminated', signal: Sig.KILL, message: `domain ${domid} no longer exists\n` };
      throw e;
    }
    if (info.dying) return { kind: 'terminated', signal: Sig.KILL, message: `domain ${domid} is being destroyed\n` };
    if (info.shutdown && !this.reportedShutdown) {
      this.reportedShutdown = true;
      if (info.shutdownReason === ShutdownReason.crash) {
        // Kept for inspection (on_crash=preserve): a stop, so the crashed state can be examined.
        return { kind: 'stopped', vcpu: this.h.vcpuSet.list()[0] ?? 0, signal: Sig.SEGV, message: `domain ${domid} crashed (shut down with reason "crash"); its state is preserved for inspection\n` };
      }
      const reason = Object.entries(ShutdownReason).find(([, v]) => v === info.shutdownReason)?.[0] ?? String(info.shutdownReason);
      return { kind: 'exited', code: 0, message: `domain ${domid} shut down (${reason})\n` };
    }
    if (info.shutdown) return { kind: 'terminated', signal: Sig.SEGV, message: `domain ${domid} is shut down and cannot run\n` };
    return info;
  }

  /**
   * The stop to report when the domain was found paused with no trap of ours: our
   * interrupt, or someone else's pause (`xl pause`). Both read as SIGINT; for the latter
   * we take a pause of our own beside theirs, so that continue undoes only ours.
   */
  protected pausedStop(plan: ResumePlan, outcome: 'paused' | 'interrupted'): StopEvent {
    const vcpu = plan.step ?? [...plan.cont].sort((a, b) => a - b)[0] ?? this.h.vcpuSet.list()[0];
    if (outcome !== 'paused') return { kind: 'stopped', vcpu, signal: Sig.INT };
    const already = this.foreignPaused;
    this.foreignPaused = true;
    this.pause();
    const d = this.h.domid;
    return {
      kind: 'stopped', vcpu, signal: Sig.INT,
      message: already
        ? `domain ${d} is paused by someone else (xl pause): it stays paused until they unpause it (xl unpause ${d}); continue then runs it\n`
        : `domain ${d} was paused by someone else (xl pause): their pause stays until they unpause it (xl unpause ${d})\n`,
    };
  }
}

/**
 * Stock Xen, PV guest: Xen offers no way to learn of an int3, a debug exception or a
 * step (no gdbsx hooks, no monitor events for PV), so the guest can be paused, looked
 * at and let run — nothing more. Steps and breakpoints are refused with the reason.
 */
export class PauseOnlyRun extends PollingRun implements RunControl {
  readonly name = 'pause/unpause only';
  readonly limits: RunLimits;

  constructor(h: RunHost) {
    super(h);
    const why = 'this hypervisor was built without CONFIG_GDBSX, and Xen has no other way to stop a PV guest on a trap: ' +
      'a PV guest can be inspected, paused (Ctrl-C) and continued, but not';
    this.limits = {
      swBreak: `${why} given breakpoints`,
      hwBreak: `${why} given breakpoints`,
      watch: `${why} given watchpoints`,
      step: `${why} single-stepped`,
      hold: 'all VCPUs run together (Xen has no per-VCPU pause without CONFIG_GDBSX)',
    };
  }

  forgetEarlierEvents(): void {
    // No events on this path.
  }

  async resume(plan: ResumePlan): Promise<StopEvent> {
    if (this.running) throw new Error('resume while running');
    const queued = this.takeQueuedInterrupt(plan);
    if (queued) return queued;
    if (plan.step !== undefined) throw new RefusedError(this.limits.step as string);
    if (plan.cont.size === 0) return { kind: 'stopped', vcpu: this.h.vcpuSet.list()[0], signal: Sig.TRAP };
    this.running = true;
    this.resumedOnce = true;
    this.interruptRequested = false;
    let outcome: WaitOutcome;
    try {
      const latest = this.unpauseOurs();
      outcome = await this.waitForPause(0, latest);
    } finally {
      this.running = false;
    }
    if (this.released) return { kind: 'terminated', signal: Sig.KILL, message: 'detached\n' };
    if (typeof outcome === 'object') return outcome;
    return this.pausedStop(plan, outcome === 'timeout' ? 'interrupted' : outcome);
  }

  release(): void {
    this.released = true;
    this.wake?.();
  }

  unpauseAtDetach(): void {
    this.unpauseOurs();
  }
}
