// Test harness: the stub on the simulated Xen (in this process, so tests can look
// at the guest directly), and the real gdb driven as a child process, in batch
// mode or through the MI interpreter (as VS Code and CLion drive it).
import { spawn, ChildProcessWithoutNullStreams, execFileSync } from 'child_process';
import fs from 'fs';
import os from 'os';
import path from 'path';
import { XenControl } from '../../src/xg/xenctl';
import { GdbServer } from '../../src/gx/server';
import { startSimDemo, demoImage } from '../../src/simDemo';
import type { SimXen, SimXenOptions } from '../../src/xg/sim';

export const GDB = process.env.GDB ?? 'gdb';

// Breakpoint journals (a killed stub's int3s) of the tests' stubs go to a directory of the run's own.
process.env.GDBSX_STATE_DIR ??= fs.mkdtempSync(path.join(os.tmpdir(), 'gdbsx-state-'));

export interface Stub {
  port: number;
  sim: SimXen;
  domid: number;
  image: string;
  server: GdbServer;
  xc: XenControl;
  close(): Promise<void>;
}

export async function startStub(o: { vcpus?: number; width?: 32 | 64; type?: 'pv' | 'pvh'; xen?: SimXenOptions; memory?: 'pagewalk' | 'gdbsx'; guestTrapHandlers?: boolean } = {}): Promise<Stub> {
  const width = o.width ?? 64;
  const demo = startSimDemo({ domid: 1, vcpus: o.vcpus ?? 2, width, type: o.type ?? 'pv', xen: o.xen, guestTrapHandlers: o.guestTrapHandlers });
  const xc = new XenControl(demo.hc);
  const server = new GdbServer(xc, demo.domid, { host: '127.0.0.1', port: 0, memory: o.memory, xenstore: demo.xenstore });
  const port = await server.listen();
  return {
    port, sim: demo.sim, domid: demo.domid, image: demoImage(width), server, xc,
    async close() {
      await server.close();
      demo.close();
    },
  };
}

/** gdb batch commands that load the demo guest's symbols and connect to the stub. */
export function gdbConnect(stub: Stub): string[] {
  return ['set pagination off', 'set confirm off', `file ${stub.image}`, `target remote 127.0.0.1:${stub.port}`];
}

/** Symbol addresses from the ELF, via binutils' nm (present wherever gdb is). */
export function symbols(image: string): Map<string, bigint> {
  const out = execFileSync('nm', [image], { encoding: 'utf8' });
  const m = new Map<string, bigint>();
  for (const line of out.split('\n')) {
    const [addr, , name] = line.trim().split(/\s+/);
    if (name && /^[0-9a-f]+$/.test(addr)) m.set(name, BigInt('0x' + addr));
  }
  return m;
}

export interface BatchResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** gdb -batch with one -ex per command; resolves when gdb exits. */
export function gdbBatch(cmds: string[], timeoutMs = 30000): Promise<BatchResult> {
  return runBatch(GDB, ['-nx', '-batch', ...cmds.flatMap((c) => ['-ex', c])], timeoutMs);
}

/** A debugger in batch mode (gdb, lldb): its output once it exits, or an error after `timeoutMs`. */
export function runBatch(bin: string, args: string[], timeoutMs: number): Promise<BatchResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const t = setTimeout(() => {
      p.kill('SIGKILL');
      reject(new Error(`${bin} timed out after ${timeoutMs} ms\nstdout:\n${stdout}\nstderr:\n${stderr}`));
    }, timeoutMs);
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

export interface MiRecord {
  token?: number;
  cls: string;
  text: string;
}

/** A minimal GDB/MI client: numbered commands, result records, async records. */
export class MiClient {
  private readonly p: ChildProcessWithoutNullStreams;
  private buf = '';
  private next = 1;
  private readonly waiting = new Map<number, (r: MiRecord) => void>();
  readonly asyncRecords: string[] = [];
  private asyncWaiters: { re: RegExp; resolve: (s: string) => void }[] = [];
  readonly log: string[] = [];

  constructor(extraArgs: string[] = []) {
    this.p = spawn(GDB, ['-nx', '--interpreter=mi2', ...extraArgs]);
    this.p.stdout.on('data', (d: Buffer) => this.onData(d.toString()));
    this.p.stderr.on('data', (d: Buffer) => this.log.push('stderr: ' + d.toString()));
  }

  private onData(s: string): void {
    this.buf += s;
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl).replace(/\r$/, '');
      this.buf = this.buf.slice(nl + 1);
      this.log.push(line);
      const m = /^(\d*)\^(\w+),?(.*)$/.exec(line);
      if (m) {
        const token = m[1] ? Number(m[1]) : undefined;
        const cb = token !== undefined ? this.waiting.get(token) : undefined;
        if (cb && token !== undefined) {
          this.waiting.delete(token);
          cb({ token, cls: m[2], text: m[3] });
        }
        continue;
      }
      if (/^[*=]/.test(line)) {
        this.asyncRecords.push(line);
        this.asyncWaiters = this.asyncWaiters.filter((w) => {
          if (w.re.test(line)) {
            w.resolve(line);
            return false;
          }
          return true;
        });
      }
    }
  }

  /** Send a command; resolves with its result record (^done, ^running, ^error, ^connected). */
  cmd(c: string, timeoutMs = 20000): Promise<MiRecord> {
    const token = this.next++;
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`MI '${c}' timed out\n${this.log.slice(-30).join('\n')}`)), timeoutMs);
      this.waiting.set(token, (r) => {
        clearTimeout(t);
        resolve(r);
      });
      this.p.stdin.write(`${token}${c}\n`);
    });
  }

  /** Wait for an async record (e.g. *stopped) matching `re`, including ones already seen since `since`. */
  waitAsync(re: RegExp, timeoutMs = 20000, since = 0): Promise<string> {
    const seen = this.asyncRecords.slice(since).find((l) => re.test(l));
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no async record ${re} within ${timeoutMs} ms\n${this.log.slice(-30).join('\n')}`)), timeoutMs);
      this.asyncWaiters.push({ re, resolve: (s) => { clearTimeout(t); resolve(s); } });
    });
  }

  async quit(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.p.once('close', () => resolve()));
    this.p.stdin.write('-gdb-exit\n');
    const t = setTimeout(() => this.p.kill('SIGKILL'), 5000);
    await closed;
    clearTimeout(t);
  }

  kill(): void {
    this.p.kill('SIGKILL');
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
