// The monitor (vm_event) interface of the simulated Xen, as Xen 4.17-4.22 has it:
//   - HVMOP_get_param/set_param and HVM_PARAM_MONITOR_RING_PFN (hvmop_get_param);
//   - XENMEM_decrease_reservation / populate_physmap of single frames (common/memory.c);
//   - XEN_DOMCTL_vm_event_op in monitor mode and XEN_DOMCTL_monitor_op
//     (common/vm_event.c vm_event_domctl, common/monitor.c monitor_domctl);
//   - the ring itself, Xen being its front end (vm_event_put_request, vm_event_resume,
//     the slot reservation and the "black eye" flow control);
//   - the ring's interdomain event channel (/dev/xen/evtchn);
//   - XEN_DMOP_inject_event (hvm/dm.c inject_event).
// The exits that post requests are taken in execute.ts; hvmMonitorDebug below is
// hvm_monitor_debug + monitor_traps.
import createDebug from 'debug';
import { DMOP_INJECT_EVENT, DmOpInject, DOMID_INVALID, HVM_PARAM_MONITOR_RING_PFN, HVM_PARAM_SIZE, HvmOp, MemRes, MonitorEvent, MonitorOp, Off, VmEventMode, VmEventOp, XenMem } from '../domctl';
import { Errno, XenError } from '../errors';
import { DomctlData, EventPort } from '../hypercalls';
import { Reason, Regs, Req, Ring, VM_EVENT_INTERFACE_VERSION, VmFlag, encodeRequest, slotOffset } from '../vmEvent';
import { Gpr } from './cpu-core';
import { SimDomain, SimVcpu } from './domain';
import { PAGE_SIZE, UNMAPPED } from './paging';

const log = createDebug('gdbsx:sim:monitor');

/**
 * The GFN the toolstack gives the monitor ring: special_pfn(SPECIALPAGE_ACCESS) of
 * alloc_magic_pages_hvm (tools/libs/guest/xg_dom_x86.c), 0xff000 - 8 + 1. It lies
 * above the simulated RAM, so it is one of SimDomain.specialFrames: a page of its own
 * that the guest never touches.
 */
export const MONITOR_RING_GFN = 0xfeff9;

/** HVM_NR_PARAMS (4.17-4.22): get/set_param of a larger index is EINVAL. */
const HVM_NR_PARAMS = 39;
/** DOMID_SELF: the caller (dom0 here). */
const DOMID_SELF = 0x7ff0;
/** The simulated toolstack runs in dom0 ("current->domain"). */
const CALLER_DOMID = 0;
/** MEMOP_EXTENT_SHIFT / MEMOP_CMD_MASK: a memory_op continuation's start extent rides in cmd's high bits. */
const MEMOP_EXTENT_SHIFT = 6;
const MEMOP_CMD_MASK = (1 << MEMOP_EXTENT_SHIFT) - 1;
/** Frame numbers the simulation accepts at all (40 bits, as foreign.ts). */
const MAX_FRAME = 2 ** 40;
/** First port Xen hands out for a domain's Xen-bound channels (the guest's own come first). */
const FIRST_XEN_PORT = 8;
/** First local port of our /dev/xen/evtchn bindings. */
const FIRST_LOCAL_PORT = 40;
/**
 * vm_event_resume has no bound on the responses it pulls; a bogus rsp_prod would make
 * it loop up to 2^32 times. Capped per call so the simulation cannot hang.
 */
const MAX_RESPONSES_PER_RESUME = 1024;

/** XEN_DOMCTL_MONITOR_EVENT_* beyond those in domctl.ts (capability bits only: they never fire here). */
const MoreEvents = { interrupt: 8, emulUnimplemented: 10, inguestPagefault: 11, vmexit: 12, io: 13 } as const;

/** What the monitor code needs from the simulated hypervisor. */
export interface MonitorHost {
  readonly interfaceVersion: number;
  /** VMX with the monitor trap flag: SINGLESTEP and TOGGLE_SINGLESTEP work. */
  readonly mtf: boolean;
  domain(domid: number): SimDomain | undefined;
  /** Something about `d` changed (VCPUs may have become runnable). */
  changed(d: SimDomain, what: string): void;
  /** Deliver queued state events (after work done outside a domctl, e.g. an evtchn notify). */
  flush(): void;
}

/** A VCPU in vm_event_wait_slot (ved->wq) with the request it will put once a slot is free. */
interface Waiter {
  v: SimVcpu;
  req: Buffer;
  sync: boolean;
  /** An async event whose exception also goes to the guest (monitor_traps returned 0): done once posted. */
  after: (() => void) | undefined;
}

/** struct vm_event_domain: the ring as Xen sees it. */
class VmEventRing {
  /** front_ring.req_prod_pvt and rsp_cons: Xen's private indices. */
  reqProdPvt = 0;
  rspCons = 0;
  readonly waiting: Waiter[] = [];
  /** VCPUs given a "black eye" (vm_event_mark_and_pause), ved->blocked. */
  readonly blocked = new Set<SimVcpu>();
  lastWake = -1;
  binding: SimEventPort | undefined;

  constructor(readonly page: Buffer, readonly gfn: number, readonly xenPort: number) {}

  /** vm_event_ring_available: RING_FREE_REQUESTS (unsigned ring arithmetic; no reservations outstanding here). */
  available(): number {
    return Ring.slots - ((this.reqProdPvt - this.rspCons) | 0);
  }
}

/** Per-domain monitor state: the HVM params, d->arch.monitor, the ring. */
class DomainMonitor {
  readonly params = new Map<number, bigint>();
  /** Enabled monitor events -> their sync byte. Reset by vm_event DISABLE (arch_monitor_cleanup_domain). */
  readonly events = new Map<number, boolean>();
  ring: VmEventRing | undefined;
  private nextPort = FIRST_XEN_PORT;

  allocPort(): number {
    return this.nextPort++;
  }
}

const monitors = new WeakMap<SimDomain, DomainMonitor>();

function monitorOf(d: SimDomain): DomainMonitor {
  let m = monitors.get(d);
  if (!m) {
    m = new DomainMonitor();
    monitors.set(d, m);
  }
  return m;
}

/** Our end of the ring's event channel. */
class SimEventPort implements EventPort {
  private scheduled = false;
  private closed = false;

  constructor(
    readonly localPort: number,
    private readonly m: DomainMonitor,
    private readonly ring: VmEventRing,
    private readonly onEvent: () => void,
    private readonly onNotify: () => void,
  ) {}

  /** Still connected to a live ring (a DISABLE frees Xen's end: our port then hears nothing). */
  private get live(): boolean {
    return !this.closed && this.ring.binding === this && this.m.ring === this.ring;
  }

  /** Xen set the port pending: the listener runs on the event loop, once per batch (the pending bit). */
  fire(): void {
    if (this.scheduled || !this.live) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      if (this.live) this.onEvent();
    });
  }

  notify(): void {
    if (this.closed) throw new XenError('IOCTL_EVTCHN_NOTIFY', Errno.EINVAL, 'the port is not bound');
    // evtchn_send to a Xen-bound port runs monitor_notification (vm_event_resume) at once;
    // to a port whose remote end is gone it is dropped silently.
    if (this.live) this.onNotify();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.ring.binding === this) this.ring.binding = undefined;
  }
}

/** Monitor state of a domain, for tests and people. */
export interface SimMonitorState {
  /** HVM_PARAM_MONITOR_RING_PFN (0: none, PV). */
  ringPfn: number;
  ring: { gfn: number; port: number; bound: boolean; localPort: number | undefined; reqProd: number; rspCons: number; free: number; waiting: number[] } | undefined;
  /** Enabled MonitorEvent numbers. */
  events: number[];
  /** Per VCPU: vm_event_pause_count. */
  vmEventPause: number[];
  /** Per VCPU: held by the ring's flow control (waiting for a slot or blocked). */
  blocked: boolean[];
  /** Per VCPU: the vector of a pending XEN_DMOP_inject_event. */
  pendingInject: (number | undefined)[];
  /** Per VCPU: v->arch.hvm.single_step (MTF). */
  singleStep: boolean[];
}

/** arch_monitor_get_capabilities (xen/arch/x86/include/asm/monitor.h). */
function capabilities(d: SimDomain, host: MonitorHost): number {
  if (!d.hvm) return 0;
  let c = ([
    MonitorEvent.writeCtrlreg, MonitorEvent.movToMsr, MonitorEvent.softwareBreakpoint, MonitorEvent.guestRequest,
    MonitorEvent.debugException, MonitorEvent.cpuid, MoreEvents.interrupt, MoreEvents.emulUnimplemented,
    MoreEvents.inguestPagefault, MoreEvents.vmexit,
  ] as number[]).reduce((a, e) => a | (1 << e), 0);
  if (host.interfaceVersion >= 0x16) c |= 1 << MoreEvents.io; // 4.18+
  if (host.mtf) c |= 1 << MonitorEvent.singlestep; // hvm_is_singlestep_supported: VMX with MTF
  return c >>> 0;
}

function fail(name: string, errno: number, hint?: string): never {
  throw new XenError(name, errno, hint);
}

/** The page behind `gfn` for Xen's own use (prepare_ring_for_helper's get_page_from_gfn), or undefined. */
function pageOf(d: SimDomain, gfn: number): Buffer | undefined {
  if (d.removedFrames.has(gfn)) return undefined;
  const special = d.specialFrames.get(gfn);
  if (special) return special;
  const pa = gfn * PAGE_SIZE;
  return pa + PAGE_SIZE <= d.mem.length ? d.mem.subarray(pa, pa + PAGE_SIZE) : undefined;
}

/** gfn_of_rip: the frame of the VCPU's rip through its own page tables (INVALID_GFN if unmapped). */
function gfnOfRip(v: SimVcpu): bigint {
  const c = v.cpu;
  const pa = c.translate(c.ripLo, c.ripHi);
  return pa === UNMAPPED ? 0xffffffffffffffffn : BigInt(Math.floor(pa / PAGE_SIZE));
}

/** A request with vm_event_fill_regs' registers. dr6 stays 0: Xen's vendor save hook never fills it. */
function fillRequest(v: SimVcpu, reason: number, o: DebugInfo): Buffer {
  const c = v.cpu;
  const b = encodeRequest({
    reason, vcpu: v.id, flags: 0, gfn: gfnOfRip(v), pendingDbg: o.pendingDbg, insnLength: o.insnLength, type: o.trapType,
    rip: c.rip, rflags: BigInt(c.rflags), cr3: c.cr3, dr7: c.dr[7],
  });
  for (let i = 0; i < 16; i++) b.writeBigUInt64LE(c.getGpr(i), Req.regs + i * 8); // hardware order, as Gpr
  b.writeBigUInt64LE(c.cr0, Req.regs + Regs.cr0);
  b.writeBigUInt64LE(c.cr2, Req.regs + Regs.cr2);
  b.writeBigUInt64LE(c.cr4, Req.regs + Regs.cr4);
  b.writeBigUInt64LE(c.fsBase, Req.regs + 280);
  b.writeBigUInt64LE(c.gsBase, Req.regs + 288);
  return b;
}

/** vm_event_put_request (plus monitor_traps' sync pause before it). */
function putRequest(d: SimDomain, r: VmEventRing, v: SimVcpu, req: Buffer, sync: boolean): void {
  let flags = req.readUInt32LE(Req.flags);
  if (sync) {
    flags |= VmFlag.vcpuPaused;
    v.vmEventPause++; // vm_event_vcpu_pause
  }
  req.writeUInt32LE(flags >>> 0, Req.flags);
  req.writeUInt32LE(VM_EVENT_INTERFACE_VERSION, Req.version);
  req.copy(r.page, slotOffset(r.reqProdPvt));
  r.reqProdPvt = (r.reqProdPvt + 1) >>> 0;
  r.page.writeUInt32LE(r.reqProdPvt, Ring.reqProd); // RING_PUSH_REQUESTS, after the slot
  // The "black eye": fewer free slots than VCPUs, and this one will not wait for a
  // response anyway: it waits for space (vm_event_mark_and_pause).
  if (r.available() < d.vcpus.length && v.vmEventPause === 0 && !r.blocked.has(v)) {
    r.blocked.add(v);
    v.vmEventBlocked = true;
  }
  log('d%dv%d: request reason %d%s (req_prod %d)', d.domid, v.id, req.readUInt32LE(Req.reason), sync ? ' sync' : '', r.reqProdPvt);
  // notify_via_xen_event_channel: on every request, whatever req_event says.
  r.binding?.fire();
}

/** vm_event_wake_blocked: let blocked VCPUs go while slots are free, round robin. */
function wakeBlocked(d: SimDomain, r: VmEventRing): void {
  let avail = r.available();
  if (avail <= 0 || r.blocked.size === 0) return;
  const n = d.vcpus.length;
  for (let i = r.lastWake + 1, j = 0; j < n; i++, j++) {
    if (r.blocked.size === 0 || avail <= 0) break;
    const k = i % n;
    const v = d.vcpus[k];
    if (r.blocked.delete(v)) {
      v.vmEventBlocked = false;
      avail--;
      r.lastWake = k;
    }
  }
}

/** vm_event_wake: a response freed a slot. Waiters first (they then put their request), else the blocked. */
function wake(d: SimDomain, r: VmEventRing): void {
  if (r.waiting.length === 0) {
    wakeBlocked(d, r);
    return;
  }
  while (r.waiting.length && r.available() > 0) {
    const w = r.waiting.shift() as Waiter;
    w.v.vmEventBlocked = false;
    putRequest(d, r, w.v, w.req, w.sync);
    w.after?.();
  }
}

/** The exit kinds hvm_monitor_debug reports. */
export type MonitorDebugType = 'softwareBreakpoint' | 'singlestep' | 'debugException';

export interface DebugInfo {
  /** X86_EVENTTYPE_* of the exception (0 for single-step). */
  trapType: number;
  insnLength: number;
  pendingDbg: bigint;
}

/**
 * What became of a debug exit:
 *  - 'none': not monitored (no ring, or the event is off): the exception goes to the guest;
 *  - 'stopped': the VCPU now waits (for the response of a sync event, or for a ring slot);
 *  - 'async': an async request was put; the exception goes to the guest as well.
 */
export type MonitorOutcome = 'none' | 'stopped' | 'async';

const EVENT_OF: Record<MonitorDebugType, { event: number; reason: number }> = {
  softwareBreakpoint: { event: MonitorEvent.softwareBreakpoint, reason: Reason.softwareBreakpoint },
  singlestep: { event: MonitorEvent.singlestep, reason: Reason.singlestep },
  debugException: { event: MonitorEvent.debugException, reason: Reason.debugException },
};

/**
 * hvm_monitor_debug + monitor_traps (arch/x86/hvm/monitor.c, common/monitor.c) for VCPU
 * `v` of an HVM domain, with its registers as the exit leaves them. `afterAsync` runs
 * when an async request that had to wait for a slot is finally put (the guest then gets
 * its exception).
 */
export function hvmMonitorDebug(d: SimDomain, v: SimVcpu, type: MonitorDebugType, o: DebugInfo, afterAsync?: () => void): MonitorOutcome {
  const m = monitors.get(d);
  const { event, reason } = EVENT_OF[type];
  const syncByte = m?.events.get(event);
  if (!m || syncByte === undefined) return 'none';
  const r = m.ring;
  if (!r) return 'none'; // vm_event_claim_slot: -EOPNOTSUPP, "continue executing normally"
  // Breakpoints and steps are always sync; debug exceptions as enabled.
  const sync = type === 'debugException' ? syncByte : true;
  const req = fillRequest(v, reason, type === 'singlestep' ? { trapType: 0, insnLength: 0, pendingDbg: 0n } : o);
  if (r.available() <= 0) {
    // vm_event_wait_slot: the VCPU sleeps on ved->wq until a response frees a slot.
    v.vmEventBlocked = true;
    r.waiting.push({ v, req, sync, after: sync ? undefined : afterAsync });
    log('d%dv%d: ring full, waiting for a slot', d.domid, v.id);
    return 'stopped';
  }
  putRequest(d, r, v, req, sync);
  return sync ? 'stopped' : 'async';
}

/** The monitor interface of one simulated Xen. */
export class SimMonitor {
  private nextLocalPort = FIRST_LOCAL_PORT;

  constructor(private readonly host: MonitorHost) {}

  /** Domain creation: the toolstack's HVM params (alloc_magic_pages_hvm) and the ring's special page. */
  initDomain(d: SimDomain): void {
    if (!d.hvm) return;
    const m = monitorOf(d);
    m.params.set(HVM_PARAM_MONITOR_RING_PFN, BigInt(MONITOR_RING_GFN));
    d.specialFrames.set(MONITOR_RING_GFN, Buffer.alloc(PAGE_SIZE));
  }

  state(d: SimDomain): SimMonitorState {
    const m = monitors.get(d);
    const r = m?.ring;
    return {
      ringPfn: Number(m?.params.get(HVM_PARAM_MONITOR_RING_PFN) ?? 0n),
      ring: r && {
        gfn: r.gfn, port: r.xenPort, bound: r.binding !== undefined, localPort: r.binding?.localPort, reqProd: r.reqProdPvt, rspCons: r.rspCons,
        free: r.available(), waiting: r.waiting.map((w) => w.v.id),
      },
      events: [...(m?.events.keys() ?? [])].sort((a, b) => a - b),
      vmEventPause: d.vcpus.map((v) => v.vmEventPause),
      blocked: d.vcpus.map((v) => v.vmEventBlocked),
      pendingInject: d.vcpus.map((v) => v.injectEvent?.vector),
      singleStep: d.vcpus.map((v) => v.singleStep),
    };
  }

  // ---- __HYPERVISOR_hvm_op ----

  /** HVMOP_get_param / HVMOP_set_param (hvm.c hvmop_get_param / hvmop_set_param). */
  hvmOp(cmd: number, arg: Buffer): number {
    if (cmd !== HvmOp.getParam && cmd !== HvmOp.setParam) fail(`__HYPERVISOR_hvm_op(${cmd})`, Errno.ENOSYS, 'not simulated');
    const name = cmd === HvmOp.getParam ? 'HVMOP_get_param' : 'HVMOP_set_param';
    if (arg.length < HVM_PARAM_SIZE) fail(name, Errno.EFAULT);
    const index = arg.readUInt32LE(4);
    if (index >= HVM_NR_PARAMS) fail(name, Errno.EINVAL, `no HVM param ${index}`);
    const domid = arg.readUInt16LE(0);
    const d = this.host.domain(domid === DOMID_SELF ? CALLER_DOMID : domid);
    if (!d) fail(name, Errno.ESRCH);
    if (!d.hvm) fail(name, Errno.EINVAL, 'not an HVM domain');
    const m = monitorOf(d);
    if (cmd === HvmOp.getParam) arg.writeBigUInt64LE(m.params.get(index) ?? 0n, 8);
    else m.params.set(index, arg.readBigUInt64LE(8));
    return 0;
  }

  // ---- __HYPERVISOR_memory_op ----

  /**
   * XENMEM_decrease_reservation / XENMEM_populate_physmap of order-0 extents (common/memory.c):
   * returns the number of extents done, stopping at the first that fails (Xen's nr_done);
   * errors in the arguments are "0 done", as Xen returns start_extent.
   */
  memoryOp(cmd: number, arg: Buffer, data?: DomctlData): number {
    const op = cmd & MEMOP_CMD_MASK;
    const start = cmd >>> MEMOP_EXTENT_SHIFT;
    if (op !== XenMem.decreaseReservation && op !== XenMem.populatePhysmap) {
      fail(`__HYPERVISOR_memory_op(${op})`, Errno.ENOSYS, 'not simulated');
    }
    if (arg.length < MemRes.size) return start;
    const nr = arg.readBigUInt64LE(MemRes.nrExtents);
    if (BigInt(start) >= nr || nr > 0xffffffffn >> BigInt(MEMOP_EXTENT_SHIFT)) return start;
    const domid = arg.readUInt16LE(MemRes.domid);
    const d = this.host.domain(domid === DOMID_SELF ? CALLER_DOMID : domid);
    if (!d || d.placeholder) return start;
    // Larger extents are not simulated: nothing done.
    if (arg.readUInt32LE(MemRes.extentOrder) !== 0) return start;
    let i = start;
    for (; i < Number(nr); i++) {
      if (!data || (i + 1) * 8 > data.buf.length) break; // copy_from_guest_offset fails
      const g = data.buf.readBigUInt64LE(i * 8);
      if (g >= BigInt(MAX_FRAME)) break;
      const gfn = Number(g);
      if (!(op === XenMem.decreaseReservation ? this.removeFrame(d, gfn) : this.populateFrame(d, gfn))) break;
    }
    this.host.changed(d, `${i - start} frame(s) ${op === XenMem.decreaseReservation ? 'removed from' : 'populated in'} the physmap`);
    this.host.flush();
    return i;
  }

  /**
   * guest_remove_page: the frame leaves the physmap; references to its page (a mapping,
   * the ring) keep it. A RAM frame leaves tot_pages too (a balloon driver's way).
   */
  private removeFrame(d: SimDomain, gfn: number): boolean {
    if (d.specialFrames.delete(gfn)) return true;
    if ((gfn + 1) * PAGE_SIZE > d.mem.length || d.removedFrames.has(gfn)) return false; // a hole: -ENOENT
    d.removedFrames.add(gfn);
    d.pages--;
    return true;
  }

  /**
   * populate_physmap: a fresh zeroed page at `gfn`. Above RAM it is a new special page
   * (a ring still holding the old one keeps it). A RAM frame is the same bytes of d.mem
   * again (the identity p2m cannot give it another page): zeroed unless the live ring
   * still uses it.
   */
  private populateFrame(d: SimDomain, gfn: number): boolean {
    const pa = gfn * PAGE_SIZE;
    if (pa + PAGE_SIZE > d.mem.length) {
      d.specialFrames.set(gfn, Buffer.alloc(PAGE_SIZE));
      return true;
    }
    if (d.removedFrames.delete(gfn)) d.pages++;
    if (monitors.get(d)?.ring?.gfn !== gfn) d.mem.fill(0, pa, pa + PAGE_SIZE);
    return true;
  }

  // ---- __HYPERVISOR_dm_op ----

  /** dm_op (hvm/dm.c): only XEN_DMOP_inject_event is simulated. */
  dmOp(domid: number, bufs: Buffer[]): number {
    const name = `__HYPERVISOR_dm_op(dom${domid})`;
    if (domid === CALLER_DOMID) fail(name, Errno.EPERM, 'the calling domain'); // rcu_lock_remote_domain_by_id
    const d = this.host.domain(domid);
    if (!d) fail(name, Errno.ESRCH);
    if (!d.hvm) fail(name, Errno.EINVAL, 'not an HVM domain');
    if (bufs.length < 1 || bufs[0].length < 8) fail(name, Errno.EFAULT);
    const b = bufs[0];
    const op = b.readUInt32LE(DmOpInject.op);
    if (b.readUInt32LE(4) !== 0) fail(name, Errno.EINVAL, 'pad');
    if (op !== DMOP_INJECT_EVENT) fail(name, Errno.EOPNOTSUPP, `dm_op ${op} is not simulated`);
    const opName = `XEN_DMOP_inject_event(dom${domid})`;
    if (b.length < DmOpInject.size) fail(opName, Errno.EFAULT);
    if (b.readUInt8(15) !== 0 || b.readUInt32LE(20) !== 0) fail(opName, Errno.EINVAL, 'pad');
    const vcpu = b.readUInt32LE(DmOpInject.vcpu);
    const v = d.vcpus[vcpu];
    if (!v) fail(opName, Errno.EINVAL, `no VCPU ${vcpu}`);
    // inject_event: one pending event per VCPU (cmpxchg on inject_event.vector).
    if (v.injectEvent) fail(opName, Errno.EBUSY, `an event is already pending for VCPU ${vcpu}`);
    v.injectEvent = {
      vector: b.readUInt8(DmOpInject.vector), type: b.readUInt8(DmOpInject.type), insnLen: b.readUInt8(DmOpInject.insnLen),
      errorCode: b.readUInt32LE(DmOpInject.errorCode), cr2: b.readBigUInt64LE(DmOpInject.cr2),
    };
    log('d%dv%d: vector %d queued for injection', d.domid, vcpu, v.injectEvent.vector);
    this.host.changed(d, `vcpu ${vcpu}: event ${v.injectEvent.vector} queued`);
    this.host.flush();
    return 0;
  }

  // ---- /dev/xen/evtchn ----

  /** IOCTL_EVTCHN_BIND_INTERDOMAIN: only the ring's unbound Xen port of `domid` can be bound (evtchn_bind_interdomain). */
  bindInterdomain(domid: number, remotePort: number, onEvent: () => void): EventPort {
    const name = `IOCTL_EVTCHN_BIND_INTERDOMAIN(dom${domid}, port ${remotePort})`;
    const d = this.host.domain(domid);
    if (!d) fail(name, Errno.ESRCH);
    const m = monitors.get(d);
    const r = m?.ring;
    if (!m || !r || r.xenPort !== remotePort || r.binding) fail(name, Errno.EINVAL, 'not an unbound port of that domain for us');
    const port = new SimEventPort(this.nextLocalPort++, m, r, onEvent, () => {
      this.resume(d, r);
      this.host.flush();
    });
    r.binding = port;
    // Notifications sent while unbound are lost, so Xen marks the new port pending at once.
    port.fire();
    return port;
  }

  // ---- XEN_DOMCTL_vm_event_op ----

  /**
   * vm_event_domctl, monitor mode. `d` is undefined for DOMID_INVALID (only GET_VERSION).
   * Returns true when the struct is copied back.
   */
  vmEventOp(name: string, op: Buffer, domid: number): boolean {
    const sub = op.readUInt32LE(Off.vmeOp);
    if (sub === VmEventOp.getVersion) {
      op.writeUInt32LE(VM_EVENT_INTERFACE_VERSION, Off.vmePort);
      return true;
    }
    const d = domid === DOMID_INVALID ? undefined : this.host.domain(domid);
    if (!d) fail(name, Errno.ESRCH);
    if (d.domid === CALLER_DOMID) fail(name, Errno.EINVAL, 'the calling domain');
    if (d.dying) return false;
    if (op.readUInt32LE(Off.vmeMode) !== VmEventMode.monitor) fail(name, Errno.ENOSYS, 'only monitor mode is simulated');
    const m = monitorOf(d);
    switch (sub) {
      case VmEventOp.enable: this.enable(name, d, m, op); return true;
      case VmEventOp.disable: this.disable(name, d, m); return true;
      case VmEventOp.resume:
        if (!m.ring) fail(name, Errno.ENODEV, 'no monitor ring');
        this.resume(d, m.ring);
        return true;
      default: fail(name, Errno.EINVAL);
    }
  }

  /** vm_event_enable. */
  private enable(name: string, d: SimDomain, m: DomainMonitor, op: Buffer): void {
    if (m.ring) fail(name, Errno.EBUSY, 'a monitor ring exists already (only one connected agent)');
    const gfn = m.params.get(HVM_PARAM_MONITOR_RING_PFN) ?? 0n;
    if (gfn === 0n) fail(name, Errno.EOPNOTSUPP, 'no monitor ring page (HVM_PARAM_MONITOR_RING_PFN is 0)');
    const page = pageOf(d, Number(gfn));
    if (!page) fail(name, Errno.EINVAL, `GFN 0x${gfn.toString(16)} is not in the physmap`); // prepare_ring_for_helper
    const r = new VmEventRing(page, Number(gfn), m.allocPort());
    m.ring = r;
    op.writeUInt32LE(r.xenPort, Off.vmePort);
    log('d%d: monitor ring at GFN 0x%s, port %d', d.domid, gfn.toString(16), r.xenPort);
  }

  /**
   * vm_event_disable: refused while VCPUs wait for a slot; releases the blocked ones but
   * NOT those waiting for a response (vm_event_pause_count stays: they stay paused for
   * good); frees the port and resets every monitor event.
   */
  private disable(name: string, d: SimDomain, m: DomainMonitor): void {
    const r = m.ring;
    if (!r) fail(name, Errno.EINVAL, 'no monitor ring');
    if (r.waiting.length) fail(name, Errno.EBUSY, `VCPU(s) ${r.waiting.map((w) => w.v.id).join(', ')} wait for a ring slot`);
    for (const v of r.blocked) v.vmEventBlocked = false;
    r.blocked.clear();
    r.binding = undefined;
    m.ring = undefined;
    m.events.clear();
    const stuck = d.vcpus.filter((v) => v.vmEventPause > 0).map((v) => v.id);
    if (stuck.length) log('d%d: ring disabled with VCPU(s) %s still waiting for a response: they stay paused', d.domid, stuck.join(', '));
    this.host.changed(d, 'monitor ring disabled');
  }

  /** vm_event_resume: every response on the ring, each applied only to a VCPU paused by vm_event. */
  private resume(d: SimDomain, r: VmEventRing): void {
    for (let n = 0; n < MAX_RESPONSES_PER_RESUME; n++) {
      // vm_event_get_response: RING_HAS_UNCONSUMED_RESPONSES, copy, rsp_cons++, rsp_event, wake.
      if (((r.page.readUInt32LE(Ring.rspProd) - r.rspCons) >>> 0) === 0) break;
      const at = slotOffset(r.rspCons);
      const rsp = Buffer.from(r.page.subarray(at, at + Req.size));
      r.rspCons = (r.rspCons + 1) >>> 0;
      r.page.writeUInt32LE((r.rspCons + 1) >>> 0, Ring.rspEvent);
      wake(d, r);
      if (rsp.readUInt32LE(Req.version) !== VM_EVENT_INTERFACE_VERSION) {
        log('d%d: vm_event interface version mismatch (%d): response ignored', d.domid, rsp.readUInt32LE(Req.version));
        continue;
      }
      const v = d.vcpus[rsp.readUInt32LE(Req.vcpuId)];
      if (!v || v.vmEventPause === 0) continue;
      const flags = rsp.readUInt32LE(Req.flags);
      // vm_event_toggle_singlestep -> hvm_toggle_singlestep: VMX (MTF) only.
      if ((flags & VmFlag.toggleSinglestep) && this.host.mtf) v.singleStep = !v.singleStep;
      // vm_event_set_registers, applied by hvm_vm_event_do_resume: GPRs, rflags, rip.
      if (flags & VmFlag.setRegisters) {
        const c = v.cpu;
        for (let i = 0; i < 16; i++) c.setGpr(i, rsp.readBigUInt64LE(Req.regs + i * 8));
        c.rflags = Number(rsp.readBigUInt64LE(Req.regs + Regs.rflags) & 0xffffffffn) | 0x2;
        c.rip = rsp.readBigUInt64LE(Req.regs + Regs.rip);
      }
      // EMULATE / SET_EMUL_INSN_DATA, DENY and altp2m are not simulated: ignored.
      if (flags & VmFlag.vcpuPaused) v.vmEventPause--; // vm_event_vcpu_unpause (the check above keeps it >= 0)
    }
    this.host.changed(d, 'vm_event responses');
  }

  // ---- XEN_DOMCTL_monitor_op ----

  /** monitor_domctl / arch_monitor_domctl_event. The struct is copied back on success. */
  monitorOp(name: string, op: Buffer, d: SimDomain): boolean {
    if (d.domid === CALLER_DOMID) fail(name, Errno.EPERM, 'the calling domain');
    const sub = op.readUInt32LE(Off.monOp);
    const event = op.readUInt32LE(Off.monEvent);
    if (sub === MonitorOp.getCapabilities) {
      op.writeUInt32LE(capabilities(d, this.host), Off.monEvent);
      return true;
    }
    if (sub !== MonitorOp.enable && sub !== MonitorOp.disable) fail(name, Errno.EOPNOTSUPP, `monitor op ${sub} is not simulated`);
    if (event > 31) fail(name, Errno.EINVAL);
    if ((capabilities(d, this.host) & (1 << event)) === 0) fail(name, Errno.EOPNOTSUPP, `monitor event ${event} is not available`);
    const m = monitorOf(d);
    const enable = sub === MonitorOp.enable;
    if (m.events.has(event) === enable) fail(name, Errno.EEXIST, `monitor event ${event} is already ${enable ? 'on' : 'off'}`);
    if (enable) m.events.set(event, op.readUInt8(Off.monSync) !== 0);
    else m.events.delete(event);
    this.host.changed(d, `monitor event ${event} ${enable ? 'on' : 'off'}`);
    return true;
  }
}
