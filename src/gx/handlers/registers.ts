// Registers: g/G (the whole block, in target-description order) and p/P (one), in
// the numbering of the registers shown (regView.ts).
import type { Reply, Session } from '../session';
import { ProtocolError, fromHex, parseHexInt } from '../packet';
import { encodeGBlock } from '../../vcpu/registers';
import { splitThreadSuffix } from './lldb';

export function handleG(s: Session, packet: string): Reply {
  const { text, vcpu } = splitThreadSuffix(s, packet);
  if (text !== 'g') return '';
  const v = vcpu ?? s.currentVcpu;
  return encodeGBlock(s.regs.arch, s.guest.context(v));
}

export function handleBigG(s: Session, packet: string): Reply {
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
  // Only write what changed: Xen rejects some fields (PV cr3) if they differ.
  for (const [i, value] of [...values]) {
    const cur = s.guest.readRegister(v, i);
    if (cur && cur.equals(value)) values.delete(i);
  }
  if (values.size) s.guest.writeRegisters(v, values);
  return 'OK';
}

export function handleP(s: Session, packet: string): Reply {
  const { text: t, vcpu } = splitThreadSuffix(s, packet);
  const regno = parseHexInt(t.slice(1));
  const r = s.regs.arch.regs[regno];
  if (!r) return 'E45';
  const v = s.guest.readRegister(vcpu ?? s.currentVcpu, s.regs.guestRegno[regno]);
  return v ? v.toString('hex') : 'xx'.repeat(r.bits / 8);
}

export function handleBigP(s: Session, packet: string): Reply {
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
