// Execution control as gdbsx uses it: the guest runs and stops, per-VCPU gdbsx pauses,
// int3 and single-step (TF and MTF) pausing the domain for the debugger, domstatus,
// and the crashes a debugger-less trap causes.
import { strict as assert } from 'assert';
import { CTX32, CTX64, EFLAGS_TF, readField, writeField } from '../../src/xg/context';
import { ShutdownReason, VcpuEvent } from '../../src/xg/domctl';
import { Errno } from '../../src/xg/errors';
import { nextEvent, sleep, startGuest, waitFor, errnoOf } from './helpers';

/** Timers and immediates alive in this process (the simulator's own show up here). */
function liveTimers(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'Timeout' || r === 'Immediate').length;
}

describe('sim execution', () => {
  it('runs the guest on the event loop and stops it while paused', async () => {
    const g = startGuest({ vcpus: 2 });
    const { xc, domid } = g;
    const counter = g.sym('demo_counter');
    await waitFor(() => g.peek(counter, 8) > 1000n, 'the demo counter to grow');
    assert.ok(g.peek(g.sym('demo_ticks'), 8) > 0n && g.peek(g.sym('demo_ticks') + 8n, 8) > 0n);
    xc.pauseDomain(domid);
    const c1 = g.peek(counter, 8);
    const i1 = g.sim.domainState(domid).instructions;
    await sleep(20);
    assert.equal(g.peek(counter, 8), c1);
    assert.deepEqual(g.sim.domainState(domid).instructions, i1);
    xc.unpauseDomain(domid);
    await waitFor(() => g.peek(counter, 8) > c1, 'the counter to move again');
    assert.equal(g.sim.domainState(domid).crashReason, undefined);
    g.close();
  });

  it('schedules nothing once nothing can run, and nothing after close()', async () => {
    await sleep(5);
    const base = liveTimers();
    const g = startGuest({ vcpus: 1 });
    await waitFor(() => g.sim.domainState(g.domid).instructions[0] > 0, 'the guest to start');
    g.xc.pauseDomain(g.domid);
    await sleep(5);
    assert.equal(liveTimers(), base);
    g.xc.unpauseDomain(g.domid);
    g.close();
    const i = g.sim.domainState(g.domid).instructions[0];
    await sleep(10);
    assert.equal(g.sim.domainState(g.domid).instructions[0], i);
    assert.equal(liveTimers(), base);
  });

  it('VCPUs end up at different places while they work', () => {
    // Short slices catch them mid-work: between ticks they all sleep after the same hlt.
    const g = startGuest({ vcpus: 3, sim: { autoRun: false, sliceInstructions: 50 } });
    for (let i = 0; i < 5; i++) g.sim.runSlice();
    const rips = new Set([0, 1, 2].map((v) => g.sim.registers(g.domid, v).rip));
    assert.ok(rips.size > 1, 'all VCPUs at the same rip');
    g.close();
  });

  it('a shut-down domain stops running', () => {
    const g = startGuest({ vcpus: 1, sim: { autoRun: false } });
    g.sim.runSlice();
    g.sim.shutdownDomain(g.domid, 'poweroff');
    const i = g.sim.domainState(g.domid).instructions[0];
    g.sim.runSlice();
    assert.equal(g.sim.domainState(g.domid).instructions[0], i);
    g.close();
  });
});

describe('sim gdbsx VCPU pausing', () => {
  it('EBUSY unless the domain is controller-paused, then EINVAL for a bad VCPU', () => {
    const g = startGuest({ vcpus: 2, sim: { autoRun: false } });
    const { xc, domid } = g;
    assert.equal(errnoOf(() => xc.pauseVcpu(domid, 0)), Errno.EBUSY);
    assert.equal(errnoOf(() => xc.unpauseVcpu(domid, 0xffffffff)), Errno.EBUSY);
    xc.pauseDomain(domid);
    assert.equal(errnoOf(() => xc.pauseVcpu(domid, 2)), Errno.EINVAL);
    assert.equal(errnoOf(() => xc.unpauseVcpu(domid, 0xffffffff)), Errno.EINVAL);
    assert.equal(errnoOf(() => xc.unpauseVcpu(domid, 1)), Errno.EINVAL); // not paused
    g.close();
  });

  it('a gdbsx-paused VCPU stays put while the others run', () => {
    const g = startGuest({ vcpus: 2, sim: { autoRun: false } });
    const { xc, sim, domid } = g;
    xc.pauseDomain(domid);
    xc.pauseVcpu(domid, 1);
    xc.unpauseDomain(domid);
    const before = sim.domainState(domid).instructions;
    sim.runSlice();
    const after = sim.domainState(domid).instructions;
    assert.ok(after[0] > before[0]);
    assert.equal(after[1], before[1]);
    assert.equal(errnoOf(() => xc.unpauseVcpu(domid, 1)), Errno.EBUSY); // domain not paused now
    xc.pauseDomain(domid);
    xc.unpauseVcpu(domid, 1);
    xc.unpauseDomain(domid);
    sim.runSlice();
    assert.ok(sim.domainState(domid).instructions[1] > after[1]);
    g.close();
  });
});

for (const width of [64, 32] as const) {
  const layout = width === 64 ? CTX64 : CTX32;

  describe(`sim breakpoints and single-step, ${width}-bit PV`, () => {
    it('int3: rip past it, event 3, the domain paused, domstatus read-to-clear', async () => {
      const g = startGuest({ vcpus: 2, width });
      const { xc, sim, domid } = g;
      const tick = g.sym('demo_tick');
      xc.pauseDomain(domid);
      xc.setDebugging(domid, true);
      const orig = Buffer.alloc(1);
      xc.guestMemIo(domid, tick, orig, false);
      xc.guestMemIo(domid, tick, Buffer.from([0xcc]), true);
      let fired = 0;
      const off = sim.onDebuggerEvent(() => fired++);
      const trap = nextEvent(sim, (e) => e.type === 'trap');
      xc.unpauseDomain(domid);
      const ev = await trap;
      assert.equal(ev.type === 'trap' && ev.kind, 'int3');
      assert.equal(fired, 1);
      const info = xc.getDomainInfo(domid);
      assert.equal(info.paused, true);
      assert.equal(info.debugged, true);
      const st = xc.domStatus(domid);
      assert.equal(st.paused, true);
      assert.equal(st.vcpuEvent, VcpuEvent.breakpoint);
      assert.ok(ev.type === 'trap' && st.vcpuId === ev.vcpu);
      assert.equal(sim.registers(domid, st.vcpuId).rip, tick + 1n);
      assert.equal(xc.domStatus(domid).vcpuId, -1);
      // Resume as gdb does: put the byte back, rip back onto it, continue.
      xc.guestMemIo(domid, tick, orig, true);
      const ctx = xc.getVcpuContext(domid, st.vcpuId);
      writeField(ctx, layout, 'rip', tick);
      xc.setVcpuContext(domid, st.vcpuId, ctx);
      const n = g.peek(g.sym('demo_counter'), width === 64 ? 8 : 4);
      xc.unpauseDomain(domid);
      await waitFor(() => g.peek(g.sym('demo_counter'), width === 64 ? 8 : 4) > n + 100n, 'the guest to go on');
      assert.equal(sim.domainState(domid).crashReason, undefined);
      off();
      g.close();
    });

    it('TF: exactly one instruction, dr6.BS, no gdbsx event', () => {
      // Created paused: VCPU 0 sits at the entry, `mov %rdi,%r12` (3 bytes) / `mov %eax,%esi` (2 bytes).
      const g = startGuest({ vcpus: 2, width, paused: true, sim: { autoRun: false } });
      const { xc, sim, domid } = g;
      const entry = sim.layout(domid).entry;
      const [len1, len2] = width === 64 ? [3n, 3n] : [2n, 2n];
      xc.setDebugging(domid, true);
      xc.pauseVcpu(domid, 1);
      const ctx = xc.getVcpuContext(domid, 0);
      writeField(ctx, layout, 'rflags', (readField(ctx, layout, 'rflags') ?? 0n) | EFLAGS_TF);
      writeField(ctx, layout, width === 64 ? 'r12' : 'rsi', 0x5555n);
      xc.setVcpuContext(domid, 0, ctx);
      let fired = 0;
      sim.onDebuggerEvent(() => fired++);
      xc.unpauseDomain(domid);
      sim.runSlice();
      const after = sim.domainState(domid).instructions;
      assert.deepEqual(after, [1, 0]);
      assert.equal(fired, 1);
      assert.equal(xc.getDomainInfo(domid).paused, true);
      const r = sim.registers(domid, 0);
      assert.equal(r.rip, entry + len1);
      assert.equal(width === 64 ? r.r12 : r.rsi, 0n); // the mov happened
      assert.equal(r.dr6 & 0x4000n, 0x4000n);
      assert.equal(xc.domStatus(domid).vcpuId, -1);
      // Left set, TF steps again on the next unpause.
      xc.unpauseDomain(domid);
      sim.runSlice();
      assert.deepEqual(sim.domainState(domid).instructions, [2, 0]);
      assert.equal(sim.registers(domid, 0).rip, entry + len1 + len2);
      // Cleared, the VCPUs run on.
      const c2 = xc.getVcpuContext(domid, 0);
      writeField(c2, layout, 'rflags', (readField(c2, layout, 'rflags') ?? 0n) & ~EFLAGS_TF);
      xc.setVcpuContext(domid, 0, c2);
      xc.unpauseVcpu(domid, 1);
      xc.unpauseDomain(domid);
      sim.runSlice();
      const end = sim.domainState(domid).instructions;
      assert.ok(end[0] > 100 && end[1] > 100);
      assert.equal(xc.getDomainInfo(domid).paused, false);
      assert.equal(sim.domainState(domid).crashReason, undefined);
      g.close();
    });

    it('TF on VCPU 1 with VCPU 0 running: the step traps before VCPU 0 runs its quantum', () => {
      const g = startGuest({ vcpus: 2, width, paused: true, sim: { autoRun: false } });
      const { xc, sim, domid } = g;
      xc.setDebugging(domid, true);
      const ctx = xc.getVcpuContext(domid, 1);
      writeField(ctx, layout, 'rflags', (readField(ctx, layout, 'rflags') ?? 0n) | EFLAGS_TF);
      xc.setVcpuContext(domid, 1, ctx);
      xc.unpauseDomain(domid);
      sim.runSlice();
      // As on hardware, where VCPU 1's #DB comes one instruction after the unpause.
      assert.deepEqual(sim.domainState(domid).instructions, [0, 1]);
      assert.equal(xc.getDomainInfo(domid).paused, true);
      g.close();
    });

    it('int3 with no debugger attached crashes the guest (a breakpoint left behind)', async () => {
      const g = startGuest({ vcpus: 2, width });
      const { xc, sim, domid } = g;
      const tick = g.sym('demo_tick');
      xc.pauseDomain(domid);
      xc.setDebugging(domid, true);
      xc.guestMemIo(domid, tick, Buffer.from([0xcc]), true);
      xc.setDebugging(domid, false); // detach without removing it
      const down = nextEvent(sim, (e) => e.type === 'shutdown');
      xc.unpauseDomain(domid);
      const ev = await down;
      assert.equal(ev.type === 'shutdown' && ev.reason, ShutdownReason.crash);
      const info = xc.getDomainInfo(domid);
      assert.equal(info.shutdown, true);
      assert.equal(info.shutdownReason, ShutdownReason.crash);
      assert.equal(info.paused, false);
      assert.match(sim.domainState(domid).crashReason ?? '', /#BP/);
      g.close();
    });
  });
}

describe('sim traps that crash, and MTF', () => {
  it('TF with no debugger attached, and #UD, crash the guest', () => {
    const g = startGuest({ vcpus: 1, sim: { autoRun: false } });
    const { xc, sim, domid } = g;
    xc.pauseDomain(domid);
    const ctx = xc.getVcpuContext(domid, 0);
    writeField(ctx, CTX64, 'rflags', (readField(ctx, CTX64, 'rflags') ?? 0n) | EFLAGS_TF);
    xc.setVcpuContext(domid, 0, ctx);
    xc.unpauseDomain(domid);
    sim.runSlice();
    assert.match(sim.domainState(domid).crashReason ?? '', /#DB/);
    g.close();
    const u = startGuest({ vcpus: 1, sim: { autoRun: false } });
    u.sim.writeVirt(u.domid, u.sym('demo_tick'), Buffer.from([0x0f, 0x0b]));
    u.sim.runSlice();
    assert.match(u.sim.domainState(u.domid).crashReason ?? '', /#UD/);
    assert.equal(u.sim.registers(u.domid, 0).rip, u.sym('demo_tick')); // a fault: rip on the instruction
    u.close();
  });

  it('debug_op: EINVAL for PV, EOPNOTSUPP without MTF, else steps invisibly', () => {
    const pv = startGuest({ vcpus: 1, sim: { autoRun: false, mtf: true } });
    assert.equal(errnoOf(() => pv.xc.debugOp(pv.domid, 0, true)), Errno.EINVAL);
    pv.close();
    const nomtf = startGuest({ vcpus: 1, type: 'pvh', sim: { autoRun: false } });
    assert.equal(errnoOf(() => nomtf.xc.debugOp(nomtf.domid, 0, true)), Errno.EOPNOTSUPP);
    nomtf.close();

    const g = startGuest({ vcpus: 2, type: 'pvh', sim: { autoRun: false, mtf: true } });
    const { xc, sim, domid } = g;
    assert.equal(errnoOf(() => xc.debugOp(domid, 2, true)), Errno.EINVAL);
    xc.pauseDomain(domid);
    xc.setDebugging(domid, true);
    xc.pauseVcpu(domid, 1);
    xc.debugOp(domid, 0, true);
    for (let step = 1; step <= 3; step++) {
      const before = sim.domainState(domid).instructions[0];
      xc.unpauseDomain(domid);
      sim.runSlice();
      assert.equal(sim.domainState(domid).instructions[0], before + 1, `step ${step}`);
      assert.equal(xc.getDomainInfo(domid).paused, true);
    }
    const r = sim.registers(domid, 0);
    assert.equal(r.rflags & EFLAGS_TF, 0n);
    assert.equal(r.dr6, 0xffff0ff0n);
    xc.debugOp(domid, 0, false);
    xc.unpauseDomain(domid);
    sim.runSlice();
    assert.equal(xc.getDomainInfo(domid).paused, false);
    g.close();
  });

  it('onDebuggerEvent: every trap pause, until unsubscribed', () => {
    const g = startGuest({ vcpus: 1, sim: { autoRun: false } });
    const { xc, sim, domid } = g;
    let kept = 0;
    let dropped = 0;
    sim.onDebuggerEvent(() => kept++);
    const off = sim.onDebuggerEvent(() => dropped++);
    xc.pauseDomain(domid);
    xc.setDebugging(domid, true);
    xc.guestMemIo(domid, g.sym('demo_tick'), Buffer.from([0xcc]), true);
    xc.unpauseDomain(domid);
    sim.runSlice();
    assert.deepEqual([kept, dropped], [1, 1]);
    off();
    const ctx = xc.getVcpuContext(domid, 0);
    writeField(ctx, CTX64, 'rip', g.sym('demo_tick'));
    xc.setVcpuContext(domid, 0, ctx);
    xc.unpauseDomain(domid);
    sim.runSlice();
    assert.deepEqual([kept, dropped], [2, 1]);
    g.close();
  });
});

describe('sim data breakpoints (DR7 R/W 01 and 11)', () => {
  /** DR7 with slot `n` locally enabled as a data breakpoint: R/W (1 write, 3 read/write) and LEN (1, 2, 4, 8). */
  function dr7For(n: number, rw: 1 | 3, len: 1 | 2 | 4 | 8): bigint {
    const lenBits = { 1: 0n, 2: 1n, 8: 2n, 4: 3n }[len];
    return 0x400n | (1n << BigInt(2 * n)) | (BigInt(rw) << BigInt(16 + 4 * n)) | (lenBits << BigInt(18 + 4 * n));
  }

  for (const width of [64, 32] as const) {
    const layout = width === 64 ? CTX64 : CTX32;
    const word = width === 64 ? 8 : 4;

    it(`${width}-bit PV: a write to a watched word traps after the write, on the VCPU that wrote it, DR6.B2 set`, async () => {
      const g = startGuest({ vcpus: 2, width });
      const { xc, sim, domid } = g;
      const tick1 = g.sym('demo_ticks') + BigInt(word); // demo_ticks[1]: only VCPU 1 writes it
      xc.pauseDomain(domid);
      xc.setDebugging(domid, true);
      for (const v of [0, 1]) {
        const ctx = xc.getVcpuContext(domid, v);
        writeField(ctx, layout, 'dr2', tick1);
        writeField(ctx, layout, 'dr7', dr7For(2, 1, word));
        xc.setVcpuContext(domid, v, ctx);
      }
      const before = g.peek(tick1, word);
      const trap = nextEvent(sim, (e) => e.type === 'trap');
      xc.unpauseDomain(domid);
      const ev = await trap;
      assert.ok(ev.type === 'trap');
      assert.equal(ev.kind, 'watch');
      assert.equal(ev.vcpu, 1);
      assert.equal(xc.getDomainInfo(domid).paused, true);
      assert.equal(g.peek(tick1, word), before + 1n, 'a trap: the write is done');
      const r = sim.registers(domid, 1);
      assert.equal(r.dr6 & 0xfn, 4n);
      // rip is after the write: the next instruction of demo_tick, not the write itself.
      const tick = g.sym('demo_tick');
      assert.ok(r.rip > tick && r.rip < tick + 32n, `rip 0x${r.rip.toString(16)}`);
      assert.equal(sim.registers(domid, 0).dr6 & 0xfn, 0n);
      assert.equal(sim.domainState(domid).crashReason, undefined);
      g.close();
    });
  }

  it('R/W 11 traps on a read (the banner, which only demo_rare reads); R/W 01 never does', () => {
    const g = startGuest({ vcpus: 1, sim: { autoRun: false } });
    const { xc, sim, domid } = g;
    const banner = g.sym('demo_banner');
    xc.pauseDomain(domid);
    xc.setDebugging(domid, true);
    const set = (dr7: bigint) => {
      const ctx = xc.getVcpuContext(domid, 0);
      writeField(ctx, CTX64, 'dr0', banner);
      writeField(ctx, CTX64, 'dr7', dr7);
      xc.setVcpuContext(domid, 0, ctx);
    };
    let traps = 0;
    sim.onStateChange((e) => { if (e.type === 'trap' && e.kind === 'watch') traps++; });
    set(dr7For(0, 1, 1));
    xc.unpauseDomain(domid);
    for (let i = 0; i < 60 && !xc.getDomainInfo(domid).paused; i++) sim.runSlice();
    assert.equal(traps, 0, 'nothing writes the banner');
    assert.ok(g.peek(g.sym('demo_rare_count'), 8) > 0n, 'demo_rare ran (it reads the banner)');
    xc.pauseDomain(domid);
    set(dr7For(0, 3, 1));
    xc.unpauseDomain(domid);
    for (let i = 0; i < 60 && !xc.getDomainInfo(domid).paused; i++) sim.runSlice();
    assert.equal(traps, 1);
    assert.equal(sim.registers(domid, 0).dr6 & 0xfn, 1n);
    g.close();
  });

  it('the hardware ignores address bits below LEN: DR0 = word + 1 with LEN 8 watches the word', async () => {
    const g = startGuest({ vcpus: 1 });
    const { xc, sim, domid } = g;
    const counter = g.sym('demo_counter');
    xc.pauseDomain(domid);
    xc.setDebugging(domid, true);
    const ctx = xc.getVcpuContext(domid, 0);
    writeField(ctx, CTX64, 'dr1', counter + 1n);
    writeField(ctx, CTX64, 'dr7', dr7For(1, 1, 8));
    xc.setVcpuContext(domid, 0, ctx);
    const trap = nextEvent(sim, (e) => e.type === 'trap');
    xc.unpauseDomain(domid);
    const ev = await trap;
    assert.equal(ev.type === 'trap' && ev.kind, 'watch');
    assert.equal(sim.registers(domid, 0).dr6 & 0xfn, 2n);
    g.close();
  });

  it('a data breakpoint left behind with no debugger crashes the guest (#DB)', async () => {
    const g = startGuest({ vcpus: 1 });
    const { xc, sim, domid } = g;
    xc.pauseDomain(domid);
    const ctx = xc.getVcpuContext(domid, 0);
    writeField(ctx, CTX64, 'dr0', g.sym('demo_counter'));
    writeField(ctx, CTX64, 'dr7', dr7For(0, 1, 8));
    xc.setVcpuContext(domid, 0, ctx);
    const down = nextEvent(sim, (e) => e.type === 'shutdown');
    xc.unpauseDomain(domid);
    await down;
    assert.match(sim.domainState(domid).crashReason ?? '', /#DB: data breakpoint/);
    g.close();
  });
});
