// stepi through gdb on our stub beside gdbserver's on a local process, alternating in
// blocks so that the host's load drifts over every side alike. gdbserver steps two
// programs: the C one the other ceiling figures use (GCC's debug info), and the same
// program with its stepped functions in hand-written assembly, as the demo guest's are.
// gdb's own work per stepi depends on that: on code without GCC's debug info it reads
// the byte at pc for every frame it builds (its epilogue sniffer), on GCC's it trusts the
// unwind info. The second is the same code for both, so the same packets from gdb.
// Our stub runs as `gdbsx --sim` in a process of its own, as shipped and again with its
// reply polling off (--poll-us 0), so that the polling's share shows in the same run.
import fs from 'fs';
import os from 'os';
import path from 'path';
import { MiGdb } from '../test/support/mi';
import { CeilingCode, startCeilingTarget } from './ceiling';
import { connect, continueStops, stepiTimes, tracePackets, PacketTrace } from './gdbFigures';
import { procCpuMs, sleep, summarize } from './stats';
import { serveStub } from '../test/support/stubProcess';
import { demoImage } from '../src/simDemo';
import { Figure, figure, measure, rate } from './model';
import { judgeStepiVsGdbserver } from './targets';

export interface StepiSide {
  key: string;
  gdb: MiGdb;
  /** Where the continues before the steps stop. */
  breakpoint: string;
  /** CPU ms its server has used so far (our stub: the process it runs in). */
  serverCpuMs: () => number;
}

export interface StepiRounds {
  rounds: number;
  steps: number;
  /** ms per stepi, every round's together, by side. */
  ms: Record<string, number[]>;
  /** Each round's median rate (steps/s), by side. */
  roundRates: Record<string, number[]>;
  /** CPU ms per stepi: gdb's, and its server's. */
  cpu: Record<string, { gdb: number; server: number }>;
  /** What gdb sent for TRACED_STEPS stepi, by side. */
  packets: Record<string, PacketTrace>;
  /** Packets gdb sent per stepi, on average over those, by side. */
  packetsPerStep: Record<string, number>;
}

/** gdb's packets vary with the instruction stepped: counted over this many. */
const TRACED_STEPS = 20;

/** The sides' keys: ours, and gdbserver's on each of its programs. */
const SIDE_KEY: Record<CeilingCode, string> = { c: 'gdbserver', asm: 'gdbserver-asm' };

/** Our sides: the stub as shipped (reply polling at its default), and with `--poll-us 0`. */
export const OURS = 'ours';
export const OURS_NO_POLL = 'ours-nopoll';

/**
 * Our sides, each `gdbsx --sim` in its own process as a user runs it (its own event loop:
 * in this process, the benchmark's gdb/MI reading would share it), stopping in
 * demo_tick; and gdbserver's on each of `codes`. close() ends them all.
 */
export async function stepiSides(codes: readonly CeilingCode[], width: 32 | 64, log: (m: string) => void): Promise<{ sides: StepiSide[]; close(): Promise<void> }> {
  const sides: StepiSide[] = [];
  const closers: (() => Promise<void>)[] = [];
  const close = async () => {
    for (const c of closers.splice(0)) await c();
  };
  try {
    for (const [key, extra] of [[OURS, []], [OURS_NO_POLL, ['--poll-us', '0']]] as const) {
      const g = await stubSide(key, width, extra);
      closers.push(g.close);
      sides.push(g.side);
    }
    for (const code of codes) {
      const g = await gdbserverSide(SIDE_KEY[code], code, log);
      closers.push(g.close);
      sides.push(g.side);
    }
  } catch (e) {
    await close();
    throw e;
  }
  return { sides, close };
}

/** `gdbsx --sim` (its demo guest of `width`) in a process of its own, with a gdb connected. */
async function stubSide(key: string, width: 32 | 64, extra: readonly string[]): Promise<{ side: StepiSide; close(): Promise<void> }> {
  // Its own state directory: the simulated domains of two `gdbsx --sim` share an id and a
  // uuid, so each would find the other's hold of "the domain" (domainLock.ts).
  const state = fs.mkdtempSync(path.join(os.tmpdir(), `gdbsx-bench-${key}-`));
  const stub = await serveStub(['--sim', '--sim-width', String(width), '--port', '0', ...extra], { GDBSX_STATE_DIR: state });
  const gdb = new MiGdb([demoImage(width)]);
  const close = async () => {
    await Promise.race([gdb.quit(), sleep(5000)]);
    gdb.kill();
    await Promise.race([stub.stop(), sleep(5000)]);
    stub.proc.kill('SIGKILL');
    fs.rmSync(state, { recursive: true, force: true });
  };
  try {
    await gdb.setup();
    await connect(gdb, stub.port);
  } catch (e) {
    await close();
    throw e;
  }
  return { side: { key, gdb, breakpoint: 'demo_tick', serverCpuMs: () => procCpuMs(stub.proc.pid) }, close };
}

/** gdbserver on a fresh local process whose stepped code is `code`, with a gdb connected. */
async function gdbserverSide(key: string, code: CeilingCode, log: (m: string) => void): Promise<{ side: StepiSide; close(): Promise<void> }> {
  const target = await startCeilingTarget(4096, log, code);
  const gdb = new MiGdb([target.exe]);
  try {
    await gdb.setup();
    await connect(gdb, target.port);
  } catch (e) {
    gdb.kill();
    target.close();
    throw e;
  }
  return {
    side: { key, gdb, breakpoint: 'tick', serverCpuMs: () => procCpuMs(target.serverPid) },
    async close() {
      await Promise.race([gdb.quit(), sleep(5000)]);
      gdb.kill();
      target.close();
    },
  };
}

/**
 * `continues` continues to each side's breakpoint (as the full benchmark runs before its
 * steps) and a block of `steps` stepi untimed, then `rounds` timed blocks of `steps`
 * stepi on each side in turn.
 */
export async function alternateStepi(sides: StepiSide[], rounds: number, steps: number, continues: number, log: (m: string) => void): Promise<StepiRounds> {
  const out: StepiRounds = { rounds, steps, ms: {}, roundRates: {}, cpu: {}, packets: {}, packetsPerStep: {} };
  for (const s of sides) {
    await continueStops(s.gdb, s.breakpoint, continues);
    // One block untimed: our stubs start fresh (V8 compiles the stop path after some
    // hundreds of stops), as gdbserver's first steps fault in its pages.
    await stepiTimes(s.gdb, steps);
    out.ms[s.key] = [];
    out.roundRates[s.key] = [];
    out.cpu[s.key] = { gdb: 0, server: 0 };
  }
  for (let r = 0; r < rounds; r++) {
    for (const s of sides) {
      const g0 = procCpuMs(s.gdb.pid);
      const s0 = s.serverCpuMs();
      const ms = await stepiTimes(s.gdb, steps);
      out.cpu[s.key].gdb += procCpuMs(s.gdb.pid) - g0;
      out.cpu[s.key].server += s.serverCpuMs() - s0;
      out.ms[s.key].push(...ms);
      out.roundRates[s.key].push(1000 / summarize(ms).median);
    }
    log(`stepi round ${r + 1}/${rounds}: ${sides.map((s) => `${s.key} ${out.roundRates[s.key][r].toFixed(0)}`).join(', ')} steps/s`);
  }
  for (const s of sides) {
    // stepiTimes steps once more, untimed, before its timed steps.
    const n = rounds * (steps + 1);
    out.cpu[s.key] = { gdb: out.cpu[s.key].gdb / n, server: out.cpu[s.key].server / n };
    // stepiTimes(gdb, n) steps n + 1 times.
    out.packets[s.key] = await tracePackets(s.gdb, () => stepiTimes(s.gdb, TRACED_STEPS - 1));
    out.packetsPerStep[s.key] = out.packets[s.key].sent / TRACED_STEPS;
  }
  return out;
}

/** Per round, `a`'s time per step over `b`'s (from the rounds' median rates). */
export function roundRatios(r: StepiRounds, a: string, b: string): number[] {
  return r.roundRates[a].map((ra, i) => r.roundRates[b][i] / ra);
}

const SIDE_TEXT: Record<string, string> = {
  [SIDE_KEY.c]: 'gdbserver, local process: C from GCC (its debug info)',
  [SIDE_KEY.asm]: 'gdbserver, local process: the same program, stepped functions in hand-written assembly (as the demo guest\'s)',
};

/** The rounds as figures: ours against each gdbserver side, judged on the issue's goal (at or above its rate). */
export function stepiVsFigures(r: StepiRounds, oursWhat: string): Figure[] {
  const ours = measure(`${oursWhat}, alternating with gdbserver (${r.rounds} rounds of ${r.steps}, after one untimed)`, 'steps/s', rate(r.ms[OURS]));
  const out: Figure[] = [];
  for (const key of Object.keys(SIDE_TEXT)) {
    if (!r.ms[key]) continue;
    const same = key === SIDE_KEY.asm;
    const notes = [
      `packets gdb sends per stepi (over 20): ours ${r.packetsPerStep[OURS].toFixed(1)}, gdbserver ${r.packetsPerStep[key].toFixed(1)}`,
      `CPU ms per stepi: our stub's process ${r.cpu[OURS].server.toFixed(3)}, gdbserver ${r.cpu[key].server.toFixed(3)}`,
    ];
    if (r.ms[OURS_NO_POLL]) {
      const ratio = summarize(roundRatios(r, OURS_NO_POLL, key)).median;
      notes.push(`ours with --poll-us 0 (no polling after replies), same rounds: ${(1000 / summarize(r.ms[OURS_NO_POLL]).median).toFixed(0)} steps/s, `
        + `${ratio.toFixed(2)}x gdbserver's time; its process ${r.cpu[OURS_NO_POLL].server.toFixed(3)} CPU ms per stepi`);
    }
    const f = figure({
      id: same ? 'sim.ceiling.stepi.samecode' : 'sim.ceiling.stepi', env: 'sim', group: 'RSP engine vs gdbserver',
      name: same ? 'stepi, same code (assembly)' : 'stepi (gdbserver steps C)',
      ours, ceiling: measure(SIDE_TEXT[key], 'steps/s', rate(r.ms[key])),
      notes,
    });
    f.target = judgeStepiVsGdbserver(f);
    out.push(f);
  }
  return out;
}
