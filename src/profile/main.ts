// `gdbsx profile <domid>`: sample a running guest's VCPUs from dom0 and write where
// they spent their time (text, folded stacks, speedscope JSON or pprof).
import fs from 'fs';
import yargs from 'yargs';
import { subcommandParser } from '../cliArgs';
import { XenControl } from '../xg/xenctl';
import { Hypercalls } from '../xg/hypercalls';
import { UserError, XenError } from '../xg/errors';
import { DomainSampler } from './sampler';
import { RateError, runProfile, ProfileData } from './profiler';
import { StackWalker } from './stacks';
import { SymbolTable, loadSymbolFile } from './symbols';
import { kallsymsFromGuest } from './kallsyms';
import { Naming, textReport } from './report';
import { folded, pprof, speedscope } from './formats';
import { LiveView } from './live';
import { startSimDemo } from '../simDemo';
import type { SimXen } from '../xg/sim';

type Format = 'text' | 'folded' | 'speedscope' | 'pprof';

interface Args {
  domid: number;
  hz: number;
  seconds: number;
  live: boolean;
  window: number;
  vmlinux?: string;
  systemMap?: string;
  stacks: boolean;
  format: Format;
  output?: string;
  sim: boolean;
  simVcpus: number;
  simType: 'pv' | 'pvh';
}

/** Above this, a sample per VCPU would leave the guest no time between pauses. */
const MAX_HZ = 10000;

function parse(argv: string[]): Args {
  const a = subcommandParser(yargs(argv)
    .scriptName('gdbsx profile')
    .usage('Usage: gdbsx profile <domid> [--hz 97] [--seconds 10] [--live [--window 5]] [--vmlinux FILE | --system-map FILE] [--stacks] [--format text|folded|speedscope|pprof] [-o FILE]\n\n' +
      'Samples every VCPU\'s pc, address space (cr3) and mode from dom0, reading only (each sample pauses one running VCPU ' +
      'inside Xen for the register copy; blocked or offline VCPUs are counted without one). Ctrl-C ends early and still writes.')
    .wrap(Math.min(100, process.stdout.columns || 100))
    .option('hz', { type: 'number', default: 97, describe: 'samples per second per VCPU' })
    .option('seconds', { alias: 's', type: 'number', describe: 'how long to sample (default 10; with --live, until Ctrl-C)' })
    .option('live', { type: 'boolean', default: false, describe: 'a top-like view on the terminal, redrawn every second while sampling; the report is written at the end as without it' })
    .option('window', { type: 'number', default: 5, describe: 'with --live: seconds of samples the "last" columns cover' })
    .option('vmlinux', { type: 'string', describe: 'kernel ELF with a symbol table (or the lab\'s kallsyms.elf)' })
    .option('system-map', { type: 'string', describe: 'a System.map (or a copy of the guest\'s /proc/kallsyms)' })
    .option('stacks', { type: 'boolean', default: false, describe: 'kernel call stacks through frame pointers' })
    .option('format', { alias: 'f', choices: ['text', 'folded', 'speedscope', 'pprof'] as const, default: 'text' as Format, describe: 'output format' })
    .option('output', { alias: 'o', type: 'string', describe: 'write here instead of stdout' })
    .option('sim', { type: 'boolean', default: false, describe: 'profile the simulated demo guest (domain 1), as `gdbsx --sim` builds it' })
    .option('sim-vcpus', { type: 'number', default: 2, hidden: true })
    .option('sim-type', { choices: ['pv', 'pvh'] as const, default: 'pv' as const, hidden: true })
    .conflicts('vmlinux', 'system-map'))
    .parseSync();
  const pos = a._.map(String);
  if (pos.length > 1) throw new UserError(`unexpected argument '${pos[1]}'`);
  let domid = 1;
  if (pos.length === 1) {
    if (!/^\d+$/.test(pos[0])) throw new UserError(`invalid domain id '${pos[0]}'`);
    domid = Number(pos[0]);
  } else if (!a.sim) {
    throw new UserError('give a domain id: gdbsx profile <domid> (see `xl list`), or --sim');
  }
  if (!Number.isFinite(a.hz) || a.hz <= 0) throw new UserError(`--hz must be a positive number, got '${a.hz}'`);
  if (a.hz > MAX_HZ) throw new UserError(`--hz ${a.hz} is more than this tool samples (at most ${MAX_HZ} Hz)`);
  const seconds = a.seconds ?? (a.live ? Infinity : 10);
  if (a.seconds !== undefined && (!Number.isFinite(a.seconds) || a.seconds <= 0)) throw new UserError(`--seconds must be a positive number, got '${a.seconds}'`);
  if (!Number.isFinite(a.window) || a.window <= 0) throw new UserError(`--window must be a positive number of seconds, got '${a.window}'`);
  return {
    domid, hz: a.hz, seconds, live: a.live, window: a.window, vmlinux: a.vmlinux, systemMap: a['system-map'], stacks: a.stacks,
    format: a.format as Format, output: a.output, sim: a.sim, simVcpus: a['sim-vcpus'], simType: a['sim-type'] as 'pv' | 'pvh',
  };
}

export interface Target {
  hc: Hypercalls;
  /** The demo guest's ELF on --sim. */
  symbolFile?: string;
  close(): void;
}

/**
 * The demo guest as `gdbsx --sim` builds it (simDemo.ts), with slices of random length:
 * the simulated VCPUs can be looked at only between slices, and fixed-length slices
 * would tie what the samples see to the demo loop's period. Short slices keep the
 * sampler's timers on time.
 */
export function openSimTarget(o: { domid?: number; vcpus?: number; type?: 'pv' | 'pvh' } = {}): Target & { sim: SimXen; domid: number } {
  return startSimDemo({ domid: o.domid ?? 1, vcpus: o.vcpus ?? 2, width: 64, type: o.type ?? 'pv', busy: true, xen: { sliceJitter: true, sliceInstructions: 1000 } });
}

async function openTarget(a: Args): Promise<Target> {
  // The simulated guest is always domain 1; another domain id given with --sim does not exist, as on Xen.
  if (a.sim) return openSimTarget({ vcpus: a.simVcpus, type: a.simType });
  const { PrivcmdHypercalls } = await import('../xg/privcmd');
  const hc = PrivcmdHypercalls.open();
  return { hc, close: () => hc.close() };
}

function symbolsFor(a: Args, t: Target, sampler: DomainSampler): Naming {
  if (a.vmlinux) return named(loadSymbolFile(a.vmlinux, 'vmlinux'));
  if (a.systemMap) return named(loadSymbolFile(a.systemMap, 'system-map'));
  const fromGuest = kallsymsFromGuest(sampler);
  if (fromGuest.table) return named(fromGuest.table, fromGuest.note);
  if (t.symbolFile) return named(loadSymbolFile(t.symbolFile, 'vmlinux'), `the demo guest's ELF ${t.symbolFile}`);
  return { symbols: undefined, symbolNote: `none (${fromGuest.note}); kernel addresses are shown raw: give --vmlinux or --system-map` };
}

function named(table: SymbolTable, note?: string): Naming {
  return { symbols: table, symbolNote: note ?? `${table.source} (${table.size} functions)` };
}

function render(p: ProfileData, n: Naming, format: Format): Buffer {
  switch (format) {
    case 'text': return Buffer.from(textReport(p, n));
    case 'folded': return Buffer.from(folded(p, n));
    case 'speedscope': return Buffer.from(JSON.stringify(speedscope(p, n)) + '\n');
    case 'pprof': return pprof(p, n);
  }
}

export async function profileMain(argv: string[]): Promise<number> {
  let a: Args;
  try {
    a = parse(argv);
  } catch (e) {
    console.error(`gdbsx profile: ${(e as Error).message}`);
    return 2;
  }
  if (a.live && !process.stdout.isTTY) {
    console.error('gdbsx profile: --live draws on a terminal, and stdout is not one: leave out --live, or run it on a terminal (and -o FILE for the report)');
    return 2;
  }
  if (a.format === 'pprof' && !a.output && process.stdout.isTTY) {
    console.error('gdbsx profile: pprof output is binary (gzip): give -o FILE');
    return 2;
  }
  let target: Target | undefined;
  const abort = new AbortController();
  const onSigint = () => abort.abort();
  process.once('SIGINT', onSigint);
  try {
    target = await openTarget(a);
    const xc = new XenControl(target.hc);
    const sampler = DomainSampler.open(xc, a.domid);
    const naming = symbolsFor(a, target, sampler);
    const stacks = a.stacks ? new StackWalker(target.hc, a.domid, sampler.width, naming.symbols) : undefined;
    const live = a.live ? new LiveView(process.stdout, { domid: a.domid, vcpus: sampler.vcpuCount, hz: a.hz, windowSeconds: a.window, seconds: a.seconds }, naming) : undefined;
    live?.start();
    let p: ProfileData;
    try {
      p = await runProfile(sampler, { hz: a.hz, seconds: a.seconds, stacks, signal: abort.signal, onTick: live && ((s) => live.add(s)) });
    } finally {
      live?.stop();
    }
    if (stacks) {
      const { walked, withCallers } = stacks.stats;
      naming.symbolNote += `; stacks: ${withCallers} of ${walked} kernel samples had callers through frame pointers` +
        (walked > 20 && withCallers < walked / 20 ? ' (this kernel seems to keep no frame pointers, e.g. built with the ORC unwinder: stacks show the sampled function only)' : '');
    }
    const out = render(p, naming, a.format);
    if (a.output) fs.writeFileSync(a.output, out);
    else process.stdout.write(out);
    if (p.endedBy === 'interrupted') console.error(`gdbsx profile: interrupted after ${(p.elapsedMs / 1000).toFixed(1)} s: wrote the ${p.samples.length} samples taken`);
    if (p.endedBy && p.endedBy !== 'interrupted') console.error(`gdbsx profile: ${p.endedBy.replace('domain', `domain ${a.domid}`).replace(' gone', ' went away')} after ${(p.elapsedMs / 1000).toFixed(1)} s: wrote the ${p.samples.length} samples taken`);
    else if (p.ticks > 10 && p.achievedHz < 0.9 * a.hz) console.error(`gdbsx profile: note: achieved ${p.achievedHz.toFixed(1)} Hz of the ${a.hz} Hz asked`);
    if (a.output) console.error(`gdbsx profile: wrote ${a.output} (${a.format}, ${p.samples.length} samples)`);
    return 0;
  } catch (e) {
    if (e instanceof RateError || e instanceof UserError || e instanceof XenError) {
      console.error(`gdbsx profile: ${e.message}`);
      return 1;
    }
    console.error(`gdbsx profile: internal error: ${(e as Error).stack ?? String(e)}`);
    return 3;
  } finally {
    process.removeListener('SIGINT', onSigint);
    target?.close();
  }
}
