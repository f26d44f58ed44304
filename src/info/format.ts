// The text of `gdbsx info` and `monitor info`, one section each: domain, vcpus,
// devices, evtchn (the JSON form is the InfoView itself).
import { DeviceView, InfoView } from './collect';

export const INFO_SECTIONS = ['domain', 'vcpus', 'devices', 'evtchn'] as const;
export type InfoSection = typeof INFO_SECTIONS[number];

/** "0-3,6" for [0,1,2,3,6]; "none" for []. */
export function cpuList(cpus: readonly number[]): string {
  if (!cpus.length) return 'none';
  const parts: string[] = [];
  for (let i = 0; i < cpus.length;) {
    let j = i;
    while (j + 1 < cpus.length && cpus[j + 1] === cpus[j] + 1) j++;
    parts.push(i === j ? `${cpus[i]}` : `${cpus[i]}-${cpus[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}

/** Microseconds shown: an idle guest's VCPUs add up little CPU time. */
function seconds(s: number): string {
  return s.toFixed(6);
}

function kib(n: number): string {
  return n >= 1024 && n % 1024 === 0 ? `${n / 1024} MiB` : `${n} KiB`;
}

export function domainSection(v: InfoView): string {
  const d = v.domain;
  const flags = [d.paused && 'paused', d.dying && 'dying', d.shutdown && `shut down (${d.shutdownReason})`, d.debugged && 'debugged'].filter(Boolean);
  const mem = d.memory;
  const targets = [mem.targetKiB !== undefined && `target ${kib(mem.targetKiB)}`, mem.staticMaxKiB !== undefined && `static-max ${kib(mem.staticMaxKiB)}`].filter(Boolean);
  return [
    `domain ${d.domid}${d.name !== undefined ? ` "${d.name}"` : ''}: ${d.type} ${d.width}-bit, uuid ${d.uuid}, cpupool ${d.cpupool}`,
    `  state:    ${d.state}${flags.length ? `, ${flags.join(', ')}` : ''}`,
    `  memory:   ${kib(mem.currentKiB)} current, ${kib(mem.maxKiB)} max${targets.length ? ` (xenstore: ${targets.join(', ')})` : ''}`,
    `  cpu time: ${seconds(d.cpuTimeSeconds)} s`,
    `  VCPUs:    ${d.vcpusOnline} online of ${d.vcpusMax}`,
  ].join('\n') + '\n';
}

export function vcpusSection(v: InfoView): string {
  const rows = v.vcpus.map((c) => [String(c.vcpu), c.state, c.cpu === undefined ? '-' : String(c.cpu), seconds(c.cpuTimeSeconds), cpuList(c.hardAffinity), cpuList(c.softAffinity)]);
  const head = ['VCPU', 'state', 'CPU', 'time (s)', 'hard affinity', 'soft affinity'];
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => '  ' + r.map((c, i) => (i === 0 || i === 2 || i === 3 ? c.padStart(w[i]) : c.padEnd(w[i]))).join('  ').trimEnd();
  return [`VCPUs of domain ${v.domain.domid}`, line(head), ...rows.map(line)].join('\n') + '\n';
}

function deviceText(d: DeviceView): string[] {
  const f = d.frontend;
  const b = d.backend;
  const title = `${d.kind} ${d.id}${d.details.dev ? ` (${d.details.dev})` : ''}: frontend ${f.stateName ?? 'has no state'}` +
    (b ? `, backend (dom${b.domid ?? '?'}) ${b.stateName ?? 'has no state'}` : ', no backend');
  const lines = [`  ${title}`, `      frontend ${f.path}`];
  if (b) lines.push(`      backend  ${b.path}`);
  const rest = Object.entries(d.details).filter(([k]) => k !== 'dev');
  if (rest.length) lines.push(`      ${rest.map(([k, val]) => `${k} ${val}`).join(', ')}`);
  return lines;
}

export function devicesSection(v: InfoView): string {
  if (!v.devices) return `devices of domain ${v.domain.domid}: not known (${v.xenstoreError})\n`;
  if (!v.devices.length) return `devices of domain ${v.domain.domid} (xenstore): none\n`;
  return [`devices of domain ${v.domain.domid} (xenstore)`, ...v.devices.flatMap(deviceText)].join('\n') + '\n';
}

export function evtchnSection(v: InfoView): string {
  const id = v.domain.domid;
  if (!v.eventChannels) return `event channels of domain ${id}: not known (${[v.eventChannelsNote, v.xenstoreError].filter(Boolean).join('; ')})\n`;
  if (v.eventChannelsFrom === 'xenstore') {
    const lines = [`event channels of domain ${id} named in xenstore (${v.eventChannelsNote}; VIRQs and IPIs not listed)`];
    if (!v.eventChannels.length) lines.push('  none');
    for (const e of v.eventChannels) lines.push(`  port ${String(e.port).padStart(4)}  ${e.use}`);
    return lines.join('\n') + '\n';
  }
  const rows = v.eventChannels.map((e) => [
    String(e.port), e.status ?? '', String(e.vcpu ?? ''),
    e.status === 'interdomain' ? `dom${e.remoteDomid} port ${e.remotePort}` : e.status === 'unbound' ? `for dom${e.remoteDomid}` : e.virq ?? (e.pirq !== undefined ? `pirq ${e.pirq}` : ''),
    e.use ?? '',
  ]);
  const head = ['port', 'status', 'VCPU', 'bound to', 'xenstore names it'];
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => '  ' + r.map((c, i) => (i === 0 || i === 2 ? c.padStart(w[i]) : c.padEnd(w[i]))).join('  ').trimEnd();
  const title = `event channels of domain ${id} (EVTCHNOP_status${v.eventChannelsNote ? `; ${v.eventChannelsNote}` : ''})`;
  return [title, line(head), ...(rows.length ? rows.map(line) : ['  none'])].join('\n') + '\n';
}

export function infoText(v: InfoView, sections: readonly InfoSection[] = INFO_SECTIONS): string {
  const by: Record<InfoSection, (v: InfoView) => string> = { domain: domainSection, vcpus: vcpusSection, devices: devicesSection, evtchn: evtchnSection };
  return sections.map((s) => by[s](v)).join('\n');
}
