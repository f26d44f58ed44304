// `gdbsx -c`: print every VCPU's context without gdb, as gdbsx does, plus the
// control registers and a short list of stack words that look like kernel text
// addresses (gdbsx's heuristic "call trace").
import { Guest } from './guest';
import { readField, ContextRegName } from '../xg/context';

const GPRS64: [string, ContextRegName][] = [
  ['rip', 'rip'], ['rsp', 'rsp'], ['rbp', 'rbp'], ['rflags', 'rflags'],
  ['rax', 'rax'], ['rbx', 'rbx'], ['rcx', 'rcx'], ['rdx', 'rdx'], ['rsi', 'rsi'], ['rdi', 'rdi'],
  ['r8', 'r8'], ['r9', 'r9'], ['r10', 'r10'], ['r11', 'r11'], ['r12', 'r12'], ['r13', 'r13'], ['r14', 'r14'], ['r15', 'r15'],
];
const GPRS32: [string, ContextRegName][] = [
  ['eip', 'rip'], ['esp', 'rsp'], ['ebp', 'rbp'], ['eflags', 'rflags'],
  ['eax', 'rax'], ['ebx', 'rbx'], ['ecx', 'rcx'], ['edx', 'rdx'], ['esi', 'rsi'], ['edi', 'rdi'],
];
const SEGS: ContextRegName[] = ['cs', 'ss', 'ds', 'es', 'fs', 'gs'];
const CRS: ContextRegName[] = ['cr0', 'cr2', 'cr3', 'cr4'];

export function dumpContexts(g: Guest, onlyVcpu?: number): string {
  const w = g.width === 64 ? 16 : 8;
  const fmt = (v: bigint | undefined) => (v === undefined ? '-' : '0x' + v.toString(16).padStart(w, '0'));
  const { info } = g.describe();
  const out: string[] = [`domain ${g.domid}: ${info.hvm ? 'HVM/PVH' : 'PV'} ${g.width}-bit, ${info.maxVcpuId + 1} VCPU(s)`];
  for (let v = 0; v <= g.maxVcpu; v++) {
    if (onlyVcpu !== undefined && v !== onlyVcpu) continue;
    if (!g.isOnline(v)) {
      out.push('', `vcpu ${v}: offline`);
      continue;
    }
    const c = g.context(v);
    const rd = (n: ContextRegName) => readField(c.buf, c.layout, n);
    out.push('', `vcpu ${v}:`);
    const gprs = g.width === 64 ? GPRS64 : GPRS32;
    for (let i = 0; i < gprs.length; i += 4) {
      out.push('  ' + gprs.slice(i, i + 4).map(([name, f]) => `${name.padEnd(6)} ${fmt(rd(f))}`).join('  '));
    }
    out.push('  ' + SEGS.map((s) => `${s} ${(rd(s) ?? 0n).toString(16).padStart(4, '0')}`).join('  '));
    out.push('  ' + CRS.map((s) => `${s} ${fmt(rd(s))}`).join('  '));
    if (g.width === 64) out.push(`  fs_base ${fmt(rd('fs_base'))}  gs_base_kernel ${fmt(rd('gs_base_kernel'))}  gs_base_user ${fmt(rd('gs_base_user'))}`);
    out.push(`  ${callTrace(g, rd('rsp') ?? 0n)}`);
  }
  return out.join('\n') + '\n';
}

/** Stack words that look like kernel text addresses (up to 10), as gdbsx prints. */
function callTrace(g: Guest, sp: bigint): string {
  const word = g.width / 8;
  const stack = g.readMemory(sp, 512 * word, g.vcpus()[0]);
  const min = g.width === 64 ? 0xffffffff80000000n : 0xc0000000n;
  const hits: string[] = [];
  for (let off = 0; off + word <= stack.length && hits.length < 10; off += word) {
    const v = word === 8 ? stack.readBigUInt64LE(off) : BigInt(stack.readUInt32LE(off));
    if (v >= min && v < (g.width === 64 ? 0xffffffffffff0000n : 0xfffff000n)) hits.push('0x' + v.toString(16));
  }
  return `call trace (stack words that look like kernel text): ${hits.length ? hits.join(' ') : 'none'}`;
}
