// The simulated domains' event channels, as EVTCHNOP_status shows them: the ports a PV
// or PVH Linux guest with libxl's devices has bound (xenstore and console rings, the
// vif's and vbd's channels to dom0, a timer VIRQ and a reschedule IPI per VCPU), plus
// the monitor ring's Xen-bound port when there is one.
import { Errno, XenError } from '../errors';
import { EVTCHNOP_STATUS, EVTCHN_STATUS_SIZE, EvtchnStat, EvtchnStatusOff, encodeEvtchnStatus } from '../evtchnStatus';
import type { SimDomain } from './domain';

export interface SimEvtchn {
  status: number;
  vcpu: number;
  remoteDomid?: number;
  remotePort?: number;
  virq?: number;
}

/** Ports come in buckets: those below the bucket of the highest one allocated are valid (closed if unused). */
const EVTCHNS_PER_BUCKET = 64;
/** The per-VCPU ports start here (the guest's device channels come first; the monitor ring's Xen port is 8 up). */
const FIRST_VCPU_PORT = 16;
const VIRQ_TIMER = 0;

/** What the guest and its backends have bound once it has booted (ports as xenstore names them for the devices). */
export function guestEventChannels(domid: number, vcpus: number): Map<number, SimEvtchn> {
  // dom0's ends: one port per channel, numbered by domain so two guests differ.
  const dom0Port = (k: number) => 200 + domid * 8 + k;
  const m = new Map<number, SimEvtchn>();
  m.set(1, { status: EvtchnStat.interdomain, vcpu: 0, remoteDomid: 0, remotePort: dom0Port(0) }); // xenstored
  m.set(2, { status: EvtchnStat.interdomain, vcpu: 0, remoteDomid: 0, remotePort: dom0Port(1) }); // xenconsoled
  m.set(3, { status: EvtchnStat.interdomain, vcpu: 0, remoteDomid: 0, remotePort: dom0Port(2) }); // netback
  m.set(4, { status: EvtchnStat.interdomain, vcpu: 0, remoteDomid: 0, remotePort: dom0Port(3) }); // blkback
  for (let v = 0; v < vcpus; v++) {
    m.set(FIRST_VCPU_PORT + 2 * v, { status: EvtchnStat.virq, vcpu: v, virq: VIRQ_TIMER });
    m.set(FIRST_VCPU_PORT + 2 * v + 1, { status: EvtchnStat.ipi, vcpu: v });
  }
  return m;
}

/** EVTCHNOP_status on `arg` (struct evtchn_status), as xen/common/event_channel.c answers it. */
export function evtchnOp(cmd: number, arg: Buffer, domain: (domid: number) => SimDomain | undefined,
  ring: (d: SimDomain) => { port: number; localPort: number | undefined } | undefined): number {
  const name = `EVTCHNOP_${cmd}`;
  if (cmd !== EVTCHNOP_STATUS) throw new XenError(name, Errno.ENOSYS);
  if (arg.length < EVTCHN_STATUS_SIZE) throw new XenError(name, Errno.EFAULT);
  const d = domain(arg.readUInt16LE(EvtchnStatusOff.dom));
  if (!d) throw new XenError(name, Errno.ESRCH);
  const port = arg.readUInt32LE(EvtchnStatusOff.port);
  const r = ring(d);
  const highest = Math.max(0, ...d.evtchns.keys(), r?.port ?? 0);
  if (port >= Math.ceil((highest + 1) / EVTCHNS_PER_BUCKET) * EVTCHNS_PER_BUCKET) throw new XenError(name, Errno.EINVAL, 'port_is_valid');
  let c: SimEvtchn | undefined = d.evtchns.get(port);
  if (r && port === r.port) {
    c = r.localPort === undefined ? { status: EvtchnStat.unbound, vcpu: 0, remoteDomid: 0 }
      : { status: EvtchnStat.interdomain, vcpu: 0, remoteDomid: 0, remotePort: r.localPort };
  }
  encodeEvtchnStatus(arg, c ?? { status: EvtchnStat.closed, vcpu: 0 });
  return 0;
}
