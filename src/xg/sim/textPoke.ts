// A model of Linux's text_poke_bp() (arch/x86/kernel/alternative.c), the way the kernel
// patches live code for static keys, jump labels, static calls and ftrace: the patching
// CPU writes an int3 over the instruction's first byte, syncs every other CPU (an IPI
// each must take: sync_core), writes the rest, syncs, writes the first byte, syncs.
// A CPU that meets the int3 meanwhile takes #BP into poke_int3_handler; the model's
// handler (execute.ts, guestTrapHandlers) sends it back onto the int3, so it loops
// there until the patch is done. If a debugger holds a CPU, the syncs wait, as on Linux.
import { SimDomain } from './domain';

type Phase = 'idle' | 'int3' | 'tail' | 'first';

export interface TextPokeStats {
  /** Patches completed. */
  patches: number;
  /** Slices a sync has waited on a CPU that did not run. */
  waits: number;
}

export class TextPokeLoop {
  private phase: Phase = 'idle';
  private idleSlices = 0;
  /** Instructions each VCPU had retired when the current sync began. */
  private mark: number[] = [];
  readonly stats: TextPokeStats = { patches: 0, waits: 0 };
  private readonly orig: Buffer;

  constructor(
    private readonly d: SimDomain,
    private readonly addr: bigint,
    private readonly write: (addr: bigint, data: Buffer) => void,
    read: (addr: bigint, len: number) => Buffer,
    /** The CPU doing the patching: the protocol advances only while it runs. */
    private readonly patcher: number,
    /** Slices between patches. */
    private readonly gap: number,
    /** Length of the patched instruction (its bytes are rewritten unchanged: a no-op patch). */
    private readonly len: number,
  ) {
    this.orig = read(addr, len);
  }

  /** Every online VCPU (the patcher included) has run since the sync began: the IPIs are taken. */
  private synced(): boolean {
    const vs = this.d.vcpus.filter((v) => !v.down && v.initialised);
    const ok = vs.every((v) => v.instructions > (this.mark[v.id] ?? 0));
    if (!ok) this.stats.waits++;
    return ok;
  }

  private startSync(): void {
    this.mark = this.d.vcpus.map((v) => v.instructions);
  }

  /** Called after each scheduler slice. */
  afterSlice(): void {
    const p = this.d.vcpus[this.patcher];
    if (!p || p.down) return;
    switch (this.phase) {
      case 'idle':
        if (++this.idleSlices < this.gap) return;
        this.idleSlices = 0;
        this.write(this.addr, Buffer.from([0xcc]));
        this.phase = 'int3';
        this.startSync();
        return;
      case 'int3':
        if (!this.synced()) return;
        this.write(this.addr + 1n, this.orig.subarray(1));
        this.phase = 'tail';
        this.startSync();
        return;
      case 'tail':
        if (!this.synced()) return;
        this.write(this.addr, this.orig.subarray(0, 1));
        this.phase = 'first';
        this.startSync();
        return;
      case 'first':
        if (!this.synced()) return;
        this.stats.patches++;
        this.phase = 'idle';
        return;
    }
  }

  /** Put the instruction back whole (the test ends). */
  finish(): void {
    this.write(this.addr, this.orig);
    this.phase = 'idle';
  }
}
