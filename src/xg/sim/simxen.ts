// The simulated Xen: a Hypercalls backend whose domctls behave like Xen's (see
// domctl-ops.ts) over guests that really execute (cpu.ts), plus a control API for
// tests, the demo and the CLI (creating domains, peeking at guests).
import { createHash } from 'crypto';
import fs from 'fs';
import path from 'path';
import { PodTarget, ShutdownReason, XenMem, XenVer } from '../domctl';
import { Errno, XenError } from '../errors';
import { DomctlData, EventPort, ForeignMapping, Hypercalls } from '../hypercalls';
import { X86Cpu } from './cpu';
import { Gpr, GprName } from './cpu-core';
import { DomainType, SimDomain, SimVcpu } from './domain';
import { CALLER_DOMID, DomctlHost, doDomctl } from './domctl-ops';
import { parseElf } from './elf';
import { ExecEvent } from './execute';
import { ForeignMaps } from './foreign';
import { LoadedGuest, loadGuest } from './loader';
import { buildPvSharedInfo } from './logDirty';
import { MonitorDebugType, SimMonitor, SimMonitorState } from './monitor';
import { SimRelease, dropsHighGprs, interfaceVersionOf, parseRelease } from './release';
import { UserModeInfo, UserModeOptions, enterUserMode, leaveUserMode } from './userMode';
import { UNMAPPED } from './paging';
import { Scheduler } from './scheduler';
import { SimXenStore } from './xenstore';
import { evtchnOp, guestEventChannels } from './evtchn';
import { TextPokeLoop } from './textPoke';
import { bringUp } from './vcpu-context';

export interface SimXenOptions {
  /** The domctl interface version accepted (others get EACCES). Default 0x15 (Xen 4.17), or the release's. */
  interfaceVersion?: number;
  /**
   * The Xen release shown by xen_version, e.g. '4.21.1' (default: the interface version's
   * release, extraversion ".5-sim"). 4.21.0 and 4.21.1 reproduce their r8-r15 bug.
   */
  release?: string;
  /** Hypervisor built with CONFIG_GDBSX (false: domctls 1000-1003 give ENOSYS). Default true. */
  gdbsx?: boolean;
  /** The CPU has the monitor trap flag (VMX): debug_op single-step works for PVH. Default false. */
  mtf?: boolean;
  /** Run guests by themselves on the event loop. Default true; false: only runSlice() runs them. */
  autoRun?: boolean;
  /** Instructions per VCPU per slice. Default 4000. */
  sliceInstructions?: number;
  /**
   * The guests' periodic timer, in ticks per second of host time (default 100, Linux's
   * HZ=100): each tick wakes the VCPUs halted in hlt. Without autoRun each runSlice() is a tick.
   */
  timerHz?: number;
  /** CONFIG_SHADOW_PAGING: log-dirty for PV guests (false: shadow_op ENABLE gives EOPNOTSUPP for PV). Default true. */
  shadowPaging?: boolean;
  /**
   * Each slice runs a random number of instructions (1 to twice sliceInstructions), so
   * that where a VCPU stands between slices, when an outside observer (a profiler) can
   * look, is not tied to the guest loop's period. Default false (slices of fixed length).
   */
  sliceJitter?: boolean;
  /** Physical CPUs of the simulated host (default 4). */
  pcpus?: number;
}

export interface CreateDomainOptions {
  domid?: number;
  name?: string;
  vcpus: number;
  width: 32 | 64;
  type?: DomainType;
  /** Guest kernel ELF; default: the demo guest of that width (guest/build/demo{32,64}.elf). */
  image?: string;
  /** VCPUs brought up at start (the rest are never initialised); default all. */
  onlineVcpus?: number;
  /** Guest RAM in MiB (32..1024); default 64. */
  memMiB?: number;
  /** Create paused (controller pause count 1), like `xl create -p`. */
  paused?: boolean;
  /**
   * The guest kernel handles its own #BP and #DB like Linux (execute.ts: an int3 at X
   * returns to X, a #DB with TF clears TF). Default false: no IDT, they crash the domain.
   */
  guestTrapHandlers?: boolean;
}

export type ShutdownName = keyof typeof ShutdownReason;

/** Events of the control API (a superset of the debugger notification). */
export type SimEvent =
  | { type: 'trap'; domid: number; vcpu: number; kind: 'int3' | 'step' | 'mtf' | 'hwbreak' | 'watch' }
  /** A debug exit that Xen put on the monitor ring (or that waits for a slot there). */
  | { type: 'monitor'; domid: number; vcpu: number; event: MonitorDebugType }
  | { type: 'shutdown'; domid: number; reason: number; message?: string }
  | { type: 'state'; domid: number; what: string }
  | { type: 'created' | 'destroyed'; domid: number };

export interface SimDomainState {
  name: string;
  type: DomainType;
  width: 32 | 64;
  controllerPauseCount: number;
  vcpuPauseCounts: number[];
  vcpuEvents: number[];
  debuggerAttached: boolean;
  shutdownReason: number | undefined;
  crashReason: string | undefined;
  dying: boolean;
  instructions: number[];
  /** Asleep in hlt, waiting for the timer. */
  halted: boolean[];
  /** hlt instructions that put the VCPU to sleep, and timer ticks that woke it. */
  halts: number[];
  timerWakeups: number[];
  /** Log-dirty mode is on (shadow_op). */
  logDirty: boolean;
}

/** A VCPU's live registers: GPRs by name plus the ones a debugger cares about. */
export type SimRegisters = Record<GprName | 'rip' | 'rflags' | 'cr0' | 'cr2' | 'cr3' | 'cr4' | 'dr6' | 'dr7' | 'fs_base' | 'gs_base', bigint>;

export interface GuestLayout {
  entry: bigint;
  /** The page after the image (the demo's _end). */
  imageEnd: bigint;
  /**
   * The first unmapped address after the image: the kernel maps its image up to the
   * 2 MiB boundary after _end (64-bit); a 32-bit image lies in the direct map, which ends
   * with RAM.
   */
  mappedEnd: bigint;
  directMap: bigint;
  /** Physical address of the top-level page table (every VCPU's cr3). */
  cr3: number;
}

const XEN_CAPABILITIES = 'xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64';
/** Xen release shown for each domctl interface version. */
const RELEASE_BY_INTERFACE: Record<number, [number, number]> = { 0x15: [4, 17], 0x16: [4, 18], 0x17: [4, 19], 0x18: [4, 22] };

/** The demo guest built by scripts/build-guest.js, found from here upwards (works from src/ and dist/). */
export function defaultGuestImage(width: 32 | 64): string {
  const file = path.join('guest', 'build', `demo${width}.elf`);
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    const p = path.join(dir, file);
    if (fs.existsSync(p)) return p;
    if (path.dirname(dir) === dir) throw new Error(`${file} not found: run \`node scripts/build-guest.js\` (npm run build)`);
  }
}

function domainHandle(domid: number, name: string): Buffer {
  const h = createHash('sha256').update(`gdbsx-sim:${domid}:${name}`).digest().subarray(0, 16);
  h[6] = (h[6] & 0x0f) | 0x40; // a version-4-looking UUID
  h[8] = (h[8] & 0x3f) | 0x80;
  return h;
}

/** Copy a C string into a fixed-size Xen buffer (zero-padded, truncated to fit). */
function putCString(arg: Buffer | undefined, s: string, size: number, op: string): void {
  if (!arg) throw new XenError(op, Errno.EFAULT);
  const n = Math.min(arg.length, size);
  arg.fill(0, 0, n);
  arg.write(s, 0, Math.max(0, Math.min(s.length, n - 1)), 'latin1');
}

export class SimXen implements Hypercalls {
  readonly kind = 'sim' as const;
  private readonly doms = new Map<number, SimDomain>();
  private readonly loaded = new Map<number, LoadedGuest>();
  private readonly debuggerListeners = new Set<() => void>();
  private readonly stateListeners = new Set<(e: SimEvent) => void>();
  private pending: SimEvent[] = [];
  private readonly sched: Scheduler;
  private readonly textPokes: TextPokeLoop[] = [];
  private readonly host: DomctlHost;
  readonly interfaceVersion: number;
  readonly gdbsx: boolean;
  readonly mtf: boolean;
  private readonly release: SimRelease | undefined;
  private readonly foreign = new ForeignMaps((id) => this.doms.get(id));
  private readonly monitor: SimMonitor;
  /** dom0's xenstore (xenstore.ts): each domain's tree is written when it is created. */
  readonly xenstore = new SimXenStore();
  readonly pcpus: number;

  constructor(o: SimXenOptions = {}) {
    this.release = o.release === undefined ? undefined : parseRelease(o.release);
    this.interfaceVersion = o.interfaceVersion ?? (this.release ? interfaceVersionOf(this.release) : 0x15);
    this.gdbsx = o.gdbsx ?? true;
    this.mtf = o.mtf ?? false;
    this.pcpus = o.pcpus ?? 4;
    this.sched = new Scheduler(() => this.doms.values(), (e) => this.onExec(e), () => {
      for (const l of this.textPokes) l.afterSlice();
      this.flushEvents();
    },
      { slice: o.sliceInstructions ?? 4000, autoRun: o.autoRun ?? true, gdbsx: this.gdbsx, timerHz: o.timerHz ?? 100, jitter: o.sliceJitter ?? false });
    this.monitor = new SimMonitor({
      interfaceVersion: this.interfaceVersion,
      mtf: this.mtf,
      domain: (id) => this.doms.get(id),
      changed: (d, what) => this.host.changed(d, what),
      flush: () => this.flushEvents(),
    });
    this.host = {
      monitor: this.monitor,
      interfaceVersion: this.interfaceVersion,
      dropsHighGprs: this.release !== undefined && dropsHighGprs(this.release),
      gdbsx: this.gdbsx,
      mtf: this.mtf,
      shadowPaging: o.shadowPaging ?? true,
      pcpus: this.pcpus,
      domain: (id) => this.doms.get(id),
      domains: () => [...this.doms.values()].sort((a, b) => a.domid - b.domid),
      changed: (d, what) => {
        this.emit({ type: 'state', domid: d.domid, what });
        this.sched.kick();
      },
    };
    this.addDom0();
  }

  // ---- Hypercalls ----

  domctl(op: Buffer, data?: DomctlData): number {
    try {
      return doDomctl(this.host, op, data);
    } finally {
      this.flushEvents();
    }
  }

  xenVersion(cmd: number, arg?: Buffer): number {
    const [major, minor] = this.release ? [this.release.major, this.release.minor] : RELEASE_BY_INTERFACE[this.interfaceVersion] ?? [4, 17];
    const op = `XENVER_${cmd}`;
    switch (cmd) {
      case XenVer.version: return (major << 16) | minor;
      case XenVer.extraversion: putCString(arg, this.release ? this.release.extra : '.5-sim', 16, op); return 0;
      case XenVer.capabilities: putCString(arg, XEN_CAPABILITIES, 1024, op); return 0;
      case 4: putCString(arg, 'gdbsx simulated hypervisor', 64, op); return 0; // XENVER_changeset
      case 7: return 4096; // XENVER_pagesize
      default: throw new XenError(op, Errno.ENOSYS);
    }
  }

  /** privcmd mmap + MMAPBATCH_V2 over the domain's memory (foreign.ts). */
  mapForeign(domid: number, frames: readonly bigint[], writable: boolean): ForeignMapping {
    return this.foreign.map(domid, frames, writable);
  }

  /** HVMOP_get_param / set_param (monitor.ts). */
  hvmOp(cmd: number, arg: Buffer): number {
    return this.monitor.hvmOp(cmd, arg);
  }

  /** XENMEM_maximum_gpfn here; XENMEM_decrease_reservation / populate_physmap of single frames (monitor.ts). */
  memoryOp(cmd: number, arg: Buffer, data?: DomctlData): number {
    if (cmd === XenMem.maximumGpfn) {
      const d = arg.length >= 2 ? this.doms.get(arg.readUInt16LE(0)) : undefined;
      if (!d) throw new XenError('XENMEM_maximum_gpfn', Errno.ESRCH);
      // The p2m's highest mapped frame: RAM, or a special page above it (HVM); PV: max_pfn - 1.
      return Math.max(d.mem.length / 4096 - 1, ...(d.hvm ? d.specialFrames.keys() : []));
    }
    if (cmd === XenMem.getPodTarget) {
      const d = arg.length >= PodTarget.size ? this.doms.get(arg.readUInt16LE(PodTarget.domid)) : undefined;
      if (!d) throw new XenError('XENMEM_get_pod_target', Errno.ESRCH);
      if (!d.hvm) throw new XenError('XENMEM_get_pod_target', Errno.EINVAL);
      arg.writeBigUInt64LE(BigInt(d.pages), PodTarget.totPages);
      arg.writeBigUInt64LE(0n, PodTarget.podCachePages);
      arg.writeBigUInt64LE(BigInt(d.podEntries), PodTarget.podEntries);
      return 0;
    }
    return this.monitor.memoryOp(cmd, arg, data);
  }

  /** EVTCHNOP_status (evtchn.ts). */
  eventChannelOp(cmd: number, arg: Buffer): number {
    return evtchnOp(cmd, arg, (id) => this.doms.get(id), (d) => this.monitor.state(d).ring);
  }

  /** XEN_DMOP_inject_event (monitor.ts). */
  dmOp(domid: number, bufs: Buffer[]): number {
    return this.monitor.dmOp(domid, bufs);
  }

  /** /dev/xen/evtchn: only the monitor ring's port can be bound (monitor.ts). */
  bindInterdomain(domid: number, remotePort: number, onEvent: () => void): EventPort {
    return this.monitor.bindInterdomain(domid, remotePort, onEvent);
  }

  /**
   * Called whenever a VCPU trap pauses a domain for the debugger: int3 and single-step
   * (TF or MTF) alike. Real Xen raises VIRQ_DEBUGGER only for steps; pollers don't mind.
   */
  onDebuggerEvent(listener: () => void): () => void {
    this.debuggerListeners.add(listener);
    return () => this.debuggerListeners.delete(listener);
  }

  /** Every state change: traps, pauses, shutdowns, creation and destruction. */
  onStateChange(listener: (e: SimEvent) => void): () => void {
    this.stateListeners.add(listener);
    return () => this.stateListeners.delete(listener);
  }

  /** Stop running guests for good; domctls keep answering. */
  close(): void {
    this.sched.close();
  }

  // ---- control API ----

  createDomain(o: CreateDomainOptions): number {
    const domid = o.domid ?? this.freeDomid();
    if (this.doms.has(domid)) throw new Error(`domain ${domid} already exists`);
    if (domid <= CALLER_DOMID || domid >= 0x7ff0) throw new Error(`domid ${domid} is not a guest domid`);
    const type = o.type ?? 'pv';
    const memMiB = o.memMiB ?? 64;
    if (memMiB < 32 || memMiB > 1024) throw new Error('memMiB must be 32..1024');
    const imagePath = o.image ?? defaultGuestImage(o.width);
    const elf = parseElf(fs.readFileSync(imagePath), imagePath);
    if (elf.width !== o.width) throw new Error(`${imagePath} is a ${elf.width}-bit image, not ${o.width}-bit`);
    const name = o.name ?? `sim${domid}`;
    const d = new SimDomain({ domid, name, type, width: o.width, mem: Buffer.alloc(memMiB << 20), handle: domainHandle(domid, name) });
    const g = loadGuest(d.mem, elf, o.vcpus);
    d.symbols = g.symbols;
    d.pageTables = g.pageTables;
    const online = o.onlineVcpus ?? o.vcpus;
    for (let i = 0; i < o.vcpus; i++) {
      const v = new SimVcpu(i, new X86Cpu(d.mem, o.width === 64, type === 'pv'), d.layout);
      if (i < online) bringUp(d, v, g.vcpus[i], g.entry, g.cr3);
      d.vcpus.push(v);
    }
    if (o.paused) d.controllerPause = 1;
    d.guestTrapHandlers = o.guestTrapHandlers ?? false;
    this.monitor.initDomain(d);
    if (type === 'pv') buildPvSharedInfo(d);
    this.doms.set(domid, d);
    this.loaded.set(domid, g);
    d.evtchns = guestEventChannels(domid, online);
    const h = d.handle.toString('hex');
    this.xenstore.addDomain({
      domid, name, type, vcpus: o.vcpus, memKiB: memMiB * 1024,
      uuid: `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`,
    });
    this.emit({ type: 'created', domid });
    this.flushEvents();
    this.sched.kick();
    return domid;
  }

  /** `xl destroy`. With `zombie`, the domain stays listed as dying (like one still referenced). */
  destroyDomain(domid: number, o: { zombie?: boolean } = {}): void {
    const d = this.dom(domid);
    d.dying = true;
    if (!o.zombie) {
      this.doms.delete(domid);
      this.loaded.delete(domid);
      this.xenstore.removeDomain(domid);
    }
    this.emit({ type: 'destroyed', domid });
    this.flushEvents();
  }

  /** The guest shuts itself down (or crashes): it stops running, its state is preserved. */
  shutdownDomain(domid: number, reason: ShutdownName | number, message?: string): void {
    const d = this.dom(domid);
    const code = typeof reason === 'number' ? reason : ShutdownReason[reason];
    d.shutdown(code, message);
    this.emit({ type: 'shutdown', domid, reason: code, message: d.crashReason });
    this.flushEvents();
  }

  domainIds(): number[] {
    return [...this.doms.keys()].sort((a, b) => a - b);
  }

  /**
   * max_pages above tot_pages (xl's maxmem slack) and populate-on-demand entries
   * (memory < maxmem), as getdomaininfo and XENMEM_get_pod_target report them.
   */
  setMemoryLimits(domid: number, o: { maxPagesSlack?: number; podEntries?: number }): void {
    const d = this.doms.get(domid);
    if (!d) throw new Error(`no domain ${domid}`);
    if (o.maxPagesSlack !== undefined) d.maxPagesSlack = o.maxPagesSlack;
    if (o.podEntries !== undefined) d.podEntries = o.podEntries;
  }

  domainState(domid: number): SimDomainState {
    const d = this.dom(domid);
    return {
      name: d.name,
      type: d.type,
      width: d.width,
      controllerPauseCount: d.controllerPause,
      vcpuPauseCounts: d.vcpus.map((v) => v.pauseCount),
      vcpuEvents: d.vcpus.map((v) => v.event),
      debuggerAttached: d.debuggerAttached,
      shutdownReason: d.shutdownCode,
      crashReason: d.crashReason,
      dying: d.dying,
      instructions: d.vcpus.map((v) => v.instructions),
      halted: d.vcpus.map((v) => v.halted),
      halts: d.vcpus.map((v) => v.halts),
      timerWakeups: d.vcpus.map((v) => v.timerWakeups),
      logDirty: d.dirtyLog !== undefined,
    };
  }

  /** The loaded image's symbol table (name -> address). */
  symbols(domid: number): ReadonlyMap<string, bigint> {
    return this.dom(domid).symbols;
  }

  symbol(domid: number, name: string): bigint {
    const a = this.dom(domid).symbols.get(name);
    if (a === undefined) throw new Error(`no symbol ${name} in domain ${domid}'s image`);
    return a;
  }

  layout(domid: number): GuestLayout {
    const g = this.loaded.get(domid);
    if (!g) throw new Error(`domain ${domid} has no loaded image`);
    return { entry: g.entry, imageEnd: g.imageEnd, mappedEnd: g.mappedEnd, directMap: g.directMap, cr3: g.cr3 };
  }

  /** Read guest memory by virtual address through `vcpu`'s page tables (not the debugger path). */
  readVirt(domid: number, va: bigint, len: number, vcpu = 0): Buffer {
    const out = Buffer.alloc(len);
    this.virtCopy(domid, va, len, vcpu, (pa, off, n) => this.dom(domid).mem.copy(out, off, pa, pa + n));
    return out;
  }

  writeVirt(domid: number, va: bigint, data: Buffer, vcpu = 0): void {
    this.virtCopy(domid, va, data.length, vcpu, (pa, off, n) => {
      this.dom(domid).markDirty(pa, n);
      data.copy(this.dom(domid).mem, pa, off, off + n);
    });
  }

  readPhys(domid: number, pa: number, len: number): Buffer {
    const mem = this.dom(domid).mem;
    if (pa < 0 || pa + len > mem.length) throw new Error(`physical 0x${pa.toString(16)}+${len} is outside guest RAM`);
    return Buffer.from(mem.subarray(pa, pa + len));
  }

  writePhys(domid: number, pa: number, data: Buffer): void {
    const mem = this.dom(domid).mem;
    if (pa < 0 || pa + data.length > mem.length) throw new Error(`physical 0x${pa.toString(16)}+${data.length} is outside guest RAM`);
    this.dom(domid).markDirty(pa, data.length);
    data.copy(mem, pa);
  }

  /** A VCPU's live registers (GPRs by name, rip, rflags, control/debug registers, bases). */
  registers(domid: number, vcpu: number): SimRegisters {
    const c = this.vcpu(domid, vcpu).cpu;
    const gprs = Object.fromEntries((Object.keys(Gpr) as GprName[]).map((n) => [n, c.getGpr(Gpr[n])])) as Record<GprName, bigint>;
    return {
      ...gprs, rip: c.rip, rflags: BigInt(c.rflags), cr0: c.cr0, cr2: c.cr2, cr3: c.cr3, cr4: c.cr4,
      dr6: c.dr[6], dr7: c.dr[7], fs_base: c.fsBase, gs_base: c.gsBase,
    };
  }

  /** Foreign mappings not yet unmapped, of `domid` or of all domains (leak checks). */
  liveMappings(domid?: number): number {
    return this.foreign.count(domid);
  }

  /**
   * Put a VCPU into guest user mode, running a process of its own (userMode.ts): a loop
   * at codeAddr, its data at dataAddr (the same address in every VCPU's process).
   */
  enterUserMode(domid: number, vcpu: number, o: UserModeOptions = {}): UserModeInfo {
    const info = enterUserMode(this.dom(domid), this.vcpu(domid, vcpu), o);
    this.emit({ type: 'state', domid, what: `vcpu ${vcpu} in user mode` });
    this.flushEvents();
    return info;
  }

  /** Back to the kernel state the VCPU had before enterUserMode; its process goes away. */
  leaveUserMode(domid: number, vcpu: number): void {
    leaveUserMode(this.dom(domid), this.vcpu(domid, vcpu));
    this.emit({ type: 'state', domid, what: `vcpu ${vcpu} back in kernel mode` });
    this.flushEvents();
  }

  /** `xl vcpu-pin`: the physical CPUs `vcpu` may run on (hard) and prefers (soft); undefined: all. */
  setVcpuAffinity(domid: number, vcpu: number, hard: number[] | undefined, soft: number[] | undefined): void {
    for (const c of [...(hard ?? []), ...(soft ?? [])]) if (!Number.isInteger(c) || c < 0 || c >= this.pcpus) throw new Error(`no physical CPU ${c} (the host has ${this.pcpus})`);
    if (hard && hard.length === 0) throw new Error('an empty hard affinity');
    const v = this.vcpu(domid, vcpu);
    v.hardAffinity = hard ? [...hard].sort((a, b) => a - b) : undefined;
    v.softAffinity = soft ? [...soft].sort((a, b) => a - b) : undefined;
  }

  /** The monitor (vm_event) side of a domain: its ring, enabled events, vm_event pauses, pending injections. */
  monitorState(domid: number): SimMonitorState {
    return this.monitor.state(this.dom(domid));
  }

  /**
   * The guest patches its own text with an int3, as Linux's text_poke_bp does: 0xcc at
   * `addr` (through VCPU0's page tables). Returns the function that finishes the patch
   * (puts the original byte back); calling it again does nothing.
   */
  guestPatch(domid: number, addr: bigint): () => void {
    const orig = this.readVirt(domid, addr, 1);
    this.writeVirt(domid, addr, Buffer.from([0xcc]));
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.writeVirt(domid, addr, orig);
      this.sched.kick();
    };
  }

  /**
   * The guest patches the instruction at `addr` (`len` bytes) again and again with Linux's
   * text_poke_bp protocol, VCPU `patcher` doing it every `gap` slices (textPoke.ts): an
   * int3 shows at `addr` for as long as the other VCPUs take to sync. Needs
   * guestTrapHandlers (the VCPUs that meet the int3 wait in the model's #BP handler).
   * Returns the loop (its stats) and the function that stops it, instruction whole.
   */
  textPokeLoop(domid: number, addr: bigint, o: { len: number; patcher?: number; gap?: number }): { loop: TextPokeLoop; stop: () => void } {
    const d = this.dom(domid);
    const loop = new TextPokeLoop(d, addr, (a, b) => this.writeVirt(domid, a, b), (a, n) => this.readVirt(domid, a, n),
      o.patcher ?? 0, o.gap ?? 4, o.len);
    this.textPokes.push(loop);
    return {
      loop,
      stop: () => {
        const i = this.textPokes.indexOf(loop);
        if (i < 0) return;
        this.textPokes.splice(i, 1);
        loop.finish();
        this.sched.kick();
      },
    };
  }

  /**
   * Ground truth for profilers: from now on count the instructions each VCPU of `domid`
   * retires, by the address they start at (on = false stops counting and drops the counts).
   */
  tallyPcs(domid: number, on = true): void {
    for (const v of this.dom(domid).vcpus) v.pcTally = on ? new Map() : undefined;
  }

  /** The counts since tallyPcs: instructions retired per start address (by VCPU, or all VCPUs summed). */
  pcTally(domid: number, vcpu?: number): Map<bigint, number> {
    const out = new Map<bigint, number>();
    for (const v of this.dom(domid).vcpus) {
      if (vcpu !== undefined && v.id !== vcpu) continue;
      for (const [k, n] of v.pcTally ?? []) {
        // Keys hold address bits 0..51 exactly; canonical addresses sign-extend from there.
        const a = BigInt.asUintN(64, BigInt.asIntN(52, BigInt(k)));
        out.set(a, (out.get(a) ?? 0) + n);
      }
    }
    return out;
  }

  /**
   * A timer tick, then one slice of every runnable VCPU, now (with autoRun: false, the
   * only way guests run; each call is one period of the guests' timer).
   */
  runSlice(): void {
    this.sched.runSlice();
    this.flushEvents();
  }

  // ---- internals ----

  private addDom0(): void {
    // A placeholder for the control domain: listed, never executed.
    const d = new SimDomain({ domid: 0, name: 'Domain-0', type: 'pv', width: 64, mem: Buffer.alloc(0), handle: Buffer.alloc(16) });
    d.placeholder = true;
    d.pages = (768 << 20) / 4096;
    const v = new SimVcpu(0, new X86Cpu(d.mem, true, true), d.layout);
    v.initialised = true;
    v.down = false;
    v.halted = true; // shows as blocked, like an idle dom0
    d.vcpus.push(v);
    this.doms.set(0, d);
  }

  private freeDomid(): number {
    let id = 1;
    while (this.doms.has(id)) id++;
    return id;
  }

  private dom(domid: number): SimDomain {
    const d = this.doms.get(domid);
    if (!d) throw new Error(`no domain ${domid}`);
    return d;
  }

  private vcpu(domid: number, vcpu: number): SimVcpu {
    const v = this.dom(domid).vcpus[vcpu];
    if (!v) throw new Error(`domain ${domid} has no VCPU ${vcpu}`);
    return v;
  }

  private virtCopy(domid: number, va: bigint, len: number, vcpu: number, copy: (pa: number, off: number, n: number) => void): void {
    const c = this.vcpu(domid, vcpu).cpu;
    c.flushTlb();
    for (let off = 0; off < len;) {
      const a = BigInt.asUintN(64, va + BigInt(off));
      const pa = c.translate(Number(a & 0xffffffffn), Number(a >> 32n));
      if (pa === UNMAPPED) throw new Error(`guest address 0x${a.toString(16)} is not mapped in d${domid}v${vcpu}`);
      const n = Math.min(4096 - (pa & 0xfff), len - off);
      copy(pa, off, n);
      off += n;
    }
  }

  private onExec(e: ExecEvent): void {
    if (e.kind === 'crash') {
      this.emit({ type: 'shutdown', domid: e.domid, reason: ShutdownReason.crash, message: e.message });
      return;
    }
    if (e.kind === 'monitor') {
      this.emit({ type: 'monitor', domid: e.domid, vcpu: e.vcpu, event: e.type });
      return;
    }
    this.emit({ type: 'trap', domid: e.domid, vcpu: e.vcpu, kind: e.kind });
  }

  private emit(e: SimEvent): void {
    this.pending.push(e);
  }

  /** Deliver queued events once the hypervisor is consistent again (never mid-slice or mid-domctl). */
  private flushEvents(): void {
    while (this.pending.length) {
      const batch = this.pending;
      this.pending = [];
      for (const e of batch) {
        for (const l of [...this.stateListeners]) l(e);
        if (e.type === 'trap') for (const l of [...this.debuggerListeners]) l();
      }
    }
  }

}
