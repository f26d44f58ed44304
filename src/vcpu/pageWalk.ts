// x86 guest page-table walks over foreign-mapped frames, for reading guest virtual memory
// per VCPU without Xen's gdbsx_guestmemio (which always walks VCPU0's active table).
// Pure: the caller supplies the table frames (mapped and cached on its side).
//
// Modes: 2-level (32-bit entries, optional PSE/PSE-36 4 MiB pages), PAE, 4-level and
// 5-level (LA57). PV guests hold machine frames and cannot use superpages; HVM/PVH
// guests hold guest frames. Algorithm after xc_translate_foreign_address
// (tools/libs/ctrl/xc_pagetab.c), extended with LA57, PSE-36 and reserved-bit checks.
//
// Internally everything is a plain number: page numbers of a 64-bit address fit in 52
// bits and frame numbers in 40, both exact in a double, and BigInt work per page would
// dominate bulk reads. An entry is read as two u32 halves (lo, hi).

/** How the guest translates: derived from CR0/CR4/EFER (HVM/PVH) or from the PV ABI. */
export interface PagingMode {
  kind: 'none' | '2level' | 'pae' | '4level' | '5level';
  /** 2-level only: CR4.PSE (4 MiB pages). */
  pse: boolean;
  /**
   * Whether PS bits are honoured (HVM: at PDPTE (4/5-level) and PDE). PV: no, Xen's
   * L2_DISALLOW_MASK excludes PSE, so a PS entry is reported as a fault.
   */
  superpages: boolean;
  /** Entries hold machine frames (PV) or guest frames (HVM/PVH): informational, for the monitor text. */
  frames: 'mfn' | 'gfn';
}

const CR0_PG = 1n << 31n;
const CR4_PSE = 1n << 4n;
const CR4_PAE = 1n << 5n;
const CR4_LA57 = 1n << 12n;
const EFER_LMA = 1n << 10n;

/** The paging mode of an HVM/PVH VCPU from its control registers and EFER. */
export function pagingModeHvm(cr0: bigint, cr4: bigint, efer: bigint): PagingMode {
  const base = { pse: false, superpages: true, frames: 'gfn' as const };
  if ((cr0 & CR0_PG) === 0n) return { ...base, kind: 'none' };
  if ((efer & EFER_LMA) !== 0n) return { ...base, kind: (cr4 & CR4_LA57) !== 0n ? '5level' : '4level' };
  if ((cr4 & CR4_PAE) !== 0n) return { ...base, kind: 'pae' };
  return { ...base, kind: '2level', pse: (cr4 & CR4_PSE) !== 0n };
}

/** The paging mode of a PV guest of the given address size (XEN_DOMCTL_get_address_size). */
export function pagingModePv(width: 32 | 64): PagingMode {
  return { kind: width === 64 ? '4level' : 'pae', pse: false, superpages: false, frames: 'mfn' };
}

/**
 * A 32-bit PV guest's ctrlreg[3] in Xen's "extended cr3" form, (pfn<<12)|(pfn>>20) truncated
 * to 32 bits (so an L3 above 4 GiB fits), back to the byte address of the table.
 */
export function pv32Cr3ToAddr(v: bigint): bigint {
  const x = v & 0xffffffffn;
  const pfn = ((x >> 12n) | (x << 20n)) & 0xffffffffn;
  return pfn << 12n;
}

/**
 * The root table's frame and byte offset from a cr3 value. Low 12 bits are flags or the
 * PCID; PAE's PDPT is only 32-byte aligned, so it may sit inside a page.
 */
export function rootOf(mode: PagingMode, cr3: bigint): { frame: bigint; offset: number } {
  switch (mode.kind) {
    case 'none':
      return { frame: 0n, offset: 0 };
    case 'pae': {
      // Not truncated to 32 bits: a PV32 L3 (via pv32Cr3ToAddr) may lie above 4 GiB.
      const a = cr3 & 0x000fffffffffffe0n;
      return { frame: a >> 12n, offset: Number(a & 0xfe0n) };
    }
    case '2level':
      return { frame: (cr3 & 0xfffff000n) >> 12n, offset: 0 };
    default:
      return { frame: (cr3 & 0x000ffffffffff000n) >> 12n, offset: 0 };
  }
}

/** Linux PTI: the kernel PGD of a user cr3 (the user PGD is the kernel one + 4 KiB). */
export function kernelHalfCr3(cr3: bigint): bigint {
  return cr3 & ~0x1000n;
}

export interface WalkLevel {
  /** 5..1; PAE 3..1; 2-level 2..1. */
  level: number;
  index: number;
  tableFrame: bigint;
  /** Byte offset of the entry inside tableFrame (includes a PAE root's offset). */
  entryOffset: number;
  entry: bigint;
  /** Names of the set bits, e.g. "P RW US A D PS G NX". */
  flags: string;
}

export interface Translation {
  ok: boolean;
  /** Every entry read, top first. */
  levels: WalkLevel[];
  /** The 4 KiB frame holding va (for a large page: base frame + the 4K index inside it). */
  frame?: bigint;
  /** Byte offset of va inside that frame. */
  offset?: number;
  /** 4096, 2 MiB, 4 MiB or 1 GiB. */
  pageSize?: number;
  /** Effective rights: AND of RW/US, OR of NX over the levels that carry them. */
  writable?: boolean;
  user?: boolean;
  nx?: boolean;
  /** Why not, e.g. "not present at L3", "non-canonical address". */
  fault?: string;
}

export type ReadTable = (frame: bigint) => Buffer | undefined;

// ---------------------------------------------------------------------------------------
// Geometry of each mode.

const P2: number[] = Array.from({ length: 64 }, (_, i) => 2 ** i);

interface Geometry {
  /** Level number of the root table. */
  top: number;
  entryBytes: 4 | 8;
  /** Index bits per level (1-based; [0] unused). */
  idxBits: readonly number[];
  /** Page-number bit where each level's index starts. */
  shift: readonly number[];
  /** Page-number bits (va bits above 12) the walk consumes. */
  walkBits: number;
}

function geometry(entryBytes: 4 | 8, idxBits: number[]): Geometry {
  const shift = [0];
  let s = 0;
  for (let l = 1; l < idxBits.length; l++) {
    shift.push(s);
    s += idxBits[l];
  }
  return { top: idxBits.length - 1, entryBytes, idxBits, shift, walkBits: s };
}

const GEOMETRY: Record<Exclude<PagingMode['kind'], 'none'>, Geometry> = {
  '2level': geometry(4, [0, 10, 10]),
  pae: geometry(8, [0, 9, 9, 2]),
  '4level': geometry(8, [0, 9, 9, 9, 9]),
  '5level': geometry(8, [0, 9, 9, 9, 9, 9]),
};

function indexAt(g: Geometry, wp: number, level: number): number {
  // wp < 2^45, so the division is exact and the remainder fits in int32.
  return Math.floor(wp / P2[g.shift[level]]) % P2[g.idxBits[level]];
}

/** Address bits 12..51 of an 8-byte entry as a frame number. */
function frame8(lo: number, hi: number): number {
  return (hi & 0xfffff) * P2[20] + (lo >>> 12);
}

/** PV 64-bit L4 slots 256..271 map Xen itself; the guest can never access them. */
const XEN_L4_FIRST = 256;
const XEN_L4_END = 272;

function isPvXenSlot(mode: PagingMode, level: number, idx: number): boolean {
  return mode.frames === 'mfn' && mode.kind === '4level' && level === 4 && idx >= XEN_L4_FIRST && idx < XEN_L4_END;
}

type Decoded =
  | { k: 'np' }
  | { k: 'fault'; why: string }
  | { k: 'table'; frame: number }
  /** A page mapping: base 4K frame and how many 4K frames it spans. */
  | { k: 'page'; frame: number; pages: number };

const NOT_PRESENT: Decoded = { k: 'np' };

/**
 * What an entry at `level` means. Never throws: odd bits become a fault. L1 entries are
 * handled here too (bit 7 is PAT there, not PS).
 */
function decode(mode: PagingMode, g: Geometry, level: number, lo: number, hi: number): Decoded {
  if ((lo & 1) === 0) return NOT_PRESENT;
  if (level === 1) return { k: 'page', frame: g.entryBytes === 8 ? frame8(lo, hi) : lo >>> 12, pages: 1 };
  const ps = (lo & 0x80) !== 0;
  if (mode.kind === '2level') {
    // With CR4.PSE clear the PS bit is ignored and the entry names a page table.
    if (!ps || !mode.pse) return { k: 'table', frame: lo >>> 12 };
    if (!mode.superpages) return { k: 'fault', why: `superpage not allowed at L${level}` };
    // PSE-36 (40-bit form): entry bits 13..20 are physical address bits 32..39; bit 21 reserved.
    if ((lo & 0x200000) !== 0) return { k: 'fault', why: `reserved bits set at L${level}` };
    return { k: 'page', frame: ((lo >>> 13) & 0xff) * P2[20] + (lo >>> 22) * 1024, pages: 1024 };
  }
  if (!ps) return { k: 'table', frame: frame8(lo, hi) };
  // PS is reserved in PML5E/PML4E and in a PAE PDPTE.
  const largeOk = level === 2 || (level === 3 && mode.kind !== 'pae');
  if (!largeOk) return { k: 'fault', why: `reserved bit PS set at L${level}` };
  if (!mode.superpages) {
    return { k: 'fault', why: `superpage not allowed at L${level}${mode.frames === 'mfn' ? ' (PV)' : ''}` };
  }
  // Bit 12 is PAT; the bits between it and the page's alignment are reserved.
  if (level === 2) {
    if ((lo & 0x1fe000) !== 0) return { k: 'fault', why: `reserved bits set at L${level}` };
    return { k: 'page', frame: (hi & 0xfffff) * P2[20] + (lo >>> 21) * 512, pages: 512 };
  }
  if ((lo & 0x3fffe000) !== 0) return { k: 'fault', why: `reserved bits set at L${level}` };
  return { k: 'page', frame: (hi & 0xfffff) * P2[20] + (lo >>> 30) * P2[18], pages: P2[18] };
}

/** Whether this level's RW/US/NX take part in the effective rights (a PAE PDPTE has none). */
function carriesRights(mode: PagingMode, level: number): boolean {
  return !(mode.kind === 'pae' && level === 3);
}

function flagNames(entryBytes: 4 | 8, level: number, lo: number, hi: number): string {
  const names: string[] = [];
  if (lo & 0x1) names.push('P');
  if (lo & 0x2) names.push('RW');
  if (lo & 0x4) names.push('US');
  if (lo & 0x8) names.push('PWT');
  if (lo & 0x10) names.push('PCD');
  if (lo & 0x20) names.push('A');
  if (lo & 0x40) names.push('D');
  if (lo & 0x80) names.push(level === 1 ? 'PAT' : 'PS');
  if (lo & 0x100) names.push('G');
  if (entryBytes === 8 && (hi & 0x80000000) !== 0) names.push('NX');
  return names.join(' ');
}

/** Page-number range [lo, hi] of canonical addresses and the offset to subtract to get walk-space pages. */
interface Segment {
  first: number;
  last: number;
  delta: number;
}

const PAGES_64 = P2[52];
const PAGES_32 = P2[20];

/** The canonical (or, for 32-bit modes, below-4-GiB) page-number ranges of a mode. */
function segments(mode: PagingMode): Segment[] {
  if (mode.kind === 'none' || mode.kind === '2level' || mode.kind === 'pae') {
    return [{ first: 0, last: PAGES_32 - 1, delta: 0 }];
  }
  // Canonical: va bits 47..63 (4-level) or 56..63 (5-level) all equal. The upper half
  // walks as if the sign-extension bits were cut off.
  const wb = GEOMETRY[mode.kind].walkBits;
  const half = P2[wb - 1];
  return [
    { first: 0, last: half - 1, delta: 0 },
    { first: PAGES_64 - half, last: PAGES_64 - 1, delta: PAGES_64 - P2[wb] },
  ];
}

function segmentOf(mode: PagingMode, page: number): Segment | undefined {
  for (const s of segments(mode)) if (page >= s.first && page <= s.last) return s;
  return undefined;
}

const TWO64 = 1n << 64n;

function hex(v: bigint | number): string {
  return '0x' + v.toString(16);
}

// ---------------------------------------------------------------------------------------
// Single address.

/**
 * Translate one virtual address. readTable(frame) returns the 4096 bytes of a table frame,
 * or undefined when it cannot be mapped (the walk then faults naming the level).
 */
export function translate(
  mode: PagingMode, root: { frame: bigint; offset: number }, va: bigint, readTable: ReadTable,
): Translation {
  const levels: WalkLevel[] = [];
  const fail = (fault: string): Translation => ({ ok: false, levels, fault });
  if (va < 0n || va >= TWO64) return fail('address out of range');
  const page = Number(va >> 12n);
  const offset = Number(va & 0xfffn);
  const seg = segmentOf(mode, page);
  if (!seg) return fail(mode.kind === '4level' || mode.kind === '5level' ? 'non-canonical address' : 'address above 4 GiB in a 32-bit mode');
  if (mode.kind === 'none') {
    return { ok: true, levels, frame: BigInt(page), offset, pageSize: 4096, writable: true, user: true, nx: false };
  }
  const g = GEOMETRY[mode.kind];
  const wp = page - seg.delta;
  if (root.frame < 0n || root.frame > BigInt(Number.MAX_SAFE_INTEGER)) return fail('root frame out of range');
  let table = Number(root.frame);
  let base = root.offset;
  let writable = true;
  let user = true;
  let nx = false;
  for (let level = g.top; level >= 1; level--) {
    const idx = indexAt(g, wp, level);
    const off = base + idx * g.entryBytes;
    const tableFrame = BigInt(table);
    const buf = readTable(tableFrame);
    if (!buf || off < 0 || buf.length < off + g.entryBytes) {
      return fail(`cannot read L${level} table (frame ${hex(table)})`);
    }
    const lo = buf.readUInt32LE(off);
    const hi = g.entryBytes === 8 ? buf.readUInt32LE(off + 4) : 0;
    levels.push({
      level, index: idx, tableFrame, entryOffset: off,
      entry: g.entryBytes === 8 ? (BigInt(hi) << 32n) | BigInt(lo) : BigInt(lo),
      flags: flagNames(g.entryBytes, level, lo, hi),
    });
    if (isPvXenSlot(mode, level, idx)) return fail(`L4 slot ${idx} belongs to Xen (PV)`);
    const d = decode(mode, g, level, lo, hi);
    if (d.k === 'np') return fail(`not present at L${level}`);
    if (d.k === 'fault') return fail(d.why);
    if (carriesRights(mode, level)) {
      writable &&= (lo & 2) !== 0;
      user &&= (lo & 4) !== 0;
      nx ||= g.entryBytes === 8 && (hi & 0x80000000) !== 0;
    }
    if (d.k === 'page') {
      const inner = wp % d.pages;
      return {
        ok: true, levels, frame: BigInt(d.frame + inner), offset, pageSize: d.pages * 4096, writable, user, nx,
      };
    }
    table = d.frame;
    base = 0;
  }
  return fail('walk did not end in a page'); // unreachable: level 1 always decodes to a page or not-present
}

// ---------------------------------------------------------------------------------------
// Ranges.

interface RangeCtx {
  mode: PagingMode;
  g: Geometry;
  readTable: ReadTable;
  out: (bigint | undefined)[];
  /** out index = walk-space page - outBase. */
  outBase: number;
}

/**
 * Fill ctx.out for walk-space pages [first, last], all inside the table at `level`
 * (bytes `buf`, entries from byte `base`) whose first page is `tableStart`.
 */
function fillRange(ctx: RangeCtx, level: number, buf: Buffer, base: number, tableStart: number, first: number, last: number): void {
  const { g, out, outBase } = ctx;
  const eb = g.entryBytes;
  const span = P2[g.shift[level]];
  const i0 = Math.floor((first - tableStart) / span);
  // A short buffer leaves the entries past its end unmapped, as translate() faults on them.
  const i1 = Math.min(Math.floor((last - tableStart) / span), Math.floor((buf.length - base) / eb) - 1);
  if (i1 < i0) return;
  if (level === 1) {
    // Hot loop: consecutive PTEs of one table, no allocation beyond the result BigInt.
    const end = tableStart + i1;
    let off = base + i0 * eb;
    for (let p = first; p <= end; p++, off += eb) {
      const lo = buf.readUInt32LE(off);
      if ((lo & 1) === 0) continue;
      out[p - outBase] = BigInt(eb === 8 ? frame8(lo, buf.readUInt32LE(off + 4)) : lo >>> 12);
    }
    return;
  }
  for (let i = i0; i <= i1; i++) {
    const off = base + i * eb;
    const lo = buf.readUInt32LE(off);
    if ((lo & 1) === 0) continue;
    if (isPvXenSlot(ctx.mode, level, i)) continue;
    const d = decode(ctx.mode, g, level, lo, eb === 8 ? buf.readUInt32LE(off + 4) : 0);
    const entryStart = tableStart + i * span;
    const a = Math.max(first, entryStart);
    const b = Math.min(last, entryStart + span - 1);
    if (d.k === 'page') {
      for (let p = a; p <= b; p++) out[p - outBase] = BigInt(d.frame + (p - entryStart));
    } else if (d.k === 'table') {
      const child = ctx.readTable(BigInt(d.frame));
      if (child) fillRange(ctx, level - 1, child, 0, entryStart, a, b);
    }
  }
}

/**
 * The frame of each 4 KiB page overlapping [va, va+len) (undefined where unmapped or
 * invalid, exactly where translate() faults), sharing table reads across pages.
 */
export function translateRange(
  mode: PagingMode, root: { frame: bigint; offset: number }, va: bigint, len: number, readTable: ReadTable,
): (bigint | undefined)[] {
  if (!Number.isFinite(len) || len < 1) return [];
  const endVa = va + BigInt(Math.floor(len)) - 1n;
  const count = Number((endVa >> 12n) - (va >> 12n) + 1n);
  const out = new Array<bigint | undefined>(count).fill(undefined);
  if (va < 0n || va >= TWO64) return out;
  const p0 = Number(va >> 12n);
  const pLast = Math.min(p0 + count - 1, PAGES_64 - 1); // pages past 2^64 stay unmapped (no wrap)
  const rootBuf = mode.kind === 'none' ? undefined : readTable(root.frame);
  for (const s of segments(mode)) {
    const a = Math.max(p0, s.first);
    const b = Math.min(pLast, s.last);
    if (a > b) continue;
    if (mode.kind === 'none') {
      for (let p = a; p <= b; p++) out[p - p0] = BigInt(p);
      continue;
    }
    if (!rootBuf) return out;
    const g = GEOMETRY[mode.kind];
    const ctx: RangeCtx = { mode, g, readTable, out, outBase: p0 - s.delta };
    fillRange(ctx, g.top, rootBuf, root.offset, 0, a - s.delta, b - s.delta);
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Monitor text.

const MODE_NAMES: Record<PagingMode['kind'], string> = {
  none: 'paging off', '2level': '2-level', pae: 'PAE', '4level': '4-level', '5level': '5-level',
};

function sizeName(bytes: number): string {
  if (bytes >= P2[30]) return `${bytes / P2[30]} GiB`;
  if (bytes >= P2[20]) return `${bytes / P2[20]} MiB`;
  return `${bytes / 1024} KiB`;
}

/** Human-readable lines for `monitor translate`. */
export function formatTranslation(va: bigint, mode: PagingMode, cr3: bigint, t: Translation): string {
  const frames = mode.frames === 'mfn' ? 'MFNs' : 'GFNs';
  const paName = mode.frames === 'mfn' ? 'maddr' : 'gpa';
  let modeText = MODE_NAMES[mode.kind];
  if (mode.kind === '2level' && mode.pse) modeText += ' PSE';
  if (mode.kind !== 'none') modeText += `, entries hold ${frames}`;
  const lines = [`translate ${hex(va)} (${modeText}), cr3 ${hex(cr3)}`];
  if (mode.kind !== 'none') {
    const g = GEOMETRY[mode.kind];
    const width = g.entryBytes * 2;
    for (const l of t.levels) {
      const lo = Number(l.entry & 0xffffffffn);
      const hi = Number(l.entry >> 32n);
      const d = decode(mode, g, l.level, lo, hi);
      let what: string;
      if (d.k === 'np') what = 'not present';
      else if (d.k === 'fault') what = d.why;
      else if (d.k === 'table') what = `table ${hex(d.frame)}`;
      else what = `${sizeName(d.pages * 4096)} page ${hex(d.frame)}`;
      const head = `L${l.level}[${l.index}]`.padEnd(8);
      lines.push(
        `  ${head} frame ${hex(l.tableFrame)} +${hex(l.entryOffset).padStart(5)} = ` +
        `${l.entry.toString(16).padStart(width, '0')}  ${l.flags.padEnd(24)} -> ${what}`,
      );
    }
  }
  if (t.ok && t.frame !== undefined && t.offset !== undefined && t.pageSize !== undefined) {
    const pa = (t.frame << 12n) | BigInt(t.offset);
    const rights = [t.writable ? 'writable' : 'read-only', t.user ? 'user' : 'supervisor'];
    if (t.nx) rights.push('NX');
    lines.push(`  => frame ${hex(t.frame)} offset ${hex(t.offset)}: ${paName} ${hex(pa)}, ${sizeName(t.pageSize)} page, ${rights.join(', ')}`);
  } else {
    lines.push(`  => fault: ${t.fault ?? 'unknown'}`);
  }
  return lines.join('\n');
}
