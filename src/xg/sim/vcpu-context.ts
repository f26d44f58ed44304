// VCPU bring-up and the vcpu_guest_context views of a simulated VCPU:
// what XEN_DOMCTL_getvcpucontext fills in and what setvcpucontext accepts,
// following arch_get_info_guest / arch_set_info_guest.
import { ContextRegName, EFLAGS_IF, Vgcf, readField, writeField } from '../context';
import { Errno, XenError } from '../errors';
import { Gpr, GprName } from './cpu-core';
import { SegName, SimDomain, SimVcpu } from './domain';
import { VcpuStart } from './loader';

const GPR_NAMES = Object.keys(Gpr) as GprName[];
const SEG_NAMES: SegName[] = ['cs', 'ss', 'ds', 'es', 'fs', 'gs'];

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

/** arch_get_info_guest into `out` (the domain's layout, at offset 0). */
export function encodeContext(d: SimDomain, v: SimVcpu, out: Buffer): void {
  const L = d.layout;
  const c = v.cpu;
  v.ctxExtra.copy(out, 0, 0, L.size);
  const w = (name: ContextRegName, value: bigint) => writeField(out, L, name, value);
  let flags = Vgcf.i387Valid;
  if (d.type === 'pv') flags |= Vgcf.inKernel; // all simulated code runs in guest kernel mode
  if (!v.down) flags |= Vgcf.online;
  w('flags', BigInt(flags));
  GPR_NAMES.forEach((name, i) => w(name, c.getGpr(i)));
  w('rip', c.rip);
  w('rflags', BigInt(c.rflags | (d.type === 'pv' ? v.iopl : 0)));
  for (const s of SEG_NAMES) w(s, BigInt(v.sel[s]));
  w('cr0', c.cr0);
  w('cr2', c.cr2);
  w('cr3', c.cr3);
  w('cr4', c.cr4);
  (['dr0', 'dr1', 'dr2', 'dr3'] as const).forEach((name, i) => w(name, c.dr[i]));
  w('dr6', c.dr[6]);
  w('dr7', c.dr[7]);
  w('fs_base', c.fsBase);
  w('gs_base_kernel', c.gsBase);
  w('gs_base_user', c.gsBaseUser);
}

/** Byte ranges of a PV context that must match the live VCPU (ldt/gdt, and ctrlreg[1] on 64-bit). */
function pvFixedRanges(d: SimDomain): [number, number][] {
  return d.layout.name === 'x86_64' ? [[4816, 4968], [4992, 5000]] : [[2632, 2708]];
}

/** arch_set_info_guest from `buf` (the domain's layout). Throws XenError like Xen. */
export function applyContext(d: SimDomain, v: SimVcpu, buf: Buffer, op: string): void {
  const L = d.layout;
  const c = v.cpu;
  const r = (name: ContextRegName): bigint => readField(buf, L, name) ?? 0n;
  if (d.type === 'pv' && v.initialised) {
    // A PV VCPU's page-table base and descriptor tables cannot be changed this way.
    if (r('cr3') !== c.cr3) throw new XenError(op, Errno.EOPNOTSUPP, 'cr3 differs from the live one');
    for (const [from, to] of pvFixedRanges(d)) {
      if (!buf.subarray(from, to).equals(v.ctxExtra.subarray(from, to))) throw new XenError(op, Errno.EOPNOTSUPP);
    }
  }
  const wasInitialised = v.initialised;
  buf.copy(v.ctxExtra, 0, 0, L.size);
  v.down = (Number(r('flags')) & Vgcf.online) === 0;
  GPR_NAMES.forEach((name, i) => {
    const val = readField(buf, L, name);
    if (val !== undefined) c.setGpr(i, val);
  });
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
  // Control registers only take effect when a VCPU is first brought up this way
  // (for HVM, arch_set_info_guest never applies them).
  if (!wasInitialised) {
    c.cr0 = r('cr0');
    c.cr3 = r('cr3');
    c.cr4 = r('cr4');
    if (d.type === 'pvh') Object.assign(v.sel, defaultSelectors(d));
    v.initialised = true;
  }
  v.halted = false;
  c.flushTlb();
}
