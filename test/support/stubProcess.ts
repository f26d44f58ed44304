// `gdbsx` as a user runs it, in its own process: started, waited for until it listens,
// stopped with SIGINT. For the command-line tests and for the benchmark's figures of the
// stub as shipped (its own event loop, its default options).
import path from 'path';
import { spawn, ChildProcess } from 'child_process';

export const ROOT = path.resolve(__dirname, '..', '..', '..');
export const BIN = path.join(ROOT, 'bin', 'gdbsx');

export interface Serving {
  proc: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** host:port as printed on the "listening on" line. */
  listen: string;
  /** The port of `listen`. */
  port: number;
  /** SIGINT, and the exit code. */
  stop(): Promise<number | null>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Start `gdbsx <args>` (with `env` added to ours) and wait (up to 10 s) for its "listening on" line. */
export async function serveStub(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Serving> {
  const proc = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let out = '';
  let err = '';
  proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  let done = false;
  void exited.then(() => (done = true));
  for (let i = 0; i < 400 && !/listening on \S+/.test(out) && !done; i++) await sleep(25);
  const m = /listening on (\S+)/.exec(out);
  if (!m) {
    proc.kill('SIGKILL');
    throw new Error(`gdbsx ${args.join(' ')} is not listening\nstdout: ${out}\nstderr: ${err}`);
  }
  return {
    proc, listen: m[1], port: Number(m[1].split(':').pop()), stdout: () => out, stderr: () => err,
    async stop() {
      if (!done) proc.kill('SIGINT');
      return exited;
    },
  };
}
