// Memory through our own page walk: the guest's page tables are read from foreign-
// mapped frames, starting at the cr3 of the VCPU gdb selected, and the data frames are
// mapped in one batch per request. Works on every x86 Xen (no CONFIG_GDBSX), reaches
// kernel memory whatever mode a VCPU is in (a PV VCPU's ctrlreg[3] is its kernel table;
// with Linux's PTI the kernel half of a user cr3 is tried), and resolves user addresses
// in the selected VCPU's own address space. Mappings live while the guest is stopped,
// and the read-only ones across a single step (Guest.resume says when: see stepKeeps).
import createDebug from 'debug';
import { Hypercalls, ForeignMapping } from '../xg/hypercalls';
import { Errno, XenError } from '../xg/errors';
import { AddressSpace, MemoryPath, MemoryPin, unmappedAt } from './memory';
import { PagingMode, Translation, translate, translateRange } from './pageWalk';

const log = createDebug('gdbsx:pagewalk');
const OP = 'guest page walk';
const PAGE = 4096;
/** Beyond this many mapped frames, everything is dropped and mapped again on demand. */
const MAX_MAPPED = 1 << 15;
/** Table copies kept for the next stops' walks. */
const SPARE_TABLES = 64;
/** A frame number no guest has: stands for the synthetic PDPT of a pgd3 walk. */
const PGD3_PDPT = 1n << 60n;

/** Where a VCPU's walk starts. */
export interface WalkRoot {
  mode: PagingMode;
  root: { frame: bigint; offset: number };
  /** Linux PTI: the kernel half of a user cr3, tried for kernel addresses the first root misses. */
  kernelRoot?: { frame: bigint; offset: number };
}

interface Mapped {
  map: ForeignMapping;
  index: number;
}

export class PageWalkMemory implements MemoryPath {
  readonly name = 'page walk';
  private readonly hc: Hypercalls;
  private readonly domid: number;
  private readonly rootOf: (vcpu: number) => WalkRoot;
  private readonly kernelHalf: bigint;
  /** Page-table frames read this stop (undefined: could not be mapped). */
  private readonly tables = new Map<bigint, Buffer | undefined>();
  /** Mapped frames by frame number (as a Number: frames fit in 52 bits, and BigInt keys hash slowly). */
  private readonly ro = new Map<number, Mapped>();
  private readonly rw = new Map<number, Mapped>();
  /** Each mapping call's result, and how many frames it holds; read-only and writable apart. */
  private readonly roMaps: { map: ForeignMapping; frames: number }[] = [];
  private readonly rwMaps: { map: ForeignMapping; frames: number }[] = [];
  private mappedFrames = 0;
  /** Table copies of earlier stops, reused: a stop's walk takes one per level (fresh 4 KiB buffers cost more than the copy). */
  private readonly spareTables: Buffer[] = [];
  /** Counters for `monitor` and the benchmark. */
  readonly stats = { mapCalls: 0, framesMapped: 0, tableReads: 0 };

  constructor(hc: Hypercalls, domid: number, width: 32 | 64, rootOf: (vcpu: number) => WalkRoot) {
    this.hc = hc;
    this.domid = domid;
    this.rootOf = rootOf;
    this.kernelHalf = width === 64 ? 1n << 63n : 1n << 31n;
  }

  private readTable = (frame: bigint): Buffer | undefined => {
    if (this.tables.has(frame)) return this.tables.get(frame);
    let b: Buffer | undefined;
    try {
      // Read-only (Xen refuses writable mappings of a PV guest's page tables), and kept
      // with the data mappings: the next walks of this stop share it.
      const [m] = this.ensure([frame], false);
      if (m) {
        b = this.spareTables.pop() ?? Buffer.allocUnsafe(PAGE);
        m.map.read(m.index * PAGE, b);
      }
    } catch (e) {
      if (!(e instanceof XenError)) throw e;
      log('table frame 0x%s: %s', frame.toString(16), e.message);
    }
    this.stats.tableReads++;
    this.tables.set(frame, b);
    return b;
  };

  /** The walk for `space`: its VCPU's root, or the pgd3 override (an L2 table for the top GB of a PAE guest). */
  private walkRoot(space: AddressSpace): WalkRoot {
    if (space.pgd3 === 0n) return this.rootOf(space.vcpu);
    const pdpt = Buffer.alloc(PAGE);
    pdpt.writeBigUInt64LE((space.pgd3 & 0x000ffffffffff000n) | 1n, 3 * 8);
    this.tables.set(PGD3_PDPT, pdpt);
    const own = this.rootOf(space.vcpu);
    return { mode: { ...own.mode, kind: 'pae' }, root: { frame: PGD3_PDPT, offset: 0 } };
  }

  /** Frames of each page of [addr, addr+len), undefined where unmapped. */
  private framesOf(addr: bigint, len: number, space: AddressSpace): (bigint | undefined)[] {
    const r = this.walkRoot(space);
    const frames = translateRange(r.mode, r.root, addr, len, this.readTable);
    if (r.kernelRoot && (addr & this.kernelHalf) !== 0n && frames.some((f) => f === undefined)) {
      const k = translateRange(r.mode, r.kernelRoot, addr, len, this.readTable);
      return frames.map((f, i) => f ?? k[i]);
    }
    return frames;
  }

  /** One page's walk, with every level, for `monitor translate`. */
  explain(addr: bigint, space: AddressSpace): { root: WalkRoot; t: Translation; viaKernelHalf: boolean } {
    const r = this.walkRoot(space);
    const t = translate(r.mode, r.root, addr, this.readTable);
    if (!t.ok && r.kernelRoot && (addr & this.kernelHalf) !== 0n) {
      const k = translate(r.mode, r.kernelRoot, addr, this.readTable);
      if (k.ok) return { root: r, t: k, viaKernelHalf: true };
    }
    return { root: r, t, viaKernelHalf: false };
  }

  /** Make sure every frame is mapped (one batch for those that are not); returns the mapping of each, or undefined where Xen refused. */
  private ensure(frames: bigint[], writable: boolean): (Mapped | undefined)[] {
    const cache = writable ? this.rw : this.ro;
    const keys = frames.map(Number);
    const missing: bigint[] = [];
    const asked = new Set<number>();
    keys.forEach((k, i) => {
      if (!cache.has(k) && !asked.has(k)) {
        asked.add(k);
        missing.push(frames[i]);
      }
    });
    if (missing.length > 0) {
      if (this.mappedFrames + missing.length > MAX_MAPPED) this.release();
      const map = this.hc.mapForeign(this.domid, missing, writable);
      this.stats.mapCalls++;
      this.stats.framesMapped += missing.length;
      (writable ? this.rwMaps : this.roMaps).push({ map, frames: missing.length });
      this.mappedFrames += missing.length;
      missing.forEach((f, index) => {
        if (map.errors[index] === 0) cache.set(Number(f), { map, index });
        else log('frame 0x%s: Xen refused to map it (errno %d)', f.toString(16), map.errors[index]);
      });
    }
    return keys.map((k) => cache.get(k));
  }

  read(addr: bigint, into: Buffer, space: AddressSpace): number {
    const frames = this.framesOf(addr, into.length, space);
    const firstHole = frames.indexOf(undefined);
    const usable = (firstHole < 0 ? frames : frames.slice(0, firstHole)) as bigint[];
    const maps = this.ensure(usable, false);
    let done = 0;
    for (let i = 0; i < maps.length;) {
      const m = maps[i];
      if (!m) break;
      // Pages that sit one after the other in one mapping (a cold bulk read maps them
      // so) are copied in one go.
      let j = i + 1;
      while (j < maps.length && maps[j]?.map === m.map && (maps[j] as Mapped).index === m.index + (j - i)) j++;
      const off = i === 0 ? Number(addr & 0xfffn) : 0;
      const n = Math.min((j - i) * PAGE - off, into.length - done);
      m.map.read(m.index * PAGE + off, into.subarray(done, done + n));
      done += n;
      i = j;
    }
    return done;
  }

  write(addr: bigint, data: Buffer, space: AddressSpace): void {
    const frames = this.framesOf(addr, data.length, space);
    const hole = frames.indexOf(undefined);
    if (hole >= 0) throw unmappedAt(OP, hole === 0 ? addr : (addr & ~0xfffn) + BigInt(hole * PAGE));
    // Map every page writable before writing any: all or nothing.
    const maps = this.ensure(frames as bigint[], true);
    const bad = maps.indexOf(undefined);
    if (bad >= 0) {
      throw new XenError(OP, Errno.EFAULT, `Xen refused a writable mapping of the page at 0x${(bad === 0 ? addr : (addr & ~0xfffn) + BigInt(bad * PAGE)).toString(16)}`);
    }
    let done = 0;
    for (let i = 0; i < maps.length; i++) {
      const m = maps[i] as Mapped;
      const off = i === 0 ? Number(addr & 0xfffn) : 0;
      const n = Math.min(PAGE - off, data.length - done);
      m.map.write(m.index * PAGE + off, data.subarray(done, done + n));
      done += n;
    }
    // Our own cached copies of page-table frames may hold what was just written.
    for (const f of frames) if (f !== undefined) this.tables.delete(f);
  }

  /** Pinned by frame: a breakpoint is removed from the page it was written to, whatever process runs later. */
  pin(addr: bigint, space: AddressSpace): MemoryPin {
    const [frame] = this.framesOf(addr, 1, space);
    if (frame === undefined) throw unmappedAt(OP, addr);
    return this.pinFrame(frame, Number(addr & 0xfffn));
  }

  pinFrame(frame: bigint, off: number): MemoryPin {
    const one = Buffer.alloc(1);
    const at = (writable: boolean): Mapped => {
      const [m] = this.ensure([frame], writable);
      if (!m) throw new XenError(OP, Errno.EFAULT, `Xen refused to map frame 0x${frame.toString(16)}${writable ? ' writable' : ''}`);
      return m;
    };
    at(false);
    return {
      frame,
      offset: off,
      read: () => {
        const m = at(false);
        m.map.read(m.index * PAGE + off, one);
        return one[0];
      },
      write: (byte) => {
        const m = at(true);
        m.map.write(m.index * PAGE + off, Buffer.from([byte]));
      },
    };
  }

  /**
   * The guest is about to run: table copies go stale (they are read again), and so do
   * the mappings, unless `keepReadOnly` (a single step: see Guest's stepKeeps). A
   * read-only mapping reads the frame as it is now, so it stays right while the frame
   * backs the same guest page; writable ones always go (a PV guest cannot make a page
   * it owns a page table while we map it writable).
   */
  release(keepReadOnly = false): void {
    const unmap = (list: { map: ForeignMapping; frames: number }[]) => {
      for (const m of list.splice(0)) {
        this.mappedFrames -= m.frames;
        try {
          m.map.unmap();
        } catch (e) {
          log('unmap: %s', (e as Error).message);
        }
      }
    };
    unmap(this.rwMaps);
    this.rw.clear();
    if (!keepReadOnly) {
      unmap(this.roMaps);
      this.ro.clear();
    }
    for (const t of this.tables.values()) if (t && this.spareTables.length < SPARE_TABLES) this.spareTables.push(t);
    this.tables.clear();
  }

  /** Live mappings (the benchmark and tests check none are left while the guest runs). */
  get liveMappings(): number {
    return this.roMaps.length + this.rwMaps.length;
  }
}
