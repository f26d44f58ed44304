// The protocol ceiling: Debian's gdbserver debugging a local process, read through
// gdb exactly as our stub is. The process is a tiny C program compiled here: it
// mallocs and fills 16 MiB, prints the address, then loops calling tick().
import { spawn, execFileSync, ChildProcess } from 'child_process';
import fs from 'fs';
import os from 'os';
import path from 'path';
import { MiGdb } from '../test/support/mi';
import { connect, defineCommands, dumpTimes, dumpOnce, stepiTimes, cliTimes, continueStops, tracePackets, PacketTrace } from './gdbFigures';
import { procCpuMs, sleep } from './stats';
import { roundTrips } from './profile';

export const GDBSERVER = process.env.GDBSERVER ?? 'gdbserver';

const PROGRAM = `
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>

volatile unsigned long ticks;

#ifndef TICK_IN_ASM
__attribute__((noinline)) void tick(void) { ticks++; }
__attribute__((noinline)) void work(int n) { for (int i = 0; i < n; i++) tick(); }
#else
void tick(void);
void work(int n);
#endif

int main(void) {
  size_t n = (size_t)BENCH_BYTES;
  unsigned char *p = aligned_alloc(4096, n);
  if (!p) return 1;
  for (size_t i = 0; i < n; i++) p[i] = (unsigned char)((i * 2654435761u) >> 13);
  printf("%p\\n", (void *)p);
  fflush(stdout);
  for (;;) work(1000);
}
`;

/**
 * tick() and work() as hand-written assembly, as the demo guest's functions are: no CFI,
 * and a compile unit of GNU as, whose epilogues gdb does not trust. gdb then reads the
 * byte at pc for each frame it builds, on this program as on the demo guest, and a
 * stepi costs gdb the same packets on either side.
 */
const TICK_ASM = `
        .text
        .globl  tick
        .type   tick, @function
tick:
        incq    ticks(%rip)
        ret
        .size   tick, . - tick

        .globl  work
        .type   work, @function
work:
        push    %rbx
        mov     %edi, %ebx
1:      test    %ebx, %ebx
        jz      2f
        call    tick
        dec     %ebx
        jmp     1b
2:      pop     %rbx
        ret
        .size   work, . - work
        .section .note.GNU-stack,"",@progbits
`;

/** What the program's stepped functions are: C from GCC, or hand-written assembly (TICK_ASM). */
export type CeilingCode = 'c' | 'asm';

export interface CeilingResult {
  version: string;
  attachMs: number[];
  read: Record<string, number[]>;
  /** CPU ms per dump, by size: gdb's and gdbserver's. */
  readCpu: Record<string, { gdb: number; gdbserver: number }>;
  stepiMs: number[];
  infoRegistersMs: number[];
  btMs: number[];
  stopMs: number[];
  /** `maint packet qC` through gdb, ms per run. */
  roundTripMs: number[];
  /** What gdb sent gdbserver for a 1 MiB dump, a stepi, a continue to a breakpoint. */
  dumpTrace?: PacketTrace;
  stepiTrace?: PacketTrace;
  stopTrace?: PacketTrace;
}

export function gdbserverAvailable(): string | undefined {
  try {
    return execFileSync(GDBSERVER, ['--version'], { encoding: 'utf8' }).split('\n')[0];
  } catch {
    return undefined;
  }
}

function compile(dir: string, bytes: number, code: CeilingCode): string {
  const src = path.join(dir, 'ceiling.c');
  const exe = path.join(dir, 'ceiling');
  fs.writeFileSync(src, PROGRAM);
  const srcs = [src];
  if (code === 'asm') {
    const asm = path.join(dir, 'tick.S');
    fs.writeFileSync(asm, TICK_ASM);
    srcs.push(asm);
  }
  execFileSync(process.env.CC ?? 'gcc', ['-O0', '-g', '-fno-omit-frame-pointer', `-DBENCH_BYTES=${bytes}`, ...(code === 'asm' ? ['-DTICK_IN_ASM'] : []), '-o', exe, ...srcs], { stdio: 'pipe' });
  return exe;
}

function firstLine(p: ChildProcess, stream: 'stdout' | 'stderr', re: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let acc = '';
    const s = p[stream];
    if (!s) return reject(new Error(`no ${stream}`));
    const t = setTimeout(() => reject(new Error(`no ${re} from ${stream} within ${timeoutMs} ms: ${acc}`)), timeoutMs);
    const on = (d: Buffer) => {
      acc += d.toString();
      const m = re.exec(acc);
      if (m) {
        clearTimeout(t);
        s.off('data', on);
        resolve(m);
      }
    };
    s.on('data', on);
    p.once('exit', (code) => { clearTimeout(t); reject(new Error(`exited (${code}) before ${re}: ${acc}`)); });
  });
}

function stop(p: ChildProcess | undefined): void {
  if (p && p.exitCode === null && p.signalCode === null && p.pid !== undefined) {
    try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ }
  }
}

/** The ceiling's process under `gdbserver --attach`: where its buffer is, the port, and how to stop both. */
export interface CeilingTarget {
  exe: string;
  addr: bigint;
  port: number;
  serverPid: number | undefined;
  close(): void;
}

export async function startCeilingTarget(bytes: number, log: (m: string) => void, code: CeilingCode = 'c'): Promise<CeilingTarget> {
  const version = gdbserverAvailable();
  if (!version) throw new Error(`${GDBSERVER} not found: install Debian's gdbserver (apt-get install gdbserver)`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gdbsx-ceiling-'));
  let prog: ChildProcess | undefined;
  let server: ChildProcess | undefined;
  const close = () => {
    stop(server);
    stop(prog);
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    const exe = compile(dir, bytes, code);
    prog = spawn(exe, [], { stdio: ['ignore', 'pipe', 'ignore'] });
    const addr = BigInt((await firstLine(prog, 'stdout', /(0x[0-9a-f]+)\n/, 10000))[1]);
    server = spawn(GDBSERVER, ['--attach', '127.0.0.1:0', String(prog.pid)], { stdio: ['ignore', 'pipe', 'pipe'] });
    const both = new Promise<RegExpExecArray>((resolve, reject) => {
      const s = server as ChildProcess;
      let pending = 2;
      const fail = (e: Error) => { if (--pending === 0) reject(e); };
      firstLine(s, 'stderr', /Listening on port (\d+)/, 10000).then(resolve, fail);
      firstLine(s, 'stdout', /Listening on port (\d+)/, 10000).then(resolve, fail);
    });
    const port = Number((await both)[1]);
    log(`gdbserver: ${version}; pid ${prog.pid} at ${addr.toString(16)}, port ${port}`);
    return { exe, addr, port, serverPid: server.pid, close };
  } catch (e) {
    close();
    throw e;
  }
}

export async function runCeiling(o: { bytes: number[]; runs: number; readRuns: (bytes: number) => number; log: (m: string) => void }): Promise<CeilingResult> {
  const version = gdbserverAvailable();
  if (!version) throw new Error(`${GDBSERVER} not found: install Debian's gdbserver (apt-get install gdbserver)`);
  let target: CeilingTarget | undefined;
  let gdb: MiGdb | undefined;
  try {
    target = await startCeilingTarget(Math.max(...o.bytes), o.log);
    const { exe, addr, port } = target;
    const server = { pid: target.serverPid };
    gdb = new MiGdb([exe]);
    await gdb.setup();
    await defineCommands(gdb);
    const attachMs = [await connect(gdb, port)];
    const check = await dumpOnce(gdb, addr, 4096);
    for (let i = 0; i < 4096; i++) {
      if (check[i] !== (Number((BigInt(i) * 2654435761n) >> 13n) & 0xff)) throw new Error(`gdbserver dump mismatch at byte ${i}`);
    }
    const read: Record<string, number[]> = {};
    const readCpu: Record<string, { gdb: number; gdbserver: number }> = {};
    for (const b of o.bytes) {
      const g0 = procCpuMs(gdb.pid);
      const s0 = procCpuMs(server.pid);
      read[String(b)] = await dumpTimes(gdb, addr, b, o.readRuns(b));
      const n = o.readRuns(b) + 1;
      readCpu[String(b)] = { gdb: (procCpuMs(gdb.pid) - g0) / n, gdbserver: (procCpuMs(server.pid) - s0) / n };
      o.log(`gdbserver: dump ${b >> 20} MiB done`);
    }
    const top = addr + BigInt(1 << 20);
    const dumpTrace = await tracePackets(gdb, () => (gdb as MiGdb).console(`dump binary memory /dev/null 0x${addr.toString(16)} 0x${top.toString(16)}`));
    // Run control on a live process: stop in tick() first, so stepi and bt have frames.
    const stopMs = (await continueStops(gdb, 'tick', o.runs)).map((s) => s.totalMs);
    const stepiMs = await stepiTimes(gdb, o.runs);
    const g2 = gdb;
    const stepiTrace = await tracePackets(g2, () => stepiTimes(g2, 0));
    // One continue from the breakpoint, as the timed ones (the first lands on it).
    await continueStops(g2, 'tick', 0);
    const stopTrace = await tracePackets(g2, () => continueStops(g2, 'tick', 0));
    const infoRegistersMs = (await cliTimes(gdb, 'bench-regs', o.runs, false)).ms;
    const btMs = (await cliTimes(gdb, 'bench-bt', o.runs, false)).ms;
    const roundTripMs = await roundTrips(gdb, o.runs);
    await gdb.cmd('-target-detach', { strict: false });
    return { version, attachMs, read, readCpu, stepiMs, infoRegistersMs, btMs, stopMs, roundTripMs, dumpTrace, stepiTrace, stopTrace };
  } finally {
    if (gdb) {
      await Promise.race([gdb.quit(), sleep(5000)]);
      gdb.kill();
    }
    target?.close();
  }
}
