// `gdbsx profile` figures in the Xen lab (a lab must be running; GDBSX_LAB_STATE names
// it): samples per second per VCPU the sampler sustains in dom0 (back to back), and the
// slowdown of a CPU-bound loop in a guest while profiled at 97 Hz and 997 Hz: the test
// kernel's tk_counter (one tk_loop iteration each) per second, read from dom0 through
// our page walk without pausing, in alternating windows with and without a profile
// running in the same dom0 process. Goal: under 1% at 97 Hz.
// Usage: node dist/bench/profileLab.js [pairs] [windowSeconds]
import { execFileSync } from 'child_process';
import { labClient, labExec, guest, guestDomid, readState } from '../test/lab/client';
import { summarize } from './stats';

const SCRIPT = `
const { XenControl } = require('/opt/gdbsx/dist/src/xg/xenctl');
const { PrivcmdHypercalls } = require('/opt/gdbsx/dist/src/xg/privcmd');
const { DomainSampler } = require('/opt/gdbsx/dist/src/profile/sampler');
const { runProfile } = require('/opt/gdbsx/dist/src/profile/profiler');
const { WalkReader } = require('/opt/gdbsx/dist/src/profile/kallsyms');
const { performance } = require('perf_hooks');
const [mode, domid, a3, a4, a5] = process.argv.slice(2);
const hc = PrivcmdHypercalls.open();
const s = DomainSampler.open(new XenControl(hc), Number(domid));
const out = {};
(async () => {
  if (mode === 'rate') {
    const ticks = Number(a3);
    for (let i = 0; i < 20; i++) for (let v = 0; v < s.vcpuCount; v++) s.sample(v);
    const reads0 = s.registerReads;
    const t0 = performance.now();
    for (let i = 0; i < ticks; i++) for (let v = 0; v < s.vcpuCount; v++) s.sample(v);
    const ms = performance.now() - t0;
    Object.assign(out, { perVcpuPerSec: ticks / (ms / 1000), registerReads: s.registerReads - reads0, ticks, vcpus: s.vcpuCount });
  } else {
    const addr = BigInt(a3), hz = Number(a4), win = Number(a5);
    const r = new WalkReader(hc, Number(domid), 64, s.kernelRoot());
    const count = () => { const b = r.read(addr, 8); r.mem.release(); return b.readBigUInt64LE(); };
    const window = async (profiled) => {
      const c0 = count(), t0 = performance.now();
      if (profiled && process.env.BUSY === '1') {
        // The control: dom0 as busy as a profile can make it, without a hypercall.
        const end = performance.now() + win * 1000;
        while (performance.now() < end) { /* spin */ }
      } else if (profiled) await runProfile(s, { hz, seconds: win, calibrateMs: Infinity });
      else await new Promise((res) => setTimeout(res, win * 1000));
      return Number(count() - c0) / ((performance.now() - t0) / 1000);
    };
    const without = [], withP = [];
    for (let i = 0; i < Number(process.env.PAIRS || 3); i++) {
      if (i % 2) { withP.push(await window(true)); without.push(await window(false)); }
      else { without.push(await window(false)); withP.push(await window(true)); }
    }
    Object.assign(out, { without, with: withP });
  }
  hc.close();
  console.log(JSON.stringify(out));
})();
`;

async function main(): Promise<void> {
  const pairs = Number(process.argv[2] ?? 3);
  const win = Number(process.argv[3] ?? 5);
  const st = readState();
  const c = labClient();
  await c.put('/tmp/profbench.js', Buffer.from(SCRIPT), 0o644);
  const run = async (args: string, env = ''): Promise<Record<string, unknown>> => {
    const r = await labExec(`${env}PAIRS=${pairs} node /tmp/profbench.js ${args}`, { timeoutMs: 1200000 });
    if (r.code !== 0) throw new Error(`profbench ${args}: ${r.stderr}`);
    return JSON.parse(r.stdout.trim().split('\n').pop() as string);
  };
  const lines: string[] = [`lab (${st.xen} Xen): gdbsx profile figures, ${new Date().toISOString()}`];
  for (const name of ['pv', 'pvh', 'testkernel64']) {
    if (!st.guests[name]) continue;
    const domid = await guestDomid(name);
    let r: Record<string, unknown>;
    try {
      r = await run(`rate ${domid} 300`);
    } catch (e) {
      lines.push(`${name}: not measured: ${(e as Error).message.split('\n').find((l) => /Error:/.test(l)) ?? (e as Error).message.split('\n')[0]}`);
      continue;
    }
    lines.push(`${name}: ${Number(r.perVcpuPerSec).toFixed(0)} samples/s per VCPU back to back (${r.vcpus} VCPUs, ${r.registerReads} register reads in ${r.ticks} ticks)`);
  }
  if (st.guests.testkernel64) {
    const g = guest('testkernel64');
    // tk_counter is data, not a function (our symbol tables keep functions): nm has it.
    const addr = tkCounter(g.symbols as string);
    const domid = await guestDomid('testkernel64');
    // With pinning (BENCH_PROFILE_PIN=1): dom0 and the other guests on physical CPU 0, the
    // test kernel alone on CPU 1, as a host that gives dom0 CPUs of its own does; then the
    // guest loses to the profiler only what the register reads cost it, not the CPU time
    // dom0 spends sampling nor what the lab's other busy guests take.
    const pin = process.env.BENCH_PROFILE_PIN === '1';
    const xlName = guest('testkernel64').xlName;
    const everyDomain = (aff: string) => `for d in $(xl list | awk 'NR>1 {print $2}'); do xl vcpu-pin $d all ${aff} || exit 1; done`;
    // The lab caps the test kernel (LAB_TESTKERNEL_CAP); on a CPU of its own the cap only
    // makes its rate jitter with the scheduler's budget periods, so it is lifted meanwhile.
    let cap = '0';
    if (pin) {
      const r = await labExec(`${everyDomain('0')} && xl vcpu-pin ${xlName} all 1`);
      if (r.code !== 0) throw new Error(`xl vcpu-pin: ${r.stderr}`);
      cap = /^\S+\s+\d+\s+\d+\s+(\d+)\s*$/m.exec((await labExec(`xl sched-credit2 -d ${xlName}`)).stdout)?.[1] ?? '0';
      const u = await labExec(`xl sched-credit2 -d ${xlName} -c 0`);
      if (u.code !== 0) throw new Error(`xl sched-credit2: ${u.stderr}`);
      lines.push(`testkernel64: dom0 and the other guests pinned to physical CPU 0, the test kernel alone on CPU 1 (its cap ${cap}% lifted), for the slowdown windows`);
    }
    try {
      for (const hz of [97, 997]) {
        const r = await run(`work ${domid} ${addr} ${hz} ${win}`);
        const wo = r.without as number[];
        const wi = r.with as number[];
        const slow = wi.map((x, i) => 100 * (1 - x / wo[i]));
        const m = summarize(slow);
        lines.push(`testkernel64 tk_loop iterations/s: without ${wo.map((x) => x.toFixed(0)).join(', ')}; with ${hz} Hz ${wi.map((x) => x.toFixed(0)).join(', ')}; ` +
          `slowdown median ${m.median.toFixed(2)}% [${m.p10.toFixed(2)}–${m.p90.toFixed(2)}] n=${m.n}` + (hz === 97 ? ` (goal < 1%: ${m.median < 1 ? 'met' : 'not met'})` : ''));
      }
      if (process.env.BENCH_PROFILE_BUSY === '1') {
        // Is it the register reads, or dom0's CPU taken from the guest? Under TCG every busy
        // emulated CPU takes a host core: a dom0 that only spins shows that share.
        const r = await run(`work ${domid} ${addr} 97 ${win}`, 'BUSY=1 ');
        const wo = r.without as number[];
        const wi = r.with as number[];
        const m = summarize(wi.map((x, i) => 100 * (1 - x / wo[i])));
        lines.push(`testkernel64 tk_loop iterations/s: without ${wo.map((x) => x.toFixed(0)).join(', ')}; with dom0 spinning (no hypercalls) ${wi.map((x) => x.toFixed(0)).join(', ')}; ` +
          `slowdown median ${m.median.toFixed(2)}% [${m.p10.toFixed(2)}–${m.p90.toFixed(2)}] n=${m.n}`);
      }
    } finally {
      if (pin) await labExec(`${everyDomain('all')}; xl sched-credit2 -d ${xlName} -c ${cap}`);
    }
  }
  process.stdout.write(lines.join('\n') + '\n');
}

/** A data symbol's address from an ELF's symbol table (nm). */
function tkCounter(file: string): string {
  const out = execFileSync('nm', [file], { encoding: 'latin1' });
  const m = /^([0-9a-f]+) \w tk_counter$/m.exec(out);
  if (!m) throw new Error('no tk_counter in ' + file);
  return '0x' + m[1];
}

main().catch((e: Error) => {
  process.stderr.write(`${e.stack}\n`);
  process.exit(1);
});
