// VCPU bring-up and the vcpu_guest_context views of a simulated VCPU:
// what XEN_DOMCTL_getvcpucontext fills in and what setvcpucontext accepts,
// following arch_get_info_guest / arch_set_info_guest; and the HVM CPU record of
// XEN_DOMCTL_gethvmcontext_partial (hvm_save_one / hvm_save_cpu_ctxt).
import { ContextLayout, ContextRegName, EFLAGS_IF, Vgcf, readField, writeField } from '../context';
import { HVM_HW_CPU_SIZE, HVM_SAVE_CODE_CPU, HvmCpu, Off } from '../domctl';
import { Errno, XenError } from '../errors';
import { DomctlData } from '../hypercalls';
import { Gpr, GprName } from './cpu-core';
import { SegName, SimDomain, SimVcpu } from './domain';
import { VcpuStart } from './loader';

const GPR_NAMES = Object.keys(Gpr) as GprName[];
const SEG_NAMES: SegName[] = ['cs', 'ss', 'ds', 'es', 'fs', 'gs'];
const HIGH_GPRS: readonly GprName[] = ['r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'];

type GprField = { off: number; size: number } | undefined;
const gprFieldsOf = new Map<ContextLayout, readonly GprField[]>();
/** Each GPR's field (by Gpr number) in a layout: a debugger's step reads and writes a context twice. */
function gprFields(L: ContextLayout): readonly GprField[] {
  let f = gprFieldsOf.get(L);
  if (!f) {
    f = GPR_NAMES.map((name) => L.fields[name]);
    gprFieldsOf.set(L, f);
  }
  return f;
}
/** ctrlreg[1] of the x86_64 layout (context.ts names only cr0/2/3/4). */
const CTRLREG1_64 = 4992;

/** Hypervisor bugs a context domctl reproduces. */
export interface ContextQuirks {
  /**
   * Xen 4.21.0/4.21.1 (9f892f84c2, fixed by bedbc17d84): arch_get_info_guest and
   * arch_set_info_guest copy the GPRs one by one and leave out r8-r15: get shows 0,
   * set zeroes the guest's (user_regs was cleared first). PV and HVM alike.
   */
  dropHighGprs?: boolean;
}

/** X86_EFLAGS_ALL: the bits arch_set_info_guest keeps; bit 1 is always set. */
const EFLAGS_ALL = 0x3f7fd5;
const EFLAGS_MBS = 0x2;
const EFLAGS_IOPL = 0x3000;
const DR6_DEFAULT = 0xffff0ff0n;
const DR7_DEFAULT = 0x400n;
const CR0_DEFAULT = 0x80050033n; // PG|AM|WP|NE|ET|MP|PE
const CR4_DEFAULT = 0x6a0n; // OSXMMEXCPT|OSFXSR|PGE|PAE

/** Selectors by domain kind: Xen's FLAT_KERNEL_* for PV, Linux's __KERNEL_CS/DS for PVH. */
function defaultSelectors(d: SimDomain): Record<SegName, number> {
  if (d.type === 'pvh') return { cs: 0x10, ss: 0x18, ds: 0x18, es: 0x18, fs: 0, gs: 0 };
  return d.width === 64
    ? { cs: 0xe033, ss: 0xe02b, ds: 0, es: 0, fs: 0, gs: 0 }
    : { cs: 0xe019, ss: 0xe021, ds: 0xe021, es: 0xe021, fs: 0, gs: 0 };
}

/** Put a VCPU at the image's entry point: the state the domain builder gives it. */
export function bringUp(d: SimDomain, v: SimVcpu, start: VcpuStart, entry: bigint, cr3: number): void {
  const c = v.cpu;
  c.cr0 = CR0_DEFAULT;
  c.cr4 = CR4_DEFAULT;
  c.cr3 = BigInt(cr3);
  // A 64-bit PV VCPU starts in kernel mode on guest_table, with no user table.
  v.guestTable = c.cr3;
  v.guestTableUser = 0n;
  v.kernelMode = true;
  c.rip = entry;
  c.rflags = 0x202;
  c.setGpr(Gpr.rsp, start.rsp);
  // The VCPU number: rdi (first C argument) in 64-bit guests, eax (regparm) in 32-bit ones.
  c.setGpr(d.width === 64 ? Gpr.rdi : Gpr.rax, BigInt(v.id));
  if (d.width === 64) c.gsBase = start.percpu;
  Object.assign(v.sel, defaultSelectors(d));
  // FXSAVE image: FCW 0x37f, MXCSR 0x1f80 (the reset values).
  v.ctxExtra.writeUInt16LE(0x37f, 0);
  v.ctxExtra.writeUInt32LE(0x1f80, 24);
  if (d.type === 'pv') {
    const L = d.layout;
    // kernel_ss / kernel_sp: the stack Xen switches to on a trap from guest user mode.
    const kss = L.name === 'x86_64' ? 4968 : 2708;
    const ksp = L.name === 'x86_64' ? 4976 : 2712;
    if (L.name === 'x86_64') {
      v.ctxExtra.writeBigUInt64LE(BigInt(defaultSelectors(d).ss), kss);
      v.ctxExtra.writeBigUInt64LE(start.rsp, ksp);
    } else {
      v.ctxExtra.writeUInt32LE(defaultSelectors(d).ss, kss);
      v.ctxExtra.writeUInt32LE(Number(start.rsp), ksp);
    }
  }
  v.initialised = true;
  v.down = false;
}

function isPv64(d: SimDomain): boolean {
  return d.type === 'pv' && d.width === 64;
}

/**
 * guest_kernel_mode(): TF_kernel_mode for 64-bit PV; for 32-bit PV the ring of cs
 * (the kernel runs in ring 1). Never set for HVM.
 */
function pvInKernel(d: SimDomain, v: SimVcpu): boolean {
  if (d.type !== 'pv') return false;
  return d.width === 64 ? v.kernelMode : (v.sel.cs & 3) === 1;
}

/** arch_get_info_guest into `out` (the domain's layout, at offset 0). */
export function encodeContext(d: SimDomain, v: SimVcpu, out: Buffer, q: ContextQuirks = {}): void {
  const L = d.layout;
  const c = v.cpu;
  v.ctxExtra.copy(out, 0, 0, L.size);
  const w = (name: ContextRegName, value: bigint) => writeField(out, L, name, value);
  let flags = Vgcf.i387Valid;
  if (pvInKernel(d, v)) flags |= Vgcf.inKernel;
  if (!v.down) flags |= Vgcf.online;
  w('flags', BigInt(flags));
  // The GPRs straight from the CPU's 32-bit halves (no bigint per register).
  const gf = gprFields(L);
  for (let i = 0; i < gf.length; i++) {
    const f = gf[i];
    if (!f) continue;
    out.writeUInt32LE(c.lo[i], f.off);
    if (f.size === 8) out.writeUInt32LE(c.hi[i], f.off + 4);
  }
  if (q.dropHighGprs) for (const name of HIGH_GPRS) w(name, 0n);
  w('rip', c.rip);
  w('rflags', BigInt(c.rflags | (d.type === 'pv' ? v.iopl : 0)));
  for (const s of SEG_NAMES) w(s, BigInt(v.sel[s]));
  w('cr0', c.cr0);
  w('cr2', c.cr2);
  if (isPv64(d)) {
    // ctrlreg[3] = guest_table (the kernel's, whatever mode), ctrlreg[1] = guest_table_user.
    w('cr3', v.guestTable);
    out.writeBigUInt64LE(v.guestTableUser, CTRLREG1_64);
  } else {
    w('cr3', c.cr3);
  }
  w('cr4', c.cr4);
  (['dr0', 'dr1', 'dr2', 'dr3'] as const).forEach((name, i) => w(name, c.dr[i]));
  w('dr6', c.dr[6]);
  w('dr7', c.dr[7]);
  w('fs_base', c.fsBase);
  w('gs_base_kernel', c.gsBase);
  w('gs_base_user', c.gsBaseUser);
}

/** Byte ranges of a PV context that must match the live VCPU (ldt/gdt). */
function pvFixedRanges(d: SimDomain): [number, number][] {
  return d.layout.name === 'x86_64' ? [[4816, 4968]] : [[2632, 2708]];
}

/** arch_set_info_guest from `buf` (the domain's layout). Throws XenError like Xen. */
export function applyContext(d: SimDomain, v: SimVcpu, buf: Buffer, op: string, q: ContextQuirks = {}): void {
  const L = d.layout;
  const c = v.cpu;
  const r = (name: ContextRegName): bigint => readField(buf, L, name) ?? 0n;
  const pv64 = isPv64(d);
  const inKernel = (Number(r('flags')) & Vgcf.inKernel) !== 0;
  const cr1 = pv64 ? buf.readBigUInt64LE(CTRLREG1_64) : 0n;
  if (d.type === 'pv' && !v.initialised) {
    // A 64-bit PV VCPU brought up in user mode needs a user table.
    if (pv64 && !inKernel && cr1 === 0n) throw new XenError(op, Errno.EINVAL, 'user mode without ctrlreg[1]');
  } else if (d.type === 'pv') {
    // A PV VCPU's page-table bases and descriptor tables cannot be changed this way;
    // with no user table, the context must also say kernel mode.
    let fail = r('cr3') !== (pv64 ? v.guestTable : c.cr3);
    if (pv64) fail ||= v.guestTableUser === 0n ? cr1 !== 0n || !inKernel : cr1 !== v.guestTableUser;
    if (fail) throw new XenError(op, Errno.EOPNOTSUPP, 'ctrlreg[3]/ctrlreg[1] differ from the live page tables');
    for (const [from, to] of pvFixedRanges(d)) {
      if (!buf.subarray(from, to).equals(v.ctxExtra.subarray(from, to))) throw new XenError(op, Errno.EOPNOTSUPP);
    }
  }
  const wasInitialised = v.initialised;
  buf.copy(v.ctxExtra, 0, 0, L.size);
  v.down = (Number(r('flags')) & Vgcf.online) === 0;
  const gf = gprFields(L);
  for (let i = 0; i < gf.length; i++) {
    const f = gf[i];
    if (!f) continue;
    // As setGpr: the high half only in long mode.
    c.lo[i] = buf.readUInt32LE(f.off);
    c.hi[i] = f.size === 8 && c.long ? buf.readUInt32LE(f.off + 4) : 0;
  }
  if (q.dropHighGprs && L.name === 'x86_64') for (const name of HIGH_GPRS) c.setGpr(Gpr[name], 0n);
  c.rip = r('rip');
  let rflags = (Number(r('rflags') & 0xffffffffn) & EFLAGS_ALL) | EFLAGS_MBS;
  if (d.type === 'pv') {
    // IOPL is virtualised and real interrupts stay enabled for PV guests.
    v.iopl = rflags & EFLAGS_IOPL;
    rflags = (rflags & ~EFLAGS_IOPL) | Number(EFLAGS_IF);
  }
  c.rflags = rflags;
  (['dr0', 'dr1', 'dr2', 'dr3'] as const).forEach((name, i) => { c.dr[i] = r(name); });
  c.dr[6] = (r('dr6') | DR6_DEFAULT) & 0xffffffffn;
  c.dr[7] = (r('dr7') | DR7_DEFAULT) & 0xffffffffn;
  if (d.type === 'pv') {
    for (const s of SEG_NAMES) v.sel[s] = Number(r(s));
    if (L.name === 'x86_64') {
      c.fsBase = r('fs_base');
      c.gsBase = r('gs_base_kernel');
      c.gsBaseUser = r('gs_base_user');
    }
  }
  // TF_kernel_mode follows the flags (64-bit PV only). Like Xen, an initialised VCPU
  // keeps its active table until its next mode switch (no update_cr3 here).
  if (pv64) v.kernelMode = inKernel;
  // Control registers only take effect when a VCPU is first brought up this way
  // (for HVM, arch_set_info_guest never applies them).
  if (!wasInitialised) {
    c.cr0 = r('cr0');
    c.cr3 = r('cr3');
    c.cr4 = r('cr4');
    if (pv64) {
      v.guestTable = r('cr3');
      v.guestTableUser = cr1;
      c.cr3 = inKernel ? v.guestTable : v.guestTableUser;
    }
    if (d.type === 'pvh') Object.assign(v.sel, defaultSelectors(d));
    v.initialised = true;
    v.halted = false;
  }
  // A VCPU halted in hlt stays halted until an interrupt: a new context does not wake it.
  c.flushTlb();
}

/** Segment state of the CPU record (the simulated CPU runs flat and keeps only selectors). */
const Seg = { sel: 736, limit: 768, base: 808, arbytes: 888 } as const;
const SEG_ORDER: SegName[] = ['cs', 'ds', 'es', 'fs', 'gs', 'ss'];
const CpuRec = { shadowGs: 944, tsc: 1008, flags: 1024 } as const;
/** HVM_SAVE_CODE_MAX: typecodes above it have no save handler. */
const HVM_SAVE_CODE_MAX = 20;
/** EFER: SCE | LME | LMA | NXE for a long-mode guest, NXE for a 32-bit PAE one. */
const EFER_LONG = 0xd01n;
const EFER_NXE = 0x800n;
const XEN_X86_FPU_INITIALISED = 1;
/** Linux errno ENOBUFS (not in errors.ts: only this domctl gives it). */
const ENOBUFS = 105;

/** Xen's segment attributes (type, S, DPL, P, AVL, L, D/B, G packed in 12 bits). */
function arbytes(code: boolean, long: boolean, dpl: number): number {
  const low = (code ? 0x1b : 0x13) | (dpl << 5) | 0x80;
  const high = code && long ? 0xa : 0xc; // G plus L (64-bit code) or D/B
  return (high << 8) | low;
}

/** hvm_save_cpu_ctxt: struct hvm_hw_cpu for `v` into `out` (HVM_HW_CPU_SIZE bytes). */
export function encodeHvmCpu(d: SimDomain, v: SimVcpu, out: Buffer): void {
  const c = v.cpu;
  out.fill(0, 0, HVM_HW_CPU_SIZE);
  v.ctxExtra.copy(out, 0, 0, 512); // the FXSAVE image
  const u64 = (off: number, value: bigint) => out.writeBigUInt64LE(BigInt.asUintN(64, value), off);
  for (const name of GPR_NAMES) u64(HvmCpu[name], c.getGpr(Gpr[name]));
  u64(HvmCpu.rip, c.rip);
  u64(HvmCpu.rflags, BigInt(c.rflags));
  u64(HvmCpu.cr0, c.cr0);
  u64(HvmCpu.cr2, c.cr2);
  u64(HvmCpu.cr3, c.cr3);
  u64(HvmCpu.cr4, c.cr4);
  (['dr0', 'dr1', 'dr2', 'dr3'] as const).forEach((name, i) => u64(HvmCpu[name], c.dr[i]));
  u64(HvmCpu.dr6, c.dr[6]);
  u64(HvmCpu.dr7, c.dr[7]);
  const dpl = v.sel.cs & 3;
  SEG_ORDER.forEach((s, i) => {
    out.writeUInt32LE(v.sel[s], Seg.sel + 4 * i);
    out.writeUInt32LE(0xffffffff, Seg.limit + 4 * i);
    // A null data selector is an unusable segment: no attributes.
    const usable = s === 'cs' || s === 'ss' || v.sel[s] !== 0;
    if (usable) out.writeUInt32LE(arbytes(s === 'cs', c.long, dpl), Seg.arbytes + 4 * i);
  });
  u64(Seg.base + 8 * 3, c.fsBase);
  u64(Seg.base + 8 * 4, c.gsBase);
  u64(CpuRec.shadowGs, c.gsBaseUser);
  u64(HvmCpu.msrEfer, c.long ? EFER_LONG : EFER_NXE);
  u64(CpuRec.tsc, BigInt(v.instructions));
  out.writeUInt32LE(XEN_X86_FPU_INITIALISED, CpuRec.flags);
}

/**
 * XEN_DOMCTL_gethvmcontext_partial (arch_do_domctl, hvm_save_one): one VCPU's CPU
 * record. Writes bufsz back; returns true when Xen copies the struct back. Only the
 * CPU record (typecode 2) is modelled.
 */
export function getHvmContextPartial(d: SimDomain, op: Buffer, data: DomctlData | undefined, name: string, callerDomid: number): boolean {
  if (d.domid === callerDomid || !d.hvm) throw new XenError(name, Errno.EINVAL, 'not an HVM domain');
  const type = op.readUInt32LE(Off.hvmCtxType);
  const instance = op.readUInt32LE(Off.hvmCtxInstance);
  if (d.dying || type > HVM_SAVE_CODE_MAX || type === 0) throw new XenError(name, Errno.EINVAL, `no save record of type ${type}`);
  if (type !== HVM_SAVE_CODE_CPU) throw new XenError(name, Errno.EINVAL, `record type ${type} is not simulated`);
  if (instance >= d.vcpus.length) throw new XenError(name, Errno.ENOENT, `no VCPU ${instance}`);
  // hvm_save_cpu_ctxt saves nothing for a VCPU that is down.
  const v = d.vcpus[instance];
  if (v.down || !v.initialised) throw new XenError(name, Errno.ENODATA, `VCPU ${instance} is down`);
  if (!data) {
    // A null handle asks for the size.
    op.writeBigUInt64LE(BigInt(HVM_HW_CPU_SIZE), Off.hvmCtxBufsz);
    return true;
  }
  if (op.readBigUInt64LE(Off.hvmCtxBufsz) < BigInt(HVM_HW_CPU_SIZE)) throw new XenError(name, ENOBUFS, `the CPU record is ${HVM_HW_CPU_SIZE} bytes`);
  if (data.buf.length < HVM_HW_CPU_SIZE) throw new XenError(name, Errno.EFAULT);
  encodeHvmCpu(d, v, data.buf);
  op.writeBigUInt64LE(BigInt(HVM_HW_CPU_SIZE), Off.hvmCtxBufsz);
  return true;
}
