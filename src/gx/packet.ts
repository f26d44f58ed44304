// RSP packet encoding: checksums, hex, binary escaping and run-length encoding
// (gdb manual, "Overview" of the remote protocol).

export function checksum(data: Buffer, start = 0, end = data.length): number {
  let sum = 0;
  for (let i = start; i < end; i++) sum = (sum + data[i]) & 0xff;
  return sum;
}

const HEX = '0123456789abcdef';

export function hexByte(n: number): string {
  return HEX[(n >> 4) & 0xf] + HEX[n & 0xf];
}

export function toHex(buf: Buffer): string {
  return buf.toString('hex');
}

/** Strict hex decode: throws on odd length or a non-hex digit. */
export function fromHex(s: string): Buffer {
  if (s.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(s)) throw new ProtocolError(`bad hex string`);
  return Buffer.from(s, 'hex');
}

/** A hex number as gdb writes addresses and lengths (no 0x; at most 64 bits). */
export function parseHexBig(s: string): bigint {
  if (!/^[0-9a-fA-F]{1,16}$/.test(s)) throw new ProtocolError(`bad hex number '${s.slice(0, 20)}'`);
  return BigInt('0x' + s);
}

export function parseHexInt(s: string, max = 0x7fffffff): number {
  if (!/^[0-9a-fA-F]{1,8}$/.test(s)) throw new ProtocolError(`bad hex number '${s.slice(0, 20)}'`);
  const n = parseInt(s, 16);
  if (n > max) throw new ProtocolError(`number 0x${s} too large`);
  return n;
}

/** Malformed request: the dispatcher answers with an error reply, never crashes. */
export class ProtocolError extends Error {
  readonly errno: number;
  constructor(message: string, errno = 0x16 /* EINVAL */) {
    super(message);
    this.name = 'ProtocolError';
    this.errno = errno;
  }
}

const ESC = 0x7d;
function needsEscape(b: number): boolean {
  return b === 0x23 || b === 0x24 || b === 0x7d || b === 0x2a;
}

/** Escape binary data for X packets and qXfer/x replies: # $ } * become } (b ^ 0x20). */
export function escapeBinary(data: Buffer): Buffer {
  let extra = 0;
  for (const b of data) if (needsEscape(b)) extra++;
  if (extra === 0) return data;
  const out = Buffer.allocUnsafe(data.length + extra);
  let j = 0;
  for (const b of data) {
    if (needsEscape(b)) {
      out[j++] = ESC;
      out[j++] = b ^ 0x20;
    } else out[j++] = b;
  }
  return out;
}

export function unescapeBinary(data: Buffer): Buffer {
  if (!data.includes(ESC)) return data;
  const out = Buffer.allocUnsafe(data.length);
  let j = 0;
  for (let i = 0; i < data.length; i++) {
    if (data[i] === ESC) {
      if (i + 1 >= data.length) throw new ProtocolError('binary data ends in an escape');
      out[j++] = data[++i] ^ 0x20;
    } else out[j++] = data[i];
  }
  return out.subarray(0, j);
}

/**
 * Run-length encode a reply: "X*n" stands for X followed by n-29 more copies, n printable
 * (32..126) and never '#' or '$' (runs needing 6 or 7 extra copies are shortened).
 * Only worth it for runs of 4 or more.
 */
export function rleEncode(data: Buffer): Buffer {
  // Encoding never grows the data, so one output buffer of the input's size will do
  // (this runs on every hex reply, up to a megabyte: no per-byte arrays).
  const out = Buffer.allocUnsafe(data.length);
  let j = 0;
  let i = 0;
  const n = data.length;
  while (i < n) {
    const b = data[i];
    let run = 1;
    while (i + run < n && data[i + run] === b && run < 98) run++;
    out[j++] = b;
    let extra = run - 1;
    if (extra >= 3 && b !== 0x2a && b !== 0x23 && b !== 0x24 && b !== 0x7d) {
      if (extra === 6 || extra === 7) extra = 5; // 29+6='#', 29+7='$' are forbidden
      out[j++] = 0x2a;
      out[j++] = extra + 29;
      i += extra + 1;
    } else {
      i += 1;
    }
  }
  return out.subarray(0, j);
}

/** Decode RLE (used by tests and by clients; gdb never sends RLE to a stub). */
export function rleDecode(data: Buffer): Buffer {
  const out: number[] = [];
  for (let i = 0; i < data.length; i++) {
    if (data[i] === 0x2a) {
      if (out.length === 0 || i + 1 >= data.length) throw new ProtocolError('bad run-length encoding');
      const n = data[++i] - 29;
      const prev = out[out.length - 1];
      for (let k = 0; k < n; k++) out.push(prev);
    } else out.push(data[i]);
  }
  return Buffer.from(out);
}

/** Frame a payload as $payload#cs. */
export function frame(payload: Buffer): Buffer {
  const out = Buffer.allocUnsafe(payload.length + 4);
  out[0] = 0x24;
  payload.copy(out, 1);
  out[payload.length + 1] = 0x23;
  out.write(hexByte(checksum(payload)), payload.length + 2, 'latin1');
  return out;
}

/** An error reply as gdb 13 parses it: 'E' and exactly two hex digits. */
export function errorReply(errno: number): string {
  return 'E' + hexByte(errno & 0xff);
}
