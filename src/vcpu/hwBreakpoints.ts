// Hardware (instruction) breakpoints in the debug registers DR0-3, set in every
// VCPU's context. They need no write to guest memory (read-only or shared text is
// fine) and they trap as #DB, which Xen intercepts for PV and HVM/PVH guests alike.
// Slots the guest itself has enabled are left alone; its DR values are restored
// when we let go.
import { ContextRegName, readField, writeField } from '../xg/context';
import type { VcpuContext } from './registers';

const DR: readonly ContextRegName[] = ['dr0', 'dr1', 'dr2', 'dr3'];
/** DR7: L/G enable bits of slot n, and its R/W + LEN field. */
const enableBits = (n: number) => 3n << BigInt(2 * n);
const controlBits = (n: number) => 0xfn << BigInt(16 + 4 * n);

interface Saved {
  dr: bigint[];
  dr7: bigint;
}

export class HwBreakpoints {
  /** Our breakpoint address per slot. */
  private readonly slots: (bigint | undefined)[] = [undefined, undefined, undefined, undefined];
  /** The guest's own DR0-3/DR7 per VCPU, from before we first touched them. */
  private readonly saved = new Map<number, Saved>();

  get size(): number {
    return this.slots.filter((s) => s !== undefined).length;
  }

  has(addr: bigint): boolean {
    return this.slots.includes(addr);
  }

  addresses(): bigint[] {
    return this.slots.filter((s): s is bigint => s !== undefined);
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

  set(slot: number, addr: bigint | undefined): void {
    this.slots[slot] = addr;
  }

  slotOf(addr: bigint): number {
    return this.slots.indexOf(addr);
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
      writeField(c.buf, c.layout, DR[n], ours);
      // Local enable; R/W = 00 (execute), LEN = 00 (1 byte), as instruction breakpoints need.
      dr7 = (dr7 & ~enableBits(n) & ~controlBits(n)) | (1n << BigInt(2 * n));
    }
    writeField(c.buf, c.layout, 'dr7', dr7);
  }

  /** The slot a VCPU stopped on: DR6's B0-3, or its pc on one of ours (a fault: pc = address). */
  hit(c: VcpuContext): { slot: number; dr6: bigint } | undefined {
    const dr6 = readField(c.buf, c.layout, 'dr6') ?? 0n;
    const pc = readField(c.buf, c.layout, 'rip');
    for (let n = 0; n < 4; n++) {
      if (this.slots[n] === undefined) continue;
      if (((dr6 >> BigInt(n)) & 1n) === 1n || pc === this.slots[n]) return { slot: n, dr6: dr6 & ~(1n << BigInt(n)) };
    }
    return undefined;
  }

  /** Forget everything; `restore` gets each VCPU's original DR values back into its context. */
  releaseAll(restore: (vcpu: number, dr: bigint[], dr7: bigint) => void): void {
    this.slots.fill(undefined);
    for (const [v, s] of this.saved) restore(v, s.dr, s.dr7);
    this.saved.clear();
  }
}
