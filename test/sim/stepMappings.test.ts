// The page walk's read-only mappings stay across a single step (mapping frames again
// after every stop is most of a step's cost in an emulated dom0), and never when they
// could go stale: a continue, a step of an instruction that enters the hypervisor, or
// a step during which the guest's tot_pages moved.
import assert from 'assert';
import { Guest } from '../../src/vcpu/guest';
import { DomctlCmd } from '../../src/xg/domctl';
import { mayEnterHypervisor } from '../../src/vcpu/hypercallGate';
import { attachWatched, sleep, TestGuest, WatchedHypercalls } from './helpers';

describe('page walk mappings across a single step', () => {
  let t: TestGuest;
  let hc: WatchedHypercalls;
  let g: Guest;
  beforeEach(() => {
    ({ t, hc, g } = attachWatched('pagewalk'));
  });
  afterEach(() => {
    g.detach();
    assert.strictEqual(t.sim.liveMappings(t.domid), 0, 'mappings left after detach');
    t.close();
  });

  /** Step VCPU 0 once, the other held; the bytes at demo_counter and at pc read after it. */
  async function stepAndRead(): Promise<{ counter: bigint; code: Buffer }> {
    const ev = await g.resume({ step: 0, cont: new Set() });
    assert.strictEqual(ev.kind, 'stopped');
    const counter = g.readMemory(t.sym('demo_counter'), 8, 0).readBigUInt64LE();
    const code = g.readMemory(g.pc(0), 8, 0);
    return { counter, code };
  }

  it('maps nothing again after a step, and reads memory as the step left it', async () => {
    await stepAndRead();
    const before = hc.maps;
    for (let i = 0; i < 40; i++) {
      const r = await stepAndRead();
      assert.strictEqual(r.counter, t.peek(t.sym('demo_counter'), 8), `step ${i}: demo_counter`);
      assert.deepStrictEqual(r.code, t.sim.readVirt(t.domid, g.pc(0), 8), `step ${i}: code at pc`);
    }
    assert.strictEqual(hc.maps, before, `${hc.maps - before} mapping calls in 40 steps`);
    assert.ok(t.sim.liveMappings(t.domid) > 0);
  });

  /** Runs `fn` with `atUnpause` called each time the guest is let run. */
  async function whileLetRun<T>(atUnpause: () => void, fn: () => Promise<T>): Promise<T> {
    hc.afterDomctl = (cmd) => { if (cmd === DomctlCmd.unpausedomain) atUnpause(); };
    try {
      return await fn();
    } finally {
      hc.afterDomctl = undefined;
    }
  }

  /** Our mappings of the guest at the (last) unpause of `fn`'s resume. */
  async function mappingsWhileRunning(fn: () => Promise<unknown>): Promise<number> {
    let n = -1;
    await whileLetRun(() => { n = t.sim.liveMappings(t.domid); }, fn);
    return n;
  }

  it('drops them all for a continue', async () => {
    await stepAndRead();
    const n = await mappingsWhileRunning(async () => {
      const run = g.resume({ cont: new Set(g.vcpus()) });
      await sleep(50);
      g.interrupt();
      await run;
    });
    assert.strictEqual(n, 0, 'mappings held while the guest ran');
  });

  it('drops them when tot_pages moves during the step', async () => {
    await stepAndRead();
    const gfn = Number(t.xc.getDomainInfo(t.domid).totPages) - 1; // the last page of RAM: nothing the demo uses
    const before = hc.maps;
    const r = await whileLetRun(() => assert.strictEqual(t.xc.reservation(t.domid, 'decrease', [BigInt(gfn)]), 1), stepAndRead);
    assert.ok(hc.maps > before, 'the kept mappings were used after the guest ballooned');
    assert.strictEqual(r.counter, t.peek(t.sym('demo_counter'), 8));
    // The next step, with tot_pages steady again, keeps them.
    await stepAndRead();
    const after = hc.maps;
    await stepAndRead();
    assert.strictEqual(hc.maps, after);
  });

  /** Whether the mappings stay across a step of a syscall at pc (under one of our int3s if `underInt3`). */
  async function mappingsAcrossSyscall(underInt3: boolean): Promise<number> {
    await stepAndRead();
    // A syscall: a 64-bit PV guest's way into its hypercall page.
    const pc = g.pc(0);
    const saved = g.readMemory(pc, 2, 0);
    g.writeMemory(pc, Buffer.from([0x0f, 0x05]), 0);
    if (underInt3) g.insertBreakpoint(pc, 0);
    try {
      return await mappingsWhileRunning(() => g.resume({ step: 0, cont: new Set() }));
    } finally {
      if (underInt3) g.removeBreakpoint(pc);
      g.writeMemory(pc, saved, 0);
    }
  }

  it('drops them when the step is of an instruction that enters the hypervisor', async () => {
    assert.strictEqual(await mappingsAcrossSyscall(false), 0, 'mappings held across a step of syscall');
  });

  it('reads the instruction as the guest has it: our int3 over a syscall does not hide it', async () => {
    assert.strictEqual(await mappingsAcrossSyscall(true), 0, 'mappings held across a step of syscall under our int3');
  });
});

describe('mayEnterHypervisor', () => {
  const yes = ['0f01c1', '0f01d9', '0f05', '0f34', 'cd82', 'cd80', 'ce', 'f1', '480f05', '66670f01c1', '0f', '0f01', ''];
  const no = ['90', 'cc', '0f01d0', '0f1f00', 'e8000000', '48ffc0', 'c3', '0f0b'];
  for (const h of yes) it(`yes: ${h || '(no bytes)'}`, () => assert.strictEqual(mayEnterHypervisor(Buffer.from(h, 'hex'), 64), true));
  for (const h of no) it(`no: ${h}`, () => assert.strictEqual(mayEnterHypervisor(Buffer.from(h, 'hex'), 64), false));
  it('REX is an opcode (inc/dec) in 32-bit code, not a prefix', () => assert.strictEqual(mayEnterHypervisor(Buffer.from('400f05', 'hex'), 32), false));
});
