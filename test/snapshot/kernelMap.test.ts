// The walk that turns a guest's kernel page tables into a core's PT_LOADs, on hand-built
// tables: what a PV Linux shares between its direct map and its kernel image, and the
// espfix alias that must not be walked 512 times.
import assert from 'assert';
import { walkKernel, VaRun } from '../../src/snapshot/kernelMap';
import { buildLayout } from '../../src/snapshot/layout';

const P = 1n;
const RW = 2n;

/** Page tables as pages by frame number (identity frame -> pfn, as for HVM/PVH). */
class Tables {
  readonly pages = new Map<number, Buffer>();
  private next = 1000;
  table(): number {
    const f = this.next++;
    this.pages.set(f, Buffer.alloc(4096));
    return f;
  }
  set(table: number, index: number, frame: number): void {
    (this.pages.get(table) as Buffer).writeBigUInt64LE((BigInt(frame) << 12n) | P | RW, index * 8);
  }
  walk(root: number): VaRun[] {
    return walkKernel({
      kind: '4level', rootFrame: root, rootOffset: 0, superpages: false,
      readPage: (p) => this.pages.get(p), pfnOfFrame: (f) => f,
    });
  }
}

/** Which pfn the runs map `va` to. */
function pfnAt(runs: VaRun[], va: bigint): number | undefined {
  for (const r of runs) {
    const end = r.va + BigInt(r.pages) * 4096n;
    if (va >= r.va && va < end) return r.pfn + Number((va - r.va) / 4096n);
  }
  return undefined;
}

describe('snapshot: the kernel page-table walk', () => {
  it('maps a kernel image that reuses the direct map\'s L1 tables (PV Linux) at both addresses', () => {
    const t = new Tables();
    const l4 = t.table();
    const l1 = t.table();
    for (let i = 0; i < 512; i++) t.set(l1, i, 5000 + i);
    // Direct map: 0xffff888000000000 = L4[273] L3[0] L2[0].
    const l3d = t.table();
    const l2d = t.table();
    t.set(l4, 273, l3d);
    t.set(l3d, 0, l2d);
    t.set(l2d, 0, l1);
    // Kernel image: 0xffffffff80000000 = L4[511] L3[510] L2[0], through other L3/L2 pages to the same L1.
    const l3k = t.table();
    const l2k = t.table();
    t.set(l4, 511, l3k);
    t.set(l3k, 510, l2k);
    t.set(l2k, 0, l1);
    const runs = t.walk(l4);
    assert.strictEqual(pfnAt(runs, 0xffff888000000000n + 7n * 4096n), 5007);
    assert.strictEqual(pfnAt(runs, 0xffffffff80000000n + 7n * 4096n), 5007, JSON.stringify(runs, (_, v) => (typeof v === 'bigint' ? v.toString(16) : v)));
  });

  it('walks a table that one slot reaches 512 times (espfix) once', () => {
    const t = new Tables();
    const l4 = t.table();
    const l3 = t.table();
    const l2 = t.table();
    const l1 = t.table();
    t.set(l1, 0, 7000);
    t.set(l2, 0, l1);
    t.set(l4, 493, l3);
    for (let i = 0; i < 512; i++) t.set(l3, i, l2);
    const runs = t.walk(l4);
    assert.strictEqual(runs.length, 1);
    assert.strictEqual(runs[0].pfn, 7000);
  });
});

describe('snapshot: the core\'s segments', () => {
  it('PV: p_paddr is the machine address, and a segment ends where the machine frames stop being consecutive', () => {
    // pfns 0..5 at mfns 90,91,92,40,41,7; the direct map is the walk's biggest run.
    const mfn = [90n, 91n, 92n, 40n, 41n, 7n];
    const walk: VaRun[] = [{ va: 0xffff888000000000n, pfn: 0, pages: 6 }];
    const l = buildLayout(64, [0, 1, 2, 3, 4, 5], walk, (p) => 0x1000 + p * 4096, (p) => mfn[p]);
    assert.deepStrictEqual(l.loads.map((s) => [s.vaddr - 0xffff888000000000n, s.paddr, s.offset, s.size]), [
      [0n, 90n * 4096n, 0x1000, 3 * 4096],
      [3n * 4096n, 40n * 4096n, 0x1000 + 3 * 4096, 2 * 4096],
      [5n * 4096n, 7n * 4096n, 0x1000 + 5 * 4096, 4096],
    ]);
    // Without machine frames (HVM/PVH), one segment at the pseudo-physical address.
    const h = buildLayout(64, [0, 1, 2, 3, 4, 5], walk, (p) => 0x1000 + p * 4096);
    assert.deepStrictEqual(h.loads.map((s) => [s.paddr, s.size]), [[0n, 6 * 4096]]);
  });
});
