// xenstore's wire protocol (xen/include/public/io/xs_wire.h): a 16-byte header
// (struct xsd_sockmsg: type, req_id, tx_id, len, little-endian u32s) then `len` bytes
// of payload. Strings in requests end with NUL; XS_READ replies carry the value bare;
// XS_DIRECTORY replies are NUL-terminated names one after another; XS_ERROR replies
// carry an errno name ("ENOENT"). Used by the real transports and the simulated
// xenstore alike, so both speak exactly these bytes.

export const XS_HEADER_SIZE = 16;
/** XENSTORE_PAYLOAD_MAX: xenstored refuses longer payloads (E2BIG). */
export const XS_PAYLOAD_MAX = 4096;

/** enum xsd_sockmsg_type (the ones we speak or answer). */
export const XsType = {
  control: 0,
  directory: 1,
  read: 2,
  getPerms: 3,
  watch: 4,
  unwatch: 5,
  transactionStart: 6,
  transactionEnd: 7,
  introduce: 8,
  release: 9,
  getDomainPath: 10,
  write: 11,
  mkdir: 12,
  rm: 13,
  setPerms: 14,
  watchEvent: 15,
  error: 16,
  isDomainIntroduced: 17,
  resume: 18,
  setTarget: 19,
  resetWatches: 21,
  directoryPart: 22,
} as const;

const typeNames = new Map<number, string>(Object.entries(XsType).map(([k, v]) => [v, k]));
export function xsTypeName(t: number): string {
  const n = typeNames.get(t);
  return n ? `XS_${n.replace(/[A-Z]/g, (c) => '_' + c).toUpperCase()}` : `XS_${t}`;
}

/** The errno names xenstored sends in XS_ERROR replies (xsd_errors[]). */
export const XS_ERRORS = ['EINVAL', 'EACCES', 'EEXIST', 'EISDIR', 'ENOENT', 'ENOMEM', 'ENOSPC', 'EIO', 'ENOTEMPTY',
  'ENOSYS', 'EROFS', 'EBUSY', 'EAGAIN', 'EISCONN', 'E2BIG', 'EPERM'] as const;

export interface XsMessage {
  type: number;
  reqId: number;
  txId: number;
  payload: Buffer;
}

/** An XS_ERROR reply (or a malformed one): `code` is the errno name xenstored sent. */
export class XsError extends Error {
  constructor(readonly request: string, readonly path: string, readonly code: string) {
    super(`xenstore ${request} ${path}: ${code}`);
    this.name = 'XsError';
  }
}

export function encodeMessage(m: XsMessage): Buffer {
  if (m.payload.length > XS_PAYLOAD_MAX) throw new RangeError(`xenstore payload of ${m.payload.length} bytes (at most ${XS_PAYLOAD_MAX})`);
  const b = Buffer.alloc(XS_HEADER_SIZE + m.payload.length);
  b.writeUInt32LE(m.type, 0);
  b.writeUInt32LE(m.reqId >>> 0, 4);
  b.writeUInt32LE(m.txId >>> 0, 8);
  b.writeUInt32LE(m.payload.length, 12);
  m.payload.copy(b, XS_HEADER_SIZE);
  return b;
}

/** The length of the whole message at the start of `b` once its header is there, else undefined. */
export function messageLength(b: Buffer): number | undefined {
  if (b.length < XS_HEADER_SIZE) return undefined;
  const len = b.readUInt32LE(12);
  if (len > XS_PAYLOAD_MAX) throw new RangeError(`xenstore message claims ${len} bytes of payload (at most ${XS_PAYLOAD_MAX})`);
  return XS_HEADER_SIZE + len;
}

/** Decode one whole message (exactly one: extra or missing bytes are an error). */
export function decodeMessage(b: Buffer): XsMessage {
  const n = messageLength(b);
  if (n === undefined || n !== b.length) throw new RangeError(`xenstore message of ${b.length} bytes, header says ${n ?? 'nothing'}`);
  return { type: b.readUInt32LE(0), reqId: b.readUInt32LE(4), txId: b.readUInt32LE(8), payload: Buffer.from(b.subarray(XS_HEADER_SIZE)) };
}

/** Splits a byte stream (socket, device reads) into whole messages. */
export class XsFramer {
  private buf = Buffer.alloc(0);

  /** Add bytes; returns the messages they complete. */
  push(chunk: Buffer): XsMessage[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : Buffer.from(chunk);
    const out: XsMessage[] = [];
    for (let n = messageLength(this.buf); n !== undefined && this.buf.length >= n; n = messageLength(this.buf)) {
      out.push(decodeMessage(this.buf.subarray(0, n)));
      this.buf = this.buf.subarray(n);
    }
    return out;
  }

  get pending(): number {
    return this.buf.length;
  }
}

/** A request's payload: each string NUL-terminated, as xs.c sends them. */
export function requestPayload(...args: string[]): Buffer {
  return Buffer.concat(args.map((s) => Buffer.from(s + '\0', 'utf8')));
}

/** The strings of a request payload (NUL-separated; a missing last NUL is tolerated). */
export function payloadStrings(p: Buffer): string[] {
  const s = p.toString('utf8');
  const parts = s.split('\0');
  if (parts.length > 1 && parts[parts.length - 1] === '') parts.pop();
  return parts;
}

export function errorReply(req: XsMessage, code: string): XsMessage {
  return { type: XsType.error, reqId: req.reqId, txId: req.txId, payload: Buffer.from(code + '\0', 'latin1') };
}

/** The error name of an XS_ERROR reply. */
export function errorCode(m: XsMessage): string {
  const s = m.payload.toString('latin1').replace(/\0.*$/s, '');
  return s || 'EIO';
}
