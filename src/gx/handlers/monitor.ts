// `monitor` commands (qRcmd): output goes to gdb as console (O) packets, then OK.
import type { Reply, Session } from '../session';
import { readField } from '../../xg/context';
import { formatThreadId } from '../threadId';
import { snapshotStopped } from '../../snapshot';
import { UserError, XenError } from '../../xg/errors';
import { collectInfo } from '../../info/collect';
import { INFO_SECTIONS, InfoSection, infoText } from '../../info/format';
import { XsClient } from '../../xs/client';
import { openXenStore } from '../../xs/transport';

const HELP = `gdbsx monitor commands:
  help                 this text
  domain               the domain being debugged (id, type, width, state, VCPUs, the stub's breakpoints)
  info [domain|vcpus|devices|evtchn ...]
                       the domain as Xen and the toolstack see it (name, type, memory, flags, CPU
                       time), each VCPU's scheduler state, physical CPU, CPU time and affinity,
                       its virtual devices from xenstore (frontend/backend paths and states, MACs,
                       bridges, disks) and the event channels xenstore names; default: all four
  vcpus                every VCPU: state, pc, sp, cr3, mode
  breakpoints          the breakpoints and watchpoints the stub has set (int3 in memory, debug registers)
  xen                  hypervisor version, domctl interface, and how this guest is reached
                       (memory path, run control, what this hypervisor cannot do here)
  translate <addr> [thread]
                       walk the page tables for <addr> as a thread (VCPU) sees it (default:
                       the selected thread): each level's entry and flags, the frame
  cr3                  the table each thread's memory reads start from (cr3, mode, root frame)
  pgd3 <hex>           (gdbsx, 32-bit guests) translate through this PAE L2 table (init_mm.pgd[3]) for
                       32-bit guest module addresses; "pgd3 0" goes back to the thread's cr3
  snapshot <path>      write the stopped guest as an ELF core to <path> on the stub's host
                       (memory and every VCPU's registers; open with gdb vmlinux <path>)
`;

function hex(v: bigint | undefined, w: number): string {
  return v === undefined ? '-'.padStart(w + 2) : '0x' + v.toString(16).padStart(w, '0');
}

function domainText(s: Session): string {
  const { info, width } = s.guest.describe();
  const state = info.dying ? 'dying' : info.shutdown ? `shut down (reason ${info.shutdownReason})` : info.paused ? 'paused' : 'running';
  return [
    `domain ${info.domid}: ${info.hvm ? 'HVM/PVH' : 'PV'} ${width}-bit guest, ${state}`,
    `  VCPUs: ${info.nrOnlineVcpus} up of ${info.maxVcpuId + 1} (threads ${s.guest.vcpus().map((v) => formatThreadId(v, false, 0)).join(',')})`,
    `  memory: ${(Number(info.totPages) * 4) >> 10} MiB, cpu time ${(Number(info.cpuTimeNs) / 1e9).toFixed(3)} s, uuid ${info.handle}`,
    `  breakpoints inserted by the stub: ${s.guest.bps.size}, pgd3: ${s.guest.mem.pgd3 ? '0x' + s.guest.mem.pgd3.toString(16) : 'off'}`,
  ].join('\n') + '\n';
}

function vcpusText(s: Session): string {
  const w = s.guest.width === 64 ? 16 : 8;
  const lines = [`VCPU thread ${'pc'.padEnd(w + 2)} ${'sp'.padEnd(w + 2)} ${'cr3'.padEnd(w + 2)} mode`];
  for (let v = 0; v <= s.guest.maxVcpu; v++) {
    if (!s.guest.isOnline(v)) {
      lines.push(`${String(v).padStart(4)} ${'-'.padStart(6)} offline`);
      continue;
    }
    const c = s.guest.context(v);
    const cs = Number(readField(c.buf, c.layout, 'cs') ?? 0n);
    const kernel = c.hvm ? (cs & 3) === 0 : ((Number(readField(c.buf, c.layout, 'flags') ?? 0n) & 4) !== 0);
    lines.push(`${String(v).padStart(4)} ${String(v + 1).padStart(6)} ${hex(readField(c.buf, c.layout, 'rip'), w)} ${hex(readField(c.buf, c.layout, 'rsp'), w)} ${hex(readField(c.buf, c.layout, 'cr3'), w)} ${kernel ? 'kernel' : 'user'}`);
  }
  return lines.join('\n') + '\n';
}

export function runMonitor(s: Session, line: string): Reply | Promise<Reply> {
  const [cmd, ...args] = line.trim().split(/\s+/);
  if (cmd === 'snapshot') return snapshotCommand(s, args.join(' '));
  if (cmd === 'info') return infoCommand(s, args);
  s.console(monitorOutput(s, line));
  return 'OK';
}

/** The guest is stopped while gdb has it: copy it as it stands; our int3s' original bytes go in the file. */
async function snapshotCommand(s: Session, file: string): Promise<Reply> {
  if (!file) {
    s.console('usage: monitor snapshot <path>   (a path on the host the stub runs on)\n');
    return 'OK';
  }
  try {
    s.console(await snapshotStopped(s.guest.xc, s.guest.domid, file, s.guest.bps.originals()));
  } catch (e) {
    if (!(e instanceof UserError || e instanceof XenError || (e as NodeJS.ErrnoException).code)) throw e;
    s.console(`snapshot failed: ${(e as Error).message}\n`);
  }
  return 'OK';
}

/** `monitor info [sections]`: gdbsx info's view; without xenstore, the domctl sections and a line saying why. */
async function infoCommand(s: Session, args: string[]): Promise<Reply> {
  const bad = args.filter((a) => !(INFO_SECTIONS as readonly string[]).includes(a));
  if (bad.length) {
    s.console(`unknown section '${bad[0]}': monitor info [${INFO_SECTIONS.join('|')} ...]\n`);
    return 'OK';
  }
  const sections = args.length ? args as InfoSection[] : [...INFO_SECTIONS];
  let xs: XsClient | undefined;
  let xsError: string | undefined;
  if (sections.includes('devices') || sections.includes('evtchn') || sections.includes('domain')) {
    try {
      xs = new XsClient(await (s.xenstore ?? (() => openXenStore()))());
    } catch (e) {
      xsError = (e as Error).message;
    }
  }
  try {
    const view = await collectInfo(s.guest.xc, s.guest.xc.getDomainInfo(s.guest.domid), xs, { xsError, width: s.guest.width });
    s.console(infoText(view, sections) + (view.xenstoreError && !sections.some((x) => x === 'devices' || x === 'evtchn') ? `(no xenstore: ${view.xenstoreError})\n` : ''));
  } catch (e) {
    if (!(e instanceof XenError)) throw e;
    s.console(`info failed: ${e.message}\n`);
  } finally {
    xs?.close();
  }
  return 'OK';
}

function monitorOutput(s: Session, line: string): string {
  const [cmd, ...args] = line.trim().split(/\s+/);
  let out: string;
  switch (cmd) {
    case '':
    case 'help':
      out = HELP;
      break;
    case 'domain':
      out = domainText(s);
      break;
    case 'vcpus':
      out = vcpusText(s);
      break;
    case 'breakpoints':
      out = s.guest.bps.size + s.guest.hw.size === 0 ? 'no breakpoints inserted\n'
        : [...s.guest.bps.addresses().map((a) => `  0x${a.toString(16)}  int3`), ...s.guest.hw.list().map((h) => h.kind === 'exec' ? `  0x${h.addr.toString(16)}  hardware (debug register)`
          : `  0x${h.addr.toString(16)}  ${h.kind} ${h.len} byte${h.len === 1 ? '' : 's'} (debug register)`)].join('\n') + '\n';
      break;
    case 'xen': {
      const v = s.guest.xc.version();
      const p = s.guest.paths;
      const lim = s.guest.limits;
      out = `Xen ${v.major}.${v.minor}${v.extra} (${s.guest.xc.hc.kind}), domctl interface 0x${s.guest.xc.interfaceVersion.toString(16)}, ` +
        `${s.guest.build === 'gdbsx' ? 'built with CONFIG_GDBSX' : 'stock (no CONFIG_GDBSX)'}\n  capabilities: ${v.capabilities}\n` +
        `  memory: ${p.memory}; run control: ${p.run}\n` +
        Object.entries(p.counters).map(([what, n]) => `  ${what}: ${n}\n`).join('') +
        Object.entries(lim).filter(([, why]) => why).map(([what, why]) => `  no ${what}: ${why}\n`).join('');
      break;
    }
    case 'translate': {
      const m = /^(0x)?([0-9a-fA-F]{1,16})$/.exec(args[0] ?? '');
      const thread = args[1] === undefined ? s.currentVcpu + 1 : Number(args[1]);
      if (!m) {
        out = `usage: monitor translate <hex address> [thread]\n`;
      } else if (!Number.isInteger(thread) || !s.guest.isOnline(thread - 1)) {
        out = `no thread ${args[1]} (threads are VCPU + 1; see info threads)\n`;
      } else {
        out = s.guest.translateText(BigInt('0x' + m[2]), thread - 1);
      }
      break;
    }
    case 'cr3':
      out = s.guest.cr3Text();
      break;
    case 'pgd3': {
      const arg = args[0] ?? '';
      const m = /^(0x)?([0-9a-fA-F]{1,16})$/.exec(arg);
      if (!m) {
        out = `Invalid pgd3 value '${arg}': give it in hex, e.g. monitor pgd3 0x1234000\n`;
        break;
      }
      const pgd3 = BigInt('0x' + m[2]);
      if (pgd3 !== 0n && s.guest.width === 64) {
        // A 64-bit guest has no PAE top-GB table: every read would go through a bogus L2.
        out = `pgd3 refused: this guest is 64-bit; pgd3 (an L2 table for init_mm.pgd[3]) is only for ` +
          `32-bit PAE guests' module addresses. Memory is read through each thread's own page tables.\n`;
        break;
      }
      s.guest.mem.pgd3 = pgd3;
      out = s.guest.mem.pgd3 ? `pgd3val set to: ${s.guest.mem.pgd3.toString(16).padStart(16, '0')}\n` : 'pgd3 off: translating through the thread\'s own page tables\n';
      break;
    }
    default:
      out = `unknown monitor command '${cmd}'; try 'monitor help'\n`;
  }
  return out;
}
