// The stub's line cache for small reads while the guest is stopped: fewer hypercalls,
// and never a stale byte after a write, a run, or a register change.
import assert from 'assert';
import { Guest } from '../../src/vcpu/guest';
import { XenControl } from '../../src/xg/xenctl';
import { DomctlCmd, Off } from '../../src/xg/domctl';
import { DomctlData, Hypercalls, forwardBeyondDomctl } from '../../src/xg/hypercalls';
import { sleep, startGuest, TestGuest } from './helpers';

/** Counts gdbsx_guestmemio calls on their way to the simulated Xen. */
function counting(inner: Hypercalls): Hypercalls & { memio: number } {
  const h = {
    kind: inner.kind,
    memio: 0,
    domctl(op: Buffer, data?: DomctlData): number {
      if (op.readUInt32LE(Off.cmd) === DomctlCmd.gdbsx_guestmemio) h.memio++;
      return inner.domctl(op, data);
    },
    xenVersion: inner.xenVersion.bind(inner),
    ...forwardBeyondDomctl(inner),
    close: () => inner.close(),
  };
  return h;
}

describe('memory line cache (guest stopped)', () => {
  let t: TestGuest;
  let hc: ReturnType<typeof counting>;
  let g: Guest;
  beforeEach(() => {
    t = startGuest({ vcpus: 2 });
    hc = counting(t.sim);
    g = Guest.attach(new XenControl(hc), t.domid, { width: 64, memory: 'gdbsx' });
  });
  afterEach(() => {
    g.detach();
    t.close();
  });

  it('serves repeated small reads of a line with one hypercall, with the right bytes', () => {
    const a = t.sym('demo_tick');
    const want = t.sim.readVirt(t.domid, a, 16);
    hc.memio = 0;
    for (let i = 0; i < 4; i++) assert.deepStrictEqual(g.readMemory(a, 1, 0), want.subarray(0, 1));
    assert.deepStrictEqual(g.readMemory(a + 1n, 8, 0), want.subarray(1, 9));
    assert.ok(hc.memio <= 2, `${hc.memio} hypercalls for five reads within two lines`);
  });

  it('shows a write at once, also one that goes through a read of the same line', () => {
    const a = t.sym('demo_counter');
    g.readMemory(a, 8, 0);
    g.writeMemory(a, Buffer.from('0102030405060708', 'hex'), 0);
    assert.strictEqual(g.readMemory(a, 8, 0).toString('hex'), '0102030405060708');
    g.writeMemory(a + 2n, Buffer.from([0xee]), 0);
    assert.strictEqual(g.readMemory(a, 8, 0).toString('hex'), '0102ee0405060708');
  });

  it('reads again after the guest ran', async () => {
    const a = t.sym('demo_counter');
    const before = g.readMemory(a, 8, 0).readBigUInt64LE();
    const run = g.resume({ cont: new Set(g.vcpus()) });
    await sleep(100);
    g.interrupt();
    await run;
    const after = g.readMemory(a, 8, 0).readBigUInt64LE();
    assert.ok(after > before, `counter ${before} -> ${after}: a cached value was returned`);
    assert.strictEqual(after, t.peek(a, 8));
  });

  it('forgets lines after a while, so memory changed under a stopped guest shows', async () => {
    const a = t.sym('demo_counter');
    g.readMemory(a, 8, 0);
    t.sim.writeVirt(t.domid, a, Buffer.from('1122334455667788', 'hex'));
    await sleep(600);
    assert.strictEqual(g.readMemory(a, 8, 0).toString('hex'), '1122334455667788');
  });
});
