// Test harness: the stub on the simulated Xen (in this process, so tests can look
// at the guest directly), and the real gdb driven as a child process, in batch
// mode or through the MI interpreter (as VS Code and CLion drive it) with the
// shared driver of test/support/mi.ts.
import { spawn, execFileSync } from 'child_process';
import fs from 'fs';
import os from 'os';
import path from 'path';
import { XenControl } from '../../src/xg/xenctl';
import { GdbServer } from '../../src/gx/server';
import { startSimDemo, demoImage } from '../../src/simDemo';
import type { SimXen, SimXenOptions } from '../../src/xg/sim';
import { GDB, MiGdb } from '../support/mi';

export { GDB };

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

export async function startStub(o: { vcpus?: number; width?: 32 | 64; type?: 'pv' | 'pvh'; xen?: SimXenOptions; memory?: 'pagewalk' | 'gdbsx'; guestTrapHandlers?: boolean; pollUs?: number } = {}): Promise<Stub> {
  const width = o.width ?? 64;
  const demo = startSimDemo({ domid: 1, vcpus: o.vcpus ?? 2, width, type: o.type ?? 'pv', xen: o.xen, guestTrapHandlers: o.guestTrapHandlers });
  const xc = new XenControl(demo.hc);
  const server = new GdbServer(xc, demo.domid, { host: '127.0.0.1', port: 0, memory: o.memory, xenstore: demo.xenstore, pollUs: o.pollUs });
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

/**
 * The shared GDB/MI driver (test/support/mi.ts) with the tests' defaults: an ^error
 * result resolves (tests assert on its class) and commands wait 20 s at most.
 */
export class MiClient extends MiGdb {
  constructor(extraArgs: string[] = []) {
    super(extraArgs, { strict: false, timeoutMs: 20000 });
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
