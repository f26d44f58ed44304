// Summaries of repeated measurements: median and spread (p10/p90, min/max).
import { performance } from 'perf_hooks';
import { readFileSync } from 'fs';

export interface Summary {
  n: number;
  median: number;
  p10: number;
  p90: number;
  min: number;
  max: number;
  mean: number;
}

/** Linear-interpolated quantile of sorted values (q in 0..1). */
function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

export function summarize(xs: readonly number[]): Summary {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  const sum = s.reduce((a, b) => a + b, 0);
  return {
    n: s.length,
    median: quantile(s, 0.5),
    p10: quantile(s, 0.1),
    p90: quantile(s, 0.9),
    min: s.length ? s[0] : NaN,
    max: s.length ? s[s.length - 1] : NaN,
    mean: s.length ? sum / s.length : NaN,
  };
}

/** Milliseconds, sub-microsecond resolution, monotonic. */
export function now(): number {
  return performance.now();
}

/** Time one synchronous call, in ms. */
export function timeSync(fn: () => void): number {
  const t0 = now();
  fn();
  return now() - t0;
}

/** Time one asynchronous call, in ms. */
export async function timeAsync(fn: () => Promise<unknown>): Promise<number> {
  const t0 = now();
  await fn();
  return now() - t0;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Let pending I/O and timers run (between samples). */
export function yieldLoop(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}

/** CPU time (user + system, ms, 10 ms resolution) a process has used, from /proc; NaN if unknown. */
export function procCpuMs(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    // Fields after the ")" that closes the command name: state is field 3, utime 14, stime 15.
    const rest = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ').pop()?.split(' ') ?? [];
    return (Number(rest[11]) + Number(rest[12])) * 10;
  } catch {
    return NaN;
  }
}

/** CPU time this process has used, ms. */
export function selfCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** A number to 3 decimals, for the results file. */
export function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

/** µs per call of a synchronous call, the mean over `n` calls (after one warm-up call). */
export function perCallUs(fn: () => void, n: number): number {
  fn();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) fn();
  return ((performance.now() - t0) / n) * 1000;
}
