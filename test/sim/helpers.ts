// Shared set-up for the simulated-Xen tests: a SimXen with one demo guest, driven
// through XenControl like the stub drives it.
import { CreateDomainOptions, SimEvent, SimXen, SimXenOptions } from '../../src/xg/sim';
import { StepResult, X86Cpu } from '../../src/xg/sim/cpu';
import { CPU_RULES, UNMAPPED, walk4, walkPae } from '../../src/xg/sim/paging';
import { XenControl } from '../../src/xg/xenctl';
import { XenError } from '../../src/xg/errors';
import { Off } from '../../src/xg/domctl';
import { DomctlData, ForeignMapping, Hypercalls, forwardBeyondDomctl } from '../../src/xg/hypercalls';
import { Guest } from '../../src/vcpu/guest';

export interface TestGuest {
  sim: SimXen;
  xc: XenControl;
  domid: number;
  sym(name: string): bigint;
  /** Read an unsigned little-endian value of `bytes` at a guest virtual address (not via the debugger path). */
  peek(addr: bigint, bytes: 4 | 8): bigint;
  close(): void;
}

export function startGuest(o: Partial<CreateDomainOptions> & { sim?: SimXenOptions } = {}): TestGuest {
  const sim = new SimXen(o.sim ?? {});
  const domid = sim.createDomain({ vcpus: o.vcpus ?? 2, width: o.width ?? 64, type: o.type, paused: o.paused, onlineVcpus: o.onlineVcpus, domid: o.domid });
  const xc = new XenControl(sim);
  return {
    sim, xc, domid,
    sym: (name) => sim.symbol(domid, name),
    peek(addr, bytes) {
      const b = sim.readVirt(domid, addr, bytes);
      return bytes === 8 ? b.readBigUInt64LE() : BigInt(b.readUInt32LE());
    },
    close: () => sim.close(),
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export async function waitFor(cond: () => boolean, what: string, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

/** The next SimEvent matching `pred`. */
export function nextEvent(sim: SimXen, pred: (e: SimEvent) => boolean, ms = 3000): Promise<SimEvent> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => { off(); reject(new Error('timed out waiting for a simulator event')); }, ms);
    const off = sim.onStateChange((e) => {
      if (!pred(e)) return;
      clearTimeout(t);
      off();
      resolve(e);
    });
  });
}

/**
 * A bare CPU over 4 MiB of RAM for instruction tests: identity-mapped, 0..2 MiB through
 * a 2 MiB superpage, 2..4 MiB through 4 KiB pages except an unmapped page at HOLE.
 * Code goes at CODE, the stack grows down from STACK.
 */
export const CODE = 0x10000;
export const STACK = 0x80000;
export const HOLE = 0x300000;

export function bareCpu(long: boolean): X86Cpu {
  const mem = Buffer.alloc(4 << 20);
  const e = (at: number, v: number) => mem.writeBigUInt64LE(BigInt(v), at);
  const L2 = 0x3000;
  const L1 = 0x4000;
  if (long) {
    e(0x1000, 0x2000 | 3); // L4[0] -> L3
    e(0x2000, L2 | 3); // L3[0] -> L2
  } else {
    e(0x1000, L2 | 1); // PDPT[0] -> L2 (PDPTEs have only P)
  }
  e(L2, 0x0 | 0x83); // 2 MiB superpage at 0
  e(L2 + 8, L1 | 3);
  for (let i = 0; i < 512; i++) {
    const pa = 0x200000 + i * 4096;
    if (pa !== HOLE) e(L1 + i * 8, pa | 3);
  }
  const cpu = new X86Cpu(mem, long, false);
  cpu.cr3 = 0x1000n;
  cpu.rip = BigInt(CODE);
  cpu.setGpr(4, BigInt(STACK));
  return cpu;
}

/** Put `hex` at CODE, reset rip, and execute `steps` instructions; returns the last result. */
export function runCode(cpu: X86Cpu, hex: string, steps = 1): StepResult {
  Buffer.from(hex.replace(/\s+/g, ''), 'hex').copy(cpu.mem, CODE);
  cpu.rip = BigInt(CODE);
  let r = StepResult.Ok;
  for (let i = 0; i < steps && r !== StepResult.Fault; i++) r = cpu.step();
  return r;
}

/** The errno of the XenError `fn` throws; 0 if it succeeds. */
export function errnoOf(fn: () => unknown): number {
  try {
    fn();
  } catch (e) {
    if (e instanceof XenError) return e.errno;
    throw e;
  }
  return 0;
}

/** A copy of all of a domain's RAM, for walking its page tables with paging.ts. */
export function guestRam(sim: SimXen, domid: number): Buffer {
  const pages = Number(new XenControl(sim).getDomainInfo(domid).totPages);
  return sim.readPhys(domid, 0, pages * 4096);
}

/**
 * Guest-physical address of `va` through the tables at `cr3` (4-level for 64-bit, PAE for
 * 32-bit; the CPU's rules), or UNMAPPED. Low cr3 bits (PCID, flags) are ignored.
 */
export function walkVa(mem: Buffer, cr3: bigint, va: bigint, width: 32 | 64): number {
  const root = Number(BigInt.asUintN(52, cr3));
  if (width === 32) return va >> 32n ? UNMAPPED : walkPae(mem, root, Number(va), CPU_RULES);
  return walk4(mem, root, Number(va & 0xffffffffn), Number((va >> 32n) & 0xffffffffn), CPU_RULES);
}

/** `inner` (the simulated Xen) as the stub sees it, counting each domctl (by command) and each mapForeign call. */
export interface WatchedHypercalls extends Hypercalls {
  readonly domctls: Map<number, number>;
  maps: number;
  /** Runs after each domctl, with its command (an unpausedomain: the guest has just been let run). */
  afterDomctl?: (cmd: number) => void;
}

export function watchHypercalls(inner: Hypercalls): WatchedHypercalls {
  const h: WatchedHypercalls = {
    kind: inner.kind,
    domctls: new Map(),
    maps: 0,
    domctl(op: Buffer, data?: DomctlData): number {
      const cmd = op.readUInt32LE(Off.cmd);
      h.domctls.set(cmd, (h.domctls.get(cmd) ?? 0) + 1);
      const r = inner.domctl(op, data);
      h.afterDomctl?.(cmd);
      return r;
    },
    xenVersion: inner.xenVersion.bind(inner),
    ...forwardBeyondDomctl(inner),
    mapForeign(domid: number, frames: readonly bigint[], writable: boolean): ForeignMapping {
      h.maps++;
      return inner.mapForeign(domid, frames, writable);
    },
    onDebuggerEvent: inner.onDebuggerEvent?.bind(inner),
    close: () => inner.close(),
  };
  return h;
}

/** A 2-VCPU demo guest, attached by a Guest (64-bit, the memory path given) whose hypercalls are counted. */
export interface WatchedGuest {
  t: TestGuest;
  hc: WatchedHypercalls;
  g: Guest;
}

export function attachWatched(memory: 'pagewalk' | 'gdbsx'): WatchedGuest {
  const t = startGuest({ vcpus: 2 });
  const hc = watchHypercalls(t.sim);
  return { t, hc, g: Guest.attach(new XenControl(hc), t.domid, { width: 64, memory }) };
}
