// The figures as a user sees them: the real gdb, driven through GDB/MI, against a
// stub at 127.0.0.1:port (ours on the simulated Xen, ours in the lab, or Debian's
// gdbserver for the protocol ceiling). Times are from the command written to gdb's
// stdin to the arrival of its answer (^done, ^connected or *stopped).
import fs from 'fs';
import os from 'os';
import path from 'path';
import { MiGdb, MiResult } from '../test/support/mi';
import { now, sleep, yieldLoop } from './stats';

export const HOST = '127.0.0.1';

/** gdb user commands that flush gdb's caches and then run the command, so the round trips are timed. */
const DEFINES = `
define bench-regs
  maintenance flush register-cache
  info registers
end
define bench-bt
  maintenance flush register-cache
  maintenance flush dcache
  bt
end
define bench-threads
  maintenance flush register-cache
  maintenance flush dcache
  info threads
end
`;

export async function defineCommands(gdb: MiGdb): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gdbsx-bench-'));
  try {
    const f = path.join(dir, 'defines.gdb');
    fs.writeFileSync(f, DEFINES);
    await gdb.console(`source ${f}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** `-target-select remote` to ^connected. */
export async function connect(gdb: MiGdb, port: number, timeoutMs = 60000): Promise<number> {
  const r = await gdb.cmd(`-target-select remote ${HOST}:${port}`, { timeoutMs });
  if (r.cls !== 'connected') throw new Error(`gdb: -target-select gave ^${r.cls} ${r.text}`);
  return r.done - r.sent;
}

/**
 * Attach time, `runs` times on one gdb: connect, then detach (the stub detaches the
 * guest and keeps listening). The symbol file (if any) is loaded once, beforehand.
 */
export async function attachTimes(port: number, file: string | undefined, runs: number): Promise<number[]> {
  const gdb = new MiGdb(file ? [file] : []);
  try {
    await gdb.setup();
    const out: number[] = [];
    for (let r = 0; r < runs + 1; r++) {
      let ms: number | undefined;
      for (let tries = 0; ms === undefined; tries++) {
        try {
          ms = await connect(gdb, port);
        } catch (e) {
          // The previous session may still be closing on the stub's side: try again.
          if (tries >= 20) throw e;
          await sleep(50);
        }
      }
      if (r > 0) out.push(ms);
      await gdb.cmd('-target-detach');
      for (let i = 0; i < 3; i++) await yieldLoop();
    }
    return out;
  } finally {
    await gdb.quit();
  }
}

/** gdb's own caches (registers, frames, stack memory), so every run asks the stub again. */
export async function flushCaches(gdb: MiGdb): Promise<void> {
  await gdb.console('maintenance flush register-cache');
  await gdb.console('maintenance flush dcache', { strict: false });
}

/** `dump binary memory` of [addr, addr+bytes) into `file` (default /dev/null). ms per run. */
export async function dumpTimes(gdb: MiGdb, addr: bigint, bytes: number, runs: number, file = '/dev/null'): Promise<number[]> {
  const cmd = `dump binary memory ${file} 0x${addr.toString(16)} 0x${(addr + BigInt(bytes)).toString(16)}`;
  const out: number[] = [];
  await gdb.console(cmd, { timeoutMs: 300000 }); // warm-up
  for (let r = 0; r < runs; r++) {
    const res = await gdb.console(cmd, { timeoutMs: 300000 });
    out.push(res.done - res.sent);
  }
  return out;
}

/** One dump into a real file, to check that gdb read everything (and what). */
export async function dumpOnce(gdb: MiGdb, addr: bigint, bytes: number): Promise<Buffer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gdbsx-bench-'));
  const f = path.join(dir, 'dump.bin');
  try {
    await gdb.console(`dump binary memory ${f} 0x${addr.toString(16)} 0x${(addr + BigInt(bytes)).toString(16)}`, { timeoutMs: 300000 });
    return fs.readFileSync(f);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Run to *stopped: the result of a resuming MI command and the stop record. */
async function runToStop(gdb: MiGdb, c: string, timeoutMs = 60000): Promise<{ sent: number; stopped: number; line: string }> {
  const mark = gdb.mark();
  const r: MiResult = await gdb.cmd(c, { timeoutMs });
  if (r.cls !== 'running') throw new Error(`gdb: ${c} gave ^${r.cls} ${r.text}`);
  const st = await gdb.waitAsync(/^\*stopped/, mark, timeoutMs);
  return { sent: r.sent, stopped: st.t, line: st.line };
}

/** `stepi`, `runs` times: ms per step (command to *stopped). */
export async function stepiTimes(gdb: MiGdb, runs: number): Promise<number[]> {
  const out: number[] = [];
  await runToStop(gdb, '-exec-step-instruction');
  for (let r = 0; r < runs; r++) {
    const s = await runToStop(gdb, '-exec-step-instruction');
    out.push(s.stopped - s.sent);
  }
  return out;
}

/** A CLI command after flushing gdb's caches: ms per run (command to ^done). */
export async function cliTimes(gdb: MiGdb, cmd: string, runs: number, flush = true): Promise<{ ms: number[]; output: string }> {
  const out: number[] = [];
  let output = '';
  for (let r = 0; r < runs + 1; r++) {
    if (flush) await flushCaches(gdb);
    const res = await gdb.console(cmd, { timeoutMs: 120000 });
    if (r === 0) output = res.console;
    else out.push(res.done - res.sent);
  }
  return { ms: out, output };
}

export interface GdbStop {
  /** -exec-continue written to *stopped received. */
  totalMs: number;
  sent: number;
  stopped: number;
  line: string;
}

/** Insert a breakpoint at `location`, continue to it `runs` times (after one warm-up), delete it. */
export async function continueStops(gdb: MiGdb, location: string, runs: number, timeoutMs = 60000, out: GdbStop[] = []): Promise<GdbStop[]> {
  const b = await gdb.cmd(`-break-insert ${location}`);
  const num = /number="(\d+)"/.exec(b.text)?.[1];
  try {
    for (let r = 0; r < runs + 1; r++) {
      const s = await runToStop(gdb, '-exec-continue', timeoutMs);
      if (!/reason="breakpoint-hit"/.test(s.line)) throw new Error(`continue stopped for another reason: ${s.line}`);
      if (r > 0) out.push({ totalMs: s.stopped - s.sent, ...s });
    }
  } finally {
    if (num) await gdb.cmd(`-break-delete ${num}`).catch(() => undefined);
  }
  return out;
}

export function stamp(): number {
  return now();
}

export interface PacketTrace {
  /** Packets gdb sent, by kind (m, g, vCont, Z0, qXfer, ...). */
  kinds: Record<string, number>;
  sent: number;
  received: number;
  bytesSent: number;
  bytesReceived: number;
  /** The largest memory read asked for (bytes of an m/x packet). */
  largestRead: number;
  /** The first few packets, shortened, for the report. */
  first: string[];
}

function packetKind(p: string): string {
  if (/^[qQv]/.test(p)) return /^[^:;,]*/.exec(p)?.[0] ?? p;
  if (/^[Zz]\d/.test(p)) return p.slice(0, 2);
  return p[0] ?? '?';
}

/** What gdb sent and received while `run` ran (with `set debug remote 1`, not timed). */
export async function tracePackets(gdb: MiGdb, run: () => Promise<unknown>): Promise<PacketTrace> {
  await gdb.console('set debug remote-packet-max-chars 64', { strict: false });
  await gdb.console('set debug remote 1');
  const lines: { text: string; t: number }[] = [];
  gdb.capture = lines;
  try {
    await run();
  } finally {
    gdb.capture = undefined;
    await gdb.console('set debug remote 0');
  }
  const tr: PacketTrace = { kinds: {}, sent: 0, received: 0, bytesSent: 0, bytesReceived: 0, largestRead: 0, first: [] };
  const size = (body: string) => {
    const omitted = /\[(\d+) bytes omitted\]/.exec(body);
    return body.replace(/\.\.\.\[\d+ bytes omitted\]/, '').length + (omitted ? Number(omitted[1]) : 0);
  };
  for (const l of lines.flatMap((x) => x.text.split('\n'))) {
    const s = /Sending packet: \$(.*?)(#[0-9a-f]{2})?$/.exec(l);
    if (s) {
      tr.sent++;
      tr.bytesSent += size(s[1]);
      const k = packetKind(s[1]);
      tr.kinds[k] = (tr.kinds[k] ?? 0) + 1;
      const m = /^[mx][0-9a-f]+,([0-9a-f]+)/.exec(s[1]);
      if (m) tr.largestRead = Math.max(tr.largestRead, parseInt(m[1], 16));
      if (tr.first.length < 40) tr.first.push(s[1].slice(0, 48));
      continue;
    }
    const r = /Packet received: (.*)$/.exec(l);
    if (r) {
      tr.received++;
      tr.bytesReceived += size(r[1]);
    }
  }
  return tr;
}

/** The stub's memory path as `monitor xen` names it ("page walk", "gdbsx_guestmemio"); undefined if it does not say. */
export async function stubMemoryPath(gdb: MiGdb): Promise<string | undefined> {
  const r = await gdb.console('monitor xen', { strict: false });
  return /memory: ([^;\n]+);/.exec(r.console)?.[1]?.trim();
}

/**
 * The same dumps against several stubs, alternating in `rounds` blocks so that drift in
 * the machine's load hits them alike. One gdb per stub, connected only during its
 * blocks (a stub attaches the guest while gdb is connected). Each block's first dump
 * is not counted (dumpTimes). `check` runs once per stub, after its first connect.
 * ms per run, by stub key, then by size.
 */
export async function alternatingDumps(stubs: { key: string; port: number }[], file: string | undefined, addr: bigint, sizes: number[],
  runsFor: (bytes: number) => number, rounds: number, check?: (key: string, gdb: MiGdb) => Promise<void>): Promise<Record<string, Record<string, number[]>>> {
  const out: Record<string, Record<string, number[]>> = {};
  const gdbs = stubs.map(() => new MiGdb(file ? [file] : []));
  try {
    for (const gdb of gdbs) await gdb.setup();
    for (let round = 0; round < rounds; round++) {
      for (let i = 0; i < stubs.length; i++) {
        const { key, port } = stubs[i];
        const gdb = gdbs[i];
        for (let tries = 0; ; tries++) {
          try {
            await connect(gdb, port);
            break;
          } catch (e) {
            // The previous session (the other stub's, on the same guest) may still be closing.
            if (tries >= 20) throw e;
            await sleep(100);
          }
        }
        if (round === 0) await check?.(key, gdb);
        const per = (out[key] ??= {});
        for (const b of sizes) per[b] = [...(per[b] ?? []), ...(await dumpTimes(gdb, addr, b, Math.max(1, Math.ceil(runsFor(b) / rounds))))];
        await gdb.cmd('-target-detach', { strict: false });
        for (let k = 0; k < 3; k++) await yieldLoop();
      }
    }
  } finally {
    for (const gdb of gdbs) {
      await Promise.race([gdb.quit(), sleep(5000)]);
      gdb.kill();
    }
  }
  return out;
}
