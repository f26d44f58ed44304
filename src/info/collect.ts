// What `gdbsx info` and `monitor info` show: a domain as Xen's domctls describe it,
// each VCPU as the scheduler sees it, and its virtual devices and their event channels
// as the toolstack wrote them in xenstore. Reads only: nothing is paused but, for an
// HVM/PVH guest's width, Xen's brief pause to copy one VCPU's CPU record.
import { DomainInfo, ShutdownReason, domainType } from '../xg/domctl';
import { XenControl } from '../xg/xenctl';
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
  /** What xenstore says it serves (xenstore ring, console, a device). */
  use: string;
}

export interface InfoView {
  domain: DomainView;
  vcpus: VcpuView[];
  /** Absent when xenstore could not be read (xenstoreError says why). */
  devices?: DeviceView[];
  /** The ports xenstore names (store, console, devices' event-channel keys). */
  eventChannels?: EventChannelView[];
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
export async function xenstoreViews(xs: XsClient, domid: number): Promise<{ name?: string; targetKiB?: number; staticMaxKiB?: number; devices: DeviceView[]; eventChannels: EventChannelView[] }> {
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
  const ports: EventChannelView[] = [];
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

/**
 * Everything, for a domain already looked up (lookupGuest). `xs` undefined, or failing:
 * the domctl part alone, with xenstoreError saying why.
 */
export async function collectInfo(xc: XenControl, info: DomainInfo, xs: XsClient | undefined, o: { xsError?: string; width?: 32 | 64 } = {}): Promise<InfoView> {
  const width = o.width ?? Guest.detectWidth(xc, info.domid, info);
  const view: InfoView = { domain: domainView(info, width), vcpus: vcpuViews(xc, info) };
  if (!xs) {
    view.xenstoreError = o.xsError ?? 'no xenstore';
    return view;
  }
  try {
    const s = await xenstoreViews(xs, info.domid);
    view.domain.name = s.name;
    view.domain.memory.targetKiB = s.targetKiB;
    view.domain.memory.staticMaxKiB = s.staticMaxKiB;
    view.devices = s.devices;
    view.eventChannels = s.eventChannels;
  } catch (e) {
    view.xenstoreError = (e as Error).message;
  }
  return view;
}
