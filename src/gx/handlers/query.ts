// General queries (q...) and settings (Q...): features, thread lists, target
// description, attach state, monitor commands.
import type { Reply } from '../reply';
import type { HandlerContext } from './context';
import { PACKET_SIZE } from '../reply';
import { ProtocolError, escapeBinary, fromHex, parseHexInt } from '../packet';
import { formatThreadId, parseThreadId } from '../threadId';
import { targetXml } from '../targetXml';
import { runMonitor } from './monitor';
import { domainOf } from './threads';
import type { Guest } from '../../vcpu/guest';

/** The last chunk answered: gdb reads the same thread list after every stop. */
let lastChunk: { doc: string; args: string; reply: Buffer } | undefined;

/** qXfer:object:read:annex:offset,length -> m<chunk> / l<last chunk>, binary-escaped. */
function xferChunk(doc: string, args: string): Buffer {
  if (lastChunk && lastChunk.doc === doc && lastChunk.args === args) return lastChunk.reply;
  const [offS, lenS] = args.split(',');
  if (lenS === undefined) throw new ProtocolError('qXfer needs offset,length');
  const off = parseHexInt(offS);
  const len = parseHexInt(lenS);
  const bytes = Buffer.from(doc, 'utf8');
  const chunk = bytes.subarray(off, off + len);
  const last = off + len >= bytes.length;
  const reply = Buffer.concat([Buffer.from(last ? 'l' : 'm'), escapeBinary(chunk)]);
  lastChunk = { doc, args, reply };
  return reply;
}

/** The threads of every domain held (one without multiprocess), by domain id. */
export function threadsXml(s: HandlerContext): string {
  const items = s.domains.flatMap((g) => g.vcpus().map((v) => {
    const id = formatThreadId(v, s.multiprocess, g.domid);
    // core is decimal (gdb stops parsing the list at core="a").
    return `<thread id="${id}" core="${v}" name="VCPU ${v}">${extraInfo(g, v)}</thread>`;
  }));
  return `<?xml version="1.0"?>\n<threads>\n${items.join('\n')}\n</threads>\n`;
}

function extraInfo(g: Guest, vcpu: number): string {
  return `VCPU ${vcpu} of domain ${g.domid}${g.isRunning ? ', running' : ', paused'}`;
}

function threadList(s: HandlerContext): string {
  return 'm' + s.domains.flatMap((g) => g.vcpus().map((v) => formatThreadId(v, s.multiprocess, g.domid))).join(',');
}

export function handleQuery(s: HandlerContext, t: string): Reply | Promise<Reply> {
  const name = t.split(/[:,;]/, 1)[0];
  switch (name) {
    case 'qSupported': {
      const offered = new Set(t.slice('qSupported:'.length).split(';'));
      s.multiprocess = offered.has('multiprocess+');
      s.swbreak = offered.has('swbreak+');
      s.hwbreak = offered.has('hwbreak+');
      const feats = [
        `PacketSize=${PACKET_SIZE.toString(16)}`, 'QStartNoAckMode+', 'qXfer:features:read+', 'qXfer:threads:read+',
        'vContSupported+', 'binary-upload+', 'QThreadEvents-', 'qRelocInsn-', 'fork-events-', 'vfork-events-', 'exec-events-',
      ];
      if (s.swbreak) feats.push('swbreak+');
      if (s.hwbreak) feats.push('hwbreak+');
      if (s.multiprocess) feats.push('multiprocess+');
      return feats.join(';');
    }
    case 'qXfer': {
      // qXfer:features:read:target.xml:off,len  |  qXfer:threads:read::off,len
      const m = /^qXfer:([a-z-]+):read:([^:]*):(.*)$/.exec(t);
      if (!m) return '';
      if (m[1] === 'features') {
        if (m[2] !== 'target.xml') return 'E00';
        return xferChunk(targetXml(s.regs.arch), m[3]);
      }
      if (m[1] === 'threads') return xferChunk(threadsXml(s), m[3]);
      return '';
    }
    case 'qfThreadInfo': return threadList(s);
    case 'qsThreadInfo': return 'l';
    case 'qC': return `QC${formatThreadId(s.currentVcpu, s.multiprocess, s.guest.domid)}`;
    case 'qAttached': return '1'; // attached to an existing domain: gdb's quit then detaches, never kills
    case 'qThreadExtraInfo': {
      const sel = parseThreadId(t.slice('qThreadExtraInfo,'.length));
      const g = domainOf(s, sel.pid);
      if (sel.kind !== 'vcpu' || !g?.isOnline(sel.vcpu)) return 'E01';
      return Buffer.from(extraInfo(g, sel.vcpu)).toString('hex');
    }
    case 'qRcmd': {
      const cmd = fromHex(t.slice('qRcmd,'.length)).toString('utf8');
      return runMonitor(s, cmd);
    }
    case 'qSymbol': return 'OK';
    case 'qOffsets': return '';
    case 'qHostInfo': {
      // LLDB: describe the target without needing an ELF.
      const triple = Buffer.from(s.guest.width === 64 ? 'x86_64-unknown-none' : 'i386-unknown-none').toString('hex');
      return `triple:${triple};ptrsize:${s.guest.width / 8};endian:little;`;
    }
    // LLDB asks how many watchpoints it may set: the four debug registers (shared with hbreak).
    case 'qWatchpointSupportInfo': return 'num:4;';
    case 'qProcessInfo': return `pid:${s.guest.domid.toString(16)};endian:little;ptrsize:${s.guest.width / 8};ostype:none;`;
    default: return '';
  }
}

export function handleQSet(s: HandlerContext, t: string): Reply {
  if (t === 'QStartNoAckMode') return 'OK';
  return '';
}
