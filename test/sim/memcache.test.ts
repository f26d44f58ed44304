// The stub's line cache for small reads while the guest is stopped: fewer hypercalls,
// and never a stale byte after a write, a run, or a register change.
import assert from 'assert';
import { Guest } from '../../src/vcpu/guest';
import { DomctlCmd } from '../../src/xg/domctl';
import { attachWatched, sleep, TestGuest, WatchedHypercalls } from './helpers';

describe('memory line cache (guest stopped)', () => {
  let t: TestGuest;
  let hc: WatchedHypercalls;
  let g: Guest;
  beforeEach(() => {
    ({ t, hc, g } = attachWatched('gdbsx'));
  });
  afterEach(() => {
    g.detach();
    t.close();
  });

  it('serves repeated small reads of a line with one hypercall, with the right bytes', () => {
    const a = t.sym('demo_tick');
    const want = t.sim.readVirt(t.domid, a, 16);
    hc.domctls.clear();
    for (let i = 0; i < 4; i++) assert.deepStrictEqual(g.readMemory(a, 1, 0), want.subarray(0, 1));
    assert.deepStrictEqual(g.readMemory(a + 1n, 8, 0), want.subarray(1, 9));
    const memio = hc.domctls.get(DomctlCmd.gdbsx_guestmemio) ?? 0;
    assert.ok(memio <= 2, `${memio} hypercalls for five reads within two lines`);
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
