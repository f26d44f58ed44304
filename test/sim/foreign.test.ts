// Foreign mappings (privcmd MMAPBATCH_V2) and getpageframeinfo3 on the simulated Xen:
// live reads and writes, Xen's per-frame errors, PV page tables only read-only, the
// page types by level, and the leak counter the stub's tests rely on.
import { strict as assert } from 'assert';
import { DomctlCmd, Off, PageType, newDomctl } from '../../src/xg/domctl';
import { Errno } from '../../src/xg/errors';
import { PFINFO_LPINTAB } from '../../src/xg/sim/loader';
import { TestGuest, errnoOf, guestRam, startGuest, walkVa } from './helpers';

const BANNER = 'Xen gdbsx demo guest: hello from the simulated hypervisor';
const XTAB = PageType.xtab >>> 0;
const PINNED = (t: number) => (t | PFINFO_LPINTAB) >>> 0;

/** Guest-physical address of a kernel symbol, through the loader's tables. */
function physOf(g: TestGuest, name: string, width: 32 | 64): number {
  const pa = walkVa(guestRam(g.sim, g.domid), BigInt(g.sim.layout(g.domid).cr3), g.sym(name), width);
  assert.ok(pa >= 0, `${name} is mapped`);
  return pa;
}

function ramFrames(g: TestGuest): number {
  return Number(g.xc.getDomainInfo(g.domid).totPages);
}

/** The tables from the root down to `va`'s L1, top first (4-level or PAE). */
function tableChain(g: TestGuest, va: bigint, width: 32 | 64): number[] {
  const ram = guestRam(g.sim, g.domid);
  const entry = (table: number, i: number) => Number(ram.readBigUInt64LE(table + i * 8) & 0xffffffffff000n);
  const root = g.sim.layout(g.domid).cr3;
  const shifts = width === 64 ? [39n, 30n, 21n] : [30n, 21n];
  const chain = [root];
  for (const s of shifts) chain.push(entry(chain[chain.length - 1], Number((va >> s) & (s === 30n && width === 32 ? 3n : 0x1ffn))));
  return chain.map((t) => t / 4096);
}

const kinds = [
  { width: 64, type: 'pv' },
  { width: 32, type: 'pv' },
  { width: 64, type: 'pvh' },
] as const;

describe('sim foreign mappings', () => {
  for (const { width, type } of kinds) {
    it(`${width}-bit ${type}: a mapping is live both ways, across frames`, () => {
      const g = startGuest({ width, type, sim: { autoRun: false } });
      const { sim, domid } = g;
      const pa = physOf(g, 'demo_banner', width);
      const frame = Math.floor(pa / 4096);
      const off = pa % 4096;
      const m = sim.mapForeign(domid, [BigInt(frame), BigInt(frame + 1)], true);
      assert.deepEqual(m.errors, [0, 0]);
      assert.equal(m.frames, 2);
      assert.equal(sim.liveMappings(domid), 1);
      const got = Buffer.alloc(BANNER.length);
      m.read(off, got);
      assert.equal(got.toString('latin1'), BANNER);
      // The guest's (or anyone's) later writes show through...
      sim.writePhys(domid, pa, Buffer.from('HELLO'));
      m.read(off, got);
      assert.equal(got.subarray(0, 5).toString(), 'HELLO');
      // ...and ours land in guest memory, where the guest's own mappings see them.
      m.write(off, Buffer.from('Howdy'));
      assert.equal(sim.readVirt(domid, g.sym('demo_banner'), 5).toString(), 'Howdy');
      // One access across the two frames.
      const across = Buffer.from('0123456789abcdef');
      sim.writePhys(domid, frame * 4096 + 4088, across);
      const back = Buffer.alloc(16);
      m.read(4088, back);
      assert.deepEqual(back, across);
      m.unmap();
      assert.equal(sim.liveMappings(domid), 0);
      g.close();
    });
  }

  it('per-frame errors: frames outside RAM are EINVAL, access over them EFAULT, the others work', () => {
    const g = startGuest({ sim: { autoRun: false } });
    const { sim, domid } = g;
    const n = ramFrames(g);
    const m = sim.mapForeign(domid, [0n, BigInt(n), 1n << 40n, BigInt(n - 1)], false);
    assert.deepEqual(m.errors, [0, Errno.EINVAL, Errno.EINVAL, 0]);
    m.read(0, Buffer.alloc(4096));
    m.read(3 * 4096, Buffer.alloc(4096));
    assert.equal(errnoOf(() => m.read(4096, Buffer.alloc(1))), Errno.EFAULT);
    // Nothing is copied from a span that reaches a failed frame.
    const b = Buffer.alloc(16, 0xee);
    assert.equal(errnoOf(() => m.read(4096 - 8, b)), Errno.EFAULT);
    assert.deepEqual(b, Buffer.alloc(16, 0xee));
    m.unmap();
    g.close();
  });

  for (const width of [64, 32] as const) {
    it(`${width}-bit PV: page-table frames map read-only only (writable: EBUSY per frame)`, () => {
      const g = startGuest({ width, sim: { autoRun: false } });
      const { sim, domid } = g;
      const root = sim.layout(domid).cr3 / 4096;
      const plain = Math.floor(physOf(g, 'demo_banner', width) / 4096);
      const ro = sim.mapForeign(domid, [BigInt(root), BigInt(plain)], false);
      assert.deepEqual(ro.errors, [0, 0]);
      const t = Buffer.alloc(4096);
      ro.read(0, t);
      assert.deepEqual(t, sim.readPhys(domid, root * 4096, 4096));
      const rw = sim.mapForeign(domid, [BigInt(root), BigInt(plain)], true);
      assert.deepEqual(rw.errors, [Errno.EBUSY, 0]);
      assert.equal(errnoOf(() => rw.write(0, Buffer.alloc(8))), Errno.EFAULT);
      rw.write(4096, Buffer.from('ok'));
      assert.equal(sim.readPhys(domid, plain * 4096, 2).toString(), 'ok');
      assert.equal(sim.liveMappings(domid), 2);
      ro.unmap();
      rw.unmap();
      assert.equal(sim.liveMappings(domid), 0);
      g.close();
    });
  }

  it('PVH: HVM memory has no page types, the tables map writable', () => {
    const g = startGuest({ type: 'pvh', sim: { autoRun: false } });
    const m = g.sim.mapForeign(g.domid, [BigInt(g.sim.layout(g.domid).cr3 / 4096)], true);
    assert.deepEqual(m.errors, [0]);
    m.unmap();
    g.close();
  });

  it('read-only mappings refuse writes (EACCES); after unmap everything is EFAULT; unmap is idempotent', () => {
    const g = startGuest({ sim: { autoRun: false } });
    const { sim, domid } = g;
    const m = sim.mapForeign(domid, [0x1000n], false);
    assert.equal(m.writable, false);
    assert.equal(errnoOf(() => m.write(0, Buffer.alloc(1))), Errno.EACCES);
    assert.equal(errnoOf(() => m.read(4095, Buffer.alloc(2))), Errno.EFAULT); // past the end
    assert.equal(errnoOf(() => m.read(-1, Buffer.alloc(1))), Errno.EFAULT);
    m.unmap();
    m.unmap();
    assert.equal(errnoOf(() => m.read(0, Buffer.alloc(1))), Errno.EFAULT);
    assert.equal(errnoOf(() => m.write(0, Buffer.alloc(1))), Errno.EFAULT);
    assert.equal(sim.liveMappings(domid), 0);
    g.close();
  });

  it('ESRCH for a missing or dying domain, EINVAL for no frames; counts are per domain', () => {
    const g = startGuest({ sim: { autoRun: false } });
    const { sim, domid } = g;
    assert.equal(errnoOf(() => sim.mapForeign(99, [0n], false)), Errno.ESRCH);
    assert.equal(errnoOf(() => sim.mapForeign(domid, [], false)), Errno.EINVAL);
    const other = sim.createDomain({ vcpus: 1, width: 64, paused: true });
    const a = sim.mapForeign(domid, [0n], false);
    const b = sim.mapForeign(other, [0n], false);
    const c = sim.mapForeign(other, [1n], false);
    assert.equal(sim.liveMappings(domid), 1);
    assert.equal(sim.liveMappings(other), 2);
    assert.equal(sim.liveMappings(), 3);
    // A mapping holds its pages: it outlives the domain, as Xen's page references do.
    sim.destroyDomain(other, { zombie: true });
    assert.equal(errnoOf(() => sim.mapForeign(other, [0n], false)), Errno.ESRCH);
    b.read(0, Buffer.alloc(8));
    for (const m of [a, b, c]) m.unmap();
    assert.equal(sim.liveMappings(), 0);
    g.close();
  });
});

describe('sim getpageframeinfo3', () => {
  for (const width of [64, 32] as const) {
    it(`${width}-bit PV: the loader's tables by level (root pinned), 0 for RAM, XTAB outside it`, () => {
      const g = startGuest({ width, sim: { autoRun: false } });
      const chain = tableChain(g, g.sym('demo_banner'), width);
      const plain = Math.floor(physOf(g, 'demo_banner', width) / 4096);
      const n = ramFrames(g);
      const types = g.xc.getPageFrameInfo(g.domid, [...chain, plain, n - 1, n, 1n << 40n].map((f) => BigInt(f)));
      const levels = width === 64 ? [PINNED(PageType.l4), PageType.l3, PageType.l2, PageType.l1] : [PINNED(PageType.l3), PageType.l2, PageType.l1];
      assert.deepEqual(types, [...levels, 0, 0, XTAB, XTAB]);
      // The level without the pin bit, as libxc reads it (XEN_DOMCTL_PFINFO_LTABTYPE_MASK).
      assert.equal(types[0] & 0x70000000, width === 64 ? PageType.l4 : PageType.l3);
      g.close();
    });
  }

  it('PVH: every RAM frame is 0 (no PV types), holes XTAB', () => {
    const g = startGuest({ type: 'pvh', sim: { autoRun: false } });
    const chain = tableChain(g, g.sym('demo_banner'), 64);
    const n = ramFrames(g);
    assert.deepEqual(g.xc.getPageFrameInfo(g.domid, [...chain, n].map((f) => BigInt(f))), [0, 0, 0, 0, XTAB]);
    g.close();
  });

  it('E2BIG above 1024 frames; a short array faults after the entries that fit', () => {
    const g = startGuest({ sim: { autoRun: false } });
    const { sim, domid } = g;
    assert.equal(errnoOf(() => g.xc.getPageFrameInfo(domid, Array.from({ length: 1025 }, () => 0n))), Errno.E2BIG);
    assert.equal(g.xc.getPageFrameInfo(domid, Array.from({ length: 1024 }, () => 0n)).length, 1024);
    const op = newDomctl(DomctlCmd.getpageframeinfo3, 0x15, domid);
    op.writeBigUInt64LE(3n, Off.pfiNum);
    const arr = Buffer.alloc(16);
    arr.writeBigUInt64LE(BigInt(ramFrames(g)), 0);
    arr.writeBigUInt64LE(BigInt(sim.layout(domid).cr3 / 4096), 8);
    assert.equal(errnoOf(() => sim.domctl(op, { buf: arr, handleOffset: Off.pfiHandle })), Errno.EFAULT);
    assert.equal(arr.readBigUInt64LE(0), BigInt(XTAB));
    assert.equal(arr.readBigUInt64LE(8), BigInt(PINNED(PageType.l4)));
    g.close();
  });
});
