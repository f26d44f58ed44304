// Incremental parser for the byte stream gdb sends: packets ($...#cs), acks (+/-)
// and the out-of-band interrupt byte 0x03. Bounded: a packet longer than
// `maxPacket` is dropped (and reported) instead of growing memory.
import { checksum } from './packet';

export type FrameEvent =
  | { type: 'packet'; data: Buffer }
  | { type: 'bad-checksum'; data: Buffer }
  | { type: 'oversized' }
  | { type: 'ack' }
  | { type: 'nak' }
  | { type: 'interrupt' };

const enum State { Idle, Data, Sum1, Sum2 }

function hexVal(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  return -1;
}

export class Framer {
  private state = State.Idle;
  private buf: Buffer;
  private len = 0;
  private overflow = false;
  private sum = 0;
  private readonly maxPacket: number;

  constructor(maxPacket: number) {
    this.maxPacket = maxPacket;
    this.buf = Buffer.allocUnsafe(Math.min(maxPacket, 4096));
  }

  /** Feed bytes; returns the events they complete, in order. */
  push(chunk: Buffer): FrameEvent[] {
    const events: FrameEvent[] = [];
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk[i];
      switch (this.state) {
        case State.Idle:
          if (c === 0x24) {
            this.state = State.Data;
            this.len = 0;
            this.overflow = false;
          } else if (c === 0x2b) events.push({ type: 'ack' });
          else if (c === 0x2d) events.push({ type: 'nak' });
          else if (c === 0x03) events.push({ type: 'interrupt' });
          // Anything else between packets is line noise: ignored, as gdbserver does.
          break;
        case State.Data:
          if (c === 0x23) {
            this.state = State.Sum1;
          } else if (c === 0x24) {
            // A new '$' inside a packet: the previous one was truncated; restart.
            this.len = 0;
            this.overflow = false;
          } else {
            // Packets are read in bulk from the socket; copy runs rather than bytes.
            let end = i;
            while (end < chunk.length && chunk[end] !== 0x23 && chunk[end] !== 0x24) end++;
            this.append(chunk, i, end);
            i = end - 1;
          }
          break;
        case State.Sum1: {
          const v = hexVal(c);
          this.sum = v < 0 ? -1 : v << 4;
          this.state = State.Sum2;
          break;
        }
        case State.Sum2: {
          const v = hexVal(c);
          this.state = State.Idle;
          if (this.overflow) {
            events.push({ type: 'oversized' });
            break;
          }
          const data = Buffer.from(this.buf.subarray(0, this.len));
          const ok = this.sum >= 0 && v >= 0 && ((this.sum | v) === checksum(data));
          events.push(ok ? { type: 'packet', data } : { type: 'bad-checksum', data });
          if (this.buf.length > 65536 && this.len < 4096) this.buf = Buffer.allocUnsafe(4096); // give back big buffers
          break;
        }
      }
    }
    return events;
  }

  private append(src: Buffer, start: number, end: number): void {
    const n = end - start;
    if (this.overflow) return;
    if (this.len + n > this.maxPacket) {
      this.overflow = true;
      return;
    }
    if (this.len + n > this.buf.length) {
      const grown = Buffer.allocUnsafe(Math.min(this.maxPacket, Math.max(this.buf.length * 2, this.len + n)));
      this.buf.copy(grown, 0, 0, this.len);
      this.buf = grown;
    }
    src.copy(this.buf, this.len, start, end);
    this.len += n;
  }
}
