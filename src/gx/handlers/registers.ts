// Registers: g/G (the whole block, in target-description order) and p/P (one), in
// the numbering of the registers shown (regView.ts).
import type { Reply } from '../reply';
import type { HandlerContext } from './context';
import { ProtocolError, fromHex, parseHexInt } from '../packet';
import { Arch, VcpuContext, readReg } from '../../vcpu/registers';
import { splitThreadSuffix } from './lldb';

/** The whole `g` block in the wire's order; unavailable registers as 'x' pairs (the `G` decoder is below). */
export function encodeGBlock(arch: Arch, c: VcpuContext): string {
  let out = '';
  for (const r of arch.regs) {
    const v = readReg(c, r);
    out += v ? v.toString('hex') : 'xx'.repeat(r.bits / 8);
  }
  return out;
}

export function handleG(s: HandlerContext, packet: string): Reply {
  const { text, vcpu } = splitThreadSuffix(s, packet);
  if (text !== 'g') return '';
  const v = vcpu ?? s.currentVcpu;
  return encodeGBlock(s.regs.arch, s.guest.context(v));
}

export function handleBigG(s: HandlerContext, packet: string): Reply {
  const { text: t, vcpu } = splitThreadSuffix(s, packet);
  const v = vcpu ?? s.currentVcpu;
  const { arch, guestRegno } = s.regs;
  const hex = t.slice(1);
  if (hex.length !== arch.gSize * 2) throw new ProtocolError(`G block is ${hex.length / 2} bytes, expected ${arch.gSize}`);
  const values = new Map<number, Buffer>();
  arch.regs.forEach((r, i) => {
    const part = hex.slice(arch.offsets[i] * 2, (arch.offsets[i] + r.bits / 8) * 2);
    if (/^x+$/i.test(part)) return; // unavailable: leave as is
    values.set(guestRegno[i], fromHex(part));
  });
  // Guest.writeRegisters writes only what changed (Xen rejects some fields, PV cr3, if they differ).
  s.guest.writeRegisters(v, values);
  return 'OK';
}

export function handleP(s: HandlerContext, packet: string): Reply {
  const { text: t, vcpu } = splitThreadSuffix(s, packet);
  const regno = parseHexInt(t.slice(1));
  const r = s.regs.arch.regs[regno];
  if (!r) return 'E45';
  const v = s.guest.readRegister(vcpu ?? s.currentVcpu, s.regs.guestRegno[regno]);
  return v ? v.toString('hex') : 'xx'.repeat(r.bits / 8);
}

export function handleBigP(s: HandlerContext, packet: string): Reply {
  const { text: t, vcpu } = splitThreadSuffix(s, packet);
  const eq = t.indexOf('=');
  if (eq < 0) throw new ProtocolError('P needs n=value');
  const regno = parseHexInt(t.slice(1, eq));
  const r = s.regs.arch.regs[regno];
  if (!r) return 'E45';
  const value = fromHex(t.slice(eq + 1));
  if (value.length !== r.bits / 8) throw new ProtocolError(`${r.name} takes ${r.bits / 8} bytes`);
  s.guest.writeRegisters(vcpu ?? s.currentVcpu, new Map([[s.regs.guestRegno[regno], value]]));
  return 'OK';
}
