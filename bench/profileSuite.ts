// `gdbsx profile` figures on the simulated Xen: how many samples per second per VCPU
// the sampler sustains (back to back, nothing else running), and how much the guest
// slows down while profiled at 97 Hz and 997 Hz (the demo guest's loop counter per
// second, with and without the profiler, in alternating windows). Goal: under 1% at 97 Hz.
// Runs inside `npm run bench` (sim part) and alone: `node dist/bench/profileSuite.js`.
import { performance } from 'perf_hooks';
import { XenControl } from '../src/xg/xenctl';
import { DomainSampler } from '../src/profile/sampler';
import { runProfile } from '../src/profile/profiler';
import { openSimTarget } from '../src/profile/main';
import { Figure, Results, figure, measure } from './model';
import { summarize } from './stats';

export interface ProfileBenchConfig {
  /** Runs of the back-to-back rate. */
  runs: number;
  /** Pairs of (without, with) windows per rate. */
  pairs: number;
  windowMs: number;
  log: (m: string) => void;
}

export const PROFILE_TARGET = 'guest slowdown under 1% while profiled at 97 Hz';

const GROUP = 'Profiler (gdbsx profile)';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Samples per second per VCPU, back to back: the sampler's own ceiling. */
function sampleRate(sampler: DomainSampler, ticks: number): number {
  const t0 = performance.now();
  for (let i = 0; i < ticks; i++) for (let v = 0; v < sampler.vcpuCount; v++) sampler.sample(v);
  return ticks / ((performance.now() - t0) / 1000);
}

export async function runProfileSim(cfg: ProfileBenchConfig): Promise<Figure[]> {
  const t = openSimTarget({ vcpus: 2 });
  const figures: Figure[] = [];
  try {
    const sampler = DomainSampler.open(new XenControl(t.hc), t.domid);
    const counter = t.sim.symbol(t.domid, 'demo_counter');
    const work = () => t.sim.readVirt(t.domid, counter, 8).readBigUInt64LE();
    sampleRate(sampler, 200); // warm up
    const rates: number[] = [];
    for (let i = 0; i < cfg.runs; i++) rates.push(sampleRate(sampler, 2000));
    figures.push(figure({
      id: 'sim.profile.rate', env: 'sim', group: GROUP, name: 'samples per second per VCPU (2 VCPUs, back to back)',
      ours: measure('getvcpuinfo + getvcpucontext per VCPU, no pause between', 'samples/s', rates),
      notes: ['the simulator runs in the same process: no guest runs while the sampler loops'],
    }));
    cfg.log(`profile: ${summarize(rates).median.toFixed(0)} samples/s per VCPU`);

    let busy: number[] = [];
    const window = async (hz: number | undefined): Promise<number> => {
      const w0 = work();
      const t0 = performance.now();
      if (hz) {
        const p = await runProfile(sampler, { hz, seconds: cfg.windowMs / 1000, calibrateMs: Infinity });
        busy.push((100 * p.ticks * p.tickUs.mean) / 1000 / p.elapsedMs);
      } else {
        await sleep(cfg.windowMs);
      }
      return Number(work() - w0) / ((performance.now() - t0) / 1000);
    };
    for (const hz of [97, 997]) {
      busy = [];
      const slow: number[] = [];
      for (let i = 0; i < cfg.pairs; i++) {
        // Alternate the order so that a drift of the machine's load does not favour one side.
        const [a, b] = i % 2 ? [await window(hz), await window(undefined)] : [await window(undefined), await window(hz)].reverse();
        slow.push(100 * (1 - a / b));
      }
      const med = summarize(slow).median;
      cfg.log(`profile: guest slowdown at ${hz} Hz: ${med.toFixed(2)}% (median of ${slow.length} pairs)`);
      figures.push(figure({
        id: `sim.profile.slowdown.${hz}`, env: 'sim', group: GROUP, name: `guest slowdown at ${hz} Hz (demo loop iterations/s)`,
        ours: measure('1 - iterations/s profiled / iterations/s not, per pair of windows', '%', slow),
        target: hz === 97 ? { text: PROFILE_TARGET, value: `${med.toFixed(2)}%`, met: med < 1, applies: 'indicative' } : undefined,
        notes: ['on the simulator the guest and the sampler share one thread: every sample\'s JavaScript time is taken from the guest, which a real hypervisor does not do'],
      }));
      figures.push(figure({
        id: `sim.profile.busy.${hz}`, env: 'sim', group: GROUP, name: `sampler's share of the thread at ${hz} Hz`,
        ours: measure('time in sampling ticks / wall time (the guest\'s share lost to the sampler on the simulator)', '%', busy),
      }));
    }
  } finally {
    t.close();
  }
  return figures;
}

export async function runProfileSuite(cfg: ProfileBenchConfig, res: Results): Promise<void> {
  res.figures.push(...await runProfileSim(cfg));
}

if (require.main === module) {
  const log = (m: string) => process.stderr.write(`[profile bench] ${m}\n`);
  runProfileSim({ runs: 5, pairs: Number(process.env.BENCH_PROFILE_PAIRS ?? 6), windowMs: 3000, log }).then((figs) => {
    for (const f of figs) {
      const s = f.ours.stats;
      process.stdout.write(`${f.id}: ${f.name}: median ${s.median.toFixed(2)} ${f.ours.unit} [p10 ${s.p10.toFixed(2)} – p90 ${s.p90.toFixed(2)}] n=${s.n}` +
        (f.target ? ` — goal: ${f.target.text}: ${f.target.met ? 'met' : 'not met'}` : '') + '\n');
    }
    process.exit(0);
  }, (e: Error) => {
    process.stderr.write(`${e.stack}\n`);
    process.exit(1);
  });
}
