// `gdbsx serve [--port P] [--host H] [--sim]`: every guest domain through one port, with
// gdb's `target extended-remote` (see src/gx/domainServer.ts and src/gx/extended.ts).
import net from 'net';
import path from 'path';
import { runUntilSignal } from './untilSignal';
import yargs from 'yargs';
import { parsePollUs, POLL_US_OPTION, subcommandParser } from './cliArgs';
import createDebug from 'debug';
import { XenControl } from './xg/xenctl';
import { Hypercalls } from './xg/hypercalls';
import { UserError, XenError } from './xg/errors';
import type { XsTransport } from './xs/transport';
import { DomainServer } from './gx/domainServer';

const USAGE = `Usage: gdbsx serve [--port P] [--host H] [--sim]

Serves every guest domain of this host on one port, through gdb's extended-remote
mode: no domain is attached until gdb asks.
  gdb vmlinux -ex 'target extended-remote 127.0.0.1:P'
  (gdb) info os processes      the domains (pid = domain id)
  (gdb) attach 5               attach domain 5 as \`gdbsx -a 5\` does (paused)
  (gdb) detach                 let it run on; attach another
  (gdb) add-inferior           several at once: one inferior each
  (gdb) inferior 2             (gdb's multiprocess; \`detach\` then lets go of
  (gdb) attach 7                that inferior's domain only)
\`kill\` never destroys a domain: it detaches and leaves it running. \`run\` is refused
(start a domain with \`xl create\`, then attach it).`;

interface Args {
  port: number;
  host: string;
  sim: boolean;
  simXen: 'gdbsx' | 'stock-intel' | 'stock-amd';
  memory: 'pagewalk' | 'gdbsx';
  stepTimeout: number;
  pollUs: number | undefined;
  debug: boolean;
}

function parse(argv: string[]): Args {
  const a = subcommandParser(yargs(argv)
    .scriptName('gdbsx serve')
    .usage(USAGE)
    .wrap(Math.min(100, process.stdout.columns || 100))
    .option('port', { alias: 'p', type: 'string', default: '1234', describe: 'TCP port to listen on, 1-65535; 0: any free port' })
    .option('host', { type: 'string', default: '127.0.0.1', describe: 'address to listen on; anything but loopback gives anyone who can reach it full control of every guest' })
    .option('sim', { type: 'boolean', default: false, describe: 'the simulated Xen with two demo guests (domain 1: 64-bit PV, 2 VCPUs; domain 2: 32-bit PV, 1 VCPU)' })
    .option('sim-xen', { choices: ['gdbsx', 'stock-intel', 'stock-amd'] as const, default: 'gdbsx' as const, describe: 'the simulated hypervisor (see gdbsx --help)' })
    .option('memory', { choices: ['pagewalk', 'gdbsx'] as const, default: 'pagewalk' as const, describe: 'how to reach guest memory (see gdbsx --help)' })
    .option('step-timeout', { type: 'string', default: '2000', describe: 'ms to wait for a single-step that does not trap before pausing the guest' })
    .option('poll-us', POLL_US_OPTION)
    .option('d', { alias: 'debug', type: 'boolean', default: false, describe: 'trace the protocol and hypercalls (DEBUG=gdbsx:*)' }))
    .strictCommands()
    .parseSync();
  if (a._.length) throw new UserError(`unexpected '${String(a._[0])}': gdbsx serve takes no domain id (gdb attaches one: \`attach <domid>\`)`);
  const port = /^\d+$/.test(a.port) ? Number(a.port) : NaN;
  if (!(port >= 0 && port <= 65535)) throw new UserError(`invalid port '${a.port}': give 1-65535 (0: any free port)`);
  const step = /^\d+$/.test(a['step-timeout']) ? Number(a['step-timeout']) : NaN;
  if (!(step >= 1)) throw new UserError(`invalid --step-timeout '${a['step-timeout']}': give milliseconds (1 or more)`);
  if (a.host === '') throw new UserError('--host needs an address to listen on, e.g. 127.0.0.1');
  const pollUs = parsePollUs(a['poll-us']);
  return { port, host: a.host, sim: a.sim, simXen: a['sim-xen'], memory: a.memory, stepTimeout: step, pollUs, debug: a.d };
}

interface Target {
  hc: Hypercalls;
  xenstore?: () => Promise<XsTransport>;
  /** What gdb should load for each simulated domain. */
  files: string[];
  close(): void;
}

async function openTarget(a: Args): Promise<Target> {
  if (!a.sim) {
    const { PrivcmdHypercalls } = await import('./xg/privcmd');
    const hc = PrivcmdHypercalls.open();
    return { hc, files: [], close: () => hc.close() };
  }
  const { startSimDemo, demoImage } = await import('./simDemo');
  const xen = a.simXen === 'gdbsx' ? {} : { gdbsx: false, mtf: a.simXen === 'stock-intel' };
  const demo = startSimDemo({ domid: 1, vcpus: 2, width: 64, type: 'pv', xen });
  // A second demo domain, so that there is a choice to list and attach.
  demo.sim.createDomain({ domid: 2, name: 'demo32', vcpus: 1, width: 32, type: 'pv', image: demoImage(32) });
  const rel = (f: string) => path.relative(process.cwd(), f) || f;
  return { hc: demo.hc, xenstore: demo.xenstore, files: [`domain 1: ${rel(demoImage(64))}`, `domain 2: ${rel(demoImage(32))}`], close: demo.close };
}

function hostPort(address: string, port: number): string {
  return `${net.isIPv6(address) ? `[${address}]` : address}:${port}`;
}

export async function serveMain(argv: string[]): Promise<number> {
  let a: Args;
  try {
    a = parse(argv);
  } catch (e) {
    console.error(`gdbsx serve: ${(e as Error).message} (see gdbsx serve --help)`);
    return 2;
  }
  if (a.debug) createDebug.enable(`gdbsx:*${process.env.DEBUG ? ',' + process.env.DEBUG : ''}`);
  let target: Target | undefined;
  try {
    target = await openTarget(a);
    const xc = new XenControl(target.hc);
    const server = new DomainServer(xc, { host: a.host, port: a.port, pollUs: a.pollUs, memory: a.memory, stepTimeoutMs: a.stepTimeout, xenstore: target.xenstore });
    server.onEvent = (m) => console.error(`gdbsx: ${m}`);
    const port = await server.listen();
    const address = server.address?.address ?? a.host;
    if (!/^127\./.test(address) && address !== '::1') {
      console.error(`gdbsx: WARNING: listening on ${hostPort(address, port)}: anyone who can reach port ${port} gets full control of every guest domain.`);
    }
    const t = target;
    return await runUntilSignal({
      detaching: 'detaching every attached domain (breakpoints removed, guests running)',
      close: (sig) => server.close(sig),
      release: () => t.close(),
      ready: () => {
        // One write: a reader that waits for "listening on" then has the connect line too.
        console.log([
          `gdbsx: serving the guest domains of ${t.hc.kind === 'sim' ? 'the simulated Xen' : 'Xen'}; listening on ${hostPort(address, port)}`,
          ...t.files.map((f) => `gdbsx: symbols for ${f}`),
          `gdbsx: connect with:  gdb -ex 'target extended-remote ${hostPort(address, port)}' -ex 'info os processes' -ex 'attach <domid>'`,
        ].join('\n'));
      },
    });
  } catch (e) {
    target?.close();
    if (e instanceof UserError || e instanceof XenError) {
      console.error(`gdbsx: ${e.message}`);
      return 1;
    }
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'EADDRINUSE') {
      console.error(`gdbsx: port ${a.port} is already in use on ${a.host}: pick another port`);
      return 1;
    }
    console.error(`gdbsx: internal error: ${err.stack ?? String(e)}`);
    return 3;
  }
}
