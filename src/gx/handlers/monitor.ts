// `monitor` commands (qRcmd): output goes to gdb as console (O) packets, then OK. The
// texts about the guest are the target's (vcpu/monitorText.ts); this is the dispatch.
import type { Reply } from '../reply';
import type { HandlerContext } from './context';
import { formatThreadId } from '../threadId';
import { snapshotStopped } from '../../snapshot';
import { UserError, XenError } from '../../xg/errors';
import { collectInfo } from '../../info/collect';
import { INFO_SECTIONS, InfoSection, infoText } from '../../info/format';
import { XsClient } from '../../xs/client';
import { openXenStore } from '../../xs/transport';
import { breakpointsText, domainText, setPgd3, vcpusText, xenText } from '../../vcpu/monitorText';

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

export function runMonitor(s: HandlerContext, line: string): Reply | Promise<Reply> {
  const [cmd, ...args] = line.trim().split(/\s+/);
  if (cmd === 'snapshot') return snapshotCommand(s, args.join(' '));
  if (cmd === 'info') return infoCommand(s, args);
  s.console(monitorOutput(s, line));
  return 'OK';
}

/** The guest is stopped while gdb has it: copy it as it stands; our int3s' original bytes go in the file. */
async function snapshotCommand(s: HandlerContext, file: string): Promise<Reply> {
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
async function infoCommand(s: HandlerContext, args: string[]): Promise<Reply> {
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

function monitorOutput(s: HandlerContext, line: string): string {
  const [cmd, ...args] = line.trim().split(/\s+/);
  let out: string;
  switch (cmd) {
    case '':
    case 'help':
      out = HELP;
      break;
    case 'domain':
      out = domainText(s.guest, (v) => formatThreadId(v, false, 0));
      break;
    case 'vcpus':
      out = vcpusText(s.guest);
      break;
    case 'breakpoints':
      out = breakpointsText(s.guest);
      break;
    case 'xen':
      out = xenText(s.guest);
      break;
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
    case 'pgd3':
      out = setPgd3(s.guest, args[0] ?? '');
      break;
    default:
      out = `unknown monitor command '${cmd}'; try 'monitor help'\n`;
  }
  return out;
}
