// Xen's `vcpu_guest_context` layouts, as returned by XEN_DOMCTL_getvcpucontext:
// the native x86_64 layout (5168 bytes) for 64-bit PV, PVH and HVM domains, and the
// compat x86_32 layout (2800 bytes, pack(4)) for 32-bit PV domains.
// Offsets from xen/include/public/arch-x86/xen-x86_{64,32}.h (checked against
// tools/include/xen-foreign/reference.size: 5168 / 2800).

export interface Field {
  off: number;
  size: 2 | 4 | 8;
}

export type ContextRegName =
  | 'rax' | 'rbx' | 'rcx' | 'rdx' | 'rsi' | 'rdi' | 'rbp' | 'rsp'
  | 'r8' | 'r9' | 'r10' | 'r11' | 'r12' | 'r13' | 'r14' | 'r15'
  | 'rip' | 'rflags' | 'cs' | 'ss' | 'ds' | 'es' | 'fs' | 'gs'
  | 'cr0' | 'cr1' | 'cr2' | 'cr3' | 'cr4'
  | 'dr0' | 'dr1' | 'dr2' | 'dr3' | 'dr6' | 'dr7'
  | 'fs_base' | 'gs_base_kernel' | 'gs_base_user'
  | 'flags';

export interface ContextLayout {
  readonly name: 'x86_64' | 'x86_32';
  readonly size: number;
  readonly fields: Partial<Record<ContextRegName, Field>>;
  /** FXSAVE image at offset 0 (512 bytes) in both layouts. */
  readonly fpuOffset: number;
}

const U64 = 520; // user_regs in x86_64
export const CTX64: ContextLayout = {
  name: 'x86_64',
  size: 5168,
  fpuOffset: 0,
  fields: {
    flags: { off: 512, size: 8 },
    r15: { off: U64 + 0, size: 8 },
    r14: { off: U64 + 8, size: 8 },
    r13: { off: U64 + 16, size: 8 },
    r12: { off: U64 + 24, size: 8 },
    rbp: { off: U64 + 32, size: 8 },
    rbx: { off: U64 + 40, size: 8 },
    r11: { off: U64 + 48, size: 8 },
    r10: { off: U64 + 56, size: 8 },
    r9: { off: U64 + 64, size: 8 },
    r8: { off: U64 + 72, size: 8 },
    rax: { off: U64 + 80, size: 8 },
    rcx: { off: U64 + 88, size: 8 },
    rdx: { off: U64 + 96, size: 8 },
    rsi: { off: U64 + 104, size: 8 },
    rdi: { off: U64 + 112, size: 8 },
    rip: { off: U64 + 128, size: 8 },
    cs: { off: U64 + 136, size: 2 },
    rflags: { off: U64 + 144, size: 8 },
    rsp: { off: U64 + 152, size: 8 },
    ss: { off: U64 + 160, size: 2 },
    es: { off: U64 + 168, size: 2 },
    ds: { off: U64 + 176, size: 2 },
    fs: { off: U64 + 184, size: 2 },
    gs: { off: U64 + 192, size: 2 },
    cr0: { off: 4984, size: 8 },
    /** ctrlreg[1]: a 64-bit PV VCPU's user page table (guest_table_user). */
    cr1: { off: 4992, size: 8 },
    cr2: { off: 5000, size: 8 },
    cr3: { off: 5008, size: 8 },
    cr4: { off: 5016, size: 8 },
    dr0: { off: 5048, size: 8 },
    dr1: { off: 5056, size: 8 },
    dr2: { off: 5064, size: 8 },
    dr3: { off: 5072, size: 8 },
    dr6: { off: 5096, size: 8 },
    dr7: { off: 5104, size: 8 },
    fs_base: { off: 5144, size: 8 },
    gs_base_kernel: { off: 5152, size: 8 },
    gs_base_user: { off: 5160, size: 8 },
  },
};

const U32 = 516; // user_regs in x86_32
export const CTX32: ContextLayout = {
  name: 'x86_32',
  size: 2800,
  fpuOffset: 0,
  fields: {
    flags: { off: 512, size: 4 },
    rbx: { off: U32 + 0, size: 4 },
    rcx: { off: U32 + 4, size: 4 },
    rdx: { off: U32 + 8, size: 4 },
    rsi: { off: U32 + 12, size: 4 },
    rdi: { off: U32 + 16, size: 4 },
    rbp: { off: U32 + 20, size: 4 },
    rax: { off: U32 + 24, size: 4 },
    rip: { off: U32 + 32, size: 4 },
    cs: { off: U32 + 36, size: 2 },
    rflags: { off: U32 + 40, size: 4 },
    rsp: { off: U32 + 44, size: 4 },
    ss: { off: U32 + 48, size: 2 },
    es: { off: U32 + 52, size: 2 },
    ds: { off: U32 + 56, size: 2 },
    fs: { off: U32 + 60, size: 2 },
    gs: { off: U32 + 64, size: 2 },
    cr0: { off: 2716, size: 4 },
    cr2: { off: 2724, size: 4 },
    cr3: { off: 2728, size: 4 },
    cr4: { off: 2732, size: 4 },
    dr0: { off: 2748, size: 4 },
    dr1: { off: 2752, size: 4 },
    dr2: { off: 2756, size: 4 },
    dr3: { off: 2760, size: 4 },
    dr6: { off: 2772, size: 4 },
    dr7: { off: 2776, size: 4 },
  },
};

/** VGCF_* bits of `flags`. */
export const Vgcf = { i387Valid: 1, inKernel: 4, online: 0x20 } as const;

export const EFLAGS_TF = 0x100n;
export const EFLAGS_IF = 0x200n;

export function readField(ctx: Buffer, layout: ContextLayout, name: ContextRegName): bigint | undefined {
  const f = layout.fields[name];
  if (!f) return undefined;
  switch (f.size) {
    case 2: return BigInt(ctx.readUInt16LE(f.off));
    case 4: return BigInt(ctx.readUInt32LE(f.off));
    case 8: return ctx.readBigUInt64LE(f.off);
  }
}

/** Writes `value` truncated to the field's width; returns false if the layout lacks it. */
export function writeField(ctx: Buffer, layout: ContextLayout, name: ContextRegName, value: bigint): boolean {
  const f = layout.fields[name];
  if (!f) return false;
  const v = BigInt.asUintN(f.size * 8, value);
  switch (f.size) {
    case 2: ctx.writeUInt16LE(Number(v), f.off); break;
    case 4: ctx.writeUInt32LE(Number(v), f.off); break;
    case 8: ctx.writeBigUInt64LE(v, f.off); break;
  }
  return true;
}
