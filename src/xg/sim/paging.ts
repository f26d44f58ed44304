// x86 page-table walks over a domain's guest-physical memory: 4-level (long mode)
// and PAE 3-level (32-bit). Guest-physical == "machine" in the simulation (an identity
// p2m), so the same walk serves the CPU and Xen's gdbsx memio path.
// Addresses are plain numbers: guest RAM is kept below 2 GiB (see memory.ts).

export const PAGE_SIZE = 4096;
export const PTE_P = 0x1;
export const PTE_RW = 0x2;
/** User-accessible (the simulated CPU runs everything alike and does not check it). */
export const PTE_US = 0x4;
export const PTE_PS = 0x80;
/** Bit 63 (no-execute), as a bit of an entry's high 32-bit word; walks ignore it. */
export const PTE_NX_HI = 0x80000000;

/**
 * What a walk accepts. The CPU (and Xen's HVM memio walk) takes superpages and faults
 * on non-canonical addresses; Xen's PV memio walk (dbg_pv_va2mfn) rejects superpages
 * and never checks canonicality (the L4 index just uses bits 39..47).
 */
export interface WalkRules {
  superpages: boolean;
  canonical: boolean;
}

export const CPU_RULES: WalkRules = { superpages: true, canonical: true };
export const XEN_PV_MEMIO_RULES: WalkRules = { superpages: false, canonical: false };

/** Not mapped (or mapped outside RAM). */
export const UNMAPPED = -1;

/**
 * The frame an entry points to, or UNMAPPED if not present / outside RAM.
 * `frameMask` selects the address bits of this kind of entry (4 KiB, 2 MiB or 1 GiB).
 */
function entryFrame(mem: Buffer, at: number, frameMask: number): number {
  const lo = mem.readUInt32LE(at);
  if ((lo & PTE_P) === 0) return UNMAPPED;
  // Address bits 32..51 must be 0: RAM lies below 4 GiB.
  if ((mem.readUInt32LE(at + 4) & 0x000fffff) !== 0) return UNMAPPED;
  const frame = (lo & frameMask) >>> 0;
  return frame < mem.length ? frame : UNMAPPED;
}

function isPs(mem: Buffer, at: number): boolean {
  return (mem[at] & PTE_PS) !== 0;
}

const FRAME_4K = 0xfffff000;
const FRAME_2M = 0xffe00000;
const FRAME_1G = 0xc0000000;

/** Start a walk at a table given as a cr3-style value (low 12 bits are flags/PCID). */
function tableAt(mem: Buffer, cr3: number): number {
  const t = Math.floor(cr3 / PAGE_SIZE) * PAGE_SIZE;
  return t + PAGE_SIZE <= mem.length ? t : UNMAPPED;
}

/** L2 then L1 for the low 30 bits of `lo` (shared by every mode). */
function walkFromL2(mem: Buffer, l2: number, lo: number, rules: WalkRules): number {
  const l2e = l2 + ((lo >>> 21) & 0x1ff) * 8;
  if (rules.superpages && isPs(mem, l2e)) {
    const big = entryFrame(mem, l2e, FRAME_2M);
    return big === UNMAPPED ? UNMAPPED : checkedPa(mem, big + (lo & 0x1fffff));
  }
  if (isPs(mem, l2e)) return UNMAPPED;
  const l1 = entryFrame(mem, l2e, FRAME_4K);
  if (l1 === UNMAPPED) return UNMAPPED;
  const page = entryFrame(mem, l1 + ((lo >>> 12) & 0x1ff) * 8, FRAME_4K);
  return page === UNMAPPED ? UNMAPPED : checkedPa(mem, page + (lo & 0xfff));
}

function checkedPa(mem: Buffer, pa: number): number {
  return pa < mem.length ? pa : UNMAPPED;
}

/** True for a canonical 48-bit address (bits 47..63 all equal). */
export function isCanonical(hi: number): boolean {
  const top = hi >>> 15;
  return top === 0 || top === 0x1ffff;
}

/** 4-level walk of the 64-bit virtual address (hi:lo). */
export function walk4(mem: Buffer, cr3: number, lo: number, hi: number, rules: WalkRules): number {
  if (rules.canonical && !isCanonical(hi)) return UNMAPPED;
  const l4 = tableAt(mem, cr3);
  if (l4 === UNMAPPED) return UNMAPPED;
  const l3 = entryFrame(mem, l4 + ((hi >>> 7) & 0x1ff) * 8, FRAME_4K);
  if (l3 === UNMAPPED) return UNMAPPED;
  const l3e = l3 + ((((hi & 0x7f) << 2) | (lo >>> 30)) >>> 0) * 8;
  if (isPs(mem, l3e)) {
    if (!rules.superpages) return UNMAPPED;
    const big = entryFrame(mem, l3e, FRAME_1G);
    return big === UNMAPPED ? UNMAPPED : checkedPa(mem, big + (lo & 0x3fffffff));
  }
  const l2 = entryFrame(mem, l3e, FRAME_4K);
  if (l2 === UNMAPPED) return UNMAPPED;
  return walkFromL2(mem, l2, lo, rules);
}

/** PAE walk of a 32-bit virtual address: cr3 points at the 4-entry PDPT (32-byte aligned). */
export function walkPae(mem: Buffer, cr3: number, va: number, rules: WalkRules): number {
  const pdpt = (cr3 & 0xffffffe0) >>> 0;
  if (pdpt + 32 > mem.length) return UNMAPPED;
  const l2 = entryFrame(mem, pdpt + (va >>> 30) * 8, FRAME_4K);
  if (l2 === UNMAPPED) return UNMAPPED;
  return walkFromL2(mem, l2, va >>> 0, rules);
}

/**
 * gdbsx's pgd3val walk: the value is treated directly as an L2 table (init_mm.pgd[3] of
 * a 32-bit PAE guest, which maps the top GB) and only L2/L1 are walked.
 */
export function walkL2Only(mem: Buffer, l2Value: number, va: number, rules: WalkRules): number {
  const l2 = tableAt(mem, l2Value);
  if (l2 === UNMAPPED) return UNMAPPED;
  return walkFromL2(mem, l2, va >>> 0, rules);
}
