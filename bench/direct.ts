// The limit: the same work done directly below the protocol, through XenControl
// and Guest, with no gdb and no RSP in between. Runs in the benchmark's process on
// the simulated Xen, and in dom0 (bench/labDirect.ts) on the real one.
import { XenControl } from '../src/xg/xenctl';
import { EFLAGS_TF, readField, writeField } from '../src/xg/context';
import { contextLayoutFor } from '../src/vcpu/registers';
import { Guest } from '../src/vcpu/guest';
import { Sig, StopEvent } from '../src/vcpu/stop';
import { now, yieldLoop } from './stats';

/** Guest memory read straight through XEN_DOMCTL_gdbsx_guestmemio, `chunk` bytes a call. ms per run. */
export function directRead(xc: XenControl, domid: number, addr: bigint, bytes: number, chunk: number, runs: number): number[] {
  const buf = Buffer.alloc(Math.min(chunk, bytes));
  const out: number[] = [];
  // One warm-up pass (JIT, first-touch of the buffers).
  for (let off = 0; off < bytes; off += chunk) xc.guestMemIo(domid, addr + BigInt(off), buf.subarray(0, Math.min(chunk, bytes - off)), false);
  for (let r = 0; r < runs; r++) {
    const t0 = now();
    for (let off = 0; off < bytes; off += chunk) xc.guestMemIo(domid, addr + BigInt(off), buf.subarray(0, Math.min(chunk, bytes - off)), false);
    out.push(now() - t0);
  }
  return out;
}

/** Wait until the domain is paused: on the debugger event where there is one, else a yielding poll. */
export async function waitPaused(xc: XenControl, domid: number, timeoutMs = 10000): Promise<void> {
  const t0 = now();
  let wake: (() => void) | undefined;
  const unsub = xc.hc.onDebuggerEvent?.(() => wake?.());
  try {
    for (;;) {
      if (xc.getDomainInfo(domid).paused) return;
      if (now() - t0 > timeoutMs) throw new Error(`domain ${domid} did not pause within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const imm = setImmediate(() => { wake = undefined; resolve(); });
        wake = () => { clearImmediate(imm); wake = undefined; resolve(); };
      });
    }
  } finally {
    unsub?.();
  }
}

/**
 * One single-step as a hand-written tool would do it, straight domctls, no Guest:
 * getvcpucontext, set TF (or debug_op for HVM), setvcpucontext, unpausedomain, wait
 * for the trap's pause, gdbsx_domstatus (read-to-clear), getvcpucontext, clear TF,
 * setvcpucontext. The domain must be paused with debugging on. ms per step.
 */
export async function directRawSteps(xc: XenControl, domid: number, vcpu: number, width: 32 | 64, runs: number): Promise<number[]> {
  const info = xc.getDomainInfo(domid);
  const layout = contextLayoutFor(width, info.hvm);
  const useMtf = info.hvm && canMtf(xc, domid, vcpu);
  const out: number[] = [];
  for (let r = 0; r < runs + 1; r++) {
    const t0 = now();
    if (useMtf) {
      xc.debugOp(domid, vcpu, true);
    } else {
      const ctx = xc.getVcpuContext(domid, vcpu);
      writeField(ctx, layout, 'rflags', (readField(ctx, layout, 'rflags') ?? 0n) | EFLAGS_TF);
      xc.setVcpuContext(domid, vcpu, ctx);
    }
    xc.unpauseDomain(domid);
    await waitPaused(xc, domid);
    for (let i = 0; i < 256; i++) {
      const st = xc.domStatus(domid);
      if (st.vcpuId < 0 || st.vcpuId === 0xffffffff) break;
    }
    if (useMtf) {
      xc.debugOp(domid, vcpu, false);
    } else {
      const ctx = xc.getVcpuContext(domid, vcpu);
      writeField(ctx, layout, 'rflags', (readField(ctx, layout, 'rflags') ?? 0n) & ~EFLAGS_TF);
      xc.setVcpuContext(domid, vcpu, ctx);
    }
    if (r > 0) out.push(now() - t0); // the first one warms up
  }
  return out;
}

function canMtf(xc: XenControl, domid: number, vcpu: number): boolean {
  try {
    xc.debugOp(domid, vcpu, false);
    return true;
  } catch {
    return false;
  }
}

/** Pause the domain and turn debugging on for the raw sequences; returns the undo. */
export function rawAttach(xc: XenControl, domid: number): () => void {
  xc.pauseDomain(domid);
  xc.setDebugging(domid, true);
  return () => {
    xc.setDebugging(domid, false);
    for (let i = 0; i < 256 && xc.getDomainInfo(domid).paused; i++) xc.unpauseDomain(domid);
  };
}

/** Guest.resume with the plan gdb's `stepi` produces (step `vcpu`, the others as `others`). ms per step. */
export async function guestSteps(g: Guest, vcpu: number, othersRun: boolean, runs: number): Promise<number[]> {
  const cont = new Set(othersRun ? g.vcpus().filter((v) => v !== vcpu) : []);
  const out: number[] = [];
  for (let r = 0; r < runs + 1; r++) {
    const t0 = now();
    const ev = await g.resume({ step: vcpu, cont });
    const dt = now() - t0;
    if (ev.kind !== 'stopped') throw new Error(`step: ${ev.kind}`);
    if (r > 0) out.push(dt);
  }
  return out;
}

export interface StopSample {
  /** resume() call to its answer, including the step off the breakpoint as gdb does it. */
  totalMs: number;
  /** The continue only (after the step-over). */
  contMs: number;
  /** Debugger event (trap) to resume()'s answer, where the hypervisor signals traps. */
  trapToStopMs?: number;
  /** The stop was an earlier, queued hit (no guest execution). */
  queued: boolean;
}

/**
 * Continue to a breakpoint as gdb does it, through Guest: remove the breakpoint, step
 * the stopped VCPU over it, insert it again, continue every VCPU; until it is hit.
 * `lastTrap(since)` gives the time of the last breakpoint trap after `since`, where
 * the hypervisor says (the simulator); a stop with no trap in its continue was a
 * queued earlier hit.
 */
export async function guestStops(g: Guest, bp: bigint, runs: number, lastTrap?: (since: number) => number | undefined, only?: number): Promise<StopSample[]> {
  g.insertBreakpoint(bp, g.vcpus()[0]);
  // Every VCPU runs, or only one (gdb's `set scheduler-locking on`).
  const all = new Set(only !== undefined ? [only] : g.vcpus());
  const out: StopSample[] = [];
  let at: number | undefined; // VCPU sitting on the breakpoint
  let held = 0;
  try {
    for (let r = 0; r < runs + 1; r++) {
      const t0 = now();
      if (at !== undefined) {
        g.bps.remove(bp);
        await g.resume({ step: at, cont: new Set() });
        g.insertBreakpoint(bp, g.vcpus()[0]);
      }
      const tc = now();
      const res = await boundedContinue(g, all, only !== undefined);
      const t1 = now();
      const ev = res.ev;
      if (res.held) {
        // Not a sample: the VCPU waited on one we hold. Every VCPU ran a moment (and may have hit the breakpoint); again.
        if (++held > MAX_HELD_WAITS) throw new Error(`continue: VCPU ${only} waited ${HELD_WAIT_MS} ms on held VCPUs ${held - 1} times`);
        at = ev.kind === 'stopped' && ev.signal !== Sig.INT ? ev.vcpu : undefined;
        r--;
        continue;
      }
      if (ev.kind !== 'stopped') throw new Error(`continue: ${ev.kind}`);
      at = ev.vcpu;
      const trap = lastTrap?.(tc);
      const s: StopSample = { totalMs: t1 - t0, contMs: t1 - tc, queued: lastTrap !== undefined && trap === undefined };
      if (trap !== undefined) s.trapToStopMs = t1 - trap;
      if (r > 0) out.push(s);
      await yieldLoop();
    }
  } finally {
    g.bps.remove(bp);
  }
  return out;
}

/**
 * With one VCPU let run (scheduler-locking), it may wait on one we hold (an IPI, a PV
 * spinlock, RCU) and never reach the breakpoint: as a gdb user would, interrupt after
 * HELD_WAIT_MS, let every VCPU run a moment, and say so ('held'), as the lab soak does.
 */
const HELD_WAIT_MS = Number(process.env.BENCH_HELD_WAIT_MS ?? 30000);
const MAX_HELD_WAITS = 5;

async function boundedContinue(g: Guest, run: Set<number>, locked: boolean): Promise<{ ev: StopEvent; held: boolean }> {
  if (!locked) return { ev: await g.resume({ cont: run }), held: false };
  let timedOut = false;
  // halt(), not interrupt(): a stop that beat the timer must not leave a Ctrl-C for the next resume.
  const timer = setTimeout(() => { timedOut = true; g.halt(); }, HELD_WAIT_MS);
  let ev: StopEvent;
  try {
    ev = await g.resume({ cont: run });
  } finally {
    clearTimeout(timer);
  }
  if (!timedOut || ev.kind !== 'stopped' || ev.signal !== Sig.INT) return { ev, held: false };
  const everyone = setTimeout(() => g.halt(), 300);
  try {
    return { ev: await g.resume({ cont: new Set(g.vcpus()) }), held: true };
  } finally {
    clearTimeout(everyone);
  }
}

/** What `info registers` needs below the protocol: one VCPU context. ms per run. */
export function directContext(xc: XenControl, domid: number, vcpu: number, runs: number, batch = 10): number[] {
  const out: number[] = [];
  xc.getVcpuContext(domid, vcpu);
  // Each sample is the mean of a batch: a dom0 under QEMU/TCG has a coarse clock.
  for (let r = 0; r < runs; r++) {
    const t0 = now();
    for (let i = 0; i < batch; i++) xc.getVcpuContext(domid, vcpu);
    out.push((now() - t0) / batch);
  }
  return out;
}

/**
 * What a backtrace needs below the protocol: the VCPU's context, then the stack
 * (`stackBytes` at sp) and one 16-byte read per frame (saved frame pointer and return
 * address), `frames` of them. ms per run.
 */
export function directBacktrace(xc: XenControl, domid: number, vcpu: number, width: 32 | 64, frames: number, stackBytes: number, runs: number): number[] {
  const info = xc.getDomainInfo(domid);
  const layout = contextLayoutFor(width, info.hvm);
  const once = () => {
    const ctx = xc.getVcpuContext(domid, vcpu);
    const sp = readField(ctx, layout, 'rsp') ?? 0n;
    let fp = readField(ctx, layout, 'rbp') ?? 0n;
    xc.guestMemIo(domid, sp, Buffer.alloc(stackBytes), false);
    const pair = Buffer.alloc(width / 4);
    for (let i = 0; i < frames; i++) {
      try {
        xc.guestMemIo(domid, fp, pair, false);
      } catch {
        fp = sp; // not a frame chain: keep reading the stack, the cost is what we measure
        continue;
      }
      const next = width === 64 ? pair.readBigUInt64LE(0) : BigInt(pair.readUInt32LE(0));
      fp = next > fp && next - fp < 0x10000n ? next : sp;
    }
  };
  once();
  const out: number[] = [];
  const batch = 5;
  for (let r = 0; r < runs; r++) {
    const t0 = now();
    for (let i = 0; i < batch; i++) once();
    out.push((now() - t0) / batch);
  }
  return out;
}

/** Guest.attach (what the stub does when gdb connects), then detach (not timed). ms per run. */
export function directAttach(xc: XenControl, domid: number, runs: number): number[] {
  const out: number[] = [];
  Guest.attach(xc, domid).detach();
  for (let r = 0; r < runs; r++) {
    const t0 = now();
    const g = Guest.attach(xc, domid);
    out.push(now() - t0);
    g.detach();
  }
  return out;
}

/** What `info threads` needs below the protocol: getdomaininfo and every online VCPU's context. */
export function directThreads(xc: XenControl, domid: number, runs: number): number[] {
  const out: number[] = [];
  const once = () => {
    const info = xc.getDomainInfo(domid);
    for (let v = 0; v <= info.maxVcpuId; v++) xc.getVcpuContext(domid, v);
  };
  once();
  for (let r = 0; r < runs; r++) {
    const t0 = now();
    once();
    out.push(now() - t0);
  }
  return out;
}

// ---- the two memory paths, through Guest.readMemory ----

export type MemPathName = 'pagewalk' | 'gdbsx';

/** MemoryPath.name of each. */
export const PATH_NAME: Record<MemPathName, string> = { pagewalk: 'page walk', gdbsx: 'gdbsx_guestmemio' };

/** Hypercalls per operation, as TracingHypercalls.perOp gives them. */
export interface CallsPerOp {
  perOp: number;
  msPerOp: number;
  byCmd: Record<string, number>;
}

/** One path's reads (ms per run unless said otherwise). */
export interface PathReads {
  /** The path Guest.attach gave (g.mem.path.name): a fallback would show here. */
  path: string;
  /** By `${bytes}.cold` and `${bytes}.warm`: ms per read of the whole range. */
  bulk: Record<string, number[]>;
  /** 8 bytes at `smallAddr` with the line cache and the mappings dropped before each: ms per read. */
  small: number[];
  /** Dropping the mappings (g.mem.invalidate, what each resume does) after a cold read of the largest size: ms. */
  release: number[];
  /** Hypercalls per cold read (over all of them), by `${bytes}` and `small`. */
  calls: Record<string, CallsPerOp>;
  /** Hex of the 8 bytes at smallAddr (the two paths must agree). */
  smallBytes: string;
}

export interface PathReadOpts {
  addr: bigint;
  sizes: number[];
  /** Bytes per readMemory call: gdb's m request size (PACKET_SIZE / 2). */
  request: number;
  runs: (bytes: number) => number;
  smallAddr: bigint;
  smallRuns: number;
  /** Counts the hypercalls of one cold read (reset before it). */
  trace?: { reset(): void; perOp(ops: number): CallsPerOp };
}

/**
 * Bulk and small reads through `g.readMemory` (the call the stub's `m` handler makes),
 * in `request`-byte calls into a buffer kept across calls as the session does. Cold:
 * `g.mem.invalidate()` (not timed) before each run, as after a stop; warm: the same
 * range again with the mappings of the previous read kept. The guest must be stopped
 * (attached, not resumed). Throws if a read comes back short.
 */
export function guestPathReads(g: Guest, o: PathReadOpts): PathReads {
  const vcpu = g.vcpus()[0];
  const buf = Buffer.alloc(o.request);
  const out: PathReads = { path: g.mem.path.name, bulk: {}, small: [], release: [], calls: {}, smallBytes: '' };
  const readAll = (bytes: number) => {
    for (let off = 0; off < bytes; off += o.request) {
      const n = Math.min(o.request, bytes - off);
      const got = g.readMemory(o.addr + BigInt(off), n, vcpu, buf);
      if (got.length !== n) throw new Error(`${out.path}: read of ${n} bytes at 0x${(o.addr + BigInt(off)).toString(16)} gave ${got.length}`);
    }
  };
  const timedRead = (bytes: number) => {
    const t0 = now();
    readAll(bytes);
    return now() - t0;
  };
  for (const bytes of o.sizes) {
    const runs = o.runs(bytes);
    g.mem.invalidate();
    readAll(bytes); // warm-up (JIT, buffers), not counted
    const cold: number[] = [];
    // Counted over all cold runs (one read can hit a GC pause); invalidate() makes no hypercall.
    o.trace?.reset();
    for (let r = 0; r < runs; r++) {
      g.mem.invalidate();
      cold.push(timedRead(bytes));
    }
    if (o.trace) out.calls[String(bytes)] = o.trace.perOp(runs);
    // The last cold read's mappings are kept: every run here is a second read while stopped.
    const warm: number[] = [];
    for (let r = 0; r < runs; r++) warm.push(timedRead(bytes));
    out.bulk[`${bytes}.cold`] = cold;
    out.bulk[`${bytes}.warm`] = warm;
  }
  // What the next resume pays for the largest cold read's mappings.
  const largest = Math.max(...o.sizes);
  for (let r = 0; r < Math.min(5, o.runs(largest)); r++) {
    g.mem.invalidate();
    readAll(largest);
    const t0 = now();
    g.mem.invalidate();
    out.release.push(now() - t0);
  }
  // Small reads: each timed alone (the invalidate between them is not counted), a sample
  // is the mean of a batch (a dom0 under QEMU/TCG has a coarse clock).
  const batch = 10;
  g.mem.invalidate();
  out.smallBytes = g.readMemory(o.smallAddr, 8, vcpu).toString('hex');
  o.trace?.reset();
  for (let r = 0; r < o.smallRuns; r++) {
    let ms = 0;
    for (let i = 0; i < batch; i++) {
      g.mem.invalidate();
      const t0 = now();
      const b = g.readMemory(o.smallAddr, 8, vcpu);
      ms += now() - t0;
      if (b.length !== 8) throw new Error(`${out.path}: 8-byte read at 0x${o.smallAddr.toString(16)} gave ${b.length}`);
    }
    out.small.push(ms / batch);
  }
  if (o.trace) out.calls.small = o.trace.perOp(o.smallRuns * batch);
  g.mem.invalidate();
  return out;
}

/**
 * Both paths, each in its own attach (Guest.attach with `memory`), alternating over
 * `rounds` rounds so that drift in the machine's load hits both alike; the samples of
 * the rounds are pooled. Detaches after each round (the guest runs in between).
 */
export function comparePaths(xc: XenControl, domid: number, paths: MemPathName[], o: PathReadOpts & { width?: 32 | 64; rounds?: number }, errors: string[]): Partial<Record<MemPathName, PathReads>> {
  const res: Partial<Record<MemPathName, PathReads>> = {};
  const rounds = o.rounds ?? 2;
  const failed = new Set<MemPathName>();
  for (let round = 0; round < rounds; round++) {
    for (const p of paths) {
      if (failed.has(p)) continue;
      const per = (b: number) => Math.max(1, Math.ceil(o.runs(b) / rounds));
      let g: Guest | undefined;
      try {
        g = Guest.attach(xc, domid, { width: o.width, memory: p });
        // Guest falls back to gdbsx_guestmemio where frames cannot be mapped: that is not the page walk.
        if (g.mem.path.name !== PATH_NAME[p]) throw new Error(`asked for ${PATH_NAME[p]}, Guest.attach gave ${g.mem.path.name}${g.notes.length ? ` (${g.notes.join('; ')})` : ''}`);
        const r = guestPathReads(g, { ...o, runs: per, smallRuns: Math.max(1, Math.ceil(o.smallRuns / rounds)), trace: round === 0 ? o.trace : undefined });
        const acc = res[p];
        if (!acc) {
          res[p] = r;
        } else {
          for (const [k, v] of Object.entries(r.bulk)) acc.bulk[k] = [...(acc.bulk[k] ?? []), ...v];
          acc.small.push(...r.small);
          acc.release.push(...r.release);
        }
      } catch (e) {
        failed.add(p);
        errors.push(`${p} reads: ${(e as Error).message}`);
      } finally {
        g?.detach();
      }
    }
  }
  return res;
}
