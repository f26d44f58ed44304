// Log-dirty mode (XEN_DOMCTL_shadow_op) and the PV p2m lists a toolstack reads to find a
// PV guest's memory, for the simulated Xen. After xen/arch/x86/mm/paging.c
// (paging_domctl, paging_log_dirty_op) and shadow/none.c (PV without CONFIG_SHADOW_PAGING
// answers -EOPNOTSUPP). The dirty log is a byte per RAM frame that the simulated CPUs
// (and outside writers: SimXen.writePhys/writeVirt, writable foreign mappings) set.
import { Off, SHADOW_ENABLE_LOG_DIRTY, SHADOW_LOGDIRTY_FINAL, ShadowOp } from '../domctl';
import { Errno, XenError } from '../errors';
import { DomctlData } from '../hypercalls';
import { SimDomain } from './domain';
import { PAGE_SIZE } from './paging';

/**
 * XEN_DOMCTL_shadow_op on `d`. `shadowPaging`: the hypervisor has CONFIG_SHADOW_PAGING
 * (PV log-dirty runs on shadow page tables; HVM/PVH use HAP and need nothing).
 * Returns true (Xen copies the struct back: pages and stats).
 */
export function shadowOp(d: SimDomain, op: Buffer, data: DomctlData | undefined, name: string, callerDomid: number, shadowPaging: boolean): boolean {
  const fail = (errno: number, hint?: string): never => {
    throw new XenError(name, errno, hint);
  };
  if (d.domid === callerDomid) fail(Errno.EINVAL, 'a paging op on itself');
  if (d.dying) fail(Errno.EINVAL, 'the domain is dying');
  if (d.vcpus.length === 0) fail(Errno.EINVAL, 'no VCPU 0');
  const sub = op.readUInt32LE(Off.shadowOp);
  const mode = op.readUInt32LE(Off.shadowMode);
  switch (sub) {
    case ShadowOp.enable:
    case ShadowOp.enableLogDirty:
      if (sub === ShadowOp.enable && !(mode & SHADOW_ENABLE_LOG_DIRTY)) fail(Errno.EINVAL, 'only log-dirty is simulated');
      if (d.dirtyLog) fail(Errno.EINVAL, 'log-dirty is already on');
      if (!d.hvm && !shadowPaging) fail(Errno.EOPNOTSUPP, 'PV log-dirty needs CONFIG_SHADOW_PAGING');
      d.setDirtyLog(new Uint8Array(d.mem.length / PAGE_SIZE));
      return true;
    case ShadowOp.off:
      d.setDirtyLog(undefined);
      return true;
    case ShadowOp.clean:
    case ShadowOp.peek: {
      if (mode & ~SHADOW_LOGDIRTY_FINAL) fail(Errno.EINVAL, 'CLEAN/PEEK take only LOGDIRTY_FINAL');
      const log = d.dirtyLog;
      if (!log) fail(Errno.EINVAL, 'log-dirty is off');
      const dirty = log as Uint8Array;
      const want = Number(op.readBigUInt64LE(Off.shadowPages));
      const pages = Math.min(want, dirty.length);
      let count = 0;
      for (let f = 0; f < dirty.length; f++) if (dirty[f]) count++;
      op.writeUInt32LE(d.dirtyStats.faults, Off.shadowFaultCount);
      op.writeUInt32LE(count, Off.shadowDirtyCount);
      if (data) {
        if (data.buf.length < Math.ceil(pages / 8)) fail(Errno.EFAULT, 'bitmap buffer too short');
        data.buf.fill(0, 0, Math.ceil(pages / 8));
        for (let f = 0; f < pages; f++) if (dirty[f]) data.buf[f >>> 3] |= 1 << (f & 7);
      }
      op.writeBigUInt64LE(BigInt(data ? pages : 0), Off.shadowPages);
      if (sub === ShadowOp.clean) {
        dirty.fill(0);
        d.dirtyStats = { faults: 0, dirty: 0 };
      }
      return true;
    }
    default:
      return fail(Errno.EINVAL, `shadow op ${sub} is not simulated`);
  }
}

/** 64-bit shared_info: arch_shared_info starts here (max_pfn +0, pfn_to_mfn_frame_list_list +8, p2m_cr3 +24). */
export const SHARED_INFO_ARCH = 3088;

/**
 * A PV domain's shared_info page and its 3-level p2m lists (frame list list -> frame
 * lists -> p2m pages), as a PV Linux publishes them, in special frames after RAM. The
 * p2m is the identity (MFN = PFN), as everywhere in the simulator.
 */
export function buildPvSharedInfo(d: SimDomain): void {
  const frames = d.mem.length / PAGE_SIZE;
  const perPage = PAGE_SIZE / 8;
  let next = frames + 16;
  const page = (): [number, Buffer] => {
    const f = next++;
    const b = Buffer.alloc(PAGE_SIZE);
    d.specialFrames.set(f, b);
    return [f, b];
  };
  const p2mFrames: number[] = [];
  for (let i = 0; i < frames; i += perPage) {
    const [f, b] = page();
    for (let j = 0; j < perPage && i + j < frames; j++) b.writeBigUInt64LE(BigInt(i + j), j * 8);
    p2mFrames.push(f);
  }
  const listFrames: number[] = [];
  for (let i = 0; i < p2mFrames.length; i += perPage) {
    const [f, b] = page();
    p2mFrames.slice(i, i + perPage).forEach((m, j) => b.writeBigUInt64LE(BigInt(m), j * 8));
    listFrames.push(f);
  }
  const [fll, llb] = page();
  listFrames.forEach((m, j) => llb.writeBigUInt64LE(BigInt(m), j * 8));
  const [si, sib] = page();
  sib.writeBigUInt64LE(BigInt(frames), SHARED_INFO_ARCH);
  sib.writeBigUInt64LE(BigInt(fll), SHARED_INFO_ARCH + 8);
  d.sharedInfoFrame = si;
}
