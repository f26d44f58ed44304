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
import {
  HOST, alternatingDumps, attachTimes, cliTimes, connect, continueStops, defineCommands, dumpOnce, dumpTimes, stepiTimes, stubMemoryPath, tracePackets, GdbStop,
} from './gdbFigures';
import {
  MemPathName, PATH_NAME, comparePaths, directAttach, directBacktrace, directContext, directRawSteps, directRead, directThreads, guestStops, guestSteps, rawAttach,
} from './direct';
import { directPathFigures, gdbPathFigures } from './paths';
import { CeilingResult, runCeiling } from './ceiling';
import { encodeCosts, miBaseline, roundTrips, simSpeed } from './profile';
import { PACKET_SIZE } from '../src/gx/reply';
import { DumpProfile, Figure, Results, figure, measure, rate, throughput } from './model';
import { procCpuMs, selfCpuMs, summarize } from './stats';
import { judgeCeiling, judgeRead, judgeStepi, judgeStopLatency } from './targets';

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
  const server = new GdbServer(xc, DOMID, { host: HOST, port: 0 });
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

/** The last int3 trap time in [from, to], if any. */
function lastIn(times: readonly number[], from: number, to = Infinity): number | undefined {
  for (let i = times.length - 1; i >= 0; i--) {
    const t = times[i];
    if (t > to) continue;
    return t >= from ? t : undefined;
  }
  return undefined;
}

function stopLatencies(stops: GdbStop[], int3: readonly number[]): { lat: number[]; totals: number[]; queued: number } {
  const lat: number[] = [];
  const totals: number[] = [];
  let queued = 0;
  for (const s of stops) {
    const trap = lastIn(int3, s.sent, s.stopped);
    if (trap === undefined) {
      queued++;
      continue;
    }
    lat.push(s.stopped - trap);
    totals.push(s.totalMs);
  }
  return { lat, totals, queued };
}

function countFrames(bt: string): number {
  return bt.split('\n').filter((l) => /^#\d+/.test(l)).length;
}

export async function runSimSuite(cfg: SimConfig, res: Results): Promise<void> {
  const { runs, readRuns, log } = cfg;
  const figs: Figure[] = res.figures;
  const prof = res.profile;
  const readRunsFor = (b: number) => (b >= 4 * MiB ? readRuns : runs);

  // ---- the ceiling: Debian's gdbserver on a local process ----
  let ceil: CeilingResult | undefined;
  if (cfg.ceiling) {
    try {
      log('ceiling: gdbserver on a local process');
      ceil = await runCeiling({ bytes: cfg.sizes, runs, readRuns: readRunsFor, log });
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
    const direct: Record<string, number[]> = {};
    // Direct reads are cheap: more runs, for a steadier median.
    const directRuns = Math.max(20, runs);
    for (const b of cfg.sizes) direct[`read${b}`] = directRead(s.xc, DOMID, dm, b, MiB, directRuns);
    direct.read64k = directRead(s.xc, DOMID, dm, 16 * MiB, 64 * 1024, directRuns);
    s.xc.unpauseDomain(DOMID);
    const hcUs = (name: string, fn: () => void) => {
      const t = directTimes(fn, 200);
      prof.hypercallsUs[`sim: ${name}`] = round3(t * 1000);
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
    let directStops;
    try {
      s.trace.reset();

      direct.step = await guestSteps(g, 0, true, runs);

      countDomctls(res, s.trace, 'sim direct: Guest.resume step', runs + 1);
      s.trace.reset();

      directStops = await guestStops(g, tick, runs, (since) => lastIn(s.int3, since));

      countDomctls(res, s.trace, 'sim direct: Guest continue to a breakpoint (incl. step over)', runs + 1);
      direct.context = directContext(s.xc, DOMID, g.vcpus()[0], runs);
    } finally {
      g.detach();
    }
    const undo = rawAttach(s.xc, DOMID);
    try {
      s.trace.reset();

      direct.rawStep = await directRawSteps(s.xc, DOMID, 0, cfg.width, runs);

      countDomctls(res, s.trace, 'sim direct: raw step', runs + 1);
    } finally {
      undo();
    }
    direct.attach = directAttach(s.xc, DOMID, runs);

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
    log('sim: attach through gdb');
    s.trace.reset();

    const attach = await attachTimes(s.port, s.image, runs);

    countDomctls(res, s.trace, 'sim gdb: attach (connect + detach)', runs + 1);
    const gdb = new MiGdb([s.image]);
    try {
      await gdb.setup();
      await defineCommands(gdb);
      await connect(gdb, s.port);
      // gdb reads what the guest has there (the debugger's view equals the guest's).
      const want = s.sim.readVirt(DOMID, dm + 0x100000n, 4096);
      const got = await dumpOnce(gdb, dm + 0x100000n, 4096);
      if (!want.equals(pattern(0x101000).subarray(0x100000))) throw new Error('the bench pattern is not in guest memory');
      if (!got.equals(want)) throw new Error('the gdb dump differs from guest memory');
      // The figures below are the default path's: the page walk.
      const defPath = await stubMemoryPath(gdb);
      if (defPath !== PATH_NAME.pagewalk) throw new Error(`the stub reads through ${defPath ?? '(monitor xen does not say)'}, not the page walk`);

      const dumps: Record<string, number[]> = {};
      for (const b of cfg.sizes) {
        log(`sim: dump ${b / MiB} MiB through gdb`);
        dumps[b] = await profiledDumps(gdb, s.trace, dm, b, readRunsFor(b), prof.dumps);
      }
      prof.packets['sim: dump 1 MiB'] = await tracePackets(gdb, () => gdb.console(`dump binary memory /dev/null 0x${dm.toString(16)} 0x${(dm + BigInt(MiB)).toString(16)}`));

      log('sim: continue to a breakpoint through gdb');
      s.trace.reset();

      const stops = await continueStops(gdb, 'demo_tick', runs);

      countDomctls(res, s.trace, 'sim gdb: continue to a breakpoint', runs + 1);
      // One continue from the breakpoint, as the timed ones (the first lands on it).
      await continueStops(gdb, 'demo_tick', 0);
      prof.packets['sim: continue to a breakpoint'] = await tracePackets(gdb, () => continueStops(gdb, 'demo_tick', 0));
      log('sim: stepi, registers, backtrace through gdb');
      s.trace.reset();

      const stepi = await stepiTimes(gdb, runs);

      countDomctls(res, s.trace, 'sim gdb: stepi', runs + 1);
      prof.packets['sim: stepi'] = await tracePackets(gdb, () => stepiTimes(gdb, 0));
      s.trace.reset();

      const regs = await cliTimes(gdb, 'bench-regs', runs, false);

      countDomctls(res, s.trace, 'sim gdb: info registers', runs + 1);
      prof.packets['sim: info registers (after a cache flush)'] = await tracePackets(gdb, () => cliTimes(gdb, 'bench-regs', 0, false));
      s.trace.reset();

      const bt = await cliTimes(gdb, 'bench-bt', runs, false);

      countDomctls(res, s.trace, 'sim gdb: bt', runs + 1);
      prof.packets['sim: bt (after a cache flush)'] = await tracePackets(gdb, () => cliTimes(gdb, 'bench-bt', 0, false));
      const frames = Math.max(1, countFrames(bt.output));
      const rt = await roundTrips(gdb, runs);
      const base = await miBaseline(gdb, runs);
      prof.roundTripMs['sim: maint packet qC (one round trip)'] = round3(summarize(rt).median);
      prof.roundTripMs['gdb/MI command without a packet (echo)'] = round3(summarize(base).median);
      await gdb.cmd('-target-detach', { strict: false });

      // -- the same dumps through the default stub and one started with --memory gdbsx, alternating --
      log('sim: dumps through gdb, stubs with --memory pagewalk and --memory gdbsx');
      res.paths = [...(res.paths ?? []), ...gdbPathFigures('sim', await pathDumps(s, dm, cfg.sizes, readRunsFor), cfg.sizes, '')];

      // the bt limit needs a stopped VCPU with the same frames: measure with the guest paused
      s.xc.pauseDomain(DOMID);
      direct.bt = directBacktrace(s.xc, DOMID, 0, cfg.width, frames, 64, runs);
      s.xc.unpauseDomain(DOMID);

      // ---- figures ----
      for (const b of cfg.sizes) {
        const ours = measure(`dump binary memory, ${b / MiB} MiB, gdb -> stub`, 'MiB/s', throughput(b, dumps[b]));
        const limit = measure(`gdbsx_guestmemio in 1 MiB calls`, 'MiB/s', throughput(b, direct[`read${b}`]));
        const ceiling = ceil ? measure('gdbserver, local process', 'MiB/s', throughput(b, ceil.read[String(b)])) : undefined;
        const f = figure({ id: `sim.read.${b / MiB}MiB`, env: 'sim', group: 'Bulk memory read', name: `${b / MiB} MiB`, ours, limit, ceiling });
        f.target = judgeRead(f, 'indicative');
        figs.push(f);
        if (ceiling) {
          const fc = figure({ id: `sim.ceiling.read.${b / MiB}MiB`, env: 'sim', group: 'RSP engine vs gdbserver', name: `read ${b / MiB} MiB`, ours, ceiling });
          fc.target = judgeCeiling(fc);
          figs.push(fc);
        }
      }
      {
        const f = figure({
          id: 'sim.stepi', env: 'sim', group: 'Single-step', name: 'stepi',
          ours: measure('stepi, gdb -> stub (vCont;s:1;c)', 'steps/s', rate(stepi)),
          limit: measure('Guest.resume({step}) with the same plan', 'steps/s', rate(direct.step)),
          ceiling: ceil ? measure('gdbserver, local process', 'steps/s', rate(ceil.stepiMs)) : undefined,
        });
        f.target = judgeStepi(f, 'indicative');
        figs.push(f);
        figs.push(figure({
          id: 'sim.stepi.raw', env: 'sim', group: 'Single-step', name: 'stepi vs raw domctls',
          ours: measure('stepi, gdb -> stub', 'steps/s', rate(stepi)),
          limit: measure('raw domctls: getctx, set TF, setctx, unpause, wait, domstatus, getctx, clear TF, setctx', 'steps/s', rate(direct.rawStep)),
        }));
      }
      {
        const l = stopLatencies(stops, s.int3);
        const dl = directStops.filter((x) => x.trapToStopMs !== undefined).map((x) => x.trapToStopMs as number);
        const f = figure({
          id: 'sim.stop.latency', env: 'sim', group: 'Stop latency', name: 'breakpoint hit -> *stopped',
          ours: measure('int3 trap event -> MI *stopped', 'ms', l.lat),
          limit: measure('int3 trap event -> Guest.resume() answers', 'ms', dl),
          notes: l.queued ? [`${l.queued} of ${stops.length} stops were earlier simultaneous hits answered without running (not counted)`] : [],
        });
        f.target = judgeStopLatency(f, 'indicative', 'trap');
        figs.push(f);
        const dTotals = directStops.filter((x) => !x.queued).map((x) => x.totalMs);
        figs.push(figure({
          id: 'sim.stop.roundtrip', env: 'sim', group: 'Stop latency', name: 'continue -> breakpoint (round trip)',
          ours: measure('-exec-continue -> *stopped (incl. step off the breakpoint)', 'ms', l.totals),
          limit: measure('Guest: step over + insert + continue until the hit', 'ms', dTotals),
          ceiling: ceil ? measure('gdbserver, local process', 'ms', ceil.stopMs) : undefined,
        }));
      }
      figs.push(figure({
        id: 'sim.regs', env: 'sim', group: 'Register / memory round trips', name: 'info registers',
        ours: measure('flush register cache + info registers', 'ms', regs.ms),
        limit: measure('getvcpucontext', 'ms', direct.context),
        ceiling: ceil ? measure('gdbserver, local process', 'ms', ceil.infoRegistersMs) : undefined,
      }));
      figs.push(figure({
        id: 'sim.bt', env: 'sim', group: 'Register / memory round trips', name: `bt (${frames} frames)`,
        ours: measure('flush caches + bt', 'ms', bt.ms),
        limit: measure(`getvcpucontext + 64 B of stack + ${frames} frame reads`, 'ms', direct.bt),
        ceiling: ceil ? measure('gdbserver, local process', 'ms', ceil.btMs) : undefined,
      }));
      figs.push(figure({
        id: 'sim.attach', env: 'sim', group: 'Attach', name: 'connect -> first prompt',
        ours: measure('-target-select remote -> ^connected', 'ms', attach),
        limit: measure('Guest.attach', 'ms', direct.attach),
        ceiling: ceil ? measure('gdbserver --attach, local process (1 run)', 'ms', ceil.attachMs) : undefined,
      }));
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
      prof.notes.push(`sim: direct reads at gdb's request size (64 KiB calls): ${summarize(throughput(16 * MiB, direct.read64k)).median.toFixed(0)} MiB/s`);
    } finally {
      gdb.kill();
    }
  } finally {
    await s.close();
  }

  // ---- scale: many VCPUs ----
  await runScale(cfg, res);
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
      s.trace.reset();

      const threads = await cliTimes(gdb, 'bench-threads', runs, false);

      countDomctls(res, s.trace, `sim ${n} VCPUs gdb: info threads`, runs + 1);
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
      const dl = dStops.filter((x) => x.trapToStopMs !== undefined).map((x) => x.trapToStopMs as number);
      const f = figure({
        id: `sim.scale.stop.latency`, env: 'sim', group: `Scale: ${n} VCPUs`, name: 'breakpoint hit -> *stopped',
        ours: measure('int3 trap event -> MI *stopped', 'ms', l.lat),
        limit: measure('int3 trap event -> Guest.resume() answers', 'ms', dl),
        notes: l.queued ? [`${l.queued} of ${stops.length} stops were earlier simultaneous hits answered without running (not counted)`] : [],
      });
      f.target = judgeStopLatency(f, 'indicative', 'trap');
      res.figures.push(f);
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

/**
 * The dumps through the default stub (the page walk) and a second one on the same
 * simulated domain started as `gdbsx --memory gdbsx` does it, alternating (see
 * alternatingDumps). Each stub's path is checked with `monitor xen`.
 */
async function pathDumps(s: SimStub, addr: bigint, sizes: number[], runsFor: (b: number) => number): Promise<Partial<Record<MemPathName, Record<string, number[]>>>> {
  const server = new GdbServer(s.xc, DOMID, { host: HOST, port: 0, memory: 'gdbsx' });
  const port = await server.listen();
  try {
    return await alternatingDumps([{ key: 'pagewalk', port: s.port }, { key: 'gdbsx', port }], s.image, addr, sizes, runsFor, PATH_ROUNDS, async (key, gdb) => {
      const p = await stubMemoryPath(gdb);
      if (p !== PATH_NAME[key as MemPathName]) throw new Error(`the stub for ${key} reads through ${p ?? '(monitor xen does not say)'}`);
      const got = await dumpOnce(gdb, addr + 0x100000n, 4096);
      if (!got.equals(pattern(0x101000).subarray(0x100000))) throw new Error(`the gdb dump through the ${key} stub differs from guest memory`);
    });
  } finally {
    await server.close();
  }
}

/** Hypercalls per operation, from the tracing wrapper (counts since its last reset). */
function countDomctls(res: Results, trace: TracingHypercalls, label: string, ops: number): void {
  res.profile.domctls[label] = trace.perOp(ops);
}

/** Mean µs-resolution cost of a synchronous call: ms per call over `n` calls. */
function directTimes(fn: () => void, n: number): number {
  fn();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) fn();
  return (performance.now() - t0) / n;
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

function roundAll(r: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(r).map(([k, v]) => [k, round3(v)]));
}
