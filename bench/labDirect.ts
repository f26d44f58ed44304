// Runs in the lab's dom0 (copied to /opt/gdbsx/dist/bench/ by bench/labSuite.ts):
// the limit below the protocol on the real hypervisor, through the privcmd addon.
// Usage: node labDirect.js '<json LabDirectArgs>'; prints one JSON line (LabDirectResult).
import { PrivcmdHypercalls } from '../src/xg/privcmd';
import type { Hypercalls } from '../src/xg/hypercalls';
import { XenControl } from '../src/xg/xenctl';
import { Guest } from '../src/vcpu/guest';
import { TracingHypercalls } from './trace';
import { perCallUs } from './stats';
import type { Limits } from './catalogue';
import {
  MemPathName, PathReads, comparePaths, directAttach, directBacktrace, directContext, directRawSteps, directRead, guestStops, guestSteps, rawAttach,
} from './direct';

export interface LabDirectArgs {
  domid: number;
  width: 32 | 64;
  /** Hex address of the bulk reads. */
  addr: string;
  sizes: number[];
  runs: number;
  readRuns: number;
  /** Hex address of a function the guest calls all the time, for stops. */
  bp?: string;
  frames: number;
  /** Run only this VCPU for the stops (gdb's scheduler-locking on), else all. */
  stopVcpu?: number;
  /** What to measure (default all): reads, steps, stops, regs (context + bt), attach. */
  parts?: ('read' | 'step' | 'stop' | 'regs' | 'attach')[];
  /** With 'read': the memory paths to compare through Guest.readMemory (none: not compared). */
  paths?: MemPathName[];
  /** Bytes per readMemory call of those reads (gdb's m size, PACKET_SIZE / 2). */
  request?: number;
  /** Hex address of the small read (a kernel symbol); default `addr`. */
  smallAddr?: string;
}

/** The catalogue's limits (bench/catalogue.ts), and what the lab suite's profile takes from dom0. */
export interface LabDirectResult extends Limits {
  read64k?: number[];
  hypercallsUs: Record<string, number>;
  /** Hypercalls per operation: how many, their time (ms), by domctl. */
  domctls: Record<string, { perOp: number; msPerOp: number; byCmd: Record<string, number> }>;
  errors: string[];
  /** The memory paths' reads (see comparePaths). */
  paths?: Partial<Record<MemPathName, PathReads>>;
}

/** Everything asked for in `a`, on the hypervisor below `inner` (privcmd in dom0; the simulator in bench/labDirectCheck.ts). */
export async function runLabDirect(a: LabDirectArgs, inner: Hypercalls): Promise<LabDirectResult> {
  const hc = new TracingHypercalls(inner);
  const xc = new XenControl(hc);
  const count = (label: string, ops: number) => {
    r.domctls[label] = hc.perOp(ops);
  };
  const addr = BigInt(a.addr);
  const MiB = 1 << 20;
  const errors: string[] = [];
  const r: LabDirectResult = { read: {}, context: [], bt: [], attach: [], hypercallsUs: {}, domctls: {}, errors };
  const want = new Set(a.parts ?? ['read', 'step', 'stop', 'regs', 'attach']);
  try {
    xc.pauseDomain(a.domid);
    try {
      for (const b of want.has('read') ? a.sizes : []) {
        try {
          r.read[String(b)] = directRead(xc, a.domid, addr, b, MiB, b >= 4 * MiB ? a.readRuns : a.runs);
        } catch (e) {
          errors.push(`read ${b}: ${(e as Error).message}`);
        }
      }
      if (want.has('read')) try {
        r.read64k = directRead(xc, a.domid, addr, Math.max(...a.sizes), 65536, a.readRuns);
      } catch (e) {
        errors.push(`read in 64 KiB calls: ${(e as Error).message}`);
      }
      r.hypercallsUs.getdomaininfo = perCallUs(() => xc.getDomainInfo(a.domid), 200);
      r.hypercallsUs.getvcpucontext = perCallUs(() => xc.getVcpuContext(a.domid, 0), 200);
      if (want.has('read')) {
        // Into buffers kept across calls, as the stub does: a fresh one costs page faults
        // through Xen in a PV dom0, not the hypercall.
        const b8 = Buffer.alloc(8);
        const b64k = Buffer.alloc(65536);
        const b1m = Buffer.alloc(MiB);
        r.hypercallsUs['guestmemio 8 bytes'] = perCallUs(() => xc.guestMemIo(a.domid, addr, b8, false), 200);
        r.hypercallsUs['guestmemio 64 KiB'] = perCallUs(() => xc.guestMemIo(a.domid, addr, b64k, false), 50);
        r.hypercallsUs['guestmemio 1 MiB'] = perCallUs(() => xc.guestMemIo(a.domid, addr, b1m, false), 10);
      }
      if (want.has('regs')) {
        r.context = directContext(xc, a.domid, 0, a.runs);
        r.bt = directBacktrace(xc, a.domid, 0, a.width, a.frames, 64, a.runs);
      }
    } finally {
      xc.unpauseDomain(a.domid);
    }
    if (want.has('read') && a.paths?.length && a.request) {
      r.paths = comparePaths(xc, a.domid, a.paths, {
        addr, sizes: a.sizes, request: a.request, runs: (b) => (b >= 4 * MiB ? a.readRuns : a.runs),
        smallAddr: BigInt(a.smallAddr ?? a.addr), smallRuns: a.runs, trace: hc, width: a.width,
      }, errors);
    }
    const g = Guest.attach(xc, a.domid, { width: a.width });
    try {
      if (want.has('step')) try {
        hc.reset();
        r.step = await guestSteps(g, 0, true, a.runs);
        count('Guest.resume step', a.runs + 1);
      } catch (e) {
        errors.push(`step: ${(e as Error).message}`);
      }
      if (a.bp && want.has('stop')) {
        try {
          hc.reset();
          r.stops = await guestStops(g, BigInt(a.bp), a.runs, undefined, a.stopVcpu);
          count('Guest continue to a breakpoint', a.runs + 1);
        } catch (e) {
          errors.push(`stops: ${(e as Error).message}`);
        }
      }
    } finally {
      g.detach();
    }
    if (want.has('step')) {
      const undo = rawAttach(xc, a.domid);
      try {
        hc.reset();
        r.rawStep = await directRawSteps(xc, a.domid, 0, a.width, a.runs);
        count('raw step', a.runs + 1);
      } catch (e) {
        errors.push(`raw step: ${(e as Error).message}`);
      } finally {
        undo();
      }
    }
    if (want.has('attach')) r.attach = directAttach(xc, a.domid, a.runs);
  } finally {
    hc.close();
  }
  return r;
}

if (require.main === module) {
  const args = JSON.parse(process.argv[2] ?? '{}') as LabDirectArgs;
  // Opened inside the promise chain: a privcmd that cannot be opened is reported like any failure.
  Promise.resolve().then(() => runLabDirect(args, PrivcmdHypercalls.open())).then((r) => {
    process.stdout.write(JSON.stringify(r) + '\n');
  }, (e: Error) => {
    process.stderr.write(`labDirect: ${e.stack ?? e.message}\n`);
    process.exitCode = 1;
  });
}
