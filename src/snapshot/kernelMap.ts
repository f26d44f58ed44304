// The kernel's virtual address space as the snapshot froze it: a walk of the kernel half
// of one VCPU's page tables, read from the snapshot itself (so it matches the memory at
// the pause instant), merged into runs of pages contiguous in both virtual and
// pseudo-physical space. gdb reads a core by virtual address, so these runs become the
// PT_LOADs for kernel text, modules, vmalloc (task stacks) and the direct map.

export interface VaRun {
  /** First virtual address. */
  va: bigint;
  /** First pseudo-physical frame. */
  pfn: number;
  pages: number;
}

export interface KernelWalk {
  kind: '4level' | 'pae';
  /** The root table's frame as the tables name frames (mfn for PV), and a PAE root's byte offset. */
  rootFrame: number;
  rootOffset: number;
  /** A table page by its pfn (from the snapshot), or undefined when not in it. */
  readPage(pfn: number): Buffer | undefined;
  /** Frame number in an entry -> pfn (identity for HVM/PVH; the m2p for PV). */
  pfnOfFrame(frame: number): number | undefined;
  /** PS bits honoured (HVM/PVH); PV guests cannot have superpages. */
  superpages: boolean;
}

const P = 1;
const PS = 0x80;
/** Runs past this many are dropped (ELF program headers are bounded; gdb needs the big ones). */
export const MAX_RUNS = 60000;

function entryFrame(b: Buffer, off: number): number {
  const lo = b.readUInt32LE(off);
  const hi = b.readUInt32LE(off + 4) & 0xfffff; // bits 32..51
  return hi * 0x100000 + (lo >>> 12);
}

/** Walk and merge; `vpn` arithmetic stays in doubles (virtual page numbers fit in 36 bits + sign). */
export function walkKernel(w: KernelWalk): VaRun[] {
  const runs: { vpn: number; pfn: number; pages: number }[] = [];
  const add = (vpn: number, pfn: number, pages: number) => {
    const last = runs[runs.length - 1];
    if (last && last.vpn + last.pages === vpn && last.pfn + last.pages === pfn) last.pages += pages;
    else runs.push({ vpn, pfn, pages });
  };
  // A table reached twice within one top-level slot is an alias (Linux's espfix maps one
  // small table over and over across 512 GiB): walking it again would only add the same
  // pages at other addresses. Across slots it is a second mapping that counts: a PV Linux
  // maps its kernel image with the direct map's own L1 tables.
  let seen = new Set<number>();
  const table = (frame: number): Buffer | undefined => {
    const pfn = w.pfnOfFrame(frame);
    if (pfn === undefined || seen.has(pfn)) return undefined;
    seen.add(pfn);
    return w.readPage(pfn);
  };
  const leaf = (vpn: number, frame: number, pages: number) => {
    // A large page: its frames are contiguous in the frame space; map each 4 KiB through pfnOfFrame.
    for (let i = 0; i < pages; i++) {
      const pfn = w.pfnOfFrame(frame + i);
      if (pfn !== undefined) add(vpn + i, pfn, 1);
    }
  };
  // level 1..4: each entry covers 512^(level-1) pages.
  const walk = (t: Buffer, level: number, baseVpn: number, first: number, last: number) => {
    const span = 512 ** (level - 1);
    for (let i = first; i <= last; i++) {
      if (level === 4) seen = new Set(rootPfn === undefined ? [] : [rootPfn]);
      const off = i * 8;
      const lo = t.readUInt32LE(off);
      if (!(lo & P)) continue;
      const frame = entryFrame(t, off);
      const vpn = baseVpn + i * span;
      if (level === 1 || ((lo & PS) && w.superpages && level <= 3)) {
        leaf(vpn, level === 1 ? frame : frame & ~(span - 1), span);
        continue;
      }
      const next = table(frame);
      if (next) walk(next, level - 1, vpn, 0, 511);
    }
  };
  const rootPfn = w.pfnOfFrame(w.rootFrame);
  const root = table(w.rootFrame);
  if (!root) return [];
  if (w.kind === '4level') {
    walk(root, 4, 0, 256, 511); // the kernel half: 0xffff800000000000 and up
  } else {
    // PAE: the top GB (PDPT entry 3) is the kernel's in the usual 3G/1G split.
    const e = w.rootOffset + 3 * 8;
    if (root.readUInt32LE(e) & P) {
      const l2 = table(entryFrame(root, e));
      if (l2) walk(l2, 2, 3 * 512 * 512, 0, 511);
    }
  }
  runs.sort((a, b) => a.vpn - b.vpn);
  const toVa = (vpn: number): bigint => {
    const va = BigInt(vpn) << 12n;
    return w.kind === '4level' && va >= 1n << 47n ? va | 0xffff000000000000n : va;
  };
  // Past the cap, keep the kernel image and the biggest runs (the direct map, stacks).
  const kept = runs.length <= MAX_RUNS ? runs
    : [...runs].sort((a, b) => Number(toVa(b.vpn) >= 0xffffffff80000000n) - Number(toVa(a.vpn) >= 0xffffffff80000000n) || b.pages - a.pages)
      .slice(0, MAX_RUNS).sort((a, b) => a.vpn - b.vpn);
  return kept.map((r) => ({ va: toVa(r.vpn), pfn: r.pfn, pages: r.pages }));
}
