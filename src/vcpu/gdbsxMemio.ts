// Memory through XEN_DOMCTL_gdbsx_guestmemio (hypervisors built with CONFIG_GDBSX).
// Xen translates through VCPU0's *active* page tables whatever VCPU gdb looks at (or
// through a pgd3 value for 32-bit PAE module space), and fails a whole call if any page
// is unmapped. Kept as the fallback where frames cannot be mapped, and for the benchmark.
import { Errno, isXenError } from '../xg/errors';
import { XenControl } from '../xg/xenctl';
import { AddressSpace, MemoryPath, MemoryPin, pageChunks, unmappedAt } from './memory';

const OP = 'XEN_DOMCTL_gdbsx_guestmemio';

export class GdbsxMemio implements MemoryPath {
  readonly name = 'gdbsx_guestmemio';
  private readonly xc: XenControl;
  private readonly domid: number;

  constructor(xc: XenControl, domid: number) {
    this.xc = xc;
    this.domid = domid;
  }

  private io(addr: bigint, buf: Buffer, write: boolean, space: AddressSpace): void {
    this.xc.guestMemIo(this.domid, addr, buf, write, space.pgd3);
  }

  read(addr: bigint, into: Buffer, space: AddressSpace): number {
    try {
      this.io(addr, into, false, space);
      return into.length;
    } catch (e) {
      if (!isXenError(e, Errno.EFAULT)) throw e;
    }
    // Some page is unmapped: find the readable prefix, page by page.
    for (const c of pageChunks(addr, into.length)) {
      try {
        this.io(c.at, into.subarray(c.off, c.off + c.n), false, space);
      } catch (e) {
        if (isXenError(e, Errno.EFAULT)) return c.off;
        throw e;
      }
    }
    return into.length;
  }

  /** Xen may write a prefix before failing: the old contents are read first and put back on failure. */
  write(addr: bigint, data: Buffer, space: AddressSpace): void {
    const before = Buffer.alloc(data.length);
    const readable = this.read(addr, before, space);
    if (readable < data.length) throw unmappedAt(OP, addr + BigInt(readable));
    try {
      this.io(addr, Buffer.from(data), true, space);
    } catch (e) {
      try {
        this.io(addr, before, true, space);
      } catch {
        // Best effort: the original error is the one to report.
      }
      throw e;
    }
  }

  /** No frames here: the pin re-translates through the same space when used. */
  pin(addr: bigint, space: AddressSpace): MemoryPin {
    const at = { ...space };
    const one = Buffer.alloc(1);
    if (this.read(addr, one, at) !== 1) throw unmappedAt(OP, addr);
    return {
      read: () => {
        if (this.read(addr, one, at) !== 1) throw unmappedAt(OP, addr);
        return one[0];
      },
      write: (byte) => this.write(addr, Buffer.from([byte]), at),
    };
  }

  release(): void {
    // Nothing is mapped on this path.
  }
}
