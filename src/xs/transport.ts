// How xenstore requests reach xenstored from dom0: its unix socket (when xenstored runs
// in this domain) or the kernel's /dev/xen/xenbus, a character device that takes one
// whole request per write and gives the reply to read. Bytes only: the codec is wire.ts.
import fs from 'fs';
import net from 'net';
import { UserError } from '../xg/errors';
import { XS_HEADER_SIZE, XS_PAYLOAD_MAX, XsFramer, XsMessage, encodeMessage } from './wire';

/** One request at a time: write it, get its reply. */
export interface XsTransport {
  /** What it talks to, for messages ("/dev/xen/xenbus", "the simulated xenstore"). */
  readonly description: string;
  roundTrip(request: XsMessage): Promise<XsMessage>;
  close(): void;
}

/** Where libxenstore looks, in its order (XENSTORED_PATH overrides the socket). */
export function xenstoreCandidates(): string[] {
  const env = process.env.XENSTORED_PATH;
  return [...(env ? [env] : []), '/var/run/xenstored/socket', '/run/xenstored/socket', '/dev/xen/xenbus'];
}

const TIMEOUT_MS = 5000;

function timeoutError(where: string): UserError {
  return new UserError(`xenstore at ${where} did not answer within ${TIMEOUT_MS / 1000} s (is xenstored running?)`);
}

/** xenstored's unix socket. */
class SocketTransport implements XsTransport {
  private readonly framer = new XsFramer();
  private waiting: { resolve: (m: XsMessage) => void; reject: (e: Error) => void } | undefined;
  private failed: Error | undefined;

  private constructor(readonly description: string, private readonly sock: net.Socket) {
    sock.on('data', (d: Buffer) => {
      try {
        for (const m of this.framer.push(d)) this.deliver(m);
      } catch (e) {
        this.fail(e as Error);
      }
    });
    sock.on('error', (e) => this.fail(new UserError(`xenstore socket ${description}: ${e.message}`)));
    sock.on('close', () => this.fail(new UserError(`xenstore socket ${description} closed`)));
  }

  static connect(path: string): Promise<SocketTransport> {
    return new Promise((resolve, reject) => {
      const s = net.createConnection({ path });
      const t = setTimeout(() => { s.destroy(); reject(timeoutError(path)); }, TIMEOUT_MS);
      s.once('connect', () => { clearTimeout(t); resolve(new SocketTransport(path, s)); });
      s.once('error', (e: NodeJS.ErrnoException) => {
        clearTimeout(t);
        reject(new UserError(`cannot reach xenstore at ${path}: ${e.code ?? e.message}${e.code === 'EACCES' ? ' (run as root)' : ''}`));
      });
    });
  }

  private deliver(m: XsMessage): void {
    const w = this.waiting;
    this.waiting = undefined;
    // A reply nobody waits for (a watch event: we set none) is dropped.
    w?.resolve(m);
  }

  private fail(e: Error): void {
    this.failed ??= e;
    const w = this.waiting;
    this.waiting = undefined;
    w?.reject(e);
  }

  roundTrip(request: XsMessage): Promise<XsMessage> {
    if (this.failed) return Promise.reject(this.failed);
    if (this.waiting) return Promise.reject(new Error('xenstore: one request at a time'));
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => this.fail(timeoutError(this.description)), TIMEOUT_MS);
      this.waiting = {
        resolve: (m) => { clearTimeout(t); resolve(m); },
        reject: (e) => { clearTimeout(t); reject(e); },
      };
      this.sock.write(encodeMessage(request));
    });
  }

  close(): void {
    this.failed ??= new UserError('xenstore connection closed');
    this.sock.destroy();
  }
}

/** /dev/xen/xenbus: a whole request per write(); read() gives the reply (possibly in pieces). */
class DeviceTransport implements XsTransport {
  private readonly framer = new XsFramer();
  private busy = false;

  private constructor(readonly description: string, private readonly fh: fs.promises.FileHandle) {}

  static async open(path: string): Promise<DeviceTransport> {
    try {
      return new DeviceTransport(path, await fs.promises.open(path, 'r+'));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new UserError(`cannot open ${path} for xenstore: ${code ?? (e as Error).message}${code === 'EACCES' ? ' (run as root)' : ''}`);
    }
  }

  async roundTrip(request: XsMessage): Promise<XsMessage> {
    if (this.busy) throw new Error('xenstore: one request at a time');
    this.busy = true;
    let timer: NodeJS.Timeout | undefined;
    try {
      const work = (async () => {
        const out = encodeMessage(request);
        const { bytesWritten } = await this.fh.write(out, 0, out.length);
        if (bytesWritten !== out.length) throw new UserError(`${this.description}: short write (${bytesWritten} of ${out.length} bytes)`);
        const buf = Buffer.alloc(XS_HEADER_SIZE + XS_PAYLOAD_MAX);
        for (;;) {
          const { bytesRead } = await this.fh.read(buf, 0, buf.length, null);
          if (bytesRead === 0) throw new UserError(`${this.description}: end of file before the reply`);
          const got = this.framer.push(buf.subarray(0, bytesRead));
          if (got.length) return got[0];
        }
      })();
      // A read that never returns holds a thread of the pool: say so rather than hang.
      const late = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(timeoutError(this.description)), TIMEOUT_MS); });
      return await Promise.race([work, late]);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code) throw new UserError(`xenstore through ${this.description}: ${code}`);
      throw e;
    } finally {
      clearTimeout(timer);
      this.busy = false;
    }
  }

  close(): void {
    void this.fh.close().catch(() => undefined);
  }
}

/**
 * Connect to the real xenstore: `path` if given (a socket or the xenbus device), else
 * the first of xenstoreCandidates() that exists.
 */
export async function openXenStore(path?: string): Promise<XsTransport> {
  const tried = path ? [path] : xenstoreCandidates();
  for (const p of tried) {
    let st: fs.Stats;
    try {
      st = fs.statSync(p);
    } catch {
      continue;
    }
    if (st.isSocket()) return SocketTransport.connect(p);
    // Anything else would get our request bytes written into it (as root, a regular file too).
    if (!st.isCharacterDevice()) throw new UserError(`${p} is not a xenstore: neither a socket nor a character device`);
    return DeviceTransport.open(p);
  }
  throw new UserError(path ? `no xenstore at ${path}: it does not exist`
    : `no xenstore here: none of ${tried.join(', ')} exists (run in dom0 with xenstored running; give --xenstore PATH otherwise)`);
}
