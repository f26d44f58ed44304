// Command line: a drop-in for Xen's gdbsx (`-a <domid> <32|64> <port>`,
// `-c <domid> <32|64> [vcpu]`), long forms, and --sim for the simulated Xen.
import path from 'path';
import yargs from 'yargs';
import createDebug from 'debug';
import { XenControl } from './xg/xenctl';
import { Hypercalls } from './xg/hypercalls';
import { UserError, XenError } from './xg/errors';
import { Guest } from './vcpu/guest';
import { dumpContexts } from './vcpu/contextDump';
import { GdbServer } from './gx/server';

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
  memory: 'pagewalk' | 'gdbsx';
}

function usage(): string {
  return `Usage:
  gdbsx -a <domid> [32|64] <port>     attach to a domain and serve gdb on <port>
  gdbsx -c <domid> [32|64] [vcpu]     print the VCPU context(s) and exit
  gdbsx --sim [-a <domid>] [--port N] serve the built-in simulated Xen and demo guest

The guest width (32|64) is detected when left out. Then connect with
  gdb -ex 'target remote <host>:<port>'   (load the guest's vmlinux first for symbols)`;
}

function parse(argv: string[]): Parsed {
  const y = yargs(argv)
    .scriptName('gdbsx')
    .usage(usage())
    .option('attach', { alias: 'a', type: 'number', describe: 'domain id to attach to and serve over TCP' })
    .option('context', { alias: 'c', type: 'number', describe: 'domain id whose VCPU contexts to print' })
    .option('port', { alias: 'p', type: 'number', describe: 'TCP port to listen on (also accepted positionally, as gdbsx does)' })
    .option('host', { type: 'string', default: '127.0.0.1', describe: 'address to listen on; anything but loopback gives anyone who can reach it full control of the guest' })
    .option('width', { alias: 'w', choices: [32, 64] as const, type: 'number', describe: 'guest width (bits); detected when left out' })
    .option('sim', { type: 'boolean', default: false, describe: 'use the simulated Xen with a demo guest (no Xen needed)' })
    .option('sim-vcpus', { type: 'number', default: 2, describe: 'VCPUs of the simulated guest' })
    .option('sim-width', { choices: [32, 64] as const, type: 'number', default: 64, describe: 'width of the simulated guest' })
    .option('sim-xen', { choices: ['gdbsx', 'stock-intel', 'stock-amd'] as const, default: 'gdbsx' as const, describe: 'the simulated hypervisor: built with CONFIG_GDBSX, or stock (without it) on an Intel (monitor trap flag) or AMD CPU' })
    .option('sim-type', { choices: ['pv', 'pvh'] as const, default: 'pv' as const, describe: 'type of the simulated guest' })
    .option('memory', { choices: ['pagewalk', 'gdbsx'] as const, default: 'pagewalk' as const, describe: 'how to reach guest memory: our page walk over mapped guest frames (every Xen), or Xen\'s gdbsx_guestmemio (CONFIG_GDBSX builds; VCPU 0\'s view only)' })
    .option('step-timeout', { type: 'number', default: 2000, describe: 'ms to wait for a single-step that does not trap before pausing the guest' })
    .option('d', { alias: 'debug', type: 'boolean', default: false, describe: 'trace the protocol and hypercalls (same as DEBUG=gdbsx:*)' })
    .conflicts('attach', 'context')
    .strictOptions()
    .help()
    .alias('help', 'h')
    .version(false)
    .wrap(Math.min(100, process.stdout.columns || 100))
    .fail((msg, err) => {
      throw new UserError(err ? err.message : msg);
    });
  const a = y.parseSync();
  const pos = a._.map(String);
  const num = (s: string, what: string) => {
    if (!/^\d+$/.test(s)) throw new UserError(`${what} must be a number, got '${s}'`);
    return Number(s);
  };
  let width = a.width as 32 | 64 | undefined;
  // gdbsx's positional forms: -a <domid> <32|64> <port>, -c <domid> <32|64> [vcpu].
  const takeWidth = () => {
    if (pos.length && (pos[0] === '32' || pos[0] === '64')) width = Number(pos.shift()) as 32 | 64;
  };
  const mode = a.context !== undefined ? 'context' : 'attach';
  let port = a.port;
  let vcpu: number | undefined;
  if (mode === 'attach') {
    if (pos.length >= 2) takeWidth();
    if (pos.length) port = num(pos.shift() as string, 'port');
  } else {
    takeWidth();
    if (pos.length) vcpu = num(pos.shift() as string, 'vcpu');
  }
  if (pos.length) throw new UserError(`unexpected argument '${pos[0]}'`);
  const domidArg = mode === 'context' ? a.context : a.attach;
  if (domidArg === undefined && !a.sim) throw new UserError('give a domain: -a <domid> <port> or -c <domid> (or --sim to try the simulated Xen)');
  if (domidArg !== undefined && (!Number.isInteger(domidArg) || domidArg < 0)) throw new UserError(`invalid domain id '${domidArg}'`);
  if (mode === 'attach' && port === undefined) {
    if (a.sim) port = 1234;
    else throw new UserError('give a TCP port: gdbsx -a <domid> [32|64] <port>');
  }
  if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535)) throw new UserError(`invalid port '${port}'`);
  return {
    mode, domid: domidArg ?? 1, width, port, vcpu, host: a.host, sim: a.sim,
    simVcpus: a['sim-vcpus'], simWidth: a['sim-width'] as 32 | 64, simType: a['sim-type'], simXen: a['sim-xen'] as Parsed['simXen'],
    debug: a.d, stepTimeout: a['step-timeout'], memory: a.memory as 'pagewalk' | 'gdbsx',
  };
}

export interface Backend {
  hc: Hypercalls;
  /** Demo ELF for the simulated guest (for the gdb `file` hint). */
  symbolFile?: string;
  close(): void;
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
  if (argv[0] === 'profile') return (await import('./profile/main')).profileMain(argv.slice(1));
  let p: Parsed;
  try {
    p = parse(argv);
  } catch (e) {
    console.error(`gdbsx: ${(e as Error).message}\n\n${usage()}`);
    return 2;
  }
  if (p.debug) createDebug.enable(`gdbsx:*${process.env.DEBUG ? ',' + process.env.DEBUG : ''}`);
  let backend: Backend | undefined;
  try {
    backend = await openBackend(p);
    const xc = new XenControl(backend.hc);
    if (p.mode === 'context') {
      const g = Guest.attach(xc, p.domid, { width: p.width, memory: p.memory, inspectOnly: true });
      try {
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
    const err = e as NodeJS.ErrnoException;
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
    console.error(`gdbsx: internal error: ${err.stack ?? String(e)}`);
    return 3;
  }
}

/** Check the domain up front (clear errors at start), then serve until a signal. */
async function serve(p: Parsed, xc: XenControl, backend: Backend): Promise<number> {
  // Attach once to validate (exists, not dom0, gdbsx in the hypervisor), then let it run until gdb comes.
  const probe = Guest.attach(xc, p.domid, { width: p.width, memory: p.memory });
  const width = probe.width;
  const nvcpus = probe.vcpus().length;
  const how = `${probe.hvm ? 'HVM/PVH' : 'PV'} guest on a ${probe.build === 'gdbsx' ? 'CONFIG_GDBSX' : 'stock'} hypervisor: ` +
    `memory by ${probe.paths.memory}, run control by ${probe.paths.run}`;
  const notes = [...probe.notes];
  probe.detach();
  console.error(`gdbsx: ${how}`);
  for (const n of notes) console.error(`gdbsx: note: ${n}`);

  const server = new GdbServer(xc, p.domid, { host: p.host, port: p.port ?? 0, width, stepTimeoutMs: p.stepTimeout, memory: p.memory });
  server.onEvent = (m) => console.error(`gdbsx: ${m}`);
  const port = await server.listen();
  const loopback = p.host === '127.0.0.1' || p.host === 'localhost' || p.host === '::1';
  if (!loopback) {
    console.error(`gdbsx: WARNING: listening on ${p.host}: anyone who can reach port ${port} gets full control of domain ${p.domid}. ` +
      'Prefer the default 127.0.0.1 and an SSH tunnel (see README, "Safety").');
  }
  const where = loopback ? '127.0.0.1' : p.host === '0.0.0.0' ? '<this host>' : p.host;
  console.log(`gdbsx: domain ${p.domid} (${width}-bit, ${nvcpus} VCPU${nvcpus === 1 ? '' : 's'}) on ${backend.hc.kind === 'sim' ? 'the simulated Xen' : 'Xen'}; listening on ${p.host}:${port}`);
  const file = backend.symbolFile ? `-ex 'file ${backend.symbolFile}' ` : '';
  console.log(`gdbsx: connect with:  gdb ${file}-ex 'target remote ${where}:${port}'`);

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (sig: string) => {
      if (stopping) return;
      stopping = true;
      console.error(`gdbsx: ${sig}: detaching from domain ${p.domid} (breakpoints removed, guest running)`);
      void server.close(sig).then(() => {
        backend.close();
        resolve(0);
      });
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGHUP', () => stop('SIGHUP'));
    // A bug of ours must not leave the guest paused, with our int3s or a monitor ring behind.
    process.once('uncaughtException', (e) => {
      console.error(`gdbsx: internal error: ${e.stack ?? String(e)}`);
      stop('internal error');
    });
  });
}
