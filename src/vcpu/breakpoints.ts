// Software breakpoints the stub inserts itself (Z0): an int3 written into guest
// memory, with the original byte kept. Reads are shadowed so gdb never sees our
// 0xCC, writes over a breakpoint update the kept byte, and removeAll() restores
// every byte (detach, lost connection, signals).
import { GuestMemory } from './memory';
import { Errno, XenError } from '../xg/errors';

export const INT3 = 0xcc;

export class SwBreakpoints {
  private readonly mem: GuestMemory;
  /**
   * address -> original byte, and the translation (pgd3) it was inserted through:
   * `monitor pgd3` may change in between, and removal must hit the same page.
   */
  private readonly saved = new Map<bigint, { orig: number; pgd3: bigint }>();

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
    this.saved.set(addr, { orig: orig[0], pgd3: this.mem.pgd3 });
  }

  /** Removing an unknown address is not an error (gdb may remove twice). */
  remove(addr: bigint): void {
    const bp = this.saved.get(addr);
    if (bp === undefined) return;
    this.mem.write(addr, Buffer.from([bp.orig]), bp.pgd3);
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
    for (const [a, bp] of this.saved) {
      if (a >= addr && a < end && bp.pgd3 === this.mem.pgd3) buf[Number(a - addr)] = bp.orig;
    }
    return buf;
  }

  /** A write over breakpoints: keep int3 in memory, remember the new bytes as originals. */
  write(addr: bigint, data: Buffer): void {
    const end = addr + BigInt(data.length);
    const hits = [...this.saved].filter(([a, bp]) => a >= addr && a < end && bp.pgd3 === this.mem.pgd3).map(([a]) => a);
    if (hits.length === 0) {
      this.mem.write(addr, data);
      return;
    }
    const patched = Buffer.from(data);
    for (const a of hits) patched[Number(a - addr)] = INT3;
    this.mem.write(addr, patched);
    for (const a of hits) this.saved.set(a, { orig: data[Number(a - addr)], pgd3: this.mem.pgd3 });
  }
}
