// Register layouts as gdb sees them (the order of the target description, which is
// also the `g` packet order and the `p`/`P` numbering), and how each register maps
// to Xen's vcpu_guest_context. One list per architecture; the XML, the `g` block
// and the context mapping are all derived from it.
import { CTX32, CTX64, ContextLayout, ContextRegName, Vgcf, readField, writeField } from '../xg/context';

export type RegType = 'int' | 'code_ptr' | 'data_ptr' | 'i386_eflags' | 'i387_ext' | 'vec128' | 'i386_mxcsr' | 'cr0_flags' | 'cr4_flags';

/** Where a register's value lives. */
export type RegSource =
  | { kind: 'ctx'; field: ContextRegName }
  | { kind: 'gs_base'; active: boolean } // the kernel/user GS base, by current mode
  | { kind: 'fpu'; off: number; size: number }
  | { kind: 'ftag' }; // x87 tag word, expanded from FXSAVE's abridged form

export interface RegDef {
  name: string;
  bits: number;
  type: RegType;
  feature: 'core' | 'sse' | 'segments' | 'sys';
  group?: string;
  src: RegSource;
}

export interface Arch {
  readonly name: 'amd64' | 'i386';
  readonly gdbArch: string;
  readonly regs: readonly RegDef[];
  readonly pcReg: number;
  readonly spReg: number;
  readonly fpReg: number;
  readonly ptrBytes: number;
  /** Byte offset of each register in the `g` block. */
  readonly offsets: readonly number[];
  readonly gSize: number;
}

const ctx = (field: ContextRegName) => ({ kind: 'ctx', field }) as const;
const fpu = (off: number, size: number) => ({ kind: 'fpu', off, size }) as const;

function x87AndSse(xmmCount: number): RegDef[] {
  const r: RegDef[] = [];
  // FXSAVE image: st(i) at 32+16i (10 bytes), xmm(i) at 160+16i.
  for (let i = 0; i < 8; i++) r.push({ name: `st${i}`, bits: 80, type: 'i387_ext', feature: 'core', group: 'float', src: fpu(32 + 16 * i, 10) });
  r.push(
    { name: 'fctrl', bits: 32, type: 'int', feature: 'core', group: 'float', src: fpu(0, 2) },
    { name: 'fstat', bits: 32, type: 'int', feature: 'core', group: 'float', src: fpu(2, 2) },
    { name: 'ftag', bits: 32, type: 'int', feature: 'core', group: 'float', src: { kind: 'ftag' } },
    { name: 'fiseg', bits: 32, type: 'int', feature: 'core', group: 'float', src: fpu(12, 2) },
    { name: 'fioff', bits: 32, type: 'int', feature: 'core', group: 'float', src: fpu(8, 4) },
    { name: 'foseg', bits: 32, type: 'int', feature: 'core', group: 'float', src: fpu(20, 2) },
    { name: 'fooff', bits: 32, type: 'int', feature: 'core', group: 'float', src: fpu(16, 4) },
    { name: 'fop', bits: 32, type: 'int', feature: 'core', group: 'float', src: fpu(6, 2) },
  );
  for (let i = 0; i < xmmCount; i++) r.push({ name: `xmm${i}`, bits: 128, type: 'vec128', feature: 'sse', group: 'vector', src: fpu(160 + 16 * i, 16) });
  r.push({ name: 'mxcsr', bits: 32, type: 'i386_mxcsr', feature: 'sse', group: 'vector', src: fpu(24, 4) });
  return r;
}

function segs(): RegDef[] {
  return (['cs', 'ss', 'ds', 'es', 'fs', 'gs'] as const).map((s) => ({ name: s, bits: 32, type: 'int' as const, feature: 'core' as const, src: ctx(s) }));
}

function sysRegs(bits: number): RegDef[] {
  return [
    { name: 'cr0', bits, type: 'cr0_flags', feature: 'sys', group: 'system', src: ctx('cr0') },
    { name: 'cr2', bits, type: 'data_ptr', feature: 'sys', group: 'system', src: ctx('cr2') },
    { name: 'cr3', bits, type: 'int', feature: 'sys', group: 'system', src: ctx('cr3') },
    { name: 'cr4', bits, type: 'cr4_flags', feature: 'sys', group: 'system', src: ctx('cr4') },
    { name: 'dr0', bits, type: 'data_ptr', feature: 'sys', group: 'system', src: ctx('dr0') },
    { name: 'dr1', bits, type: 'data_ptr', feature: 'sys', group: 'system', src: ctx('dr1') },
    { name: 'dr2', bits, type: 'data_ptr', feature: 'sys', group: 'system', src: ctx('dr2') },
    { name: 'dr3', bits, type: 'data_ptr', feature: 'sys', group: 'system', src: ctx('dr3') },
    { name: 'dr6', bits, type: 'int', feature: 'sys', group: 'system', src: ctx('dr6') },
    { name: 'dr7', bits, type: 'int', feature: 'sys', group: 'system', src: ctx('dr7') },
  ];
}

function makeArch(name: 'amd64' | 'i386', gdbArch: string, regs: RegDef[], pc: string, sp: string, fp: string, ptrBytes: number): Arch {
  const offsets: number[] = [];
  let off = 0;
  for (const r of regs) {
    offsets.push(off);
    off += r.bits / 8;
  }
  const idx = (n: string) => regs.findIndex((r) => r.name === n);
  return { name, gdbArch, regs, pcReg: idx(pc), spReg: idx(sp), fpReg: idx(fp), ptrBytes, offsets, gSize: off };
}

const gpr64 = (n: ContextRegName, type: RegType = 'int'): RegDef => ({ name: n, bits: 64, type, feature: 'core', src: ctx(n) });

export const AMD64: Arch = makeArch('amd64', 'i386:x86-64', [
  gpr64('rax'), gpr64('rbx'), gpr64('rcx'), gpr64('rdx'), gpr64('rsi'), gpr64('rdi'),
  gpr64('rbp', 'data_ptr'), gpr64('rsp', 'data_ptr'),
  gpr64('r8'), gpr64('r9'), gpr64('r10'), gpr64('r11'), gpr64('r12'), gpr64('r13'), gpr64('r14'), gpr64('r15'),
  gpr64('rip', 'code_ptr'),
  { name: 'eflags', bits: 32, type: 'i386_eflags', feature: 'core', src: ctx('rflags') },
  ...segs(),
  ...x87AndSse(16),
  { name: 'fs_base', bits: 64, type: 'int', feature: 'segments', src: ctx('fs_base') },
  { name: 'gs_base', bits: 64, type: 'int', feature: 'segments', src: { kind: 'gs_base', active: true } },
  { name: 'k_gs_base', bits: 64, type: 'int', feature: 'sys', group: 'system', src: { kind: 'gs_base', active: false } },
  ...sysRegs(64),
], 'rip', 'rsp', 'rbp', 8);

const gpr32 = (name: string, field: ContextRegName, type: RegType = 'int'): RegDef => ({ name, bits: 32, type, feature: 'core', src: ctx(field) });

export const I386: Arch = makeArch('i386', 'i386', [
  gpr32('eax', 'rax'), gpr32('ecx', 'rcx'), gpr32('edx', 'rdx'), gpr32('ebx', 'rbx'),
  gpr32('esp', 'rsp', 'data_ptr'), gpr32('ebp', 'rbp', 'data_ptr'), gpr32('esi', 'rsi'), gpr32('edi', 'rdi'),
  gpr32('eip', 'rip', 'code_ptr'),
  { name: 'eflags', bits: 32, type: 'i386_eflags', feature: 'core', src: ctx('rflags') },
  ...segs(),
  ...x87AndSse(8),
  // Not in org.gnu.gdb.i386.segments: gdb 13 hits an internal assertion
  // (tdesc_use_registers) on a 32-bit description with that feature.
  { name: 'fs_base', bits: 32, type: 'int', feature: 'sys', group: 'system', src: ctx('fs_base') },
  { name: 'gs_base', bits: 32, type: 'int', feature: 'sys', group: 'system', src: { kind: 'gs_base', active: true } },
  ...sysRegs(32),
], 'eip', 'esp', 'ebp', 4);

export function archFor(width: 32 | 64): Arch {
  return width === 64 ? AMD64 : I386;
}

/** A VCPU's raw context plus how to read it: 32-bit PV domains use the compat layout. */
export interface VcpuContext {
  buf: Buffer;
  layout: ContextLayout;
  hvm: boolean;
  /** Fields this hypervisor does not report truthfully (Xen 4.21.0/.1 drop r8-r15 of PV VCPUs): shown unavailable. */
  lost?: ReadonlySet<ContextRegName>;
}

export function contextLayoutFor(width: 32 | 64, hvm: boolean): ContextLayout {
  return width === 32 && !hvm ? CTX32 : CTX64;
}

/** The VCPU runs guest kernel code: CPL 0 (HVM/PVH) or Xen's VGCF_in_kernel (PV). */
export function inKernel(c: VcpuContext): boolean {
  if (c.hvm) return (Number(readField(c.buf, c.layout, 'cs') ?? 0n) & 3) === 0;
  return (Number(readField(c.buf, c.layout, 'flags') ?? 0n) & Vgcf.inKernel) !== 0;
}

function gsField(c: VcpuContext, active: boolean): ContextRegName {
  return inKernel(c) === active ? 'gs_base_kernel' : 'gs_base_user';
}

/** Little-endian bytes of register `r`, or undefined when this context lacks it. */
export function readReg(c: VcpuContext, r: RegDef): Buffer | undefined {
  const bytes = r.bits / 8;
  const out = Buffer.alloc(bytes);
  switch (r.src.kind) {
    case 'ctx':
    case 'gs_base': {
      const field = r.src.kind === 'ctx' ? r.src.field : gsField(c, r.src.active);
      if (c.lost?.has(field)) return undefined;
      const v = readField(c.buf, c.layout, field);
      if (v === undefined) return undefined;
      writeLE(out, BigInt.asUintN(r.bits, v));
      return out;
    }
    case 'fpu':
      c.buf.copy(out, 0, c.layout.fpuOffset + r.src.off, c.layout.fpuOffset + r.src.off + Math.min(r.src.size, bytes));
      return out;
    case 'ftag':
      out.writeUInt32LE(expandTagWord(c.buf, c.layout.fpuOffset));
      return out;
  }
}

/** Store `value` (little-endian, the register's width) into the context. False if not writable. */
export function writeReg(c: VcpuContext, r: RegDef, value: Buffer): boolean {
  switch (r.src.kind) {
    case 'ctx':
    case 'gs_base': {
      const field = r.src.kind === 'ctx' ? r.src.field : gsField(c, r.src.active);
      let v = readLE(value);
      if (r.name === 'eflags') {
        // gdb's eflags is 32 bits; keep the (reserved) upper half of rflags as it was.
        const old = readField(c.buf, c.layout, 'rflags') ?? 0n;
        v = (old & ~0xffffffffn) | v;
      }
      return writeField(c.buf, c.layout, field, v);
    }
    case 'fpu': {
      const n = Math.min(r.src.size, value.length);
      value.copy(c.buf, c.layout.fpuOffset + r.src.off, 0, n);
      writeField(c.buf, c.layout, 'flags', (readField(c.buf, c.layout, 'flags') ?? 0n) | BigInt(Vgcf.i387Valid));
      return true;
    }
    case 'ftag': {
      // Compress the full tag word back to FXSAVE's one-bit-per-register form.
      const full = value.readUInt32LE(0);
      let abridged = 0;
      for (let i = 0; i < 8; i++) if (((full >> (2 * i)) & 3) !== 3) abridged |= 1 << i;
      c.buf[c.layout.fpuOffset + 4] = abridged;
      return true;
    }
  }
}

function writeLE(out: Buffer, v: bigint): void {
  for (let i = 0; i < out.length; i++) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
}

export function readLE(b: Buffer): bigint {
  let v = 0n;
  for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
  return v;
}

/** FXSAVE keeps one "valid" bit per physical x87 register; gdb wants the full 2-bit tags. */
function expandTagWord(buf: Buffer, fpuOff: number): number {
  const abridged = buf[fpuOff + 4];
  const top = (buf.readUInt16LE(fpuOff + 2) >> 11) & 7;
  let tags = 0;
  for (let phys = 0; phys < 8; phys++) {
    let tag = 3; // empty
    if (abridged & (1 << phys)) {
      const st = (phys - top + 8) & 7; // st(i) lives in physical register (top+i)
      const off = fpuOff + 32 + 16 * st;
      const exp = buf.readUInt16LE(off + 8) & 0x7fff;
      const mantissa = buf.readBigUInt64LE(off);
      if (exp === 0x7fff) tag = 2;
      else if (exp === 0) tag = mantissa === 0n ? 1 : 2;
      else tag = (mantissa >> 63n) === 1n ? 0 : 2;
    }
    tags |= tag << (2 * phys);
  }
  return tags;
}
