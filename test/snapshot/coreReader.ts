// A small reader of the ELF64 cores the snapshot writes, for the tests: program headers,
// notes, and memory by physical address (as crash reads it) or virtual (as gdb does).
import fs from 'fs';

export interface Phdr { type: number; offset: number; vaddr: bigint; paddr: bigint; filesz: number; align: bigint }
export interface Note { name: string; type: number; desc: Buffer }

export class Core {
  readonly phdrs: Phdr[] = [];
  readonly notes: Note[] = [];
  private readonly fd: number;

  constructor(readonly file: string) {
    this.fd = fs.openSync(file, 'r');
    const h = Buffer.alloc(64);
    fs.readSync(this.fd, h, 0, 64, 0);
    if (h.toString('latin1', 0, 4) !== '\x7fELF' || h[4] !== 2) throw new Error('not an ELF64 file');
    if (h.readUInt16LE(16) !== 4) throw new Error('not ET_CORE');
    const phoff = Number(h.readBigUInt64LE(32));
    const phnum = h.readUInt16LE(56);
    const ph = Buffer.alloc(phnum * 56);
    fs.readSync(this.fd, ph, 0, ph.length, phoff);
    for (let i = 0; i < phnum; i++) {
      const o = i * 56;
      this.phdrs.push({
        type: ph.readUInt32LE(o), offset: Number(ph.readBigUInt64LE(o + 8)), vaddr: ph.readBigUInt64LE(o + 16),
        paddr: ph.readBigUInt64LE(o + 24), filesz: Number(ph.readBigUInt64LE(o + 32)), align: ph.readBigUInt64LE(o + 48),
      });
    }
    const n = this.phdrs[0];
    if (n.type !== 4) throw new Error('program header 0 is not PT_NOTE');
    const nb = Buffer.alloc(n.filesz);
    fs.readSync(this.fd, nb, 0, nb.length, n.offset);
    for (let o = 0; o + 12 <= nb.length;) {
      const namesz = nb.readUInt32LE(o);
      const descsz = nb.readUInt32LE(o + 4);
      const type = nb.readUInt32LE(o + 8);
      const name = nb.toString('latin1', o + 12, o + 12 + namesz).replace(/\0+$/, '');
      const d = o + 12 + ((namesz + 3) & ~3);
      this.notes.push({ name, type, desc: nb.subarray(d, d + descsz) });
      o = d + ((descsz + 3) & ~3);
    }
  }

  get loads(): Phdr[] {
    return this.phdrs.filter((p) => p.type === 1);
  }

  /** A page by physical address (the first PT_LOAD that covers it, as crash looks it up), or undefined. */
  physPage(pa: number): Buffer | undefined {
    for (const p of this.loads) {
      const start = Number(p.paddr);
      if (pa >= start && pa + 4096 <= start + p.filesz) {
        const b = Buffer.alloc(4096);
        fs.readSync(this.fd, b, 0, 4096, p.offset + (pa - start));
        return b;
      }
    }
    return undefined;
  }

  /** Registers of NT_PRSTATUS notes: pid (VCPU+1) -> user_regs_struct by name. */
  prstatus(): Map<number, Record<string, bigint>> {
    const names = ['r15', 'r14', 'r13', 'r12', 'rbp', 'rbx', 'r11', 'r10', 'r9', 'r8', 'rax', 'rcx', 'rdx', 'rsi', 'rdi',
      'orig_rax', 'rip', 'cs', 'rflags', 'rsp', 'ss', 'fs_base', 'gs_base', 'ds', 'es', 'fs', 'gs'];
    const m = new Map<number, Record<string, bigint>>();
    for (const n of this.notes.filter((x) => x.name === 'CORE' && x.type === 1)) {
      const r: Record<string, bigint> = {};
      names.forEach((k, i) => (r[k] = n.desc.readBigUInt64LE(112 + i * 8)));
      m.set(n.desc.readInt32LE(32), r);
    }
    return m;
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}
