// A Hypercalls wrapper that times every domctl and timestamps debugger events, so
// the benchmark can say where a figure's time goes (hypercalls vs the rest of the
// stub) and when the hypervisor signalled a trap.
import type { DomctlData, EventPort, ForeignMapping, Hypercalls } from '../src/xg/hypercalls';
import { DomctlCmd, Off } from '../src/xg/domctl';
import { now } from './stats';

const names = new Map<number, string>(Object.entries(DomctlCmd).map(([k, v]) => [v, k]));

export interface CallStats {
  count: number;
  ms: number;
  bytes: number;
}

export class TracingHypercalls implements Hypercalls {
  readonly kind: 'xen' | 'sim';
  private readonly inner: Hypercalls;
  private readonly listeners = new Set<() => void>();
  private readonly unsubscribeInner: (() => void) | undefined;
  readonly stats = new Map<string, CallStats>();
  /** Timestamps (ms, performance.now) of debugger events since the last reset. */
  events: number[] = [];
  /** Time of the last XEN_DOMCTL_unpausedomain (the guest was let run). */
  lastUnpause = 0;

  constructor(inner: Hypercalls) {
    this.inner = inner;
    this.kind = inner.kind;
    this.unsubscribeInner = inner.onDebuggerEvent?.(() => {
      this.events.push(now());
      if (this.events.length > 100000) this.events.splice(0, 50000);
      for (const l of [...this.listeners]) l();
    });
  }

  /** True if the hypervisor below signals debugger events (else the stub polls). */
  get hasEvents(): boolean {
    return this.unsubscribeInner !== undefined;
  }

  domctl(op: Buffer, data?: DomctlData): number {
    const cmd = op.readUInt32LE(Off.cmd);
    const t0 = now();
    try {
      return this.inner.domctl(op, data);
    } finally {
      const t1 = now();
      if (cmd === DomctlCmd.unpausedomain) this.lastUnpause = t1;
      const name = names.get(cmd) ?? String(cmd);
      let s = this.stats.get(name);
      if (!s) {
        s = { count: 0, ms: 0, bytes: 0 };
        this.stats.set(name, s);
      }
      s.count++;
      s.ms += t1 - t0;
      if (cmd === DomctlCmd.gdbsx_guestmemio) s.bytes += op.readUInt32LE(Off.memLen);
    }
  }

  xenVersion(cmd: number, arg?: Buffer): number {
    return this.inner.xenVersion(cmd, arg);
  }

  /** Foreign mappings are timed under the name "mapForeign" (bytes: frames mapped x 4 KiB). */
  mapForeign(domid: number, frames: readonly bigint[], writable: boolean): ForeignMapping {
    const t0 = now();
    try {
      return this.inner.mapForeign(domid, frames, writable);
    } finally {
      const s = this.stats.get('mapForeign') ?? { count: 0, ms: 0, bytes: 0 };
      s.count++;
      s.ms += now() - t0;
      s.bytes += frames.length * 4096;
      this.stats.set('mapForeign', s);
    }
  }

  hvmOp(cmd: number, arg: Buffer): number {
    return this.inner.hvmOp(cmd, arg);
  }

  memoryOp(cmd: number, arg: Buffer, data?: DomctlData): number {
    return this.inner.memoryOp(cmd, arg, data);
  }

  dmOp(domid: number, bufs: Buffer[]): number {
    return this.inner.dmOp(domid, bufs);
  }

  bindInterdomain(domid: number, remotePort: number, onEvent: () => void): EventPort {
    return this.inner.bindInterdomain(domid, remotePort, onEvent);
  }

  onDebuggerEvent(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  reset(): void {
    this.stats.clear();
    this.events = [];
  }

  /** Domctls per operation since the last reset: how many, their time (ms), by domctl. */
  perOp(ops: number): { perOp: number; msPerOp: number; byCmd: Record<string, number> } {
    const byCmd: Record<string, number> = {};
    let n = 0;
    let ms = 0;
    for (const [k, v] of this.stats) {
      byCmd[k] = Math.round((v.count / ops) * 10) / 10;
      n += v.count;
      ms += v.ms;
    }
    return { perOp: Math.round((n / ops) * 10) / 10, msPerOp: Math.round((ms / ops) * 1000) / 1000, byCmd };
  }

  /** Totals since the last reset. */
  totals(): { count: number; ms: number } {
    let count = 0;
    let ms = 0;
    for (const s of this.stats.values()) {
      count += s.count;
      ms += s.ms;
    }
    return { count, ms };
  }

  snapshot(): Record<string, CallStats> {
    return Object.fromEntries([...this.stats.entries()].map(([k, v]) => [k, { ...v }]));
  }

  close(): void {
    this.unsubscribeInner?.();
    this.inner.close();
  }
}
