// The simulated Xen's monitor (vm_event) interface at the hypercall level: params and
// physmap, vm_event_op and monitor_op, the ring as Xen's front end, the event channel,
// XEN_DMOP_inject_event, the exits that post requests, and what setdebugging does to
// them on a Xen without CONFIG_GDBSX. The ring is read by hand here (RawRing), not with
// MonitorRing, so that the two cannot hide each other's mistakes.
import { strict as assert } from 'assert';
import { CTX64, readField, writeField } from '../../src/xg/context';
import {
  DMOP_INJECT_EVENT, DOMCTL_SIZE, DOMID_INVALID, DmOpInject, DomctlCmd, HVM_PARAM_MONITOR_RING_PFN, HvmOp, MonitorEvent,
  Off, PageType, VmEventOp, X86EventType, newDomctl,
} from '../../src/xg/domctl';
import { Errno } from '../../src/xg/errors';
import { MONITOR_RING_GFN } from '../../src/xg/sim/monitor';
import { Reason, Regs, Req, VmFlag } from '../../src/xg/vmEvent';
import { errnoOf } from './helpers';
import { MonGuest, RawRing, monGuest, park, runUntil, setTf, tick } from './monitorHelpers';

const bit = (e: number) => 1 << e;
const SWBP = MonitorEvent.softwareBreakpoint;
const DBG = MonitorEvent.debugException;

function frameOf(g: MonGuest, r: RawRing, gfn: bigint, rip: bigint): number {
  void r;
  const m = g.sim.mapForeign(g.domid, [gfn], false);
  try {
    const b = Buffer.alloc(1);
    m.read(Number(rip & 0xfffn), b);
    return b[0];
  } finally {
    m.unmap();
  }
}

describe('sim monitor: params, physmap, domctls', () => {
  it('HVM_PARAM_MONITOR_RING_PFN: a special page for PVH; EINVAL for PV and bad indices; ESRCH', () => {
    const g = monGuest();
    assert.equal(g.xc.hvmGetParam(g.domid, HVM_PARAM_MONITOR_RING_PFN), BigInt(MONITOR_RING_GFN));
    assert.equal(g.xc.hvmGetParam(g.domid, 2), 0n); // a param nobody set
    assert.equal(errnoOf(() => g.xc.hvmGetParam(g.domid, 39)), Errno.EINVAL);
    assert.equal(errnoOf(() => g.xc.hvmGetParam(77, HVM_PARAM_MONITOR_RING_PFN)), Errno.ESRCH);
    assert.equal(errnoOf(() => g.sim.hvmOp(9, Buffer.alloc(16))), Errno.ENOSYS);
    // The page exists (outside RAM) and maps.
    assert.equal(g.xc.getPageFrameInfo(g.domid, [BigInt(MONITOR_RING_GFN)])[0], PageType.none);
    g.close();
    const pv = monGuest({ type: 'pv' });
    assert.equal(errnoOf(() => pv.xc.hvmGetParam(pv.domid, HVM_PARAM_MONITOR_RING_PFN)), Errno.EINVAL);
    pv.close();
  });

  it('capabilities by domain type and CPU; enable/disable EEXIST; unavailable events EOPNOTSUPP', () => {
    const base = bit(0) | bit(1) | bit(3) | bit(4) | bit(5) | bit(6);
    const svm = monGuest();
    const caps = svm.xc.monitorCapabilities(svm.domid);
    assert.equal(caps & base, base);
    assert.equal(caps & bit(MonitorEvent.singlestep), 0);
    assert.equal(errnoOf(() => svm.xc.monitorEvent(svm.domid, MonitorEvent.singlestep, true)), Errno.EOPNOTSUPP);
    svm.xc.monitorEvent(svm.domid, SWBP, true);
    assert.equal(errnoOf(() => svm.xc.monitorEvent(svm.domid, SWBP, true)), Errno.EEXIST);
    svm.xc.monitorEvent(svm.domid, SWBP, false);
    assert.equal(errnoOf(() => svm.xc.monitorEvent(svm.domid, SWBP, false)), Errno.EEXIST);
    assert.equal(errnoOf(() => svm.xc.monitorEvent(0, SWBP, true)), Errno.EPERM);
    assert.equal(errnoOf(() => svm.xc.monitorEvent(svm.domid, 40, true)), Errno.EINVAL);
    svm.close();
    const vmx = monGuest({ sim: { mtf: true } });
    assert.notEqual(vmx.xc.monitorCapabilities(vmx.domid) & bit(MonitorEvent.singlestep), 0);
    vmx.close();
    const pv = monGuest({ type: 'pv', sim: { mtf: true } });
    assert.equal(pv.xc.monitorCapabilities(pv.domid), 0);
    assert.equal(errnoOf(() => pv.xc.monitorEvent(pv.domid, SWBP, true)), Errno.EOPNOTSUPP);
    pv.close();
  });

  it('vm_event_op: GET_VERSION on DOMID_INVALID; ENABLE once (EBUSY), PV EOPNOTSUPP; DISABLE/RESUME with no ring', () => {
    const g = monGuest();
    const { xc, domid } = g;
    assert.equal(xc.vmEventVersion(), 7);
    const op = newDomctl(DomctlCmd.vm_event_op, xc.probeInterfaceVersion(), DOMID_INVALID);
    op.writeUInt32LE(VmEventOp.enable, Off.vmeOp);
    assert.equal(errnoOf(() => g.sim.domctl(op)), Errno.ESRCH);
    assert.equal(errnoOf(() => xc.monitorRingDisable(domid)), Errno.EINVAL);
    assert.equal(errnoOf(() => xc.monitorRingResume(domid)), Errno.ENODEV);
    assert.equal(errnoOf(() => xc.monitorRingEnable(0)), Errno.EINVAL); // the caller's own domain
    const port = xc.monitorRingEnable(domid);
    assert.ok(port > 0);
    assert.equal(errnoOf(() => xc.monitorRingEnable(domid)), Errno.EBUSY);
    xc.monitorEvent(domid, SWBP, true);
    xc.monitorEvent(domid, DBG, true, false);
    assert.deepEqual(g.sim.monitorState(domid).events, [SWBP, DBG]);
    xc.monitorRingResume(domid);
    xc.monitorRingDisable(domid);
    // DISABLE resets every monitor event (arch_monitor_cleanup_domain).
    assert.deepEqual(g.sim.monitorState(domid).events, []);
    assert.equal(g.sim.monitorState(domid).ring, undefined);
    g.close();
    const pv = monGuest({ type: 'pv' });
    assert.equal(errnoOf(() => pv.xc.monitorRingEnable(pv.domid)), Errno.EOPNOTSUPP);
    pv.close();
  });

  it('ENABLE needs the param and the page: EOPNOTSUPP when the param is 0, EINVAL when the GFN left the physmap', () => {
    const g = monGuest();
    const { xc, domid, sim } = g;
    const gfn = BigInt(MONITOR_RING_GFN);
    assert.equal(xc.reservation(domid, 'decrease', [gfn]), 1);
    assert.equal((xc.getPageFrameInfo(domid, [gfn])[0] & PageType.mask) >>> 0, PageType.xtab >>> 0);
    assert.equal(errnoOf(() => xc.monitorRingEnable(domid)), Errno.EINVAL);
    assert.equal(xc.reservation(domid, 'populate', [gfn]), 1);
    assert.equal(xc.getPageFrameInfo(domid, [gfn])[0], PageType.none);
    const arg = Buffer.alloc(16);
    arg.writeUInt16LE(domid, 0);
    arg.writeUInt32LE(HVM_PARAM_MONITOR_RING_PFN, 4);
    sim.hvmOp(HvmOp.setParam, arg); // value 0: the toolstack reserved no page
    assert.equal(errnoOf(() => xc.monitorRingEnable(domid)), Errno.EOPNOTSUPP);
    g.close();
  });

  it('decrease_reservation / populate_physmap: holes for mappings and getpageframeinfo3; mappings keep their page', () => {
    const g = monGuest();
    const { xc, domid, sim } = g;
    const gfn = BigInt(MONITOR_RING_GFN);
    const before = sim.mapForeign(domid, [gfn], true);
    before.write(100, Buffer.from('kept'));
    assert.equal(xc.reservation(domid, 'decrease', [gfn]), 1);
    const hole = sim.mapForeign(domid, [gfn], true);
    assert.equal(hole.errors[0], Errno.EINVAL);
    hole.unmap();
    const got = Buffer.alloc(4);
    before.read(100, got);
    assert.equal(got.toString(), 'kept'); // the mapping holds the page
    // A second decrease of the same GFN: a hole, nothing done. A list stops at the first failure.
    assert.equal(xc.reservation(domid, 'decrease', [gfn]), 0);
    assert.equal(xc.reservation(domid, 'populate', [gfn]), 1);
    const fresh = sim.mapForeign(domid, [gfn], false);
    fresh.read(100, got);
    assert.deepEqual(got, Buffer.alloc(4)); // a new, zeroed page
    before.read(100, got);
    assert.equal(got.toString(), 'kept');
    fresh.unmap();
    before.unmap();
    // RAM frames too: out of the physmap, then back zeroed.
    const ram = 0x90n;
    sim.writePhys(domid, 0x90000, Buffer.from('ram!'));
    assert.equal(xc.reservation(domid, 'decrease', [ram, 1n << 39n]), 1);
    assert.equal((xc.getPageFrameInfo(domid, [ram])[0] & PageType.mask) >>> 0, PageType.xtab >>> 0);
    assert.equal(xc.reservation(domid, 'populate', [ram]), 1);
    assert.deepEqual(sim.readPhys(domid, 0x90000, 4), Buffer.alloc(4));
    assert.equal(sim.liveMappings(domid), 0);
    g.close();
  });

  it('bindInterdomain: only the ring port, once; signalled asynchronously at bind; close unbinds', async () => {
    const g = monGuest();
    const { xc, domid, sim } = g;
    assert.equal(errnoOf(() => sim.bindInterdomain(domid, 5, () => undefined)), Errno.EINVAL); // no ring
    const port = xc.monitorRingEnable(domid);
    assert.equal(errnoOf(() => sim.bindInterdomain(domid, port + 1, () => undefined)), Errno.EINVAL);
    assert.equal(errnoOf(() => sim.bindInterdomain(99, port, () => undefined)), Errno.ESRCH);
    let n = 0;
    const p = sim.bindInterdomain(domid, port, () => n++);
    assert.equal(n, 0); // never inside the call
    assert.equal(errnoOf(() => sim.bindInterdomain(domid, port, () => undefined)), Errno.EINVAL);
    await tick();
    assert.equal(n, 1); // lost notifications are made up for at bind
    p.close();
    p.close();
    assert.equal(errnoOf(() => p.notify()), Errno.EINVAL);
    const p2 = sim.bindInterdomain(domid, port, () => undefined);
    p2.close();
    xc.monitorRingDisable(domid);
    g.close();
  });
});

describe('sim monitor: exits and responses', () => {
  it('int3 -> SOFTWARE_BREAKPOINT: rip on the int3, only that VCPU paused, released by the response', async () => {
    const g = monGuest({ vcpus: 2 });
    const { xc, sim, domid } = g;
    const r = new RawRing(g);
    xc.monitorEvent(domid, SWBP, true);
    park(g, 1);
    const bp = g.sym('demo_tick');
    sim.writeVirt(domid, bp, Buffer.from([0xcc]));
    xc.unpauseDomain(domid);
    const signals = r.signals;
    runUntil(g, () => r.u32(0) > 0);
    const raw = r.rawRequests();
    assert.equal(raw.length, 1);
    const req = raw[0];
    assert.equal(req.readUInt32LE(Req.version), 7);
    assert.equal(req.readUInt32LE(Req.reason), Reason.softwareBreakpoint);
    assert.equal(req.readUInt32LE(Req.vcpuId), 0);
    assert.equal(req.readUInt32LE(Req.flags) & VmFlag.vcpuPaused, VmFlag.vcpuPaused);
    assert.equal(req.readBigUInt64LE(Req.regs + Regs.rip), bp);
    assert.equal(req.readUInt32LE(Req.insnLength), 1);
    assert.equal(req.readUInt8(Req.type), X86EventType.swException);
    assert.equal(req.readBigUInt64LE(Req.regs + Regs.dr6), 0n); // Xen's quirk
    assert.equal(req.readBigUInt64LE(Req.regs + Regs.rsp), sim.registers(domid, 0).rsp);
    assert.equal(frameOf(g, r, req.readBigUInt64LE(Req.gfn), bp), 0xcc);
    assert.equal(sim.registers(domid, 0).rip, bp);
    assert.deepEqual(sim.monitorState(domid).vmEventPause, [1, 0]);
    assert.equal(xc.getDomainInfo(domid).paused, false); // the domain is not paused, one VCPU is
    await tick();
    assert.ok(r.signals > signals);
    // VCPU 0 waits; VCPU 1 runs on.
    const i0 = sim.domainState(domid).instructions;
    sim.runSlice();
    sim.runSlice();
    const i1 = sim.domainState(domid).instructions;
    assert.equal(i1[0], i0[0]);
    assert.ok(i1[1] > i0[1]);
    // Put the byte back and answer: it runs the real instruction.
    sim.writeVirt(domid, bp, Buffer.from([0x48]));
    r.respond(0, VmFlag.vcpuPaused);
    assert.deepEqual(sim.monitorState(domid).vmEventPause, [0, 0]);
    sim.runSlice();
    assert.ok(sim.domainState(domid).instructions[0] > i1[0]);
    assert.equal(sim.domainState(domid).crashReason, undefined);
    assert.equal(r.rawRequests().length, 0);
    g.close();
  });

  it('responses: wrong version, a VCPU not paused, spares: all ignored, the count never goes below 0', () => {
    const g = monGuest({ vcpus: 2 });
    const { xc, sim, domid } = g;
    const r = new RawRing(g);
    xc.monitorEvent(domid, SWBP, true);
    park(g, 1);
    sim.writeVirt(domid, g.sym('demo_tick'), Buffer.from([0xcc]));
    xc.unpauseDomain(domid);
    runUntil(g, () => r.u32(0) > 0);
    assert.equal(r.requests().length, 1);
    r.respond(0, VmFlag.vcpuPaused, { version: 6 });
    r.respond(1, VmFlag.vcpuPaused);
    r.respond(5, VmFlag.vcpuPaused);
    assert.deepEqual(sim.monitorState(domid).vmEventPause, [1, 0]);
    r.respond(0, VmFlag.vcpuPaused);
    r.respond(0, VmFlag.vcpuPaused);
    assert.deepEqual(sim.monitorState(domid).vmEventPause, [0, 0]);
    xc.monitorEvent(domid, SWBP, false);
    xc.monitorRingDisable(domid);
    g.close();
  });

  it('SET_REGISTERS moves the VCPU; RESUME processes responses as a notify does', () => {
    const g = monGuest({ vcpus: 2 });
    const { xc, sim, domid } = g;
    const r = new RawRing(g);
    xc.monitorEvent(domid, SWBP, true);
    park(g, 1);
    const bp = g.sym('demo_tick');
    sim.writeVirt(domid, bp, Buffer.from([0xcc]));
    xc.unpauseDomain(domid);
    runUntil(g, () => r.u32(0) > 0);
    const [req] = r.rawRequests();
    // Back to the start of the loop's call with rax changed; the int3 stays (not met again before the next call).
    const rsp = Buffer.from(req);
    rsp.writeUInt32LE(VmFlag.vcpuPaused | VmFlag.setRegisters, Req.flags);
    rsp.writeBigUInt64LE(0x1234n, Req.regs + Regs.rax);
    rsp.writeBigUInt64LE(bp + 1n, Req.regs + Regs.rip);
    r.respondRaw(rsp, false);
    assert.deepEqual(sim.monitorState(domid).vmEventPause, [1, 0]);
    xc.monitorRingResume(domid);
    assert.deepEqual(sim.monitorState(domid).vmEventPause, [0, 0]);
    assert.equal(sim.registers(domid, 0).rip, bp + 1n);
    assert.equal(sim.registers(domid, 0).rax, 0x1234n);
    xc.monitorEvent(domid, SWBP, false);
    xc.monitorRingDisable(domid);
    g.close();
  });

  it('DISABLE with a VCPU waiting for its response leaves it paused for good (the teardown hazard)', () => {
    const g = monGuest({ vcpus: 2 });
    const { xc, sim, domid } = g;
    const r = new RawRing(g);
    xc.monitorEvent(domid, SWBP, true);
    park(g, 1);
    const bp = g.sym('demo_tick');
    sim.writeVirt(domid, bp, Buffer.from([0xcc]));
    xc.unpauseDomain(domid);
    runUntil(g, () => r.u32(0) > 0);
    sim.writeVirt(domid, bp, Buffer.from([0x48]));
    xc.monitorRingDisable(domid);
    const i = sim.domainState(domid).instructions[0];
    for (let n = 0; n < 5; n++) sim.runSlice();
    assert.equal(sim.domainState(domid).instructions[0], i);
    assert.deepEqual(sim.monitorState(domid).vmEventPause, [1, 0]);
    // Our port is dead: a notify is dropped, nothing fires.
    r.respond(0, VmFlag.vcpuPaused);
    assert.deepEqual(sim.monitorState(domid).vmEventPause, [1, 0]);
    g.close();
  });

  it('a full ring (8 slots) makes VCPUs wait: DISABLE is EBUSY until answers free slots', () => {
    const g = monGuest({ vcpus: 10 });
    const { xc, sim, domid } = g;
    const r = new RawRing(g);
    xc.monitorEvent(domid, SWBP, true);
    sim.writeVirt(domid, g.sym('demo_tick'), Buffer.from([0xcc]));
    xc.unpauseDomain(domid);
    runUntil(g, () => sim.monitorState(domid).ring?.waiting.length === 2);
    const st = sim.monitorState(domid);
    assert.equal(st.ring?.free, 0);
    assert.equal(st.vmEventPause.filter((p) => p === 1).length, 8);
    assert.equal(st.blocked.filter((b) => b).length, 2);
    const waiting = st.ring?.waiting ?? [];
    assert.equal(errnoOf(() => xc.monitorRingDisable(domid)), Errno.EBUSY);
    const reqs = r.requests();
    assert.equal(reqs.length, 8);
    // One answer frees one slot: the first waiter puts its request at once.
    r.respond(reqs[0].vcpu, VmFlag.vcpuPaused);
    const more = r.requests();
    assert.deepEqual(more.map((q) => q.vcpu), [waiting[0]]);
    assert.deepEqual(sim.monitorState(domid).ring?.waiting, [waiting[1]]);
    sim.writeVirt(domid, g.sym('demo_tick'), Buffer.from([0x48]));
    for (const q of [...reqs.slice(1), ...more]) r.respond(q.vcpu, VmFlag.vcpuPaused);
    for (const q of r.requests()) r.respond(q.vcpu, VmFlag.vcpuPaused);
    const end = sim.monitorState(domid);
    assert.deepEqual(end.ring?.waiting, []);
    assert.ok(end.vmEventPause.every((p) => p === 0));
    assert.ok(end.blocked.every((b) => !b));
    xc.monitorRingDisable(domid);
    sim.runSlice();
    assert.equal(sim.domainState(domid).crashReason, undefined);
    g.close();
  });

  it('no ring, or the event off: the int3 goes to the guest (no IDT: a crash)', () => {
    for (const withRing of [false, true]) {
      const g = monGuest({ vcpus: 1 });
      const { xc, sim, domid } = g;
      if (withRing) {
        new RawRing(g);
        xc.monitorEvent(domid, DBG, true); // another event on; SOFTWARE_BREAKPOINT off
      } else {
        xc.monitorEvent(domid, SWBP, true); // on, but no ring
      }
      sim.writeVirt(domid, g.sym('demo_tick'), Buffer.from([0xcc]));
      xc.unpauseDomain(domid);
      runUntil(g, () => sim.domainState(domid).crashReason !== undefined);
      assert.match(sim.domainState(domid).crashReason ?? '', /#BP/);
      g.close();
    }
  });

  it('MTF (mtf option): debug_op + SINGLESTEP give one request per instruction; TOGGLE_SINGLESTEP stops it', () => {
    const g = monGuest({ vcpus: 2, sim: { mtf: true } });
    const { xc, sim, domid } = g;
    const r = new RawRing(g);
    xc.monitorEvent(domid, MonitorEvent.singlestep, true);
    park(g, 1);
    xc.debugOp(domid, 0, true);
    xc.unpauseDomain(domid);
    let rip = sim.registers(domid, 0).rip;
    for (let step = 0; step < 3; step++) {
      const before = sim.domainState(domid).instructions[0];
      sim.runSlice();
      const reqs = r.requests();
      assert.equal(reqs.length, 1, `step ${step}`);
      assert.equal(reqs[0].reason, Reason.singlestep);
      assert.equal(sim.domainState(domid).instructions[0], before + 1);
      assert.notEqual(reqs[0].rip, rip);
      assert.equal(reqs[0].rip, sim.registers(domid, 0).rip);
      rip = reqs[0].rip;
      r.respond(0, VmFlag.vcpuPaused | (step === 2 ? VmFlag.toggleSinglestep : 0), { reason: Reason.singlestep });
    }
    assert.equal(sim.monitorState(domid).singleStep[0], false);
    sim.runSlice();
    assert.equal(r.requests().length, 0);
    assert.ok(sim.domainState(domid).instructions[0] > 100);
    g.close();
  });

  it('TF without MTF -> DEBUG_EXCEPTION after the instruction; pending_dbg and the request dr6 0, DR6.BS in the context', () => {
    const g = monGuest({ vcpus: 2 });
    const { xc, sim, domid } = g;
    const r = new RawRing(g);
    xc.monitorEvent(domid, DBG, true, true);
    park(g, 1);
    const entry = sim.registers(domid, 0).rip;
    setTf(g, 0, true);
    xc.unpauseDomain(domid);
    sim.runSlice();
    const [req, ...rest] = r.requests();
    assert.equal(rest.length, 0);
    assert.equal(req.reason, Reason.debugException);
    assert.equal(req.type, X86EventType.hwException);
    assert.equal(req.pendingDbg, 0n); // Xen passes 0 (vmx.c / svm.c)
    assert.equal(req.rip, entry + 3n); // after `mov %rdi,%r12`
    assert.equal(sim.domainState(domid).instructions[0], 1);
    const ctx = xc.getVcpuContext(domid, 0);
    assert.equal((readField(ctx, CTX64, 'dr6') ?? 0n) & 0x4000n, 0x4000n);
    assert.deepEqual(sim.monitorState(domid).vmEventPause, [1, 0]);
    setTf(g, 0, false);
    r.respond(0, VmFlag.vcpuPaused, { reason: Reason.debugException });
    sim.runSlice();
    assert.ok(sim.domainState(domid).instructions[0] > 100);
    assert.equal(r.requests().length, 0);
    assert.equal(sim.domainState(domid).crashReason, undefined);
    g.close();
  });

  it('async DEBUG_EXCEPTION: the request is put and the guest gets its #DB too (its handler clears TF)', () => {
    const g = monGuest({ vcpus: 1, guestTrapHandlers: true });
    const { xc, sim, domid } = g;
    const r = new RawRing(g);
    xc.monitorEvent(domid, DBG, true, false);
    setTf(g, 0, true);
    xc.unpauseDomain(domid);
    sim.runSlice();
    const reqs = r.requests();
    assert.equal(reqs.length, 1);
    assert.equal(reqs[0].flags & VmFlag.vcpuPaused, 0);
    assert.deepEqual(sim.monitorState(domid).vmEventPause, [0]);
    assert.equal(sim.registers(domid, 0).rflags & 0x100n, 0n);
    assert.ok(sim.domainState(domid).instructions[0] > 100);
    r.respond(0, 0, { reason: Reason.debugException });
    g.close();
  });

  it('DR0 execute breakpoint -> DEBUG_EXCEPTION at the instruction, DR6.B0', () => {
    const g = monGuest({ vcpus: 2 });
    const { xc, sim, domid } = g;
    const r = new RawRing(g);
    xc.monitorEvent(domid, DBG, true, true);
    park(g, 1);
    const at = g.sym('demo_work');
    for (const v of [0, 1]) {
      const ctx = xc.getVcpuContext(domid, v);
      writeField(ctx, CTX64, 'dr0', at);
      writeField(ctx, CTX64, 'dr7', 0x401n); // L0, execute
      xc.setVcpuContext(domid, v, ctx);
    }
    xc.unpauseDomain(domid);
    runUntil(g, () => r.u32(0) > 0);
    const [req] = r.requests();
    assert.equal(req.reason, Reason.debugException);
    assert.equal(req.vcpu, 0);
    assert.equal(req.rip, at);
    assert.equal(req.dr7 & 0xffn, 1n);
    assert.equal(sim.registers(domid, 0).rip, at);
    assert.equal(sim.registers(domid, 0).dr6 & 0xfn, 1n);
    // Clear DR7 and answer: it runs the instruction.
    const ctx = xc.getVcpuContext(domid, 0);
    writeField(ctx, CTX64, 'dr7', 0n);
    xc.setVcpuContext(domid, 0, ctx);
    r.respond(0, VmFlag.vcpuPaused, { reason: Reason.debugException });
    sim.runSlice();
    assert.notEqual(sim.registers(domid, 0).rip, at);
    assert.equal(sim.domainState(domid).crashReason, undefined);
    g.close();
  });
});

describe('sim monitor: re-injection and the guest\'s own int3', () => {
  function inject(g: MonGuest, vcpu: number, vector: number, type: number, insnLen: number, o: { pad?: number; op?: number } = {}): void {
    const b = Buffer.alloc(DmOpInject.size);
    b.writeUInt32LE(o.op ?? DMOP_INJECT_EVENT, DmOpInject.op);
    b.writeUInt32LE(vcpu, DmOpInject.vcpu);
    b.writeUInt8(vector, DmOpInject.vector);
    b.writeUInt8(type, DmOpInject.type);
    b.writeUInt8(insnLen, DmOpInject.insnLen);
    b.writeUInt8(o.pad ?? 0, 15);
    b.writeUInt32LE(0xffffffff, DmOpInject.errorCode);
    g.sim.dmOp(g.domid, [b]);
  }

  it('dm_op inject_event: EBUSY while one is pending, EINVAL for PV, bad VCPU or pad, EOPNOTSUPP for other ops', () => {
    const g = monGuest({ vcpus: 2 });
    inject(g, 0, 3, X86EventType.swException, 1);
    assert.equal(errnoOf(() => inject(g, 0, 3, X86EventType.swException, 1)), Errno.EBUSY);
    assert.deepEqual(g.sim.monitorState(g.domid).pendingInject, [3, undefined]);
    assert.equal(errnoOf(() => inject(g, 2, 3, X86EventType.swException, 1)), Errno.EINVAL);
    assert.equal(errnoOf(() => inject(g, 1, 3, X86EventType.swException, 1, { pad: 1 })), Errno.EINVAL);
    assert.equal(errnoOf(() => inject(g, 1, 3, X86EventType.swException, 1, { op: 99 })), Errno.EOPNOTSUPP);
    assert.equal(errnoOf(() => g.sim.dmOp(g.domid, [])), Errno.EFAULT);
    assert.equal(errnoOf(() => g.sim.dmOp(0, [Buffer.alloc(32)])), Errno.EPERM);
    g.close();
    const pv = monGuest({ type: 'pv' });
    assert.equal(errnoOf(() => pv.xc.injectEvent(pv.domid, 0, 3, X86EventType.swException, 1)), Errno.EINVAL);
    pv.close();
  });

  it('a guest-owned int3, given back with #BP, sends the VCPU back to it until the guest restores the byte', () => {
    const g = monGuest({ vcpus: 2, guestTrapHandlers: true });
    const { xc, sim, domid } = g;
    const r = new RawRing(g);
    xc.monitorEvent(domid, SWBP, true);
    park(g, 1);
    const site = g.sym('demo_tick');
    const finish = sim.guestPatch(domid, site);
    xc.unpauseDomain(domid);
    let hits = 0;
    for (let round = 0; round < 3; round++) {
      runUntil(g, () => r.u32(0) > r.u32(8)); // req_prod ahead of rsp_prod
      const [req] = r.requests();
      assert.equal(req.rip, site);
      hits++;
      // The debugger's re-injection: #BP, software exception of length 1, then the answer.
      xc.injectEvent(domid, 0, 3, X86EventType.swException, req.insnLength);
      r.respond(0, VmFlag.vcpuPaused);
      assert.equal(sim.registers(domid, 0).rip, site);
    }
    assert.equal(hits, 3);
    finish();
    runUntil(g, () => r.u32(0) > r.u32(8) || sim.domainState(domid).instructions[0] > 200);
    // One more trap may have been taken before the patch finished; answer it the same way.
    for (const req of r.requests()) {
      xc.injectEvent(domid, 0, 3, X86EventType.swException, 1);
      r.respond(req.vcpu, VmFlag.vcpuPaused);
    }
    const i = sim.domainState(domid).instructions[0];
    for (let n = 0; n < 3; n++) sim.runSlice();
    assert.ok(sim.domainState(domid).instructions[0] > i + 100);
    assert.equal(r.requests().length, 0);
    assert.equal(sim.domainState(domid).crashReason, undefined);
    assert.equal(sim.readVirt(domid, site, 1)[0], 0x48);
    g.close();
  });

  it('without a monitor, a guest-owned int3 is the guest\'s: handled with guestTrapHandlers, a crash without', () => {
    for (const handlers of [true, false]) {
      const g = monGuest({ vcpus: 1, guestTrapHandlers: handlers });
      const { xc, sim, domid } = g;
      const site = g.sym('demo_tick');
      const finish = sim.guestPatch(domid, site);
      xc.unpauseDomain(domid);
      sim.runSlice();
      if (!handlers) {
        assert.match(sim.domainState(domid).crashReason ?? '', /#BP/);
        g.close();
        continue;
      }
      assert.equal(sim.domainState(domid).crashReason, undefined);
      assert.equal(sim.registers(domid, 0).rip, site); // spinning on the int3
      finish();
      sim.runSlice();
      assert.notEqual(sim.registers(domid, 0).rip, site);
      assert.ok(sim.readVirt(domid, g.sym('demo_counter'), 8).readBigUInt64LE() > 0n);
      g.close();
    }
  });

  it('an injected #DB (TF) is handled by the guest: TF cleared, no crash', () => {
    const g = monGuest({ vcpus: 1, guestTrapHandlers: true });
    const { xc, sim, domid } = g;
    const r = new RawRing(g);
    xc.monitorEvent(domid, DBG, true, true);
    setTf(g, 0, true);
    xc.unpauseDomain(domid);
    sim.runSlice();
    const [req] = r.requests();
    xc.injectEvent(domid, 0, 1, X86EventType.hwException, 0, req.pendingDbg);
    r.respond(0, VmFlag.vcpuPaused, { reason: Reason.debugException });
    sim.runSlice();
    assert.equal(sim.registers(domid, 0).rflags & 0x100n, 0n);
    assert.equal(r.requests().length, 0);
    assert.ok(sim.domainState(domid).instructions[0] > 100);
    assert.equal(sim.domainState(domid).crashReason, undefined);
    g.close();
  });
});

describe('sim: setdebugging on a Xen without CONFIG_GDBSX', () => {
  it('PV: a kernel int3 is swallowed (rip past it, no pause, no event)', () => {
    const g = monGuest({ vcpus: 1, type: 'pv', sim: { gdbsx: false } });
    const { xc, sim, domid } = g;
    xc.setDebugging(domid, true);
    const at = g.sym('demo_tick');
    // `lea demo_ticks(%rip),%rax` is 7 bytes: an int3 on its first byte leaves 6 bytes
    // that decode as something else, which is exactly the harm.
    sim.writeVirt(domid, at, Buffer.from([0xcc]));
    let traps = 0;
    sim.onDebuggerEvent(() => traps++);
    xc.unpauseDomain(domid);
    sim.runSlice();
    assert.equal(traps, 0);
    assert.equal(xc.getDomainInfo(domid).paused, false);
    // It ran on from at+1: `8d 05 disp32` is a 32-bit lea, whose truncated address then
    // faults in the next instruction (at+7).
    assert.match(sim.domainState(domid).crashReason ?? '', /#PF/);
    assert.equal(sim.registers(domid, 0).rip, at + 7n);
    g.close();
  });

  it('PVH: the #BP is skipped and the monitor never hears of it; off again, the monitor gets it', () => {
    const g = monGuest({ vcpus: 1, sim: { gdbsx: false } });
    const { xc, sim, domid } = g;
    const r = new RawRing(g);
    xc.monitorEvent(domid, SWBP, true);
    xc.setDebugging(domid, true);
    // A harmless place for the int3: the `pause` (f3 90) in demo_rare; skipping 0xcc
    // leaves `nop` (0x90).
    const dis = sim.readVirt(domid, g.sym('demo_rare'), 64);
    const at = g.sym('demo_rare') + BigInt(dis.indexOf(Buffer.from([0xf3, 0x90])));
    sim.writeVirt(domid, at, Buffer.from([0xcc]));
    xc.unpauseDomain(domid);
    for (let n = 0; n < 5; n++) sim.runSlice();
    assert.equal(r.requests().length, 0);
    assert.deepEqual(sim.monitorState(domid).vmEventPause, [0]);
    assert.equal(xc.getDomainInfo(domid).paused, false);
    assert.equal(sim.domainState(domid).crashReason, undefined);
    xc.setDebugging(domid, false);
    runUntil(g, () => r.u32(0) > 0);
    assert.equal(r.requests()[0].rip, at);
    g.close();
  });

  it('with CONFIG_GDBSX, an attached debugger still takes int3 before the monitor (domain paused)', () => {
    const g = monGuest({ vcpus: 1 });
    const { xc, sim, domid } = g;
    const r = new RawRing(g);
    xc.monitorEvent(domid, SWBP, true);
    xc.setDebugging(domid, true);
    const at = g.sym('demo_tick');
    sim.writeVirt(domid, at, Buffer.from([0xcc]));
    xc.unpauseDomain(domid);
    runUntil(g, () => xc.getDomainInfo(domid).paused);
    assert.equal(r.requests().length, 0);
    assert.equal(sim.registers(domid, 0).rip, at + 1n);
    g.close();
  });

  it('the raw domctl struct is copied back for vm_event_op ENABLE (port) only on success', () => {
    const g = monGuest();
    const op = newDomctl(DomctlCmd.vm_event_op, g.xc.probeInterfaceVersion(), g.domid);
    op.writeUInt32LE(VmEventOp.enable, Off.vmeOp);
    op.writeUInt32LE(2, Off.vmeMode);
    assert.equal(op.length, DOMCTL_SIZE);
    g.sim.domctl(op);
    const port = op.readUInt32LE(Off.vmePort);
    assert.ok(port > 0);
    assert.equal(g.sim.monitorState(g.domid).ring?.port, port);
    const again = Buffer.from(op);
    again.writeUInt32LE(0xdead, Off.vmePort);
    assert.equal(errnoOf(() => g.sim.domctl(again)), Errno.EBUSY);
    assert.equal(again.readUInt32LE(Off.vmePort), 0xdead);
    g.close();
  });
});
