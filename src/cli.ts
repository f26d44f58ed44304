// Command line: a drop-in for Xen's gdbsx (`-a <domid> <32|64> <port>`,
// `-c <domid> <32|64> [vcpu]`), long forms, and --sim for the simulated Xen.
import fs from 'fs';
import net from 'net';
import path from 'path';
import { runUntilSignal } from './untilSignal';
import yargs from 'yargs';
import createDebug from 'debug';
import { XenControl } from './xg/xenctl';
import type { Backend } from './backend';
import { UserError, XenError } from './xg/errors';
import { Guest } from './vcpu/guest';
import { dumpContexts } from './vcpu/contextDump';
import { GdbServer } from './gx/server';
import { parsePollUs, POLL_US_OPTION } from './cliArgs';

export const PACKAGE_ROOT = path.resolve(__dirname, '..', '..');

interface Parsed {
  mode: 'attach' | 'context';
  domid: number;
  width?: 32 | 64;
  port?: number;
  vcpu?: number;
  host: string;
  sim: boolean;
  simVcpus: number;
  simWidth: 32 | 64;
  simType: 'pv' | 'pvh';
  simXen: 'gdbsx' | 'stock-intel' | 'stock-amd';
  debug: boolean;
  stepTimeout: number;
  /** --poll-us; undefined: the default. */
  pollUs: number | undefined;
  memory: 'pagewalk' | 'gdbsx';
}

function usage(): string {
  return `Usage:
  gdbsx -a <domid> [32|64] <port>     attach to a domain and serve gdb on <port>
  gdbsx -c <domid> [32|64] [vcpu]     print the VCPU context(s) and exit
  gdbsx --sim [-a <domid>] [--port N] serve the built-in simulated Xen and demo guest
  gdbsx serve [--port N] [--sim]      every domain on one port: gdb's target extended-remote, then attach <domid>
  gdbsx info <domid> [--json]         the domain, its VCPUs, devices and event channels
  gdbsx profile <domid> | snapshot <domid> <file>   (see gdbsx profile --help, gdbsx snapshot --help)
  gdbsx --version                     print the version

The guest width (32|64) is detected when left out; a width that does not match
the guest is reported and the guest's own width is served. Then connect with
  gdb -ex 'target remote <host>:<port>'   (load the guest's vmlinux first for symbols)`;
}

/** The package's version, from its package.json. */
export function packageVersion(): string {
  const pkg = JSON.parse(fs.readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version?: string };
  return pkg.version ?? 'unknown';
}

/** Xen's first reserved domain id (DOMID_FIRST_RESERVED): ids from here on are not guests. */
const DOMID_LIMIT = 0x7ff0;
/** VCPUs the simulated demo guest can have. */
const SIM_MAX_VCPUS = 128;

/** What the user typed, as text: yargs' number type turns 'abc' into NaN and loses it. */
function oneValue(v: unknown, opt: string): string | undefined {
  if (v === undefined) return undefined;
  if (Array.isArray(v)) throw new UserError(`${opt} is given more than once`);
  return String(v);
}

function parseDomid(s: string, opt: string): number {
  if (s === '') throw new UserError(`${opt} needs a domain id (see \`xl list\`)`);
  if (!/^\d+$/.test(s) || Number(s) >= DOMID_LIMIT) throw new UserError(`invalid domain id '${s}': give a guest's id as \`xl list\` shows it (0..${DOMID_LIMIT - 1})`);
  return Number(s);
}

function parsePort(s: string, where: string, allowZero: boolean): number {
  const n = /^\d+$/.test(s) ? Number(s) : NaN;
  if (!(n >= 1 && n <= 65535) && !(allowZero && n === 0)) {
    throw new UserError(`invalid port '${s}'${where}: give a TCP port from 1 to 65535${allowZero ? ' (or 0 for any free port)' : ''}`);
  }
  return n;
}

function parseWidth(s: string, form: string): 32 | 64 {
  if (s !== '32' && s !== '64') throw new UserError(`invalid guest width '${s}': give 32 or 64 (${form})`);
  return Number(s) as 32 | 64;
}

/** Thrown for --help and --version: print this on stdout and exit 0. */
class Info {
  constructor(readonly text: string) {}
}

function parse(argv: string[]): Parsed {
  const y = yargs(argv)
    .scriptName('gdbsx')
    .usage(usage())
    .option('attach', { alias: 'a', type: 'string', describe: 'domain id to attach to and serve over TCP' })
    .option('context', { alias: 'c', type: 'string', describe: 'domain id whose VCPU contexts to print' })
    .option('port', { alias: 'p', type: 'string', describe: 'TCP port to listen on, 1-65535 (also accepted positionally, as gdbsx does); 0: any free port' })
    .option('host', { type: 'string', default: '127.0.0.1', describe: 'address to listen on; anything but loopback gives anyone who can reach it full control of the guest' })
    .option('width', { alias: 'w', choices: [32, 64] as const, type: 'number', describe: 'guest width (bits); detected when left out' })
    .option('sim', { type: 'boolean', default: false, describe: 'use the simulated Xen with a demo guest (no Xen needed)' })
    .option('sim-vcpus', { type: 'string', default: '2', describe: `VCPUs of the simulated guest (1-${SIM_MAX_VCPUS})` })
    .option('sim-width', { choices: [32, 64] as const, type: 'number', default: 64, describe: 'width of the simulated guest' })
    .option('sim-xen', { choices: ['gdbsx', 'stock-intel', 'stock-amd'] as const, default: 'gdbsx' as const, describe: 'the simulated hypervisor: built with CONFIG_GDBSX, or stock (without it) on an Intel (monitor trap flag) or AMD CPU' })
    .option('sim-type', { choices: ['pv', 'pvh'] as const, default: 'pv' as const, describe: 'type of the simulated guest' })
    .option('memory', { choices: ['pagewalk', 'gdbsx'] as const, default: 'pagewalk' as const, describe: 'how to reach guest memory: our page walk over mapped guest frames (every Xen), or Xen\'s gdbsx_guestmemio (CONFIG_GDBSX builds; VCPU 0\'s view only)' })
    .option('step-timeout', { type: 'string', default: '2000', describe: 'ms to wait for a single-step that does not trap before pausing the guest' })
    .option('poll-us', POLL_US_OPTION)
    .option('d', { alias: 'debug', type: 'boolean', default: false, describe: 'trace the protocol and hypercalls (same as DEBUG=gdbsx:*)' })
    .conflicts('attach', 'context')
    .strictOptions()
    .help()
    .alias('help', 'h')
    .version('version', 'print the version and exit', `gdbsx ${packageVersion()}`)
    .exitProcess(false)
    .wrap(Math.min(100, process.stdout.columns || 100))
    .fail((msg, err) => {
      throw new UserError(err ? err.message : msg);
    });
  const a = y.parseSync();
  // yargs prints --help and --version itself (exitProcess off: we return); nothing else to do then.
  if (a.help || a.version) throw new Info('');
  const pos = a._.map(String);
  const mode = a.context !== undefined ? 'context' : 'attach';
  const domidText = mode === 'context' ? oneValue(a.context, '-c') : oneValue(a.attach, '-a');
  const portText = oneValue(a.port, '--port');
  let width = a.width as 32 | 64 | undefined;
  let port = portText === undefined ? undefined : parsePort(portText, '', true);
  let vcpu: number | undefined;
  // gdbsx's positional forms: -a <domid> [32|64] <port>, -c <domid> [32|64] [vcpu].
  if (mode === 'attach') {
    const form = 'gdbsx -a <domid> [32|64] <port>';
    if (pos.length >= 2) width = parseWidth(pos.shift() as string, form);
    else if (pos.length === 1 && (pos[0] === '32' || pos[0] === '64')) {
      // `-a 1 64` with the port forgotten: a width, not port 64 (--port 64 says that).
      width = Number(pos.shift()) as 32 | 64;
      if (port === undefined && !a.sim) throw new UserError(`give a TCP port: gdbsx -a <domid> ${width} <port> ('${width}' is the guest width; for port ${width} use --port ${width})`);
    }
    if (pos.length) {
      if (port !== undefined) throw new UserError(`the port is given twice: '${pos[0]}' and --port ${portText}`);
      port = parsePort(pos.shift() as string, '', false);
    }
  } else {
    const form = 'gdbsx -c <domid> [32|64] [vcpu]';
    if (pos.length >= 2) width = parseWidth(pos.shift() as string, form);
    else if (pos.length === 1 && (pos[0] === '32' || pos[0] === '64')) width = Number(pos.shift()) as 32 | 64;
    if (pos.length) {
      const v = pos.shift() as string;
      if (!/^\d+$/.test(v)) throw new UserError(`invalid VCPU '${v}': give a VCPU number (0, 1, ...) (${form})`);
      vcpu = Number(v);
    }
  }
  if (pos.length) throw new UserError(`unexpected argument '${pos[0]}'`);
  if (domidText === undefined && !a.sim) throw new UserError('give a domain: -a <domid> <port> or -c <domid> (or --sim to try the simulated Xen)');
  const domid = domidText === undefined ? undefined : parseDomid(domidText, mode === 'context' ? '-c' : '-a');
  if (mode === 'attach' && port === undefined) {
    if (a.sim) port = 1234;
    else throw new UserError('give a TCP port: gdbsx -a <domid> [32|64] <port>');
  }
  const simVcpusText = oneValue(a['sim-vcpus'], '--sim-vcpus') as string;
  const simVcpus = /^\d+$/.test(simVcpusText) ? Number(simVcpusText) : NaN;
  if (!(simVcpus >= 1 && simVcpus <= SIM_MAX_VCPUS)) throw new UserError(`invalid --sim-vcpus '${simVcpusText}': the simulated guest has 1 to ${SIM_MAX_VCPUS} VCPUs`);
  const stepText = oneValue(a['step-timeout'], '--step-timeout') as string;
  const stepTimeout = /^\d+$/.test(stepText) ? Number(stepText) : NaN;
  if (!(stepTimeout >= 1)) throw new UserError(`invalid --step-timeout '${stepText}': give milliseconds (1 or more)`);
  if (a.host === '') throw new UserError('--host needs an address to listen on, e.g. 127.0.0.1');
  const pollUs = parsePollUs(oneValue(a['poll-us'], '--poll-us'));
  return {
    mode, domid: domid ?? 1, width, port, vcpu, host: a.host, sim: a.sim,
    simVcpus, simWidth: a['sim-width'] as 32 | 64, simType: a['sim-type'], simXen: a['sim-xen'] as Parsed['simXen'],
    debug: a.d, stepTimeout, memory: a.memory as 'pagewalk' | 'gdbsx', pollUs,
  };
}

async function openBackend(p: Parsed): Promise<Backend> {
  if (p.sim) {
    const { startSimDemo } = await import('./simDemo');
    // The demo guest never takes id 0 (that is dom0, which attach refuses, as on Xen).
    const xen = p.simXen === 'gdbsx' ? {} : { gdbsx: false, mtf: p.simXen === 'stock-intel' };
    return startSimDemo({ domid: p.domid === 0 ? 1 : p.domid, vcpus: p.simVcpus, width: p.simWidth, type: p.simType, xen });
  }
  const { PrivcmdHypercalls } = await import('./xg/privcmd');
  const hc = PrivcmdHypercalls.open();
  return { hc, close: () => hc.close() };
}

export async function main(argv: string[]): Promise<number> {
  if (argv[0] === 'snapshot') return (await import('./snapshot/main')).snapshotMain(argv.slice(1));
  if (argv[0] === 'info') return (await import('./info/main')).infoMain(argv.slice(1));
  if (argv[0] === 'serve') return (await import('./serveMain')).serveMain(argv.slice(1));
  if (argv[0] === 'profile') return (await import('./profile/main')).profileMain(argv.slice(1));
  let p: Parsed;
  try {
    p = parse(argv);
  } catch (e) {
    if (e instanceof Info) {
      process.stdout.write(e.text);
      return 0;
    }
    // No arguments at all: the usage. Otherwise one line that says what is wrong.
    console.error(argv.length === 0 ? `gdbsx: ${(e as Error).message}\n\n${usage()}` : `gdbsx: ${(e as Error).message} (see gdbsx --help)`);
    return 2;
  }
  if (p.debug) createDebug.enable(`gdbsx:*${process.env.DEBUG ? ',' + process.env.DEBUG : ''}`);
  let backend: Backend | undefined;
  try {
    backend = await openBackend(p);
    const xc = new XenControl(backend.hc);
    if (p.mode === 'context') {
      // The width is the guest's own: the layout Xen returns depends on it, not on what was typed.
      const g = Guest.attach(xc, p.domid, { memory: p.memory, inspectOnly: true });
      try {
        const w = widthNote(p.width, g.width, 'shown');
        if (w) console.error(`gdbsx: warning: ${w}`);
        if (p.vcpu !== undefined && p.vcpu > g.maxVcpu) {
          throw new UserError(`domain ${p.domid} has no VCPU ${p.vcpu} (its VCPUs are 0${g.maxVcpu > 0 ? `-${g.maxVcpu}` : ''})`);
        }
        process.stdout.write(dumpContexts(g, p.vcpu));
      } finally {
        g.detach();
      }
      backend.close();
      return 0;
    }
    return await serve(p, xc, backend);
  } catch (e) {
    backend?.close();
    if (e instanceof UserError || e instanceof XenError) {
      console.error(`gdbsx: ${e.message}`);
      return 1;
    }
    const err = e as NodeJS.ErrnoException & { hostname?: string };
    if (err.code === 'EADDRINUSE') {
      console.error(`gdbsx: port ${p.port} is already in use on ${p.host}: pick another port`);
      return 1;
    }
    if (err.code === 'EACCES' && err.syscall === 'listen') {
      console.error(`gdbsx: not allowed to listen on ${p.host}:${p.port} (ports below 1024 need root)`);
      return 1;
    }
    if (err.code === 'EADDRNOTAVAIL') {
      console.error(`gdbsx: ${p.host} is not an address of this machine`);
      return 1;
    }
    if (err.code === 'ENOTFOUND' || err.code === 'EAI_AGAIN' || err.code === 'EAI_FAIL' || err.code === 'EAI_NONAME') {
      console.error(`gdbsx: cannot listen on '${p.host}': no such host name (give an address of this machine, e.g. 127.0.0.1)`);
      return 1;
    }
    console.error(`gdbsx: internal error: ${err.stack ?? String(e)}`);
    return 3;
  }
}

/** Said when the width given is not the guest's (the guest's own is used: another would misread its registers). */
function widthNote(given: 32 | 64 | undefined, actual: 32 | 64, how: 'served' | 'shown'): string | undefined {
  if (given === undefined || given === actual) return undefined;
  return `the guest is ${actual}-bit, not ${given}-bit as given: it is ${how} as ${actual}-bit`;
}

/** host:port as gdb takes it (IPv6 in brackets). */
function hostPort(address: string, port: number): string {
  return `${net.isIPv6(address) ? `[${address}]` : address}:${port}`;
}

function isLoopback(address: string): boolean {
  return /^127\./.test(address) || address === '::1' || /^::ffff:127\./i.test(address);
}

/** Check the domain up front (clear errors at start), then serve until a signal. */
async function serve(p: Parsed, xc: XenControl, backend: Backend): Promise<number> {
  // Attach once to validate (exists, not dom0, gdbsx in the hypervisor) and learn the
  // guest's width, then let it run until gdb comes.
  const probe = Guest.attach(xc, p.domid, { memory: p.memory });
  const width = probe.width;
  const nvcpus = probe.vcpus().length;
  const how = `${probe.hvm ? 'HVM/PVH' : 'PV'} guest on a ${probe.build === 'gdbsx' ? 'CONFIG_GDBSX' : 'stock'} hypervisor: ` +
    `memory by ${probe.paths.memory}, run control by ${probe.paths.run}`;
  const notes = [...probe.notes];
  probe.detach();
  const mismatch = widthNote(p.width, width, 'served');

  // Listen before saying anything, so a bad --host or a busy port is the only line printed.
  const server = new GdbServer(xc, p.domid, {
    host: p.host, port: p.port ?? 0, pollUs: p.pollUs, width, stepTimeoutMs: p.stepTimeout, memory: p.memory,
    notes: mismatch ? [`warning: ${mismatch}`] : [],
    xenstore: backend.xenstore,
  });
  server.onEvent = (m) => console.error(`gdbsx: ${m}`);
  const port = await server.listen();
  const address = server.address?.address ?? p.host;
  if (mismatch) console.error(`gdbsx: warning: ${mismatch}`);
  console.error(`gdbsx: ${how}`);
  for (const n of notes) console.error(`gdbsx: note: ${n}`);
  const anyAddress = address === '0.0.0.0' || address === '::';
  if (!isLoopback(address)) {
    console.error(`gdbsx: WARNING: listening on ${hostPort(address, port)}: anyone who can reach port ${port} gets full control of domain ${p.domid}. ` +
      'Prefer the default 127.0.0.1 and an SSH tunnel (see README, "Safety").');
  }
  return runUntilSignal({
    detaching: `detaching from domain ${p.domid} (breakpoints removed, guest running)`,
    close: (sig) => server.close(sig),
    release: () => backend.close(),
    // Only now say where to connect: a script that stops us once it reads this is handled.
    ready: () => {
      const where = anyAddress ? `<this host>:${port}` : hostPort(address, port);
      const file = backend.symbolFile ? `-ex 'file ${backend.symbolFile}' ` : '';
      // One write: a reader that waits for "listening on" then has the connect line too.
      console.log([
        `gdbsx: domain ${p.domid} (${width}-bit, ${nvcpus} VCPU${nvcpus === 1 ? '' : 's'}) on ${backend.hc.kind === 'sim' ? 'the simulated Xen' : 'Xen'}; listening on ${hostPort(address, port)}`,
        `gdbsx: connect with:  gdb ${file}-ex 'target remote ${where}'`,
      ].join('\n'));
    },
  });
}
