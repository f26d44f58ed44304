// `npm run bench`: the figures on the simulated Xen (always) and in the Xen lab (when
// one is running), written to bench/results/latest.{json,md,svg}. See docs/benchmark.md.
import { execFileSync } from 'child_process';
import fs from 'fs';
import os from 'os';
import path from 'path';
import { Results } from './model';
import { runSimSuite } from './simSuite';
import { runLabSuite } from './labSuite';
import { runProfileSuite } from './profileSuite';
import { writeReports } from './report';
import { GDB } from '../test/support/mi';

const ROOT = path.resolve(__dirname, '..', '..');

function envInt(name: string, dflt: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, not '${v}'`);
  return n;
}

function envFlag(name: string, dflt: string): string {
  return (process.env[name] ?? dflt).toLowerCase();
}

function tryRun(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return '';
  }
}

/** The pid of a running lab's QEMU, if any (its state file names it). */
function labQemuPid(): number | undefined {
  try {
    const file = process.env.GDBSX_LAB_STATE || `${process.env.GDBSX_LAB_RUN || '/tmp/gdbsx-lab'}/state.json`;
    const pid = (JSON.parse(fs.readFileSync(file, 'utf8')) as { qemuPid?: number }).qemuPid;
    if (!pid) return undefined;
    process.kill(pid, 0);
    return pid;
  } catch {
    return undefined;
  }
}

/** Any QEMU on this machine (another lab than ours, e.g. another user's): pids. */
function otherQemus(): number[] {
  const out: number[] = [];
  try {
    for (const d of fs.readdirSync('/proc')) {
      if (!/^\d+$/.test(d)) continue;
      try {
        if (fs.readFileSync(`/proc/${d}/comm`, 'utf8').startsWith('qemu-system')) out.push(Number(d));
      } catch {
        // gone meanwhile
      }
    }
  } catch {
    // no /proc
  }
  return out;
}

async function main(): Promise<number> {
  const t0 = Date.now();
  const runs = envInt('BENCH_RUNS', 20);
  const readRuns = envInt('BENCH_READ_RUNS', 5);
  const scaleVcpus = envInt('BENCH_SCALE_VCPUS', 64);
  const width = envInt('BENCH_SIM_WIDTH', 64);
  if (width !== 32 && width !== 64) throw new Error('BENCH_SIM_WIDTH must be 32 or 64');
  const sim = envFlag('BENCH_SIM', '1') !== '0';
  const lab = envFlag('BENCH_LAB', 'auto');
  const ceiling = envFlag('BENCH_CEILING', '1') !== '0';
  const outDir = path.resolve(process.env.BENCH_OUT ?? path.join(ROOT, 'bench', 'results'));
  const log = (m: string) => process.stderr.write(`[bench ${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s] ${m}\n`);

  const gdbVersion = tryRun(GDB, ['--version']).split('\n')[0];
  if (!gdbVersion) {
    log(`gdb not found (${GDB}): install gdb (the figures are taken through the real gdb)`);
    return 1;
  }
  const res: Results = {
    schema: 1,
    startedAt: new Date(t0).toISOString(),
    finishedAt: '',
    durationSec: 0,
    host: {
      hostname: os.hostname(),
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model ?? 'unknown',
      loadavgAtStart: os.loadavg().map((x) => Math.round(x * 100) / 100),
      node: process.version,
      gdb: gdbVersion,
      commit: tryRun('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD']) || 'unknown',
    },
    config: { runs, readRuns, scaleVcpus, simWidth: width, sim, lab, ceiling },
    figures: [],
    paths: [],
    profile: { dumps: [], packets: {}, hypercallsUs: {}, encodeUsPer64KiB: {}, roundTripMs: {}, whatIf: {}, domctls: {}, notes: [] },
    skipped: [],
  };

  let failed = false;
  const qemu = labQemuPid();
  if (qemu) res.profile.notes.push(`a Xen lab (QEMU/TCG, pid ${qemu}) was running during this run: it competes for the CPUs with the simulator, the stub and gdb`);
  // Looked for at the start and at the end (another user's lab may come and go meanwhile).
  const othersAtStart = otherQemus().filter((p) => p !== qemu);
  if (sim) {
    try {
      await runSimSuite({ runs, readRuns, sizes: [1 << 20, 16 << 20], width, scaleVcpus, ceiling, log }, res);
    } catch (e) {
      failed = true;
      log(`sim suite failed: ${(e as Error).stack ?? String(e)}`);
      res.skipped.push(`sim: failed: ${(e as Error).message.split('\n')[0]}`);
    }
    try {
      await runProfileSuite({ runs: 5, pairs: envInt('BENCH_PROFILE_PAIRS', 6), windowMs: 3000, log }, res);
    } catch (e) {
      failed = true;
      log(`profile suite failed: ${(e as Error).stack ?? String(e)}`);
      res.skipped.push(`sim profile: failed: ${(e as Error).message.split('\n')[0]}`);
    }
  } else {
    res.skipped.push('sim: turned off (BENCH_SIM=0)');
  }

  if (lab !== '0' && lab !== 'off') {
    // The bench process should be all but idle while the lab works (gdb and the stub do it):
    // its CPU share says whether anything of the sim part still runs beside the lab's figures.
    const cpu0 = process.cpuUsage();
    const wall0 = Date.now();
    try {
      const why = await runLabSuite({ runs: envInt('BENCH_LAB_RUNS', Math.min(runs, 10)), readRuns: envInt('BENCH_LAB_READ_RUNS', Math.min(readRuns, 3)), log }, res);
      const c = process.cpuUsage(cpu0);
      res.profile.notes.push(`this benchmark's own process used ${((c.user + c.system) / 10 / Math.max(1, Date.now() - wall0)).toFixed(1)}% of one CPU during the lab part`);
      if (why) {
        log(`lab: skipped: ${why}`);
        res.skipped.push(`lab: ${why}`);
        if (lab === 'on' || lab === '1') failed = true;
      }
    } catch (e) {
      failed = true;
      log(`lab suite failed: ${(e as Error).stack ?? String(e)}`);
      res.skipped.push(`lab: failed: ${(e as Error).message.split('\n')[0]}`);
    }
  } else {
    res.skipped.push('lab: turned off (BENCH_LAB=0)');
  }

  const others = [...new Set([...othersAtStart, ...otherQemus()])].filter((p) => p !== qemu);
  if (others.length) res.profile.notes.push(`QEMU (pid ${others.join(', ')}, not this run's lab) was running at the start or the end of this run: it competes for the CPUs with the simulator, the stub and gdb`);
  res.finishedAt = new Date().toISOString();
  res.profile.notes.push(`load average at the end: ${os.loadavg().map((x) => x.toFixed(2)).join(' / ')}`);
  res.durationSec = Math.round((Date.now() - t0) / 100) / 10;
  const files = writeReports(res, outDir);
  log(`wrote ${files.map((f) => path.relative(process.cwd(), f)).join(', ')} in ${res.durationSec} s`);
  process.stdout.write(fs.readFileSync(files.find((f) => f.endsWith('.md')) as string, 'utf8'));
  return failed ? 1 : 0;
}

main().then((code) => {
  process.exitCode = code;
  // The simulator and sockets are closed; anything left (a stray timer) must not hold the exit.
  setTimeout(() => process.exit(code), 500).unref();
}, (e: Error) => {
  process.stderr.write(`bench: ${e.stack ?? e.message}\n`);
  process.exitCode = 1;
});
