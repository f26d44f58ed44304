// `gdbsx snapshot <domid> <file>`: a live snapshot of a guest as an ELF core (gdb, crash).
import yargs from 'yargs';
import createDebug from 'debug';
import { XenControl } from '../xg/xenctl';
import { Hypercalls } from '../xg/hypercalls';
import { UserError, XenError } from '../xg/errors';
import { SnapshotResult, snapshotDomain } from './snapshot';
import { ProgressView } from './progress';

interface Args {
  domid: number;
  file: string;
  sim: boolean;
  simVcpus: number;
  simType: 'pv' | 'pvh';
  simMem: number;
  simShadowPaging: boolean;
  maxRounds: number;
  minDirty: number;
  debug: boolean;
}

const USAGE = `Usage: gdbsx snapshot <domid> <file> [options]

Writes a consistent ELF core of a running guest to <file>: its memory is copied while
it runs (Xen's log-dirty mode), then the guest is paused for the last few pages and the
VCPU registers only. Open it with \`gdb vmlinux <file>\` or \`crash vmlinux <file>\`.`;

function parse(argv: string[]): Args {
  const a = yargs(argv)
    .scriptName('gdbsx snapshot')
    .usage(USAGE)
    .option('sim', { type: 'boolean', default: false, describe: 'snapshot the simulated guest (domain 1) of `gdbsx --sim`' })
    .option('sim-vcpus', { type: 'number', default: 2, describe: 'VCPUs of the simulated guest' })
    .option('sim-type', { choices: ['pv', 'pvh'] as const, default: 'pv' as const, describe: 'type of the simulated guest' })
    .option('sim-mem', { type: 'number', default: 64, describe: 'MiB of the simulated guest (32..1024)' })
    .option('sim-shadow-paging', { type: 'boolean', default: true, describe: 'the simulated Xen has CONFIG_SHADOW_PAGING (--no-sim-shadow-paging: PV log-dirty refused)' })
    .option('max-rounds', { type: 'number', default: 5, describe: 'pre-copy rounds after the first full copy' })
    .option('min-dirty', { type: 'number', default: 50, describe: 'pause for the last round once fewer pages than this are dirty' })
    .option('d', { alias: 'debug', type: 'boolean', default: false, describe: 'trace hypercalls (DEBUG=gdbsx:*)' })
    .strictOptions()
    .help()
    .alias('help', 'h')
    .version(false)
    .fail((msg, err) => {
      throw new UserError(err ? err.message : msg);
    })
    .parseSync();
  const pos = a._.map(String);
  if (a.sim && pos.length === 1) pos.unshift('1');
  if (pos.length !== 2) throw new UserError('give a domain and a file: gdbsx snapshot <domid> <file>');
  if (!/^\d+$/.test(pos[0])) throw new UserError(`domain id must be a number, got '${pos[0]}'`);
  for (const [k, v] of [['max-rounds', a['max-rounds']], ['min-dirty', a['min-dirty']]] as const) {
    if (!Number.isInteger(v) || v < 0) throw new UserError(`--${k} must be a whole number`);
  }
  return {
    domid: Number(pos[0]), file: pos[1], sim: a.sim, simVcpus: a['sim-vcpus'], simType: a['sim-type'], simMem: a['sim-mem'],
    simShadowPaging: a['sim-shadow-paging'], maxRounds: a['max-rounds'], minDirty: a['min-dirty'], debug: a.d,
  };
}

const mib = (b: number) => `${(b / 1048576).toFixed(1)} MiB`;

/** The summary the user reads (stdout). */
export function summary(r: SnapshotResult): string {
  const lines = [
    `gdbsx: snapshot of a ${r.hvm ? 'HVM/PVH' : 'PV'} ${r.width}-bit guest written to ${r.file}`,
    `gdbsx:   method: ${r.method}${r.fallbackReason ? ` (${r.fallbackReason})` : ''}`,
    `gdbsx:   guest paused ${r.pausedMs.toFixed(2)} ms${r.method === 'already stopped' ? ' (it was stopped already)' : ''}; total ${r.totalMs.toFixed(0)} ms`,
    `gdbsx:   ${r.rounds.length} round${r.rounds.length === 1 ? '' : 's'}: ${r.rounds.map((x) => `${x.pages}${x.paused ? ' (paused)' : ''}`).join(', ')} pages; ` +
      `${r.pagesCopied} pages copied, ${r.pagesWhilePaused} while paused; guest memory ${r.guestPages} pages`,
    `gdbsx:   file: ${mib(r.size)} (${mib(r.allocated)} on disk: zero pages are holes), ${r.vcpus} VCPU${r.vcpus === 1 ? '' : 's'}, ${r.segments} memory segments`,
  ];
  const off = r.vmcoreinfo?.get('KERNELOFFSET');
  if (r.vmcoreinfo) lines.push(`gdbsx:   VMCOREINFO found: ${r.vmcoreinfo.get('OSRELEASE') ?? '?'} (crash reads phys_base and KASLR from it)`);
  if (off !== undefined && /^[0-9a-f]+$/i.test(off) && BigInt('0x' + off) !== 0n) {
    lines.push(`gdbsx:   KASLR offset 0x${off}: in gdb, load the symbols with  symbol-file vmlinux -o 0x${off}`);
  } else if (off !== undefined) {
    lines.push('gdbsx:   no KASLR offset: gdb vmlinux <file> as it is');
  } else if (r.kernelText) {
    lines.push(`gdbsx:   kernel image mapped from 0x${r.kernelText.va.toString(16)} (physical 0x${r.kernelText.pa.toString(16)}): ` +
      'if vmlinux\'s _text differs (KASLR), load it with  symbol-file vmlinux -o <the difference>');
  }
  lines.push(`gdbsx: open it with:  gdb vmlinux ${r.file}   (or: crash vmlinux ${r.file})`);
  return lines.join('\n') + '\n';
}

export async function snapshotMain(argv: string[]): Promise<number> {
  let a: Args;
  try {
    a = parse(argv);
  } catch (e) {
    console.error(`gdbsx snapshot: ${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (a.debug) createDebug.enable(`gdbsx:*${process.env.DEBUG ? ',' + process.env.DEBUG : ''}`);
  let hc: Hypercalls | undefined;
  let close = () => undefined as void;
  let simState: (() => object) | undefined;
  const ac = new AbortController();
  const onSignal = (sig: NodeJS.Signals) => ac.abort(sig);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const view = new ProgressView(process.stderr);
  try {
    if (a.sim) {
      const { startSimDemo } = await import('../simDemo');
      const demo = startSimDemo({ domid: a.domid === 0 ? 1 : a.domid, vcpus: a.simVcpus, width: 64, type: a.simType, memMiB: a.simMem, xen: { shadowPaging: a.simShadowPaging } });
      hc = demo.hc;
      close = () => demo.close();
      simState = () => {
        const s = demo.sim.domainState(demo.domid);
        return { logDirty: s.logDirty, controllerPauseCount: s.controllerPauseCount };
      };
      if (a.domid === 0) a.domid = demo.domid;
    } else {
      const { PrivcmdHypercalls } = await import('../xg/privcmd');
      const p = PrivcmdHypercalls.open();
      hc = p;
      close = () => p.close();
    }
    const xc = new XenControl(hc);
    const r = await snapshotDomain(xc, a.domid, a.file, { maxRounds: a.maxRounds, minDirty: a.minDirty, signal: ac.signal, onProgress: (p) => view.update(p) });
    view.end();
    process.stdout.write(summary(r));
    return 0;
  } catch (e) {
    view.end();
    if (e instanceof UserError || e instanceof XenError) {
      console.error(`gdbsx snapshot: ${e.message}`);
      return 1;
    }
    console.error(`gdbsx snapshot: internal error: ${(e as Error).stack ?? String(e)}`);
    return 3;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    // Tests of the exit paths: what the snapshot left in the simulated Xen.
    if (simState && process.env.GDBSX_SIM_EXIT_REPORT) process.stdout.write(`snapshot-sim-exit ${JSON.stringify(simState())}\n`);
    close();
  }
}
