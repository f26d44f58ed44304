// The targets, judged on medians.
import { Figure, PathFigure, Target } from './model';

export const TARGETS = {
  read: 'bulk reads at no less than half the direct-hypercall throughput (lab)',
  stepi: '`stepi` within 1.5x of the direct pause/step/resume cost (lab)',
  stop: 'stop latency within 1-2 ms of the hypervisor\'s own (lab)',
  ceiling: 'RSP engine within 1.5x of gdbserver\'s throughput (sim)',
  stepiGdbserver: '`stepi` at or above gdbserver\'s rate (sim, alternating in one run)',
} as const;

function unknown(text: string, applies: Target['applies']): Target {
  return { text, value: 'not measured', met: null, applies };
}

export function judgeRead(f: Figure, applies: Target['applies']): Target {
  if (f.vsLimit === undefined) return unknown(TARGETS.read, applies);
  const frac = 1 / f.vsLimit;
  return { text: TARGETS.read, value: `${frac < 0.1 ? frac.toPrecision(2) : frac.toFixed(2)} of direct`, met: frac >= 0.5, applies };
}

export function judgeStepi(f: Figure, applies: Target['applies']): Target {
  if (f.vsLimit === undefined) return unknown(TARGETS.stepi, applies);
  return { text: TARGETS.stepi, value: `${f.vsLimit.toFixed(2)}x direct`, met: f.vsLimit <= 1.5, applies };
}

/**
 * On the simulator the hypervisor's own moment is its trap event, so the figure is
 * trap -> *stopped itself. In the lab the trap is not visible from outside: the
 * figure is the extra time of a continue-to-breakpoint through gdb over the same
 * continue done directly in dom0 (both include reaching the breakpoint).
 */
export function judgeStopLatency(f: Figure, applies: Target['applies'], mode: 'trap' | 'difference'): Target {
  if (f.ours.stats.n === 0) return unknown(TARGETS.stop, applies);
  const extra = mode === 'trap' ? f.ours.stats.median : f.limit && f.limit.stats.n ? f.ours.stats.median - f.limit.stats.median : NaN;
  if (!Number.isFinite(extra)) return unknown(TARGETS.stop, applies);
  const what = mode === 'trap' ? 'after the trap' : 'over direct';
  return { text: TARGETS.stop, value: `+${extra.toFixed(2)} ms ${what}`, met: extra <= 2, applies };
}

export function judgeCeiling(f: Figure): Target {
  if (f.vsCeiling === undefined) return unknown(TARGETS.ceiling, 'official');
  return { text: TARGETS.ceiling, value: `${f.vsCeiling.toFixed(2)}x gdbserver's time`, met: f.vsCeiling <= 1.5, applies: 'official' };
}

export function judgeStepiVsGdbserver(f: Figure): Target {
  if (f.vsCeiling === undefined) return unknown(TARGETS.stepiGdbserver, 'official');
  return { text: TARGETS.stepiGdbserver, value: `${f.vsCeiling.toFixed(2)}x gdbserver's time`, met: f.vsCeiling <= 1, applies: 'official' };
}

export const PATH_TARGET = 'reads through our page walk at least as fast as through gdbsx_guestmemio (page walk time / gdbsx time <= 1)';

/** The page walk against gdbsx_guestmemio: official in the lab (real hypercalls), indicative on the simulator. */
export function judgePath(f: PathFigure, applies: Target['applies']): Target {
  if (f.ratio === undefined) return unknown(PATH_TARGET, applies);
  return { text: PATH_TARGET, value: `${f.ratio.toFixed(2)}x gdbsx's time`, met: f.ratio <= 1, applies };
}

export const REF_TARGETS = {
  read: 'bulk reads (1 MiB) at least 1000x the reference gdbsx\'s throughput (lab, same run)',
  stepi: '`stepi` at least 4x the reference gdbsx\'s rate (lab, same run)',
} as const;

/** Ours against Xen's own gdbsx in the same run: `min` times its speed at least. */
export function judgeReference(f: Figure, kind: keyof typeof REF_TARGETS): Target {
  const text = REF_TARGETS[kind];
  const min = kind === 'read' ? 1000 : 4;
  if (f.vsReference === undefined) return { text, value: f.referenceNote ?? 'not measured', met: null, applies: 'official' };
  return { text, value: `${f.vsReference >= 100 ? f.vsReference.toFixed(0) : f.vsReference.toFixed(2)}x gdbsx's`, met: f.vsReference >= min, applies: 'official' };
}
