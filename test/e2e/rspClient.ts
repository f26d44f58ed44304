// A raw RSP client for conformance and fuzz tests: speaks the framing itself so
// tests can send exactly the bytes they want (including malformed ones).
import net from 'net';
import { checksum, frame, rleDecode } from '../../src/gx/packet';

export class RspClient {
  private readonly sock: net.Socket;
  private buf = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  noAck = false;
  closed = false;

  private constructor(sock: net.Socket) {
    this.sock = sock;
    sock.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.waiters.splice(0).forEach((w) => w());
    });
    sock.on('close', () => {
      this.closed = true;
      this.waiters.splice(0).forEach((w) => w());
    });
    sock.on('error', () => undefined);
  }

  static connect(port: number): Promise<RspClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(new RspClient(s)));
      s.setNoDelay(true); // an ack and the next request go out at once, as gdb's do
      s.once('error', reject);
    });
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

  /** Next complete packet's payload (RLE decoded), skipping acks. */
  async readPacket(timeoutMs = 5000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      let start = this.buf.indexOf(0x24);
      if (start < 0 && this.buf.length) {
        this.buf = Buffer.alloc(0); // only acks so far
        start = -1;
      }
      if (start >= 0) {
        const hash = this.buf.indexOf(0x23, start);
        if (hash >= 0 && this.buf.length >= hash + 3) {
          const payload = this.buf.subarray(start + 1, hash);
          const cs = parseInt(this.buf.subarray(hash + 1, hash + 3).toString(), 16);
          this.buf = this.buf.subarray(hash + 3);
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

  close(): void {
    this.sock.destroy();
  }
}
