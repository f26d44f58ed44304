// stepi through gdb on our stub beside gdbserver's on a local process, alternating in
// blocks so that the host's load drifts over every side alike. gdbserver steps two
// programs: the C one the other ceiling figures use (GCC's debug info), and the same
// program with its stepped functions in hand-written assembly, as the demo guest's are.
// gdb's own work per stepi depends on that: on code without GCC's debug info it reads
// the byte at pc for every frame it builds (its epilogue sniffer), on GCC's it trusts the
// unwind info. The second is the same code for both, so the same packets from gdb.
import { MiGdb } from '../test/support/mi';
import { CeilingCode, startCeilingTarget } from './ceiling';
import { connect, continueStops, stepiTimes, tracePackets, PacketTrace } from './gdbFigures';
import { procCpuMs, selfCpuMs, sleep, summarize } from './stats';
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

/**
 * Our stub's side (gdb `ours`, connected to a stub in this process, stopping in
 * demo_tick) and gdbserver's on each of `codes`; close() ends gdbserver's.
 */
export async function stepiSides(ours: MiGdb, codes: readonly CeilingCode[], log: (m: string) => void): Promise<{ sides: StepiSide[]; close(): Promise<void> }> {
  const sides: StepiSide[] = [{ key: 'ours', gdb: ours, breakpoint: 'demo_tick', serverCpuMs: selfCpuMs }];
  const closers: (() => Promise<void>)[] = [];
  const close = async () => {
    for (const c of closers) await c();
  };
  try {
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
 * steps), then `rounds` blocks of `steps` stepi on each side in turn.
 */
export async function alternateStepi(sides: StepiSide[], rounds: number, steps: number, continues: number, log: (m: string) => void): Promise<StepiRounds> {
  const out: StepiRounds = { rounds, steps, ms: {}, roundRates: {}, cpu: {}, packets: {}, packetsPerStep: {} };
  for (const s of sides) {
    await continueStops(s.gdb, s.breakpoint, continues);
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
  const ours = measure(`${oursWhat}, alternating with gdbserver (${r.rounds} rounds of ${r.steps})`, 'steps/s', rate(r.ms.ours));
  const out: Figure[] = [];
  for (const key of Object.keys(SIDE_TEXT)) {
    if (!r.ms[key]) continue;
    const same = key === SIDE_KEY.asm;
    const f = figure({
      id: same ? 'sim.ceiling.stepi.samecode' : 'sim.ceiling.stepi', env: 'sim', group: 'RSP engine vs gdbserver',
      name: same ? 'stepi, same code (assembly)' : 'stepi (gdbserver steps C)',
      ours, ceiling: measure(SIDE_TEXT[key], 'steps/s', rate(r.ms[key])),
      notes: [
        `packets gdb sends per stepi (over 20): ours ${r.packetsPerStep.ours.toFixed(1)}, gdbserver ${r.packetsPerStep[key].toFixed(1)}`,
        `CPU ms per stepi: our stub's process ${r.cpu.ours.server.toFixed(3)} (the bench's gdb/MI driver included), gdbserver ${r.cpu[key].server.toFixed(3)}`,
      ],
    });
    f.target = judgeStepiVsGdbserver(f);
    out.push(f);
  }
  return out;
}
