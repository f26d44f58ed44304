// Only the stepi figures, ours on the simulated Xen beside gdbserver's on a local
// process, measured the way the full benchmark measures them (bench/gdbFigures.ts's
// stepiTimes, the stub in this process as simSuite runs it), alternating in blocks so
// that the machine's load drifts over both alike. For work on the stop path, where the
// whole `npm run bench` is too long to repeat.
//
//   node dist/bench/stepi.js [rounds] [steps per block]      (default 7 rounds of 200)
//   BENCH_STEPI_CONTINUES=n: continues to the breakpoint before stepping (default 20, as
//     the full benchmark runs that figure just before; its stepi figure is then 1 round
//     of 20 steps in a fresh process: `node dist/bench/stepi.js 1 20`, JIT still cold)
//   BENCH_STEPI_TRACE=1: also the packets of one stepi on each side.
import { MiGdb } from '../test/support/mi';
import { connect, continueStops, dumpTimes, stepiTimes, tracePackets, PacketTrace } from './gdbFigures';
import { startCeilingTarget } from './ceiling';
import { pattern, startSim } from './simSuite';
import { procCpuMs, selfCpuMs, summarize, sleep } from './stats';

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

async function main(): Promise<void> {
  const rounds = arg(0, 7);
  const steps = arg(1, 200);
  const width = process.env.BENCH_SIM_WIDTH === '32' ? 32 : 64;
  const log = (m: string) => process.stderr.write(`${m}\n`);
  const sim = await startSim(2, width);
  const target = await startCeilingTarget(4096, log);
  const ours = new MiGdb([sim.image]);
  const theirs = new MiGdb([target.exe]);
  try {
    for (const g of [ours, theirs]) await g.setup();
    await connect(ours, sim.port);
    await connect(theirs, target.port);
    if (process.env.BENCH_STEPI_DUMPS === '1') {
      // What the full run does to the stub before: 1 and 16 MiB dumps of dense data.
      const phys = 32 << 20;
      sim.sim.writePhys(1, phys, pattern(16 << 20));
      const dm = sim.sim.layout(1).directMap + BigInt(phys);
      await dumpTimes(ours, dm, 1 << 20, 20);
      await dumpTimes(ours, dm, 16 << 20, 5);
    }
    // As the full benchmark: continues to a function the guest calls often, then the steps.
    const continues = Number(process.env.BENCH_STEPI_CONTINUES ?? 20);
    await continueStops(ours, 'demo_tick', continues);
    await continueStops(theirs, 'tick', continues);
    const ms: Record<'ours' | 'gdbserver', number[]> = { ours: [], gdbserver: [] };
    const perRound: { ours: number; gdbserver: number }[] = [];
    // CPU ms per step: gdb's, and the stub's (ours: this whole process, the bench's MI reading included).
    const cpu = { oursGdb: 0, oursStub: 0, theirsGdb: 0, theirsStub: 0 };
    for (let r = 0; r < rounds; r++) {
      let g0 = procCpuMs(ours.pid);
      let s0 = selfCpuMs();
      const a = await stepiTimes(ours, steps);
      cpu.oursGdb += procCpuMs(ours.pid) - g0;
      cpu.oursStub += selfCpuMs() - s0;
      g0 = procCpuMs(theirs.pid);
      s0 = procCpuMs(target.serverPid);
      const b = await stepiTimes(theirs, steps);
      cpu.theirsGdb += procCpuMs(theirs.pid) - g0;
      cpu.theirsStub += procCpuMs(target.serverPid) - s0;
      ms.ours.push(...a);
      ms.gdbserver.push(...b);
      const rnd = { ours: 1000 / summarize(a).median, gdbserver: 1000 / summarize(b).median };
      perRound.push(rnd);
      log(`round ${r + 1}/${rounds}: ours ${rnd.ours.toFixed(0)} steps/s, gdbserver ${rnd.gdbserver.toFixed(0)} steps/s`);
    }
    const rate = (xs: number[]) => {
      const s = summarize(xs);
      return `${(1000 / s.median).toFixed(0)} steps/s [p10-p90 ${(1000 / s.p90).toFixed(0)}-${(1000 / s.p10).toFixed(0)}] n=${s.n}`;
    };
    const ratios = perRound.map((x) => x.gdbserver / x.ours);
    const rs = summarize(ratios);
    const rr = (k: 'ours' | 'gdbserver') => summarize(perRound.map((x) => x[k]));
    process.stdout.write(`stepi, ${width}-bit sim, ${rounds} rounds x ${steps} steps, alternating:\n`);
    process.stdout.write(`  ours:      ${rate(ms.ours)}; round medians ${rr('ours').min.toFixed(0)}..${rr('ours').max.toFixed(0)}\n`);
    process.stdout.write(`  gdbserver: ${rate(ms.gdbserver)}; round medians ${rr('gdbserver').min.toFixed(0)}..${rr('gdbserver').max.toFixed(0)}\n`);
    process.stdout.write(`  our time / gdbserver's, per round: median ${rs.median.toFixed(3)}x [${rs.min.toFixed(3)}-${rs.max.toFixed(3)}]\n`);
    const per = (x: number) => (x / (rounds * (steps + 1))).toFixed(3);
    process.stdout.write(`  CPU ms per step: ours gdb ${per(cpu.oursGdb)} + stub process ${per(cpu.oursStub)}; gdbserver's gdb ${per(cpu.theirsGdb)} + gdbserver ${per(cpu.theirsStub)}\n`);
    if (process.env.BENCH_STEPI_TRACE === '1') {
      process.stdout.write(`${traceLine('ours', await tracePackets(ours, () => stepiTimes(ours, 0)))}\n`);
      process.stdout.write(`${traceLine('gdbserver', await tracePackets(theirs, () => stepiTimes(theirs, 0)))}\n`);
    }
  } finally {
    for (const g of [ours, theirs]) {
      await Promise.race([g.quit(), sleep(5000)]);
      g.kill();
    }
    target.close();
    await sim.close();
  }
}

main().then(() => process.exit(0), (e) => {
  process.stderr.write(`${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
