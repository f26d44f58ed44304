// `gdbsx info <domid>`: the domain, its VCPUs, its devices and event channels, as text
// or JSON (--json), without gdb. Reads only.
import yargs from 'yargs';
import { subcommandParser } from '../cliArgs';
import createDebug from 'debug';
import { XenControl } from '../xg/xenctl';
import { Hypercalls } from '../xg/hypercalls';
import { UserError, XenError } from '../xg/errors';
import { lookupGuest } from '../vcpu/lookup';
import { XsClient } from '../xs/client';
import { XsTransport, openXenStore } from '../xs/transport';
import { XsError } from '../xs/wire';
import { collectInfo } from './collect';
import { INFO_SECTIONS, InfoSection, infoText } from './format';

interface Args {
  domid: number;
  json: boolean;
  sections: InfoSection[];
  sim: boolean;
  simVcpus: number;
  simType: 'pv' | 'pvh';
  xenstore?: string;
  debug: boolean;
}

const USAGE = `Usage: gdbsx info <domid> [domain|vcpus|devices|evtchn ...] [--json]

Shows a guest as Xen and its toolstack see it: the domain (type, width, state, memory,
CPU time), each VCPU (state, physical CPU, CPU time, affinity), its virtual devices
from xenstore (frontend and backend paths and states, MACs, bridges, backing disks)
and its event channels (EVTCHNOP_status, named from xenstore). Reads only: nothing is
paused, but for an HVM/PVH guest's width Xen pauses it while it copies one VCPU's CPU
record.`;

function parse(argv: string[]): Args {
  const a = subcommandParser(yargs(argv)
    .scriptName('gdbsx info')
    .usage(USAGE)
    .wrap(Math.min(100, process.stdout.columns || 100))
    .option('json', { type: 'boolean', default: false, describe: 'one JSON object on stdout, for scripts' })
    .option('xenstore', { type: 'string', describe: 'xenstored\'s socket or the xenbus device to use (default: XENSTORED_PATH, /var/run/xenstored/socket, then /dev/xen/xenbus; with --sim, the simulated one)' })
    .option('sim', { type: 'boolean', default: false, describe: 'the simulated demo guest (domain 1) of `gdbsx --sim`' })
    .option('sim-vcpus', { type: 'number', default: 2, hidden: true })
    .option('sim-type', { choices: ['pv', 'pvh'] as const, default: 'pv' as const, hidden: true })
    .option('d', { alias: 'debug', type: 'boolean', default: false, describe: 'trace hypercalls (DEBUG=gdbsx:*)' }))
    .parseSync();
  const pos = a._.map(String);
  let domid = 1;
  if (pos.length && /^\d+$/.test(pos[0])) {
    domid = Number(pos.shift());
  } else if (pos.length && !(INFO_SECTIONS as readonly string[]).includes(pos[0])) {
    throw new UserError(`invalid domain id '${pos[0]}': give a guest's id as \`xl list\` shows it`);
  } else if (!a.sim) {
    throw new UserError('give a domain id: gdbsx info <domid> (see `xl list`), or --sim');
  }
  for (const s of pos) if (!(INFO_SECTIONS as readonly string[]).includes(s)) throw new UserError(`unknown section '${s}': give ${INFO_SECTIONS.join(', ')}`);
  if (!Number.isInteger(a['sim-vcpus']) || a['sim-vcpus'] < 1 || a['sim-vcpus'] > 128) throw new UserError('--sim-vcpus must be 1 to 128');
  return {
    domid, json: a.json, sections: pos.length ? pos as InfoSection[] : [...INFO_SECTIONS], sim: a.sim, simVcpus: a['sim-vcpus'],
    simType: a['sim-type'] as 'pv' | 'pvh', xenstore: a.xenstore, debug: a.d,
  };
}

interface Target {
  hc: Hypercalls;
  /** The xenstore to use (the simulated one with --sim). */
  xenstore(): Promise<XsTransport>;
  close(): void;
}

async function openTarget(a: Args): Promise<Target> {
  if (a.sim) {
    // The simulated guest is always domain 1; another id given with --sim does not exist, as on Xen.
    const { startSimDemo } = await import('../simDemo');
    const demo = startSimDemo({ domid: 1, vcpus: a.simVcpus, width: 64, type: a.simType });
    // Let the demo run a moment, as a guest found running would have (CPU time to show).
    await new Promise((r) => setTimeout(r, 200));
    return { hc: demo.hc, xenstore: async () => (a.xenstore ? openXenStore(a.xenstore) : demo.sim.xenstore.transport()), close: () => demo.close() };
  }
  const { PrivcmdHypercalls } = await import('../xg/privcmd');
  const hc = PrivcmdHypercalls.open();
  return { hc, xenstore: () => openXenStore(a.xenstore), close: () => hc.close() };
}

export async function infoMain(argv: string[]): Promise<number> {
  let a: Args;
  try {
    a = parse(argv);
  } catch (e) {
    console.error(`gdbsx info: ${(e as Error).message}`);
    return 2;
  }
  if (a.debug) createDebug.enable(`gdbsx:*${process.env.DEBUG ? ',' + process.env.DEBUG : ''}`);
  let target: Target | undefined;
  let xs: XsClient | undefined;
  try {
    target = await openTarget(a);
    const xc = new XenControl(target.hc);
    const info = lookupGuest(xc, a.domid, 'dom0 is the control domain this runs in: give a guest\'s domain id (`xl list`)');
    // Without xenstore there is no name and no devices: say so and stop, rather than print half.
    xs = new XsClient(await target.xenstore());
    const view = await collectInfo(xc, info, xs);
    if (view.xenstoreError) throw new UserError(`cannot read domain ${a.domid}'s xenstore entries: ${view.xenstoreError}`);
    if (a.json) {
      const pick = Object.fromEntries(Object.entries(view).filter(([k]) => k === 'domain' ||
        (k === 'vcpus' && a.sections.includes('vcpus')) || (k === 'devices' && a.sections.includes('devices')) || (k.startsWith('eventChannels') && a.sections.includes('evtchn'))));
      process.stdout.write(JSON.stringify(pick, null, 2) + '\n');
    } else {
      process.stdout.write(infoText(view, a.sections));
    }
    return 0;
  } catch (e) {
    if (e instanceof UserError || e instanceof XenError || e instanceof XsError) {
      console.error(`gdbsx info: ${e.message}`);
      return 1;
    }
    console.error(`gdbsx info: internal error: ${(e as Error).stack ?? String(e)}`);
    return 3;
  } finally {
    xs?.close();
    target?.close();
  }
}
