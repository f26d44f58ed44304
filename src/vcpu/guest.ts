// A guest domain under the debugger: attach/detach, VCPUs as threads, registers,
// memory with breakpoints, and all-stop run control. Everything here goes through
// XenControl, so it runs the same on the real and the simulated hypervisor.
import createDebug from 'debug';
import { XenControl } from '../xg/xenctl';
import { DomainInfo, ShutdownReason, VcpuEvent } from '../xg/domctl';
import { Errno, UserError, XenError, isXenError } from '../xg/errors';
import { EFLAGS_TF, Vgcf, readField, writeField } from '../xg/context';
import { Arch, VcpuContext, archFor, contextLayoutFor, readReg, writeReg } from './registers';
import { GuestMemory } from './memory';
import { SwBreakpoints } from './breakpoints';
import { HwBreakpoints } from './hwBreakpoints';

const log = createDebug('gdbsx:vcpu');

/** GDB signal numbers (not the host's). */
export const Sig = { INT: 2, TRAP: 5, KILL: 9, SEGV: 11, TERM: 15 } as const;

export type StopEvent =
  | { kind: 'stopped'; vcpu: number; signal: number; swbreak?: boolean; hwbreak?: boolean; message?: string }
  /** The domain is gone (destroyed, powered off, rebooted into a new domid). */
  | { kind: 'exited'; code: number; message: string }
  | { kind: 'terminated'; signal: number; message: string };

export interface ResumePlan {
  /** VCPU to single-step, if any. */
  step?: number;
  /** VCPUs to run freely. VCPUs in neither stay stopped. */
  cont: ReadonlySet<number>;
}

export interface AttachOptions {
  /** Guest width; detected when left out. */
  width?: 32 | 64;
  /** Upper bound on a single step that does not trap (PV VCPU in user mode). */
  stepTimeoutMs?: number;
}

interface PendingEvent {
  vcpu: number;
  /** The int3 address when the event was one of our breakpoints. */
  bp?: bigint;
  /** The int3 address when it was the guest's own (e.g. Linux patching its code). */
  guestInt3?: bigint;
}

/**
 * Poll intervals while waiting for the guest to stop (ms). Xen signals single-steps
 * but not breakpoints, so the poll bounds the stop latency: 1 ms for the first
 * seconds of a run (a getdomaininfo per ms is cheap), 2 ms after that.
 */
const POLL_FAST = [0, 0, 0];
const POLL_MS = 1;
const POLL_SLOW_MS = 2;
const POLL_SLOW_AFTER_MS = 5000;

export class Guest {
  readonly xc: XenControl;
  readonly domid: number;
  readonly width: 32 | 64;
  readonly hvm: boolean;
  readonly arch: Arch;
  readonly mem: GuestMemory;
  readonly bps: SwBreakpoints;
  readonly hw = new HwBreakpoints();
  readonly stepTimeoutMs: number;

  private maxVcpuId: number;
  private online: number[] = [];
  private readonly ctxCache = new Map<number, VcpuContext>();
  /** The online VCPUs were refreshed from the state read at the last stop. */
  private vcpusFresh = false;
  private readonly pending: PendingEvent[] = [];
  private readonly wasPausedAtAttach: boolean;
  private resumedOnce = false;
  private attached = true;
  private running = false;
  private interruptRequested = false;
  /** An interrupt that came while stopped: reported at the next resume (gdb docs, "Interrupts"). */
  private queuedInterrupt = false;
  private wake: (() => void) | undefined;
  private unsubscribe: (() => void) | undefined;
  /** VCPUs we hold with gdbsx_pausevcpu during a resume, and the step we armed. */
  private readonly held: number[] = [];
  private armed: { vcpu: number; mtf: boolean } | undefined;
  /** Whether Xen single-steps this domain with the monitor trap flag (learnt at the first step). */
  private mtf: boolean | undefined;
  /** The domain's shutdown state we already reported, so a preserved crash is reported once. */
  private reportedShutdown = false;

  private constructor(xc: XenControl, domid: number, info: DomainInfo, width: 32 | 64, wasPaused: boolean, opts: AttachOptions) {
    this.xc = xc;
    this.domid = domid;
    this.hvm = info.hvm;
    this.width = width;
    this.arch = archFor(width);
    this.maxVcpuId = info.maxVcpuId;
    this.mem = new GuestMemory(xc, domid, width);
    this.bps = new SwBreakpoints(this.mem);
    this.wasPausedAtAttach = wasPaused;
    this.stepTimeoutMs = opts.stepTimeoutMs ?? 2000;
    this.unsubscribe = xc.hc.onDebuggerEvent?.(() => this.wake?.());
  }

  /**
   * Pause the domain, turn on debugging and learn its shape. Refuses dom0 and
   * dying domains with a clear message; leaves the domain as it was on failure.
   */
  static attach(xc: XenControl, domid: number, opts: AttachOptions = {}): Guest {
    if (!Number.isInteger(domid) || domid < 0 || domid >= 0x7ff0) throw new UserError(`invalid domain id '${domid}'`);
    if (domid === 0) throw new UserError('refusing to attach to dom0 (the domain this stub runs in): give the id of a guest domain (`xl list`)');
    let info: DomainInfo;
    try {
      info = xc.getDomainInfo(domid);
    } catch (e) {
      if (isXenError(e, Errno.ESRCH)) throw new UserError(`domain ${domid} does not exist (see \`xl list\`)`);
      throw e;
    }
    if (info.dying) throw new UserError(`domain ${domid} is being destroyed`);
    if (!xc.hasGdbsx(domid)) {
      throw new UserError('this hypervisor was built without CONFIG_GDBSX, so guests cannot be debugged: rebuild Xen with ' +
        'CONFIG_EXPERT=y and CONFIG_GDBSX=y (or a debug build) and boot it (distribution packages leave it out)');
    }
    const wasPaused = info.paused;
    xc.pauseDomain(domid);
    try {
      xc.setDebugging(domid, true);
      const width = opts.width ?? Guest.detectWidth(xc, domid, info);
      const g = new Guest(xc, domid, info, width, wasPaused, opts);
      g.refreshVcpus(info);
      if (g.online.length === 0) throw new UserError(`domain ${domid} has no VCPU that is up`);
      g.drainEvents();
      g.pending.length = 0; // events from before we came are not ours to report
      log('attached dom%d: %d-bit %s, vcpus %o', domid, width, info.hvm ? 'HVM/PVH' : 'PV', g.online);
      return g;
    } catch (e) {
      try { xc.setDebugging(domid, false); } catch { /* best effort */ }
      try { xc.unpauseDomain(domid); } catch { /* best effort */ }
      throw e;
    }
  }

  /**
   * PV: the ABI width (get_address_size). HVM/PVH: 64 if any VCPU is in long mode
   * (a code or stack pointer above 4 GiB, or EFER-less heuristic via cr4.PAE + 64-bit rip).
   */
  static detectWidth(xc: XenControl, domid: number, info: DomainInfo): 32 | 64 {
    if (!info.hvm) return xc.getAddressSize(domid) === 32 ? 32 : 64;
    const layout = contextLayoutFor(64, true);
    for (let v = 0; v <= info.maxVcpuId; v++) {
      try {
        const ctx = xc.getVcpuContext(domid, v);
        const rip = readField(ctx, layout, 'rip') ?? 0n;
        const rsp = readField(ctx, layout, 'rsp') ?? 0n;
        if (rip > 0xffffffffn || rsp > 0xffffffffn) return 64;
      } catch {
        // Offline VCPU: try the next.
      }
    }
    return 32;
  }

  get isRunning(): boolean {
    return this.running;
  }

  get isAttached(): boolean {
    return this.attached;
  }

  /** VCPU ids that are up, ascending. */
  vcpus(): readonly number[] {
    return this.online;
  }

  get maxVcpu(): number {
    return this.maxVcpuId;
  }

  /**
   * Which VCPUs are up. getdomaininfo's online count saves probing each VCPU
   * (which matters with many VCPUs) when all of them are up.
   */
  /**
   * After a stop: the VCPUs that are up now. Free when the wait for this stop already
   * read the domain's state (it refreshed them then).
   */
  refreshVcpusAfterStop(): void {
    if (this.vcpusFresh) this.vcpusFresh = false;
    else this.refreshVcpus();
  }

  refreshVcpus(info = this.xc.getDomainInfo(this.domid)): void {
    this.maxVcpuId = info.maxVcpuId;
    if (info.nrOnlineVcpus === info.maxVcpuId + 1) {
      this.online = Array.from({ length: info.maxVcpuId + 1 }, (_, i) => i);
      return;
    }
    const up: number[] = [];
    for (let v = 0; v <= info.maxVcpuId; v++) {
      try {
        this.context(v);
        up.push(v);
      } catch (e) {
        if (!isXenError(e, Errno.ENODATA) && !isXenError(e, Errno.EINVAL)) throw e;
      }
    }
    this.online = up;
  }

  isOnline(vcpu: number): boolean {
    return this.online.includes(vcpu);
  }

  /** The VCPU's context, cached while the guest is stopped. */
  context(vcpu: number): VcpuContext {
    let c = this.ctxCache.get(vcpu);
    if (!c) {
      const buf = this.xc.getVcpuContext(this.domid, vcpu);
      c = { buf, layout: contextLayoutFor(this.width, this.hvm), hvm: this.hvm };
      this.ctxCache.set(vcpu, c);
    }
    return c;
  }

  private putContext(vcpu: number, c: VcpuContext): void {
    try {
      this.xc.setVcpuContext(this.domid, vcpu, c.buf);
    } catch (e) {
      this.ctxCache.delete(vcpu); // our copy no longer matches Xen's
      throw e;
    }
  }

  readRegister(vcpu: number, regno: number): Buffer | undefined {
    const r = this.arch.regs[regno];
    if (!r) throw new XenError('register read', Errno.EINVAL, `no register ${regno}`);
    return readReg(this.context(vcpu), r);
  }

  writeRegisters(vcpu: number, values: ReadonlyMap<number, Buffer>): void {
    const c = this.context(vcpu);
    const copy: VcpuContext = { ...c, buf: Buffer.from(c.buf) };
    for (const [regno, value] of values) {
      const r = this.arch.regs[regno];
      if (!r) throw new XenError('register write', Errno.EINVAL, `no register ${regno}`);
      if (!writeReg(copy, r, value)) throw new XenError('register write', Errno.EINVAL, `${r.name} is not writable here`);
    }
    this.putContext(vcpu, copy);
    this.ctxCache.set(vcpu, copy);
    this.mem.invalidate(); // VCPU0's cr3 may be what changed
  }

  pc(vcpu: number): bigint {
    return readField(this.context(vcpu).buf, this.context(vcpu).layout, 'rip') ?? 0n;
  }

  private setPc(vcpu: number, pc: bigint): void {
    const c = this.context(vcpu);
    writeField(c.buf, c.layout, 'rip', pc);
    this.putContext(vcpu, c);
  }

  private setTrapFlag(vcpu: number, on: boolean): void {
    const c = this.context(vcpu);
    const fl = readField(c.buf, c.layout, 'rflags') ?? 0n;
    const next = on ? fl | EFLAGS_TF : fl & ~EFLAGS_TF;
    if (next === fl) return;
    writeField(c.buf, c.layout, 'rflags', next);
    this.putContext(vcpu, c);
  }

  /**
   * PV only: Xen's gdbsx memory domctl translates through VCPU0's *current* page
   * tables, and a 64-bit PV VCPU in user mode has no kernel mappings.
   */
  vcpu0InUserMode(): boolean {
    if (this.hvm) return false;
    const c = this.context(0);
    return (Number(readField(c.buf, c.layout, 'flags') ?? 0n) & Vgcf.inKernel) === 0;
  }

  /**
   * Get VCPU0 into kernel mode so guest kernel memory is reachable again: run it
   * alone (the others held) in ~1 ms bursts until it is caught in the kernel (it
   * enters the kernel on every interrupt). Used so our int3s can always be removed.
   * A VCPU0 that hits one of our breakpoints meanwhile stops in the kernel: fine.
   */
  private reachKernelMode(maxTries = 500): boolean {
    if (!this.vcpu0InUserMode()) return true;
    const held: number[] = [];
    try {
      for (const v of this.online) {
        if (v === 0) continue;
        this.xc.pauseVcpu(this.domid, v);
        held.push(v);
      }
      const tick = new Int32Array(new SharedArrayBuffer(4));
      for (let i = 0; i < maxTries; i++) {
        this.unpauseFully();
        Atomics.wait(tick, 0, 0, 1); // a synchronous 1 ms: detach runs from signal handlers too
        this.xc.pauseDomain(this.domid);
        this.ctxCache.clear();
        this.drainEvents();
        if (!this.vcpu0InUserMode()) return true;
      }
      return false;
    } finally {
      for (const v of held) {
        try { this.xc.unpauseVcpu(this.domid, v); } catch (e) { log('unpausevcpu %d: %s', v, (e as Error).message); }
      }
      this.ctxCache.clear();
    }
  }

  /** Insert a breakpoint, getting VCPU0 back into the kernel first if it must (gdb inserts just before resuming). */
  insertBreakpoint(addr: bigint): void {
    this.inKernelIfNeeded(() => this.bps.insert(addr));
  }

  /** Remove one of our breakpoints, getting VCPU0 back into the kernel first if it must. */
  removeBreakpoint(addr: bigint): void {
    this.inKernelIfNeeded(() => this.bps.remove(addr));
  }

  /** Run a memory operation; if it faults because VCPU0 is in user mode, get it into the kernel and retry once. */
  private inKernelIfNeeded(op: () => void): void {
    try {
      op();
    } catch (e) {
      if (!isXenError(e, Errno.EFAULT) || !this.vcpu0InUserMode() || !this.reachKernelMode()) throw e;
      op();
    }
  }

  /** Z1: an instruction breakpoint in a free debug register, on every VCPU. */
  insertHwBreakpoint(addr: bigint): void {
    if (this.hw.has(addr)) return;
    const contexts = new Map(this.online.map((v) => [v, this.context(v)] as const));
    const slot = this.hw.freeSlot(contexts);
    if (slot < 0) throw new XenError('hardware breakpoint', Errno.ENOSPC, 'all four debug registers are in use');
    this.hw.set(slot, addr);
    try {
      this.applyHw();
    } catch (e) {
      this.hw.set(slot, undefined);
      this.applyHw();
      throw e;
    }
  }

  removeHwBreakpoint(addr: bigint): void {
    const slot = this.hw.slotOf(addr);
    if (slot < 0) return;
    this.hw.set(slot, undefined);
    this.applyHw();
  }

  private applyHw(): void {
    for (const v of this.online) {
      const c = this.context(v);
      this.hw.apply(v, c);
      this.putContext(v, c);
    }
  }

  /** A VCPU (of those that ran) stopped on one of our hardware breakpoints; its DR6 bit is cleared. */
  private takeHwHit(vcpus: ReadonlySet<number>): number | undefined {
    if (this.hw.size === 0) return undefined;
    for (const v of [...vcpus].sort((a, b) => a - b)) {
      const c = this.context(v);
      const h = this.hw.hit(c);
      if (!h) continue;
      writeField(c.buf, c.layout, 'dr6', h.dr6);
      this.putContext(v, c);
      return v;
    }
    return undefined;
  }

  /** Reads up to `len` bytes (the readable prefix), into `into` if it is given and large enough. */
  readMemory(addr: bigint, len: number, into?: Buffer): Buffer {
    return this.bps.shadowRead(addr, this.mem.read(addr, len, undefined, into));
  }

  writeMemory(addr: bigint, data: Buffer): void {
    this.bps.write(addr, data);
  }

  /**
   * Ctrl-C: pause the domain now if it runs (the waiting resume() then reports
   * SIGINT); if it is stopped, remember it for the next resume.
   */
  interrupt(): void {
    if (!this.running) {
      this.queuedInterrupt = true;
      return;
    }
    if (this.interruptRequested) return;
    this.interruptRequested = true;
    this.wake?.();
  }

  /** Read-to-clear every pending debug event, rewinding VCPUs that hit our int3. */
  private drainEvents(): void {
    for (let i = 0; i <= this.maxVcpuId + 1; i++) {
      const st = this.xc.domStatus(this.domid);
      if (st.vcpuId < 0 || st.vcpuId === 0xffffffff) break;
      const ev: PendingEvent = { vcpu: st.vcpuId };
      if (st.vcpuEvent === VcpuEvent.breakpoint) {
        // int3 is a trap: Xen leaves rip after it. Put it back on our breakpoint.
        const bp = this.pc(st.vcpuId) - 1n;
        if (this.bps.has(bp)) {
          this.setPc(st.vcpuId, bp);
          ev.bp = bp;
        } else if (this.isInt3At(bp)) {
          // The guest's own int3 (Xen gives every kernel int3 to the debugger). Linux
          // plants them while patching live code: resuming after it would run the
          // middle of the instruction being patched. Back onto it instead, so the
          // VCPU runs whatever is there when it resumes (the finished patch).
          this.setPc(st.vcpuId, bp);
          ev.guestInt3 = bp;
        }
      }
      this.pending.push(ev);
    }
  }

  private isInt3At(addr: bigint): boolean {
    try {
      const b = this.mem.read(addr, 1);
      return b.length === 1 && b[0] === 0xcc;
    } catch {
      return false;
    }
  }

  /** A queued trap whose int3 is gone since (removed by gdb, or the guest's patch done) is stale. */
  private stale(ev: PendingEvent): boolean {
    if (ev.bp !== undefined) return !this.bps.has(ev.bp);
    if (ev.guestInt3 !== undefined) return !this.isInt3At(ev.guestInt3);
    return false;
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
   * Undo every pause (ours, the trap pauses, and anyone's): the user asked it to run.
   * Careful: once the count reaches 0 the guest runs and may trap again at once,
   * pausing it anew. If it is paused again *and its CPU time moved*, that is a new
   * stop: leave it for the wait to report (unpausing it would let a VCPU run on
   * from just after an int3).
   */
  private unpauseFully(stepFrom?: bigint): DomainInfo {
    this.mem.invalidate(); // the guest is about to run: cached memory goes stale
    const armed = this.armed;
    let info = this.xc.getDomainInfo(this.domid);
    for (let i = 0; i < 256 && info.paused; i++) {
      const ran = info.cpuTimeNs;
      this.xc.unpauseDomain(this.domid);
      info = this.xc.getDomainInfo(this.domid);
      if (!info.paused) break;
      if (info.cpuTimeNs !== ran) break;
      // Still paused and no CPU time seen: another pause, or a trap so quick that Xen's
      // CPU time (coarse, not even monotonic under nested virtualization) missed it.
      // Look for the trap itself before unpausing again: undoing a breakpoint's pause
      // runs the VCPU on from after the int3 (seen in the lab: #UD at ktime_get+1).
      const queued = this.pending.length;
      this.drainEvents();
      if (this.pending.length > queued) break;
      if (armed !== undefined && stepFrom !== undefined) {
        this.ctxCache.delete(armed.vcpu);
        if (this.pc(armed.vcpu) !== stepFrom) break; // the step has been taken
      }
    }
    return info; // the latest state: a step has often trapped already
  }

  /**
   * Run per the plan and resolve at the next stop (all-stop: every VCPU is stopped
   * when this resolves). Rejects only on hypervisor failures.
   */
  async resume(plan: ResumePlan): Promise<StopEvent> {
    if (this.running) throw new Error('resume while running');
    if (this.queuedInterrupt) {
      this.queuedInterrupt = false;
      return { kind: 'stopped', vcpu: plan.step ?? [...plan.cont][0] ?? this.online[0], signal: Sig.INT };
    }
    const ev = this.takePending(plan);
    if (ev) return this.stopFor(ev);

    const runs = new Set(plan.cont);
    if (plan.step !== undefined) runs.add(plan.step);
    const held = this.online.filter((v) => !runs.has(v));
    if (runs.size === 0) return { kind: 'stopped', vcpu: this.online[0], signal: Sig.TRAP };

    const stepFrom = plan.step !== undefined ? this.pc(plan.step) : undefined;
    if (plan.step !== undefined) this.armed = { vcpu: plan.step, mtf: this.armStep(plan.step) };
    try {
      for (const v of held) {
        this.xc.pauseVcpu(this.domid, v);
        this.held.push(v);
      }
    } catch (e) {
      this.settle();
      throw e;
    }

    this.ctxCache.clear();
    this.vcpusFresh = false;
    this.running = true;
    this.resumedOnce = true;
    this.interruptRequested = false;
    let outcome: 'paused' | 'interrupted' | 'timeout' | StopEvent;
    try {
      const latest = this.unpauseFully(stepFrom);
      outcome = await this.waitForPause(plan.step !== undefined && plan.cont.size === 0 ? this.stepTimeoutMs : 0, latest);
    } finally {
      this.running = false;
    }
    // detach() ran meanwhile (connection lost, signal): it has already cleaned up.
    if (!this.attached) return { kind: 'terminated', signal: Sig.KILL, message: 'detached\n' };
    if (typeof outcome === 'object') {
      if (outcome.kind === 'stopped') this.settle();
      return outcome;
    }
    this.settle();
    this.drainEvents();

    // Only events of VCPUs that ran: an older hit of a held VCPU stays queued (reporting
    // it as the end of another thread's step would break gdb's step-over).
    const bpHit = this.takeEventOf(runs);
    if (bpHit) return this.stopFor(bpHit);
    const hwHit = this.takeHwHit(runs);
    if (hwHit !== undefined) return { kind: 'stopped', vcpu: hwHit, signal: Sig.TRAP, hwbreak: true };
    if (plan.step !== undefined && outcome === 'timeout') {
      return {
        kind: 'stopped', vcpu: plan.step, signal: Sig.TRAP,
        message: `the single-step on VCPU ${plan.step} did not trap within ${this.stepTimeoutMs} ms (a PV VCPU in guest user mode cannot be stepped by Xen); the guest was paused instead\n`,
      };
    }
    if (plan.step !== undefined && outcome === 'paused') return { kind: 'stopped', vcpu: plan.step, signal: Sig.TRAP };
    // Paused by our interrupt or by someone else (`xl pause`): both read as SIGINT.
    const vcpu = plan.step ?? [...plan.cont].sort((a, b) => a - b)[0];
    return { kind: 'stopped', vcpu, signal: Sig.INT, message: outcome === 'paused' ? 'the domain was paused from outside the debugger (xl pause?)\n' : undefined };
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
        this.xc.debugOp(this.domid, vcpu, true);
        this.mtf = true;
        return true;
      } catch (e) {
        if (!isXenError(e, Errno.EOPNOTSUPP) && !isXenError(e, Errno.EINVAL)) throw e;
        this.mtf = false; // not on this CPU (SVM): don't ask again every step
      }
    }
    this.setTrapFlag(vcpu, true);
    return false;
  }

  /**
   * With the domain paused: let held VCPUs go again (they stay stopped while the
   * domain is paused) and take the single-step off.
   */
  private settle(): void {
    for (const v of this.held.splice(0)) {
      try { this.xc.unpauseVcpu(this.domid, v); } catch (e) { log('unpausevcpu %d: %s', v, (e as Error).message); }
    }
    const armed = this.armed;
    this.armed = undefined;
    this.ctxCache.clear();
    if (!armed) return;
    try {
      if (armed.mtf) this.xc.debugOp(this.domid, armed.vcpu, false);
      else this.setTrapFlag(armed.vcpu, false);
    } catch (e) {
      log('clearing single-step on vcpu %d: %s', armed.vcpu, (e as Error).message);
    }
    // The stepped VCPU's cached context is the one just written (fetched after the run,
    // TF cleared): the stop reply reads it without another getvcpucontext.
    if (armed.mtf) this.ctxCache.clear();
  }

  /**
   * Wait until the domain is paused (trap, our interrupt, or someone else), or gone.
   * Event-driven where the hypervisor offers it, otherwise a short poll that backs off.
   */
  private async waitForPause(timeoutMs: number, latest?: DomainInfo): Promise<'paused' | 'interrupted' | 'timeout' | StopEvent> {
    const start = Date.now();
    let tries = 0;
    for (;;) {
      // detach() ran (connection lost, signal): it has restored the guest; touch nothing.
      if (!this.attached) return 'interrupted';
      const info = this.poll(latest); // the state unpauseFully() just read saves the first call
      latest = undefined;
      if ('kind' in info) return info;
      if (info.paused) {
        this.refreshVcpus(info); // VCPUs may have come or gone while it ran
        this.vcpusFresh = true;
        return this.interruptRequested ? 'interrupted' : 'paused';
      }
      if (this.interruptRequested) {
        this.xc.pauseDomain(this.domid);
        continue;
      }
      if (timeoutMs > 0 && Date.now() - start > timeoutMs) {
        this.xc.pauseDomain(this.domid);
        const after = this.xc.getDomainInfo(this.domid);
        if (after.paused) return 'timeout';
      }
      const delay = tries < POLL_FAST.length ? POLL_FAST[tries++] : Date.now() - start < POLL_SLOW_AFTER_MS ? POLL_MS : POLL_SLOW_MS;
      await new Promise<void>((resolve) => {
        let timer: NodeJS.Timeout | undefined;
        let immediate: NodeJS.Immediate | undefined;
        const finish = () => {
          this.wake = undefined;
          if (timer) clearTimeout(timer);
          if (immediate) clearImmediate(immediate);
          resolve();
        };
        if (delay === 0) immediate = setImmediate(finish);
        else timer = setTimeout(finish, delay);
        this.wake = finish;
      });
    }
  }

  /** The domain's state, or the event to report (once) if it died, shut down or vanished. */
  private poll(known?: DomainInfo): DomainInfo | StopEvent {
    let info: DomainInfo;
    try {
      info = known ?? this.xc.getDomainInfo(this.domid);
    } catch (e) {
      if (isXenError(e, Errno.ESRCH)) return { kind: 'terminated', signal: Sig.KILL, message: `domain ${this.domid} no longer exists\n` };
      throw e;
    }
    if (info.dying) return { kind: 'terminated', signal: Sig.KILL, message: `domain ${this.domid} is being destroyed\n` };
    if (info.shutdown && !this.reportedShutdown) {
      this.reportedShutdown = true;
      if (info.shutdownReason === ShutdownReason.crash) {
        // Kept for inspection (on_crash=preserve): a stop, so the crashed state can be examined.
        return { kind: 'stopped', vcpu: this.online[0] ?? 0, signal: Sig.SEGV, message: `domain ${this.domid} crashed (shut down with reason "crash"); its state is preserved for inspection\n` };
      }
      const reason = Object.entries(ShutdownReason).find(([, v]) => v === info.shutdownReason)?.[0] ?? String(info.shutdownReason);
      return { kind: 'exited', code: 0, message: `domain ${this.domid} shut down (${reason})\n` };
    }
    if (info.shutdown) return { kind: 'terminated', signal: Sig.SEGV, message: `domain ${this.domid} is shut down and cannot run\n` };
    return info;
  }

  /**
   * Leave the guest as we found it: running (unless it was paused when we came and
   * never resumed), no int3 of ours in memory, no trap flag, debugging off.
   * Safe to call at any time, including while a resume() is waiting.
   */
  detach(): { restoredBreakpoints: number; failed: bigint[] } {
    if (!this.attached) return { restoredBreakpoints: 0, failed: [] };
    this.attached = false;
    this.unsubscribe?.();
    let gone = false;
    try {
      const info = this.xc.getDomainInfo(this.domid);
      gone = info.dying;
      if (!info.paused && !gone) this.xc.pauseDomain(this.domid);
    } catch (e) {
      if (isXenError(e, Errno.ESRCH)) gone = true;
      else log('detach: %s', (e as Error).message);
    }
    if (gone) return { restoredBreakpoints: 0, failed: [] };
    this.wake?.(); // a waiting resume() sees !attached and returns without touching the guest
    this.ctxCache.clear();
    try {
      this.drainEvents(); // rewinds VCPUs sitting just after one of our int3s
    } catch (e) {
      log('detach: drain events: %s', (e as Error).message);
    }
    this.settle();
    const n = this.bps.size;
    let failed = this.bps.removeAll();
    if (failed.length && this.vcpu0InUserMode() && this.reachKernelMode()) failed = this.bps.removeAll();
    this.hw.releaseAll((v, dr, dr7) => {
      try {
        const c = this.context(v);
        (['dr0', 'dr1', 'dr2', 'dr3'] as const).forEach((r, i) => writeField(c.buf, c.layout, r, dr[i]));
        writeField(c.buf, c.layout, 'dr7', dr7);
        this.putContext(v, c);
      } catch (e) {
        log('detach: restoring debug registers of vcpu %d: %s', v, (e as Error).message);
      }
    });
    for (const v of this.online) {
      try { this.setTrapFlag(v, false); } catch { /* offline or gone */ }
      if (this.mtf) {
        try { this.xc.debugOp(this.domid, v, false); } catch { /* best effort */ }
      }
    }
    this.ctxCache.clear();
    try { this.xc.setDebugging(this.domid, false); } catch (e) { log('detach: setdebugging: %s', (e as Error).message); }
    try {
      this.unpauseFully();
      if (this.wasPausedAtAttach && !this.resumedOnce) this.xc.pauseDomain(this.domid);
    } catch (e) {
      log('detach: unpause: %s', (e as Error).message);
    }
    log('detached dom%d: %d breakpoint(s) restored, %d failed', this.domid, n - failed.length, failed.length);
    return { restoredBreakpoints: n - failed.length, failed };
  }

  /** For `monitor` and the context dump: a short description of the domain. */
  describe(): { info: DomainInfo; width: number } {
    return { info: this.xc.getDomainInfo(this.domid), width: this.width };
  }
}

