// Foreign mappings of guest frames (privcmd mmap + IOCTL_PRIVCMD_MMAPBATCH_V2 on real
// Xen) and XEN_DOMCTL_getpageframeinfo3 for the simulated Xen. The p2m is the identity,
// so a PV guest's MFN and an HVM guest's GFN are both its guest-physical frame number.
// Per-frame outcomes follow what Xen gives privcmd for each frame:
//   - a frame outside RAM (or taken out of the physmap) is a hole: EINVAL (for HVM,
//     get_page_from_gfn finds nothing; for PV, the MFN is not the domain's);
//   - a writable mapping of a PV page-table page fails: get_page_from_l1e cannot take
//     PGT_writable_page on a typed page and answers -EBUSY (could_not_pin). Read-only
//     mappings of them are fine;
//   - HVM memory has no PV page types: every RAM frame maps writable.
// A mapping holds its pages (as Xen's mapping holds a page reference): it keeps working
// after the frame leaves the physmap.
import { DomctlData, ForeignMapping } from '../hypercalls';
import { Off, PageType } from '../domctl';
import { Errno, XenError } from '../errors';
import { SimDomain } from './domain';
import { PAGE_SIZE } from './paging';

/** The page behind `frame` of `d`, or the errno Xen gives for it. */
function resolveFrame(d: SimDomain, frame: bigint, writable: boolean): Buffer | number {
  if (frame < 0n || frame >= 1n << 40n) return Errno.EINVAL;
  const f = Number(frame);
  if (d.removedFrames.has(f)) return Errno.EINVAL;
  const special = d.specialFrames.get(f);
  if (special) return special;
  const pa = f * PAGE_SIZE;
  if (pa + PAGE_SIZE > d.mem.length) return Errno.EINVAL;
  if (writable && !d.hvm && d.pageTables.has(f)) return Errno.EBUSY;
  return d.mem.subarray(pa, pa + PAGE_SIZE);
}

class SimForeignMapping implements ForeignMapping {
  readonly frames: number;
  readonly writable: boolean;
  readonly errors: readonly number[];
  private pages: (Buffer | undefined)[];
  private live = true;

  constructor(pages: (Buffer | number)[], writable: boolean, private readonly onUnmap: (m: SimForeignMapping) => void,
    private readonly onWrite: (frameIndex: number) => void = () => undefined) {
    this.frames = pages.length;
    this.writable = writable;
    this.errors = pages.map((p) => (typeof p === 'number' ? p : 0));
    this.pages = pages.map((p) => (typeof p === 'number' ? undefined : p));
  }

  /**
   * Check [offset, offset+len) before copying anything: on real Xen a failed frame or a
   * munmapped range faults (SIGBUS/SIGSEGV); here it is an EFAULT.
   */
  private span(offset: number, len: number, what: string): void {
    const op = `foreign mapping ${what}`;
    if (!this.live) throw new XenError(op, Errno.EFAULT, 'the mapping has been unmapped');
    if (!Number.isInteger(offset) || offset < 0 || offset + len > this.frames * PAGE_SIZE) {
      throw new XenError(op, Errno.EFAULT, `bytes ${offset}..${offset + len} are outside the ${this.frames}-frame mapping`);
    }
    if (len === 0) return;
    for (let i = Math.floor(offset / PAGE_SIZE); i <= Math.floor((offset + len - 1) / PAGE_SIZE); i++) {
      if (!this.pages[i]) throw new XenError(op, Errno.EFAULT, `frame ${i} of the mapping failed (errno ${this.errors[i]})`);
    }
  }

  private copy(offset: number, len: number, fn: (page: Buffer, pageOff: number, bufOff: number, n: number) => void): void {
    for (let done = 0; done < len;) {
      const at = offset + done;
      const pageOff = at % PAGE_SIZE;
      const n = Math.min(PAGE_SIZE - pageOff, len - done);
      fn(this.pages[Math.floor(at / PAGE_SIZE)] as Buffer, pageOff, done, n);
      done += n;
    }
  }

  read(offset: number, into: Buffer): void {
    this.span(offset, into.length, 'read');
    this.copy(offset, into.length, (page, pageOff, bufOff, n) => page.copy(into, bufOff, pageOff, pageOff + n));
  }

  write(offset: number, from: Buffer): void {
    if (this.live && !this.writable) throw new XenError('foreign mapping write', Errno.EACCES, 'the mapping is read-only');
    this.span(offset, from.length, 'write');
    // Log-dirty sees writes through a writable foreign mapping too.
    for (let i = Math.floor(offset / PAGE_SIZE); from.length > 0 && i <= Math.floor((offset + from.length - 1) / PAGE_SIZE); i++) this.onWrite(i);
    this.copy(offset, from.length, (page, pageOff, bufOff, n) => from.copy(page, pageOff, bufOff, bufOff + n));
  }

  unmap(): void {
    if (!this.live) return;
    this.live = false;
    this.pages = [];
    this.onUnmap(this);
  }
}

/** The simulated privcmd's mappings, counted per domain so that tests can catch leaks. */
export class ForeignMaps {
  private readonly live = new Map<number, Set<SimForeignMapping>>();

  constructor(private readonly domain: (domid: number) => SimDomain | undefined) {}

  map(domid: number, frames: readonly bigint[], writable: boolean): ForeignMapping {
    const op = `IOCTL_PRIVCMD_MMAPBATCH_V2(dom${domid})`;
    // mmap of zero bytes fails before privcmd is asked anything.
    if (frames.length === 0) throw new XenError(op, Errno.EINVAL, 'no frames');
    const d = this.domain(domid);
    if (!d || d.dying) throw new XenError(op, Errno.ESRCH, 'no such domain');
    const set = this.live.get(domid) ?? new Set<SimForeignMapping>();
    this.live.set(domid, set);
    const m = new SimForeignMapping(frames.map((f) => resolveFrame(d, f, writable)), writable, (x) => set.delete(x),
      (i) => d.markDirty(Number(frames[i]) * PAGE_SIZE, PAGE_SIZE));
    set.add(m);
    return m;
  }

  /** Mappings not yet unmapped: of `domid`, or of every domain. */
  count(domid?: number): number {
    if (domid !== undefined) return this.live.get(domid)?.size ?? 0;
    let n = 0;
    for (const s of this.live.values()) n += s.size;
    return n;
  }
}

/** PageType.xtab as an unsigned value (0xf << 28 is negative in JavaScript). */
const XTAB = PageType.xtab >>> 0;

/** XEN_DOMCTL_PFINFO_* type of one frame (arch_do_domctl's getpageframeinfo3 loop), unsigned. */
function frameType(d: SimDomain, frame: bigint): number {
  if (frame < 0n || frame >= 1n << 40n) return XTAB;
  const f = Number(frame);
  if (d.specialFrames.has(f)) return PageType.none;
  if (d.removedFrames.has(f) || (f + 1) * PAGE_SIZE > d.mem.length) return XTAB;
  return d.hvm ? PageType.none : d.pageTables.get(f) ?? PageType.none;
}

/** At most this many frames per call (anything more is E2BIG). */
const PFINFO_MAX = 1024;

/**
 * XEN_DOMCTL_getpageframeinfo3: each u64 of the array (a frame number) is overwritten
 * with that frame's type. A short array faults part-way, as copy_{from,to}_guest would.
 * The struct is not copied back.
 */
export function getPageFrameInfo(d: SimDomain, op: Buffer, data: DomctlData | undefined, name: string): void {
  const num = op.readBigUInt64LE(Off.pfiNum);
  if (num > BigInt(PFINFO_MAX)) throw new XenError(name, Errno.E2BIG, `at most ${PFINFO_MAX} frames`);
  for (let i = 0; i < Number(num); i++) {
    if (!data || (i + 1) * 8 > data.buf.length) throw new XenError(name, Errno.EFAULT);
    data.buf.writeBigUInt64LE(BigInt(frameType(d, data.buf.readBigUInt64LE(i * 8))), i * 8);
  }
}
