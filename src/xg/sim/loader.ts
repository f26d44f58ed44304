// Puts a guest kernel ELF into a fresh domain's memory the way a PV domain builder
// would: segments at their physical addresses, real page tables (4-level or PAE)
// built in guest memory, a per-VCPU stack and per-cpu area. docs/sim.md has the map.
import { PageType } from '../domctl';
import { ElfImage } from './elf';
import { PAGE_SIZE, PTE_P, PTE_RW } from './paging';

/** The simulated guests' memory map (physical addresses are numbers, virtual ones bigint). */
export const MemoryMap = {
  /** VCPU n's area: a stack, then its per-cpu page (up to maxVcpus of them). */
  vcpuAreas: 0x100000,
  vcpuAreaSize: 0x8000,
  /** Page tables built by the loader live in [pageTables, userProcesses) (1 GiB of RAM needs ~2 MiB). */
  pageTables: 0x600000,
  /**
   * Guest user-mode processes (SimXen.enterUserMode, userMode.ts): VCPU n's page tables,
   * code, data and stack in the userProcessSize bytes at userProcesses + n * userProcessSize.
   */
  userProcesses: 0xa00000,
  userProcessSize: 0xc000,
  stackSize: 0x6000,
  /** Below this the loader owns memory; images must be linked above (Linux puts text at 16 MiB). */
  imageMinPhys: 0x1000000,
  /** Direct map of all guest RAM (Linux's page_offset_base / PAGE_OFFSET). */
  directMap64: 0xffff888000000000n,
  directMap32: 0xc0000000n,
  maxVcpus: 128,
} as const;

const PTE_G = 0x100;
/** XEN_DOMCTL_PFINFO_LPINTAB: a pinned page table (the domain builder pins the root). */
export const PFINFO_LPINTAB = 0x80000000;
const LEVEL_TYPES = [PageType.none, PageType.l1, PageType.l2, PageType.l3, PageType.l4];

/** Writes page-table entries into guest memory, allocating tables as it goes. */
class PageTableBuilder {
  readonly root: number;
  /** Every table built, by frame: its PV page type (what Xen's validation would give it). */
  readonly tables = new Map<number, number>();
  private next: number;

  constructor(private readonly mem: Buffer, private readonly long: boolean) {
    this.next = MemoryMap.pageTables;
    const top = long ? 4 : 3;
    this.root = this.alloc(top);
    this.tables.set(this.root / PAGE_SIZE, (LEVEL_TYPES[top] | PFINFO_LPINTAB) >>> 0);
  }

  /** A zeroed table of `level` (4..1; PAE: 3 is the PDPT). */
  private alloc(level: number): number {
    const p = this.next;
    if (p + PAGE_SIZE > MemoryMap.userProcesses) throw new Error('simulated loader: out of page-table space');
    this.next += PAGE_SIZE;
    this.mem.fill(0, p, p + PAGE_SIZE);
    this.tables.set(p / PAGE_SIZE, LEVEL_TYPES[level]);
    return p;
  }

  /** Indices of `va` from the top level down, and the slot of the leaf. */
  private indices(va: bigint): number[] {
    const i = (shift: bigint) => Number((va >> shift) & 0x1ffn);
    return this.long ? [i(39n), i(30n), i(21n), i(12n)] : [Number((va >> 30n) & 3n), i(21n), i(12n)];
  }

  /** Address of the leaf PTE for `va`, creating intermediate tables when `create`. */
  private leaf(va: bigint, create: boolean): number {
    const idx = this.indices(va);
    let table = this.root;
    for (let level = 0; level < idx.length - 1; level++) {
      const slot = table + idx[level] * 8;
      let e = this.mem.readUInt32LE(slot);
      if ((e & PTE_P) === 0) {
        if (!create) return -1;
        // PAE PDPTEs have no RW/US bits (they are reserved there).
        e = this.alloc(idx.length - level - 1) | PTE_P | (!this.long && level === 0 ? 0 : PTE_RW);
        this.mem.writeUInt32LE(e >>> 0, slot);
      }
      table = (e & 0xfffff000) >>> 0;
    }
    return table + idx[idx.length - 1] * 8;
  }

  /** Map `pages` 4 KiB pages from `va` to `pa` on; one table walk per L1 table, not per page. */
  map(va: bigint, pa: number, pages = 1, global = false): void {
    let slot = -1;
    for (let i = 0; i < pages; i++, pa += PAGE_SIZE) {
      const v = va + BigInt(i * PAGE_SIZE);
      if (slot < 0 || (v & 0x1fffffn) === 0n) slot = this.leaf(v, true);
      this.mem.writeUInt32LE((pa | PTE_P | PTE_RW | (global ? PTE_G : 0)) >>> 0, slot);
      this.mem.writeUInt32LE(0, slot + 4);
      slot += 8;
    }
  }

  /** Whether `va` has a present leaf entry. */
  mapped(va: bigint): boolean {
    const at = this.leaf(va, false);
    return at >= 0 && (this.mem.readUInt32LE(at) & PTE_P) !== 0;
  }
}

export interface VcpuStart {
  /** Initial stack pointer (top of the VCPU's stack, in the direct map). */
  rsp: bigint;
  /** The VCPU's per-cpu area (gs base in 64-bit guests); holds [vcpu number, self pointer]. */
  percpu: bigint;
}

export interface LoadedGuest {
  entry: bigint;
  /** cr3 for every VCPU: the L4 (64-bit) or the PDPT (32-bit PAE). */
  cr3: number;
  /** The page after the image's highest segment (the demo's _end). */
  imageEnd: bigint;
  /**
   * The first unmapped address after the image: the 2 MiB boundary after imageEnd
   * (64-bit), the end of the direct map (32-bit, whose image lies inside it).
   */
  mappedEnd: bigint;
  directMap: bigint;
  symbols: Map<string, bigint>;
  vcpus: VcpuStart[];
  /** The tables built, by frame, with their PV page types (SimDomain.pageTables). */
  pageTables: Map<number, number>;
}

function roundUp(v: bigint, to = BigInt(PAGE_SIZE)): bigint {
  return ((v + to - 1n) / to) * to;
}

/** Linux maps its image with 2 MiB pages: the mapping ends at the 2 MiB boundary after _end. */
const KERNEL_MAP_ALIGN = 0x200000n;

export function loadGuest(mem: Buffer, elf: ElfImage, nrVcpus: number): LoadedGuest {
  const long = elf.width === 64;
  const directMap = long ? MemoryMap.directMap64 : MemoryMap.directMap32;
  if (nrVcpus < 1 || nrVcpus > MemoryMap.maxVcpus) throw new Error(`simulated domain: 1..${MemoryMap.maxVcpus} VCPUs`);
  if (!elf.segments.length) throw new Error('guest image has no loadable segment');

  let imageEnd = 0n;
  let imageStart = elf.segments[0].vaddr;
  const offset = elf.segments[0].vaddr - elf.segments[0].paddr;
  for (const s of elf.segments) {
    if (s.vaddr - s.paddr !== offset) throw new Error('guest image: every segment must have the same virtual-to-physical offset (as a kernel image has)');
    const end = Number(s.paddr + s.memsz);
    if (s.paddr < BigInt(MemoryMap.imageMinPhys) || end > mem.length) {
      throw new Error(`guest segment at physical 0x${s.paddr.toString(16)}..0x${end.toString(16)} does not fit ` +
        `between 0x${MemoryMap.imageMinPhys.toString(16)} and the end of RAM (0x${mem.length.toString(16)})`);
    }
    const pa = Number(s.paddr);
    s.data.copy(mem, pa);
    mem.fill(0, pa + s.data.length, end);
    const vend = roundUp(s.vaddr + s.memsz);
    if (vend > imageEnd) imageEnd = vend;
    if (s.vaddr < imageStart) imageStart = s.vaddr;
  }
  imageStart -= imageStart % BigInt(PAGE_SIZE);

  const pt = new PageTableBuilder(mem, long);
  pt.map(directMap, 0, mem.length / PAGE_SIZE);
  // The kernel maps its own image as Linux does once booted (cleanup_highmap,
  // xen_cleanhighmap): text, rodata, data and bss in one contiguous range from its
  // first page to the 2 MiB boundary after its end (the rest of that is free RAM), and
  // nothing below it. A 32-bit image lies in the direct map, which covers it already.
  const ramEnd = BigInt(mem.length) + offset; // the virtual address of the end of RAM
  const aligned = roundUp(imageEnd, KERNEL_MAP_ALIGN);
  const kernelEnd = aligned < ramEnd ? aligned : ramEnd;
  pt.map(imageStart, Number(imageStart - offset), Number(kernelEnd - imageStart) / PAGE_SIZE, true);
  const top = long ? 1n << 64n : 1n << 32n;
  let mappedEnd = imageEnd;
  while (mappedEnd < top && pt.mapped(mappedEnd)) mappedEnd += BigInt(PAGE_SIZE);

  const vcpus: VcpuStart[] = [];
  for (let n = 0; n < nrVcpus; n++) {
    const area = MemoryMap.vcpuAreas + n * MemoryMap.vcpuAreaSize;
    const percpuPa = area + MemoryMap.stackSize;
    const percpu = directMap + BigInt(percpuPa);
    if (long) {
      mem.writeBigUInt64LE(BigInt(n), percpuPa);
      mem.writeBigUInt64LE(percpu, percpuPa + 8);
    } else {
      mem.writeUInt32LE(n, percpuPa);
      mem.writeUInt32LE(Number(percpu), percpuPa + 4);
    }
    vcpus.push({ rsp: directMap + BigInt(area + MemoryMap.stackSize), percpu });
  }

  const symbols = new Map<string, bigint>();
  for (const s of elf.symbols) if (!symbols.has(s.name)) symbols.set(s.name, s.value);
  return { entry: elf.entry, cr3: pt.root, imageEnd, mappedEnd, directMap, symbols, vcpus, pageTables: pt.tables };
}
