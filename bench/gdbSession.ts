// The gdb side of the catalogue's figures, the same on the simulator and in the lab: one
// gdb connected to the stub dumps memory, continues to a breakpoint, steps, reads the
// registers and the stack, with the packets of each; and the memory paths' alternating
// dumps. The environment (SessionEnv) says how gdb reaches the stub and what it does
// around each part (the sim counts hypercalls and fails on an error; the lab notes
// an error and goes on).
import type { MemPathName } from './direct';
import { PATH_NAME } from './direct';
import { FigureEnv, GdbRuns, emptyRuns } from './catalogue';
import { MiGdb } from '../test/support/mi';
import { alternatingDumps, attachTimes, cliTimes, connect, continueStops, defineCommands, stepiTimes, stubMemoryPath, tracePackets } from './gdbFigures';
import { Results } from './model';
import { roundTrips } from './profile';
import { round3, sleep, summarize } from './stats';

/** The parts of a guest's figures (the lab splits them over guests; the simulator's one guest has all). */
export type Part = 'read' | 'step' | 'stop' | 'regs' | 'attach';
export const ALL_PARTS: ReadonlySet<Part> = new Set<Part>(['read', 'step', 'stop', 'regs', 'attach']);

const MiB = 1 << 20;

export interface SessionEnv extends FigureEnv {
  /** Where profile rows come from ("sim", "lab pv"). */
  tag: string;
  /** The stub's port on 127.0.0.1 (lab: QEMU's forward to dom0). */
  port: number;
  /** The guest's ELF for gdb (symbols), if any. */
  symbols?: string;
  runs: number;
  /** Runs of the 4 MiB and larger reads. */
  readRuns: number;
  /** gdb's wait for one continue to reach the breakpoint. */
  stopTimeoutMs: number;
  /** Also the packets of info registers and bt (sim). */
  packetsOfRegisters: boolean;
  log(m: string): void;
  /** Runs one part: the sim lets a failure end the run, the lab notes it and goes on. */
  attempt(what: string, fn: () => Promise<void>): Promise<void>;
  /** Runs a timed part (runs + 1 operations): the sim counts its hypercalls as "<tag> gdb: <label>". */
  counted<T>(label: string, fn: () => Promise<T>): Promise<T>;
  /** The bulk reads, where the guest has a known address. */
  read?: {
    addr: bigint;
    sizes: number[];
    /** After connecting, before the dumps: what gdb reads and through which memory path. */
    check(gdb: MiGdb): Promise<void>;
    /** `runs` timed dumps of `bytes` (and their profile). */
    dumps(gdb: MiGdb, bytes: number, runs: number): Promise<number[]>;
    /** The environment's own dumps, after the bulk ones. */
    more?(gdb: MiGdb): Promise<void>;
  };
  /** The environment's own measures on the connected gdb, last. */
  beforeDetach?(gdb: MiGdb): Promise<void>;
}

/** Runs of a read of `bytes`: the large ones are fewer. */
export function runsFor(e: { runs: number; readRuns: number }, bytes: number): number {
  return bytes >= 4 * MiB ? e.readRuns : e.runs;
}

/**
 * The catalogue's gdb figures of `parts`, into `out` (what was measured before a failure
 * stays there): attach on a gdb of its own, then one gdb session. A failure outside the
 * environment's attempts (connecting, the reads) ends the session with an error.
 */
export async function gdbSession(e: SessionEnv, parts: ReadonlySet<Part>, res: Results, out: GdbRuns = emptyRuns()): Promise<GdbRuns> {
  const packets = res.profile.packets;
  if (parts.has('attach')) {
    e.log(`${e.env}: attach through gdb`);
    await e.attempt('attach', async () => {
      out.attach = await e.counted('attach (connect + detach)', () => attachTimes(e.port, e.symbols, e.runs));
    });
  }
  const gdb = new MiGdb(e.symbols ? [e.symbols] : []);
  try {
    await gdb.setup();
    await defineCommands(gdb);
    await connect(gdb, e.port);
    const read = e.read;
    if (parts.has('read') && read) {
      const { addr, sizes } = read;
      await read.check(gdb);
      for (const b of sizes) {
        e.log(`${e.env}: dump ${b / MiB} MiB through gdb`);
        await e.attempt(`dump ${b / MiB} MiB at 0x${addr.toString(16)}`, async () => { out.dumps[b] = await read.dumps(gdb, b, runsFor(e, b)); });
      }
      await read.more?.(gdb);
      packets[`${e.tag}: dump 1 MiB`] = await tracePackets(gdb, () => gdb.console(`dump binary memory /dev/null 0x${addr.toString(16)} 0x${(addr + BigInt(MiB)).toString(16)}`, { strict: false }));
    }
    const bp = e.breakpoint;
    if (parts.has('stop') && bp) {
      e.log(`${e.env}: continue to ${bp.name} through gdb`);
      // With a stop VCPU only it runs (thread 1 = VCPU 0): two VCPUs hitting the breakpoint
      // together trip a stub bug on real Xen (see docs/benchmark.md).
      const lock = async (on: boolean) => {
        if (e.stopVcpu !== undefined) await gdb.cmd(`-gdb-set scheduler-locking ${on ? 'on' : 'off'}`);
      };
      await e.attempt('continue to a breakpoint', async () => {
        await lock(true);
        try {
          await e.counted('continue to a breakpoint', () => continueStops(gdb, bp.location, e.runs, e.stopTimeoutMs, out.stops));
        } finally {
          await lock(false).catch(() => undefined);
        }
        await lock(true);
        // One continue from the breakpoint, as the timed ones (the first lands on it).
        await continueStops(gdb, bp.location, 0, e.stopTimeoutMs);
        packets[`${e.tag}: continue to a breakpoint`] = await tracePackets(gdb, () => continueStops(gdb, bp.location, 0, e.stopTimeoutMs));
        await lock(false);
      });
    }
    if (parts.has('step')) {
      e.log(`${e.env}: stepi through gdb`);
      await e.attempt('stepi', async () => {
        out.stepi = await e.counted('stepi', () => stepiTimes(gdb, e.runs));
        packets[`${e.tag}: stepi`] = await tracePackets(gdb, () => stepiTimes(gdb, 0));
      });
    }
    if (parts.has('regs')) {
      e.log(`${e.env}: registers, backtrace through gdb`);
      await e.attempt('registers and bt', async () => {
        out.regs = (await e.counted('info registers', () => cliTimes(gdb, 'bench-regs', e.runs, false))).ms;
        if (e.packetsOfRegisters) packets[`${e.tag}: info registers (after a cache flush)`] = await tracePackets(gdb, () => cliTimes(gdb, 'bench-regs', 0, false));
        const bt = await e.counted('bt', () => cliTimes(gdb, 'bench-bt', e.runs, false));
        if (e.packetsOfRegisters) packets[`${e.tag}: bt (after a cache flush)`] = await tracePackets(gdb, () => cliTimes(gdb, 'bench-bt', 0, false));
        out.bt = bt.ms;
        out.frames = Math.max(1, bt.output.split('\n').filter((l) => /^#\d+/.test(l)).length);
      });
    }
    await e.attempt('round trips', async () => {
      res.profile.roundTripMs[`${e.tag}: maint packet qC (one round trip)`] = round3(summarize(await roundTrips(gdb, e.runs)).median);
    });
    await e.beforeDetach?.(gdb);
    await gdb.cmd('-target-detach', { strict: false }).catch(() => undefined);
  } finally {
    await Promise.race([gdb.quit(), sleep(5000)]);
    gdb.kill();
  }
  return out;
}

/**
 * The same dumps through the guest's stub (its default memory path, the page walk) and a
 * second one on `gdbsxPort` started with `--memory gdbsx`, alternating in `rounds` blocks
 * (alternatingDumps). Each stub's path is checked with `monitor xen`; a stub that does not
 * name it (an older one in dom0) is taken at its flag unless `mustName`.
 */
export async function memoryPathDumps(e: SessionEnv, addr: bigint, gdbsxPort: number, sizes: number[], rounds: number,
  mustName: boolean, verify?: (key: MemPathName, gdb: MiGdb) => Promise<void>): Promise<Partial<Record<MemPathName, Record<string, number[]>>>> {
  const stubs = [{ key: 'pagewalk', port: e.port }, { key: 'gdbsx', port: gdbsxPort }];
  return alternatingDumps(stubs, e.symbols, addr, sizes, (b) => runsFor(e, b), rounds, async (k, gdb) => {
    const key = k as MemPathName;
    const p = await stubMemoryPath(gdb).catch(() => undefined);
    if (p !== PATH_NAME[key] && (p !== undefined || mustName)) throw new Error(`the ${key} stub reads through ${p ?? '(monitor xen does not say)'}`);
    await verify?.(key, gdb);
  });
}
