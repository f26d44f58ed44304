// The x86 debug registers DR0-3, set in every VCPU's context: instruction breakpoints
// (`hbreak`, R/W = 00) and data breakpoints (watchpoints: R/W = 01 write, 11 read or
// write, LEN 1/2/4/8), four in all, shared. They need no write to guest memory
// (read-only or shared text is fine) and they trap as #DB, which Xen intercepts for PV
// and HVM/PVH guests alike. Slots the guest itself has enabled are left alone; its DR
// values are restored when we let go.
import { ContextRegName, readField, writeField } from '../xg/context';
import type { VcpuContext } from './registers';
import type { WatchKind } from './stop';

const DR: readonly ContextRegName[] = ['dr0', 'dr1', 'dr2', 'dr3'];
/** DR7: L/G enable bits of slot n, and its R/W + LEN field. */
const enableBits = (n: number) => 3n << BigInt(2 * n);
const controlBits = (n: number) => 0xfn << BigInt(16 + 4 * n);
/** DR6 B0-B3. */
const DR6_HITS = 0xfn;

/**
 * What a slot holds. x86 has no read-only data breakpoint: a read watchpoint uses
 * R/W = 11 (reads and writes), and a hit whose value changed is taken for a write
 * (Guest.resume does not report it), as gdb does for its own x86 targets.
 */
export type HwKind = 'exec' | WatchKind;

export interface HwSlot {
  kind: HwKind;
  addr: bigint;
  /** Bytes watched (1 for an instruction breakpoint). */
  len: number;
}

/** DR7's R/W field for a kind, and its LEN field for a length (1, 2, 4, 8 bytes: 00, 01, 11, 10). */
const RW: Record<HwKind, bigint> = { exec: 0n, watch: 1n, rwatch: 3n, awatch: 3n };
const LEN: Record<number, bigint> = { 1: 0n, 2: 1n, 4: 3n, 8: 2n };

interface Saved {
  dr: bigint[];
  dr7: bigint;
}

export class HwBreakpoints {
  private readonly slots: (HwSlot | undefined)[] = [undefined, undefined, undefined, undefined];
  /** The guest's own DR0-3/DR7 per VCPU, from before we first touched them. */
  private readonly saved = new Map<number, Saved>();

  get size(): number {
    return this.slots.filter((s) => s !== undefined).length;
  }

  /** The slot holding exactly this breakpoint or watchpoint; -1 if none. */
  find(kind: HwKind, addr: bigint, len: number): number {
    return this.slots.findIndex((s) => s !== undefined && s.kind === kind && s.addr === addr && s.len === len);
  }

  slot(n: number): HwSlot | undefined {
    return this.slots[n];
  }

  /** Our slots, in slot order. */
  list(): HwSlot[] {
    return this.slots.filter((s): s is HwSlot => s !== undefined);
  }

  private remember(vcpu: number, c: VcpuContext): Saved {
    let s = this.saved.get(vcpu);
    if (!s) {
      s = { dr: DR.map((r) => readField(c.buf, c.layout, r) ?? 0n), dr7: readField(c.buf, c.layout, 'dr7') ?? 0x400n };
      this.saved.set(vcpu, s);
    }
    return s;
  }

  /** A slot neither we nor the guest (on any VCPU) uses; -1 if none. */
  freeSlot(contexts: Map<number, VcpuContext>): number {
    for (let n = 0; n < 4; n++) {
      if (this.slots[n] !== undefined) continue;
      let guestUses = false;
      for (const [v, c] of contexts) if ((this.remember(v, c).dr7 & enableBits(n)) !== 0n) guestUses = true;
      if (!guestUses) return n;
    }
    return -1;
  }

  set(slot: number, s: HwSlot | undefined): void {
    this.slots[slot] = s;
  }

  /** Write our slots (and the guest's own values elsewhere) into a VCPU's context. */
  apply(vcpu: number, c: VcpuContext): void {
    const s = this.remember(vcpu, c);
    let dr7 = s.dr7;
    for (let n = 0; n < 4; n++) {
      const ours = this.slots[n];
      if (ours === undefined) {
        writeField(c.buf, c.layout, DR[n], s.dr[n]);
        continue;
      }
      writeField(c.buf, c.layout, DR[n], ours.addr);
      // Local enable; R/W and LEN (instruction breakpoints: 00, 00).
      const control = (RW[ours.kind] | (ours.kind === 'exec' ? 0n : LEN[ours.len] << 2n)) << BigInt(16 + 4 * n);
      dr7 = (dr7 & ~enableBits(n) & ~controlBits(n)) | (1n << BigInt(2 * n)) | control;
    }
    writeField(c.buf, c.layout, 'dr7', dr7);
  }

  /**
   * The slot a #DB with this DR6 (at this pc) is for: DR6's B0-3 (the first of our
   * slots that fired, a write or access watchpoint before a read one, which R/W = 11
   * also fires for writes), or an instruction breakpoint at pc (a fault: pc = address).
   * `bits` are all of our slots' bits DR6 shows (to be cleared).
   */
  match(dr6: bigint, pc: bigint | undefined): { slot: number; bits: bigint } | undefined {
    let bits = 0n;
    for (let n = 0; n < 4; n++) if (this.slots[n] !== undefined && ((dr6 >> BigInt(n)) & 1n) === 1n) bits |= 1n << BigInt(n);
    const fired = [0, 1, 2, 3].filter((n) => ((bits >> BigInt(n)) & 1n) === 1n);
    const best = fired.find((n) => this.slots[n]?.kind !== 'rwatch') ?? fired[0];
    if (best !== undefined) return { slot: best, bits };
    for (let n = 0; n < 4; n++) {
      const s = this.slots[n];
      if (s?.kind === 'exec' && pc === s.addr) return { slot: n, bits: 1n << BigInt(n) };
    }
    return undefined;
  }

  /** The slot a VCPU stopped on (see match), and its DR6 with all our slots' bits cleared. */
  hit(c: VcpuContext): { slot: number; dr6: bigint } | undefined {
    const dr6 = readField(c.buf, c.layout, 'dr6') ?? 0n;
    const m = this.match(dr6, readField(c.buf, c.layout, 'rip'));
    return m && { slot: m.slot, dr6: dr6 & ~(DR6_HITS & ~this.guestSlots()) };
  }

  /** DR6 bits of slots that are not ours (the guest's own breakpoints keep theirs). */
  private guestSlots(): bigint {
    let m = 0n;
    for (let n = 0; n < 4; n++) if (this.slots[n] === undefined) m |= 1n << BigInt(n);
    return m;
  }

  /** What a stop on `slot` tells gdb: a hardware breakpoint, or a watchpoint and its address. */
  stopFields(slot: number): { hwbreak?: boolean; watch?: { kind: WatchKind; addr: bigint } } {
    const s = this.slots[slot];
    if (!s || s.kind === 'exec') return { hwbreak: true };
    return { watch: { kind: s.kind, addr: s.addr } };
  }

  /** Forget everything; `restore` gets each VCPU's original DR values back into its context. */
  releaseAll(restore: (vcpu: number, dr: bigint[], dr7: bigint) => void): void {
    this.slots.fill(undefined);
    for (const [v, s] of this.saved) restore(v, s.dr, s.dr7);
    this.saved.clear();
  }
}
