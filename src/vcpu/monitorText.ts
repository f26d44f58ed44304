// What `monitor` prints about the guest under debug: the target's own views of its
// domain, VCPUs, breakpoints and hypervisor, built from the Guest (the protocol layer
// only decodes qRcmd and sends the text).
import type { Guest } from './guest';
import { readField } from '../xg/context';
import { inKernel } from './registers';

function hex(v: bigint | undefined, w: number): string {
  return v === undefined ? '-'.padStart(w + 2) : '0x' + v.toString(16).padStart(w, '0');
}

/** The domain: id, type, width, state, VCPUs (named by `thread`, the client's thread ids), memory, the stub's breakpoints. */
export function domainText(g: Guest, thread: (vcpu: number) => string): string {
  const { info, width } = g.describe();
  const state = info.dying ? 'dying' : info.shutdown ? `shut down (reason ${info.shutdownReason})` : info.paused ? 'paused' : 'running';
  return [
    `domain ${info.domid}: ${info.hvm ? 'HVM/PVH' : 'PV'} ${width}-bit guest, ${state}`,
    `  VCPUs: ${info.nrOnlineVcpus} up of ${info.maxVcpuId + 1} (threads ${g.vcpus().map(thread).join(',')})`,
    `  memory: ${(Number(info.totPages) * 4) >> 10} MiB, cpu time ${(Number(info.cpuTimeNs) / 1e9).toFixed(3)} s, uuid ${info.handle}`,
    `  breakpoints inserted by the stub: ${g.bps.size}, pgd3: ${g.mem.pgd3 ? '0x' + g.mem.pgd3.toString(16) : 'off'}`,
  ].join('\n') + '\n';
}

/** Every VCPU: pc, sp, cr3 and mode. */
export function vcpusText(g: Guest): string {
  const w = g.width === 64 ? 16 : 8;
  const lines = [`VCPU thread ${'pc'.padEnd(w + 2)} ${'sp'.padEnd(w + 2)} ${'cr3'.padEnd(w + 2)} mode`];
  for (let v = 0; v <= g.maxVcpu; v++) {
    if (!g.isOnline(v)) {
      lines.push(`${String(v).padStart(4)} ${'-'.padStart(6)} offline`);
      continue;
    }
    const c = g.context(v);
    lines.push(`${String(v).padStart(4)} ${String(v + 1).padStart(6)} ${hex(readField(c.buf, c.layout, 'rip'), w)} ${hex(readField(c.buf, c.layout, 'rsp'), w)} ${hex(readField(c.buf, c.layout, 'cr3'), w)} ${inKernel(c) ? 'kernel' : 'user'}`);
  }
  return lines.join('\n') + '\n';
}

/** The breakpoints and watchpoints the stub has set. */
export function breakpointsText(g: Guest): string {
  if (g.bps.size + g.hw.size === 0) return 'no breakpoints inserted\n';
  return [...g.bps.addresses().map((a) => `  0x${a.toString(16)}  int3`), ...g.hw.list().map((h) => h.kind === 'exec' ? `  0x${h.addr.toString(16)}  hardware (debug register)`
    : `  0x${h.addr.toString(16)}  ${h.kind} ${h.len} byte${h.len === 1 ? '' : 's'} (debug register)`)].join('\n') + '\n';
}

/** The hypervisor, and how this guest is reached on it (paths, counters, what it cannot do). */
export function xenText(g: Guest): string {
  const v = g.xc.version();
  const p = g.paths;
  return `Xen ${v.major}.${v.minor}${v.extra} (${g.xc.hc.kind}), domctl interface 0x${g.xc.interfaceVersion.toString(16)}, ` +
    `${g.build === 'gdbsx' ? 'built with CONFIG_GDBSX' : 'stock (no CONFIG_GDBSX)'}\n  capabilities: ${v.capabilities}\n` +
    `  memory: ${p.memory}; run control: ${p.run}\n` +
    Object.entries(p.counters).map(([what, n]) => `  ${what}: ${n}\n`).join('') +
    Object.entries(g.limits).filter(([, why]) => why).map(([what, why]) => `  no ${what}: ${why}\n`).join('');
}

/** `pgd3 <hex>` (32-bit PAE guests' module addresses); "0" goes back to each thread's cr3. */
export function setPgd3(g: Guest, arg: string): string {
  const m = /^(0x)?([0-9a-fA-F]{1,16})$/.exec(arg);
  if (!m) return `Invalid pgd3 value '${arg}': give it in hex, e.g. monitor pgd3 0x1234000\n`;
  const pgd3 = BigInt('0x' + m[2]);
  if (pgd3 !== 0n && g.width === 64) {
    // A 64-bit guest has no PAE top-GB table: every read would go through a bogus L2.
    return `pgd3 refused: this guest is 64-bit; pgd3 (an L2 table for init_mm.pgd[3]) is only for ` +
      `32-bit PAE guests' module addresses. Memory is read through each thread's own page tables.\n`;
  }
  g.mem.pgd3 = pgd3;
  return g.mem.pgd3 ? `pgd3val set to: ${g.mem.pgd3.toString(16).padStart(16, '0')}\n` : 'pgd3 off: translating through the thread\'s own page tables\n';
}
