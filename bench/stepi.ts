// Only the stepi figures, ours on the simulated Xen beside gdbserver's on a local
// process, measured as the full benchmark measures them (bench/gdbFigures.ts's
// stepiTimes; `gdbsx --sim` in its own process, with and without its reply polling),
// alternating in blocks so that the machine's load drifts over all sides alike
// (bench/stepiVs.ts). gdbserver steps the C program and the same program with its
// stepped functions in hand-written assembly, as the demo guest's are. For work on the
// stop path, where the whole `npm run bench` is too long to repeat.
//
//   node dist/bench/stepi.js [rounds] [steps per block]      (default 7 rounds of 200)
//   BENCH_STEPI_CONTINUES=n: continues to the breakpoint before stepping (default 20, as
//     the full benchmark runs that figure just before; its stepi figure is then 1 round
//     of 20 steps in a fresh process: `node dist/bench/stepi.js 1 20`, JIT still cold)
//   BENCH_STEPI_TRACE=1: also the packets of 20 stepi on each side.
import { PacketTrace } from './gdbFigures';
import { alternateStepi, OURS, OURS_NO_POLL, roundRatios, stepiSides } from './stepiVs';
import { summarize } from './stats';

function arg(i: number, dflt: number): number {
  const v = process.argv[2 + i];
  const n = v === undefined ? dflt : Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`argument ${i + 1} must be a positive integer, not '${v}'`);
  return n;
}

function traceLine(name: string, t: PacketTrace): string {
  const kinds = Object.entries(t.kinds).map(([k, n]) => `${k}×${n}`).join(', ');
  return `${name}: ${t.sent} packets (${t.bytesSent} / ${t.bytesReceived} bytes): ${kinds}\n    ${t.first.join('\n    ')}`;
}

const SIDE_TEXT: Record<string, string> = {
  [OURS]: 'ours (gdbsx --sim, as shipped)',
  [OURS_NO_POLL]: 'ours, --poll-us 0',
  gdbserver: 'gdbserver (C, GCC debug info)',
  'gdbserver-asm': 'gdbserver (the same in assembly)',
};

async function main(): Promise<void> {
  const rounds = arg(0, 7);
  const steps = arg(1, 200);
  const width = process.env.BENCH_SIM_WIDTH === '32' ? 32 : 64;
  const log = (m: string) => process.stderr.write(`${m}\n`);
  // gdbserver stepping the C program, and the same program with its stepped code in
  // hand-written assembly as the demo guest's (stepiVs.ts). Not beside a 32-bit sim: the
  // assembly is x86-64.
  const sv = await stepiSides(width === 64 ? ['c', 'asm'] : ['c'], width, log);
  try {
    const sides = sv.sides;
    // As the full benchmark: continues to a function the guest calls often, then the steps.
    const continues = Number(process.env.BENCH_STEPI_CONTINUES ?? 20);
    const r = await alternateStepi(sides, rounds, steps, continues, log);
    const rate = (xs: number[]) => {
      const s = summarize(xs);
      return `${(1000 / s.median).toFixed(0)} steps/s [p10-p90 ${(1000 / s.p90).toFixed(0)}-${(1000 / s.p10).toFixed(0)}] n=${s.n}`;
    };
    process.stdout.write(`stepi, ${width}-bit sim, ${rounds} rounds x ${steps} steps, alternating:\n`);
    for (const s of sides) {
      const rr = summarize(r.roundRates[s.key]);
      process.stdout.write(`  ${(SIDE_TEXT[s.key] ?? s.key).padEnd(34)} ${rate(r.ms[s.key])}; round medians ${rr.min.toFixed(0)}..${rr.max.toFixed(0)}; ${r.packetsPerStep[s.key].toFixed(1)} packets per stepi\n`);
    }
    for (const o of [OURS, OURS_NO_POLL]) {
      for (const s of sides.filter((x) => x.key.startsWith('gdbserver'))) {
        const rs = summarize(roundRatios(r, o, s.key));
        process.stdout.write(`  ${o} time / ${s.key}'s, per round: median ${rs.median.toFixed(3)}x [${rs.min.toFixed(3)}-${rs.max.toFixed(3)}]\n`);
      }
    }
    const cpu = sides.map((s) => `${s.key} gdb ${r.cpu[s.key].gdb.toFixed(3)} + ${s.key.startsWith('ours') ? 'stub' : 'gdbserver'} ${r.cpu[s.key].server.toFixed(3)}`);
    process.stdout.write(`  CPU ms per step: ${cpu.join('; ')}\n`);
    if (process.env.BENCH_STEPI_TRACE === '1') {
      for (const s of sides) process.stdout.write(`${traceLine(s.key, r.packets[s.key])}\n`);
    }
  } finally {
    await sv.close();
  }
}

main().then(() => process.exit(0), (e) => {
  process.stderr.write(`${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
