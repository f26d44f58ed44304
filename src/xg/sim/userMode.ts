// Guest user mode for the simulated guests, the situation that breaks Xen's gdbsx
// memory path: a VCPU running a process on page tables of its own. Each VCPU that
// enters user mode gets its own "process": page tables, a code page running a loop
// forever, a data page and a stack, all in frames the loader leaves free
// (MemoryMap.userProcesses). The tables follow what Linux builds:
//   - 64-bit PV (arch/x86/xen/mmu_pv.c, xen_pgd_alloc/xen_get_user_pgd): a kernel PGD
//     (the kernel's top level plus the process's user half) and a user PGD with the user
//     half only. Xen runs a user-mode VCPU on the user one (update_cr3: guest_table_user
//     when TF_kernel_mode is clear) and getvcpucontext shows ctrlreg[3] = kernel PGD,
//     ctrlreg[1] = user PGD, no VGCF_in_kernel. Both PGDs are pinned L4s.
//   - 64-bit PVH/HVM with PTI (arch/x86/mm/pti.c): the kernel PGD in an 8 KiB-aligned
//     pair, the user PGD 4 KiB above it with the user half only; in user mode cr3 is the
//     user PGD (plus the user PCID, bit 11 set, when CR4.PCIDE is on).
//   - 32-bit (PAE, no PTI): one PDPT per process whose top GB is the kernel's; for PV a
//     private copy of the kernel's L2 (Linux PV has no shared kernel PMD: Xen needs a
//     per-PDPT L2 for the top GB).
import { PageType } from '../domctl';
import { Gpr } from './cpu-core';
import { SegName, SimDomain, SimVcpu } from './domain';
import { MemoryMap, PFINFO_LPINTAB } from './loader';
import { PAGE_SIZE, PTE_NX_HI, PTE_P, PTE_RW, PTE_US } from './paging';

/** Where every process has its pages (the same addresses in each process). */
export const UserAddr = {
  code: 0x400000n,
  data: 0x5a5a0000n,
  /** One stack page right after the data page; rsp starts at its top. */
  stack: 0x5a5a1000n,
} as const;

/** The loop each process runs: `1: inc %rax; jmp 1b` (inc %eax in 32-bit code). */
const LOOP64 = Buffer.from([0x48, 0xff, 0xc0, 0xeb, 0xfb]);
const LOOP32 = Buffer.from([0x40, 0xeb, 0xfd]);

const CR4_PCIDE = 1n << 17n;
/** X86_CR3_PTI_PCID_USER_BIT: Linux's user PCID is the kernel one with bit 11 set. */
const PCID_USER_BIT = 0x800n;

export interface UserModeOptions {
  /** Bytes at the data address (at most 4096). Default: "user data of vcpu N". */
  data?: Buffer;
  /** PVH/HVM, 64-bit: run with CR4.PCIDE set and this kernel PCID (1..0x7ff); user cr3 carries pcid | 0x800. */
  pcid?: number;
}

export interface UserModeInfo {
  codeAddr: bigint;
  dataAddr: bigint;
  stackTop: bigint;
  /** The process's kernel PGD (PDPT for 32-bit), as a cr3 value (with the kernel PCID if any). */
  kernelCr3: bigint;
  /** The cr3 the VCPU runs on in user mode (32-bit: the same as kernelCr3). */
  userCr3: bigint;
  /** The process's frames that are PV page tables (none for PVH). */
  tableFrames: number[];
}

interface KernelState {
  lo: Uint32Array;
  hi: Uint32Array;
  rip: bigint;
  rflags: number;
  cr3: bigint;
  cr4: bigint;
  sel: Record<SegName, number>;
  guestTable: bigint;
  guestTableUser: bigint;
}

/** A VCPU's process and the kernel state it returns to (SimVcpu.user). */
export interface UserProcess {
  readonly info: UserModeInfo;
  readonly saved: KernelState;
}

/** Frames of a process block, by use (the kernel PGD first: the block is 8 KiB aligned). */
const Slot = { kernelPgd: 0, userPgd: 1, l3OrKernelL2: 2, l2Low: 3, l2High: 4, l1Code: 5, l1Data: 6, code: 7, data: 8, stack: 9 } as const;

function userSelectors(long: boolean): Record<SegName, number> {
  // Linux's __USER_CS/__USER_DS (64-bit: 0x33/0x2b; 32-bit: 0x73/0x7b).
  return long ? { cs: 0x33, ss: 0x2b, ds: 0, es: 0, fs: 0, gs: 0 } : { cs: 0x73, ss: 0x7b, ds: 0x7b, es: 0x7b, fs: 0, gs: 0 };
}

function put(mem: Buffer, table: number, index: number, frame: number, flags: number, hi = 0): void {
  mem.writeUInt32LE((frame | flags) >>> 0, table + index * 8);
  mem.writeUInt32LE(hi >>> 0, table + index * 8 + 4);
}

const idx = (va: bigint, shift: bigint): number => Number((va >> shift) & 0x1ffn);

/** Reasons enterUserMode refuses, as plain Errors (a control-API misuse, not a hypercall). */
function check(d: SimDomain, v: SimVcpu, o: UserModeOptions): void {
  const who = `d${d.domid}v${v.id}`;
  if (d.placeholder || d.dying) throw new Error(`${who}: not a running guest`);
  if (!v.initialised || v.down) throw new Error(`${who} is not up`);
  if (v.user) throw new Error(`${who} is already in user mode`);
  if (o.data && o.data.length > PAGE_SIZE) throw new Error('user data is at most one page');
  if (o.pcid !== undefined && (d.type !== 'pvh' || d.width !== 64 || o.pcid < 1 || o.pcid > 0x7ff)) {
    throw new Error('pcid: 1..0x7ff, for 64-bit PVH guests only');
  }
  if (d.type === 'pv' && d.width === 64 && !v.kernelMode) throw new Error(`${who} is not in kernel mode`);
  const end = MemoryMap.userProcesses + (v.id + 1) * MemoryMap.userProcessSize;
  if (end > d.mem.length) throw new Error(`${who}: no room for a process below 0x${d.mem.length.toString(16)}`);
}

/** Put VCPU `v` into guest user mode, running its own process (see the file comment). */
export function enterUserMode(d: SimDomain, v: SimVcpu, o: UserModeOptions = {}): UserModeInfo {
  check(d, v, o);
  const { mem } = d;
  const c = v.cpu;
  const long = d.width === 64;
  const pv = d.type === 'pv';
  const base = MemoryMap.userProcesses + v.id * MemoryMap.userProcessSize;
  const at = (slot: number) => base + slot * PAGE_SIZE;
  mem.fill(0, base, base + MemoryMap.userProcessSize);

  // Code, data and stack pages, and the L2/L1 tables under the user half.
  (long ? LOOP64 : LOOP32).copy(mem, at(Slot.code));
  (o.data ?? Buffer.from(`user data of vcpu ${v.id}\0`, 'latin1')).copy(mem, at(Slot.data));
  const up = PTE_P | PTE_RW | PTE_US;
  put(mem, at(Slot.l2Low), idx(UserAddr.code, 21n), at(Slot.l1Code), up);
  put(mem, at(Slot.l1Code), idx(UserAddr.code, 12n), at(Slot.code), PTE_P | PTE_US);
  put(mem, at(Slot.l2High), idx(UserAddr.data, 21n), at(Slot.l1Data), up);
  put(mem, at(Slot.l1Data), idx(UserAddr.data, 12n), at(Slot.data), up, PTE_NX_HI);
  put(mem, at(Slot.l1Data), idx(UserAddr.stack, 12n), at(Slot.stack), up, PTE_NX_HI);
  // Both user addresses lie in the first 2 GiB: L3 (or PDPT) slots 0 and 1.
  const gb = (va: bigint) => Number(va >> 30n);
  if (gb(UserAddr.code) !== 0 || gb(UserAddr.data) !== 1 || gb(UserAddr.stack) !== 1) throw new Error('user layout');

  const types = new Map<number, number>();
  const frame = (slot: number) => at(slot) / PAGE_SIZE;
  let kernelCr3: bigint;
  let userCr3: bigint;
  if (long) {
    const l3 = at(Slot.l3OrKernelL2);
    put(mem, l3, 0, at(Slot.l2Low), up);
    put(mem, l3, 1, at(Slot.l2High), up);
    // The kernel PGD: the kernel's top level as it is, and the process's user half. PTI
    // marks the kernel copy's user entries NX (pti_set_user_pgtbl); PV has no PTI.
    const kernelRoot = Number(BigInt.asUintN(52, pv ? v.guestTable : c.cr3) & ~0xfffn);
    mem.copy(mem, at(Slot.kernelPgd), kernelRoot, kernelRoot + PAGE_SIZE);
    put(mem, at(Slot.kernelPgd), 0, l3, up, pv ? 0 : PTE_NX_HI);
    put(mem, at(Slot.userPgd), 0, l3, up);
    kernelCr3 = BigInt(at(Slot.kernelPgd));
    userCr3 = BigInt(at(Slot.userPgd));
    if (pv) {
      types.set(frame(Slot.kernelPgd), (PageType.l4 | PFINFO_LPINTAB) >>> 0);
      types.set(frame(Slot.userPgd), (PageType.l4 | PFINFO_LPINTAB) >>> 0);
      types.set(frame(Slot.l3OrKernelL2), PageType.l3);
    } else if (o.pcid !== undefined) {
      kernelCr3 |= BigInt(o.pcid);
      userCr3 |= BigInt(o.pcid) | PCID_USER_BIT;
    }
  } else {
    // PAE: PDPTEs carry only P. The kernel's top GB (slot 3; slot 2 too if it had one).
    const pdpt = at(Slot.kernelPgd);
    const kernelPdpt = Number(c.cr3 & 0xffffffe0n);
    put(mem, pdpt, 0, at(Slot.l2Low), PTE_P);
    put(mem, pdpt, 1, at(Slot.l2High), PTE_P);
    for (const slot of [2, 3]) mem.copy(mem, pdpt + slot * 8, kernelPdpt + slot * 8, kernelPdpt + slot * 8 + 8);
    if (pv) {
      const kl2 = mem.readUInt32LE(pdpt + 3 * 8) & 0xfffff000;
      if (kl2) {
        mem.copy(mem, at(Slot.l3OrKernelL2), kl2, kl2 + PAGE_SIZE);
        put(mem, pdpt, 3, at(Slot.l3OrKernelL2), PTE_P);
        types.set(frame(Slot.l3OrKernelL2), PageType.l2);
      }
      types.set(frame(Slot.kernelPgd), (PageType.l3 | PFINFO_LPINTAB) >>> 0);
    }
    kernelCr3 = userCr3 = BigInt(pdpt);
  }
  if (pv) {
    for (const s of [Slot.l2Low, Slot.l2High]) types.set(frame(s), PageType.l2);
    for (const s of [Slot.l1Code, Slot.l1Data]) types.set(frame(s), PageType.l1);
    for (const [f, t] of types) d.pageTables.set(f, t);
  }

  const saved: KernelState = {
    lo: Uint32Array.from(c.lo), hi: Uint32Array.from(c.hi), rip: c.rip, rflags: c.rflags, cr3: c.cr3, cr4: c.cr4,
    sel: { ...v.sel }, guestTable: v.guestTable, guestTableUser: v.guestTableUser,
  };
  const info: UserModeInfo = {
    codeAddr: UserAddr.code, dataAddr: UserAddr.data, stackTop: UserAddr.stack + BigInt(PAGE_SIZE),
    kernelCr3, userCr3, tableFrames: [...types.keys()],
  };
  // The process's registers: fresh, at its loop.
  c.lo.fill(0);
  c.hi.fill(0);
  c.setGpr(Gpr.rsp, info.stackTop);
  c.rip = UserAddr.code;
  c.rflags = 0x202;
  Object.assign(v.sel, userSelectors(long));
  if (pv && long) {
    // toggle_guest_mode: TF_kernel_mode clear, the active table is guest_table_user.
    v.guestTable = kernelCr3;
    v.guestTableUser = userCr3;
    v.kernelMode = false;
  }
  if (o.pcid !== undefined) c.cr4 |= CR4_PCIDE;
  c.cr3 = userCr3;
  v.user = { info, saved };
  return info;
}

/** Back to the kernel state enterUserMode saved; the process's frames stop being page tables. */
export function leaveUserMode(d: SimDomain, v: SimVcpu): void {
  const p = v.user;
  if (!p) throw new Error(`d${d.domid}v${v.id} is not in user mode`);
  const c = v.cpu;
  const s = p.saved;
  c.lo.set(s.lo);
  c.hi.set(s.hi);
  c.rip = s.rip;
  c.rflags = s.rflags;
  c.cr4 = s.cr4;
  c.cr3 = s.cr3;
  Object.assign(v.sel, s.sel);
  v.guestTable = s.guestTable;
  v.guestTableUser = s.guestTableUser;
  v.kernelMode = true;
  for (const f of p.info.tableFrames) d.pageTables.delete(f);
  v.user = undefined;
}
