// From what was copied and the kernel's page tables to the core's PT_LOADs: the kernel
// text first among the high segments (crash derives phys_base from the first PT_LOAD at
// or above __START_KERNEL_map), RAM runs at their direct-map addresses, then the rest of
// the kernel's mappings (modules, vmalloc: task stacks) for gdb.
import { PAGE } from './coreFile';
import { Segment } from './elfCore';
import { VaRun } from './kernelMap';

export const START_KERNEL_MAP = 0xffffffff80000000n;

export interface Layout {
  loads: Segment[];
  /** va - pa of the direct map, when one was found (64-bit). */
  directMap?: bigint;
  /** The first kernel-image mapping (va, pa), when found. */
  kernelText?: { va: bigint; pa: bigint };
  /** End of the last byte a segment points at (file size). */
  end: number;
}

/** Runs of consecutive pfns. */
export function pfnRuns(pfns: Iterable<number>): { pfn: number; pages: number }[] {
  const sorted = [...pfns].sort((a, b) => a - b);
  const runs: { pfn: number; pages: number }[] = [];
  for (const p of sorted) {
    const last = runs[runs.length - 1];
    if (last && last.pfn + last.pages === p) last.pages++;
    else runs.push({ pfn: p, pages: 1 });
  }
  return runs;
}

/**
 * `machineOf` (PV): each segment's p_paddr is the machine address of its first page, and a
 * segment is split wherever the machine frames stop being consecutive, as in a Xen host's
 * kdump, where crash finds a PV domain's pages by machine address through the guest's p2m.
 * gdb reads by p_vaddr and does not care.
 */
export function buildLayout(width: 32 | 64, present: Iterable<number>, walk: VaRun[], offsetOf: (pfn: number) => number,
  machineOf?: (pfn: number) => bigint): Layout {
  const pseudo = (vaddr: bigint, pfn: number, pages: number): Segment => ({ vaddr, paddr: BigInt(pfn) * BigInt(PAGE), offset: offsetOf(pfn), size: pages * PAGE });
  const seg = machineOf === undefined ? (vaddr: bigint, pfn: number, pages: number): Segment[] => [pseudo(vaddr, pfn, pages)]
    : (vaddr: bigint, pfn: number, pages: number): Segment[] => {
      const out: Segment[] = [];
      let start = 0;
      for (let i = 1; i <= pages; i++) {
        if (i < pages && machineOf(pfn + i) === machineOf(pfn + i - 1) + 1n) continue;
        out.push({ ...pseudo(vaddr + BigInt(start * PAGE), pfn + start, i - start), paddr: machineOf(pfn + start) * BigInt(PAGE) });
        start = i;
      }
      return out;
    };
  const ram = pfnRuns(present);
  // The direct map is the largest run of the walk (all of RAM in Linux and the demo).
  let directMap: bigint | undefined;
  if (width === 64) {
    const big = walk.reduce<VaRun | undefined>((b, r) => (!b || r.pages > b.pages ? r : b), undefined);
    if (big && big.va < START_KERNEL_MAP) directMap = big.va - BigInt(big.pfn) * BigInt(PAGE);
  }
  const inDirectMap = (r: VaRun) => directMap !== undefined && r.va - BigInt(r.pfn) * BigInt(PAGE) === directMap;
  const high = walk.filter((r) => r.va >= START_KERNEL_MAP);
  const other = walk.filter((r) => r.va < START_KERNEL_MAP && !inDirectMap(r));
  const loads = [
    ...high.flatMap((r) => seg(r.va, r.pfn, r.pages)),
    ...ram.flatMap((r) => seg(directMap !== undefined ? directMap + BigInt(r.pfn) * BigInt(PAGE) : BigInt(r.pfn) * BigInt(PAGE), r.pfn, r.pages)),
    ...other.flatMap((r) => seg(r.va, r.pfn, r.pages)),
  ];
  const end = loads.reduce((e, s) => Math.max(e, s.offset + s.size), 0);
  const t = high[0];
  return { loads, directMap, kernelText: t ? { va: t.va, pa: BigInt(t.pfn) * BigInt(PAGE) } : undefined, end };
}
