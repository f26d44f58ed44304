// Kernel symbols for naming sampled addresses: a sorted table with a binary-search
// lookup, filled from a System.map, an ELF's .symtab (a vmlinux, or the lab's
// kallsyms.elf) or the guest's own kallsyms tables (kallsyms.ts).
import fs from 'fs';
import { UserError } from '../xg/errors';

export interface Sym {
  addr: bigint;
  name: string;
  /** 0 when unknown (System.map, kallsyms): the symbol then reaches the next one. */
  size: number;
}

/** A symbol with no size that is this far from the next one (or the last one) is not trusted beyond it. */
const MAX_UNSIZED = 1 << 20;

/** Names the linker gives section boundaries, not functions. */
const SECTION_MARKER = /^(_text|_stext|_etext|_sinittext|_einittext|_sdata|_edata|_end|__bss_start|__bss_stop|__init_begin|__init_end|__start_rodata|__end_rodata)$/;

export class SymbolTable {
  readonly source: string;
  private readonly syms: Sym[];

  constructor(source: string, syms: Sym[]) {
    this.source = source;
    // Sorted by address; of several names at one address the first given wins. The
    // linker's section markers are not functions (_text is startup_64's address in Linux,
    // _etext would name whatever follows the text): left out.
    const seen = new Set<bigint>();
    this.syms = syms.filter((s) => !SECTION_MARKER.test(s.name)).sort((a, b) => (a.addr < b.addr ? -1 : a.addr > b.addr ? 1 : 0)).filter((s) => {
      if (seen.has(s.addr)) return false;
      seen.add(s.addr);
      return true;
    });
  }

  get size(): number {
    return this.syms.length;
  }

  /** All symbols, ascending. */
  all(): readonly Sym[] {
    return this.syms;
  }

  /** Address of `name`, if present. */
  addressOf(name: string): bigint | undefined {
    return this.syms.find((s) => s.name === name)?.addr;
  }

  /** The symbol `addr` falls in, and the offset into it. */
  lookup(addr: bigint): { sym: Sym; offset: bigint } | undefined {
    const s = this.syms;
    let lo = 0;
    let hi = s.length - 1;
    let at = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (s[mid].addr <= addr) {
        at = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    if (at < 0) return undefined;
    const sym = s[at];
    const offset = addr - sym.addr;
    if (sym.size > 0) return offset < BigInt(sym.size) ? { sym, offset } : undefined;
    const next = s[at + 1];
    if (next && addr >= next.addr) return undefined;
    return offset < BigInt(MAX_UNSIZED) ? { sym, offset } : undefined;
  }

  /** The function name for `addr`, or undefined outside every symbol. */
  nameOf(addr: bigint): string | undefined {
    return this.lookup(addr)?.sym.name;
  }
}

/** Type letters of code symbols in System.map and kallsyms (text, weak text). */
const TEXT_TYPES = new Set(['t', 'T', 'w', 'W']);

/** `hexaddr type name [module]` lines (System.map, /proc/kallsyms): the text symbols. */
export function parseSystemMap(text: string, source = 'System.map'): SymbolTable {
  const syms: Sym[] = [];
  let lines = 0;
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 3 || f[0] === '') continue;
    if (!/^[0-9a-fA-F]{1,16}$/.test(f[0]) || f[1].length !== 1) {
      throw new UserError(`${source}: line ${lines + 1} is not "address type name": '${line.slice(0, 80)}'`);
    }
    lines++;
    if (!TEXT_TYPES.has(f[1])) continue;
    const addr = BigInt('0x' + f[0]);
    if (addr === 0n) continue;
    syms.push({ addr, name: f[2], size: 0 });
  }
  if (syms.length === 0) throw new UserError(`${source}: no text symbols (is it a System.map? addresses all zero?)`);
  return new SymbolTable(source, syms);
}

const ELF_MAGIC = 0x464c457f;
const SHT_SYMTAB = 2;
const SHF_EXECINSTR = 4;
const STT_NOTYPE = 0;
const STT_FUNC = 2;
const SHN_UNDEF = 0;
const SHN_LORESERVE = 0xff00;

/**
 * The functions of an ELF's .symtab: STT_FUNC symbols, and untyped ones in an executable
 * section (what the lab's kallsyms.elf has). 32- and 64-bit little-endian.
 */
export function parseElfSymbols(buf: Buffer, source = 'ELF'): SymbolTable {
  const bad = (why: string): never => {
    throw new UserError(`${source}: not a usable ELF symbol file (${why})`);
  };
  if (buf.length < 52 || buf.readUInt32LE(0) !== ELF_MAGIC) bad('no ELF header');
  const is64 = buf[4] === 2;
  if (buf[5] !== 1) bad('not little-endian');
  const u = (off: number, n: 2 | 4 | 8): number => {
    if (off + n > buf.length) bad('truncated');
    return n === 2 ? buf.readUInt16LE(off) : n === 4 ? buf.readUInt32LE(off) : Number(buf.readBigUInt64LE(off));
  };
  const shoff = is64 ? u(0x28, 8) : u(0x20, 4);
  const shentsize = is64 ? u(0x3a, 2) : u(0x2e, 2);
  const shnum = is64 ? u(0x3c, 2) : u(0x30, 2);
  interface Sh { type: number; flags: number; offset: number; size: number; link: number; entsize: number }
  const sh: Sh[] = [];
  for (let i = 0; i < shnum; i++) {
    const o = shoff + i * shentsize;
    sh.push(is64
      ? { type: u(o + 4, 4), flags: u(o + 8, 8), offset: u(o + 0x18, 8), size: u(o + 0x20, 8), link: u(o + 0x28, 4), entsize: u(o + 0x38, 8) }
      : { type: u(o + 4, 4), flags: u(o + 8, 4), offset: u(o + 0x10, 4), size: u(o + 0x14, 4), link: u(o + 0x18, 4), entsize: u(o + 0x24, 4) });
  }
  const symtab = sh.find((s) => s.type === SHT_SYMTAB);
  if (!symtab) bad('no .symtab: a stripped file; give the vmlinux with symbols, or a System.map');
  const strtab = sh[(symtab as Sh).link] ?? bad('no string table');
  const ent = (symtab as Sh).entsize || (is64 ? 24 : 16);
  const syms: Sym[] = [];
  for (let o = (symtab as Sh).offset; o + ent <= (symtab as Sh).offset + (symtab as Sh).size; o += ent) {
    const nameOff = u(o, 4);
    const info = is64 ? buf[o + 4] : buf[o + 12];
    const shndx = is64 ? u(o + 6, 2) : u(o + 14, 2);
    const value = is64 ? buf.readBigUInt64LE(o + 8) : BigInt(u(o + 4, 4));
    const size = is64 ? u(o + 16, 8) : u(o + 8, 4);
    const type = info & 0xf;
    if (shndx === SHN_UNDEF || shndx >= SHN_LORESERVE || value === 0n) continue;
    const exec = (sh[shndx]?.flags ?? 0) & SHF_EXECINSTR;
    if (!(type === STT_FUNC || (type === STT_NOTYPE && exec))) continue;
    const start = strtab.offset + nameOff;
    const end = buf.indexOf(0, start);
    if (end < 0) bad('unterminated symbol name');
    const name = buf.toString('latin1', start, end);
    if (!name || name.startsWith('$')) continue;
    syms.push({ addr: value, name, size });
  }
  if (syms.length === 0) bad('no function symbols');
  return new SymbolTable(source, syms);
}

/** Load --vmlinux (ELF) or --system-map; one clear error if the file cannot be read or is neither. */
export function loadSymbolFile(file: string, kind: 'vmlinux' | 'system-map'): SymbolTable {
  let data: Buffer;
  try {
    data = fs.readFileSync(file);
  } catch (e) {
    throw new UserError(`cannot read symbol file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (kind === 'vmlinux') return parseElfSymbols(data, file);
  return parseSystemMap(data.toString('latin1'), file);
}
