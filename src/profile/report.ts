// Naming samples (function, address space, stack) and the default text report: top
// tables by address space and by function, for all VCPUs and for each, with percentages.
import { ProfileData, Sample } from './profiler';
import { SymbolTable } from './symbols';

export interface Naming {
  symbols: SymbolTable | undefined;
  /** Said in the report header (where the symbols came from, or why there are none). */
  symbolNote: string;
}

const hex = (v: bigint) => '0x' + v.toString(16);

/** The function a kernel address is in, or the address itself when nothing names it. */
export function kernelName(n: Naming, addr: bigint): string {
  if (!n.symbols) return hex(addr);
  return n.symbols.nameOf(addr) ?? '[unknown kernel]';
}

/** What a sample was doing: the kernel function, or [user], [idle], [waiting], [offline]. */
export function leafName(n: Naming, s: Sample): string {
  switch (s.mode) {
    case 'kernel': return kernelName(n, s.rip);
    case 'user': return '[user]';
    case 'idle': return '[idle]';
    case 'waiting': return '[waiting]';
    case 'offline': return '[offline]';
  }
}

export function spaceName(s: Sample): string {
  return s.mode === 'kernel' || s.mode === 'user' ? `cr3 ${hex(s.cr3)}` : `(${s.mode})`;
}

/** Root-first frames: the callers (a return address names the function that called), then the leaf. */
export function stackNames(n: Naming, s: Sample): string[] {
  const callers = (s.callers ?? []).map((r) => kernelName(n, r - 1n)).reverse();
  return [...callers, leafName(n, s)];
}

export interface Row {
  key: string;
  count: number;
}

/** Counts by key, largest first (ties by name, so output is stable). */
export function tally(samples: readonly Sample[], key: (s: Sample) => string): Row[] {
  const m = new Map<string, number>();
  for (const s of samples) m.set(key(s), (m.get(key(s)) ?? 0) + 1);
  return [...m].map(([k, count]) => ({ key: k, count })).sort((a, b) => b.count - a.count || (a.key < b.key ? -1 : 1));
}

/** Each function once per sample whose stack holds it (recursion counted once). */
export function inclusive(samples: readonly Sample[], n: Naming): Row[] {
  const m = new Map<string, number>();
  for (const s of samples) for (const f of new Set(stackNames(n, s))) m.set(f, (m.get(f) ?? 0) + 1);
  return [...m].map(([key, count]) => ({ key, count })).sort((a, b) => b.count - a.count || (a.key < b.key ? -1 : 1));
}

function table(title: string, head: string, rows: Row[], total: number, top: number): string[] {
  const out = [title, `  ${'samples'.padStart(8)} ${'%'.padStart(7)}  ${head}`];
  for (const r of rows.slice(0, top)) {
    out.push(`  ${String(r.count).padStart(8)} ${((100 * r.count) / total).toFixed(1).padStart(6)}%  ${r.key}`);
  }
  if (rows.length > top) {
    const rest = rows.slice(top).reduce((t, r) => t + r.count, 0);
    out.push(`  ${String(rest).padStart(8)} ${((100 * rest) / total).toFixed(1).padStart(6)}%  (${rows.length - top} more)`);
  }
  return out;
}

export function header(p: ProfileData, n: Naming): string[] {
  const secs = (p.elapsedMs / 1000).toFixed(1);
  const lines = [
    `gdbsx profile: domain ${p.domid}, ${p.vcpus} VCPU${p.vcpus === 1 ? '' : 's'}, ${secs} s at ${p.hz} Hz ` +
      `(achieved ${p.achievedHz.toFixed(1)} Hz), ${p.samples.length} samples` + (p.endedBy ? ` (ended early: ${p.endedBy})` : ''),
    `symbols: ${n.symbolNote}`,
    `one sample of all VCPUs took ${p.tickUs.mean.toFixed(0)} µs on average (max ${p.tickUs.max.toFixed(0)} µs); ` +
      `${p.registerReads} register reads, each pausing one running VCPU inside Xen for the copy`,
  ];
  return lines;
}

export function textReport(p: ProfileData, n: Naming, top = 15): string {
  const out = header(p, n);
  const section = (title: string, samples: Sample[]) => {
    if (samples.length === 0) {
      out.push('', `${title}: no samples`);
      return;
    }
    const modes = tally(samples, (s) => s.mode).map((r) => `${r.key} ${((100 * r.count) / samples.length).toFixed(1)}%`).join(', ');
    out.push('', `${title}: ${samples.length} samples (${modes})`);
    out.push(...table('  by address space', 'address space (cr3, PCID and PTI bits masked)', tally(samples, spaceName), samples.length, top).map((l) => '  ' + l));
    out.push(...table('  by function', 'function', tally(samples, (s) => leafName(n, s)), samples.length, top).map((l) => '  ' + l));
    // With stacks: the time spent in a function and what it called, so the loop a VCPU
    // spins in tops this table even when its callees take the samples one by one.
    if (samples.some((s) => s.callers !== undefined)) {
      out.push(...table('  by function, with what it called (inclusive)', 'function', inclusive(samples, n), samples.length, top).map((l) => '  ' + l));
    }
  };
  section('all VCPUs', p.samples);
  for (let v = 0; v < p.vcpus; v++) section(`VCPU ${v}`, p.samples.filter((s) => s.vcpu === v));
  return out.join('\n') + '\n';
}
