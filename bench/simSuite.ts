// The figures on the simulated Xen: our stub in this process (as test/e2e does),
// the real gdb, the limit measured with the same simulator below the protocol, the
// gdbserver ceiling, and a guest with many VCPUs.
import { startSimDemo, demoImage } from '../src/simDemo';
import { XenControl } from '../src/xg/xenctl';
import { GdbServer } from '../src/gx/server';
import { Guest } from '../src/vcpu/guest';
import type { SimXen } from '../src/xg/sim';
import { TracingHypercalls } from './trace';
import { MiGdb } from '../test/support/mi';
import { HOST, cliTimes, connect, continueStops, defineCommands, dumpOnce, dumpTimes, stubMemoryPath, tracePackets } from './gdbFigures';
import {
  PATH_NAME, comparePaths, directAttach, directBacktrace, directContext, directRawSteps, directRead, directThreads, guestStops, guestSteps, rawAttach,
} from './direct';
import { directPathFigures, gdbPathFigures } from './paths';
import { CeilingResult, runCeiling } from './ceiling';
import { encodeCosts, miBaseline, simSpeed } from './profile';
import { PACKET_SIZE } from '../src/gx/reply';
import { DumpProfile, Figure, Results, figure, measure, throughput } from './model';
import { perCallUs, procCpuMs, round3, selfCpuMs, summarize } from './stats';
import { alternateStepi, stepiSides, stepiVsFigures } from './stepiVs';
import { Limits, lastIn, sharedFigures, stopLatencies, trapLatencyFigure } from './catalogue';
import { ALL_PARTS, SessionEnv, gdbSession, memoryPathDumps, runsFor } from './gdbSession';

export interface SimConfig {
  runs: number;
  readRuns: number;
  sizes: number[];
  width: 32 | 64;
  scaleVcpus: number;
  ceiling: boolean;
  log: (m: string) => void;
}

const MiB = 1 << 20;
const DOMID = 1;
/** Blocks the two memory paths' gdb dumps alternate in. */
const PATH_ROUNDS = 3;
/** Guest-physical start of the bulk reads. */
const READ_PHYS = 32 * MiB;

/** Byte i = bits 13..20 of i * 2654435761: what bench/ceiling.ts's program fills its buffer with. */
export function pattern(n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (Math.imul(i, 2654435761 | 0) >>> 13) & 0xff;
  return b;
}

interface SimStub {
  sim: SimXen;
  trace: TracingHypercalls;
  xc: XenControl;
  server: GdbServer;
  port: number;
  image: string;
  /** Times of int3 traps of our domain (the simulator's trap events). */
  int3: number[];
  close(): Promise<void>;
}

export async function startSim(vcpus: number, width: 32 | 64): Promise<SimStub> {
  const demo = startSimDemo({ domid: DOMID, vcpus, width, type: 'pv' });
  const trace = new TracingHypercalls(demo.hc);
  const xc = new XenControl(trace);
  // No polling after replies: this process also reads gdb's MI output, which polling
  // would catch sooner for our side only. The stepi against gdbserver runs the stub as
  // shipped, in its own process (stepiVs.ts).
  const server = new GdbServer(xc, DOMID, { host: HOST, port: 0, pollUs: 0 });
  const port = await server.listen();
  const int3: number[] = [];
  const unsub = demo.sim.onStateChange((e) => {
    if (e.type === 'trap' && e.domid === DOMID && e.kind === 'int3') {
      int3.push(performance.now());
      if (int3.length > 100000) int3.splice(0, 50000);
    }
  });
  return {
    sim: demo.sim, trace, xc, server, port, image: demoImage(width), int3,
    async close() {
      unsub();
      await server.close();
      demo.close();
    },
  };
}

export async function runSimSuite(cfg: SimConfig, res: Results): Promise<void> {
  const { runs, log } = cfg;
  const prof = res.profile;

  // ---- the ceiling: Debian's gdbserver on a local process ----
  let ceil: CeilingResult | undefined;
  if (cfg.ceiling) {
    try {
      log('ceiling: gdbserver on a local process');
      ceil = await runCeiling({ bytes: cfg.sizes, runs, readRuns: (b) => runsFor(cfg, b), log });
      res.host.gdbserver = ceil.version;
      if (ceil.dumpTrace) res.profile.packets['gdbserver: dump 1 MiB'] = ceil.dumpTrace;
      if (ceil.stopTrace) res.profile.packets['gdbserver: continue to a breakpoint'] = ceil.stopTrace;
      if (ceil.stepiTrace) res.profile.packets['gdbserver: stepi'] = ceil.stepiTrace;
      res.profile.roundTripMs['gdbserver: maint packet qC (one round trip)'] = round3(summarize(ceil.roundTripMs).median);
    } catch (e) {
      res.skipped.push(`gdbserver ceiling: ${(e as Error).message.split('\n')[0]}`);
      log(`ceiling skipped: ${(e as Error).message}`);
    }
  } else {
    res.skipped.push('gdbserver ceiling: turned off (BENCH_CEILING=0)');
  }

  // ---- the simulated Xen, 2 VCPUs ----
  log(`sim: ${cfg.width}-bit PV demo guest, 2 VCPUs`);
  const s = await startSim(2, cfg.width);
  const counted = <T>(label: string, fn: () => Promise<T>) => countDomctls(res, s.trace, label, runs + 1, fn);
  try {
    // Dense, non-repeating data (the ceiling's pattern), so run-length encoding helps
    // neither side: guest RAM 32..48 MiB, which the demo guest never touches.
    s.sim.writePhys(DOMID, READ_PHYS, pattern(Math.max(...cfg.sizes)));
    const dm = s.sim.layout(DOMID).directMap + BigInt(READ_PHYS);
    const tick = s.sim.symbol(DOMID, 'demo_tick');
    const speed = simSpeed(2, cfg.width);
    prof.sim = [{ vcpus: 2, instructionsPerSec: Math.round(speed.instructionsPerSec), sliceMs: round3(speed.sliceMs) }];

    // -- the limit, below the protocol (no gdb connected) --
    log('sim: direct (below the protocol)');
    s.xc.pauseDomain(DOMID);
    const limits: Limits = { read: {}, context: [], bt: [], attach: [] };
    // Direct reads are cheap: more runs, for a steadier median.
    const directRuns = Math.max(20, runs);
    for (const b of cfg.sizes) limits.read[b] = directRead(s.xc, DOMID, dm, b, MiB, directRuns);
    const read64k = directRead(s.xc, DOMID, dm, 16 * MiB, 64 * 1024, directRuns);
    s.xc.unpauseDomain(DOMID);
    const hcUs = (name: string, fn: () => void) => {
      prof.hypercallsUs[`sim: ${name}`] = round3(perCallUs(fn, 200));
    };
    s.xc.pauseDomain(DOMID);
    hcUs('getdomaininfo', () => s.xc.getDomainInfo(DOMID));
    hcUs('getvcpucontext', () => s.xc.getVcpuContext(DOMID, 0));
    const b8 = Buffer.alloc(8);
    const b64k = Buffer.alloc(65536);
    const b1m = Buffer.alloc(MiB);
    hcUs('guestmemio 8 bytes', () => s.xc.guestMemIo(DOMID, dm, b8, false));
    hcUs('guestmemio 64 KiB', () => s.xc.guestMemIo(DOMID, dm, b64k, false));
    hcUs('guestmemio 1 MiB', () => s.xc.guestMemIo(DOMID, dm, b1m, false));
    s.xc.unpauseDomain(DOMID);

    const g = Guest.attach(s.xc, DOMID);
    try {
      limits.step = await counted('sim direct: Guest.resume step', () => guestSteps(g, 0, true, runs));
      limits.stops = await counted('sim direct: Guest continue to a breakpoint (incl. step over)', () => guestStops(g, tick, runs, (since) => lastIn(s.int3, since)));
      limits.context = directContext(s.xc, DOMID, g.vcpus()[0], runs);
    } finally {
      g.detach();
    }
    const undo = rawAttach(s.xc, DOMID);
    try {
      limits.rawStep = await counted('sim direct: raw step', () => directRawSteps(s.xc, DOMID, 0, cfg.width, runs));
    } finally {
      undo();
    }
    limits.attach = directAttach(s.xc, DOMID, runs);

    // -- the two memory paths through Guest.readMemory, as the stub's m handler calls it --
    log('sim: direct reads, page walk vs gdbsx_guestmemio');
    for (const p of ['pagewalk', 'gdbsx'] as const) {
      // Both paths must read what is there (the pattern), not just be fast.
      const g2 = Guest.attach(s.xc, DOMID, { memory: p });
      try {
        if (g2.mem.path.name !== PATH_NAME[p]) throw new Error(`Guest.attach({memory: '${p}'}) gave ${g2.mem.path.name}`);
        if (!g2.readMemory(dm + 0x100000n, 4096, 0).equals(pattern(0x101000).subarray(0x100000))) throw new Error(`${PATH_NAME[p]}: read differs from guest memory`);
      } finally {
        g2.detach();
      }
    }
    const pathErrors: string[] = [];
    const pathReads = comparePaths(s.xc, DOMID, ['pagewalk', 'gdbsx'], {
      addr: dm, sizes: cfg.sizes, request: PACKET_SIZE / 2, runs: () => directRuns, smallAddr: tick, smallRuns: runs, trace: s.trace, width: cfg.width,
    }, pathErrors);
    if (pathErrors.length) throw new Error(`direct path reads: ${pathErrors.join('; ')}`);
    res.paths = [...(res.paths ?? []), ...directPathFigures('sim', pathReads, cfg.sizes, PACKET_SIZE / 2, 'demo_tick', '', res)];

    // -- through gdb --
    const env = simEnv(s, cfg, res, dm, ceil, counted);
    const ours = await gdbSession(env, ALL_PARTS, res);

    // -- the same dumps through the default stub and one started with --memory gdbsx, alternating --
    log('sim: dumps through gdb, stubs with --memory pagewalk and --memory gdbsx');
    const server = new GdbServer(s.xc, DOMID, { host: HOST, port: 0, memory: 'gdbsx' });
    try {
      const dumps = await memoryPathDumps(env, dm, await server.listen(), cfg.sizes, PATH_ROUNDS, true, async (key, gdb) => {
        if (!(await dumpOnce(gdb, dm + 0x100000n, 4096)).equals(pattern(0x101000).subarray(0x100000))) throw new Error(`the gdb dump through the ${key} stub differs from guest memory`);
      });
      res.paths = [...(res.paths ?? []), ...gdbPathFigures('sim', dumps, cfg.sizes, '')];
    } finally {
      await server.close();
    }

    // -- stepi against gdbserver, alternating in one run (stepiVs.ts) --
    if (cfg.ceiling && cfg.width === 64) res.figures.push(...(await stepiAgainstGdbserver(log, res)));

    // the bt limit needs a stopped VCPU with the same frames: measure with the guest paused
    s.xc.pauseDomain(DOMID);
    limits.bt = directBacktrace(s.xc, DOMID, 0, cfg.width, ours.frames, 64, runs);
    s.xc.unpauseDomain(DOMID);

    // ---- figures ----
    res.figures.push(...sharedFigures(env, cfg.sizes, ours, limits));
    prof.dumps.forEach((d) => {
      if (d.env !== 'sim' || !ceil) return;
      const ms = summarize(ceil.read[String(d.bytes)] ?? []).median;
      const req = ceil.dumpTrace?.largestRead || 0x23ff;
      const packets = Math.ceil(d.bytes / req);
      const cpu = ceil.readCpu[String(d.bytes)];
      d.gdbserver = { ms: round3(ms), packets, requestBytes: req, perPacketMs: round3(ms / packets), gdbCpuMs: cpu?.gdb, gdbserverCpuMs: cpu?.gdbserver };
    });
    Object.assign(prof.encodeUsPer64KiB, roundAll(encodeCosts(pattern(65536), 'dense data')));
    Object.assign(prof.encodeUsPer64KiB, roundAll(encodeCosts(Buffer.alloc(65536), 'zeros')));
    for (const d of prof.dumps) {
      if (d.env !== 'sim') continue;
      const enc = prof.encodeUsPer64KiB['dense data: m reply path (hexBlocksInto + closeFrame, reused buffer)'] ?? 0;
      d.encodeMsPerPacket = round3((enc / 1000) * (d.requestBytes / 65536));
      d.restMsPerPacket = round3(d.perPacketMs - (d.hypercallMsPerPacket ?? 0) - d.encodeMsPerPacket);
    }
    prof.notes.push(`sim: direct reads at gdb's request size (64 KiB calls): ${summarize(throughput(16 * MiB, read64k)).median.toFixed(0)} MiB/s`);
  } finally {
    await s.close();
  }

  // ---- scale: many VCPUs ----
  await runScale(cfg, res);
}

/** Blocks of stepi alternating between our stub and gdbserver on two programs (stepiVs.ts). */
const STEPI_VS = { rounds: 7, steps: 300, continues: 20 };

/** On a 64-bit sim only: gdbserver's programs are x86-64. */
async function stepiAgainstGdbserver(log: (m: string) => void, res: Results): Promise<Figure[]> {
  log('sim: stepi alternating with gdbserver (C, and the same in assembly), our stub in its own process');
  const sv = await stepiSides(['c', 'asm'], 64, log);
  try {
    const r = await alternateStepi(sv.sides, STEPI_VS.rounds, STEPI_VS.steps, STEPI_VS.continues, log);
    for (const [key, t] of Object.entries(r.packets)) res.profile.packets[`stepi, alternating: ${key}`] = t;
    return stepiVsFigures(r, 'stepi, gdb -> `gdbsx --sim` (its own process)');
  } finally {
    await sv.close();
  }
}

/**
 * The catalogue's environment on the simulator: gdb -> our stub in this process, the
 * limit in this process, gdbserver beside it; every VCPU runs in the continues, and the
 * simulator's int3 trap events give the stop latency. A failure ends the run, and each
 * timed part's hypercalls are counted.
 */
function simEnv(s: SimStub, cfg: SimConfig, res: Results, dm: bigint, ceiling: CeilingResult | undefined, counted: SessionEnv['counted']): SessionEnv {
  return {
    env: 'sim', tag: 'sim', guest: '', via: 'gdb -> stub', directWhere: '', detail: { stepi: 'vCont;s:1;c' }, applies: 'indicative', ceiling,
    breakpoint: { name: 'demo_tick', location: 'demo_tick' }, trapTimes: s.int3,
    port: s.port, symbols: s.image, runs: cfg.runs, readRuns: cfg.readRuns, stopTimeoutMs: 60000, packetsOfRegisters: true, log: cfg.log,
    attempt: (_what, fn) => fn(),
    counted: (label, fn) => counted(`sim gdb: ${label}`, fn),
    read: {
      addr: dm, sizes: cfg.sizes,
      async check(gdb) {
        // gdb reads what the guest has there (the debugger's view equals the guest's).
        const want = s.sim.readVirt(DOMID, dm + 0x100000n, 4096);
        const got = await dumpOnce(gdb, dm + 0x100000n, 4096);
        if (!want.equals(pattern(0x101000).subarray(0x100000))) throw new Error('the bench pattern is not in guest memory');
        if (!got.equals(want)) throw new Error('the gdb dump differs from guest memory');
        // The figures are the default path's: the page walk.
        const defPath = await stubMemoryPath(gdb);
        if (defPath !== PATH_NAME.pagewalk) throw new Error(`the stub reads through ${defPath ?? '(monitor xen does not say)'}, not the page walk`);
      },
      dumps: (gdb, b, runs) => profiledDumps(gdb, s.trace, dm, b, runs, res.profile.dumps),
    },
    async beforeDetach(gdb) {
      res.profile.roundTripMs['gdb/MI command without a packet (echo)'] = round3(summarize(await miBaseline(gdb, cfg.runs)).median);
    },
  };
}

async function runScale(cfg: SimConfig, res: Results): Promise<void> {
  const { runs, log } = cfg;
  const n = cfg.scaleVcpus;
  log(`sim: scale, ${n} VCPUs`);
  const s = await startSim(n, cfg.width);
  try {
    const tick = s.sim.symbol(DOMID, 'demo_tick');
    const speed = simSpeed(n, cfg.width);
    res.profile.sim?.push({ vcpus: n, instructionsPerSec: Math.round(speed.instructionsPerSec), sliceMs: round3(speed.sliceMs) });
    s.xc.pauseDomain(DOMID);
    const dThreads = directThreads(s.xc, DOMID, runs);
    s.xc.unpauseDomain(DOMID);
    const g = Guest.attach(s.xc, DOMID);
    let dStops;
    try {
      dStops = await guestStops(g, tick, runs, (since) => lastIn(s.int3, since));
    } finally {
      g.detach();
    }
    const gdb = new MiGdb([s.image]);
    try {
      await gdb.setup();
      await defineCommands(gdb);
      const attach = [await connect(gdb, s.port)];
      const threads = await countDomctls(res, s.trace, `sim ${n} VCPUs gdb: info threads`, runs + 1, () => cliTimes(gdb, 'bench-threads', runs, false));
      const shown = threads.output.split('\n').filter((l) => /^\*?\s+\d+\s+Thread/.test(l)).length;
      const warn = (await gdb.console('info threads')).log.trim();
      res.profile.packets[`sim ${n} VCPUs: info threads (after a cache flush)`] = await tracePackets(gdb, () => cliTimes(gdb, 'bench-threads', 0, false));
      const stops = await continueStops(gdb, 'demo_tick', runs);
      // One continue from the breakpoint, as the timed ones (the first lands on it).
      await continueStops(gdb, 'demo_tick', 0);
      res.profile.packets[`sim ${n} VCPUs: continue to a breakpoint`] = await tracePackets(gdb, () => continueStops(gdb, 'demo_tick', 0));
      await gdb.cmd('-target-detach', { strict: false });
      const l = stopLatencies(stops, s.int3);
      res.figures.push(figure({
        id: `sim.scale.threads`, env: 'sim', group: `Scale: ${n} VCPUs`, name: `info threads (${shown} threads)`,
        ours: measure('flush caches + info threads', 'ms', threads.ms),
        limit: measure(`getdomaininfo + ${n} x getvcpucontext`, 'ms', dThreads),
        notes: shown < n ? [`gdb shows only ${shown} of ${n} threads${warn ? ` (gdb: "${warn.split('\n')[0]}")` : ''}`] : [],
      }));
      res.figures.push(trapLatencyFigure({ env: 'sim', applies: 'indicative' }, 'sim.scale.stop.latency', `Scale: ${n} VCPUs`, stops, s.int3, dStops));
      res.figures.push(figure({
        id: `sim.scale.stop.roundtrip`, env: 'sim', group: `Scale: ${n} VCPUs`, name: 'continue -> breakpoint (round trip)',
        ours: measure('-exec-continue -> *stopped', 'ms', l.totals),
        limit: measure('Guest: step over + continue until the hit', 'ms', dStops.filter((x) => !x.queued).map((x) => x.totalMs)),
      }));
      res.figures.push(figure({
        id: `sim.scale.attach`, env: 'sim', group: `Scale: ${n} VCPUs`, name: 'connect -> first prompt (1 run)',
        ours: measure('-target-select remote -> ^connected', 'ms', attach),
      }));
    } finally {
      gdb.kill();
    }
  } finally {
    await s.close();
  }
}


/**
 * Timed dumps of [addr, addr+bytes) through `gdb`, with their profile row: the stub's
 * memory path (from the hypercalls it made), the hypercalls' share, the CPU time.
 */
async function profiledDumps(gdb: MiGdb, trace: TracingHypercalls, addr: bigint, bytes: number, runs: number, into: DumpProfile[]): Promise<number[]> {
  trace.reset();
  const g0 = procCpuMs(gdb.pid);
  const c0 = selfCpuMs();
  const times = await dumpTimes(gdb, addr, bytes, runs);
  const gdbCpu = procCpuMs(gdb.pid) - g0;
  const selfCpu = selfCpuMs() - c0;
  const mio = trace.stats.get('gdbsx_guestmemio');
  // The page walk maps frames (data and page tables) instead of calling the domctl.
  const maps = trace.stats.get('mapForeign');
  const nDumps = runs + 1;
  const packets = Math.ceil(bytes / Math.min(bytes, PACKET_SIZE / 2)); // gdb's m requests (each may be several hypercalls)
  const ms = summarize(times).median;
  const hcMs = ((mio?.ms ?? 0) + (maps?.ms ?? 0)) / nDumps;
  into.push({
    env: 'sim', path: maps?.count ? PATH_NAME.pagewalk : PATH_NAME.gdbsx, bytes, ms: round3(ms), packets, requestBytes: packets ? Math.round(bytes / packets) : 0,
    perPacketMs: round3(ms / packets), hypercallMsPerPacket: round3(hcMs / packets),
    gdbCpuMs: round3(gdbCpu / nDumps), stubCpuMs: round3(selfCpu / nDumps),
  });
  return times;
}

/** Hypercalls per operation of `fn` (`ops` operations), from the tracing wrapper, as `label`. */
async function countDomctls<T>(res: Results, trace: TracingHypercalls, label: string, ops: number, fn: () => Promise<T>): Promise<T> {
  trace.reset();
  const r = await fn();
  res.profile.domctls[label] = trace.perOp(ops);
  return r;
}

function roundAll(r: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(r).map(([k, v]) => [k, round3(v)]));
}
