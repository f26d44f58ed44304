// An idle demo guest halts as on hardware: each VCPU does a little work at each tick of
// the guest's periodic timer, then sleeps in hlt until the next one, and the simulated
// Xen's run loop sleeps with it. So `gdbsx --sim` left alone costs next to nothing.
import { strict as assert } from 'assert';
import { execFileSync } from 'child_process';
import fs from 'fs';
import { sleep, startGuest, TestGuest, waitFor } from './helpers';
import { serveStub } from '../support/stubProcess';

const HLT = 0xf4;
const STI = 0xfb;
const CLI = 0xfa;

/** utime + stime of a process, in seconds (/proc/PID/stat fields 14 and 15). */
function cpuSeconds(pid: number, clkTck: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) is in parentheses and may hold spaces: count from after it.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / clkTck;
}

function counter(g: TestGuest, width: 32 | 64): bigint {
  return g.peek(g.sym('demo_counter'), width === 64 ? 8 : 4);
}

function ticksOf(g: TestGuest, width: 32 | 64, vcpu: number): bigint {
  const size = width === 64 ? 8 : 4;
  return g.peek(g.sym('demo_ticks') + BigInt(vcpu * size), size);
}

describe('sim: an idle demo guest halts until the timer', function () {
  this.timeout(30000);

  it('`gdbsx --sim` with no gdb attached uses a small fraction of one core', async function () {
    if (!fs.existsSync('/proc/self/stat')) this.skip();
    const clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    const stub = await serveStub(['--sim', '--port', '0']);
    try {
      const pid = stub.proc.pid ?? 0;
      await sleep(500); // past start-up (module loading, the JIT)
      const cpu0 = cpuSeconds(pid, clkTck);
      const t0 = process.hrtime.bigint();
      await sleep(2000);
      const cpu = cpuSeconds(pid, clkTck) - cpu0;
      const wall = Number(process.hrtime.bigint() - t0) / 1e9;
      const share = cpu / wall;
      // A guest run flat out takes a whole core (~100%); halted between 100 Hz ticks, a few per cent.
      assert.ok(share < 0.2, `gdbsx --sim used ${(share * 100).toFixed(0)}% of a core over ${wall.toFixed(1)} s with no gdb attached`);
    } finally {
      await stub.stop();
    }
  });

  for (const [width, type] of [[64, 'pv'], [32, 'pv'], [64, 'pvh']] as const) {
    it(`${width}-bit ${type}: the VCPUs sleep after a hlt between ticks, and the timer wakes them to work on`, async () => {
      const g = startGuest({ width, type, vcpus: 2 });
      try {
        const st = () => g.sim.domainState(g.domid);
        await waitFor(() => st().halts.every((n) => n >= 3) && st().timerWakeups.every((n) => n >= 2), 'the VCPUs to halt and be woken a few times');
        // Seen asleep: every VCPU halted, its pc just after the hlt of demo_idle, the domain "blocked".
        await waitFor(() => st().halted.every(Boolean), 'every VCPU asleep');
        g.xc.pauseDomain(g.domid);
        const s = st();
        assert.ok(s.halted.every(Boolean), 'a pause does not wake a halted VCPU');
        for (let v = 0; v < 2; v++) {
          const rip = g.sim.registers(g.domid, v).rip;
          assert.equal(g.sim.readVirt(g.domid, rip - 1n, 1)[0], HLT, `VCPU ${v} pc 0x${rip.toString(16)} is right after a hlt`);
          assert.equal(rip, g.sym('demo_idle') + 2n, `VCPU ${v} sleeps in demo_idle`);
        }
        assert.equal(g.xc.getDomainInfo(g.domid).blocked, true);
        // While paused, nothing runs and nobody wakes.
        const c0 = counter(g, width);
        await sleep(50);
        assert.deepEqual(st().timerWakeups, s.timerWakeups);
        assert.equal(counter(g, width), c0);
        g.xc.unpauseDomain(g.domid);
        // Woken by the timer, the demo's periodic work goes on, on every VCPU.
        const t0 = [0, 1].map((v) => ticksOf(g, width, v));
        await waitFor(() => counter(g, width) >= c0 + 16n && [0, 1].every((v) => ticksOf(g, width, v) >= t0[v] + 8n), 'the demo\'s work to go on');
        const e = st();
        for (let v = 0; v < 2; v++) {
          assert.ok(e.timerWakeups[v] >= s.timerWakeups[v] + 2, `VCPU ${v} woken by the timer`);
          assert.ok(e.halts[v] >= s.halts[v] + 2, `VCPU ${v} halted again`);
        }
      } finally {
        g.close();
      }
    });
  }

  it('without autoRun each runSlice() is one tick: one tick\'s work, then hlt; `cli; hlt` sleeps for good', () => {
    const g = startGuest({ vcpus: 2, sim: { autoRun: false } });
    const st = () => g.sim.domainState(g.domid);
    g.sim.runSlice();
    assert.deepEqual(st().halted, [true, true]);
    assert.deepEqual(st().halts, [1, 1]);
    for (let n = 1; n <= 3; n++) {
      const before = [0, 1].map((v) => ticksOf(g, 64, v));
      g.sim.runSlice();
      assert.deepEqual(st().timerWakeups, [n, n]);
      assert.deepEqual(st().halts, [n + 1, n + 1]);
      assert.deepEqual(st().halted, [true, true]);
      for (let v = 0; v < 2; v++) assert.ok(ticksOf(g, 64, v) > before[v], `tick ${n}: VCPU ${v} worked`);
    }
    // With its interrupts (PV: event channel upcalls) masked, a halted VCPU is not woken.
    const idle = g.sym('demo_idle');
    assert.equal(g.sim.readVirt(g.domid, idle, 1)[0], STI);
    g.sim.writeVirt(g.domid, idle, Buffer.from([CLI]));
    g.sim.runSlice(); // wakes them; they work and halt with events masked
    const asleep = st();
    const c = counter(g, 64);
    for (let n = 0; n < 3; n++) g.sim.runSlice();
    assert.deepEqual(st().timerWakeups, asleep.timerWakeups);
    assert.deepEqual(st().instructions, asleep.instructions);
    assert.equal(counter(g, 64), c);
    g.close();
  });
});
