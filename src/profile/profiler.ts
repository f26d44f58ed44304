// The sampling loop: every 1/hz seconds, one sample of every VCPU (sampler.ts), kept
// raw (a 10 s profile at 97 Hz of 8 VCPUs is under 8000 samples). Timers are set for
// the next tick's due time, so the rate does not drift; a tick that comes late is not
// made up for with a burst. Stops at the end, on abort (SIGINT) or when the domain goes.
import { performance } from 'perf_hooks';
import { Errno, UserError, isXenError } from '../xg/errors';
import { DomainSampler, Mode, VcpuSample } from './sampler';
import { StackWalker } from './stacks';

export interface Sample {
  vcpu: number;
  mode: Mode;
  rip: bigint;
  cr3: bigint;
  /** Return addresses from the frame-pointer chain, innermost first (with --stacks). */
  callers?: bigint[];
}

export interface ProfileData {
  domid: number;
  hz: number;
  vcpus: number;
  samples: Sample[];
  ticks: number;
  elapsedMs: number;
  /** Ticks per second achieved (each tick samples every VCPU). */
  achievedHz: number;
  /** Wall time of one tick (all VCPUs), mean and max, in microseconds. */
  tickUs: { mean: number; max: number };
  registerReads: number;
  /** How it ended early, if it did. */
  endedBy?: 'interrupted' | 'domain gone' | 'domain shut down' | 'domain dying';
}

export interface RunOptions {
  hz: number;
  seconds: number;
  stacks?: StackWalker;
  signal?: AbortSignal;
  /** Called with each tick's samples as they are taken (the live view). */
  onTick?: (samples: readonly Sample[]) => void;
  /** After this many ms (default: 1000, or half the profile if shorter), a rate below half the asked one is an error. */
  calibrateMs?: number;
}

/** The asked rate cannot be kept up on this machine. */
export class RateError extends UserError {}

function sleepUntil(due: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const step = () => {
      if (signal?.aborted) return resolve();
      const left = due - performance.now();
      if (left <= 0) return resolve();
      // Node's timers are whole milliseconds and late by a fraction of one: sleep on a
      // timer while far from due, then yield to the event loop until due.
      if (left > 2) setTimeout(step, Math.floor(left - 1));
      else setImmediate(step);
    };
    step();
  });
}

export async function runProfile(sampler: DomainSampler, o: RunOptions): Promise<ProfileData> {
  const period = 1000 / o.hz;
  const samples: Sample[] = [];
  const calibrateMs = o.calibrateMs ?? Math.min(1000, o.seconds * 500);
  let ticks = 0;
  let tickTotal = 0;
  let tickMax = 0;
  let endedBy: ProfileData['endedBy'];
  const start = performance.now();
  const end = start + o.seconds * 1000;
  let due = start;
  let checked = false;
  let lastTick = start;
  let lastStateCheck = start;
  for (;;) {
    if (o.signal?.aborted) {
      endedBy = 'interrupted';
      break;
    }
    const t0 = performance.now();
    if (t0 >= end && ticks > 0) break;
    try {
      // A domain that shut down keeps its VCPUs' last state, which would read as busy:
      // look at the domain once a second (getdomaininfo) and stop then.
      if (t0 - lastStateCheck >= 1000) {
        lastStateCheck = t0;
        const why = sampler.ended();
        if (why) {
          endedBy = why as ProfileData['endedBy'];
          break;
        }
      }
      const tick: VcpuSample[] = [];
      for (let v = 0; v < sampler.vcpuCount; v++) tick.push(sampler.sample(v));
      const taken: Sample[] = [];
      for (const s of tick) {
        const out: Sample = { vcpu: s.vcpu, mode: s.mode, rip: s.rip, cr3: s.cr3 };
        if (o.stacks && s.mode === 'kernel') out.callers = o.stacks.callers(s);
        taken.push(out);
        samples.push(out);
      }
      o.stacks?.afterTick();
      o.onTick?.(taken);
    } catch (e) {
      if (isXenError(e, Errno.ESRCH)) {
        endedBy = 'domain gone';
        break;
      }
      throw e;
    }
    const t1 = performance.now();
    lastTick = t0;
    ticks++;
    tickTotal += t1 - t0;
    tickMax = Math.max(tickMax, t1 - t0);
    if (!checked && t1 - start >= calibrateMs && ticks > 2) {
      checked = true;
      const rate = (ticks - 1) / ((t0 - start) / 1000);
      if (rate < 0.5 * o.hz) {
        const mean = tickTotal / ticks;
        throw new RateError(`asked for ${o.hz} Hz but this machine sustained ${rate.toFixed(0)} Hz ` +
          `(a sample of all ${sampler.vcpuCount} VCPUs takes ${(mean * 1000).toFixed(0)} µs here): use --hz ${Math.max(1, Math.floor(Math.min(rate, 1000 / mean) * 0.8))} or less`);
      }
    }
    due += period;
    const now = performance.now();
    if (due < now) due = now; // late: no burst to catch up
    if (due >= end) {
      // The last tick is due at or after the end: stop at the end.
      await sleepUntil(Math.min(due, end), o.signal);
      if (o.signal?.aborted) endedBy = 'interrupted';
      break;
    }
    await sleepUntil(due, o.signal);
  }
  o.stacks?.close();
  const elapsedMs = Math.max(lastTick - start, 0);
  return {
    domid: sampler.domid,
    hz: o.hz,
    vcpus: sampler.vcpuCount,
    samples,
    ticks,
    elapsedMs: performance.now() - start,
    achievedHz: ticks > 1 ? (ticks - 1) / (elapsedMs / 1000) : 0,
    tickUs: { mean: ticks ? (tickTotal / ticks) * 1000 : 0, max: tickMax * 1000 },
    registerReads: sampler.registerReads,
    endedBy,
  };
}
