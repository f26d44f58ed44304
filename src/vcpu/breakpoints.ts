// Software breakpoints the stub inserts itself (Z0): an int3 written into guest
// memory, with the original byte kept. Reads are shadowed so gdb never sees our
// 0xCC, writes over a breakpoint update the kept byte, and removeAll() restores
// every byte (detach, lost connection, signals).
import { AddressSpace, GuestMemory, MemoryPin } from './memory';
import { BreakpointJournal, JournalEntry } from './bpJournal';

export const INT3 = 0xcc;

/** One guest byte under our int3, shared by every breakpoint address that reaches it. */
interface Site {
  orig: number;
  refs: number;
  key?: string;
}

export class SwBreakpoints {
  private readonly mem: GuestMemory;
  /**
   * address -> original byte, where it lives (pinned when inserted: the process or
   * `monitor pgd3` may change before removal, which must hit the same page), and the
   * pgd3 it was inserted under (reads are shadowed only under the same one).
   */
  private readonly saved = new Map<bigint, { site: Site; pin: MemoryPin; pgd3: bigint }>();
  /**
   * The bytes our int3s sit on, by frame and offset where the path knows them: two
   * addresses can reach one byte (aliases; a 32-bit guest's `monitor pgd3` changes what
   * an address means), and the second insert must not take our int3 for the original.
   */
  private readonly sites = new Map<string, Site>();

  /** Where our int3s are recorded for a stub that comes after a killed one (see bpJournal.ts). */
  journal: BreakpointJournal | undefined;

  constructor(mem: GuestMemory) {
    this.mem = mem;
  }

  private record(extra?: JournalEntry): void {
    if (!this.journal) return;
    const entries = [...this.saved].map(([a, bp]): JournalEntry => ({
      addr: a.toString(16), orig: bp.site.orig, frame: bp.pin.frame?.toString(16), offset: bp.pin.offset,
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
      if (bp.pin.frame !== undefined && bp.pin.offset !== undefined) out.push({ frame: bp.pin.frame, offset: bp.pin.offset, orig: bp.site.orig });
    }
    return out;
  }

  /** Idempotent: inserting twice must not save our own 0xCC as the original. */
  insert(addr: bigint, space: AddressSpace): void {
    if (this.saved.has(addr)) return;
    const pin = this.mem.pin(addr, space);
    const key = pin.frame !== undefined ? `${pin.frame.toString(16)}+${pin.offset ?? 0}` : undefined;
    const shared = key !== undefined ? this.sites.get(key) : undefined;
    const orig = shared ? shared.orig : pin.read();
    // On disk before it is in the guest: a SIGKILL in between leaves a harmless entry.
    this.record({ addr: addr.toString(16), orig, frame: pin.frame?.toString(16), offset: pin.offset });
    if (!shared) {
      try {
        pin.write(INT3);
      } catch (e) {
        this.record();
        throw e;
      }
    }
    const site = shared ?? { orig, refs: 0, key };
    site.refs++;
    if (key !== undefined) this.sites.set(key, site);
    this.saved.set(addr, { site, pin, pgd3: space.pgd3 });
  }

  /** Removing an unknown address is not an error (gdb may remove twice). */
  remove(addr: bigint): void {
    const bp = this.saved.get(addr);
    if (bp === undefined) return;
    // The byte goes back only when no other address of ours still has its int3 there.
    if (bp.site.refs <= 1) bp.pin.write(bp.site.orig);
    bp.site.refs--;
    if (bp.site.refs <= 0 && bp.site.key !== undefined) this.sites.delete(bp.site.key);
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

  /**
   * Take our int3s out for a moment (the guest runs without a debugger: one of them met
   * then would be an unknown int3 to the guest, an oops); returns the function that puts
   * them back. The records and the journal stay. A byte the guest rewrote meanwhile (its
   * own patching) becomes the original.
   */
  lift(): () => void {
    const lifted: bigint[] = [];
    for (const [a, bp] of this.saved) {
      bp.pin.write(bp.site.orig);
      lifted.push(a);
    }
    return () => {
      for (const a of lifted) {
        const bp = this.saved.get(a);
        if (!bp) continue;
        const now = bp.pin.read();
        if (now !== bp.site.orig && now !== INT3) bp.site.orig = now;
        bp.pin.write(INT3);
      }
      if (lifted.length) this.record();
    };
  }

  /** Replace our int3 bytes in `buf` (read from `addr`) with the original bytes. */
  shadowRead(addr: bigint, buf: Buffer, space: AddressSpace): Buffer {
    if (this.saved.size === 0 || buf.length === 0) return buf;
    const end = addr + BigInt(buf.length);
    for (const [a, bp] of this.saved) {
      if (a >= addr && a < end && bp.pgd3 === space.pgd3) buf[Number(a - addr)] = bp.site.orig;
    }
    return buf;
  }

  /** Whether the int3 at `addr` is one of ours (pc - 1 after a trap). */
  orig(addr: bigint): number | undefined {
    return this.saved.get(addr)?.site.orig;
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
      if (bp) bp.site.orig = data[Number(a - addr)];
    }
    this.record();
  }
}
