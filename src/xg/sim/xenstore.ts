// The simulated xenstore: the tree a toolstack (libxl) writes for a domain with one
// network interface, one disk and the primary console, answered over xenstore's own
// wire format (src/xs/wire.ts) so the client code is the one that talks to the real one.
// Read-only requests are served; others get EACCES, as an unprivileged caller would.
import { XsTransport } from '../../xs/transport';
import { XsMessage, XsType, decodeMessage, encodeMessage, errorReply, payloadStrings } from '../../xs/wire';

class Node {
  readonly children = new Map<string, Node>();
  constructor(public value = '') {}
}

/** XenbusState values (xen/include/public/io/xenbus.h). */
const Connected = '4';
const Initialising = '1';

export interface SimDomainEntry {
  domid: number;
  name: string;
  type: 'pv' | 'pvh';
  uuid: string;
  vcpus: number;
  memKiB: number;
}

export class SimXenStore {
  private readonly root = new Node();
  /** Off: opening the transport fails as on a host without xenstored (tests of that path). */
  available = true;

  constructor() {
    this.write('/local/domain/0/name', 'Domain-0');
    this.write('/local/domain/0/domid', '0');
    this.write('/tool/xenstored', '');
  }

  /** Set (creating parents, as xenstored's mkdir -p on write does). */
  write(path: string, value: string): void {
    let n = this.root;
    for (const part of split(path)) {
      let c = n.children.get(part);
      if (!c) n.children.set(part, (c = new Node()));
      n = c;
    }
    n.value = value;
  }

  /** Remove a node and everything under it. */
  rm(path: string): void {
    const parts = split(path);
    const last = parts.pop();
    const parent = this.find(parts);
    if (parent && last !== undefined) parent.children.delete(last);
  }

  read(path: string): string | undefined {
    return this.find(split(path))?.value;
  }

  directory(path: string): string[] | undefined {
    const n = this.find(split(path));
    return n ? [...n.children.keys()] : undefined;
  }

  /** What libxl writes for a PV/PVH domain with vif 0, a vbd (xvda) and the primary console. */
  addDomain(e: SimDomainEntry): void {
    const dom = `/local/domain/${e.domid}`;
    const be = (kind: string, dev: string | number) => `/local/domain/0/backend/${kind}/${e.domid}/${dev}`;
    const mac = `00:16:3e:${hex2(e.domid >> 8)}:${hex2(e.domid & 0xff)}:01`;
    const w = (p: string, v: string | number) => this.write(p, String(v));
    w(`${dom}/name`, e.name);
    w(`${dom}/domid`, e.domid);
    w(`${dom}/vm`, `/vm/${e.uuid}`);
    w(`/vm/${e.uuid}/name`, e.name);
    w(`/vm/${e.uuid}/uuid`, e.uuid);
    w(`/libxl/${e.domid}/type`, e.type);
    w(`${dom}/memory/static-max`, e.memKiB);
    w(`${dom}/memory/target`, e.memKiB);
    for (let i = 0; i < e.vcpus; i++) w(`${dom}/cpu/${i}/availability`, 'online');
    w(`${dom}/store/port`, 1);
    w(`${dom}/store/ring-ref`, 0xfeffc);
    // The primary console: frontend keys in <dom>/console, its backend under dom0's tree.
    w(`${dom}/console/backend`, be('console', 0));
    w(`${dom}/console/backend-id`, 0);
    w(`${dom}/console/port`, 2);
    w(`${dom}/console/ring-ref`, 0xfeffd);
    w(`${dom}/console/limit`, 1048576);
    w(`${dom}/console/type`, 'xenconsoled');
    w(`${dom}/console/output`, 'pty');
    w(`${dom}/console/tty`, `/dev/pts/${e.domid + 2}`);
    w(`${be('console', 0)}/frontend`, `${dom}/console`);
    w(`${be('console', 0)}/frontend-id`, e.domid);
    w(`${be('console', 0)}/online`, 1);
    w(`${be('console', 0)}/state`, Initialising);
    w(`${be('console', 0)}/protocol`, 'vt100');
    // vif 0 on the bridge xenbr0.
    const vif = `${dom}/device/vif/0`;
    w(`${vif}/backend`, be('vif', 0));
    w(`${vif}/backend-id`, 0);
    w(`${vif}/handle`, 0);
    w(`${vif}/mac`, mac);
    w(`${vif}/state`, Connected);
    w(`${vif}/tx-ring-ref`, 8);
    w(`${vif}/rx-ring-ref`, 9);
    w(`${vif}/event-channel`, 3);
    w(`${vif}/request-rx-copy`, 1);
    w(`${be('vif', 0)}/frontend`, vif);
    w(`${be('vif', 0)}/frontend-id`, e.domid);
    w(`${be('vif', 0)}/online`, 1);
    w(`${be('vif', 0)}/state`, Connected);
    w(`${be('vif', 0)}/script`, '/etc/xen/scripts/vif-bridge');
    w(`${be('vif', 0)}/mac`, mac);
    w(`${be('vif', 0)}/bridge`, 'xenbr0');
    w(`${be('vif', 0)}/handle`, 0);
    w(`${be('vif', 0)}/type`, 'vif');
    w(`${be('vif', 0)}/hotplug-status`, 'connected');
    // The disk: xvda (51712) backed by an image file through blkback.
    const vbd = `${dom}/device/vbd/51712`;
    w(`${vbd}/backend`, be('vbd', 51712));
    w(`${vbd}/backend-id`, 0);
    w(`${vbd}/virtual-device`, 51712);
    w(`${vbd}/device-type`, 'disk');
    w(`${vbd}/state`, Connected);
    w(`${vbd}/ring-ref`, 10);
    w(`${vbd}/event-channel`, 4);
    w(`${vbd}/protocol`, 'x86_64-abi');
    w(`${be('vbd', 51712)}/frontend`, vbd);
    w(`${be('vbd', 51712)}/frontend-id`, e.domid);
    w(`${be('vbd', 51712)}/online`, 1);
    w(`${be('vbd', 51712)}/state`, Connected);
    w(`${be('vbd', 51712)}/params`, `/var/lib/xen/images/${e.name}.img`);
    w(`${be('vbd', 51712)}/type`, 'phy');
    w(`${be('vbd', 51712)}/physical-device`, '7:0');
    w(`${be('vbd', 51712)}/physical-device-path`, '/dev/loop0');
    w(`${be('vbd', 51712)}/script`, '/etc/xen/scripts/block');
    w(`${be('vbd', 51712)}/mode`, 'w');
    w(`${be('vbd', 51712)}/dev`, 'xvda');
    w(`${be('vbd', 51712)}/device-type`, 'disk');
    w(`${be('vbd', 51712)}/removable`, 0);
    w(`${be('vbd', 51712)}/sectors`, 2097152);
    w(`${be('vbd', 51712)}/sector-size`, 512);
    w(`${be('vbd', 51712)}/hotplug-status`, 'connected');
  }

  /** What xenstored does when a domain is released: its tree and its backends go. */
  removeDomain(domid: number): void {
    const uuid = this.read(`/local/domain/${domid}/vm`);
    this.rm(`/local/domain/${domid}`);
    this.rm(`/libxl/${domid}`);
    if (uuid) this.rm(uuid);
    for (const kind of this.directory('/local/domain/0/backend') ?? []) this.rm(`/local/domain/0/backend/${kind}/${domid}`);
  }

  /** One request as bytes in, the reply as bytes out (the codec both ways). */
  handleBytes(request: Buffer): Buffer {
    return encodeMessage(this.handle(decodeMessage(request)));
  }

  /** A client end, as /dev/xen/xenbus would be (the same bytes cross it). */
  transport(): XsTransport {
    if (!this.available) throw new Error('the simulated xenstore is switched off');
    return {
      description: 'the simulated xenstore',
      roundTrip: async (req: XsMessage) => decodeMessage(this.handleBytes(encodeMessage(req))),
      close: () => undefined,
    };
  }

  private handle(req: XsMessage): XsMessage {
    const reply = (payload: Buffer): XsMessage => ({ type: req.type, reqId: req.reqId, txId: req.txId, payload });
    const args = payloadStrings(req.payload);
    if (req.txId !== 0) return errorReply(req, 'ENOENT'); // no transaction was started
    switch (req.type) {
      case XsType.read: {
        const v = args.length === 1 && valid(args[0]) ? this.read(args[0]) : undefined;
        if (args.length !== 1 || !valid(args[0])) return errorReply(req, 'EINVAL');
        return v === undefined ? errorReply(req, 'ENOENT') : reply(Buffer.from(v, 'utf8'));
      }
      case XsType.directory: {
        if (args.length !== 1 || !valid(args[0])) return errorReply(req, 'EINVAL');
        const names = this.directory(args[0]);
        if (!names) return errorReply(req, 'ENOENT');
        const p = Buffer.from(names.map((n) => n + '\0').join(''), 'utf8');
        // Longer than a message holds: xenstored says E2BIG (XS_DIRECTORY_PART pages it).
        return p.length > 4096 ? errorReply(req, 'E2BIG') : reply(p);
      }
      case XsType.getDomainPath:
        if (args.length !== 1 || !/^\d+$/.test(args[0])) return errorReply(req, 'EINVAL');
        return reply(Buffer.from(`/local/domain/${Number(args[0])}\0`, 'utf8'));
      case XsType.write:
      case XsType.mkdir:
      case XsType.rm:
      case XsType.setPerms:
        return errorReply(req, 'EACCES');
      default:
        return errorReply(req, 'EINVAL');
    }
  }

  private find(parts: string[]): Node | undefined {
    let n: Node | undefined = this.root;
    for (const p of parts) {
      n = n.children.get(p);
      if (!n) return undefined;
    }
    return n;
  }
}

function split(path: string): string[] {
  return path.split('/').filter((p) => p !== '');
}

/** An absolute path of the characters xenstored allows, or a relative one. */
function valid(path: string): boolean {
  return path.length > 0 && /^[A-Za-z0-9\-/_@.]+$/.test(path) && !path.includes('//') && (path === '/' || !path.endsWith('/'));
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, '0');
}
