// The one raw RSP client of the tests and the benchmark: it speaks the framing itself
// so tests can send exactly the bytes they want (including malformed ones), and it
// times round trips for the bench (`exchange`, which also serves a plain echo server).
import net from 'net';
import { performance } from 'perf_hooks';
import { checksum, frame, rleDecode } from '../../src/gx/packet';

/** Whether what arrived since a send (its chunks and their total size) is the whole answer. */
export type Until = (chunks: Buffer[], size: number) => boolean;

/** A reply packet is complete at '#' + 2 checksum digits (payloads never hold '#': RLE, hex). */
export function packetDone(chunks: Buffer[], size: number): boolean {
  if (size < 4) return false;
  const last = chunks[chunks.length - 1];
  const tail = last.length >= 3 ? last.subarray(last.length - 3) : Buffer.concat(chunks).subarray(size - 3);
  return tail[0] === 0x23;
}

export class RspClient {
  private readonly sock: net.Socket;
  // Kept as chunks, joined only when parsed: a timed bulk transfer copies nothing.
  private chunks: Buffer[] = [];
  private size = 0;
  private waiters: (() => void)[] = [];
  noAck = false;
  closed = false;

  private constructor(sock: net.Socket) {
    this.sock = sock;
    sock.on('data', (d: Buffer) => {
      this.chunks.push(d);
      this.size += d.length;
      this.waiters.splice(0).forEach((w) => w());
    });
    sock.on('close', () => {
      this.closed = true;
      this.waiters.splice(0).forEach((w) => w());
    });
    sock.on('error', () => undefined);
  }

  /** Connect to 127.0.0.1:`port`; with `retryMs`, retry refused connections that long. */
  static connect(port: number, o: { retryMs?: number } = {}): Promise<RspClient> {
    const end = Date.now() + (o.retryMs ?? 0);
    const attempt = (): Promise<RspClient> => new Promise<RspClient>((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(new RspClient(s)));
      s.setNoDelay(true); // an ack and the next request go out at once, as gdb's do
      s.once('error', reject);
    }).catch(async (e: Error) => {
      if (Date.now() > end) throw e;
      await new Promise((r) => setTimeout(r, 300));
      return attempt();
    });
    return attempt();
  }

  /** Connect and do what gdb does first: multiprocess + swbreak, then no-ack mode. */
  static async session(port: number, timeoutMs = 5000): Promise<RspClient> {
    const c = await RspClient.connect(port);
    await c.request('qSupported:multiprocess+;swbreak+', timeoutMs);
    await c.request('QStartNoAckMode', timeoutMs);
    c.noAck = true;
    return c;
  }

  writeRaw(b: Buffer | string): void {
    this.sock.write(b);
  }

  /** Everything received and not yet parsed, as one buffer. */
  get received(): Buffer {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0] ?? Buffer.alloc(0);
  }

  private keep(rest: Buffer): void {
    this.chunks = rest.length ? [rest] : [];
    this.size = rest.length;
  }

  /** Next complete packet's payload (RLE decoded), skipping acks. */
  async readPacket(timeoutMs = 5000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const buf = this.received;
      const start = buf.indexOf(0x24);
      if (start < 0 && buf.length) this.keep(Buffer.alloc(0)); // only acks so far
      if (start >= 0) {
        const hash = buf.indexOf(0x23, start);
        if (hash >= 0 && buf.length >= hash + 3) {
          const payload = buf.subarray(start + 1, hash);
          const cs = parseInt(buf.subarray(hash + 1, hash + 3).toString(), 16);
          this.keep(buf.subarray(hash + 3));
          if (cs !== checksum(payload)) throw new Error(`bad checksum from stub on ${payload.toString('latin1').slice(0, 60)}`);
          if (!this.noAck) this.sock.write('+');
          return rleDecode(payload).toString('latin1');
        }
      }
      if (this.closed) throw new Error('connection closed');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('timed out waiting for a packet');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
  }

  /** Send a packet and return the reply, skipping 'O' console packets. */
  async request(payload: string | Buffer, timeoutMs = 5000): Promise<string> {
    this.sock.write(frame(typeof payload === 'string' ? Buffer.from(payload, 'latin1') : payload));
    for (;;) {
      const r = await this.readPacket(timeoutMs);
      if (r.startsWith('O') && r.length > 1 && /^O[0-9a-f]+$/.test(r) && !/^OK$/.test(r)) continue;
      return r;
    }
  }

  /**
   * For timing: drop unread input, send `data` as is, and resolve with the ms until
   * `until` says the answer is complete (checked as each chunk arrives). The answer
   * stays buffered (`received`, `readPacket`) until the next exchange.
   */
  exchange(data: Buffer | string, until: Until, timeoutMs = 30000): Promise<number> {
    this.keep(Buffer.alloc(0));
    return new Promise((resolve, reject) => {
      const t0 = performance.now();
      const check = (): void => {
        if (until(this.chunks, this.size)) {
          clearTimeout(timer);
          resolve(performance.now() - t0);
        } else this.waiters.push(check);
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== check);
        reject(new Error('timed out'));
      }, timeoutMs);
      this.waiters.push(check);
      this.sock.write(data);
    });
  }

  /** A timed request: ms until its whole reply packet is in (not parsed; see readPacket). */
  timed(payload: string, timeoutMs?: number): Promise<number> {
    return this.exchange(frame(Buffer.from(payload, 'latin1')), packetDone, timeoutMs);
  }

  close(): void {
    this.sock.destroy();
  }
}
