// Which guest frames hold memory, and how to reach each: a snapshot's list of pages.
// HVM/PVH: guest frames 0..XENMEM_maximum_gpfn without the MMIO hole below 4 GiB,
// minus what getpageframeinfo3 calls XTAB (no page). PV: the guest's own p2m, read
// through shared_info's 3-level frame list (pfn -> mfn); foreign mappings take MFNs.
import { XenControl } from '../xg/xenctl';
import { DomainInfo, PageType } from '../xg/domctl';
import { UserError, XenError } from '../xg/errors';

/** Guest frames of the MMIO hole (0xF0000000 to 4 GiB by default), as xc_domain_dumpcore skips. */
const MMIO_HOLE_START = 0xf0000;
const MMIO_HOLE_END = 0x100000;
/** getpageframeinfo3 takes at most this many frames per call. */
const PFINFO_BATCH = 1024;
/** 64-bit shared_info: arch_shared_info (max_pfn, pfn_to_mfn_frame_list_list, nmi_reason, p2m_cr3, p2m_vaddr). */
const SHARED_INFO_ARCH = 3088;
const P2M_PER_PAGE = 512;
/** p2m entries with these bits (Linux: FOREIGN_FRAME_BIT, IDENTITY_FRAME_BIT) or ~0 are not RAM of the guest. */
const P2M_SPECIAL = 3n << 62n;

export interface GuestFrames {
  /** Size of the pfn space (bitmap length for log-dirty). */
  readonly pfnSpace: number;
  /** Pseudo-physical frame numbers to copy, ascending. */
  readonly pfns: readonly number[];
  /** The frame a foreign mapping takes for `pfn` (gfn for HVM/PVH, mfn for PV). */
  frameOf(pfn: number): bigint;
  /** The pfn of a frame found in the guest's page tables (PV: mfn -> pfn), or undefined. */
  pfnOfFrame(frame: number): number | undefined;
  /** How the list was found, for the user. */
  readonly how: string;
  /**
   * PV: the machine frame of the guest's p2m frame-list list (shared_info's
   * pfn_to_mfn_frame_list_list): with it, crash reads the core the way it reads a
   * PV domain in a Xen host's kdump (machine addresses, the p2m from the guest).
   */
  readonly p2mFrameListList?: bigint;
}

export function enumerateFrames(xc: XenControl, domid: number, info: DomainInfo, width: 32 | 64): GuestFrames {
  return info.hvm ? hvmFrames(xc, domid, info) : pvFrames(xc, domid, info, width);
}

function hvmFrames(xc: XenControl, domid: number, info: DomainInfo): GuestFrames {
  const max = Number(xc.maximumGpfn(domid));
  const candidates: number[] = [];
  for (let g = 0; g <= max; g++) {
    if (g === MMIO_HOLE_START) g = MMIO_HOLE_END;
    if (g > max) break;
    candidates.push(g);
  }
  // getpageframeinfo3 populates PoD entries (memory < maxmem): there, rely on mapping errors.
  // Xen says whether there are any; max_pages above tot_pages alone does not mean PoD (xl
  // gives every HVM/PVH guest a little slack), and mapping every frame of the pfn space
  // up to the special pages (almost 4 GiB of it) cost a PVH snapshot most of its time.
  const pod = hasPodEntries(xc, domid, info);
  let pfns = candidates;
  if (!pod) {
    pfns = [];
    for (let i = 0; i < candidates.length; i += PFINFO_BATCH) {
      const chunk = candidates.slice(i, i + PFINFO_BATCH);
      const types = xc.getPageFrameInfo(domid, chunk.map(BigInt));
      chunk.forEach((g, j) => {
        if (((types[j] & PageType.mask) >>> 0) !== (PageType.xtab >>> 0)) pfns.push(g);
      });
    }
  }
  return {
    pfnSpace: max + 1, pfns, frameOf: (p) => BigInt(p), pfnOfFrame: (f) => (f <= max ? f : undefined),
    how: `guest frames 0..0x${max.toString(16)} (XENMEM_maximum_gpfn), ${pfns.length} populated${pod ? ' (PoD guest: holes found by mapping)' : ''}`,
  };
}

function hasPodEntries(xc: XenControl, domid: number, info: DomainInfo): boolean {
  try {
    return xc.podTarget(domid).podEntries > 0n;
  } catch (e) {
    if (!(e instanceof XenError)) throw e;
    return info.totPages < info.maxPages; // cannot ask: assume PoD where it could be
  }
}

function pvFrames(xc: XenControl, domid: number, info: DomainInfo, width: 32 | 64): GuestFrames {
  if (width !== 64) throw new UserError('snapshots of 32-bit PV guests are not supported (their shared_info layout differs)');
  const read = (frames: bigint[]): Buffer => {
    const m = xc.hc.mapForeign(domid, frames, false);
    try {
      const bad = m.errors.findIndex((e) => e !== 0);
      if (bad >= 0) throw new UserError(`cannot map frame 0x${frames[bad].toString(16)} of domain ${domid}'s p2m (errno ${m.errors[bad]})`);
      const b = Buffer.alloc(frames.length * 4096);
      m.read(0, b);
      return b;
    } finally {
      m.unmap();
    }
  };
  const si = read([info.sharedInfoFrame]);
  const maxPfn = Number(si.readBigUInt64LE(SHARED_INFO_ARCH));
  const fll = si.readBigUInt64LE(SHARED_INFO_ARCH + 8);
  if (maxPfn === 0 || fll === 0n || fll === 0xffffffffffffffffn) {
    throw new UserError(`domain ${domid} publishes no 3-level p2m frame list in shared_info (max_pfn ${maxPfn}); ` +
      'only that form of a PV guest\'s p2m is read here');
  }
  const p2mPages = Math.ceil(maxPfn / P2M_PER_PAGE);
  const listPages = Math.ceil(p2mPages / P2M_PER_PAGE);
  const top = read([fll]);
  const lists = read(Array.from({ length: listPages }, (_, i) => top.readBigUInt64LE(i * 8)));
  const p2mFrames = Array.from({ length: p2mPages }, (_, i) => lists.readBigUInt64LE(i * 8));
  const p2m = new Array<bigint>(maxPfn);
  for (let i = 0; i < p2mFrames.length; i += 256) {
    const chunk = read(p2mFrames.slice(i, i + 256));
    for (let j = 0; j < chunk.length / 8 && (i * P2M_PER_PAGE + j) < maxPfn; j++) p2m[i * P2M_PER_PAGE + j] = chunk.readBigUInt64LE(j * 8);
  }
  const pfns: number[] = [];
  const m2p = new Map<number, number>();
  p2m.forEach((mfn, pfn) => {
    if ((mfn & P2M_SPECIAL) !== 0n) return;
    pfns.push(pfn);
    m2p.set(Number(mfn), pfn);
  });
  return {
    pfnSpace: maxPfn, pfns, frameOf: (p) => p2m[p], pfnOfFrame: (f) => m2p.get(f),
    how: `the guest's p2m (max_pfn ${maxPfn}), ${pfns.length} frames`,
    p2mFrameListList: fll,
  };
}
