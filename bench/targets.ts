// The targets, judged on medians.
import { Figure, PathFigure, Target } from './model';

export const TARGETS = {
  read: 'bulk reads at no less than half the direct-hypercall throughput (lab)',
  stepi: '`stepi` within 1.5x of the direct pause/step/resume cost (lab)',
  stop: 'stop latency within 1-2 ms of the hypervisor\'s own (lab)',
  ceiling: 'RSP engine within 1.5x of gdbserver\'s throughput (sim)',
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

export const PATH_TARGET = 'reads through our page walk at least as fast as through gdbsx_guestmemio (page walk time / gdbsx time <= 1)';

/** The page walk against gdbsx_guestmemio: official in the lab (real hypercalls), indicative on the simulator. */
export function judgePath(f: PathFigure, applies: Target['applies']): Target {
  if (f.ratio === undefined) return unknown(PATH_TARGET, applies);
  return { text: PATH_TARGET, value: `${f.ratio.toFixed(2)}x gdbsx's time`, met: f.ratio <= 1, applies };
}
