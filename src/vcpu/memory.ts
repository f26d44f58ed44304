// Guest virtual memory, whichever way the hypervisor lets us reach it (a MemoryPath:
// our own page walk over foreign-mapped frames, or Xen's gdbsx_guestmemio), with what
// every path needs on top: reads that return the readable prefix, writes that are
// all-or-nothing, requests split into bounded chunks, and a small line cache for the
// bytes gdb reads again and again while the guest is stopped.
import { Errno, XenError } from '../xg/errors';

/** Whose view of memory: a VCPU's page tables, or gdbsx's pgd3 override (32-bit PAE module space). */
export interface AddressSpace {
  vcpu: number;
  /** 0: the VCPU's own tables. */
  pgd3: bigint;
}

/** One byte's home, found once: breakpoints are restored where they were written, whatever runs since. */
export interface MemoryPin {
  read(): number;
  write(byte: number): void;
  /** Where it is, when the path knows the frame (page walk): kept in the breakpoint journal. */
  readonly frame?: bigint;
  readonly offset?: number;
}

export interface MemoryPath {
  /** For messages and the benchmark: "page walk" or "gdbsx_guestmemio". */
  readonly name: string;
  /** Fill `into` from `addr`; returns how many bytes were read (stops at the first unreadable page). */
  read(addr: bigint, into: Buffer, space: AddressSpace): number;
  /** Write all of `data` or nothing (XenError EFAULT naming the first unwritable address). */
  write(addr: bigint, data: Buffer, space: AddressSpace): void;
  /** Where the byte at `addr` lives, for a later restore (throws XenError EFAULT if unmapped). */
  pin(addr: bigint, space: AddressSpace): MemoryPin;
  /** A pin on a frame found earlier (paths that map frames only). */
  pinFrame?(frame: bigint, offset: number): MemoryPin;
  /** The guest is about to run: drop mappings (read-only ones may stay if `keepReadOnly`) and anything derived from its page tables. */
  release(keepReadOnly?: boolean): void;
  /** Detach: drop everything, page-table mappings kept across runs included. */
  close?(): void;
}

const PAGE = 4096n;
/** Small reads are served from aligned lines of this size (never crossing a page). */
const LINE = 64n;
/** Cached lines older than this are read again (bounds staleness if memory changes under a stopped guest). */
const LINE_TTL_MS = 500;
/** Largest single path call; bigger requests are split (keeps mappings and buffers bounded). */
const MAX_CHUNK = 1 << 21;

export class GuestMemory {
  readonly path: MemoryPath;
  private readonly addrMask: bigint;
  /** gdbsx's `pgd3val` (monitor pgd3): 0 = translate through the VCPU's own tables. */
  pgd3 = 0n;
  /**
   * While the guest is stopped gdb reads the same few bytes again and again (the byte at
   * pc four times per stop, the function's first line for prologue analysis): one path
   * call per 64-byte line serves them. Dropped by invalidate() (the guest runs, registers
   * change), by any write, and after LINE_TTL_MS.
   */
  private readonly lines = new Map<string, Buffer>();
  private linesSince = 0;

  constructor(path: MemoryPath, width: 32 | 64) {
    this.path = path;
    this.addrMask = width === 64 ? (1n << 64n) - 1n : 0xffffffffn;
  }

  /** The address space of `vcpu` under the current pgd3 setting. */
  space(vcpu: number): AddressSpace {
    return { vcpu, pgd3: this.pgd3 };
  }

  /** Reads up to `len` bytes as `space` sees them; returns the readable prefix (possibly empty). */
  read(addr: bigint, len: number, space: AddressSpace, into?: Buffer): Buffer {
    addr &= this.addrMask;
    if (len > 0 && len <= 256) {
      const cached = this.readLines(addr, len, space, into);
      if (cached) return cached;
    }
    // A caller's buffer (reused across requests) spares a fresh allocation per read.
    const out = into && into.length >= len ? into.subarray(0, len) : Buffer.alloc(len);
    let done = 0;
    while (done < len) {
      const n = Math.min(MAX_CHUNK, len - done);
      const got = this.path.read((addr + BigInt(done)) & this.addrMask, out.subarray(done, done + n), space);
      done += got;
      if (got < n) break;
    }
    return out.subarray(0, done);
  }

  /**
   * Forget cached lines and mappings: call whenever the guest runs or its page tables may
   * change. `keepMappings`: the path's read-only mappings stay (a single step; what they
   * map is read afresh).
   */
  invalidate(keepMappings = false): void {
    this.lines.clear();
    this.path.release(keepMappings);
  }

  /** Detach: nothing of ours stays mapped. */
  close(): void {
    this.lines.clear();
    this.path.release();
    this.path.close?.();
  }

  /** A small read through the line cache; undefined if a line is unreadable (the caller reads exactly). */
  private readLines(addr: bigint, len: number, space: AddressSpace, into?: Buffer): Buffer | undefined {
    if (this.lines.size > 0 && performance.now() - this.linesSince > LINE_TTL_MS) this.lines.clear();
    // gdb's m requests come with the session's reply buffer.
    const out = into && into.length >= len ? into.subarray(0, len) : Buffer.allocUnsafe(len);
    let done = 0;
    for (let line = addr - (addr % LINE); done < len; line = (line + LINE) & this.addrMask) {
      const key = `${space.vcpu}:${space.pgd3}:${line}`;
      let b = this.lines.get(key);
      if (!b) {
        b = Buffer.alloc(Number(LINE));
        if (this.path.read(line, b, space) < b.length) return undefined;
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

  /** Writes all of `data` or nothing. */
  write(addr: bigint, data: Buffer, space: AddressSpace): void {
    if (data.length === 0) return;
    this.lines.clear();
    this.path.write(addr & this.addrMask, data, space);
  }

  /** Pin the byte at `addr` (see MemoryPin); writes through the pin drop the line cache. */
  pin(addr: bigint, space: AddressSpace): MemoryPin {
    return this.wrap(this.path.pin(addr & this.addrMask, space));
  }

  /** Pin a byte by its frame (journal entries of the page-walk path); undefined where the path has no frames. */
  pinFrame(frame: bigint, offset: number): MemoryPin | undefined {
    const p = this.path.pinFrame?.(frame, offset);
    return p && this.wrap(p);
  }

  private wrap(p: MemoryPin): MemoryPin {
    return {
      frame: p.frame,
      offset: p.offset,
      read: () => p.read(),
      write: (byte) => {
        this.lines.clear();
        p.write(byte);
      },
    };
  }
}

/** The readable prefix of a page-by-page operation, for paths that fail a whole call on one bad page. */
export function pageChunks(addr: bigint, len: number): { at: bigint; off: number; n: number }[] {
  const out: { at: bigint; off: number; n: number }[] = [];
  let done = 0;
  while (done < len) {
    const at = addr + BigInt(done);
    const n = Math.min(len - done, Number(PAGE - (at % PAGE)));
    out.push({ at, off: done, n });
    done += n;
  }
  return out;
}

export function unmappedAt(op: string, addr: bigint): XenError {
  return new XenError(op, Errno.EFAULT, `address 0x${addr.toString(16)} not mapped`);
}
