// The domains `gdbsx serve` offers, as gdb's `info os processes` shows them
// (qXfer:osdata:read:processes): pid = domain id, user = the domain's name, command =
// its type, width, VCPUs and state. Read afresh for every listing, so domains created or
// destroyed while the stub runs are seen.
//
// Which domains: getdomaininfo from domain 1 up, which on Xen 4.17 answers the next
// existing domain (libxc's old way of listing) and from 4.18 on only an exact id, so the
// ids in xenstore's /local/domain are asked too. dom0 is left out: it cannot be attached.
import { DomainInfo, domainType } from '../xg/domctl';
import { XenControl } from '../xg/xenctl';
import { XsClient } from '../xs/client';
import type { XsTransport } from '../xs/transport';

export interface DomainEntry {
  domid: number;
  name: string;
  type: 'PV' | 'PVH' | 'HVM';
  /** PV only: an HVM/PVH guest's width needs a pause to read (see Guest.detectWidth), not worth it for a list. */
  width?: 32 | 64;
  vcpus: number;
  state: string;
}

function stateOf(info: DomainInfo): string {
  if (info.dying) return 'dying';
  if (info.shutdown) return 'shut down';
  const s = info.paused ? 'paused' : info.running ? 'running' : info.blocked ? 'blocked' : 'runnable';
  return info.debugged ? `${s}, debugged` : s;
}

/** Domain ids xenstore knows (empty if xenstore cannot be reached: getdomaininfo still lists). */
async function xenstoreIds(xs: XsClient | undefined): Promise<{ ids: number[]; names: Map<number, string> }> {
  const names = new Map<number, string>();
  if (!xs) return { ids: [], names };
  try {
    const ids = (await xs.directory('/local/domain')).filter((d) => /^\d+$/.test(d)).map(Number);
    for (const id of ids) {
      const n = await xs.read(`/local/domain/${id}/name`);
      if (n) names.set(id, n);
    }
    return { ids, names };
  } catch {
    return { ids: [], names };
  }
}

/** The guest domains; `also`: ids asked for even if neither way above finds them (`gdbsx -a`'s own). */
export async function listDomains(xc: XenControl, xenstore: (() => Promise<XsTransport>) | undefined, also: readonly number[] = []): Promise<DomainEntry[]> {
  let transport: XsTransport | undefined;
  try {
    transport = xenstore ? await xenstore() : undefined;
  } catch {
    transport = undefined;
  }
  const { ids, names } = await xenstoreIds(transport ? new XsClient(transport) : undefined);
  try {
    transport?.close();
  } catch {
    /* best effort */
  }
  const infos = new Map<number, DomainInfo>();
  for (let d = 1; d < 0x7ff0;) {
    const info = xc.domainInfoFrom(d);
    if (!info || info.domid < d) break;
    infos.set(info.domid, info);
    d = info.domid + 1;
  }
  for (const id of [...ids, ...also]) {
    if (id === 0 || infos.has(id)) continue;
    const info = xc.domainInfoFrom(id);
    if (info && info.domid === id) infos.set(id, info);
  }
  return [...infos.values()].sort((a, b) => a.domid - b.domid).map((info) => {
    let width: 32 | 64 | undefined;
    if (!info.hvm) {
      try {
        width = xc.getAddressSize(info.domid) === 32 ? 32 : 64;
      } catch {
        width = undefined;
      }
    }
    return {
      domid: info.domid, name: names.get(info.domid) ?? `dom${info.domid}`, type: domainType(info), width,
      vcpus: info.nrOnlineVcpus, state: stateOf(info),
    };
  });
}

function xmlText(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function osdataXml(type: string, rows: Record<string, string>[]): string {
  const items = rows.map((r) => `  <item>\n${Object.entries(r).map(([k, v]) => `    <column name="${k}">${xmlText(v)}</column>`).join('\n')}\n  </item>`);
  return `<?xml version="1.0"?>\n<!DOCTYPE target SYSTEM "osdata.dtd">\n<osdata type="${type}">\n${items.join('\n')}${items.length ? '\n' : ''}</osdata>\n`;
}

/** `info os`: the types of data offered (only processes). */
export function osdataTypes(): string {
  return osdataXml('types', [{ Type: 'processes', Description: 'Listing of all Xen domains (pid = domain id)', Title: 'Domains' }]);
}

/** `info os processes`. */
export function osdataProcesses(domains: readonly DomainEntry[]): string {
  return osdataXml('processes', domains.map((d) => ({
    pid: String(d.domid),
    user: d.name,
    command: `${d.type}${d.width ? ` ${d.width}-bit` : ''}, ${d.vcpus} VCPU${d.vcpus === 1 ? '' : 's'}, ${d.state}`,
  })));
}
