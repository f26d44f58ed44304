// gdb's extended-remote mode (`target extended-remote`, after `!`): one connection
// that attaches, detaches and attaches domains again, as gdbserver --multi does with
// processes. Domains are processes (pid = domain id); with gdb's multiprocess extensions
// `gdbsx serve` holds several at once, one per inferior. `kill` never destroys a domain:
// it detaches and leaves it running; `run` is refused (a domain is started with
// `xl create`). Packets are looked at here before the usual handlers; those that need a
// domain while none is attached get `E.<reason>` from the session's `guest`.
import type { Packet, Reply } from './reply';
import type { HandlerContext } from './handlers/context';
import { ProtocolError, escapeBinary, hexByte, parseHexInt } from './packet';
import { stopReply } from './stopReply';
import { handleQuery } from './handlers/query';

/** The osdata document a session is reading in chunks, kept from offset 0 to the end. */
const osdataDocs = new WeakMap<HandlerContext, Map<string, string>>();

const RUN_REFUSED = 'gdbsx: `run` cannot start a domain: create it in dom0 with `xl create <config>` ' +
  '(`xl create -p` to have it wait paused), then `attach <domid>` (`info os processes` lists the domains)';

/** qXfer read of `doc` at "off,len": m<chunk> or l<last chunk>, binary-escaped. */
function chunk(doc: string, args: string): Buffer {
  const [offS, lenS] = args.split(',');
  if (lenS === undefined) throw new ProtocolError('qXfer needs offset,length');
  const off = parseHexInt(offS);
  const len = parseHexInt(lenS);
  const bytes = Buffer.from(doc, 'utf8');
  return Buffer.concat([Buffer.from(off + len >= bytes.length ? 'l' : 'm'), escapeBinary(bytes.subarray(off, off + len))]);
}

function osdata(s: HandlerContext, annex: string, args: string): Promise<Reply> | Reply {
  const broker = s.broker;
  if (!broker) return 'E01';
  let docs = osdataDocs.get(s);
  if (!docs) osdataDocs.set(s, (docs = new Map()));
  const kept = docs.get(annex);
  if (kept !== undefined && !/^0,/.test(args)) return chunk(kept, args);
  return broker.osdata(annex).then((doc) => {
    if (doc === undefined) return 'E00';
    docs?.set(annex, doc);
    return chunk(doc, args);
  });
}

function parsePid(text: string): number {
  if (!/^[0-9a-fA-F]{1,8}$/.test(text)) throw new ProtocolError(`bad process id '${text.slice(0, 16)}'`);
  return parseInt(text, 16);
}

function attach(s: HandlerContext, pidText: string): Reply {
  const domid = parsePid(pidText);
  const broker = s.broker;
  if (!broker) return 'E.gdbsx: this connection cannot attach domains';
  const cur = s.attached;
  if (cur) {
    if (s.multiprocess && broker.fixedDomid === undefined) {
      // Another inferior (add-inferior, attach): a process beside the others. The same one twice would be two inferiors of one domain.
      if (s.holding(domid)) return `E.gdbsx: domain ${domid} is already attached on this connection (process ${domid})`;
    } else {
      // Without multiprocess gdb has one process: it kills (detaches) it before attaching another.
      if (cur.domid === domid) return stopReply(cur, s.lastStop, s);
      return `E.gdbsx: this connection is debugging domain ${cur.domid}; one domain per connection: detach first, or connect another gdb for domain ${domid}`;
    }
  }
  try {
    s.addGuest(broker.attach(domid, s));
  } catch (e) {
    const why = (e as Error).message;
    s.onNote(`refused to attach domain ${domid}: ${why}`);
    return `E.gdbsx: ${why}`;
  }
  const g = s.guest;
  s.onNote(`attached domain ${domid} (${g.width}-bit, ${g.vcpus().length} VCPUs); paused`);
  return stopReply(g, s.lastStop, s);
}

/** The domain a `D;pid` or `vKill;pid` names (without a pid: the current one), or the error for one this connection does not hold. */
function named(s: HandlerContext, pidText: string | undefined): number | string | undefined {
  if (pidText === undefined) return s.attached?.domid;
  const domid = parsePid(pidText);
  return s.holding(domid) ? domid : `E.gdbsx: domain ${domid} is not attached on this connection`;
}

/** Detach one domain (breakpoints removed, running as before); the connection and the other domains stay. */
function release(s: HandlerContext, domid: number | undefined, why: string): void {
  if (domid !== undefined) s.release(domid, why);
}

/** What the session has to answer without a domain, so gdb sees "no process" rather than errors. */
function withoutDomain(s: HandlerContext, t: string): Reply | undefined {
  if (t === '?') return 'W00';
  if (t === 'qfThreadInfo' || t === 'qsThreadInfo') return 'l';
  if (t === 'qC') return '';
  if (t.startsWith('qAttached')) return 'E01';
  if (t.startsWith('qXfer:threads:read::')) return chunk('<?xml version="1.0"?>\n<threads>\n</threads>\n', t.slice('qXfer:threads:read::'.length));
  if (t.startsWith('qXfer:features:read:')) return 'E01'; // gdb reads the description again after attach
  if (t[0] === 'H') return 'OK';
  return undefined;
}

/** The packets of extended-remote mode, and osdata; undefined: the usual handlers answer. */
export function handleExtended(s: HandlerContext, p: Packet): Reply | Promise<Reply> | undefined {
  const t = p.text;
  if (t === '!') {
    s.extended = true;
    return 'OK';
  }
  if (t.startsWith('qSupported')) {
    const base = handleQuery(s, t);
    return typeof base === 'string' && s.broker ? `${base};qXfer:osdata:read+` : base;
  }
  const od = /^qXfer:osdata:read:([^:]*):(.*)$/.exec(t);
  if (od) return osdata(s, od[1], od[2]);
  if (t.startsWith('vAttach;')) return attach(s, t.slice('vAttach;'.length));
  if (t.startsWith('vRun')) {
    s.onNote('refused `run`: a domain is started with `xl create`, then attached');
    return `E.${RUN_REFUSED}`;
  }
  if (s.extended) {
    if (t === 'D' || t.startsWith('D;')) {
      const domid = named(s, t[1] === ';' ? t.slice(2) : undefined);
      if (typeof domid === 'string') return domid;
      release(s, domid, 'detach');
      return 'OK';
    }
    if (t.startsWith('vKill')) {
      const domid = named(s, t[5] === ';' ? t.slice(6) : undefined);
      if (typeof domid === 'string') return domid;
      release(s, domid, 'kill (a domain is never destroyed)');
      return 'OK';
    }
    if (t === 'k') {
      // LLDB waits for an exit reply to `k`; gdb sends vKill instead in this mode. `k` is every process.
      const pid = s.attached?.domid;
      for (const g of s.domains) release(s, g.domid, 'kill (a domain is never destroyed)');
      return `W${hexByte(0)}${s.multiprocess && pid !== undefined ? `;process:${pid.toString(16)}` : ''}`;
    }
  }
  if (!s.attached) return withoutDomain(s, t);
  return undefined;
}
