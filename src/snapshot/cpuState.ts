// VCPU registers for the core's notes, and the page-table root the kernel walk starts
// from, read while the guest is paused (the same instant as the last pages).
import { XenControl } from '../xg/xenctl';
import { HvmCpu } from '../xg/domctl';
import { ContextRegName, readField } from '../xg/context';
import { VcpuSet } from '../vcpu/vcpus';
import { VcpuContext, inKernel } from '../vcpu/registers';
import { kernelHalfCr3, pagingModeHvm, pagingModePv, pv32Cr3ToAddr, rootOf } from '../vcpu/pageWalk';
import { CpuState } from './elfCore';
import { GuestFrames } from './memoryMap';
import { KernelWalk } from './kernelMap';

const NAMES: ContextRegName[] = ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rbp', 'rsp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15',
  'rip', 'rflags', 'cs', 'ss', 'ds', 'es', 'fs', 'gs', 'fs_base'];

export interface VcpuSnapshot {
  vcpu: number;
  state: CpuState;
  kernel: boolean;
  /** The raw context (for the kernel walk's root). */
  ctx: VcpuContext;
  /** HVM/PVH: the CPU record's EFER (paging mode). */
  efer?: bigint;
}

/** Every online VCPU's registers; PV cr3 values become pseudo-physical (the file has no machine frames). */
export function readVcpus(xc: XenControl, domid: number, vcpus: VcpuSet, hvm: boolean, width: 32 | 64, frames: GuestFrames): VcpuSnapshot[] {
  vcpus.invalidate();
  vcpus.refresh();
  return vcpus.list().map((v) => {
    const ctx = vcpus.context(v);
    const rd = (n: ContextRegName) => (ctx.lost?.has(n) ? 0n : readField(ctx.buf, ctx.layout, n) ?? 0n);
    const regs: Record<string, bigint> = {};
    for (const n of NAMES) regs[n] = rd(n);
    const kernel = inKernel(ctx);
    regs.gs_base = rd(kernel ? 'gs_base_kernel' : 'gs_base_user');
    let cr3 = rd('cr3');
    if (!hvm) {
      const addr = width === 32 ? pv32Cr3ToAddr(cr3) : cr3 & ~0xfffn;
      const pfn = frames.pfnOfFrame(Number(addr >> 12n));
      cr3 = pfn === undefined ? 0n : BigInt(pfn) << 12n;
    }
    const efer = hvm ? xc.getHvmCpu(domid, v).readBigUInt64LE(HvmCpu.msrEfer) : undefined;
    return { vcpu: v, kernel, ctx, efer, state: { regs, cr: [rd('cr0'), 0n, rd('cr2'), cr3, rd('cr4')] } };
  });
}

/** Where to walk the kernel half from: a VCPU in kernel mode if any (its cr3 maps the kernel for sure). */
export function kernelWalkRoot(cpus: VcpuSnapshot[], hvm: boolean, width: 32 | 64, frames: GuestFrames): Omit<KernelWalk, 'readPage'> | undefined {
  const c = cpus.find((x) => x.kernel) ?? cpus[0];
  if (!c) return undefined;
  const raw = readField(c.ctx.buf, c.ctx.layout, 'cr3') ?? 0n;
  const pfnOfFrame = (f: number) => frames.pfnOfFrame(f);
  if (!hvm) {
    const mode = pagingModePv(width);
    const root = rootOf(mode, width === 32 ? pv32Cr3ToAddr(raw) : raw);
    return { kind: mode.kind === '4level' ? '4level' : 'pae', rootFrame: Number(root.frame), rootOffset: root.offset, pfnOfFrame, superpages: false };
  }
  const mode = pagingModeHvm(readField(c.ctx.buf, c.ctx.layout, 'cr0') ?? 0n, readField(c.ctx.buf, c.ctx.layout, 'cr4') ?? 0n, c.efer ?? 0n);
  if (mode.kind !== '4level' && mode.kind !== 'pae') return undefined;
  const root = rootOf(mode, c.kernel ? raw : kernelHalfCr3(raw));
  return { kind: mode.kind, rootFrame: Number(root.frame), rootOffset: root.offset, pfnOfFrame, superpages: true };
}
