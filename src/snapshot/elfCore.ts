// The ELF core layout gdb and crash both read (a kdump-like /proc/vmcore): program
// header 0 is the only PT_NOTE (NT_PRSTATUS per VCPU, then a "QEMU" CPU-state note per
// VCPU, then the guest's VMCOREINFO), every other one a PT_LOAD with p_align 0 (crash
// takes p_align 0 as kdump). gdb reads memory by p_vaddr, crash by p_paddr.
// Layouts: the kernel's elf_prstatus (x86_64: 336 bytes, i386: 144) and QEMU's
// QEMUCPUState (target/i386/arch_dump.c), described in the reference notes.

export interface Segment {
  vaddr: bigint;
  paddr: bigint;
  offset: number;
  size: number;
}

/** Registers of one VCPU for the notes. */
export interface CpuState {
  /** r15..gs in user_regs_struct order are filled from these names. */
  regs: Record<string, bigint>;
  cr: [bigint, bigint, bigint, bigint, bigint];
}

const PT_LOAD = 1;
const PT_NOTE = 4;
const NT_PRSTATUS = 1;

const REGS64 = ['r15', 'r14', 'r13', 'r12', 'rbp', 'rbx', 'r11', 'r10', 'r9', 'r8', 'rax', 'rcx', 'rdx', 'rsi', 'rdi',
  'orig_rax', 'rip', 'cs', 'rflags', 'rsp', 'ss', 'fs_base', 'gs_base', 'ds', 'es', 'fs', 'gs'];
const REGS32 = ['rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rbp', 'rax', 'ds', 'es', 'fs', 'gs', 'orig_rax', 'rip', 'cs', 'rflags', 'rsp', 'ss'];

function note(name: string, type: number, desc: Buffer): Buffer {
  const nameBytes = Buffer.from(name + '\0', 'latin1');
  const pad = (n: number) => (n + 3) & ~3;
  const b = Buffer.alloc(12 + pad(nameBytes.length) + pad(desc.length));
  b.writeUInt32LE(nameBytes.length, 0);
  b.writeUInt32LE(desc.length, 4);
  b.writeUInt32LE(type, 8);
  nameBytes.copy(b, 12);
  desc.copy(b, 12 + pad(nameBytes.length));
  return b;
}

/** NT_PRSTATUS for VCPU `vcpu` (pr_pid = vcpu + 1: gdb needs distinct, non-zero pids). */
export function prstatus(width: 32 | 64, vcpu: number, s: CpuState): Buffer {
  const r = (n: string) => (n === 'orig_rax' ? 0xffffffffffffffffn : s.regs[n] ?? 0n);
  if (width === 64) {
    const d = Buffer.alloc(336);
    d.writeInt32LE(vcpu + 1, 32);
    REGS64.forEach((n, i) => d.writeBigUInt64LE(BigInt.asUintN(64, r(n)), 112 + i * 8));
    return note('CORE', NT_PRSTATUS, d);
  }
  const d = Buffer.alloc(144);
  d.writeInt32LE(vcpu + 1, 24);
  REGS32.forEach((n, i) => d.writeUInt32LE(Number(BigInt.asUintN(32, r(n))), 72 + i * 4));
  return note('CORE', NT_PRSTATUS, d);
}

/** QEMU's per-CPU note (x86_64 layout, 432 bytes): crash reads cr3/cr4 from it when it has no VMCOREINFO. */
export function qemuCpuNote(s: CpuState): Buffer {
  const d = Buffer.alloc(432);
  d.writeUInt32LE(1, 0);
  d.writeUInt32LE(432, 4);
  const order = ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rsp', 'rbp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15', 'rip', 'rflags'];
  order.forEach((n, i) => d.writeBigUInt64LE(BigInt.asUintN(64, s.regs[n] ?? 0n), 8 + i * 8));
  // Segments cs ds es fs gs ss ldt tr gdt idt: {selector, limit, flags, pad, base}.
  const segs: [string, string | undefined][] = [['cs', undefined], ['ds', undefined], ['es', undefined], ['fs', 'fs_base'], ['gs', 'gs_base'], ['ss', undefined]];
  segs.forEach(([sel, base], i) => {
    const o = 152 + i * 24;
    d.writeUInt32LE(Number(BigInt.asUintN(32, s.regs[sel] ?? 0n)), o);
    d.writeUInt32LE(0xffffffff, o + 4);
    if (base) d.writeBigUInt64LE(BigInt.asUintN(64, s.regs[base] ?? 0n), o + 16);
  });
  s.cr.forEach((v, i) => d.writeBigUInt64LE(BigInt.asUintN(64, v), 392 + i * 8));
  return note('QEMU', 0, d);
}

/** The guest's own VMCOREINFO (the text, not the note around it). */
export function vmcoreinfoNote(text: Buffer): Buffer {
  return note('VMCOREINFO', 0, text);
}

/** XEN_ELFNOTE_CRASH_INFO, as Xen's kexec writes it in a host kdump. */
const XEN_ELFNOTE_CRASH_INFO = 0x1000001;

/**
 * Xen's crash_xen_info_t (x86-64): the version, then the hypervisor's own pointers
 * (extra version, changeset, compiler, dates; none here), tainted, xen_phys_start, and
 * last the p2m frame-list list of the domain the dump is read as. crash takes the last
 * word as that list and from then on reads the core by machine address.
 */
export function xenCrashInfoNote(major: number, minor: number, p2mFrameListList: bigint): Buffer {
  const d = Buffer.alloc(10 * 8);
  d.writeBigUInt64LE(BigInt(major), 0);
  d.writeBigUInt64LE(BigInt(minor), 8);
  d.writeBigUInt64LE(p2mFrameListList, 9 * 8);
  return note('Xen', XEN_ELFNOTE_CRASH_INFO, d);
}

/** ELF header + program headers + the note bytes, to be written at offset 0. */
export function buildHeaders(width: 32 | 64, notes: Buffer, loads: readonly Segment[]): Buffer {
  const is64 = width === 64;
  const ehsize = is64 ? 64 : 52;
  const phentsize = is64 ? 56 : 32;
  const phnum = 1 + loads.length;
  if (phnum >= 0xffff) throw new Error(`too many program headers (${phnum})`);
  const noteOff = ehsize + phnum * phentsize;
  const b = Buffer.alloc(noteOff + notes.length);
  // e_ident
  b.write('\x7fELF', 0, 'latin1');
  b[4] = is64 ? 2 : 1; // ELFCLASS
  b[5] = 1; // little-endian
  b[6] = 1; // EV_CURRENT
  b.writeUInt16LE(4, 16); // ET_CORE
  b.writeUInt16LE(is64 ? 62 : 3, 18); // EM_X86_64 / EM_386
  b.writeUInt32LE(1, 20);
  if (is64) {
    b.writeBigUInt64LE(BigInt(ehsize), 32); // e_phoff
    b.writeUInt16LE(ehsize, 52);
    b.writeUInt16LE(phentsize, 54);
    b.writeUInt16LE(phnum, 56);
  } else {
    b.writeUInt32LE(ehsize, 28);
    b.writeUInt16LE(ehsize, 40);
    b.writeUInt16LE(phentsize, 42);
    b.writeUInt16LE(phnum, 44);
  }
  const ph = (i: number, type: number, offset: number, vaddr: bigint, paddr: bigint, size: number, flags: number) => {
    const o = ehsize + i * phentsize;
    if (is64) {
      b.writeUInt32LE(type, o);
      b.writeUInt32LE(flags, o + 4);
      b.writeBigUInt64LE(BigInt(offset), o + 8);
      b.writeBigUInt64LE(vaddr, o + 16);
      b.writeBigUInt64LE(paddr, o + 24);
      b.writeBigUInt64LE(BigInt(size), o + 32);
      b.writeBigUInt64LE(BigInt(size), o + 40);
      b.writeBigUInt64LE(0n, o + 48); // p_align 0: kdump
    } else {
      b.writeUInt32LE(type, o);
      b.writeUInt32LE(offset, o + 4);
      b.writeUInt32LE(Number(vaddr & 0xffffffffn), o + 8);
      b.writeUInt32LE(Number(paddr & 0xffffffffn), o + 12);
      b.writeUInt32LE(size, o + 16);
      b.writeUInt32LE(size, o + 20);
      b.writeUInt32LE(flags, o + 24);
      b.writeUInt32LE(0, o + 28);
    }
  };
  ph(0, PT_NOTE, noteOff, 0n, 0n, notes.length, 0);
  loads.forEach((s, i) => ph(i + 1, PT_LOAD, s.offset, s.vaddr, s.paddr, s.size, 7));
  notes.copy(b, noteOff);
  return b;
}
