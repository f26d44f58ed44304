// Software breakpoints the stub inserts itself (Z0): an int3 written into guest
// memory, with the original byte kept. Reads are shadowed so gdb never sees our
// 0xCC, writes over a breakpoint update the kept byte, and removeAll() restores
// every byte (detach, lost connection, signals).
import { AddressSpace, GuestMemory, MemoryPin } from './memory';
import { BreakpointJournal, JournalEntry } from './bpJournal';

export const INT3 = 0xcc;

export class SwBreakpoints {
  private readonly mem: GuestMemory;
  /**
   * address -> original byte, where it lives (pinned when inserted: the process or
   * `monitor pgd3` may change before removal, which must hit the same page), and the
   * pgd3 it was inserted under (reads are shadowed only under the same one).
   */
  private readonly saved = new Map<bigint, { orig: number; pin: MemoryPin; pgd3: bigint }>();

  /** Where our int3s are recorded for a stub that comes after a killed one (see bpJournal.ts). */
  journal: BreakpointJournal | undefined;

  constructor(mem: GuestMemory) {
    this.mem = mem;
  }

  private record(extra?: JournalEntry): void {
    if (!this.journal) return;
    const entries = [...this.saved].map(([a, bp]): JournalEntry => ({
      addr: a.toString(16), orig: bp.orig, frame: bp.pin.frame?.toString(16), offset: bp.pin.offset,
    }));
    if (extra) entries.push(extra);
    this.journal.write(entries);
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

  /** Where our int3s sit (frame and offset, where the path knows them) and the bytes they hide: for a snapshot of memory. */
  originals(): { frame: bigint; offset: number; orig: number }[] {
    const out: { frame: bigint; offset: number; orig: number }[] = [];
    for (const bp of this.saved.values()) {
      if (bp.pin.frame !== undefined && bp.pin.offset !== undefined) out.push({ frame: bp.pin.frame, offset: bp.pin.offset, orig: bp.orig });
    }
    return out;
  }

  /** Idempotent: inserting twice must not save our own 0xCC as the original. */
  insert(addr: bigint, space: AddressSpace): void {
    if (this.saved.has(addr)) return;
    const pin = this.mem.pin(addr, space);
    const orig = pin.read();
    // On disk before it is in the guest: a SIGKILL in between leaves a harmless entry.
    this.record({ addr: addr.toString(16), orig, frame: pin.frame?.toString(16), offset: pin.offset });
    try {
      pin.write(INT3);
    } catch (e) {
      this.record();
      throw e;
    }
    this.saved.set(addr, { orig, pin, pgd3: space.pgd3 });
  }

  /** Removing an unknown address is not an error (gdb may remove twice). */
  remove(addr: bigint): void {
    const bp = this.saved.get(addr);
    if (bp === undefined) return;
    bp.pin.write(bp.orig);
    this.saved.delete(addr);
    this.record();
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
  shadowRead(addr: bigint, buf: Buffer, space: AddressSpace): Buffer {
    if (this.saved.size === 0 || buf.length === 0) return buf;
    const end = addr + BigInt(buf.length);
    for (const [a, bp] of this.saved) {
      if (a >= addr && a < end && bp.pgd3 === space.pgd3) buf[Number(a - addr)] = bp.orig;
    }
    return buf;
  }

  /** Whether the int3 at `addr` is one of ours (pc - 1 after a trap). */
  orig(addr: bigint): number | undefined {
    return this.saved.get(addr)?.orig;
  }

  /** A write over breakpoints: keep int3 in memory, remember the new bytes as originals. */
  write(addr: bigint, data: Buffer, space: AddressSpace): void {
    const end = addr + BigInt(data.length);
    const hits = [...this.saved].filter(([a, bp]) => a >= addr && a < end && bp.pgd3 === space.pgd3).map(([a]) => a);
    if (hits.length === 0) {
      this.mem.write(addr, data, space);
      return;
    }
    const patched = Buffer.from(data);
    for (const a of hits) patched[Number(a - addr)] = INT3;
    this.mem.write(addr, patched, space);
    for (const a of hits) {
      const bp = this.saved.get(a);
      if (bp) bp.orig = data[Number(a - addr)];
    }
    this.record();
  }
}
