// Snapshot benchmark: the guest's pause and the total time of `gdbsx snapshot`, on the
// simulated Xen for a small and a large guest (with a writer dirtying a set number of
// pages per tick while the guest runs) and, with --lab, on the lab's Linux guests beside
// `xl dump-core` (which xl runs with the guest paused for the whole copy when asked to:
// `xl pause; xl dump-core; xl unpause`). Rows go to bench/results/snapshot.json and .md.
// Usage: node dist/bench/snapshot.js [--lab] [--runs N] [--append]
import fs from 'fs';
import os from 'os';
import path from 'path';
import { startSimDemo } from '../src/simDemo';
import { XenControl } from '../src/xg/xenctl';
import { snapshotDomain, SnapshotResult } from '../src/snapshot';

interface Row {
  where: string;
  guestMiB: number;
  dirtyPagesPerTick?: number;
  method: string;
  pausedMs: number;
  totalMs: number;
  rounds: number;
  pagesWhilePaused: number;
  pagesCopied: number;
  peer?: string;
  peerPausedMs?: number;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function simRow(memMiB: number, dirty: number, runs: number): Promise<Row> {
  const results: SnapshotResult[] = [];
  for (let i = 0; i < runs; i++) {
    const demo = startSimDemo({ domid: 1, vcpus: 2, width: 64, type: 'pvh', memMiB });
    let on = true;
    let n = 0;
    const write = () => {
      if (!on) return;
      if (demo.sim.domainState(1).controllerPauseCount === 0) {
        for (let k = 0; k < dirty; k++) demo.sim.writePhys(1, (32 << 20) + ((n++ * 7919) % 4096) * 4096, Buffer.alloc(8, n));
      }
      setImmediate(write);
    };
    setImmediate(write);
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'gdbsx-bench-snap-')), 'core');
    try {
      results.push(await snapshotDomain(new XenControl(demo.hc), 1, file));
    } finally {
      on = false;
      demo.close();
      fs.rmSync(path.dirname(file), { recursive: true, force: true });
    }
  }
  const m = (f: (r: SnapshotResult) => number) => median(results.map(f));
  return {
    where: 'sim', guestMiB: memMiB, dirtyPagesPerTick: dirty, method: results[0].method, pausedMs: m((r) => r.pausedMs), totalMs: m((r) => r.totalMs),
    rounds: m((r) => r.rounds.length), pagesWhilePaused: m((r) => r.pagesWhilePaused), pagesCopied: m((r) => r.pagesCopied),
  };
}

async function labRows(runs: number): Promise<Row[]> {
  const { labExec, readState } = await import('../test/lab/client');
  const st = readState();
  const rows: Row[] = [];
  for (const name of ['pvh', 'pv']) {
    const g = st.guests[name];
    if (!g) continue;
    const snaps: { paused: number; total: number; rounds: number; whilePaused: number; copied: number; method: string }[] = [];
    for (let i = 0; i < runs; i++) {
      const r = await labExec(`node /opt/gdbsx/bin/gdbsx snapshot ${g.domid} /tmp/bench-${name}.core; rm -f /tmp/bench-${name}.core`, { timeoutMs: 600000 });
      const num = (re: RegExp) => Number(re.exec(r.stdout)?.[1] ?? NaN);
      snaps.push({
        paused: num(/guest paused ([\d.]+) ms/), total: num(/total (\d+) ms/), rounds: num(/ (\d+) rounds?:/),
        whilePaused: num(/(\d+) while paused/), copied: num(/(\d+) pages copied/), method: /method: ([a-z -]+)/.exec(r.stdout)?.[1] ?? '?',
      });
    }
    // The peer: xl dump-core of the same guest, paused for the whole copy (what a consistent dump needs with it).
    const peer: number[] = [];
    for (let i = 0; i < runs; i++) {
      // Timed by the agent around the three commands (dom0's busybox date has no %N).
      const r = await labExec(`xl pause ${g.xlName}; xl dump-core ${g.xlName} /tmp/bench-${name}.xlcore; xl unpause ${g.xlName}`, { timeoutMs: 600000 });
      await labExec(`rm -f /tmp/bench-${name}.xlcore`);
      peer.push(r.ms);
    }
    rows.push({
      where: `lab ${name}`, guestMiB: g.memoryMiB, method: snaps[0].method, pausedMs: median(snaps.map((s) => s.paused)), totalMs: median(snaps.map((s) => s.total)),
      rounds: median(snaps.map((s) => s.rounds)), pagesWhilePaused: median(snaps.map((s) => s.whilePaused)), pagesCopied: median(snaps.map((s) => s.copied)),
      peer: 'xl pause + xl dump-core + xl unpause', peerPausedMs: median(peer),
    });
  }
  return rows;
}

async function main(): Promise<void> {
  const lab = process.argv.includes('--lab');
  const runsArg = process.argv.indexOf('--runs');
  const runs = runsArg > 0 ? Number(process.argv[runsArg + 1]) : 3;
  const rows: Row[] = [];
  if (lab) {
    rows.push(...await labRows(runs));
  } else {
    for (const [mem, dirty] of [[64, 0], [64, 8], [64, 64], [1024, 0], [1024, 8], [1024, 64]]) rows.push(await simRow(mem, dirty, runs));
  }
  const out = path.resolve(__dirname, '..', '..', 'bench', 'results');
  const jsonFile = path.join(out, lab ? 'snapshot-lab.json' : 'snapshot-sim.json');
  // --append: keep the rows of an earlier run for other guests or sizes (a larger lab guest
  // needs a lab started with more memory); each row keeps the peer of its own run.
  if (process.argv.includes('--append') && fs.existsSync(jsonFile)) {
    const old = (JSON.parse(fs.readFileSync(jsonFile, 'utf8')) as { rows: Row[] }).rows;
    const key = (r: Row) => `${r.where} ${r.guestMiB} ${r.dirtyPagesPerTick ?? ''}`;
    const fresh = new Set(rows.map(key));
    rows.unshift(...old.filter((r) => !fresh.has(key(r))));
  }
  fs.writeFileSync(jsonFile, JSON.stringify({ date: new Date().toISOString(), host: os.hostname(), load: os.loadavg(), runs, rows }, null, 2) + '\n');
  const md = ['| where | guest MiB | writer pages/tick | method | pause ms | total ms | rounds | pages while paused | pages copied | peer pause ms |', '|---|---|---|---|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.where} | ${r.guestMiB} | ${r.dirtyPagesPerTick ?? 'workload'} | ${r.method} | ${r.pausedMs.toFixed(2)} | ${r.totalMs.toFixed(0)} | ${r.rounds} | ${r.pagesWhilePaused} | ${r.pagesCopied} | ${r.peerPausedMs === undefined ? '' : r.peerPausedMs.toFixed(0) + ' (' + r.peer + ')'} |`)];
  fs.writeFileSync(jsonFile.replace(/\.json$/, '.md'), md.join('\n') + '\n');
  process.stdout.write(md.join('\n') + '\n');
}

void main();
