// What `gdbsx info` and `monitor info` show: a domain as Xen's domctls describe it,
// each VCPU as the scheduler sees it, and its virtual devices and their event channels
// as the toolstack wrote them in xenstore. Reads only: nothing is paused but, for an
// HVM/PVH guest's width, Xen's brief pause to copy one VCPU's CPU record.
import { DomainInfo, ShutdownReason, domainType } from '../xg/domctl';
import { XenControl } from '../xg/xenctl';
import { XenError } from '../xg/errors';
import { VIRQ_NAMES } from '../xg/evtchnStatus';
import { XsClient } from '../xs/client';
import { Guest } from '../vcpu/guest';

/** XenbusState (xen/include/public/io/xenbus.h). */
export const XENBUS_STATES = ['Unknown', 'Initialising', 'InitWait', 'Initialised', 'Connected', 'Closing', 'Closed', 'Reconfiguring', 'Reconfigured'] as const;

export function xenbusStateName(v: string | undefined): string | undefined {
  if (v === undefined) return undefined;
  const n = /^\d+$/.test(v) ? Number(v) : NaN;
  return n < XENBUS_STATES.length ? `XenbusState${XENBUS_STATES[n]}` : `state ${v}`;
}

export interface DomainView {
  domid: number;
  /** From xenstore (/local/domain/<id>/name); undefined without xenstore. */
  name?: string;
  uuid: string;
  type: 'PV' | 'PVH' | 'HVM';
  width: 32 | 64;
  /** running (a VCPU on a CPU), blocked (all idle), or neither; paused, dying, shutdown are flags. */
  state: 'running' | 'blocked' | 'runnable';
  paused: boolean;
  dying: boolean;
  shutdown: boolean;
  /** poweroff, reboot, suspend, crash, watchdog, soft_reset (when shut down). */
  shutdownReason?: string;
  debugged: boolean;
  memory: { currentKiB: number; maxKiB: number; targetKiB?: number; staticMaxKiB?: number };
  cpuTimeSeconds: number;
  vcpusOnline: number;
  vcpusMax: number;
  cpupool: number;
}

export interface VcpuView {
  vcpu: number;
  state: 'running' | 'blocked' | 'runnable' | 'offline';
  /** The physical CPU it runs (or last ran) on; undefined when offline. */
  cpu?: number;
  cpuTimeSeconds: number;
  /** Physical CPUs it may run on, and prefers. */
  hardAffinity: number[];
  softAffinity: number[];
}

export interface DeviceEnd {
  path: string;
  domid?: number;
  /** The raw XenbusState number, and its name. */
  state?: number;
  stateName?: string;
  /** Every key of the node (values as xenstore holds them). */
  keys: Record<string, string>;
}

export interface DeviceView {
  /** vif, vbd, console, vkbd, qdisk... as the frontend directory names it. */
  kind: string;
  id: string;
  frontend: DeviceEnd;
  backend?: DeviceEnd;
  /** What the device is, in a few words (MAC and bridge, backing disk, console tty). */
  details: Record<string, string>;
}

export interface EventChannelView {
  port: number;
  /** From EVTCHNOP_status: unbound, interdomain, pirq, virq, ipi. */
  status?: string;
  /** The VCPU it notifies. */
  vcpu?: number;
  /** interdomain: the other end; unbound: who may bind it. */
  remoteDomid?: number;
  remotePort?: number;
  /** VIRQ_TIMER etc. */
  virq?: string;
  pirq?: number;
  /** What xenstore says it serves (xenstore ring, console, a device), where it names it. */
  use?: string;
}

export interface InfoView {
  domain: DomainView;
  vcpus: VcpuView[];
  /** Absent when xenstore could not be read (xenstoreError says why). */
  devices?: DeviceView[];
  /** Every bound port (EVTCHNOP_status), named where xenstore names it; or, where Xen's answer is missing, the ports xenstore names. */
  eventChannels?: EventChannelView[];
  /** Where eventChannels come from, and why not from Xen when they do not. */
  eventChannelsFrom?: 'EVTCHNOP_status' | 'xenstore';
  eventChannelsNote?: string;
  xenstoreError?: string;
}

const shutdownNames = new Map<number, string>(Object.entries(ShutdownReason).map(([k, v]) => [v, k.replace(/[A-Z]/g, (c) => '_' + c.toLowerCase())]));

export function domainView(info: DomainInfo, width: 32 | 64): DomainView {
  return {
    domid: info.domid,
    name: undefined,
    uuid: info.handle,
    type: domainType(info),
    width,
    state: info.running ? 'running' : info.blocked ? 'blocked' : 'runnable',
    paused: info.paused,
    dying: info.dying,
    shutdown: info.shutdown,
    shutdownReason: info.shutdown ? shutdownNames.get(info.shutdownReason) ?? `reason ${info.shutdownReason}` : undefined,
    debugged: info.debugged,
    memory: { currentKiB: Number(info.totPages) * 4, maxKiB: Number(info.maxPages) * 4 },
    cpuTimeSeconds: Number(info.cpuTimeNs) / 1e9,
    vcpusOnline: info.nrOnlineVcpus,
    vcpusMax: info.maxVcpuId + 1,
    cpupool: info.cpupool,
  };
}

export function vcpuViews(xc: XenControl, info: DomainInfo): VcpuView[] {
  const out: VcpuView[] = [];
  for (let v = 0; v <= info.maxVcpuId; v++) {
    const vi = xc.getVcpuInfo(info.domid, v);
    const aff = xc.getVcpuAffinity(info.domid, v);
    out.push({
      vcpu: v,
      state: !vi.online ? 'offline' : vi.running ? 'running' : vi.blocked ? 'blocked' : 'runnable',
      cpu: vi.online ? vi.cpu : undefined,
      cpuTimeSeconds: Number(vi.cpuTimeNs) / 1e9,
      hardAffinity: aff.hard,
      softAffinity: aff.soft,
    });
  }
  return out;
}

async function readNode(xs: XsClient, path: string): Promise<Record<string, string>> {
  const keys: Record<string, string> = {};
  for (const k of await xs.directory(path)) {
    const v = await xs.read(`${path}/${k}`);
    if (v !== undefined) keys[k] = v;
  }
  return keys;
}

function end(path: string, keys: Record<string, string>, domid: number | undefined): DeviceEnd {
  const state = keys.state !== undefined && /^\d+$/.test(keys.state) ? Number(keys.state) : undefined;
  return { path, domid, state, stateName: xenbusStateName(keys.state), keys };
}

/** The few keys that say what a device is (the rest are in the ends' keys). */
function details(kind: string, f: Record<string, string>, b: Record<string, string>): Record<string, string> {
  const pick = (names: [string, Record<string, string>][]) =>
    Object.fromEntries(names.filter(([k, from]) => from[k] !== undefined).map(([k, from]) => [k, from[k]]));
  switch (kind) {
    case 'vif': return pick([['mac', f], ['bridge', b], ['ip', b], ['script', b], ['hotplug-status', b]]);
    case 'vbd':
    case 'qdisk': {
      const d = pick([['dev', b], ['params', b], ['type', b], ['mode', b], ['device-type', b], ['physical-device-path', b]]);
      if (b.sectors && b['sector-size']) d.size = `${(Number(b.sectors) * Number(b['sector-size']) / 2 ** 30).toFixed(1)} GiB`;
      return d;
    }
    case 'console': return pick([['type', f], ['output', f], ['tty', f], ['protocol', b]]);
    default: return {};
  }
}

async function device(xs: XsClient, kind: string, id: string, fpath: string, domid: number): Promise<DeviceView> {
  const f = await readNode(xs, fpath);
  let backend: DeviceEnd | undefined;
  if (f.backend) {
    const b = await readNode(xs, f.backend);
    const bid = f['backend-id'] !== undefined && /^\d+$/.test(f['backend-id']) ? Number(f['backend-id']) : undefined;
    backend = end(f.backend, b, bid);
  }
  return { kind, id, frontend: end(fpath, f, domid), backend, details: details(kind, f, backend?.keys ?? {}) };
}

/** The name, memory targets, devices and event channels the toolstack keeps for `domid`. */
export async function xenstoreViews(xs: XsClient, domid: number): Promise<{ name?: string; targetKiB?: number; staticMaxKiB?: number; devices: DeviceView[]; eventChannels: { port: number; use: string }[] }> {
  const dom = await xs.getDomainPath(domid);
  const name = await xs.read(`${dom}/name`);
  const kib = async (p: string) => {
    const v = await xs.read(p);
    return v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined;
  };
  const devices: DeviceView[] = [];
  // The primary console lives outside device/ (libxl writes it at <dom>/console).
  if ((await xs.directory(`${dom}/console`)).length) devices.push(await device(xs, 'console', '0', `${dom}/console`, domid));
  for (const kind of await xs.directory(`${dom}/device`)) {
    const ids = await xs.directory(`${dom}/device/${kind}`);
    ids.sort((a, b) => Number(a) - Number(b) || a.localeCompare(b));
    for (const id of ids) devices.push(await device(xs, kind, id, `${dom}/device/${kind}/${id}`, domid));
  }
  const ports: { port: number; use: string }[] = [];
  const port = (v: string | undefined, use: string) => {
    if (v !== undefined && /^\d+$/.test(v)) ports.push({ port: Number(v), use });
  };
  port(await xs.read(`${dom}/store/port`), 'xenstore ring');
  for (const d of devices) {
    const f = d.frontend.keys;
    const label = d.kind === 'console' && d.frontend.path === `${dom}/console` ? 'console' : `${d.kind} ${d.id}`;
    port(f.port, label);
    for (const [k, v] of Object.entries(f)) if (/^event-channel(-tx|-rx)?$/.test(k)) port(v, k === 'event-channel' ? label : `${label} (${k.slice(14)})`);
  }
  ports.sort((a, b) => a.port - b.port);
  return { name, targetKiB: await kib(`${dom}/memory/target`), staticMaxKiB: await kib(`${dom}/memory/static-max`), devices, eventChannels: ports };
}

/** Ports past this are not asked about (FIFO event channels go up to 2^17). */
const MAX_PORTS = 16384;

/** Every port of the domain that is not closed, by EVTCHNOP_status from port 1 until Xen says the table ends. */
export function evtchnViews(xc: XenControl, domid: number): { ports: EventChannelView[]; truncated: boolean } {
  const ports: EventChannelView[] = [];
  for (let p = 1; p < MAX_PORTS; p++) {
    const s = xc.evtchnStatus(domid, p);
    if (!s) return { ports, truncated: false };
    if (s.status === 'closed') continue;
    const v: EventChannelView = { port: p, status: s.status, vcpu: s.vcpu };
    if (s.remoteDomid !== undefined) v.remoteDomid = s.remoteDomid;
    if (s.remotePort !== undefined) v.remotePort = s.remotePort;
    if (s.virq !== undefined) v.virq = VIRQ_NAMES[s.virq] ?? `VIRQ ${s.virq}`;
    if (s.pirq !== undefined) v.pirq = s.pirq;
    ports.push(v);
  }
  return { ports, truncated: true };
}

/**
 * Everything, for a domain already looked up (lookupGuest). `xs` undefined, or failing:
 * the domctl part alone, with xenstoreError saying why.
 */
export async function collectInfo(xc: XenControl, info: DomainInfo, xs: XsClient | undefined, o: { xsError?: string; width?: 32 | 64 } = {}): Promise<InfoView> {
  const width = o.width ?? Guest.detectWidth(xc, info.domid, info);
  const view: InfoView = { domain: domainView(info, width), vcpus: vcpuViews(xc, info) };
  let named: { port: number; use: string }[] | undefined;
  if (!xs) {
    view.xenstoreError = o.xsError ?? 'no xenstore';
  } else {
    try {
      const s = await xenstoreViews(xs, info.domid);
      view.domain.name = s.name;
      view.domain.memory.targetKiB = s.targetKiB;
      view.domain.memory.staticMaxKiB = s.staticMaxKiB;
      view.devices = s.devices;
      named = s.eventChannels;
    } catch (e) {
      view.xenstoreError = (e as Error).message;
    }
  }
  try {
    const { ports, truncated } = evtchnViews(xc, info.domid);
    for (const n of named ?? []) {
      const p = ports.find((x) => x.port === n.port);
      if (p) p.use = p.use ? `${p.use}, ${n.use}` : n.use;
    }
    view.eventChannels = ports;
    view.eventChannelsFrom = 'EVTCHNOP_status';
    if (truncated) view.eventChannelsNote = `only ports below ${MAX_PORTS} asked about`;
  } catch (e) {
    // No event_channel_op here (an old addon) or Xen refused: the ports xenstore names, said so.
    if (!(e instanceof XenError)) throw e;
    if (named) {
      view.eventChannels = named;
      view.eventChannelsFrom = 'xenstore';
    }
    view.eventChannelsNote = `EVTCHNOP_status: ${e.message}`;
  }
  return view;
}
