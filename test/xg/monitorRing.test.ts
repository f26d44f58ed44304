// MonitorRing, the client of Xen's monitor (vm_event) ring, against the simulated Xen:
// setup and teardown leave nothing behind, requests and responses, single-steps, debug
// registers, the guest's own int3 given back, a ring left by a killed debugger taken
// over, and failures that leave the domain as it was.
import { strict as assert } from 'assert';
import { CTX64, writeField } from '../../src/xg/context';
import { HVM_PARAM_MONITOR_RING_PFN, HvmOp, MonitorEvent, PageType, X86EventType } from '../../src/xg/domctl';
import { Errno, UserError, XenError } from '../../src/xg/errors';
import { Hypercalls, forwardBeyondDomctl } from '../../src/xg/hypercalls';
import { MonitorRing } from '../../src/xg/monitorRing';
import { MONITOR_RING_GFN } from '../../src/xg/sim/monitor';
import { Reason, VmFlag } from '../../src/xg/vmEvent';
import { XenControl } from '../../src/xg/xenctl';
import { MonGuest, monGuest, park, runUntil, setTf, tick } from '../sim/monitorHelpers';

const SWBP = MonitorEvent.softwareBreakpoint;
const DBG = MonitorEvent.debugException;

/** Nothing of the monitor left: no ring, no event, no VCPU held, no pause, no mapping. */
function assertClean(g: MonGuest, mappings = 0): void {
  const st = g.sim.monitorState(g.domid);
  assert.equal(st.ring, undefined);
  assert.deepEqual(st.events, []);
  assert.ok(st.vmEventPause.every((p) => p === 0), `vm_event pauses ${st.vmEventPause}`);
  assert.ok(st.blocked.every((b) => !b));
  assert.equal(g.sim.domainState(g.domid).controllerPauseCount, 0);
  assert.equal(g.sim.liveMappings(g.domid), mappings);
}

function open(g: MonGuest): MonitorRing {
  return MonitorRing.open(g.xc, g.domid, g.sim.domainState(g.domid).instructions.length);
}

describe('MonitorRing', () => {
  it('open and close leave no ring, no enabled event, no paused VCPU, no mapping behind', () => {
    const g = monGuest({ vcpus: 2 });
    g.xc.unpauseDomain(g.domid);
    const ring = open(g);
    assert.equal(ring.recovered, undefined);
    const st = g.sim.monitorState(g.domid);
    assert.equal(st.ring?.bound, true);
    assert.equal(st.ring?.gfn, MONITOR_RING_GFN);
    // The page left the guest's physmap (Xen and we keep it).
    assert.equal((g.xc.getPageFrameInfo(g.domid, [BigInt(MONITOR_RING_GFN)])[0] & PageType.mask) >>> 0, PageType.xtab >>> 0);
    assert.equal(g.sim.domainState(g.domid).controllerPauseCount, 0);
    assert.notEqual(ring.capabilities & (1 << SWBP), 0);
    ring.enable(SWBP);
    ring.enable(SWBP); // EEXIST: fine
    ring.enable(DBG, true);
    assert.deepEqual(g.sim.monitorState(g.domid).events, [SWBP, DBG]);
    ring.disable(DBG);
    ring.disable(DBG);
    ring.close();
    ring.close();
    assertClean(g);
    assert.throws(() => ring.enable(SWBP), /closed/);
    assert.deepEqual(ring.take(), []);
    // Again: the page is populated afresh.
    const again = open(g);
    again.close();
    assertClean(g);
    g.close();
  });

  it('an int3: onEvent, a SOFTWARE_BREAKPOINT on the int3, only that VCPU held; respond lets it go', async () => {
    const g = monGuest({ vcpus: 2 });
    const { sim, domid } = g;
    const ring = open(g);
    ring.enable(SWBP);
    let signalled = 0;
    ring.onEvent(() => signalled++);
    park(g, 1);
    const bp = g.sym('demo_tick');
    sim.writeVirt(domid, bp, Buffer.from([0xcc]));
    g.xc.unpauseDomain(domid);
    runUntil(g, () => sim.monitorState(domid).vmEventPause[0] === 1);
    await tick();
    assert.ok(signalled >= 1);
    const reqs = ring.take();
    assert.equal(reqs.length, 1);
    const [req] = reqs;
    assert.equal(req.reason, Reason.softwareBreakpoint);
    assert.equal(req.vcpu, 0);
    assert.equal(req.rip, bp);
    assert.equal(req.insnLength, 1);
    assert.equal(req.type, X86EventType.swException);
    assert.equal(req.flags & VmFlag.vcpuPaused, VmFlag.vcpuPaused);
    assert.deepEqual(ring.outstanding, [req]);
    assert.deepEqual(ring.take(), []);
    const i0 = sim.domainState(domid).instructions;
    sim.runSlice();
    const i1 = sim.domainState(domid).instructions;
    assert.equal(i1[0], i0[0]);
    assert.ok(i1[1] > i0[1]);
    sim.writeVirt(domid, bp, Buffer.from([0x48]));
    ring.respond(req);
    assert.deepEqual(ring.outstanding, []);
    assert.throws(() => ring.respond(req), /not outstanding/);
    sim.runSlice();
    assert.ok(sim.domainState(domid).instructions[0] > i1[0]);
    ring.close();
    assertClean(g);
    assert.equal(sim.domainState(domid).crashReason, undefined);
    g.close();
  });

  it('MTF (VMX): one SINGLESTEP per instruction; TOGGLE_SINGLESTEP in the answer ends it', () => {
    const g = monGuest({ vcpus: 2, sim: { mtf: true } });
    const { sim, domid, xc } = g;
    const ring = open(g);
    assert.notEqual(ring.capabilities & (1 << MonitorEvent.singlestep), 0);
    ring.enable(MonitorEvent.singlestep);
    park(g, 1);
    xc.debugOp(domid, 0, true);
    xc.unpauseDomain(domid);
    const rips: bigint[] = [];
    for (let n = 0; n < 4; n++) {
      sim.runSlice();
      const [req, ...rest] = ring.take();
      assert.equal(rest.length, 0);
      assert.equal(req.reason, Reason.singlestep);
      assert.equal(sim.domainState(domid).instructions[0], n + 1);
      rips.push(req.rip);
      ring.respond(req, n === 3 ? VmFlag.toggleSinglestep : 0);
    }
    assert.equal(new Set(rips).size, 4);
    sim.runSlice();
    assert.deepEqual(ring.take(), []);
    assert.ok(sim.domainState(domid).instructions[0] > 100);
    ring.close();
    assertClean(g);
    g.close();
  });

  it('no MTF (SVM): TF and DR0 come as DEBUG_EXCEPTION (after the instruction / at it)', () => {
    const g = monGuest({ vcpus: 2 });
    const { sim, domid, xc } = g;
    const ring = open(g);
    assert.equal(ring.capabilities & (1 << MonitorEvent.singlestep), 0);
    ring.enable(DBG, true);
    park(g, 1);
    const entry = sim.registers(domid, 0).rip;
    setTf(g, 0, true);
    xc.unpauseDomain(domid);
    sim.runSlice();
    const [step] = ring.take();
    assert.equal(step.reason, Reason.debugException);
    assert.equal(step.rip, entry + 3n);
    assert.equal(sim.registers(domid, 0).dr6 & 0x4000n, 0x4000n);
    setTf(g, 0, false);
    const at = g.sym('demo_work');
    const ctx = xc.getVcpuContext(domid, 0);
    writeField(ctx, CTX64, 'dr0', at);
    writeField(ctx, CTX64, 'dr7', 0x401n);
    xc.setVcpuContext(domid, 0, ctx);
    ring.respond(step);
    runUntil(g, () => sim.monitorState(domid).vmEventPause[0] === 1);
    const [hw] = ring.take();
    assert.equal(hw.reason, Reason.debugException);
    assert.equal(hw.rip, at);
    assert.equal(hw.type, X86EventType.hwException);
    assert.equal(sim.registers(domid, 0).dr6 & 0xfn, 1n);
    const c2 = xc.getVcpuContext(domid, 0);
    writeField(c2, CTX64, 'dr7', 0n);
    xc.setVcpuContext(domid, 0, c2);
    ring.respond(hw);
    sim.runSlice();
    assert.equal(sim.domainState(domid).crashReason, undefined);
    ring.close();
    assertClean(g);
    g.close();
  });

  it('the guest\'s own int3 is given back (#BP injected) until its patch is done; the guest then runs on', () => {
    const g = monGuest({ vcpus: 2, guestTrapHandlers: true });
    const { sim, domid, xc } = g;
    const ring = open(g);
    ring.enable(SWBP);
    park(g, 1);
    const site = g.sym('demo_tick');
    const finish = sim.guestPatch(domid, site);
    xc.unpauseDomain(domid);
    let given = 0;
    const giveBack = (): void => {
      for (const req of ring.take()) {
        assert.equal(req.rip, site);
        xc.injectEvent(domid, req.vcpu, 3, X86EventType.swException, req.insnLength);
        ring.respond(req);
        given++;
      }
    };
    for (let n = 0; n < 5; n++) {
      sim.runSlice();
      giveBack();
    }
    assert.ok(given >= 3, `given back ${given} times`);
    assert.equal(sim.domainState(domid).crashReason, undefined);
    finish();
    for (let n = 0; n < 3; n++) {
      sim.runSlice();
      giveBack();
    }
    const i = sim.domainState(domid).instructions[0];
    const more = given;
    for (let n = 0; n < 3; n++) sim.runSlice();
    assert.deepEqual(ring.take(), []);
    assert.equal(given, more);
    assert.ok(sim.domainState(domid).instructions[0] > i + 100);
    assert.equal(sim.domainState(domid).crashReason, undefined);
    ring.close();
    assertClean(g);
    g.close();
  });

  it('a killed debugger\'s ring (events on, VCPUs held, never closed) is taken over by the next open', () => {
    const g = monGuest({ vcpus: 3 });
    const { sim, domid, xc } = g;
    const killed = open(g);
    killed.enable(SWBP);
    killed.enable(DBG, true);
    const bp = g.sym('demo_tick');
    sim.writeVirt(domid, bp, Buffer.from([0xcc]));
    xc.unpauseDomain(domid);
    runUntil(g, () => sim.monitorState(domid).vmEventPause.every((p) => p === 1));
    assert.equal(killed.take().length, 3);
    // The debugger dies here: no close(). Nothing runs on the held VCPUs.
    const held = sim.domainState(domid).instructions;
    sim.runSlice();
    assert.deepEqual(sim.domainState(domid).instructions, held);
    assert.equal(errnoOf(() => xc.monitorRingEnable(domid)), Errno.EBUSY);
    // The next debugger removes the old breakpoint and opens.
    sim.writeVirt(domid, bp, Buffer.from([0x48]));
    const next = open(g);
    assert.match(next.recovered ?? '', /took over the monitor ring of a debugger that is gone/);
    const st = sim.monitorState(domid);
    assert.deepEqual(st.vmEventPause, [0, 0, 0]);
    assert.deepEqual(st.events, []);
    assert.equal(st.ring?.bound, true);
    assert.equal(st.ring?.reqProd, 0); // started afresh
    sim.runSlice();
    assert.ok(sim.domainState(domid).instructions.every((n, v) => n > held[v]));
    // The new ring works.
    next.enable(SWBP);
    sim.writeVirt(domid, bp, Buffer.from([0xcc]));
    runUntil(g, () => sim.monitorState(domid).vmEventPause.some((p) => p === 1));
    const reqs = next.take();
    assert.ok(reqs.length >= 1);
    assert.equal(reqs[0].rip, bp);
    sim.writeVirt(domid, bp, Buffer.from([0x48]));
    next.close();
    assertClean(g, 1); // the dead debugger's mapping (its process would take it along when it dies)
    sim.runSlice();
    assert.equal(sim.domainState(domid).crashReason, undefined);
    g.close();
  });

  it('close() answers everything, also VCPUs waiting for a slot of a full ring', () => {
    const g = monGuest({ vcpus: 10 });
    const { sim, domid, xc } = g;
    const ring = open(g);
    ring.enable(SWBP);
    const bp = g.sym('demo_tick');
    sim.writeVirt(domid, bp, Buffer.from([0xcc]));
    xc.unpauseDomain(domid);
    runUntil(g, () => sim.monitorState(domid).ring?.waiting.length === 2);
    assert.equal(ring.take().length, 8);
    sim.writeVirt(domid, bp, Buffer.from([0x48]));
    ring.close();
    assertClean(g);
    sim.runSlice();
    assert.ok(sim.domainState(domid).instructions.every((n) => n > 0));
    assert.equal(sim.domainState(domid).crashReason, undefined);
    g.close();
  });

  it('refuses a PV guest with a clear message and leaves it running', () => {
    const g = monGuest({ type: 'pv' });
    g.xc.unpauseDomain(g.domid);
    assert.throws(() => open(g), (e: unknown) => e instanceof UserError && /needs an HVM or PVH guest/.test(e.message));
    assertClean(g);
    g.close();
  });

  it('a failed setup leaves the domain as it was: no param, or a failing event-channel bind', () => {
    const g = monGuest();
    const { sim, domid } = g;
    g.xc.unpauseDomain(domid);
    const arg = Buffer.alloc(16);
    arg.writeUInt16LE(domid, 0);
    arg.writeUInt32LE(HVM_PARAM_MONITOR_RING_PFN, 4);
    arg.writeBigUInt64LE(0n, 8);
    sim.hvmOp(HvmOp.setParam, arg);
    assert.throws(() => open(g), /HVM_PARAM_MONITOR_RING_PFN is 0/);
    assertClean(g);
    arg.writeBigUInt64LE(BigInt(MONITOR_RING_GFN), 8);
    sim.hvmOp(HvmOp.setParam, arg);
    // A backend whose /dev/xen/evtchn refuses.
    const hc: Hypercalls = {
      kind: 'sim',
      domctl: (op, data) => sim.domctl(op, data),
      xenVersion: (cmd, a) => sim.xenVersion(cmd, a),
      ...forwardBeyondDomctl(sim),
      bindInterdomain: () => { throw new XenError('IOCTL_EVTCHN_BIND_INTERDOMAIN', Errno.ENODEV); },
      close: () => undefined,
    };
    assert.throws(() => MonitorRing.open(new XenControl(hc), domid, 2), /ENODEV/);
    assertClean(g);
    // And then it works.
    open(g).close();
    assertClean(g);
    g.close();
  });

  it('close() does not throw when the domain is gone', () => {
    const g = monGuest();
    const ring = open(g);
    ring.enable(SWBP);
    g.sim.destroyDomain(g.domid);
    ring.close();
    g.close();
  });
});

function errnoOf(fn: () => unknown): number {
  try {
    fn();
  } catch (e) {
    if (e instanceof XenError) return e.errno;
    throw e;
  }
  return 0;
}
