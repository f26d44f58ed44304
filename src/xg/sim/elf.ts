// Just enough ELF (32 and 64-bit little-endian x86) for the simulated loader:
// loadable segments, the entry point and the symbol table.

export interface ElfSegment {
  vaddr: bigint;
  paddr: bigint;
  /** Bytes from the file; the rest up to memsz is zero (bss). */
  data: Buffer;
  memsz: bigint;
}

export interface ElfSymbol {
  name: string;
  value: bigint;
  size: bigint;
  /** STT_* (0 notype, 1 object, 2 func, ...). */
  type: number;
}

export interface ElfImage {
  width: 32 | 64;
  entry: bigint;
  segments: ElfSegment[];
  symbols: ElfSymbol[];
}

const PT_LOAD = 1;
const SHT_SYMTAB = 2;
const EM_386 = 3;
const EM_X86_64 = 62;

export function parseElf(file: Buffer, what = 'ELF image'): ElfImage {
  if (file.length < 52 || file.readUInt32BE(0) !== 0x7f454c46) throw new Error(`${what}: not an ELF file`);
  const cls = file[4];
  if (file[5] !== 1) throw new Error(`${what}: not little-endian`);
  const is64 = cls === 2;
  if (!is64 && cls !== 1) throw new Error(`${what}: unknown ELF class ${cls}`);
  const machine = file.readUInt16LE(18);
  if (machine !== (is64 ? EM_X86_64 : EM_386)) throw new Error(`${what}: not an x86 ${is64 ? '64' : '32'}-bit image (e_machine ${machine})`);
  const word = (off: number): bigint => (is64 ? file.readBigUInt64LE(off) : BigInt(file.readUInt32LE(off)));
  const num = (off: number): number => Number(word(off));

  const entry = word(24);
  const phoff = num(is64 ? 32 : 28);
  const shoff = num(is64 ? 40 : 32);
  const phentsize = file.readUInt16LE(is64 ? 54 : 42);
  const phnum = file.readUInt16LE(is64 ? 56 : 44);
  const shentsize = file.readUInt16LE(is64 ? 58 : 46);
  const shnum = file.readUInt16LE(is64 ? 60 : 48);

  const segments: ElfSegment[] = [];
  for (let i = 0; i < phnum; i++) {
    const p = phoff + i * phentsize;
    if (file.readUInt32LE(p) !== PT_LOAD) continue;
    const offset = num(p + (is64 ? 8 : 4));
    const filesz = num(p + (is64 ? 32 : 16));
    if (offset + filesz > file.length) throw new Error(`${what}: segment ${i} runs past the end of the file`);
    segments.push({
      vaddr: word(p + (is64 ? 16 : 8)),
      paddr: word(p + (is64 ? 24 : 12)),
      data: file.subarray(offset, offset + filesz),
      memsz: word(p + (is64 ? 40 : 20)),
    });
  }

  const symbols: ElfSymbol[] = [];
  for (let i = 0; i < shnum; i++) {
    const s = shoff + i * shentsize;
    if (file.readUInt32LE(s + 4) !== SHT_SYMTAB) continue;
    const off = num(s + (is64 ? 24 : 16));
    const size = num(s + (is64 ? 32 : 20));
    const link = file.readUInt32LE(s + (is64 ? 40 : 24));
    const entsize = num(s + (is64 ? 56 : 36)) || (is64 ? 24 : 16);
    const strtab = shoff + link * shentsize;
    const strOff = num(strtab + (is64 ? 24 : 16));
    for (let e = off + entsize; e + entsize <= off + size; e += entsize) {
      const nameOff = file.readUInt32LE(e);
      const end = file.indexOf(0, strOff + nameOff);
      const name = file.toString('latin1', strOff + nameOff, end);
      if (!name) continue;
      symbols.push(is64
        ? { name, value: file.readBigUInt64LE(e + 8), size: file.readBigUInt64LE(e + 16), type: file[e + 4] & 0xf }
        : { name, value: BigInt(file.readUInt32LE(e + 4)), size: BigInt(file.readUInt32LE(e + 8)), type: file[e + 12] & 0xf });
    }
  }
  return { width: is64 ? 64 : 32, entry, segments, symbols };
}
