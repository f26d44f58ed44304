// The guest kernel's own symbol table, read out of its memory: Linux's compressed
// kallsyms (kernel/kallsyms_internal.h). Found the way vmlinux-to-elf finds it, by
// its shape: kallsyms_token_index is 256 increasing u16 offsets into
// kallsyms_token_table (256 NUL-terminated strings) right before it; kallsyms_markers
// (the offset of every 256th name) and kallsyms_names come before the token table,
// kallsyms_num_syms right before the names. The addresses are s32 offsets from
// kallsyms_relative_base, either before num_syms (up to Linux 6.3) or after the token
// index (later kernels); of the encodings (relative, or "absolute percpu" where a
// non-negative offset is absolute) the one that gives sorted kernel-text addresses wins.
import createDebug from 'debug';
import { Hypercalls } from '../xg/hypercalls';
import { XenError } from '../xg/errors';
import { PageWalkMemory, WalkRoot } from '../vcpu/pageWalkMemory';
import { DomainSampler } from './sampler';
import { Sym, SymbolTable } from './symbols';

/** Random access to guest virtual memory. */
export interface MemReader {
  /** Up to `len` bytes at `addr` (the readable prefix). */
  read(addr: bigint, len: number): Buffer;
  /** The first mapped address at or after `addr` and below `limit`, if any. */
  nextMapped(addr: bigint, limit: bigint): bigint | undefined;
}

export interface KallsymsTables {
  numSyms: number;
  names: bigint;
  markers: bigint;
  tokenTable: bigint;
  tokenIndex: bigint;
  offsets: bigint;
  relativeBase: bigint;
}

const log = createDebug('gdbsx:kallsyms');
const ALIGN = 8;
const alignUp = (v: bigint, a = ALIGN) => (v + BigInt(a - 1)) & ~BigInt(a - 1);

/** The 256 tokens of a token table whose index is `idx`, or undefined if `tab` at `start` is not one. */
function tokensAt(tab: Buffer, start: number, idx: number[]): string[] | undefined {
  const out: string[] = [];
  for (let i = 0; i < 256; i++) {
    const a = start + idx[i];
    const end = i < 255 ? start + idx[i + 1] - 1 : tab.indexOf(0, a);
    if (end < a || end >= tab.length || tab[end] !== 0) return undefined;
    const nul = tab.indexOf(0, a);
    if (nul !== end) return undefined;
    out.push(tab.toString('latin1', a, end));
  }
  return out;
}

/** A token index at `off` of `b`: 256 u16, the first 0, increasing by less than 256. */
function looksLikeTokenIndex(b: Buffer, off: number): number[] | undefined {
  if (off + 512 > b.length || b.readUInt16LE(off) !== 0) return undefined;
  const idx = [0];
  for (let i = 1; i < 256; i++) {
    const v = b.readUInt16LE(off + 2 * i);
    const d = v - idx[i - 1];
    if (d < 2 || d > 255) return undefined;
    idx.push(v);
  }
  return idx;
}

/** Expand one name entry at `pos`: [type letter + name, bytes used]. */
function expand(names: Buffer, pos: number, tokens: string[]): [string, number] | undefined {
  if (pos >= names.length) return undefined;
  let len = names[pos];
  let head = 1;
  if (len & 0x80) {
    // "Big symbols" (Linux 6.1+): a second length byte.
    if (pos + 1 >= names.length) return undefined;
    len = (len & 0x7f) | (names[pos + 1] << 7);
    head = 2;
  }
  if (len === 0 || pos + head + len > names.length) return undefined;
  let s = '';
  for (let i = 0; i < len; i++) s += tokens[names[pos + head + i]];
  return [s, head + len];
}

/** Entry starts from `pos` over `count` entries (lengths only); undefined if they overrun. */
function skipEntries(names: Buffer, pos: number, count: number): number | undefined {
  for (let i = 0; i < count; i++) {
    if (pos >= names.length) return undefined;
    let len = names[pos];
    let head = 1;
    if (len & 0x80) {
      len = (len & 0x7f) | ((names[pos + 1] ?? 0) << 7);
      head = 2;
    }
    if (len === 0) return undefined;
    pos += head + len;
  }
  return pos <= names.length ? pos : undefined;
}

interface Found {
  tokenIndexAt: bigint;
  tokens: string[];
  tokenTableAt: bigint;
}

/** Scan [from, to) for the token table and index. */
function findTokens(m: MemReader, from: bigint, to: bigint): Found | undefined {
  const CHUNK = 1 << 21;
  const OVERLAP = 8192;
  for (let at = m.nextMapped(from, to); at !== undefined && at < to;) {
    const b = m.read(at, CHUNK + OVERLAP);
    for (let off = 0; off + 512 <= b.length; off += ALIGN) {
      // Quick reject before the full check.
      if (b[off] !== 0 || b[off + 1] !== 0) continue;
      const idx = looksLikeTokenIndex(b, off);
      if (!idx) continue;
      // The token table ends just before the index (padded to ALIGN): try each start.
      for (let start = off - idx[255] - 2; start >= Math.max(0, off - idx[255] - 2 - 255 - ALIGN); start--) {
        const tokens = tokensAt(b, start, idx);
        if (!tokens) continue;
        const end = start + idx[255] + tokens[255].length + 1;
        if (end > off || off - end >= ALIGN) continue;
        return { tokenIndexAt: at + BigInt(off), tokens, tokenTableAt: at + BigInt(start) };
      }
    }
    const n = b.length > OVERLAP ? b.length - OVERLAP : b.length;
    const next = at + BigInt(Math.max(n, 4096));
    at = b.length < CHUNK + OVERLAP ? m.nextMapped(alignUp(at + BigInt(b.length), 4096), to) : m.nextMapped(next, to);
  }
  return undefined;
}

/**
 * kallsyms_markers candidates before the token table: an array starting at 0 whose
 * steps are those of 256 names each, ending right before the token table or before
 * kallsyms_seqs_of_names (3 bytes per symbol, Linux 6.2+ and some 6.1 stable kernels).
 */
function markerCandidates(m: MemReader, tokenTableAt: bigint): { at: bigint; markers: number[] }[] {
  const out: { at: bigint; markers: number[] }[] = [];
  const span = 1 << 23;
  const base = tokenTableAt - BigInt(span);
  const b = m.read(base, span);
  if (b.length !== span) return out;
  for (const w of [4, 8]) {
    const at = (p: number) => (w === 4 ? b.readUInt32LE(p) : Number(b.readBigUInt64LE(p)));
    for (let p = 0; p + 2 * w <= span; p += w) {
      if (at(p) !== 0) continue;
      // Each step covers 256 entries of at least 2 bytes and at most ~300.
      const vals = [0];
      for (let q = p + w; q + w <= span; q += w) {
        const d = at(q) - vals[vals.length - 1];
        if (d < 512 || d > 256 * 300) break;
        vals.push(at(q));
      }
      if (vals.length < 2) continue;
      const gap = span - (p + vals.length * w);
      const n = vals.length;
      const plain = gap < ALIGN;
      const seqs = gap >= 3 * 256 * (n - 1) && gap <= 3 * 256 * n + 2 * ALIGN;
      if (plain || seqs) out.push({ at: base + BigInt(p), markers: vals });
    }
  }
  // A table of at most 256 symbols has the one marker 0, right before the token table.
  for (let pad = 0; pad < ALIGN; pad += 4) {
    const p = span - pad - 4;
    if (b.readUInt32LE(p) === 0) out.push({ at: base + BigInt(p), markers: [0] });
  }
  return out;
}

export interface Decoded {
  tables: KallsymsTables;
  entries: { type: string; name: string }[];
}

/** Names, num_syms and markers, given the tokens. */
function findNames(m: MemReader, f: Found): Decoded | undefined {
  for (const mk of markerCandidates(m, f.tokenTableAt)) {
    log('markers candidate at 0x%s: %d, last %d', mk.at.toString(16), mk.markers.length, mk.markers[mk.markers.length - 1]);
    const last = mk.markers[mk.markers.length - 1];
    const count = mk.markers.length;
    // The names run from X to the markers; entry 256k starts at X + markers[k]. Read
    // everything from the lowest X we accept.
    const window = 256 * 600;
    const lo = mk.at - BigInt(last) - BigInt(window);
    const buf = m.read(lo, Number(mk.at - lo));
    if (buf.length !== Number(mk.at - lo)) continue;
    const namesEnd = buf.length;
    for (let x = namesEnd - last; x >= 8; x--) {
      if ((lo + BigInt(x)) % BigInt(ALIGN) !== 0n) continue;
      const n = buf.readUInt32LE(x - 8);
      if (n === 0 || Math.ceil(n / 256) !== count) continue;
      const names = buf.subarray(x, namesEnd);
      // Every marker must land on an entry boundary.
      let pos: number | undefined = 0;
      let ok = true;
      for (let k = 1; k < count && ok && pos !== undefined; k++) {
        pos = skipEntries(names, pos, 256);
        ok = pos === mk.markers[k];
      }
      if (!ok || pos === undefined) continue;
      const end = skipEntries(names, pos, n - 256 * (count - 1));
      if (end === undefined || names.length - end >= ALIGN) continue;
      const entries: { type: string; name: string }[] = [];
      for (let i = 0, p = 0; i < n; i++) {
        const e = expand(names, p, f.tokens);
        if (!e) return undefined;
        entries.push({ type: e[0][0], name: e[0].slice(1) });
        p += e[1];
      }
      const namesAt = lo + BigInt(x);
      return {
        entries,
        tables: { numSyms: n, names: namesAt, markers: mk.at, tokenTable: f.tokenTableAt, tokenIndex: f.tokenIndexAt, offsets: 0n, relativeBase: 0n },
      };
    }
  }
  return undefined;
}

const TEXT = new Set(['t', 'T', 'w', 'W']);

/** Addresses of the symbols: the layout and encoding under which the text symbols are sorted kernel addresses. */
function findAddresses(m: MemReader, d: Decoded, kernelFrom: bigint): bigint[] | undefined {
  const n = d.tables.numSyms;
  const numSymsAt = d.tables.names - 8n;
  const layouts = [
    // Up to 6.3: offsets, relative_base, num_syms.
    { relBase: numSymsAt - 8n, offsets: numSymsAt - 8n - alignUp(BigInt(4 * n)) },
    // Later: token_index, offsets, relative_base.
    { offsets: alignUp(d.tables.tokenIndex + 512n), relBase: alignUp(alignUp(d.tables.tokenIndex + 512n) + BigInt(4 * n)) },
  ];
  let best: { score: number; addrs: bigint[]; offsets: bigint; relBase: bigint } | undefined;
  for (const l of layouts) {
    const ob = m.read(l.offsets, 4 * n);
    const rb = m.read(l.relBase, 8);
    if (ob.length !== 4 * n || rb.length !== 8) continue;
    const base = rb.readBigUInt64LE();
    if (base < kernelFrom) continue;
    for (const absPercpu of [true, false]) {
      const addrs: bigint[] = [];
      for (let i = 0; i < n; i++) {
        const o = ob.readInt32LE(4 * i);
        addrs.push(absPercpu ? (o >= 0 ? BigInt(o) : base - 1n - BigInt(o)) : base + BigInt(o >>> 0));
      }
      // Score: text symbols in the kernel window, in ascending order.
      let score = 0;
      let prev = 0n;
      for (let i = 0; i < n; i++) {
        if (!TEXT.has(d.entries[i].type)) continue;
        if (addrs[i] >= kernelFrom && addrs[i] >= prev) score++;
        prev = addrs[i];
      }
      if (!best || score > best.score) best = { score, addrs, offsets: l.offsets, relBase: l.relBase };
    }
  }
  const text = d.entries.filter((e) => TEXT.has(e.type)).length;
  log('addresses: best score %d of %d text symbols', best?.score ?? 0, text);
  if (!best || best.score < 0.99 * text) return undefined;
  d.tables.offsets = best.offsets;
  d.tables.relativeBase = best.relBase;
  return best.addrs;
}

/** Find and decode kallsyms in [from, to) of guest memory. */
export function findKallsyms(m: MemReader, from: bigint, to: bigint, kernelFrom = from): { table: SymbolTable; tables: KallsymsTables } | undefined {
  const f = findTokens(m, from, to);
  if (!f) return undefined;
  log('token table at 0x%s, index at 0x%s', f.tokenTableAt.toString(16), f.tokenIndexAt.toString(16));
  const d = findNames(m, f);
  if (!d) return undefined;
  log('%d names at 0x%s, markers at 0x%s', d.tables.numSyms, d.tables.names.toString(16), d.tables.markers.toString(16));
  const addrs = findAddresses(m, d, kernelFrom);
  if (!addrs) return undefined;
  const syms: Sym[] = [];
  d.entries.forEach((e, i) => {
    if (TEXT.has(e.type)) syms.push({ addr: addrs[i], name: e.name, size: 0 });
  });
  return {
    table: new SymbolTable(`the guest's kallsyms at 0x${d.tables.names.toString(16)}`, syms),
    tables: d.tables,
  };
}

/** A MemReader over our page walk from one root (kernel addresses). */
export class WalkReader implements MemReader {
  readonly mem: PageWalkMemory;

  constructor(hc: Hypercalls, domid: number, width: 32 | 64, root: WalkRoot) {
    this.mem = new PageWalkMemory(hc, domid, width, () => root);
  }

  read(addr: bigint, len: number): Buffer {
    const b = Buffer.alloc(len);
    try {
      return b.subarray(0, this.mem.read(addr, b, { vcpu: 0, pgd3: 0n }));
    } catch (e) {
      if (e instanceof XenError) return Buffer.alloc(0);
      throw e;
    }
  }

  nextMapped(addr: bigint, limit: bigint): bigint | undefined {
    const sizes = [0n, 1n << 12n, 1n << 21n, 1n << 30n, 1n << 39n, 1n << 48n];
    for (let a = addr; a < limit;) {
      const { t } = this.mem.explain(a, { vcpu: 0, pgd3: 0n });
      if (t.ok) return a;
      const level = t.levels.length ? t.levels[t.levels.length - 1].level : 5;
      const step = sizes[level] ?? 1n << 12n;
      a = (a & ~(step - 1n)) + step;
    }
    return undefined;
  }

  close(): void {
    this.mem.release();
  }
}

/** Linux x86_64: the kernel image lies in the 1 GiB above __START_KERNEL_map (KASLR included). */
export const KERNEL_WINDOW_64 = { from: 0xffffffff80000000n, to: 0xffffffffc0000000n };

/** The running guest's kallsyms, or why not. */
export function kallsymsFromGuest(sampler: DomainSampler): { table?: SymbolTable; note: string } {
  if (sampler.width !== 64) return { note: 'finding kallsyms in guest memory is done for 64-bit guests only' };
  const root = sampler.kernelRoot();
  if (!root) return { note: 'no VCPU is up to read memory through' };
  const r = new WalkReader(sampler.xc.hc, sampler.domid, sampler.width, root);
  try {
    const k = findKallsyms(r, KERNEL_WINDOW_64.from, KERNEL_WINDOW_64.to);
    if (!k) return { note: 'no kallsyms tables found in the kernel image in guest memory' };
    return { table: k.table, note: `${k.table.source} (${k.table.size} functions, read from guest memory)` };
  } catch (e) {
    if (e instanceof XenError) return { note: `guest memory could not be read (${e.message})` };
    throw e;
  } finally {
    r.close();
  }
}
