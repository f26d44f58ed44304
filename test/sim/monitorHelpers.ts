// Shared set-up for the monitor (vm_event) tests: a simulated Xen with one guest,
// created paused and run only by runSlice() so that every trap happens where the test
// says, plus a bare-hands ring reader that does not share code with MonitorRing.
import { CTX64, readField, writeField } from '../../src/xg/context';
import { HVM_PARAM_MONITOR_RING_PFN } from '../../src/xg/domctl';
import { EventPort, ForeignMapping } from '../../src/xg/hypercalls';
import { SimXen, SimXenOptions } from '../../src/xg/sim';
import { Req, Ring, VmEventRequest, decodeRequest, slotOffset } from '../../src/xg/vmEvent';
import { XenControl } from '../../src/xg/xenctl';

export interface MonGuest {
  sim: SimXen;
  xc: XenControl;
  domid: number;
  sym(name: string): bigint;
  close(): void;
}

export function monGuest(o: { vcpus?: number; type?: 'pv' | 'pvh'; width?: 32 | 64; guestTrapHandlers?: boolean; sim?: SimXenOptions } = {}): MonGuest {
  const sim = new SimXen({ autoRun: false, ...o.sim });
  const domid = sim.createDomain({
    vcpus: o.vcpus ?? 2, width: o.width ?? 64, type: o.type ?? 'pvh', paused: true, guestTrapHandlers: o.guestTrapHandlers,
  });
  return { sim, xc: new XenControl(sim), domid, sym: (n) => sim.symbol(domid, n), close: () => sim.close() };
}

/**
 * Send VCPU `vcpu` (64-bit guest) to a `jmp .` of its own in otherwise unused guest RAM:
 * it keeps executing without ever meeting the demo code's breakpoints.
 */
export function park(g: MonGuest, vcpu: number): bigint {
  const pa = 0x80000 + vcpu * 16;
  g.sim.writePhys(g.domid, pa, Buffer.from([0xeb, 0xfe]));
  const at = g.sim.layout(g.domid).directMap + BigInt(pa);
  const ctx = g.xc.getVcpuContext(g.domid, vcpu);
  writeField(ctx, CTX64, 'rip', at);
  g.xc.setVcpuContext(g.domid, vcpu, ctx);
  return at;
}

/** Set or clear TF through setvcpucontext. */
export function setTf(g: MonGuest, vcpu: number, on: boolean): void {
  const ctx = g.xc.getVcpuContext(g.domid, vcpu);
  const f = readField(ctx, CTX64, 'rflags') ?? 0n;
  writeField(ctx, CTX64, 'rflags', on ? f | 0x100n : f & ~0x100n);
  g.xc.setVcpuContext(g.domid, vcpu, ctx);
}

/** Run slices until `cond` (at most `max`). */
export function runUntil(g: MonGuest, cond: () => boolean, max = 50): void {
  for (let i = 0; i < max && !cond(); i++) g.sim.runSlice();
  if (!cond()) throw new Error('condition not reached');
}

export const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

/** A hand-driven ring: ENABLE, map, header, bind; responses written by hand. */
export class RawRing {
  readonly map: ForeignMapping;
  readonly port: EventPort;
  readonly xenPort: number;
  readonly gfn: bigint;
  signals = 0;
  private reqCons = 0;
  private rspProd = 0;

  constructor(readonly g: MonGuest) {
    const { xc, domid } = g;
    this.gfn = xc.hvmGetParam(domid, HVM_PARAM_MONITOR_RING_PFN);
    this.map = g.sim.mapForeign(domid, [this.gfn], true);
    this.xenPort = xc.monitorRingEnable(domid);
    const h = Buffer.alloc(Ring.header);
    h.writeUInt32LE(1, Ring.reqEvent);
    h.writeUInt32LE(1, Ring.rspEvent);
    this.map.write(0, h);
    this.port = g.sim.bindInterdomain(domid, this.xenPort, () => this.signals++);
  }

  u32(off: number): number {
    const b = Buffer.alloc(4);
    this.map.read(off, b);
    return b.readUInt32LE(0);
  }

  /** The raw slot bytes of the requests not read yet. */
  rawRequests(): Buffer[] {
    const out: Buffer[] = [];
    for (const prod = this.u32(Ring.reqProd); this.reqCons !== prod; this.reqCons++) {
      const b = Buffer.alloc(Req.size);
      this.map.read(slotOffset(this.reqCons), b);
      out.push(b);
    }
    return out;
  }

  requests(): VmEventRequest[] {
    return this.rawRequests().map(decodeRequest);
  }

  /** Write `rsp` (400 bytes) as the next response and publish it; notify unless told not to. */
  respondRaw(rsp: Buffer, notify = true): void {
    this.map.write(slotOffset(this.rspProd), rsp);
    this.rspProd++;
    const b = Buffer.alloc(4);
    b.writeUInt32LE(this.rspProd, 0);
    this.map.write(Ring.rspProd, b);
    if (notify) this.port.notify();
  }

  respond(vcpu: number, flags: number, o: { version?: number; reason?: number } = {}): void {
    const b = Buffer.alloc(Req.size);
    b.writeUInt32LE(o.version ?? 7, Req.version);
    b.writeUInt32LE(flags, Req.flags);
    b.writeUInt32LE(o.reason ?? 6, Req.reason);
    b.writeUInt32LE(vcpu, Req.vcpuId);
    this.respondRaw(b);
  }
}
