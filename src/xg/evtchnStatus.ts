// EVTCHNOP_status (xen/include/public/event_channel.h): what one event channel port of
// a domain is bound to. struct evtchn_status: dom u16 @0, port u32 @4 (IN); status u32
// @8, vcpu u32 @12, then a union @16: unbound.dom u16 | interdomain {dom u16 @16, port
// u32 @20} | pirq u32 | virq u32 (OUT). Dom0 may ask about any domain (XSM_TARGET).

export const HYPERVISOR_EVENT_CHANNEL_OP = 32;
export const EVTCHNOP_STATUS = 5;
export const EVTCHN_STATUS_SIZE = 24;
export const EvtchnStatusOff = { dom: 0, port: 4, status: 8, vcpu: 12, u: 16, interdomainPort: 20 } as const;

/** EVTCHNSTAT_*. */
export const EvtchnStat = { closed: 0, unbound: 1, interdomain: 2, pirq: 3, virq: 4, ipi: 5 } as const;
export type EvtchnStatName = keyof typeof EvtchnStat;
const statNames = new Map<number, EvtchnStatName>(Object.entries(EvtchnStat).map(([k, v]) => [v, k as EvtchnStatName]));

/** VIRQ_* names (xen.h), for the ports bound to one. */
export const VIRQ_NAMES: Record<number, string> = {
  0: 'VIRQ_TIMER', 1: 'VIRQ_DEBUG', 2: 'VIRQ_CONSOLE', 3: 'VIRQ_DOM_EXC', 4: 'VIRQ_TBUF', 6: 'VIRQ_DEBUGGER', 7: 'VIRQ_XENOPROF',
  8: 'VIRQ_CON_RING', 9: 'VIRQ_PCPU_STATE', 10: 'VIRQ_MEM_EVENT', 11: 'VIRQ_ARGO', 12: 'VIRQ_ENOMEM', 13: 'VIRQ_XENPMU',
};

export interface EvtchnStatus {
  port: number;
  status: EvtchnStatName | `status ${number}`;
  /** The VCPU it notifies. */
  vcpu: number;
  /** unbound: the domain allowed to bind it; interdomain: the other end. */
  remoteDomid?: number;
  remotePort?: number;
  pirq?: number;
  virq?: number;
}

export function encodeEvtchnStatusRequest(domid: number, port: number): Buffer {
  const b = Buffer.alloc(EVTCHN_STATUS_SIZE);
  b.writeUInt16LE(domid, EvtchnStatusOff.dom);
  b.writeUInt32LE(port, EvtchnStatusOff.port);
  return b;
}

export function decodeEvtchnStatus(b: Buffer): EvtchnStatus {
  const code = b.readUInt32LE(EvtchnStatusOff.status);
  const s: EvtchnStatus = {
    port: b.readUInt32LE(EvtchnStatusOff.port),
    status: statNames.get(code) ?? `status ${code}`,
    vcpu: b.readUInt32LE(EvtchnStatusOff.vcpu),
  };
  if (code === EvtchnStat.unbound) s.remoteDomid = b.readUInt16LE(EvtchnStatusOff.u);
  if (code === EvtchnStat.interdomain) {
    s.remoteDomid = b.readUInt16LE(EvtchnStatusOff.u);
    s.remotePort = b.readUInt32LE(EvtchnStatusOff.interdomainPort);
  }
  if (code === EvtchnStat.pirq) s.pirq = b.readUInt32LE(EvtchnStatusOff.u);
  if (code === EvtchnStat.virq) s.virq = b.readUInt32LE(EvtchnStatusOff.u);
  return s;
}

/** The reply fields written into `b` (the simulated Xen). */
export function encodeEvtchnStatus(b: Buffer, s: { status: number; vcpu: number; remoteDomid?: number; remotePort?: number; pirq?: number; virq?: number }): void {
  b.fill(0, EvtchnStatusOff.status);
  b.writeUInt32LE(s.status, EvtchnStatusOff.status);
  b.writeUInt32LE(s.vcpu, EvtchnStatusOff.vcpu);
  if (s.status === EvtchnStat.unbound || s.status === EvtchnStat.interdomain) b.writeUInt16LE(s.remoteDomid ?? 0, EvtchnStatusOff.u);
  if (s.status === EvtchnStat.interdomain) b.writeUInt32LE(s.remotePort ?? 0, EvtchnStatusOff.interdomainPort);
  if (s.status === EvtchnStat.pirq) b.writeUInt32LE(s.pirq ?? 0, EvtchnStatusOff.u);
  if (s.status === EvtchnStat.virq) b.writeUInt32LE(s.virq ?? 0, EvtchnStatusOff.u);
}
