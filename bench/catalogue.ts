// The figure catalogue: what each gdb figure that the sim and lab suites share is (what is
// measured through gdb, its limit below the protocol, the ceiling or the reference beside
// it, its notes and the target it is judged on). The environment (FigureEnv) says what
// differs: how gdb reaches the stub, where the limit ran, the guest's name, gdbserver on
// the simulator, Xen's own gdbsx in the lab.
import type { CeilingResult } from './ceiling';
import type { StopSample } from './direct';
import type { GdbStop } from './gdbFigures';
import { Figure, Measure, Target, Unit, figure, measure, rate, throughput } from './model';
import { REF_NAME, RefKey, RefOutcome } from './reference';
import { judgeCeiling, judgeRead, judgeReference, judgeStepi, judgeStopLatency } from './targets';

const MiB = 1 << 20;

/** Where the figures are taken, and what of them differs there. */
export interface FigureEnv {
  env: 'sim' | 'lab';
  /** The guest, in figure names (lab: 'pv' -> "stepi (pv)"); '' on the simulator's one guest. */
  guest: string;
  /** How gdb reaches the stub, in our measures' text ("gdb -> stub"). */
  via: string;
  /** Where the limit ran, in its text ("in dom0"); '' in the benchmark's own process. */
  directWhere: string;
  /** More words on our measure that one environment's rows carry (sim: stepi's packets; lab: attach's forward). */
  detail: { stepi?: string; attach?: string };
  /** The targets are official where the issue sets them (the lab), indicative elsewhere. */
  applies: Target['applies'];
  /** Debian's gdbserver on a local process, through the same gdb commands (sim). */
  ceiling?: CeilingResult;
  /** Xen's own gdbsx on the same guest in the same boot (lab), when it ran. */
  reference?: RefOutcome;
  /** The only VCPU that runs in the continues (gdb's scheduler-locking on); unset: every VCPU. */
  stopVcpu?: number;
  /** The function the continues stop at: its name, and gdb's location for it. */
  breakpoint?: { name: string; location: string };
  /** The hypervisor's int3 trap events (ms, now()), where it shows them (the simulator). */
  trapTimes?: readonly number[];
}

/** What the gdb session measured: ms per run (dumps by size in bytes). */
export interface GdbRuns {
  dumps: Record<string, number[]>;
  stops: GdbStop[];
  stepi: number[];
  regs: number[];
  bt: number[];
  /** Frames gdb's bt showed (the bt limit reads as many). */
  frames: number;
  attach: number[];
}

/** The same work below the protocol, ms per run (reads by size in bytes); what is missing has no limit. */
export interface Limits {
  read: Record<string, number[]>;
  step?: number[];
  rawStep?: number[];
  stops?: StopSample[];
  context: number[];
  bt: number[];
  attach: number[];
}

export function emptyRuns(): GdbRuns {
  return { dumps: {}, stops: [], stepi: [], regs: [], bt: [], frames: 3, attach: [] };
}

const named = (e: FigureEnv, name: string) => (e.guest ? `${name} (${e.guest})` : name);
const detail = (d: string | undefined) => (d ? ` (${d})` : '');

/** The limit's cell: the same work done directly, where it was measured. */
export function limit(e: FigureEnv, what: string, unit: Unit, samples: number[] | undefined): Measure | undefined {
  return samples?.length ? measure(e.directWhere ? `${what} (${e.directWhere})` : what, unit, samples) : undefined;
}

function ceiling(e: FigureEnv, unit: Unit, samples: (c: CeilingResult) => number[], what = 'gdbserver, local process'): Measure | undefined {
  return e.ceiling ? measure(what, unit, samples(e.ceiling)) : undefined;
}

/** The reference's cell for a figure: its measure, or why it has none, and its notes. */
export function reference(e: FigureEnv, key: RefKey, what: string, unit: Unit = 'ms', conv: (ms: number[]) => number[] = (ms) => ms): { reference?: Measure; referenceNote?: string; notes: string[] } {
  const r = e.reference?.results[key];
  if (!r) return { notes: [] };
  const notes = r.notes.map((n) => `${REF_NAME}: ${n}`);
  if (r.ms?.length) return { reference: measure(`${what}, host gdb -> ${REF_NAME} in dom0`, unit, conv(r.ms)), notes };
  return { referenceNote: r.cannot ?? 'not measured', notes };
}

/** Bulk reads, per size that gdb dumped; with the ceiling, the RSP engine against gdbserver's too. */
export function readFigures(e: FigureEnv, sizes: number[], dumps: Record<string, number[]>, limits?: Limits): Figure[] {
  const out: Figure[] = [];
  for (const b of sizes) {
    if (!dumps[b]) continue;
    const n = b / MiB;
    const ours = measure(`dump binary memory, ${n} MiB, ${e.via}`, 'MiB/s', throughput(b, dumps[b]));
    const lim = limits?.read[String(b)];
    const f = figure({
      id: `${e.env}.read.${n}MiB`, env: e.env, group: 'Bulk memory read', name: named(e, `${n} MiB`), ours,
      limit: limit(e, 'gdbsx_guestmemio in 1 MiB calls', 'MiB/s', lim && throughput(b, lim)),
      ceiling: ceiling(e, 'MiB/s', (c) => throughput(b, c.read[String(b)])),
      ...reference(e, b === MiB ? 'read.1MiB' : 'read.16MiB', `dump binary memory, ${n} MiB`, 'MiB/s', (ms) => throughput(b, ms)),
    });
    f.target = judgeRead(f, e.applies);
    if (b === MiB && e.reference) f.referenceTarget = judgeReference(f, 'read');
    out.push(f);
    if (f.ceiling) {
      const fc = figure({ id: `${e.env}.ceiling.read.${n}MiB`, env: e.env, group: 'RSP engine vs gdbserver', name: `read ${n} MiB`, ours, ceiling: f.ceiling });
      fc.target = judgeCeiling(fc);
      out.push(fc);
    }
  }
  return out;
}

/** stepi against Guest.resume's same plan (the target), and against the raw domctl sequence. */
export function stepiFigures(e: FigureEnv, stepi: number[], limits?: Limits): Figure[] {
  if (!stepi.length) return [];
  const ref = () => reference(e, 'stepi', 'stepi', 'steps/s', rate);
  const f = figure({
    id: `${e.env}.stepi`, env: e.env, group: 'Single-step', name: named(e, 'stepi'),
    ours: measure(`stepi, ${e.via}${detail(e.detail.stepi)}`, 'steps/s', rate(stepi)),
    limit: limit(e, 'Guest.resume({step}) with the same plan', 'steps/s', limits?.step && rate(limits.step)),
    ceiling: ceiling(e, 'steps/s', (c) => rate(c.stepiMs)),
    ...ref(),
  });
  f.target = judgeStepi(f, e.applies);
  if (e.reference) f.referenceTarget = judgeReference(f, 'stepi');
  if (!limits?.rawStep) return [f];
  return [f, figure({
    id: `${e.env}.stepi.raw`, env: e.env, group: 'Single-step', name: named(e, 'stepi vs raw domctls'),
    ours: measure(`stepi, ${e.via}`, 'steps/s', rate(stepi)),
    limit: limit(e, 'raw domctls: getctx, set TF, setctx, unpause, wait, domstatus, getctx, clear TF, setctx', 'steps/s', rate(limits.rawStep)),
    ...ref(),
  })];
}

/** The last trap time in [from, to], if any. */
export function lastIn(times: readonly number[], from: number, to = Infinity): number | undefined {
  for (let i = times.length - 1; i >= 0; i--) {
    const t = times[i];
    if (t > to) continue;
    return t >= from ? t : undefined;
  }
  return undefined;
}

/**
 * Each stop's trap (the last int3 trap between the continue and *stopped): trap ->
 * *stopped, and the round trips of the stops that had one. A stop with none was an
 * earlier simultaneous hit, reported without running the guest (queued).
 */
export function stopLatencies(stops: GdbStop[], traps: readonly number[]): { lat: number[]; totals: number[]; queued: number } {
  const lat: number[] = [];
  const totals: number[] = [];
  let queued = 0;
  for (const s of stops) {
    const trap = lastIn(traps, s.sent, s.stopped);
    if (trap === undefined) {
      queued++;
      continue;
    }
    lat.push(s.stopped - trap);
    totals.push(s.totalMs);
  }
  return { lat, totals, queued };
}

/** Stop latency where the hypervisor shows its trap: trap event -> *stopped, judged on itself. */
export function trapLatencyFigure(e: Pick<FigureEnv, 'env' | 'applies'>, id: string, group: string, stops: GdbStop[], traps: readonly number[], direct: StopSample[]): Figure {
  const l = stopLatencies(stops, traps);
  const f = figure({
    id, env: e.env, group, name: 'breakpoint hit -> *stopped',
    ours: measure('int3 trap event -> MI *stopped', 'ms', l.lat),
    limit: measure('int3 trap event -> Guest.resume() answers', 'ms', direct.filter((x) => x.trapToStopMs !== undefined).map((x) => x.trapToStopMs as number)),
    notes: l.queued ? [`${l.queued} of ${stops.length} stops were earlier simultaneous hits answered without running (not counted)`] : [],
  });
  f.target = judgeStopLatency(f, e.applies, 'trap');
  return f;
}

/**
 * Continue to a breakpoint. Where the trap is seen (the simulator), the stop latency is
 * its own figure and the round trip stands beside it; where it is not (the lab), the round
 * trip is the stop figure, judged on its difference to the same continue done directly.
 */
export function stopFigures(e: FigureEnv, stops: GdbStop[], limits?: Limits): Figure[] {
  const bp = e.breakpoint;
  if (!stops.length || !bp) return [];
  const traps = e.trapTimes;
  const locked = e.stopVcpu !== undefined;
  const ref = reference(e, 'stop', '-exec-continue -> *stopped, scheduler-locking on');
  const f = figure({
    id: traps ? `${e.env}.stop.roundtrip` : `${e.env}.stop`, env: e.env, group: 'Stop latency',
    name: traps ? 'continue -> breakpoint (round trip)' : named(e, `continue -> breakpoint at ${bp.name}`),
    ours: measure(`-exec-continue -> *stopped (incl. step off the breakpoint)${locked ? `, scheduler-locking on (VCPU ${e.stopVcpu} runs)` : ''}`, 'ms',
      traps ? stopLatencies(stops, traps).totals : stops.map((x) => x.totalMs)),
    limit: limit(e, `Guest: step over + insert + continue ${locked ? `VCPU ${e.stopVcpu} ` : ''}until the hit`, 'ms', limits?.stops?.filter((x) => !x.queued).map((x) => x.totalMs)),
    ceiling: ceiling(e, 'ms', (c) => c.stopMs),
    ...ref,
  });
  if (traps) return [trapLatencyFigure(e, `${e.env}.stop.latency`, 'Stop latency', stops, traps, limits?.stops ?? []), f];
  f.notes = ['the trap is not visible from the host: the target is judged on the difference of the medians of the two round trips, ' +
    'which both include the guest\'s time to reach the breakpoint', ...ref.notes];
  f.target = judgeStopLatency(f, e.applies, 'difference');
  return [f];
}

/** info registers and bt, caches flushed: each against the VCPU context (and stack) read directly. */
export function registerFigures(e: FigureEnv, ours: GdbRuns, limits?: Limits): Figure[] {
  const out: Figure[] = [];
  if (ours.regs.length) {
    out.push(figure({
      id: `${e.env}.regs`, env: e.env, group: 'Register / memory round trips', name: named(e, 'info registers'),
      ours: measure('flush register cache + info registers', 'ms', ours.regs),
      limit: limit(e, 'getvcpucontext', 'ms', limits?.context),
      ceiling: ceiling(e, 'ms', (c) => c.infoRegistersMs),
      ...reference(e, 'regs', 'flush register cache + info registers'),
    }));
  }
  if (ours.bt.length) {
    const frames = ours.frames;
    out.push(figure({
      id: `${e.env}.bt`, env: e.env, group: 'Register / memory round trips', name: e.guest ? `bt, ${frames} frames (${e.guest})` : `bt (${frames} frames)`,
      ours: measure('flush caches + bt', 'ms', ours.bt),
      limit: limit(e, `getvcpucontext + 64 B of stack + ${frames} frame reads`, 'ms', limits?.bt),
      ceiling: ceiling(e, 'ms', (c) => c.btMs),
      ...reference(e, 'bt', 'flush caches + bt'),
    }));
  }
  return out;
}

/** gdb's connect against Guest.attach. */
export function attachFigure(e: FigureEnv, attach: number[], limits?: Limits): Figure[] {
  if (!attach.length) return [];
  return [figure({
    id: `${e.env}.attach`, env: e.env, group: 'Attach', name: named(e, 'connect -> first prompt'),
    ours: measure(`-target-select remote -> ^connected${detail(e.detail.attach)}`, 'ms', attach),
    limit: limit(e, 'Guest.attach', 'ms', limits?.attach),
    ceiling: ceiling(e, 'ms', (c) => c.attachMs, 'gdbserver --attach, local process (1 run)'),
    ...reference(e, 'attach', '-target-select remote -> ^connected (a fresh gdbsx per connection)'),
  })];
}

/** Every shared figure, in the report's order; `afterReads`: an environment's own read rows. */
export function sharedFigures(e: FigureEnv, sizes: number[], ours: GdbRuns, limits?: Limits, afterReads: Figure[] = []): Figure[] {
  return [
    ...readFigures(e, sizes, ours.dumps, limits), ...afterReads, ...stepiFigures(e, ours.stepi, limits),
    ...stopFigures(e, ours.stops, limits), ...registerFigures(e, ours, limits), ...attachFigure(e, ours.attach, limits),
  ];
}
