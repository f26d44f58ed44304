// Our end of Xen's monitor (vm_event) ring: the stock-Xen way to get breakpoint,
// single-step and debug-register events from an HVM or PVH guest. Set up and torn down
// the way xc_vm_event_enable / xc_vm_event_disable (tools/libs/ctrl/xc_vm_event.c) do
// it, but on raw hypercalls. Xen is the ring's front end (it produces requests), we are
// the back end (io/ring.h): req_cons and rsp_prod_pvt are ours alone, responses are
// written into the slots of requests already consumed and published by rsp_prod.
// See /work/shared/reference/stock-xen.md §5.3.
import createDebug from 'debug';
import { HVM_PARAM_MONITOR_RING_PFN, PageType } from './domctl';
import { Errno, UserError, XenError, isXenError } from './errors';
import { EventPort, ForeignMapping } from './hypercalls';
import { Req, Ring, VM_EVENT_INTERFACE_VERSION, VmEventRequest, VmFlag, decodeRequest, encodeResponse, slotOffset } from './vmEvent';
import { XenControl } from './xenctl';

const log = createDebug('gdbsx:monitor');

function u32(map: ForeignMapping, off: number): number {
  const b = Buffer.alloc(4);
  map.read(off, b);
  return b.readUInt32LE(0);
}

function putU32(map: ForeignMapping, off: number, v: number): void {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0, 0);
  map.write(off, b);
}

/** SHARED_RING_INIT: Xen only sets up its private front-ring state, and the page was guest memory. */
function initSharedRing(map: ForeignMapping): void {
  const h = Buffer.alloc(Ring.header);
  h.writeUInt32LE(1, Ring.reqEvent);
  h.writeUInt32LE(1, Ring.rspEvent);
  map.write(0, h);
}

/** Whether `gfn` is in the physmap; libxc repopulates when getpageframeinfo3 fails or says XTAB. */
function inPhysmap(xc: XenControl, domid: number, gfn: bigint): boolean {
  try {
    return ((xc.getPageFrameInfo(domid, [gfn])[0] & PageType.mask) >>> 0) !== PageType.xtab >>> 0;
  } catch (e) {
    log('dom%d: getpageframeinfo3 of the ring page: %s', domid, (e as Error).message);
    return false;
  }
}

/**
 * Take over the ring of a tool that died (vm_event ENABLE said EBUSY, "only one
 * connected agent"): DISABLE frees it but leaves the VCPUs it had stopped paused, so
 * ENABLE again on our page and send each VCPU a VCPU_PAUSED response (a no-op for one
 * that is not paused). Those responses leave Xen's rsp_cons ahead of its req_prod_pvt,
 * which would make it count more free slots than the ring has: one more DISABLE and
 * ENABLE starts it afresh. Returns Xen's port.
 */
function takeOver(xc: XenControl, domid: number, map: ForeignMapping, vcpus: number): number {
  log('dom%d: a monitor ring exists already (left by a debugger that died?): taking it over', domid);
  try {
    xc.monitorRingDisable(domid);
  } catch (e) {
    if (isXenError(e, Errno.EBUSY)) {
      throw new UserError(`dom${domid}: the monitor ring left by a debugger that is gone is full and VCPUs are waiting ` +
        'for space on it; Xen refuses to free it while they wait (vm_event_disable), so it cannot be taken over: ' +
        'the domain has to be restarted');
    }
    throw e;
  }
  xc.monitorRingEnable(domid);
  initSharedRing(map);
  let rspProd = 0;
  for (let v = 0; v < vcpus;) {
    // At most a ring's worth at a time; RESUME consumes them before the next batch.
    for (let n = 0; n < Ring.slots && v < vcpus; n++, v++) {
      map.write(slotOffset(rspProd), encodeResponse({ reason: 0, vcpu: v } as VmEventRequest, VmFlag.vcpuPaused));
      rspProd = (rspProd + 1) >>> 0;
    }
    putU32(map, Ring.rspProd, rspProd);
    xc.monitorRingResume(domid);
  }
  xc.monitorRingDisable(domid);
  return xc.monitorRingEnable(domid);
}

export class MonitorRing {
  /** Set when open() took over a ring left behind by a debugger that died: says so in one line. */
  readonly recovered: string | undefined;
  /** monitor_op GET_CAPABILITIES: bit n = MonitorEvent n is available. */
  readonly capabilities: number;
  readonly domid: number;
  private readonly xc: XenControl;
  private readonly map: ForeignMapping;
  private port: EventPort | undefined;
  private readonly listeners = new Set<() => void>();
  private readonly out: VmEventRequest[] = [];
  private readonly enabled = new Set<number>();
  /** Back-ring private indices (BACK_RING_INIT: both 0). */
  private reqCons = 0;
  private rspProdPvt = 0;
  private closed = false;

  private constructor(xc: XenControl, domid: number, map: ForeignMapping, capabilities: number, recovered: string | undefined) {
    this.xc = xc;
    this.domid = domid;
    this.map = map;
    this.capabilities = capabilities;
    this.recovered = recovered;
  }

  /**
   * Xen's setup sequence (stock-xen.md 5.3 steps 1-10): pause, get the ring pfn,
   * populate it if it is not in the physmap, map it read-write, vm_event ENABLE (taking
   * over a ring a killed tool left: `recovered`), take the page out of the physmap,
   * write a fresh ring header, bind the event channel, unpause. The header and the
   * binding come before the unpause here: no event is enabled yet either way. On any
   * failure the domain is left as it was (no ring of ours, not paused by us).
   */
  static open(xc: XenControl, domid: number, vcpus: number): MonitorRing {
    const info = xc.getDomainInfo(domid);
    if (!info.hvm) {
      throw new UserError(`dom${domid} is a PV guest: breakpoints and single-steps on a Xen without CONFIG_GDBSX go ` +
        'through the monitor interface (vm_event), which needs an HVM or PVH guest');
    }
    const nvcpus = Math.max(vcpus, info.maxVcpuId + 1);
    xc.pauseDomain(domid);
    let map: ForeignMapping | undefined;
    let ours = false;
    let ring: MonitorRing | undefined;
    try {
      const gfn = xc.hvmGetParam(domid, HVM_PARAM_MONITOR_RING_PFN);
      if (gfn === 0n) {
        throw new UserError(`dom${domid} has no monitor ring page (HVM_PARAM_MONITOR_RING_PFN is 0): its toolstack did not reserve one`);
      }
      // A page a previous tool took out of the physmap comes back as a fresh one.
      if (!inPhysmap(xc, domid, gfn) && xc.reservation(domid, 'populate', [gfn]) !== 1) {
        throw new XenError(`XENMEM_populate_physmap(dom${domid})`, Errno.ENOMEM, `could not put the ring page 0x${gfn.toString(16)} back`);
      }
      map = xc.hc.mapForeign(domid, [gfn], true);
      if (map.errors[0] !== 0) {
        throw new XenError(`IOCTL_PRIVCMD_MMAPBATCH_V2(dom${domid})`, map.errors[0], `mapping the monitor ring page 0x${gfn.toString(16)}`);
      }
      let xenPort: number;
      let recovered: string | undefined;
      try {
        xenPort = xc.monitorRingEnable(domid);
        ours = true;
      } catch (e) {
        if (!isXenError(e, Errno.EBUSY)) throw e;
        xenPort = takeOver(xc, domid, map, nvcpus);
        ours = true;
        recovered = `dom${domid}: took over the monitor ring of a debugger that is gone (Xen still had it, with its ` +
          `events on): freed it, set it up again and released any of the ${nvcpus} VCPUs it had left stopped`;
        log(recovered);
      }
      // Xen keeps the page through its own reference (and we through our mapping).
      try {
        if (xc.reservation(domid, 'decrease', [gfn]) !== 1) log('dom%d: the ring page stays in the physmap', domid);
      } catch (e) {
        log('dom%d: removing the ring page from the physmap: %s', domid, (e as Error).message);
      }
      initSharedRing(map);
      const r = new MonitorRing(xc, domid, map, xc.monitorCapabilities(domid), recovered);
      ring = r;
      r.port = xc.hc.bindInterdomain(domid, xenPort, () => r.signal());
      log('dom%d: monitor ring at GFN 0x%s, Xen port %d, our port %d, capabilities 0x%s',
        domid, gfn.toString(16), xenPort, r.port.localPort, r.capabilities.toString(16));
      return r;
    } catch (e) {
      if (ours) {
        try {
          xc.monitorRingDisable(domid);
        } catch (e2) {
          log('dom%d: disabling the ring after a failed setup: %s', domid, (e2 as Error).message);
        }
      }
      ring?.port?.close();
      map?.unmap();
      throw e;
    } finally {
      try {
        xc.unpauseDomain(domid);
      } catch (e) {
        log('dom%d: unpause after the ring setup: %s', domid, (e as Error).message);
      }
    }
  }

  /** Enable a monitor event (`sync`: the VCPU waits for our answer; breakpoints and steps always do). */
  /** Whether we have `event` turned on. */
  isEnabled(event: number): boolean {
    return this.enabled.has(event);
  }

  enable(event: number, sync = true): void {
    this.check();
    try {
      this.xc.monitorEvent(this.domid, event, true, sync);
    } catch (e) {
      if (!isXenError(e, Errno.EEXIST)) throw e;
      log('dom%d: monitor event %d was on already', this.domid, event);
    }
    this.enabled.add(event);
  }

  disable(event: number): void {
    this.check();
    try {
      this.xc.monitorEvent(this.domid, event, false);
    } catch (e) {
      if (!isXenError(e, Errno.EEXIST)) throw e;
    }
    this.enabled.delete(event);
  }

  /** Called (on the event loop) each time Xen signals the ring's channel. Returns an unsubscribe. */
  onEvent(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Requests Xen has put on the ring since the last call (consumed: they stay outstanding until answered). */
  take(): VmEventRequest[] {
    if (this.closed) return [];
    const got = this.consume();
    this.out.push(...got);
    return got;
  }

  /** Answer one request taken before: VCPU_PAUSED (if it was paused) | `extraFlags`; publishes rsp_prod and notifies. */
  respond(req: VmEventRequest, extraFlags = 0): void {
    this.check();
    const i = this.out.indexOf(req);
    if (i < 0) throw new Error(`dom${this.domid}: the vm_event request of VCPU ${req.vcpu} (reason ${req.reason}) is not outstanding (answered already?)`);
    this.out.splice(i, 1);
    this.put(req, extraFlags);
    (this.port as EventPort).notify();
  }

  get outstanding(): readonly VmEventRequest[] {
    return this.out;
  }

  /**
   * Leave nothing behind: with the domain paused (no VCPU half-way through an exit),
   * turn our events off, answer every request (releasing every VCPU, including those
   * that were waiting for a slot), DISABLE the ring (which would leave an unanswered
   * VCPU paused for good), unmap, unbind. Idempotent; never throws.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const { xc, domid } = this;
    const attempt = (what: string, fn: () => void): boolean => {
      try {
        fn();
        return true;
      } catch (e) {
        log('dom%d: close: %s: %s', domid, what, (e as Error).message);
        return false;
      }
    };
    const paused = attempt('pause', () => xc.pauseDomain(domid));
    for (const ev of this.enabled) {
      attempt(`disabling event ${ev}`, () => {
        try {
          xc.monitorEvent(domid, ev, false);
        } catch (e) {
          if (!isXenError(e, Errno.EEXIST)) throw e;
        }
      });
    }
    this.enabled.clear();
    // VCPUs that waited for a slot put their requests as our answers free slots: a few rounds.
    for (let round = 0; round < 4; round++) {
      let reqs: VmEventRequest[] = [];
      if (!attempt('reading requests', () => { reqs = [...this.out.splice(0), ...this.consume()]; })) break;
      if (reqs.length === 0) break;
      log('dom%d: close: answering %d request(s)', domid, reqs.length);
      if (!attempt('answering', () => {
        for (const r of reqs) this.put(r, 0);
        xc.monitorRingResume(domid);
      })) break;
    }
    attempt('disabling the ring', () => xc.monitorRingDisable(domid));
    attempt('unmapping the ring', () => this.map.unmap());
    attempt('unbinding the event channel', () => this.port?.close());
    this.listeners.clear();
    if (paused) attempt('unpause', () => xc.unpauseDomain(domid));
  }

  // ---- internals ----

  private check(): void {
    if (this.closed) throw new Error(`dom${this.domid}: the monitor ring is closed`);
  }

  private signal(): void {
    for (const l of [...this.listeners]) {
      try {
        l();
      } catch (e) {
        log('dom%d: monitor event listener: %s', this.domid, (e as Error).message);
      }
    }
  }

  /** RING_GET_REQUEST up to req_prod, then req_event = req_cons + 1 (RING_FINAL_CHECK_FOR_REQUESTS). */
  private consume(): VmEventRequest[] {
    const got: VmEventRequest[] = [];
    const prod = u32(this.map, Ring.reqProd);
    let avail = (prod - this.reqCons) >>> 0;
    if (avail > Ring.slots) {
      // Xen never has more than a ring's worth out: the header is not what we wrote.
      log('dom%d: req_prod %d is %d ahead of req_cons: ring corrupt, reading one ring', this.domid, prod, avail);
      avail = Ring.slots;
    }
    const slot = Buffer.alloc(Req.size);
    for (let i = 0; i < avail; i++) {
      this.map.read(slotOffset(this.reqCons), slot);
      this.reqCons = (this.reqCons + 1) >>> 0;
      const req = decodeRequest(slot);
      if (req.version !== VM_EVENT_INTERFACE_VERSION) log('dom%d: vm_event request of version %d (we speak %d)', this.domid, req.version, VM_EVENT_INTERFACE_VERSION);
      got.push(req);
    }
    putU32(this.map, Ring.reqEvent, this.reqCons + 1);
    return got;
  }

  /**
   * Write a response into the next slot and publish it. Only a request that paused its
   * VCPU gets VCPU_PAUSED: Xen checks the VCPU's pause count, not the request, so it
   * would otherwise release a later stop of the same VCPU.
   */
  private put(req: VmEventRequest, extraFlags: number): void {
    this.map.write(slotOffset(this.rspProdPvt), encodeResponse(req, (req.flags & VmFlag.vcpuPaused) | extraFlags));
    this.rspProdPvt = (this.rspProdPvt + 1) >>> 0;
    // x86 keeps stores in order: the slot is visible before rsp_prod (RING_PUSH_RESPONSES' wmb).
    putU32(this.map, Ring.rspProd, this.rspProdPvt);
  }
}
