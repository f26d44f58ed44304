// Runs the runnable VCPUs of all domains in slices on Node's event loop, so that
// sockets (a gdb Ctrl-C) are served between slices. Nothing is scheduled when nothing
// can run, so an idle simulation never keeps the process alive.
import { SimDomain } from './domain';
import { ExecEnv, ExecEvent, runVcpu } from './execute';

export interface SchedulerOptions {
  /** Instructions per VCPU per slice. */
  slice: number;
  /** Run slices by themselves (false: only when runSlice() is called, for deterministic tests). */
  autoRun: boolean;
  /** The hypervisor has CONFIG_GDBSX (default true): how traps meet an attached debugger (execute.ts). */
  gdbsx?: boolean;
  /** Slices of random length (1..2*slice): see SimXenOptions.sliceJitter. */
  jitter?: boolean;
}

/** VCPUs of a domain take turns in quanta this long, so they interleave within a slice. */
const QUANTUM = 256;
/** When every VCPU idled (hlt) in a slice, wait this long before the next one. */
const IDLE_MS = 1;

export class Scheduler {
  private immediate: NodeJS.Immediate | undefined;
  private timeout: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly env: ExecEnv;

  constructor(
    private readonly domains: () => Iterable<SimDomain>,
    private readonly onEvent: (e: ExecEvent) => void,
    private readonly afterSlice: () => void,
    private readonly opts: SchedulerOptions,
  ) {
    this.env = { gdbsx: opts.gdbsx ?? true };
  }

  private anyRunnable(): boolean {
    for (const d of this.domains()) if (d.anyRunnable()) return true;
    return false;
  }

  /** Make sure a slice is coming if anything can run. */
  kick(busy = true): void {
    if (this.closed || !this.opts.autoRun || this.immediate || this.timeout || !this.anyRunnable()) return;
    if (busy) this.immediate = setImmediate(() => this.tick());
    else this.timeout = setTimeout(() => this.tick(), IDLE_MS);
  }

  private tick(): void {
    this.immediate = this.timeout = undefined;
    const busy = this.runSlice();
    this.afterSlice();
    this.kick(busy);
  }

  /** One slice of every runnable VCPU; true if some VCPU used its whole slice (did not idle). */
  runSlice(): boolean {
    let busy = false;
    const slice = this.opts.jitter ? 1 + Math.floor(Math.random() * 2 * this.opts.slice) : this.opts.slice;
    for (const d of this.domains()) {
      if (!d.anyRunnable()) continue;
      const used = new Map<number, number>();
      for (const v of d.vcpus) {
        if (!d.canRun(v)) continue;
        v.halted = false;
        // Page tables may have been edited between slices (by the debugger, by tests).
        v.cpu.flushTlb();
        used.set(v.id, 0);
      }
      for (let progress = true; progress;) {
        progress = false;
        for (const v of d.vcpus) {
          const u = used.get(v.id);
          if (u === undefined || u >= slice || v.halted || !d.canRun(v)) continue;
          const n = runVcpu(d, v, Math.min(QUANTUM, slice - u), this.onEvent, this.env);
          used.set(v.id, u + n);
          if (n > 0) progress = true;
        }
      }
      for (const v of d.vcpus) if ((used.get(v.id) ?? 0) >= slice) busy = true;
    }
    return busy;
  }

  close(): void {
    this.closed = true;
    if (this.immediate) clearImmediate(this.immediate);
    if (this.timeout) clearTimeout(this.timeout);
    this.immediate = this.timeout = undefined;
  }
}
