// A breakpoint hit between our unpause and our next look at the domain, with Xen's CPU
// time not showing that the VCPU ran (coarse, and not even monotonic, under nested
// virtualization in the lab). The stub must not take that pause for someone else's and
// undo it: the VCPU would run on from after the int3 (the lab's PV guest died with #UD
// at ktime_get+1). Reproduced here by running the guest inside unpausedomain and
// reporting a frozen CPU time.
import assert from 'assert';
import { Guest } from '../../src/vcpu/guest';
import { XenControl } from '../../src/xg/xenctl';
import { DomctlCmd, Off } from '../../src/xg/domctl';
import { DomctlData, Hypercalls, forwardBeyondDomctl } from '../../src/xg/hypercalls';
import { startGuest, TestGuest } from './helpers';

function racing(t: TestGuest): Hypercalls {
  const inner = t.sim;
  return {
    kind: inner.kind,
    domctl(op: Buffer, data?: DomctlData): number {
      const cmd = op.readUInt32LE(Off.cmd);
      // The guest runs while the stub is between two hypercalls, not on the event loop.
      if (cmd === DomctlCmd.getdomaininfo) t.sim.runSlice();
      const r = inner.domctl(op, data);
      if (cmd === DomctlCmd.unpausedomain) t.sim.runSlice();
      if (cmd === DomctlCmd.getdomaininfo) op.writeBigUInt64LE(1000000n, Off.infoCpuTime); // a clock that never moves
      return r;
    },
    xenVersion: inner.xenVersion.bind(inner),
    ...forwardBeyondDomctl(inner),
    close: () => inner.close(),
  };
}

describe('a trap that Xen\'s CPU time does not show', function () {
  this.timeout(20000);
  let t: TestGuest;
  afterEach(() => t?.close());

  for (const what of ['breakpoint', 'step'] as const) {
    it(`is not undone: a ${what} stops exactly where it should, every time`, async () => {
      t = startGuest({ vcpus: 1, sim: { autoRun: false, sliceInstructions: 200 } });
      const traps: string[] = [];
      t.sim.onStateChange((e) => { if (e.type === 'trap') traps.push(e.kind); });
      const g = Guest.attach(new XenControl(racing(t)), t.domid, { width: 64 });
      try {
        const bp = t.sym('demo_tick');
        if (what === 'breakpoint') g.insertBreakpoint(bp, 0);
        for (let i = 0; i < 20; i++) {
          traps.length = 0;
          if (what === 'breakpoint') {
            const ev = await g.resume({ cont: new Set([0]) });
            assert.strictEqual(ev.kind, 'stopped');
            assert.strictEqual(g.pc(0), bp, `round ${i}: stopped at 0x${g.pc(0).toString(16)}, not on the breakpoint`);
            assert.deepStrictEqual(traps, ['int3'], `round ${i}: the VCPU went on past the int3`);
          } else {
            const from = g.pc(0);
            const ev = await g.resume({ step: 0, cont: new Set() });
            assert.strictEqual(ev.kind, 'stopped');
            assert.deepStrictEqual(traps, ['step'], `round ${i}: from 0x${from.toString(16)}, ${traps.length} traps`);
          }
        }
      } finally {
        g.detach();
      }
    });
  }
});
