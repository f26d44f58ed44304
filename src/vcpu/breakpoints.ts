// Software breakpoints the stub inserts itself (Z0): an int3 written into guest
// memory, with the original byte kept. Reads are shadowed so gdb never sees our
// 0xCC, writes over a breakpoint update the kept byte, and removeAll() restores
// every byte (detach, lost connection, signals).
import { GuestMemory } from './memory';
import { Errno, XenError } from '../xg/errors';

export const INT3 = 0xcc;

export class SwBreakpoints {
  private readonly mem: GuestMemory;
  /** address -> original byte */
  private readonly saved = new Map<bigint, number>();

  constructor(mem: GuestMemory) {
    this.mem = mem;
  }

  get size(): number {
    return this.saved.size;
  }

  has(addr: bigint): boolean {
    return this.saved.has(addr);
  }

  addresses(): bigint[] {
    return [...this.saved.keys()];
  }

  /** Idempotent: inserting twice must not save our own 0xCC as the original. */
  insert(addr: bigint): void {
    if (this.saved.has(addr)) return;
    const orig = this.mem.read(addr, 1);
    if (orig.length !== 1) throw new XenError('XEN_DOMCTL_gdbsx_guestmemio', Errno.EFAULT, `cannot read 0x${addr.toString(16)}`);
    this.mem.write(addr, Buffer.from([INT3]));
    this.saved.set(addr, orig[0]);
  }

  /** Removing an unknown address is not an error (gdb may remove twice). */
  remove(addr: bigint): void {
    const orig = this.saved.get(addr);
    if (orig === undefined) return;
    this.mem.write(addr, Buffer.from([orig]));
    this.saved.delete(addr);
  }

  /** Restore every original byte; returns the addresses that could not be restored. */
  removeAll(): bigint[] {
    const failed: bigint[] = [];
    for (const addr of [...this.saved.keys()]) {
      try {
        this.remove(addr);
      } catch {
        failed.push(addr);
      }
    }
    return failed;
  }

  /** Replace our int3 bytes in `buf` (read from `addr`) with the original bytes. */
  shadowRead(addr: bigint, buf: Buffer): Buffer {
    if (this.saved.size === 0 || buf.length === 0) return buf;
    const end = addr + BigInt(buf.length);
    for (const [a, orig] of this.saved) {
      if (a >= addr && a < end) buf[Number(a - addr)] = orig;
    }
    return buf;
  }

  /** A write over breakpoints: keep int3 in memory, remember the new bytes as originals. */
  write(addr: bigint, data: Buffer): void {
    const end = addr + BigInt(data.length);
    const hits = [...this.saved.keys()].filter((a) => a >= addr && a < end);
    if (hits.length === 0) {
      this.mem.write(addr, data);
      return;
    }
    const patched = Buffer.from(data);
    for (const a of hits) patched[Number(a - addr)] = INT3;
    this.mem.write(addr, patched);
    for (const a of hits) this.saved.set(a, data[Number(a - addr)]);
  }
}
