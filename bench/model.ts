// The benchmark's results: figures (ours, the limit below the protocol, the
// gdbserver ceiling), targets, and the profile that explains them.
import { Summary, summarize } from './stats';
import type { PacketTrace } from './gdbFigures';

export type Unit = 'MiB/s' | 'ms' | 'steps/s';

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
  target?: Target;
  notes: string[];
}

export interface DumpProfile {
  env: 'sim' | 'lab';
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
  const inv = a.unit !== 'ms';
  return inv ? b.stats.median / a.stats.median : a.stats.median / b.stats.median;
}

export function figure(f: Omit<Figure, 'vsLimit' | 'vsCeiling' | 'notes'> & { notes?: string[] }): Figure {
  const out: Figure = { ...f, notes: f.notes ?? [] };
  if (f.limit && f.limit.stats.n > 0 && f.ours.stats.n > 0) out.vsLimit = costRatio(f.ours, f.limit);
  if (f.ceiling && f.ceiling.stats.n > 0 && f.ours.stats.n > 0) out.vsCeiling = costRatio(f.ours, f.ceiling);
  return out;
}
