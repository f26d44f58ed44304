// The benchmark's results: figures (ours, the limit below the protocol, the
// gdbserver ceiling), targets, and the profile that explains them.
import { Summary, summarize } from './stats';
import type { PacketTrace } from './gdbFigures';

export type Unit = 'MiB/s' | 'ms' | 'µs' | 'steps/s' | 'samples/s' | '%';

export interface Measure {
  what: string;
  unit: Unit;
  samples: number[];
  stats: Summary;
}

export interface Target {
  /** The wording, e.g. "bulk reads >= 1/2 of the direct-hypercall throughput". */
  text: string;
  /** The measured value the target is judged on, e.g. "0.62 of direct". */
  value: string;
  met: boolean | null;
  /** "official" in the environment the issue names; "indicative" when applied elsewhere. */
  applies: 'official' | 'indicative';
}

export interface Figure {
  id: string;
  env: 'sim' | 'lab';
  group: string;
  name: string;
  ours: Measure;
  /** The same work below the protocol (XenControl / Guest directly). */
  limit?: Measure;
  /** Debian's gdbserver on a local process, through the same gdb commands. */
  ceiling?: Measure;
  /** Our cost over the limit's (time ratio from medians; 1 = as fast as the limit). */
  vsLimit?: number;
  /** Our cost over gdbserver's (time ratio from medians). */
  vsCeiling?: number;
  /** Xen's own gdbsx (the reference, lab): the same gdb commands on the same guest in the same boot. */
  reference?: Measure;
  /** Why the reference has no figure here (its cell says so), e.g. "cannot: ...". */
  referenceNote?: string;
  /** Our speed over the reference's: its time over ours (medians; 2 = we take half its time). */
  vsReference?: number;
  target?: Target;
  /** The goal against the reference, where the issue sets one (reads, stepi). */
  referenceTarget?: Target;
  notes: string[];
}

/**
 * The two ways the stub reaches guest memory side by side: our page walk over
 * foreign-mapped frames and Xen's gdbsx_guestmemio, for the same reads.
 */
export interface PathFigure {
  id: string;
  env: 'sim' | 'lab';
  /** direct: Guest.readMemory below the protocol; gdb: `dump binary memory` through a stub started with each `--memory`. */
  level: 'direct' | 'gdb';
  name: string;
  /** What is measured, the same for both paths. */
  what: string;
  pagewalk?: Measure;
  gdbsx?: Measure;
  /** The page walk's time over gdbsx_guestmemio's (medians): the goal is <= 1. */
  ratio?: number;
  target?: Target;
  notes: string[];
}

export function pathFigure(f: Omit<PathFigure, 'ratio' | 'notes'> & { notes?: string[] }): PathFigure {
  const out: PathFigure = { ...f, notes: f.notes ?? [] };
  if (f.pagewalk && f.gdbsx && f.pagewalk.stats.n > 0 && f.gdbsx.stats.n > 0) out.ratio = costRatio(f.pagewalk, f.gdbsx);
  return out;
}

export interface DumpProfile {
  env: 'sim' | 'lab';
  /** The stub's memory path, where it is not the default (page walk). */
  path?: string;
  bytes: number;
  ms: number;
  packets: number;
  requestBytes: number;
  perPacketMs: number;
  hypercallMsPerPacket?: number;
  encodeMsPerPacket?: number;
  restMsPerPacket?: number;
  /** CPU time per dump: gdb, and the stub's process (sim: the stub, simulator and benchmark together). */
  gdbCpuMs?: number;
  stubCpuMs?: number;
  gdbserver?: { ms: number; packets: number; requestBytes: number; perPacketMs: number; gdbCpuMs?: number; gdbserverCpuMs?: number };
}

export interface Results {
  schema: 1;
  startedAt: string;
  finishedAt: string;
  durationSec: number;
  host: {
    hostname: string;
    cpus: number;
    cpuModel: string;
    loadavgAtStart: number[];
    node: string;
    gdb: string;
    gdbserver?: string;
    commit: string;
  };
  config: Record<string, string | number | boolean>;
  figures: Figure[];
  /** Page walk vs gdbsx_guestmemio (absent in results from before they were measured). */
  paths?: PathFigure[];
  profile: {
    dumps: DumpProfile[];
    packets: Record<string, PacketTrace>;
    hypercallsUs: Record<string, number>;
    encodeUsPer64KiB: Record<string, number>;
    roundTripMs: Record<string, number>;
    /** Figures with a change to the stub tried in the benchmark's process (not in src/). */
    whatIf: Record<string, number>;
    /** Hypercalls per operation (sim): how many, their time, by domctl. */
    domctls: Record<string, { perOp: number; msPerOp: number; byCmd: Record<string, number> }>;
    sim?: { instructionsPerSec: number; vcpus: number; sliceMs: number }[];
    notes: string[];
  };
  skipped: string[];
}

export function measure(what: string, unit: Unit, samples: number[]): Measure {
  return { what, unit, samples: samples.map((x) => Math.round(x * 10000) / 10000), stats: summarize(samples) };
}

/** ms per run of `bytes` -> MiB/s per run. */
export function throughput(bytes: number, msPerRun: number[]): number[] {
  return msPerRun.map((ms) => bytes / (1 << 20) / (ms / 1000));
}

/** ms per step -> steps/s per run. */
export function rate(msPerRun: number[]): number[] {
  return msPerRun.map((ms) => 1000 / ms);
}

/** Time ratio a/b from medians, whatever the unit (higher-is-better units are inverted). */
export function costRatio(a: Measure, b: Measure): number {
  const inv = a.unit === 'MiB/s' || a.unit === 'steps/s' || a.unit === 'samples/s';
  return inv ? b.stats.median / a.stats.median : a.stats.median / b.stats.median;
}

export function figure(f: Omit<Figure, 'vsLimit' | 'vsCeiling' | 'vsReference' | 'notes'> & { notes?: string[] }): Figure {
  const out: Figure = { ...f, notes: f.notes ?? [] };
  if (f.reference && f.reference.stats.n > 0 && f.ours.stats.n > 0) out.vsReference = costRatio(f.reference, f.ours);
  if (f.limit && f.limit.stats.n > 0 && f.ours.stats.n > 0) out.vsLimit = costRatio(f.ours, f.limit);
  if (f.ceiling && f.ceiling.stats.n > 0 && f.ours.stats.n > 0) out.vsCeiling = costRatio(f.ours, f.ceiling);
  return out;
}
