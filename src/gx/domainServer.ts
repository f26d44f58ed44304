// `gdbsx serve`: one port for every guest domain, through gdb's extended-remote mode.
// A connection starts with no domain; `attach <domid>` (vAttach) attaches it as
// `gdbsx -a` would, `detach` and `kill` let it go and keep the connection. Several gdbs
// may connect at once, each debugging its own domains (several per connection with gdb's
// multiprocess: one per inferior); a domain held by one connection is refused to the others.
import net from 'net';
import { boundAddress, listenTcp, ListenOptions, replyPollFor } from './listen';
import createDebug from 'debug';
import { Session } from './session';
import { DomainBroker } from './broker';
import { listDomains, osdataProcesses, osdataTypes } from './domainList';
import { Guest, AttachOptions } from '../vcpu/guest';
import { DomainLock, attachExclusive } from './domainLock';
import { XenControl } from '../xg/xenctl';
import type { XsTransport } from '../xs/transport';

const log = createDebug('gdbsx:serve');

export interface DomainServerOptions extends Omit<AttachOptions, 'width'>, ListenOptions {
  /** The xenstore the domain list and `monitor info` read (default: this host's). */
  xenstore?: () => Promise<XsTransport>;
}

/** The osdata documents for `info os`: every guest domain, or `only` that one. */
export async function domainOsdata(xc: XenControl, xenstore: DomainServerOptions['xenstore'], annex: string, only?: number): Promise<string | undefined> {
  if (annex === '') return osdataTypes();
  if (annex !== 'processes') return undefined;
  const all = await listDomains(xc, xenstore ?? defaultXenstore, only === undefined ? [] : [only]);
  return osdataProcesses(only === undefined ? all : all.filter((d) => d.domid === only));
}

async function defaultXenstore(): Promise<XsTransport> {
  return (await import('../xs/transport')).openXenStore();
}

export class DomainServer implements DomainBroker {
  readonly fixedDomid = undefined;
  private server: net.Server | undefined;
  private readonly sessions = new Set<Session>();
  /** Which connection holds which domain. */
  private readonly owners = new Map<number, { s: object; lock: DomainLock }>();
  private readonly sockets = new Set<net.Socket>();
  /** Called with a one-line message for the user (connects, attaches, refusals). */
  onEvent: (msg: string) => void = () => undefined;

  constructor(readonly xc: XenControl, private readonly opts: DomainServerOptions) {}

  get address(): net.AddressInfo | undefined {
    return boundAddress(this.server);
  }

  /** The open connections (tests look at what each has attached). */
  get activeSessions(): readonly Session[] {
    return [...this.sessions];
  }

  async listen(): Promise<number> {
    this.server = await listenTcp(this.opts.port, this.opts.host, (sock) => this.onConnection(sock), (m) => this.onEvent(m));
    return (this.server.address() as net.AddressInfo).port;
  }

  private onConnection(sock: net.Socket): void {
    this.sockets.add(sock);
    sock.once('close', () => this.sockets.delete(sock));
    sock.on('error', () => undefined);
    const peer = `${sock.remoteAddress}:${sock.remotePort}`;
    this.onEvent(`gdb connected from ${peer} (no domain yet: \`attach <domid>\`)`);
    const s: Session = new Session(sock, undefined, () => {
      this.sessions.delete(s);
      this.onEvent(`gdb from ${peer} disconnected`);
    }, (m) => this.onEvent(m));
    s.xenstore = this.opts.xenstore;
    s.broker = this;
    s.replyPoll = replyPollFor(this.opts.pollUs);
    this.sessions.add(s);
  }

  attach(domid: number, s: object): Guest {
    const owner = this.owners.get(domid);
    if (owner && owner.s !== s) throw new Error(`domain ${domid} is already being debugged by another connection`);
    const { guest, lock } = attachExclusive(this.xc, domid, this.opts);
    this.owners.set(domid, { s, lock });
    log('dom%d attached', domid);
    return guest;
  }

  released(domid: number, s: object): void {
    const owner = this.owners.get(domid);
    if (owner?.s !== s) return;
    this.owners.delete(domid);
    owner.lock.release();
  }

  osdata(annex: string): Promise<string | undefined> {
    return domainOsdata(this.xc, this.opts.xenstore, annex);
  }

  /** Stop listening and end every connection (each detaches its domain: restored and running). */
  close(reason = 'server closing'): Promise<void> {
    for (const s of [...this.sessions]) s.close(reason);
    for (const sock of this.sockets) sock.destroy();
    return new Promise((resolve) => {
      if (!this.server) return resolve();
      this.server.close(() => resolve());
      this.server = undefined;
    });
  }
}
