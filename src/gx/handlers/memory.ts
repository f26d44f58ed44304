// Memory: m (hex read; a partly unmapped range returns the readable prefix, a fully
// unmapped one E14), x (binary read, gdb 16+), M (hex write) and X (binary write).
// Writes are all-or-nothing.
import type { Reply } from '../reply';
import type { HandlerContext } from './context';
import { PACKET_SIZE } from '../reply';
import { ProtocolError, escapeBinary, fromHex, parseHexBig, parseHexInt, unescapeBinary } from '../packet';

const EFAULT = 'E14';

function addrLen(spec: string): [bigint, number] {
  const [a, l] = spec.split(',');
  if (l === undefined) throw new ProtocolError('expected addr,length');
  // Clamp to what one reply can carry; gdb asks again for the rest.
  return [parseHexBig(a), Math.min(parseHexInt(l), PACKET_SIZE)];
}

export function handleM(s: HandlerContext, t: string): Reply {
  const [addr, len] = addrLen(t.slice(1));
  if (len === 0) return '';
  const n = Math.min(len, PACKET_SIZE / 2);
  const data = s.guest.readMemory(addr, n, s.memoryVcpu, s.readBuffer(n));
  return data.length === 0 ? EFAULT : s.hexReply(data);
}

export function handleSmallX(s: HandlerContext, t: string): Reply {
  const [addr, len] = addrLen(t.slice(1));
  if (len === 0) return 'b';
  const data = s.guest.readMemory(addr, len, s.memoryVcpu);
  return data.length === 0 ? EFAULT : Buffer.concat([Buffer.from('b'), escapeBinary(data)]);
}

export function handleBigM(s: HandlerContext, t: string): Reply {
  const colon = t.indexOf(':');
  if (colon < 0) throw new ProtocolError('M needs addr,length:data');
  const [addr, len] = addrLen(t.slice(1, colon));
  const data = fromHex(t.slice(colon + 1));
  if (data.length !== len) throw new ProtocolError(`M length ${len} but ${data.length} bytes of data`);
  s.guest.writeMemory(addr, data, s.memoryVcpu);
  return 'OK';
}

export function handleX(s: HandlerContext, raw: Buffer): Reply {
  const colon = raw.indexOf(0x3a);
  if (colon < 0) throw new ProtocolError('X needs addr,length:data');
  const [addr, len] = addrLen(raw.subarray(1, colon).toString('latin1'));
  const data = unescapeBinary(raw.subarray(colon + 1));
  if (data.length !== len) throw new ProtocolError(`X length ${len} but ${data.length} bytes of data`);
  s.guest.writeMemory(addr, data, s.memoryVcpu);
  return 'OK';
}
