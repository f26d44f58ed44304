// A guest domain under the debugger, composed at attach from what the hypervisor
// offers: a way to reach memory (our page walk over foreign mappings, or gdbsx's
// memio) and a way to run and stop VCPUs (gdbsx's domctls, the monitor ring, or
// pause/unpause only). The facade adds what every combination shares: attach/detach,
// VCPUs as threads, registers, breakpoints. Everything goes through XenControl, so
// it runs the same on the real and the simulated hypervisor.
import createDebug from 'debug';
import { XenControl } from '../xg/xenctl';
import { DomainInfo, HvmCpu } from '../xg/domctl';
import { Errno, UserError, XenError, isXenError } from '../xg/errors';
import { lookupGuest } from './lookup';
import { readField, writeField } from '../xg/context';
import { Arch, VcpuContext, archFor, contextLayoutFor, inKernel, readReg, writeReg } from './registers';
import { GuestMemory, MemoryPath } from './memory';
import { GdbsxMemio } from './gdbsxMemio';
import { PageWalkMemory, WalkRoot } from './pageWalkMemory';
import { formatTranslation, kernelHalfCr3, pagingModeHvm, pagingModePv, pv32Cr3ToAddr, rootOf } from './pageWalk';
import { INT3, SwBreakpoints } from './breakpoints';
import { BreakpointJournal } from './bpJournal';
import { HwBreakpoints, HwKind, HwSlot } from './hwBreakpoints';
import { VcpuSet, losesHighGprs } from './vcpus';
import { PauseOnlyRun, RefusedError, RunControl, RunHost, RunLimits } from './runControl';
import { GdbsxRun } from './gdbsxRun';
import { MonitorRun } from './monitorRun';
import { mayEnterHypervisor } from './hypercallGate';
import { ResumePlan, Sig, StopEvent, WatchKind } from './stop';

export { Sig } from './stop';
export type { StopEvent, ResumePlan, WatchKind } from './stop';

const log = createDebug('gdbsx:vcpu');
/** EFER.LMA: long mode active. */
const EFER_LMA = 1n << 10n;

export interface AttachOptions {
  /** Guest width; detected when left out. */
  width?: 32 | 64;
  /** Upper bound on a single step that does not trap (PV VCPU in user mode, halted VCPU). */
  stepTimeoutMs?: number;
  /** How to reach memory: our page walk (default where frames can be mapped) or gdbsx_guestmemio. */
  memory?: 'pagewalk' | 'gdbsx';
  /** Only look (the `-c` dump): no debugging flag, no monitor ring, nothing to trap. */
  inspectOnly?: boolean;
}

/** Which hypervisor build we found. */
export type XenBuild = 'gdbsx' | 'stock';

export class Guest implements RunHost {
  readonly xc: XenControl;
  readonly domid: number;
  readonly width: 32 | 64;
  readonly hvm: boolean;
  readonly arch: Arch;
  readonly build: XenBuild;
  readonly vcpuSet: VcpuSet;
  readonly mem: GuestMemory;
  readonly bps: SwBreakpoints;
  readonly hw = new HwBreakpoints();
  readonly stepTimeoutMs: number;
  /** Things to tell the user once (how this guest can be debugged here). */
  readonly notes: string[] = [];
  private runner!: RunControl;
  /** Our int3s and our pause, on disk for a stub that comes after a killed one. */
  private journal: BreakpointJournal | undefined;
  private readonly hvmCpus = new Map<number, Buffer>();
  /** Read watchpoints (R/W = 11): the watched bytes when the guest last ran, by slot. */
  private readonly readWatchValues = new Map<number, Buffer>();
  private wasPausedAtAttach: boolean;
  private attached = true;
  /** A resume() is in flight (from the call until its stop is returned). */
  private resuming = false;
  /** halt() asked this resume to end: a run it would start again (see resume()) is not started. */
  private haltRequested = false;
  /** The resume in flight keeps the page walk's read-only mappings (see stepKeeps). */
  private keepMappings = false;
  /** The domain's tot_pages when the mappings we hold were checked last (undefined: not known). */
  private mappedTotPages: bigint | undefined;

  private constructor(xc: XenControl, domid: number, info: DomainInfo, width: 32 | 64, build: XenBuild, wasPaused: boolean, opts: AttachOptions) {
    this.xc = xc;
    this.domid = domid;
    this.hvm = info.hvm;
    this.width = width;
    this.build = build;
    this.arch = archFor(width);
    const v = xc.version();
    this.vcpuSet = new VcpuSet(xc, domid, width, info, losesHighGprs(v.major, v.minor, v.extra));
    if (this.vcpuSet.highGprsBug) {
      this.notes.push(`Xen ${v.major}.${v.minor}${v.extra} loses r8-r15 in its VCPU context calls (fixed in 4.21.2): ` +
        (this.hvm ? 'they are read from the HVM CPU record; ' : 'they show as unavailable; ') + 'register writes, TF steps and debug registers are refused');
    }
    this.mem = new GuestMemory(this.memoryPath(opts.memory), width);
    this.bps = new SwBreakpoints(this.mem);
    this.wasPausedAtAttach = wasPaused;
    this.stepTimeoutMs = opts.stepTimeoutMs ?? 2000;
  }

  /** Our page walk wherever frames can be mapped; gdbsx's memio where asked for, or as the fallback. */
  private memoryPath(want: AttachOptions['memory']): MemoryPath {
    if (want === 'gdbsx') return new GdbsxMemio(this.xc, this.domid);
    return new PageWalkMemory(this.xc.hc, this.domid, this.width, (v) => this.walkRoot(v));
  }

  /**
   * Pause the domain and learn its shape, then pick the paths this hypervisor offers.
   * Refuses dom0 and dying domains with a clear message; leaves the domain as it was
   * on failure. Never turns on Xen's debugging flag without CONFIG_GDBSX (there it
   * makes Xen skip or swallow the guest's int3s).
   */
  static attach(xc: XenControl, domid: number, opts: AttachOptions = {}): Guest {
    const info = lookupGuest(xc, domid, 'refusing to attach to dom0 (the domain this stub runs in): give the id of a guest domain (`xl list`)');
    const build: XenBuild = xc.hasGdbsx(domid) ? 'gdbsx' : 'stock';
    if (build === 'stock' && opts.memory === 'gdbsx') {
      throw new UserError('gdbsx_guestmemio was asked for, but this hypervisor was built without CONFIG_GDBSX');
    }
    const wasPaused = info.paused;
    xc.pauseDomain(domid);
    let g: Guest | undefined;
    let debugging = false;
    try {
      if (build === 'gdbsx' && !opts.inspectOnly) {
        xc.setDebugging(domid, true);
        debugging = true;
      }
      const width = opts.width ?? Guest.detectWidth(xc, domid, info);
      g = new Guest(xc, domid, info, width, build, wasPaused, opts);
      g.vcpuSet.refresh(info);
      if (g.vcpuSet.list().length === 0) throw new UserError(`domain ${domid} has no VCPU that is up`);
      g.checkMemoryPath();
      if (!opts.inspectOnly) g.restoreJournal(info);
      g.runner = opts.inspectOnly ? new PauseOnlyRun(g) : g.chooseRunControl();
      g.runner.forgetEarlierEvents();
      log('attached dom%d: %d-bit %s on a %s hypervisor, vcpus %o; memory: %s; run control: %s', domid, width,
        info.hvm ? 'HVM/PVH' : 'PV', build, g.vcpuSet.list(), g.mem.path.name, g.runner.name);
      return g;
    } catch (e) {
      try { g?.mem.close(); } catch { /* best effort */ }
      if (debugging) {
        try { xc.setDebugging(domid, false); } catch { /* best effort */ }
      }
      try { xc.unpauseDomain(domid); } catch { /* best effort */ }
      throw e;
    }
  }

  /** Fall back to gdbsx's memio on a gdbsx build when frames cannot be mapped here (e.g. no privcmd mmap). */
  private checkMemoryPath(): void {
    if (!(this.mem.path instanceof PageWalkMemory)) return;
    try {
      this.walkRoot(this.vcpuSet.list()[0]);
      const probe = this.xc.hc.mapForeign(this.domid, [this.walkRoot(this.vcpuSet.list()[0]).root.frame], false);
      probe.unmap();
    } catch (e) {
      if (!(e instanceof XenError) || this.build !== 'gdbsx') throw e;
      this.notes.push(`guest frames cannot be mapped here (${e.message}); memory goes through gdbsx_guestmemio, which sees only VCPU 0's current address space`);
      (this as { mem: GuestMemory }).mem = new GuestMemory(new GdbsxMemio(this.xc, this.domid), this.width);
      (this as { bps: SwBreakpoints }).bps = new SwBreakpoints(this.mem);
    }
  }

  /**
   * Put back the bytes under the int3s a killed stub left (its journal), while the domain
   * is paused and before a monitor ring it left is taken over (which lets its VCPUs go);
   * then keep our own journal there.
   */
  private restoreJournal(info: DomainInfo): void {
    const journal = new BreakpointJournal(this.domid, info.handle);
    const dead = journal.read();
    const left = dead.int3s;
    let restored = 0;
    for (const e of left) {
      try {
        const pin = e.frame !== undefined ? this.mem.pinFrame(BigInt('0x' + e.frame), e.offset ?? 0) : undefined;
        const p = pin ?? this.mem.pin(BigInt('0x' + e.addr), this.mem.space(this.vcpuSet.list()[0]));
        if (p.read() === INT3) {
          p.write(e.orig);
          restored++;
        }
      } catch (err) {
        log('journal: cannot restore 0x%s: %s', e.addr, (err as Error).message);
      }
    }
    if (left.length > 0) {
      this.notes.push(`a stub that was killed left ${restored} int3${restored === 1 ? '' : 's'} in the guest (${journal.file}): the original bytes are back`);
    }
    if (dead.heldPause && this.wasPausedAtAttach) {
      // Its pause is not anyone's to keep: undo it (ours stays, taken at attach).
      try {
        this.xc.unpauseDomain(this.domid);
        this.wasPausedAtAttach = false;
        this.notes.push('a stub that was killed left the domain paused: that pause is undone');
      } catch (e) {
        log('journal: undoing the dead stub\'s pause: %s', (e as Error).message);
      }
    }
    journal.write([]);
    journal.heldPause(true); // attach paused the domain
    this.bps.journal = journal;
    this.journal = journal;
  }

  private chooseRunControl(): RunControl {
    if (this.build === 'gdbsx') return new GdbsxRun(this, this.hvm);
    if (!this.hvm) {
      this.notes.push('this hypervisor was built without CONFIG_GDBSX: a PV guest can be inspected, paused (Ctrl-C) and ' +
        'continued here, but Xen has no way to stop it on a breakpoint or a single-step (use a PVH/HVM guest, or a Xen with CONFIG_GDBSX=y)');
      return new PauseOnlyRun(this);
    }
    const m = MonitorRun.open(this);
    if (m.recovered) this.notes.push(m.recovered);
    return m;
  }

  /**
   * PV: the ABI width (get_address_size). HVM/PVH: 64 if any VCPU is in long mode
   * (EFER.LMA in its CPU record; where that cannot be read, a code or stack pointer
   * above 4 GiB).
   */
  static detectWidth(xc: XenControl, domid: number, info: DomainInfo): 32 | 64 {
    if (!info.hvm) return xc.getAddressSize(domid) === 32 ? 32 : 64;
    const layout = contextLayoutFor(64, true);
    for (let v = 0; v <= info.maxVcpuId; v++) {
      try {
        const efer = xc.getHvmCpu(domid, v).readBigUInt64LE(HvmCpu.msrEfer);
        if ((efer & EFER_LMA) !== 0n) return 64;
        continue;
      } catch {
        // No CPU record (offline VCPU, or a hypervisor that refuses): the heuristic below.
      }
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

  // ---- what the run-control paths need (RunHost) ----

  isInt3At(addr: bigint, vcpu: number): boolean {
    try {
      const b = this.mem.read(addr, 1, this.mem.space(vcpu));
      return b.length === 1 && b[0] === INT3;
    } catch {
      return false;
    }
  }

  /**
   * After a stop reply has gone out: read the line at pc (gdb reads the byte there four
   * times per stop, and the function's start, most often on the same page) into the line
   * cache while gdb is still decoding the reply, so those requests find the page walked.
   * Best effort: a line that cannot be read is left to the request itself.
   */
  warmAfterStop(vcpu: number): void {
    if (this.runner.isRunning || !this.attached) return;
    try {
      this.mem.read(this.vcpuSet.pc(vcpu), 1, this.mem.space(vcpu));
    } catch (e) {
      log('reading ahead after a stop: %s', (e as Error).message);
    }
  }

  invalidate(): void {
    this.mem.invalidate(this.keepMappings);
    this.vcpuSet.invalidate();
    this.vcpuSet.willRun();
    this.hvmCpus.clear();
  }

  // ---- page walk roots ----

  /** An HVM VCPU's CPU record (EFER and the real paging state), read once per stop. */
  hvmCpu(vcpu: number): Buffer {
    let b = this.hvmCpus.get(vcpu);
    if (!b) {
      b = this.xc.getHvmCpu(this.domid, vcpu);
      this.hvmCpus.set(vcpu, b);
    }
    return b;
  }

  /** Where `vcpu`'s page walk starts: PV ctrlreg[3] (its kernel table, whatever mode it is in); HVM its cr3 and paging mode. */
  walkRoot(vcpu: number): WalkRoot {
    if (!this.hvm) {
      const c = this.vcpuSet.context(vcpu);
      const cr3 = readField(c.buf, c.layout, 'cr3') ?? 0n;
      const mode = pagingModePv(this.width);
      return { mode, root: rootOf(mode, this.width === 32 ? pv32Cr3ToAddr(cr3) : cr3) };
    }
    const cpu = this.hvmCpu(vcpu);
    const cr3 = cpu.readBigUInt64LE(HvmCpu.cr3);
    const mode = pagingModeHvm(cpu.readBigUInt64LE(HvmCpu.cr0), cpu.readBigUInt64LE(HvmCpu.cr4), cpu.readBigUInt64LE(HvmCpu.msrEfer));
    const r: WalkRoot = { mode, root: rootOf(mode, cr3) };
    // Linux PTI: a user cr3 is the kernel PGD + 4 KiB; kernel addresses live in the other half.
    if ((mode.kind === '4level' || mode.kind === '5level') && (cr3 & 0x1000n) !== 0n) r.kernelRoot = rootOf(mode, kernelHalfCr3(cr3));
    return r;
  }

  /** `monitor translate`: each level of the walk of `addr` as `vcpu` sees it. */
  translateText(addr: bigint, vcpu: number): string {
    const path = this.mem.path;
    if (!(path instanceof PageWalkMemory)) return 'translation needs the page-walk memory path (this session uses gdbsx_guestmemio)\n';
    const { root, t, viaKernelHalf } = path.explain(addr, this.mem.space(vcpu));
    const cr3 = this.hvm ? this.hvmCpu(vcpu).readBigUInt64LE(HvmCpu.cr3) : readField(this.vcpuSet.context(vcpu).buf, this.vcpuSet.context(vcpu).layout, 'cr3') ?? 0n;
    const head = `VCPU ${vcpu} (thread ${vcpu + 1})${this.mem.pgd3 ? `, pgd3 0x${this.mem.pgd3.toString(16)}` : ''}` +
      (viaKernelHalf ? ', through the kernel half of its cr3 (PTI)' : '') + '\n';
    const text = head + formatTranslation(addr, root.mode, cr3, t);
    return text.endsWith('\n') ? text : text + '\n';
  }

  /** `monitor cr3`: the table each thread's reads start from. */
  cr3Text(): string {
    const lines: string[] = [];
    for (const v of this.vcpuSet.list()) {
      const c = this.vcpuSet.context(v);
      let cr3: bigint;
      let extra = '';
      if (this.hvm) {
        cr3 = this.hvmCpu(v).readBigUInt64LE(HvmCpu.cr3);
      } else {
        cr3 = readField(c.buf, c.layout, 'cr3') ?? 0n;
        const user = readField(c.buf, c.layout, 'cr1');
        if (user) extra = `; its user-mode table is 0x${user.toString(16)} (kernel and user addresses both resolve through cr3)`;
      }
      let walk: string;
      try {
        const r = this.walkRoot(v);
        walk = `${r.mode.kind} paging over ${r.mode.frames === 'mfn' ? 'machine' : 'guest'} frames from frame 0x${r.root.frame.toString(16)}` +
          (r.root.offset ? `+0x${r.root.offset.toString(16)}` : '') +
          (r.kernelRoot ? `, kernel addresses also from 0x${r.kernelRoot.frame.toString(16)} (PTI's kernel half)` : '');
      } catch (e) {
        walk = `no walk: ${(e as Error).message}`;
      }
      lines.push(`thread ${v + 1} (VCPU ${v}), ${inKernel(c) ? 'kernel' : 'user'} mode: cr3 0x${cr3.toString(16)}, ${walk}${extra}`);
    }
    return lines.join('\n') + '\n';
  }

  // ---- state ----

  get isRunning(): boolean {
    return this.runner.isRunning;
  }

  get isAttached(): boolean {
    return this.attached;
  }

  /** What this hypervisor and guest type cannot do here, with the reason. */
  get limits(): RunLimits {
    return this.runner.limits;
  }

  /** The run-control and memory paths in use (for `monitor` and the logs), with the run path's counters. */
  get paths(): { run: string; memory: string; counters: Readonly<Record<string, number>> } {
    return { run: this.runner.name, memory: this.mem.path.name, counters: this.runner.counters ?? {} };
  }

  /** VCPU ids that are up, ascending. */
  vcpus(): readonly number[] {
    return this.vcpuSet.list();
  }

  get maxVcpu(): number {
    return this.vcpuSet.maxVcpu;
  }

  isOnline(vcpu: number): boolean {
    return this.vcpuSet.isOnline(vcpu);
  }

  /** After a stop: the VCPUs that are up now (the run-control path's wait has often read them already). */
  refreshVcpusAfterStop(): void {
    this.vcpuSet.refreshIfRan();
  }

  context(vcpu: number): VcpuContext {
    return this.vcpuSet.context(vcpu);
  }

  pc(vcpu: number): bigint {
    return this.vcpuSet.pc(vcpu);
  }

  readRegister(vcpu: number, regno: number): Buffer | undefined {
    const r = this.arch.regs[regno];
    if (!r) throw new XenError('register read', Errno.EINVAL, `no register ${regno}`);
    return readReg(this.vcpuSet.context(vcpu), r);
  }

  /** Write registers; only values that differ reach Xen (a PV VCPU's cr3 must be given back as it is). */
  writeRegisters(vcpu: number, values: ReadonlyMap<number, Buffer>): void {
    const c = this.vcpuSet.context(vcpu);
    const copy: VcpuContext = { ...c, buf: Buffer.from(c.buf) };
    let changed = false;
    for (const [regno, value] of values) {
      const r = this.arch.regs[regno];
      if (!r) throw new XenError('register write', Errno.EINVAL, `no register ${regno}`);
      const old = readReg(c, r);
      if (old && old.equals(value.subarray(0, old.length))) continue;
      if (!writeReg(copy, r, value)) throw new XenError('register write', Errno.EINVAL, `${r.name} is not writable here`);
      changed = true;
    }
    if (!changed) return;
    this.vcpuSet.put(vcpu, copy);
    this.vcpuSet.remember(vcpu, copy);
    this.mem.invalidate(); // cr3 may be what changed
    this.hvmCpus.delete(vcpu);
  }

  /**
   * PV with gdbsx_guestmemio only: Xen translates through VCPU0's *current* page tables,
   * and a 64-bit PV VCPU in user mode has no kernel mappings.
   */
  memioBlindToKernel(): boolean {
    if (this.hvm || !(this.mem.path instanceof GdbsxMemio) || this.mem.pgd3) return false;
    return !inKernel(this.vcpuSet.context(0));
  }

  // ---- memory and breakpoints ----

  private refuse(why: string | undefined): void {
    if (why) throw new RefusedError(why);
  }

  /** Reads up to `len` bytes (the readable prefix) as `vcpu` sees memory. */
  readMemory(addr: bigint, len: number, vcpu: number, into?: Buffer): Buffer {
    const space = this.mem.space(vcpu);
    return this.bps.shadowRead(addr, this.mem.read(addr, len, space, into), space);
  }

  writeMemory(addr: bigint, data: Buffer, vcpu: number): void {
    this.bps.write(addr, data, this.mem.space(vcpu));
  }

  insertBreakpoint(addr: bigint, vcpu: number): void {
    this.refuse(this.runner.limits.swBreak);
    this.bps.insert(addr, this.mem.space(vcpu));
  }

  removeBreakpoint(addr: bigint): void {
    this.bps.remove(addr);
  }

  /** Z1: an instruction breakpoint in a free debug register, on every VCPU. */
  insertHwBreakpoint(addr: bigint): void {
    this.refuse(this.runner.limits.hwBreak);
    this.takeSlot({ kind: 'exec', addr, len: 1 });
  }

  removeHwBreakpoint(addr: bigint): void {
    this.freeSlot('exec', addr, 1);
  }

  /**
   * Z2/Z3/Z4: a data breakpoint in a free debug register, on every VCPU. x86 watches
   * 1, 2, 4 or 8 bytes (8 in 64-bit mode only) at an address aligned to the length
   * (the CPU ignores the low bits); anything else is refused with the reason, and gdb
   * says it cannot insert the watchpoint.
   */
  insertWatchpoint(kind: WatchKind, addr: bigint, len: number): void {
    this.refuse(this.runner.limits.watch);
    const lens = this.width === 64 ? [1, 2, 4, 8] : [1, 2, 4];
    if (!lens.includes(len)) {
      throw new RefusedError(`an x86 debug register watches ${lens.join(', ')} bytes, not ${len} (watch a smaller object, or one field of it)`);
    }
    if (addr % BigInt(len) !== 0n) {
      throw new RefusedError(`an x86 debug register watches ${len} bytes at an address aligned to ${len}: 0x${addr.toString(16)} is not`);
    }
    this.takeSlot({ kind, addr, len });
  }

  removeWatchpoint(kind: WatchKind, addr: bigint, len: number): void {
    this.freeSlot(kind, addr, len);
  }

  private takeSlot(want: HwSlot): void {
    if (this.hw.find(want.kind, want.addr, want.len) >= 0) return;
    const contexts = new Map(this.vcpuSet.list().map((v) => [v, this.vcpuSet.context(v)] as const));
    const slot = this.hw.freeSlot(contexts);
    if (slot < 0) {
      const ours = this.hw.size;
      throw new RefusedError(`all four x86 debug registers are in use (${ours} by hardware breakpoints and watchpoints of this session` +
        `${ours < 4 ? `, ${4 - ours} by the guest itself` : ''}): delete one first`);
    }
    this.hw.set(slot, want);
    try {
      this.applyHw();
    } catch (e) {
      this.hw.set(slot, undefined);
      this.applyHw();
      throw e;
    }
  }

  private freeSlot(kind: HwKind, addr: bigint, len: number): void {
    const slot = this.hw.find(kind, addr, len);
    if (slot < 0) return;
    this.hw.set(slot, undefined);
    this.readWatchValues.delete(slot);
    this.applyHw();
  }

  private applyHw(): void {
    for (const v of this.vcpuSet.list()) {
      const c = this.vcpuSet.context(v);
      this.hw.apply(v, c);
      this.vcpuSet.put(v, c);
    }
  }

  // ---- run control ----

  async resume(plan: ResumePlan): Promise<StopEvent> {
    // The journal says "attached" (heldPause) from attach to detach, not per run: a file
    // write per step costs milliseconds in a PV dom0. A stub killed while the guest ran
    // thus leaves a journal that says paused; the next stub undoes a pause only if the
    // domain is paused when it comes.
    this.resuming = true;
    this.haltRequested = false;
    this.keepMappings = this.stepKeeps(plan);
    try {
      for (;;) {
        this.noteReadWatchValues();
        const ev = await this.runner.resume(plan);
        if (this.keepMappings) this.checkKeptMappings();
        if (ev.kind !== 'stopped' || !this.isWriteOnReadWatch(ev)) return ev;
        // A step that wrote what an rwatch watches: just the step.
        if (plan.step !== undefined || !this.attached) return { ...ev, watch: undefined };
        if (this.haltRequested) return { kind: 'stopped', vcpu: ev.vcpu, signal: Sig.INT };
      }
    } finally {
      // A halt that found the run already over must not stop the next one.
      if (this.haltRequested) this.runner.cancelInterrupt();
      this.resuming = false;
      this.haltRequested = false;
      if (!this.keepMappings) this.mappedTotPages = undefined;
      this.keepMappings = false;
    }
  }

  /**
   * Whether the page walk's read-only mappings may stay across this resume. Mapping
   * frames again after every stop is most of a step's cost where each mapping takes a
   * millisecond (a dom0 under emulation), and a step is what gdb repeats. A mapping
   * shows its frame as it is now, and each walk reads the tables through it afresh, so
   * it stays right for as long as the frame backs the same guest page: always for PV
   * (frames are machine frames), and for HVM/PVH until the guest's physical-to-machine
   * map changes. That takes a hypercall (a balloon's decrease_reservation, a populate, a
   * grant map) or the toolstack. So: only a single step, not of an instruction that
   * enters the hypervisor (other VCPUs that run meanwhile run for the step's few
   * milliseconds), and checkKeptMappings() drops everything after the step if tot_pages moved.
   */
  private stepKeeps(plan: ResumePlan): boolean {
    if (plan.step === undefined || !(this.mem.path instanceof PageWalkMemory) || !this.attached) return false;
    try {
      // As the guest has it: one of our int3s may hide the instruction's first byte.
      const code = this.readMemory(this.vcpuSet.pc(plan.step), 16, plan.step);
      if (mayEnterHypervisor(code, this.width)) return false;
      this.mappedTotPages ??= this.xc.getDomainInfo(this.domid).totPages;
      return true;
    } catch (e) {
      log('mappings not kept across the step: %s', (e as Error).message);
      return false;
    }
  }

  /** After a step that kept mappings: drop them all if the guest's memory changed size meanwhile. */
  private checkKeptMappings(): void {
    try {
      const tot = this.xc.getDomainInfo(this.domid).totPages;
      if (tot === this.mappedTotPages) return;
      log('tot_pages %s -> %s during the step: mappings dropped', String(this.mappedTotPages), String(tot));
      this.mappedTotPages = tot;
    } catch (e) {
      log('after a step: %s', (e as Error).message);
      this.mappedTotPages = undefined;
    }
    this.mem.invalidate();
  }

  /**
   * Stop a resume in flight because another domain of the session stopped (all-stop
   * across domains): as interrupt() while it runs, but never remembered for a later
   * resume, and nothing at all when no resume is in flight.
   */
  halt(): void {
    if (!this.resuming) return;
    this.haltRequested = true;
    this.runner.interrupt();
  }

  /**
   * Before the guest runs: the bytes each read watchpoint watches. x86 has no read-only
   * data breakpoint, so `rwatch` is R/W = 11, which writes fire too.
   */
  private noteReadWatchValues(): void {
    this.readWatchValues.clear();
    for (let n = 0; n < 4; n++) {
      const s = this.hw.slot(n);
      if (s?.kind !== 'rwatch') continue;
      try {
        this.readWatchValues.set(n, Buffer.from(this.readMemory(s.addr, s.len, this.vcpuSet.list()[0])));
      } catch (e) {
        log('rwatch 0x%s: cannot read: %s', s.addr.toString(16), (e as Error).message);
      }
    }
  }

  /**
   * A read watchpoint's hit where the watched bytes changed: a write, not a read, so
   * not reported (the guest runs on), as gdb itself treats x86 access hits for `rwatch`.
   * A write of the same value is taken for a read, as in gdb.
   */
  private isWriteOnReadWatch(ev: StopEvent & { kind: 'stopped' }): boolean {
    if (ev.watch?.kind !== 'rwatch') return false;
    const { addr } = ev.watch;
    for (const [n, before] of this.readWatchValues) {
      const s = this.hw.slot(n);
      if (s?.kind !== 'rwatch' || s.addr !== addr) continue;
      try {
        const now = this.readMemory(s.addr, s.len, ev.vcpu);
        if (now.equals(before)) return false;
        log('rwatch 0x%s: hit by a write on vcpu %d (0x%s -> 0x%s): not reported', addr.toString(16), ev.vcpu, before.toString('hex'), now.toString('hex'));
        return true;
      } catch {
        return false;
      }
    }
    return false;
  }

  /** Ctrl-C: stop now if running; if stopped, report it at the next resume. */
  interrupt(): void {
    this.runner.interrupt();
  }

  /**
   * Leave the guest as we found it: running (unless it was paused when we came and
   * never resumed), no int3 of ours in memory, no trap flag, debug registers as the
   * guest had them, debugging off, no monitor ring. Safe at any time, including while
   * a resume() is waiting.
   */
  detach(): { restoredBreakpoints: number; failed: bigint[] } {
    if (!this.attached) return { restoredBreakpoints: 0, failed: [] };
    this.attached = false;
    let gone = false;
    try {
      const info = this.xc.getDomainInfo(this.domid);
      gone = info.dying;
      if (this.runner.isRunning && !gone) this.runner.pause();
    } catch (e) {
      if (isXenError(e, Errno.ESRCH)) gone = true;
      else log('detach: %s', (e as Error).message);
    }
    if (gone) {
      this.runner.release();
      this.mem.close();
      this.journal?.clear();
      return { restoredBreakpoints: 0, failed: [] };
    }
    this.vcpuSet.invalidate();
    this.runner.release();
    const n = this.bps.size;
    const failed = this.bps.removeAll();
    this.hw.releaseAll((v, dr, dr7) => {
      try {
        const c = this.vcpuSet.context(v);
        (['dr0', 'dr1', 'dr2', 'dr3'] as const).forEach((r, i) => writeField(c.buf, c.layout, r, dr[i]));
        writeField(c.buf, c.layout, 'dr7', dr7);
        this.vcpuSet.put(v, c);
      } catch (e) {
        log('detach: restoring debug registers of vcpu %d: %s', v, (e as Error).message);
      }
    });
    this.invalidate();
    try {
      // Our pauses and our traps' are undone; someone else's (an `xl pause`, before we came
      // or since) stay theirs.
      this.runner.unpauseAtDetach();
    } catch (e) {
      log('detach: unpause: %s', (e as Error).message);
    }
    this.mem.close();
    if (failed.length === 0) this.journal?.clear();
    else this.journal?.heldPause(false);
    log('detached dom%d: %d breakpoint(s) restored, %d failed', this.domid, n - failed.length, failed.length);
    return { restoredBreakpoints: n - failed.length, failed };
  }

  /** For `monitor` and the context dump: a short description of the domain. */
  describe(): { info: DomainInfo; width: number } {
    return { info: this.xc.getDomainInfo(this.domid), width: this.width };
  }
}

