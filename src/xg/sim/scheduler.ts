// Runs the runnable VCPUs of all domains in slices on Node's event loop, so that
// sockets (a gdb Ctrl-C) are served between slices. A VCPU that executes hlt sleeps
// until the guests' periodic timer ticks, as on hardware; while every runnable VCPU
// sleeps, the loop waits on a host timer for the next tick instead of spinning, so an
// idle guest costs next to nothing. Nothing is scheduled when nothing can run, so an
// idle simulation never keeps the process alive.
import { Flag } from './alu';
import { SimDomain, SimVcpu } from './domain';
import { ExecEnv, ExecEvent, runVcpu } from './execute';

export interface SchedulerOptions {
  /** Instructions per VCPU per slice. */
  slice: number;
  /** Run slices by themselves (false: only when runSlice() is called, for deterministic tests). */
  autoRun: boolean;
  /** The hypervisor has CONFIG_GDBSX (default true): how traps meet an attached debugger (execute.ts). */
  gdbsx?: boolean;
  /** Rate of the guests' periodic timer, in ticks per second of host time (Xen's system time). */
  timerHz: number;
  /** The host's monotonic clock in ms (default performance.now). */
  now?: () => number;
  /** Slices of random length (1..2*slice): see SimXenOptions.sliceJitter. */
  jitter?: boolean;
}

/** VCPUs of a domain take turns in quanta this long, so they interleave within a slice. */
const QUANTUM = 256;
/**
 * Node's timers have 1 ms granularity and may fire a little before the exact
 * deadline: a timer callback this close to the tick counts as the tick.
 */
const TIMER_SLACK_MS = 1;

/** What the run loop has to do next. */
type Readiness = 'run' | 'sleep' | 'nothing';

export class Scheduler {
  private immediate: NodeJS.Immediate | undefined;
  private timeout: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly env: ExecEnv;
  private readonly periodMs: number;
  private readonly now: () => number;
  /** When the timer ticks next (host ms). */
  private nextTick: number;
  /** Timer ticks so far. */
  ticks = 0;

  constructor(
    private readonly domains: () => Iterable<SimDomain>,
    private readonly onEvent: (e: ExecEvent) => void,
    private readonly afterSlice: () => void,
    private readonly opts: SchedulerOptions,
  ) {
    if (!(opts.timerHz > 0 && opts.timerHz <= 10000)) throw new Error('simulated timer: 1..10000 Hz');
    this.env = { gdbsx: opts.gdbsx ?? true };
    this.periodMs = 1000 / opts.timerHz;
    this.now = opts.now ?? (() => performance.now());
    this.nextTick = this.now() + this.periodMs;
  }

  /** 'run' if some VCPU can run now; 'sleep' if the runnable ones all wait for the timer in hlt. */
  private readiness(): Readiness {
    let sleeping = false;
    for (const d of this.domains()) {
      for (const v of d.vcpus) {
        if (!d.canRun(v)) continue;
        if (!v.halted) return 'run';
        if (wakeable(v)) sleeping = true;
      }
    }
    return sleeping ? 'sleep' : 'nothing';
  }

  /** Make sure a slice is coming if anything can run, or the timer if every runnable VCPU is halted. */
  kick(): void {
    if (this.closed || !this.opts.autoRun || this.immediate) return;
    const r = this.readiness();
    if (r === 'run') {
      this.clearTimeout();
      this.immediate = setImmediate(() => this.loop(false));
    } else if (r === 'sleep') {
      if (!this.timeout) this.timeout = setTimeout(() => this.loop(true), Math.max(0, this.nextTick - this.now()));
    } else {
      this.clearTimeout();
    }
  }

  private loop(fromTimer: boolean): void {
    this.immediate = undefined;
    if (fromTimer) this.timeout = undefined;
    const t = this.now();
    if (t >= this.nextTick - (fromTimer ? TIMER_SLACK_MS : 0)) {
      this.tick();
      // Ticks missed while nothing waited for them (all paused, or a long slice) are not replayed.
      this.nextTick = Math.max(this.nextTick + this.periodMs, t + this.periodMs / 2);
    }
    this.run();
    this.afterSlice();
    this.kick();
  }

  /**
   * The periodic timer interrupt: every VCPU halted with interrupts enabled resumes after
   * its hlt. A paused VCPU stays asleep (it takes the tick after its unpause).
   */
  private tick(): void {
    this.ticks++;
    for (const d of this.domains()) {
      for (const v of d.vcpus) {
        if (!v.halted || !d.canRun(v) || !wakeable(v)) continue;
        v.halted = false;
        v.timerWakeups++;
      }
    }
  }

  /**
   * One slice of every runnable VCPU, synchronously. Without autoRun there is no host
   * clock: each call is one timer tick, then the slice.
   */
  runSlice(): void {
    this.tick();
    this.run();
  }

  private run(): void {
    const slice = this.opts.jitter ? 1 + Math.floor(Math.random() * 2 * this.opts.slice) : this.opts.slice;
    for (const d of this.domains()) {
      if (!d.anyRunnable()) continue;
      const used = new Map<number, number>();
      for (const v of d.vcpus) {
        if (!d.canRun(v) || v.halted) continue;
        // Page tables may have been edited between slices (by the debugger, by tests).
        v.cpu.flushTlb();
        used.set(v.id, 0);
      }
      // A VCPU with a single-step armed goes first: on hardware its #DB comes one
      // instruction after the unpause whatever the other VCPUs do, and run in turn
      // behind them it would wait out their quanta (stepping VCPU 1 cost every step
      // VCPU 0's quantum, stepping VCPU 0 cost nothing).
      const order = d.vcpus.some(stepArmed) ? [...d.vcpus.filter(stepArmed), ...d.vcpus.filter((v) => !stepArmed(v))] : d.vcpus;
      for (let progress = true; progress;) {
        progress = false;
        for (const v of order) {
          const u = used.get(v.id);
          if (u === undefined || u >= slice || v.halted || !d.canRun(v)) continue;
          const n = runVcpu(d, v, Math.min(QUANTUM, slice - u), this.onEvent, this.env);
          used.set(v.id, u + n);
          if (n > 0) progress = true;
        }
      }
    }
  }

  private clearTimeout(): void {
    if (this.timeout) clearTimeout(this.timeout);
    this.timeout = undefined;
  }

  close(): void {
    this.closed = true;
    if (this.immediate) clearImmediate(this.immediate);
    this.immediate = undefined;
    this.clearTimeout();
  }
}

/** TF set, or the monitor trap flag (MTF) armed. */
function stepArmed(v: SimVcpu): boolean {
  return (v.cpu.rflags & Flag.TF) !== 0 || v.singleStep;
}

/**
 * A halted VCPU resumes on an interrupt only if it accepts interrupts: PV, its event
 * channel upcalls are not masked (cli/sti); PVH, rflags.IF. `cli; hlt` sleeps for good.
 */
function wakeable(v: SimVcpu): boolean {
  const c = v.cpu;
  return c.virtualIf ? !c.eventMask : (c.rflags & Flag.IF) !== 0;
}
