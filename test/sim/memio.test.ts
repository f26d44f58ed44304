// XEN_DOMCTL_gdbsx_guestmemio: the walk from VCPU0's cr3 (4-level and PAE), reads and
// writes, the partial failure at an unmapped page, pgd3val, and Xen's PV/HVM differences.
import { strict as assert } from 'assert';
import { DomctlCmd, Off, newDomctl } from '../../src/xg/domctl';
import { Errno } from '../../src/xg/errors';
import { SimXen } from '../../src/xg/sim';
import { XenControl } from '../../src/xg/xenctl';
import { startGuest, errnoOf } from './helpers';

const BANNER = 'Xen gdbsx demo guest: hello from the simulated hypervisor';

/** A raw memio domctl, so that the struct's copy-back can be seen. */
function rawMemio(sim: SimXen, domid: number, gva: bigint, buf: Buffer, write = false, pgd3val = 0n): { errno: number; op: Buffer } {
  const op = newDomctl(DomctlCmd.gdbsx_guestmemio, 0x15, domid);
  op.writeBigUInt64LE(pgd3val, Off.memPgd3val);
  op.writeBigUInt64LE(gva, Off.memGva);
  op.writeUInt32LE(buf.length, Off.memLen);
  op.writeUInt8(write ? 1 : 0, Off.memGwr);
  op.writeUInt32LE(0xdeadbeef, Off.memRemain);
  return { errno: errnoOf(() => sim.domctl(op, { buf, handleOffset: Off.memUva })), op };
}

for (const width of [64, 32] as const) {
  describe(`sim gdbsx memio, ${width}-bit PV guest`, () => {
    it('reads the banner through the kernel mapping and through the direct map', () => {
      const g = startGuest({ width, sim: { autoRun: false } });
      const banner = Buffer.alloc(BANNER.length + 1);
      g.xc.guestMemIo(g.domid, g.sym('demo_banner'), banner, false);
      assert.equal(banner.toString('latin1'), BANNER + '\0');
      // Same bytes at direct map + physical address (the image is at 16 MiB physical).
      const phys = g.sym('demo_banner') - (width === 64 ? 0xffffffff81000000n : 0xc1000000n) + 0x1000000n;
      const viaDirect = Buffer.alloc(banner.length);
      g.xc.guestMemIo(g.domid, g.sim.layout(g.domid).directMap + phys, viaDirect, false);
      assert.deepEqual(viaDirect, banner);
      g.close();
    });

    it('writes land in guest memory', () => {
      const g = startGuest({ width, sim: { autoRun: false } });
      const bytes = width === 64 ? 8 : 4;
      const v = Buffer.alloc(bytes);
      v.writeUInt32LE(0xc0ffee);
      g.xc.guestMemIo(g.domid, g.sym('demo_counter'), v, true);
      assert.equal(g.peek(g.sym('demo_counter'), bytes), 0xc0ffeen);
      g.close();
    });

    it('stops at the first unmapped page after the image\'s mapping: prefix done, EFAULT, no copy-back', () => {
      const g = startGuest({ width, sim: { autoRun: false } });
      const { imageEnd, mappedEnd: end, directMap } = g.sim.layout(g.domid);
      assert.equal(imageEnd, g.sym('_end'));
      // Like Linux: the image mapped up to the 2 MiB boundary after _end (64-bit), or in
      // the direct map of all RAM (32-bit, 64 MiB).
      assert.equal(end, width === 64 ? (imageEnd + 0x1fffffn) & ~0x1fffffn : directMap + (64n << 20n));
      g.sim.writeVirt(g.domid, end - 16n, Buffer.alloc(16, 0x77));
      const buf = Buffer.alloc(32, 0xee);
      const r = rawMemio(g.sim, g.domid, end - 16n, buf);
      assert.equal(r.errno, Errno.EFAULT);
      assert.deepEqual(buf.subarray(0, 16), Buffer.alloc(16, 0x77));
      assert.deepEqual(buf.subarray(16), Buffer.alloc(16, 0xee));
      assert.equal(r.op.readUInt32LE(Off.memRemain), 0xdeadbeef); // not copied back on failure
      // A write across the same boundary writes its first part.
      const w = rawMemio(g.sim, g.domid, end - 8n, Buffer.alloc(16, 0x11), true);
      assert.equal(w.errno, Errno.EFAULT);
      assert.deepEqual(g.sim.readVirt(g.domid, end - 8n, 8), Buffer.alloc(8, 0x11));
      // Success copies back remain = 0.
      const ok = rawMemio(g.sim, g.domid, end - 16n, Buffer.alloc(16));
      assert.equal(ok.errno, 0);
      assert.equal(ok.op.readUInt32LE(Off.memRemain), 0);
      g.close();
    });
  });
}

describe('sim gdbsx memio, Xen specifics', () => {
  it('pgd3val: a 32-bit PAE guest walked from init_mm.pgd[3] (an L2 table)', () => {
    const g = startGuest({ width: 32, sim: { autoRun: false } });
    const pdpt = g.sim.layout(g.domid).cr3;
    const pgd3 = g.sim.readPhys(g.domid, pdpt + 3 * 8, 8).readBigUInt64LE();
    assert.equal(pgd3 & 1n, 1n);
    const buf = Buffer.alloc(BANNER.length);
    g.xc.guestMemIo(g.domid, g.sym('demo_banner'), buf, false, pgd3);
    assert.equal(buf.toString('latin1'), BANNER);
    // Only the top GB makes sense with it: another L2 table gives other bytes or nothing.
    assert.equal(rawMemio(g.sim, g.domid, g.sym('demo_banner'), Buffer.alloc(8), false, 0x3f000n).errno, Errno.EFAULT);
    g.close();
  });

  it('PV walks ignore canonicality (the L4 index is bits 39-47); PVH faults', () => {
    for (const type of ['pv', 'pvh'] as const) {
      const g = startGuest({ width: 64, type, sim: { autoRun: false } });
      const aliased = g.sym('demo_banner') & ~(1n << 63n); // bits 47..62 still set: not canonical
      const r = rawMemio(g.sim, g.domid, aliased, Buffer.alloc(8));
      assert.equal(r.errno, type === 'pv' ? 0 : Errno.EFAULT, type);
      g.close();
    }
  });

  it('superpages: refused by the PV walk, followed by the HVM walk and by the CPU', () => {
    for (const type of ['pv', 'pvh'] as const) {
      const g = startGuest({ width: 64, type, sim: { autoRun: false } });
      const { sim, domid } = g;
      // Turn the direct map's L2 entry for physical 32..34 MiB into a 2 MiB page.
      const va = sim.layout(domid).directMap + 0x2000000n;
      const l4 = sim.layout(domid).cr3;
      const entry = (table: number, index: bigint) => table + Number(index & 0x1ffn) * 8;
      const l3 = Number(sim.readPhys(domid, entry(l4, va >> 39n), 8).readBigUInt64LE() & 0xfffff000n);
      const l2 = Number(sim.readPhys(domid, entry(l3, va >> 30n), 8).readBigUInt64LE() & 0xfffff000n);
      const pse = Buffer.alloc(8);
      pse.writeBigUInt64LE(0x2000000n | 0x83n);
      sim.writePhys(domid, entry(l2, va >> 21n), pse);
      sim.writePhys(domid, 0x2000000 + 0x1234, Buffer.from('superpage'));
      const buf = Buffer.alloc(9);
      const r = rawMemio(sim, domid, va + 0x1234n, buf);
      assert.equal(r.errno, type === 'pv' ? Errno.EFAULT : 0, type);
      if (type === 'pvh') assert.equal(buf.toString(), 'superpage');
      assert.equal(sim.readVirt(domid, va + 0x1234n, 9).toString(), 'superpage');
      g.close();
    }
  });

  it('a missing or dying domain is EFAULT, not ESRCH', () => {
    const g = startGuest({ sim: { autoRun: false } });
    assert.equal(rawMemio(g.sim, 42, 0xffffffff81000000n, Buffer.alloc(8)).errno, Errno.EFAULT);
    g.sim.destroyDomain(g.domid, { zombie: true });
    assert.equal(rawMemio(g.sim, g.domid, g.sym('demo_banner'), Buffer.alloc(8)).errno, Errno.EFAULT);
    g.close();
  });

  it('reads 16 MiB in 4 KiB pages well under a second', () => {
    const sim = new SimXen({ autoRun: false });
    const domid = sim.createDomain({ vcpus: 1, width: 64 });
    const xc = new XenControl(sim);
    const base = sim.layout(domid).directMap + 0x1000000n;
    const page = Buffer.alloc(4096);
    const t0 = Date.now();
    let sum = 0;
    for (let off = 0; off < 16 << 20; off += 4096) {
      xc.guestMemIo(domid, base + BigInt(off), page, false);
      sum += page[0];
    }
    const ms = Date.now() - t0;
    assert.ok(ms < 1000, `took ${ms} ms`);
    assert.equal(sum > 0, true); // the image is in there
    sim.close();
  });
});
