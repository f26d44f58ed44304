// The TCP side: listen (127.0.0.1 unless told otherwise), one gdb at a time; each
// connection attaches to the domain (pausing it) and detaches when it ends, so the
// guest runs freely between sessions and a reconnect starts clean.
import net from 'net';
import createDebug from 'debug';
import { Session } from './session';
import { Guest, AttachOptions } from '../vcpu/guest';
import { XenControl } from '../xg/xenctl';
import { frame } from './packet';

const log = createDebug('gdbsx:server');

export interface ServerOptions extends AttachOptions {
  host: string;
  port: number;
  /** Told to each gdb once, with the guest's own notes (e.g. a width given that is not the guest's). */
  notes?: readonly string[];
}

export class GdbServer {
  readonly xc: XenControl;
  readonly domid: number;
  private readonly opts: ServerOptions;
  private server: net.Server | undefined;
  private session: Session | undefined;
  /** Every open socket, so close() does not wait on a peer that never hangs up. */
  private readonly sockets = new Set<net.Socket>();
  /** Called with a one-line message for the user (connects, refusals, errors). */
  onEvent: (msg: string) => void = () => undefined;

  constructor(xc: XenControl, domid: number, opts: ServerOptions) {
    this.xc = xc;
    this.domid = domid;
    this.opts = opts;
  }

  get activeSession(): Session | undefined {
    return this.session;
  }

  /** The address and port actually listened on (a host name resolves to one address). */
  get address(): net.AddressInfo | undefined {
    const a = this.server?.address();
    return a && typeof a === 'object' ? a : undefined;
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      const srv = net.createServer((sock) => this.onConnection(sock));
      srv.once('error', reject);
      srv.listen(this.opts.port, this.opts.host, () => {
        srv.off('error', reject);
        srv.on('error', (e) => this.onEvent(`server error: ${e.message}`));
        this.server = srv;
        resolve((srv.address() as net.AddressInfo).port);
      });
    });
  }

  private onConnection(sock: net.Socket): void {
    this.sockets.add(sock);
    sock.once('close', () => this.sockets.delete(sock));
    const peer = `${sock.remoteAddress}:${sock.remotePort}`;
    if (this.session) {
      // A second debugger would fight the first over the same VCPUs: refuse, visibly.
      this.onEvent(`refused a second connection from ${peer}: domain ${this.domid} is already being debugged`);
      const msg = `gdbsx: domain ${this.domid} is already being debugged by another connection\n`;
      sock.on('error', () => undefined);
      sock.end(Buffer.concat([Buffer.from('+'), frame(Buffer.from('O' + Buffer.from(msg).toString('hex'))), frame(Buffer.from('E16'))]));
      return;
    }
    let guest: Guest;
    try {
      guest = Guest.attach(this.xc, this.domid, this.opts);
    } catch (e) {
      this.onEvent(`cannot attach to domain ${this.domid}: ${(e as Error).message}`);
      sock.on('error', () => undefined);
      sock.end();
      return;
    }
    this.onEvent(`gdb connected from ${peer}; domain ${this.domid} paused (${guest.width}-bit, ${guest.vcpus().length} VCPUs)`);
    this.session = new Session(sock, guest, () => {
      this.session = undefined;
      this.onEvent(`gdb disconnected; domain ${this.domid} detached and running`);
    }, (m) => this.onEvent(m), this.opts.notes);
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
