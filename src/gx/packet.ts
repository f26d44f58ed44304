// RSP packet encoding: checksums, hex, binary escaping and run-length encoding
// (gdb manual, "Overview" of the remote protocol).

export function checksum(data: Buffer, start = 0, end = data.length): number {
  let sum = 0;
  let i = start;
  if (end - i >= 256) {
    // Megabyte replies: add four bytes a step, as two 16-bit lanes of byte pairs
    // (64 steps add at most 64 * 510 to a lane: no carry between lanes).
    while (((data.byteOffset + i) & 3) !== 0) sum += data[i++];
    const words = (end - i) >> 2;
    const w32 = new Uint32Array(data.buffer, data.byteOffset + i, words);
    let lanes = 0;
    for (let k = 0; k < words; k++) {
      const w = w32[k];
      lanes += (w & 0x00ff00ff) + ((w >>> 8) & 0x00ff00ff);
      if ((k & 63) === 63) {
        sum += (lanes & 0xffff) + (lanes >>> 16);
        lanes = 0;
      }
    }
    sum += (lanes & 0xffff) + (lanes >>> 16);
    i += words * 4;
  }
  for (; i < end; i++) sum += data[i];
  return sum & 0xff;
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
  // Encoding never grows the data, so one output buffer of the input's size will do.
  const out = Buffer.allocUnsafe(data.length);
  let j = 0;
  for (let i = 0; i < data.length; ) {
    const c = data[i];
    let n = 1;
    while (i + n < data.length && data[i + n] === c) n++;
    if (c === 0x2a || c === 0x23 || c === 0x24 || c === 0x7d) for (let k = 0; k < n; k++) out[j++] = c; // never repeated by count
    else j = putRun(out, j, c, n);
    i += n;
  }
  return out.subarray(0, j);
}

const HEX_CHARS = Buffer.from('0123456789abcdef', 'latin1');
const ZEROS = Buffer.alloc(65536);

/** "c*~": c and 97 more copies, the longest run one RLE group can say, per character. */
const FULL_GROUPS = new Map<number, Buffer>();

/** Write a run of `count` copies of `c` in RLE form (as rleEncode does); returns the new end. */
function putRun(out: Buffer, j: number, c: number, count: number): number {
  if (count >= 2 * 98) {
    // Megabytes of zeros are tens of thousands of identical groups: one native fill.
    let g = FULL_GROUPS.get(c);
    if (!g) FULL_GROUPS.set(c, (g = Buffer.from([c, 0x2a, 97 + 29])));
    const full = Math.floor(count / 98);
    out.fill(g, j, j + 3 * full);
    j += 3 * full;
    count -= 98 * full;
  }
  while (count > 0) {
    out[j++] = c;
    count--;
    if (count >= 3) {
      let extra = count > 97 ? 97 : count;
      if (extra === 6 || extra === 7) extra = 5; // 29+6='#', 29+7='$' are forbidden
      out[j++] = 0x2a;
      out[j++] = extra + 29;
      count -= extra;
    } else {
      while (count > 0) {
        out[j++] = c;
        count--;
      }
    }
  }
  return j;
}

/**
 * Hex-encode `data` with run-length encoding straight into `out` from `pos`; returns the
 * end. Character by character, exactly rleEncode(hex(data)), with no intermediate
 * string or buffer. Used for small replies; big ones go through hexBlocksInto.
 * `out` needs room for 2 * data.length bytes from `pos`.
 */
export function hexRleInto(data: Buffer, out: Buffer, pos: number): number {
  const n = data.length;
  let j = pos;
  let run = -1; // the character of the current run, and its length so far
  let count = 0;
  for (let i = 0; i < n; i++) {
    const b = data[i];
    const hi = HEX_CHARS[b >> 4];
    const lo = HEX_CHARS[b & 15];
    if (hi === run) count++;
    else {
      if (count === 1) out[j++] = run;
      else if (count > 1) j = putRun(out, j, run, count);
      run = hi;
      count = 1;
    }
    if (lo === run) count++;
    else {
      if (count === 1) out[j++] = run;
      else j = putRun(out, j, run, count);
      run = lo;
      count = 1;
    }
  }
  return count === 1 ? (out[j++] = run, j) : count > 1 ? putRun(out, j, run, count) : j;
}

const BLOCK = 256;
/** Longest stretch hex-encoded by one toString: its string stays out of V8's large-object space. */
const SPAN = 16384;

/**
 * Hex-encode a big reply into `out` from `pos`; returns the end. Zero blocks (256
 * bytes, found by native compare) become runs; everything else is plain hex from the
 * native encoder. Character-level RLE in JavaScript costs more than the bytes it saves:
 * in the lab's dom0 (PV, under QEMU/TCG) it took 83 ms per 512 KiB of kernel text to
 * save 8% of a 40 ms transfer. Guest memory's big runs are zeros (free pages, BSS,
 * padding), and those cost nothing here. Decodes to hex(data), like rleEncode.
 */
export function hexBlocksInto(data: Buffer, out: Buffer, pos: number): number {
  const n = data.length;
  let j = pos;
  let i = 0;
  while (i < n) {
    let z = i;
    // Biggest blocks first: under TCG each compare call costs about as much as 4 KiB of it.
    while (z + 65536 <= n && data.compare(ZEROS, 0, 65536, z, z + 65536) === 0) z += 65536;
    while (z + 4096 <= n && data.compare(ZEROS, 0, 4096, z, z + 4096) === 0) z += 4096; // free pages
    while (z + BLOCK <= n && data.compare(ZEROS, 0, BLOCK, z, z + BLOCK) === 0) z += BLOCK;
    if (z > i) {
      j = putRun(out, j, 0x30, 2 * (z - i));
      i = z;
      continue;
    }
    let e = Math.min(n, i + BLOCK);
    while (e < n && e - i < SPAN && !(e + BLOCK <= n && data.compare(ZEROS, 0, BLOCK, e, e + BLOCK) === 0)) e = Math.min(n, e + BLOCK);
    j += out.write(data.toString('hex', i, e), j, 'latin1');
    i = e;
  }
  return j;
}

/** Close a packet written from out[0] = '$' to `end`: '#' and the checksum; returns it. */
export function closeFrame(out: Buffer, end: number): Buffer {
  const sum = checksum(out, 1, end);
  out[end] = 0x23;
  out[end + 1] = HEX_CHARS[sum >> 4];
  out[end + 2] = HEX_CHARS[sum & 15];
  return out.subarray(0, end + 3);
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
