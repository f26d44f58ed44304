// A simulated domain and its VCPUs: the state Xen keeps per domain/vcpu that the
// gdbsx domctls look at (pause counts, debugger_attached, gdbsx_vcpu_event, shutdown).
import { CTX32, CTX64, ContextLayout } from '../context';
import { ShutdownReason } from '../domctl';
import { X86Cpu } from './cpu';
import type { UserProcess } from './userMode';
import type { SimEvtchn } from './evtchn';

export type DomainType = 'pv' | 'pvh';
export type SegName = 'cs' | 'ss' | 'ds' | 'es' | 'fs' | 'gs';

/** Xen caps both controller pause counts at 255. */
export const MAX_PAUSE_COUNT = 255;

/** An exception queued by XEN_DMOP_inject_event (struct xen_dm_op_inject_event). */
export interface InjectedEvent {
  vector: number;
  /** X86_EVENTTYPE_*. */
  type: number;
  insnLen: number;
  errorCode: number;
  /** cr2 for #PF, pending_dbg for #DB. */
  cr2: bigint;
}

export class SimVcpu {
  readonly id: number;
  readonly cpu: X86Cpu;
  /** Ever brought up (getvcpucontext answers ENODATA otherwise). */
  initialised = false;
  /** VPF_down: offline. */
  down = true;
  /** vcpu_pause_by_systemcontroller count (gdbsx_pausevcpu). */
  pauseCount = 0;
  /** arch.gdbsx_vcpu_event: 3 after an int3 trapped to the debugger, read-to-clear. */
  event = 0;
  /** Executed hlt: sleeps (shows as "blocked") until the periodic timer wakes it (scheduler.ts). */
  halted = false;
  /** hlt instructions that halted the VCPU, and timer ticks that woke it. */
  halts = 0;
  timerWakeups = 0;
  /** v->arch.hvm.single_step (monitor trap flag via debug_op). */
  singleStep = false;
  /** Instructions retired; cpu_time is derived from it. */
  instructions = 0;
  /** SimXen.tallyPcs: instructions retired by start address (bits 0..51 of rip as a number). */
  pcTally: Map<number, number> | undefined;
  /** Segment selectors as the context shows them (the CPU runs flat and ignores them). */
  readonly sel: Record<SegName, number> = { cs: 0, ss: 0, ds: 0, es: 0, fs: 0, gs: 0 };
  /** Virtualised IOPL of a PV VCPU (Xen keeps it out of the real rflags). */
  iopl = 0;
  /**
   * Context fields the CPU does not model (FPU image, trap table, gdt_frames, callbacks...),
   * in the domain's context layout, so that get -> set round trips keep them.
   */
  readonly ctxExtra: Buffer;
  /**
   * 64-bit PV: v->arch.guest_table (the kernel top-level table) and guest_table_user
   * (0: none), as cr3 values. cpu.cr3 is the active one: guestTable while `kernelMode`
   * (TF_kernel_mode), guestTableUser in guest user mode (Xen's update_cr3).
   */
  guestTable = 0n;
  guestTableUser = 0n;
  kernelMode = true;
  /** In guest user mode via SimXen.enterUserMode: its process and the kernel state to go back to. */
  user: UserProcess | undefined;
  /** v->vm_event_pause_count: a sync monitor event holds the VCPU until a VCPU_PAUSED response (monitor.ts). */
  vmEventPause = 0;
  /** Held by the monitor ring's flow control: waiting for a free slot (ved->wq) or blocked (_VPF_mem_access). */
  vmEventBlocked = false;
  /** Physical CPUs it may run on (hard affinity) and prefers (soft); undefined: every CPU. */
  hardAffinity: number[] | undefined;
  softAffinity: number[] | undefined;
  /** XEN_DMOP_inject_event queued for the VCPU's next entry (v->arch.hvm.inject_event). */
  injectEvent: InjectedEvent | undefined;

  constructor(id: number, cpu: X86Cpu, layout: ContextLayout) {
    this.id = id;
    this.cpu = cpu;
    this.ctxExtra = Buffer.alloc(layout.size);
  }
}

export interface DomainConfig {
  domid: number;
  name: string;
  type: DomainType;
  width: 32 | 64;
  mem: Buffer;
  handle: Buffer;
}

export class SimDomain {
  readonly domid: number;
  readonly name: string;
  readonly type: DomainType;
  readonly width: 32 | 64;
  /** Guest RAM; guest-physical address = offset (identity p2m). */
  readonly mem: Buffer;
  readonly handle: Buffer;
  /** tot_pages; max_pages is this plus maxPagesSlack. */
  pages: number;
  /** max_pages above tot_pages (xl gives HVM/PVH guests maxmem = memory + a little slack). */
  maxPagesSlack = 0;
  /** Populate-on-demand entries not backed by memory yet (XENMEM_get_pod_target; HVM/PVH, memory < maxmem). */
  podEntries = 0;
  readonly vcpus: SimVcpu[] = [];
  symbols = new Map<string, bigint>();
  /** d->controller_pause_count. */
  controllerPause = 0;
  debuggerAttached = false;
  /** SHUTDOWN_* code once shut down. */
  shutdownCode: number | undefined;
  /** Why the guest crashed, for people and tests (Xen would print it on its console). */
  crashReason: string | undefined;
  dying = false;
  /** A placeholder that never executes (dom0). */
  placeholder = false;
  /**
   * The guest kernel handles its own #BP and #DB (execute.ts), as Linux does for its
   * text_poke int3s; false: no IDT, such an exception crashes the domain.
   */
  guestTrapHandlers = false;
  /**
   * PV page-table pages by frame: PageType level bits (l1..l4), plus PFINFO_LPINTAB for
   * pinned roots. Xen's type counts: such a frame cannot be mapped writable (get_page_type
   * wants PGT_writable_page). Filled by the loader and by user-mode processes; HVM
   * memory has no PV types, so it is ignored for 'pvh' domains.
   */
  pageTables = new Map<number, number>();
  /**
   * Frames outside RAM that are populated all the same (the HVM special pages, e.g. the
   * monitor ring): frame -> its 4 KiB. Foreign mappings reach them like RAM.
   */
  readonly specialFrames = new Map<number, Buffer>();
  /** RAM frames taken out of the physmap (XENMEM_decrease_reservation): holes for foreign mappings. */
  readonly removedFrames = new Set<number>();
  /** Log-dirty mode (shadow_op): one byte per RAM frame, set by every write to it; undefined when off. */
  dirtyLog: Uint8Array | undefined;
  /** Log-dirty stats since the last CLEAN (dirty_count: frames newly dirtied). */
  dirtyStats = { faults: 0, dirty: 0 };
  /** Event channels by port (evtchn.ts): what EVTCHNOP_status reports. */
  evtchns = new Map<number, SimEvtchn>();
  /** PV: the shared_info page (a special frame) with the p2m frame lists, built at creation. */
  sharedInfoFrame = 0;

  constructor(c: DomainConfig) {
    this.domid = c.domid;
    this.name = c.name;
    this.type = c.type;
    this.width = c.width;
    this.mem = c.mem;
    this.handle = c.handle;
    this.pages = c.mem.length / 4096;
  }

  get hvm(): boolean {
    return this.type === 'pvh';
  }

  /** 32-bit PV domains use the compat context layout; everyone else the native one. */
  get pv32(): boolean {
    return this.type === 'pv' && this.width === 32;
  }

  get layout(): ContextLayout {
    return this.pv32 ? CTX32 : CTX64;
  }

  get isShutdown(): boolean {
    return this.shutdownCode !== undefined;
  }

  /** Whether `v` may execute now (Xen: no pause reason of any kind). */
  canRun(v: SimVcpu): boolean {
    return this.controllerPause === 0 && v.pauseCount === 0 && v.vmEventPause === 0 && !v.vmEventBlocked &&
      !v.down && v.initialised && this.shutdownCode === undefined && !this.dying && !this.placeholder;
  }

  anyRunnable(): boolean {
    return this.vcpus.some((v) => this.canRun(v));
  }

  /**
   * domain_pause_for_debugger(): domain_pause_by_systemcontroller_nosync, whose
   * EOVERFLOW at 255 Xen ignores (the pause is then simply not taken).
   */
  pauseForDebugger(): void {
    if (this.controllerPause < MAX_PAUSE_COUNT) this.controllerPause++;
  }

  shutdown(code: number, reason?: string): void {
    if (this.shutdownCode !== undefined) return;
    this.shutdownCode = code;
    if (code === ShutdownReason.crash) this.crashReason = reason ?? 'crashed';
  }

  /** Log-dirty on or off: every VCPU's CPU marks its writes in the same log. */
  setDirtyLog(log: Uint8Array | undefined): void {
    this.dirtyLog = log;
    for (const v of this.vcpus) v.cpu.dirtyLog = log;
    this.dirtyStats = { faults: 0, dirty: 0 };
  }

  /** A write from outside the CPU (a backend, the debugger, a test playing the guest) to [pa, pa+len). */
  markDirty(pa: number, len: number): void {
    if (!this.dirtyLog || len <= 0) return;
    for (let f = Math.floor(pa / 4096); f <= Math.floor((pa + len - 1) / 4096) && f < this.dirtyLog.length; f++) this.dirtyLog[f] = 1;
  }

  /** Domain-wide cpu_time in ns: the simulated CPUs retire one instruction per ns. */
  cpuTimeNs(): bigint {
    return BigInt(this.vcpus.reduce((t, v) => t + v.instructions, 0));
  }
}
