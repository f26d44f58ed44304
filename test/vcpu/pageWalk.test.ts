// The guest page-table walker against page tables built by hand in a fake physical
// memory (frame -> 4 KiB Buffer), for every paging mode; translateRange is checked
// against translate on random tables and addresses.
import { strict as assert } from 'assert';
import fc from 'fast-check';
import {
  PagingMode, Translation, formatTranslation, kernelHalfCr3, pagingModeHvm, pagingModePv, pv32Cr3ToAddr,
  rootOf, translate, translateRange,
} from '../../src/vcpu/pageWalk';

/** Fake physical memory: only frames that were written exist; readTable counts its calls. */
class PhysMem {
  readonly frames = new Map<bigint, Buffer>();
  reads = 0;
  page(f: number | bigint): Buffer {
    const k = BigInt(f);
    let b = this.frames.get(k);
    if (!b) {
      b = Buffer.alloc(4096);
      this.frames.set(k, b);
    }
    return b;
  }
  e64(f: number | bigint, idx: number, v: bigint): void {
    this.page(f).writeBigUInt64LE(v, idx * 8);
  }
  e32(f: number | bigint, idx: number, v: number): void {
    this.page(f).writeUInt32LE(v >>> 0, idx * 4);
  }
  read = (f: bigint): Buffer | undefined => {
    this.reads++;
    return this.frames.get(f);
  };
}

// Entry bits.
const P = 0x1n, RW = 0x2n, US = 0x4n, A = 0x20n, D = 0x40n, PS = 0x80n, G = 0x100n, NX = 1n << 63n;
const KERN = P | RW | A | D; // 0x63
const USER = KERN | US; // 0x67
const pte = (frame: number | bigint, flags: bigint): bigint => (BigInt(frame) << 12n) | flags;

const KiB4 = 4096, MiB2 = 2 << 20, MiB4 = 4 << 20, GiB1 = 1 << 30;

const HVM64 = pagingModeHvm(1n << 31n, 0n, 1n << 10n);
const HVM57 = pagingModeHvm(1n << 31n, 1n << 12n, 1n << 10n);
const HVMPAE = pagingModeHvm(1n << 31n, 1n << 5n, 0n);
const HVM2PSE = pagingModeHvm(1n << 31n, 1n << 4n, 0n);
const HVM2 = pagingModeHvm(1n << 31n, 0n, 0n);
const PV64 = pagingModePv(64);
const PV32 = pagingModePv(32);
const NONE = pagingModeHvm(0n, 0n, 0n);

function ok(t: Translation): Translation {
  assert.equal(t.ok, true, `expected a translation, got fault: ${t.fault}`);
  return t;
}

describe('vcpu/pageWalk', () => {
  describe('paging mode and cr3', () => {
    it('chooses the HVM mode from CR0.PG, EFER.LMA, CR4.LA57/PAE/PSE', () => {
      assert.deepEqual(NONE, { kind: 'none', pse: false, superpages: true, frames: 'gfn' });
      assert.equal(HVM64.kind, '4level');
      assert.equal(HVM57.kind, '5level');
      // LMA wins over PAE (long mode requires PAE anyway); LA57 only counts in long mode.
      assert.equal(pagingModeHvm(0x80000001n, (1n << 5n) | (1n << 12n), 0x500n).kind, '5level');
      assert.equal(pagingModeHvm(0x80000001n, (1n << 5n) | (1n << 12n), 0n).kind, 'pae');
      assert.equal(HVMPAE.kind, 'pae');
      assert.deepEqual(HVM2PSE, { kind: '2level', pse: true, superpages: true, frames: 'gfn' });
      assert.deepEqual(HVM2, { kind: '2level', pse: false, superpages: true, frames: 'gfn' });
      // PG off wins over everything else.
      assert.equal(pagingModeHvm(1n, 1n << 5n, 1n << 10n).kind, 'none');
    });

    it('PV modes hold MFNs and refuse superpages', () => {
      assert.deepEqual(PV64, { kind: '4level', pse: false, superpages: false, frames: 'mfn' });
      assert.deepEqual(PV32, { kind: 'pae', pse: false, superpages: false, frames: 'mfn' });
    });

    it('rootOf masks PCID/flag bits, keeps the PAE PDPT offset', () => {
      assert.deepEqual(rootOf(HVM64, 0x1234567fffn), { frame: 0x1234567n, offset: 0 }); // PCID 0xfff
      assert.deepEqual(rootOf(HVM64, (1n << 63n) | 0x2000005n), { frame: 0x2000n, offset: 0 });
      assert.deepEqual(rootOf(HVM57, 0xabcdef000123n), { frame: 0xabcdef000n, offset: 0 });
      assert.deepEqual(rootOf(HVMPAE, 0x3000fe0n | 0x18n), { frame: 0x3000n, offset: 0xfe0 });
      assert.deepEqual(rootOf(HVMPAE, 0x3000020n), { frame: 0x3000n, offset: 0x20 });
      assert.deepEqual(rootOf(HVM2, 0x12345018n), { frame: 0x12345n, offset: 0 });
      assert.deepEqual(rootOf(NONE, 0x1234n), { frame: 0n, offset: 0 });
    });

    it('pv32Cr3ToAddr undoes Xen\'s extended cr3 (L3 above 4 GiB)', () => {
      // pfn 0x123456: (pfn<<12 | pfn>>20) mod 2^32 = 0x23456000 | 0x1.
      assert.equal(pv32Cr3ToAddr(0x23456001n), 0x123456000n);
      assert.equal(pv32Cr3ToAddr(0x00abc000n), 0xabc000n);
      fc.assert(fc.property(fc.integer({ min: 0, max: 0xffffffff }), (pfn) => {
        const ext = ((BigInt(pfn) << 12n) | (BigInt(pfn) >> 20n)) & 0xffffffffn;
        assert.equal(pv32Cr3ToAddr(ext), BigInt(pfn) << 12n);
      }));
    });

    it('kernelHalfCr3 clears bit 12 only', () => {
      assert.equal(kernelHalfCr3(0x2001000n | 0x80n), 0x2000080n);
      assert.equal(kernelHalfCr3(0x2000080n), 0x2000080n);
    });
  });

  describe('4-level', () => {
    // Kernel L4 0x2000, PTI user L4 0x2001; 0xffffffff8xxxxxxx goes L3 0x2010, L2 0x2011, L1 0x2012.
    // 0xffffffff81234567: L4 511, L3 510, L2 9, L1 0x34, offset 0x567.
    const mem = new PhysMem();
    mem.e64(0x2000, 511, pte(0x2010, KERN));
    mem.e64(0x2010, 510, pte(0x2011, KERN));
    mem.e64(0x2011, 9, pte(0x2012, KERN));
    mem.e64(0x2012, 0x34, pte(0x1234567, KERN | G | NX)); // frame above 4 GiB
    mem.e64(0x2012, 0x1fe, pte(0x7000, KERN));
    // L2[10]: 2 MiB page at 0x80000000. L2[11] absent. L2[12] -> unreadable L1. L2[13]: PS with bit 13 set.
    mem.e64(0x2011, 10, pte(0x80000, KERN | PS));
    mem.e64(0x2011, 12, pte(0x9999, KERN));
    mem.e64(0x2011, 13, pte(0x80000, KERN | PS) | 0x2000n);
    // L4[0] -> L3 0x2020: L3[1] a 1 GiB page at 5 GiB (frame 0x140000); L3[2] absent; L3[3] 1 GiB with a reserved bit.
    mem.e64(0x2000, 0, pte(0x2020, USER));
    mem.e64(0x2020, 1, pte(0x140000, USER | PS));
    mem.e64(0x2020, 3, pte(0x140000, USER | PS) | 0x4000n);
    mem.e64(0x2000, 2, pte(0x2020, USER | PS)); // PS is reserved in a PML4E
    // The PTI user L4 maps only the user half (slot 0).
    mem.e64(0x2001, 0, pte(0x2020, USER));
    const root = rootOf(HVM64, 0x2000000n | 0x7n); // PCID 7

    it('walks 4 KiB pages through all four levels', () => {
      const t = ok(translate(HVM64, root, 0xffffffff81234567n, mem.read));
      assert.equal(t.frame, 0x1234567n);
      assert.equal(t.offset, 0x567);
      assert.equal(t.pageSize, KiB4);
      assert.deepEqual([t.writable, t.user, t.nx], [true, false, true]);
      assert.deepEqual(t.levels.map((l) => [l.level, l.index, l.tableFrame, l.entryOffset]), [
        [4, 511, 0x2000n, 0xff8], [3, 510, 0x2010n, 0xff0], [2, 9, 0x2011n, 0x48], [1, 0x34, 0x2012n, 0x1a0],
      ]);
      assert.equal(t.levels[3].entry, 0x8000001234567163n);
      assert.equal(t.levels[3].flags, 'P RW A D G NX');
      assert.equal(t.levels[0].flags, 'P RW A D');
    });

    it('2 MiB page at L2: base + 4K index inside it', () => {
      const t = ok(translate(HVM64, root, 0xffffffff81412345n, mem.read));
      assert.deepEqual([t.frame, t.offset, t.pageSize, t.levels.length], [0x80012n, 0x345, MiB2, 3]);
      assert.equal(t.levels[2].flags, 'P RW A D PS');
    });

    it('1 GiB page at L3', () => {
      const t = ok(translate(HVM64, root, 0x63456789n, mem.read));
      assert.deepEqual([t.frame, t.offset, t.pageSize, t.levels.length], [0x163456n, 0x789, GiB1, 2]);
      assert.deepEqual([t.writable, t.user, t.nx], [true, true, false]);
    });

    it('not present at each level', () => {
      const cases: [bigint, string, number][] = [
        [1n << 39n, 'not present at L4', 1],
        [0x80000000n, 'not present at L3', 2],
        [0xffffffff81600000n, 'not present at L2', 3],
        [0xffffffff81235000n, 'not present at L1', 4],
      ];
      for (const [va, fault, n] of cases) {
        const t = translate(HVM64, root, va, mem.read);
        assert.equal(t.ok, false);
        assert.equal(t.fault, fault);
        assert.equal(t.levels.length, n);
        assert.equal(t.frame, undefined);
      }
    });

    it('an unreadable table names the level; reserved bits are faults', () => {
      assert.equal(translate(HVM64, root, 0xffffffff81800000n, mem.read).fault, 'cannot read L1 table (frame 0x9999)');
      assert.equal(translate(HVM64, root, 0xffffffff81a00000n, mem.read).fault, 'reserved bits set at L2');
      assert.equal(translate(HVM64, root, 0xc0000000n, mem.read).fault, 'reserved bits set at L3');
      assert.equal(translate(HVM64, root, 2n << 39n, mem.read).fault, 'reserved bit PS set at L4');
      assert.equal(translate(HVM64, { frame: 0x4444n, offset: 0 }, 0n, mem.read).fault, 'cannot read L4 table (frame 0x4444)');
      // A short buffer from readTable is a fault, not an exception.
      const short = (f: bigint) => (f === 0x2000n ? Buffer.alloc(16) : mem.read(f));
      assert.equal(translate(HVM64, root, 0xffffffff81234567n, short).fault, 'cannot read L4 table (frame 0x2000)');
    });

    it('PCID bits in cr3 do not change the walk', () => {
      for (const pcid of [0n, 1n, 0x7ffn, 0xfffn]) {
        const r = rootOf(HVM64, 0x2000000n | pcid);
        assert.equal(ok(translate(HVM64, r, 0xffffffff81234567n, mem.read)).frame, 0x1234567n);
      }
    });

    it('PTI: a user cr3 lacks the kernel half; kernelHalfCr3 has it', () => {
      const user = 0x2001000n | 0x87n;
      assert.equal(translate(HVM64, rootOf(HVM64, user), 0xffffffff81234567n, mem.read).fault, 'not present at L4');
      assert.equal(ok(translate(HVM64, rootOf(HVM64, user), 0x63456789n, mem.read)).frame, 0x163456n);
      const k = rootOf(HVM64, kernelHalfCr3(user));
      assert.equal(ok(translate(HVM64, k, 0xffffffff81234567n, mem.read)).frame, 0x1234567n);
    });

    it('non-canonical addresses fault before reading anything', () => {
      for (const va of [0x0000800000000000n, 0xffff7fffffffffffn, 0x00ff800000000000n, 0x8000000000000000n]) {
        mem.reads = 0;
        const t = translate(HVM64, root, va, mem.read);
        assert.equal(t.fault, 'non-canonical address');
        assert.equal(mem.reads, 0);
        assert.deepEqual(t.levels, []);
      }
      assert.equal(translate(HVM64, root, 1n << 64n, mem.read).ok, false);
      assert.equal(translate(HVM64, root, -1n, mem.read).ok, false);
    });

    it('effective rights: AND of RW/US, OR of NX over the levels', () => {
      const m = new PhysMem();
      // Four chains from L4 slots 0..3; in chain s the level (4 - s) clears RW and US and sets NX.
      for (let s = 0; s < 4; s++) {
        const bad = 4 - s;
        const flags = (lvl: number) => (lvl === bad ? P | A | NX : USER);
        const l3 = 0x10 + s * 3, l2 = l3 + 1, l1 = l3 + 2;
        m.e64(1, s, pte(l3, flags(4)));
        m.e64(l3, 0, pte(l2, flags(3)));
        m.e64(l2, 0, pte(l1, flags(2)));
        m.e64(l1, 0, pte(0x500 + s, flags(1)));
        const t = ok(translate(HVM64, { frame: 1n, offset: 0 }, BigInt(s) << 39n, m.read));
        assert.deepEqual([t.frame, t.writable, t.user, t.nx], [BigInt(0x500 + s), false, false, true], `level ${bad}`);
      }
      m.e64(1, 4, pte(0x30, USER));
      m.e64(0x30, 0, pte(0x31, USER));
      m.e64(0x31, 0, pte(0x32, USER));
      m.e64(0x32, 0, pte(0x600, USER));
      const t = ok(translate(HVM64, { frame: 1n, offset: 0 }, 4n << 39n, m.read));
      assert.deepEqual([t.writable, t.user, t.nx], [true, true, false]);
    });

    it('PV 64-bit refuses superpages at L2 and L3, and Xen\'s L4 slots', () => {
      assert.equal(translate(PV64, root, 0xffffffff81412345n, mem.read).fault, 'superpage not allowed at L2 (PV)');
      assert.equal(translate(PV64, root, 0x63456789n, mem.read).fault, 'superpage not allowed at L3 (PV)');
      assert.equal(ok(translate(PV64, root, 0xffffffff81234567n, mem.read)).frame, 0x1234567n);
      const m = new PhysMem();
      m.e64(1, 256, pte(0x2010, KERN)); // what Xen puts there: not the guest's to read
      const t = translate(PV64, { frame: 1n, offset: 0 }, 0xffff800000001000n, m.read);
      assert.equal(t.fault, 'L4 slot 256 belongs to Xen (PV)');
      assert.equal(t.levels.length, 1);
      assert.equal(translate(PV64, { frame: 1n, offset: 0 }, 0xffff87ffffffffffn, m.read).fault, 'L4 slot 271 belongs to Xen (PV)');
      assert.equal(translate(PV64, { frame: 1n, offset: 0 }, 0xffff880000000000n, m.read).fault, 'not present at L4');
      // HVM has no such hole.
      assert.equal(translate(HVM64, { frame: 1n, offset: 0 }, 0xffff800000001000n, m.read).fault, 'cannot read L3 table (frame 0x2010)');
    });
  });

  describe('5-level', () => {
    // 0xffffffff81234567: L5 511, L4 511, L3 510, L2 9, L1 0x34.
    // 0x00ff800000000000 (canonical only with LA57): L5 255, L4 256, L3 0 -> 1 GiB page at frame 0x40000.
    const mem = new PhysMem();
    mem.e64(0x6000, 511, pte(0x6001, KERN));
    mem.e64(0x6001, 511, pte(0x6002, KERN));
    mem.e64(0x6002, 510, pte(0x6003, KERN));
    mem.e64(0x6003, 9, pte(0x6004, KERN));
    mem.e64(0x6004, 0x34, pte(0xabcde, KERN));
    mem.e64(0x6000, 255, pte(0x6010, USER));
    mem.e64(0x6010, 256, pte(0x6011, USER));
    mem.e64(0x6011, 0, pte(0x40000, USER | PS));
    const root = rootOf(HVM57, 0x6000fffn);

    it('walks five levels', () => {
      const t = ok(translate(HVM57, root, 0xffffffff81234567n, mem.read));
      assert.deepEqual(t.levels.map((l) => [l.level, l.index]), [[5, 511], [4, 511], [3, 510], [2, 9], [1, 0x34]]);
      assert.deepEqual([t.frame, t.offset], [0xabcden, 0x567]);
    });

    it('57-bit canonical addresses and a 1 GiB page', () => {
      const t = ok(translate(HVM57, root, 0x00ff800012345678n, mem.read));
      assert.deepEqual([t.frame, t.offset, t.pageSize], [0x40000n + 0x12345n, 0x678, GiB1]);
      assert.deepEqual(t.levels.map((l) => [l.level, l.index]), [[5, 255], [4, 256], [3, 0]]);
      assert.equal(translate(HVM64, root, 0x00ff800012345678n, mem.read).fault, 'non-canonical address');
      for (const va of [0x0100000000000000n, 0xfeffffffffffffffn, 0x8000000000000000n]) {
        assert.equal(translate(HVM57, root, va, mem.read).fault, 'non-canonical address');
      }
      assert.equal(translate(HVM57, root, 0xff00000000000000n, mem.read).fault, 'not present at L5');
    });
  });

  describe('PAE', () => {
    // PDPT at 0x3000fe0 (inside a page). 0xc0101234: PDPT 3, PD 0, PT 0x101, offset 0x234.
    const mem = new PhysMem();
    mem.e64(0x3000, 0x1ff, pte(0x3001, P)); // byte 0xff8 = 0xfe0 + 3*8; a PDPTE carries no RW/US
    mem.e64(0x3001, 0, pte(0x3002, USER));
    mem.e64(0x3002, 0x101, pte(0x4242, USER | NX));
    mem.e64(0x3001, 1, pte(0x100600, KERN | PS)); // 2 MiB page above 4 GiB
    mem.e64(0x3000, 0x1fc, pte(0x3001, P | PS)); // PDPT[0]: PS is reserved in a PAE PDPTE
    const root = rootOf(HVMPAE, 0x3000fe0n | 0x18n);

    it('walks PDPT -> PD -> PT with the PDPT inside a page', () => {
      assert.deepEqual(root, { frame: 0x3000n, offset: 0xfe0 });
      const t = ok(translate(HVMPAE, root, 0xc0101234n, mem.read));
      assert.deepEqual(t.levels.map((l) => [l.level, l.index, l.entryOffset]), [[3, 3, 0xff8], [2, 0, 0], [1, 0x101, 0x808]]);
      assert.deepEqual([t.frame, t.offset, t.pageSize], [0x4242n, 0x234, KiB4]);
      // The PDPTE's missing RW/US does not count; NX does come from the PTE.
      assert.deepEqual([t.writable, t.user, t.nx], [true, true, true]);
    });

    it('2 MiB pages, not-present PDPTE, reserved PS in a PDPTE, >= 4 GiB', () => {
      const t = ok(translate(HVMPAE, root, 0xc0205432n, mem.read));
      assert.deepEqual([t.frame, t.offset, t.pageSize], [0x100605n, 0x432, MiB2]);
      assert.equal(translate(HVMPAE, root, 0x40000000n, mem.read).fault, 'not present at L3');
      assert.equal(translate(HVMPAE, root, 0x1000n, mem.read).fault, 'reserved bit PS set at L3');
      assert.equal(translate(HVMPAE, root, 0x100000000n, mem.read).fault, 'address above 4 GiB in a 32-bit mode');
    });

    it('PV 32-bit: extended cr3 above 4 GiB, no superpages', () => {
      const m = new PhysMem();
      const l3 = 0x123456; // an MFN above 4 GiB
      m.e64(l3, 3, pte(0x200001, P));
      m.e64(0x200001, 0, pte(0x200002, USER));
      m.e64(0x200002, 0x101, pte(0x300000, USER));
      m.e64(0x200001, 1, pte(0x100600, KERN | PS));
      const r = rootOf(PV32, pv32Cr3ToAddr(0x23456001n));
      assert.deepEqual(r, { frame: 0x123456n, offset: 0 });
      assert.equal(ok(translate(PV32, r, 0xc0101234n, m.read)).frame, 0x300000n);
      assert.equal(translate(PV32, r, 0xc0205432n, m.read).fault, 'superpage not allowed at L2 (PV)');
    });
  });

  describe('2-level', () => {
    // 0xc0123456: PDE 768, PTE 0x123, offset 0x456. 4-byte entries.
    const mem = new PhysMem();
    mem.e32(0x5000, 768, 0x5001 * 4096 + 0x67);
    mem.e32(0x5001, 0x123, 0x7777 * 4096 + 0x65); // read-only
    mem.e32(0x5000, 769, 0x00c00000 + 0xe7); // 4 MiB page at 12 MiB
    mem.e32(0x5000, 770, 0x01000000 + (0x5 << 13) + 0xe7); // PSE-36: PA 0x5_0100_0000
    mem.e32(0x5000, 771, 0x01000000 + (1 << 21) + 0xe7); // bit 21 reserved
    mem.e32(0x5000, 772, 0xffffffff & ~0x80); // garbage but present, no PS: names frame 0xfffff
    const root = rootOf(HVM2PSE, 0x5000018n);

    it('walks 32-bit entries, 1024 per table', () => {
      const t = ok(translate(HVM2PSE, root, 0xc0123456n, mem.read));
      assert.deepEqual(t.levels.map((l) => [l.level, l.index, l.entryOffset, l.entry]), [
        [2, 768, 0xc00, 0x5001067n], [1, 0x123, 0x48c, 0x7777065n],
      ]);
      assert.deepEqual([t.frame, t.offset, t.pageSize, t.writable, t.user, t.nx], [0x7777n, 0x456, KiB4, false, true, false]);
    });

    it('4 MiB pages with PSE, PSE-36 high address bits, reserved bit 21', () => {
      const t = ok(translate(HVM2PSE, root, 0xc0523456n, mem.read));
      assert.deepEqual([t.frame, t.offset, t.pageSize], [0xc00n + 0x123n, 0x456, MiB4]);
      assert.equal(t.levels[0].flags, 'P RW US A D PS');
      const h = ok(translate(HVM2PSE, root, 0xc0803abcn, mem.read));
      assert.deepEqual([h.frame, h.offset], [0x501003n, 0xabc]);
      assert.equal(translate(HVM2PSE, root, 0xc0c00000n, mem.read).fault, 'reserved bits set at L2');
      assert.equal(translate(HVM2PSE, root, 0xc1000000n, mem.read).fault, 'cannot read L1 table (frame 0xfffff)');
    });

    it('without CR4.PSE the PS bit is ignored (the entry names a page table)', () => {
      assert.equal(translate(HVM2, root, 0xc0523456n, mem.read).fault, 'cannot read L1 table (frame 0xc00)');
      assert.equal(ok(translate(HVM2, root, 0xc0123456n, mem.read)).frame, 0x7777n);
    });

    it('rejects va >= 4 GiB rather than wrapping', () => {
      assert.equal(translate(HVM2PSE, root, 0x1c0123456n, mem.read).fault, 'address above 4 GiB in a 32-bit mode');
    });
  });

  describe('paging off', () => {
    it('is the identity below 4 GiB', () => {
      const t = ok(translate(NONE, rootOf(NONE, 0n), 0x12345678n, () => undefined));
      assert.deepEqual([t.frame, t.offset, t.levels.length], [0x12345n, 0x678, 0]);
      assert.equal(translate(NONE, rootOf(NONE, 0n), 0x100000000n, () => undefined).ok, false);
      assert.deepEqual(translateRange(NONE, rootOf(NONE, 0n), 0xffffe800n, 0x2000, () => undefined), [0xffffen, 0xfffffn, undefined]);
    });
  });

  describe('translateRange', () => {
    const mem = new PhysMem();
    mem.e64(0x2000, 511, pte(0x2010, KERN));
    mem.e64(0x2010, 510, pte(0x2011, KERN));
    mem.e64(0x2011, 9, pte(0x2012, KERN));
    mem.e64(0x2012, 0x1fe, pte(0x7000, KERN)); // L1[0x1ff] absent
    mem.e64(0x2011, 10, pte(0x80000, KERN | PS));
    mem.e64(0x2011, 12, pte(0x9999, KERN)); // unreadable L1
    mem.e64(0x2011, 13, pte(0x2013, KERN));
    for (let i = 0; i < 512; i++) mem.e64(0x2013, i, pte(0x10000 + i, KERN));
    mem.e64(0x2000, 255, pte(0x2020, USER)); // 0x7fffffffffff is L4 255, L3 511, L2 511, L1 511
    mem.e64(0x2020, 511, pte(0x2021, USER));
    mem.e64(0x2021, 511, pte(0x2022, USER));
    mem.e64(0x2022, 511, pte(0x5555, USER)); // the last canonical low page
    const root = rootOf(HVM64, 0x2000000n);

    it('crosses an L1 table boundary into a 2 MiB page, unaligned start and length', () => {
      // 0xffffffff813fe800 + 0x3000 touches L1[0x1fe], L1[0x1ff] (absent), then L2[10]'s first two 4K frames.
      assert.deepEqual(translateRange(HVM64, root, 0xffffffff813fe800n, 0x3000, mem.read), [0x7000n, undefined, 0x80000n, 0x80001n]);
      assert.deepEqual(translateRange(HVM64, root, 0xffffffff813fefffn, 2, mem.read), [0x7000n, undefined]);
      assert.deepEqual(translateRange(HVM64, root, 0xffffffff813fe000n, 1, mem.read), [0x7000n]);
      assert.deepEqual(translateRange(HVM64, root, 0xffffffff813fe000n, 0, mem.read), []);
    });

    it('leaves holes (absent, unreadable) undefined across several L2 entries', () => {
      const r = translateRange(HVM64, root, 0xffffffff81400000n, 4 * MiB2, mem.read);
      assert.equal(r.length, 2048);
      for (let i = 0; i < 512; i++) assert.equal(r[i], BigInt(0x80000 + i));
      for (let i = 512; i < 1536; i++) assert.equal(r[i], undefined);
      for (let i = 1536; i < 2048; i++) assert.equal(r[i], BigInt(0x10000 + i - 1536));
    });

    it('reads each table once for a 2 MiB range', () => {
      mem.reads = 0;
      const r = translateRange(HVM64, root, 0xffffffff81a00000n, MiB2, mem.read);
      assert.equal(r.length, 512);
      assert.equal(r[511], 0x101ffn);
      assert.equal(mem.reads, 4);
    });

    it('skips Xen\'s L4 slots for PV 64-bit; a short table buffer maps nothing past its end', () => {
      const m = new PhysMem();
      // Slots 255 and 256 both lead to a 4K mapping of frame 0x900 + L1 index.
      for (const slot of [255, 256]) m.e64(1, slot, pte(2, KERN));
      m.e64(2, 511, pte(3, KERN));
      m.e64(3, 511, pte(4, KERN));
      m.e64(4, 511, pte(0x900, KERN));
      m.e64(2, 0, pte(3, KERN));
      m.e64(3, 0, pte(4, KERN));
      m.e64(4, 0, pte(0x901, KERN));
      const r = { frame: 1n, offset: 0 };
      assert.deepEqual(translateRange(HVM64, r, 0xffff800000000000n, 0x1000, m.read), [0x901n]);
      assert.deepEqual(translateRange(PV64, r, 0xffff800000000000n, 0x1000, m.read), [undefined]);
      assert.deepEqual(translateRange(PV64, r, 0x7ffffffff000n, 0x1000, m.read), [0x900n]);
      // The L1 buffer holds only entries 0..1: pages at index 2+ are unmapped, as translate() says.
      m.frames.set(4n, m.page(4).subarray(0, 16));
      m.e64(4, 1, pte(0x902, KERN));
      const got = translateRange(HVM64, r, 0xffff800000000000n, 0x3000, m.read);
      assert.deepEqual(got, [0x901n, 0x902n, undefined]);
      assert.equal(translate(HVM64, r, 0xffff800000002000n, m.read).fault, 'cannot read L1 table (frame 0x4)');
    });

    it('stops at the canonical gap and at 2^64 and 4 GiB (no wrap)', () => {
      assert.deepEqual(translateRange(HVM64, root, 0x7ffffffff000n, 0x2000, mem.read), [0x5555n, undefined]);
      assert.deepEqual(translateRange(HVM64, root, 0xfffffffffffff000n, 0x3000, mem.read), [undefined, undefined, undefined]);
      const pae = new PhysMem();
      pae.e64(1, 3, pte(2, P));
      pae.e64(2, 511, pte(3, USER));
      pae.e64(3, 511, pte(0x77, USER));
      pae.e64(3, 510, pte(0x76, USER));
      assert.deepEqual(translateRange(HVMPAE, { frame: 1n, offset: 0 }, 0xffffe000n, 0x3000, pae.read), [0x76n, 0x77n, undefined]);
    });
  });

  describe('translateRange agrees with translate (random tables and addresses)', () => {
    /** Deterministic PRNG (mulberry32), so a failing seed reproduces. */
    function rng(seed: number): () => number {
      let a = seed >>> 0;
      return () => {
        a = (a + 0x6d2b79f5) >>> 0;
        let t = a;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
      };
    }
    const POOL = 0x100; // table frames 0x100..0x10f
    const POOL_N = 16;

    /** Frames of random entries: absent, pointers into the pool, large pages (valid or with reserved bits), garbage. */
    function randomMemory(seed: number, wide: boolean): PhysMem {
      const r = rng(seed);
      const u32 = () => Math.floor(r() * 4294967296);
      const m = new PhysMem();
      for (let f = POOL; f < POOL + POOL_N; f++) {
        const buf = m.page(f);
        const n = wide ? 512 : 1024;
        for (let i = 0; i < n; i++) {
          const c = r();
          let lo: number, hi = 0;
          const flags = u32() & 0xfff;
          const pointer = c >= 0.2 && c < 0.85;
          if (c < 0.2) lo = u32() & ~1; // absent, other bits arbitrary
          else if (pointer) {
            lo = ((POOL + Math.floor(r() * (POOL_N + 1))) * 4096 + (flags & ~0x80)) | 1; // one past the pool: unreadable
            if (r() < 0.05) lo |= 0x80;
          } else if (c < 0.93) lo = (((u32() >>> 21) << 21) | flags | 0x81) >>> 0; // 2 MiB / 4 MiB aligned
          else if (c < 0.97) lo = (((u32() >>> 30) << 30) | flags | 0x81) >>> 0; // 1 GiB aligned
          else lo = u32() | 1;
          // Pointers rarely carry high address bits (they would leave the pool); pages often do.
          if (wide) hi = (pointer && r() < 0.95 ? u32() & 0x80000000 : !pointer && r() < 0.8 ? u32() & 0x8000000f : u32()) >>> 0;
          if (wide) buf.writeUInt32LE(hi, i * 8 + 4);
          buf.writeUInt32LE(lo >>> 0, wide ? i * 8 : i * 4);
        }
      }
      return m;
    }

    const modes: [string, PagingMode][] = [
      ['HVM 4-level', HVM64], ['HVM 5-level', HVM57], ['HVM PAE', HVMPAE], ['HVM 2-level PSE', HVM2PSE],
      ['HVM 2-level', HVM2], ['PV 64', PV64], ['PV 32', PV32], ['paging off', NONE],
    ];
    const vaArb = fc.oneof(
      fc.bigUintN(64),
      fc.bigUintN(32),
      fc.bigUintN(24).map((d) => 0x0000800000000000n - d), // below the 4-level canonical gap
      fc.bigUintN(24).map((d) => 0xffff800000000000n + d), // PV Xen slots, high half start
      fc.bigUintN(24).map((d) => 0x0100000000000000n - d), // the 5-level gap
      fc.bigUintN(24).map((d) => (1n << 64n) - d), // the top of the address space
      fc.bigUintN(24).map((d) => (1n << 32n) - d), // the top of 4 GiB
    );

    for (const [name, mode] of modes) {
      it(name, () => {
        let mapped = 0; // the generator must actually produce translations, not just faults
        fc.assert(fc.property(
          fc.integer({ min: 0, max: 0x7fffffff }), vaArb, fc.integer({ min: 1, max: 3 * MiB2 / 2 }),
          fc.integer({ min: 0, max: 127 }),
          (seed, va, len, pdpt) => {
            const m = randomMemory(seed, mode.kind !== '2level');
            const root = rootOf(mode, (BigInt(POOL) << 12n) | BigInt(pdpt * 32));
            const got = translateRange(mode, root, va, len, m.read);
            const first = va & ~0xfffn;
            const n = Number(((va + BigInt(len) - 1n) >> 12n) - (va >> 12n) + 1n);
            assert.equal(got.length, n);
            for (let i = 0; i < n; i++) {
              const t = translate(mode, root, first + BigInt(i) * 4096n, m.read);
              assert.equal(got[i], t.ok ? t.frame : undefined, `page ${i} of ${va.toString(16)}: ${t.fault}`);
              if (t.ok) mapped++;
              if (i === 0) formatTranslation(va, mode, root.frame << 12n, t); // must not throw on garbage
            }
          },
        ), { numRuns: 40 });
        assert.ok(mapped > 0);
      });
    }
  });

  describe('formatTranslation', () => {
    const mem = new PhysMem();
    mem.e64(0x2000, 511, pte(0x2010, KERN));
    mem.e64(0x2010, 510, pte(0x2011, KERN));
    mem.e64(0x2011, 9, pte(0x2012, KERN));
    mem.e64(0x2012, 0x34, pte(0x1234567, KERN | NX));
    mem.e64(0x2011, 10, pte(0x80000, KERN | PS));

    it('shows each level, then the frame and physical address', () => {
      const va = 0xffffffff81234567n;
      const text = formatTranslation(va, HVM64, 0x2000007n, translate(HVM64, rootOf(HVM64, 0x2000007n), va, mem.read));
      const lines = text.split('\n');
      assert.equal(lines.length, 6);
      assert.match(lines[0], /^translate 0xffffffff81234567 \(4-level, entries hold GFNs\), cr3 0x2000007$/);
      assert.match(lines[1], /L4\[511\] +frame 0x2000 +\+0xff8 = 0000000002010063 +P RW A D +-> table 0x2010/);
      assert.match(lines[4], /L1\[52\] .* = 8000001234567063 +P RW A D NX +-> 4 KiB page 0x1234567/);
      assert.equal(lines[5], '  => frame 0x1234567 offset 0x567: gpa 0x1234567567, 4 KiB page, writable, supervisor, NX');
    });

    it('shows large pages, PV machine addresses and faults', () => {
      const big = formatTranslation(0xffffffff81412345n, HVM64, 0x2000000n, translate(HVM64, { frame: 0x2000n, offset: 0 }, 0xffffffff81412345n, mem.read));
      assert.match(big, /L2\[10\] .* -> 2 MiB page 0x80000/);
      assert.match(big, /=> frame 0x80012 offset 0x345: gpa 0x80012345, 2 MiB page/);
      const pv = formatTranslation(0xffffffff81412345n, PV64, 0x2000000n, translate(PV64, { frame: 0x2000n, offset: 0 }, 0xffffffff81412345n, mem.read));
      assert.match(pv, /entries hold MFNs/);
      assert.match(pv, /L2\[10\] .* -> superpage not allowed at L2 \(PV\)/);
      assert.match(pv, /=> fault: superpage not allowed at L2 \(PV\)$/);
      const np = formatTranslation(0x1000n, HVM64, 0x2000000n, translate(HVM64, { frame: 0x2000n, offset: 0 }, 0x1000n, mem.read));
      assert.match(np, /L4\[0\] .* -> not present\n  => fault: not present at L4$/);
      const off = formatTranslation(0x1234n, NONE, 0n, translate(NONE, { frame: 0n, offset: 0 }, 0x1234n, mem.read));
      assert.equal(off, 'translate 0x1234 (paging off), cr3 0x0\n  => frame 0x1 offset 0x234: gpa 0x1234, 4 KiB page, writable, user');
    });
  });
});
