// Guest virtual memory through XEN_DOMCTL_gdbsx_guestmemio. Xen translates through
// VCPU0's page tables (or a `pgd3` value for 32-bit PAE module space) and fails a
// whole call if any page is unmapped, so: try the range in one call (fast path for
// bulk reads), and on EFAULT walk it page by page to return the readable prefix.
import { Errno, XenError, isXenError } from '../xg/errors';
import { XenControl } from '../xg/xenctl';

const PAGE = 4096n;
/** Small reads are served from aligned lines of this size (never crossing a page). */
const LINE = 64n;
/** Cached lines older than this are read again (bounds staleness if memory changes under a stopped guest). */
const LINE_TTL_MS = 500;
/** Largest single hypercall; bigger requests are split (keeps locked buffers bounded). */
const MAX_CHUNK = 1 << 20;

export class GuestMemory {
  private readonly xc: XenControl;
  private readonly domid: number;
  private readonly addrMask: bigint;
  /** gdbsx's `pgd3val`: 0 = translate through VCPU0's cr3. */
  pgd3 = 0n;
  /**
   * While the guest is stopped gdb reads the same few bytes again and again (the byte at
   * pc four times per stop, the function's first line for prologue analysis): one hypercall
   * per 64-byte line serves them. Dropped by invalidate() (the guest runs, registers
   * change), by any write, and after LINE_TTL_MS.
   */
  private readonly lines = new Map<string, Buffer>();
  private linesSince = 0;

  constructor(xc: XenControl, domid: number, width: 32 | 64) {
    this.xc = xc;
    this.domid = domid;
    this.addrMask = width === 64 ? (1n << 64n) - 1n : 0xffffffffn;
  }

  private io(addr: bigint, buf: Buffer, write: boolean, pgd3: bigint): void {
    this.xc.guestMemIo(this.domid, addr & this.addrMask, buf, write, pgd3);
  }

  /**
   * Reads up to `len` bytes; returns the readable prefix (possibly empty).
   * `pgd3` overrides the current translation (breakpoints keep the one they were set with).
   */
  read(addr: bigint, len: number, pgd3 = this.pgd3, into?: Buffer): Buffer {
    if (!into && len > 0 && len <= 256) {
      const cached = this.readLines(addr & this.addrMask, len, pgd3);
      if (cached) return cached;
    }
    // A caller's buffer (reused across requests) spares a fresh allocation per read.
    const out = into && into.length >= len ? into.subarray(0, len) : Buffer.alloc(len);
    let done = 0;
    while (done < len) {
      const n = Math.min(MAX_CHUNK, len - done);
      const got = this.readChunk(addr + BigInt(done), out.subarray(done, done + n), pgd3);
      done += got;
      if (got < n) break;
    }
    return out.subarray(0, done);
  }

  /** Forget cached lines: call whenever guest memory or VCPU0's page tables may have changed. */
  invalidate(): void {
    this.lines.clear();
  }

  /** A small read through the line cache; undefined if a line is unreadable (the caller reads exactly). */
  private readLines(addr: bigint, len: number, pgd3: bigint): Buffer | undefined {
    if (this.lines.size > 0 && performance.now() - this.linesSince > LINE_TTL_MS) this.lines.clear();
    const out = Buffer.allocUnsafe(len);
    let done = 0;
    for (let line = addr - (addr % LINE); done < len; line = (line + LINE) & this.addrMask) {
      const key = `${pgd3}:${line}`;
      let b = this.lines.get(key);
      if (!b) {
        b = Buffer.alloc(Number(LINE));
        try {
          this.io(line, b, false, pgd3);
        } catch (e) {
          if (isXenError(e, Errno.EFAULT)) return undefined;
          throw e;
        }
        if (this.lines.size === 0) this.linesSince = performance.now();
        this.lines.set(key, b);
      }
      const start = done === 0 ? Number(addr - line) : 0;
      const n = Math.min(Number(LINE) - start, len - done);
      b.copy(out, done, start, start + n);
      done += n;
    }
    return out;
  }

  private readChunk(addr: bigint, dst: Buffer, pgd3: bigint): number {
    try {
      this.io(addr, dst, false, pgd3);
      return dst.length;
    } catch (e) {
      if (!isXenError(e, Errno.EFAULT)) throw e;
    }
    // Some page is unmapped: find the readable prefix, page by page.
    let done = 0;
    while (done < dst.length) {
      const a = addr + BigInt(done);
      const n = Math.min(dst.length - done, Number(PAGE - (a % PAGE)));
      try {
        this.io(a, dst.subarray(done, done + n), false, pgd3);
      } catch (e) {
        if (isXenError(e, Errno.EFAULT)) return done;
        throw e;
      }
      done += n;
    }
    return done;
  }

  /**
   * Writes all of `data` or nothing: Xen may have written a prefix before failing,
   * so the old contents are read first and put back on failure.
   */
  write(addr: bigint, data: Buffer, pgd3 = this.pgd3): void {
    if (data.length === 0) return;
    const before = this.read(addr, data.length, pgd3);
    this.lines.clear(); // also the lines `before` was just read through
    if (before.length < data.length) {
      throw new XenError('XEN_DOMCTL_gdbsx_guestmemio', Errno.EFAULT, `address 0x${(addr + BigInt(before.length)).toString(16)} not mapped`);
    }
    try {
      this.io(addr, Buffer.from(data), true, pgd3);
    } catch (e) {
      try {
        this.io(addr, before, true, pgd3);
      } catch {
        // Best effort: the original error is the one to report.
      }
      throw e;
    }
  }
}
