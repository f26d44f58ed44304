// The TCP side: listen (127.0.0.1 unless told otherwise), one gdb at a time; each
// connection attaches to the domain (pausing it) and detaches when it ends, so the
// guest runs freely between sessions and a reconnect starts clean.
import net from 'net';
import { boundAddress, listenTcp, ListenOptions, replyPollFor } from './listen';
import createDebug from 'debug';
import { Session } from './session';
import { Guest, AttachOptions } from '../vcpu/guest';
import { XenControl } from '../xg/xenctl';
import { frame } from './packet';
import { Framer } from './framer';
import type { XsTransport } from '../xs/transport';
import type { DomainBroker } from './broker';
import { domainOsdata } from './domainServer';
import { DomainLock, attachExclusive } from './domainLock';

const log = createDebug('gdbsx:server');

/**
 * How long a connection that arrives while a session is still open waits for it to end
 * before it is refused. An IDE restarting its debug session connects again as soon as
 * the old socket is closed, before the stub has seen that close; gdb waits 2 s (its
 * remotetimeout) for the first ack, so the wait stays below that.
 */
const RECONNECT_WAIT_MS = 1500;

export interface ServerOptions extends AttachOptions, ListenOptions {
  /** Told to each gdb once, with the guest's own notes (e.g. a width given that is not the guest's). */
  notes?: readonly string[];
  /** The xenstore `monitor info` reads (default: this host's, see src/xs/transport.ts). */
  xenstore?: () => Promise<XsTransport>;
}

export class GdbServer implements DomainBroker {
  readonly xc: XenControl;
  readonly domid: number;
  private readonly opts: ServerOptions;
  private server: net.Server | undefined;
  private session: Session | undefined;
  /** Called when the current session has ended (connections waiting for it). */
  private sessionEnded: (() => void)[] = [];
  /** Every open socket, so close() does not wait on a peer that never hangs up. */
  private readonly sockets = new Set<net.Socket>();
  /** Held while a gdb has the domain attached (see domainLock.ts). */
  private lock: DomainLock | undefined;
  /** Called with a one-line message for the user (connects, refusals, errors). */
  onEvent: (msg: string) => void = () => undefined;

  constructor(xc: XenControl, domid: number, opts: ServerOptions) {
    this.xc = xc;
    this.domid = domid;
    this.opts = opts;
  }

  // As a DomainBroker (extended-remote on `gdbsx -a`): this one domain, again after a kill.
  get fixedDomid(): number {
    return this.domid;
  }

  attach(domid: number): Guest {
    if (domid !== this.domid) throw new Error(`this stub serves domain ${this.domid} only (gdbsx -a ${this.domid}); \`gdbsx serve\` serves any domain`);
    const { guest, lock } = attachExclusive(this.xc, domid, this.opts);
    this.lock = lock;
    return guest;
  }

  released(): void {
    // The connection keeps its place until it ends (one gdb at a time); the domain is free for other stubs.
    this.lock?.release();
    this.lock = undefined;
  }

  osdata(annex: string): Promise<string | undefined> {
    return domainOsdata(this.xc, this.opts.xenstore, annex, this.domid);
  }

  get activeSession(): Session | undefined {
    return this.session;
  }

  /** The address and port actually listened on (a host name resolves to one address). */
  get address(): net.AddressInfo | undefined {
    return boundAddress(this.server);
  }

  async listen(): Promise<number> {
    this.server = await listenTcp(this.opts.port, this.opts.host, (sock) => this.onConnection(sock), (m) => this.onEvent(m));
    return (this.server.address() as net.AddressInfo).port;
  }

  private onConnection(sock: net.Socket): void {
    this.sockets.add(sock);
    sock.once('close', () => this.sockets.delete(sock));
    sock.on('error', () => undefined); // a peer that resets: its session (if any) handles it
    const peer = `${sock.remoteAddress}:${sock.remotePort}`;
    if (!this.session) {
      this.serve(sock, peer);
      return;
    }
    // The previous session may be ending (its close not yet seen here): wait for it,
    // its bytes held meanwhile, then serve; a session that goes on gets the refusal.
    sock.pause();
    const waiting = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), RECONNECT_WAIT_MS);
      this.sessionEnded.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
    void waiting.then(() => {
      if (sock.destroyed) return;
      if (this.session || !this.server) this.refuse(sock, peer);
      else this.serve(sock, peer);
    });
  }

  /**
   * Another connection holds the domain: answer this one's first packet with an error
   * whose text gdb prints ("Remote failure reply: E.gdbsx: ..."), then hang up.
   */
  private refuse(sock: net.Socket, peer: string, why = `domain ${this.domid} is already being debugged by another connection`): void {
    this.onEvent(`refused a connection from ${peer}: ${why}`);
    const msg = `E.gdbsx: ${why}`;
    const framer = new Framer(64 * 1024);
    const hangUp = setTimeout(() => sock.destroy(), 5000);
    sock.on('data', (chunk: Buffer) => {
      if (!framer.push(chunk).some((ev) => ev.type === 'packet')) return;
      sock.end(Buffer.concat([Buffer.from('+'), frame(Buffer.from(msg))]));
      clearTimeout(hangUp);
    });
    sock.once('close', () => clearTimeout(hangUp));
    sock.resume();
  }

  private serve(sock: net.Socket, peer: string): void {
    let guest: Guest;
    try {
      guest = this.attach(this.domid);
    } catch (e) {
      this.refuse(sock, peer, `cannot attach to domain ${this.domid}: ${(e as Error).message}`);
      return;
    }
    this.onEvent(`gdb connected from ${peer}; domain ${this.domid} paused (${guest.width}-bit, ${guest.vcpus().length} VCPUs)`);
    this.session = new Session(sock, guest, () => {
      this.session = undefined;
      this.released();
      this.onEvent(`gdb disconnected; domain ${this.domid} detached and running`);
      // One waiting connection gets the domain; the others see the new session and are refused.
      for (const f of this.sessionEnded.splice(0)) f();
    }, (m) => this.onEvent(m), this.opts.notes);
    this.session.xenstore = this.opts.xenstore;
    this.session.broker = this;
    this.session.replyPoll = replyPollFor(this.opts.pollUs);
    sock.resume(); // held while it waited for the previous session
  }

  /** Stop listening and end any session (detaching the guest: restored and running). */
  close(reason = 'server closing'): Promise<void> {
    this.session?.close(reason);
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => {
      if (!this.server) return resolve();
      this.server.close(() => resolve());
      this.server = undefined;
      log('closed');
    });
  }
}
