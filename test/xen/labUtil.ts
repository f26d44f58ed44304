// Helpers shared by the real-Xen suites that drive gdb against the lab's stubs
// (usermode.xen.ts, stock.xen.ts): gdb/MI sessions, console output of one command,
// xenctx as the independent reference for registers, kernel symbols, VCPU run times.
import assert from 'assert';
import fs from 'fs';
import path from 'path';
import { readState, labExec, labClient, guest, recreateGuest, xlStateOf, LabGuest } from '../lab/client';
import { gdbBatch, MiClient, sleep } from '../e2e/harness';

export const XENCTX = '/tmp/xenctx';

/** The lab's state, or null when no lab was ever started here (the suites then skip). */
export function labState(): ReturnType<typeof readState> | null {
  try {
    return readState();
  } catch {
    return null;
  }
}

/**
 * The guest, alive: one found shut down (a PVH guest now and then triple-faults on its
 * own under the lab's nested SVM, docs/lab.md) is created again, its stub too, and said so.
 */
export async function liveGuest(name: string): Promise<LabGuest> {
  const state = await xlStateOf(guest(name).xlName);
  if (state !== '' && !/[sc]/.test(state)) return guest(name);
  process.stderr.write(`      (${name} was found shut down (xl state '${state}'): created again)\n`);
  return recreateGuest(name);
}

/** Xen's "dNvM Triple fault" lines in the lab's serial console log so far. */
export function tripleFaults(): string[] {
  try {
    return fs.readFileSync(readState().serialLog, 'latin1').split('\n').filter((l) => /\bd\d+v\d+ Triple fault\b/.test(l)).map((l) => l.replace(/^\(XEN\)\s*/, '').trim());
  } catch {
    return [];
  }
}

/**
 * Wraps every test defined so far in `suite` (call it at the end of a describe on a PVH
 * guest): a test that fails while Xen's serial log shows a new triple fault of `name`'s
 * domain (the lab's nested SVM under TCG kills a PVH guest now and then on its own,
 * docs/lab.md) has the guest created again, `refresh` told, and runs once more, saying
 * so. Any other failure is the test's own, as it was.
 */
export function againAfterTripleFault(suite: Mocha.Suite, name: string, refresh: (g: LabGuest) => void = () => undefined, only: (title: string) => boolean = () => true): void {
  for (const t of suite.tests.filter((x) => only(x.title))) {
    const fn = t.fn as ((this: Mocha.Context) => Promise<unknown>) | undefined;
    if (!fn) continue;
    t.fn = async function (this: Mocha.Context) {
      const domid = guest(name).domid;
      const mark = tripleFaults().length;
      try {
        return await fn.call(this);
      } catch (e) {
        const mine = tripleFaults().slice(mark).filter((l) => l.startsWith(`d${domid}v`));
        if (mine.length === 0) throw e;
        process.stderr.write(`      (Xen: "${mine[0]}" during this test, which failed with: ${String((e as Error).message ?? e).split('\n')[0]}; ` +
          `${name} is created again and the test runs once more)\n`);
        refresh(await liveGuest(name));
        return await fn.call(this);
      }
    };
  }
}

/** Copy the lab cache's xenctx (Debian's xen-utils) into dom0 once. */
export async function installXenctx(): Promise<void> {
  const st = readState();
  if ((await labExec(`test -x ${XENCTX}`)).code === 0) return;
  const dir = path.join(st.cacheDir, 'xen-utils');
  const local = fs.readdirSync(dir).map((v) => path.join(dir, v, 'usr/lib/xen-4.17/bin/xenctx')).find((p) => fs.existsSync(p));
  assert.ok(local, 'xenctx in the lab cache');
  await labClient().put(XENCTX, fs.readFileSync(local), 0o755);
}

/** xenctx's view of a VCPU (64-bit names: rip, rsp, ..., cr3). */
export async function xenctx(domid: number, vcpu: number): Promise<Record<string, bigint>> {
  const r = await labExec(`${XENCTX} -a ${domid} ${vcpu}`);
  assert.strictEqual(r.code, 0, r.stderr);
  const regs: Record<string, bigint> = {};
  for (const m of r.stdout.matchAll(/\b(rip|rsp|rbp|rax|rbx|rcx|rdx|rsi|rdi|r8|r9|r1[0-5]|eip|esp|ebp|eax|cr[0234]):\s+([0-9a-f]+)(?::([0-9a-f]+))?/g)) {
    regs[m[1]] = BigInt('0x' + (m[3] ?? m[2]));
  }
  return regs;
}

/** A kernel symbol's address (the Linux guests run dom0's kernel image: its kallsyms). */
export async function ksym(name: string): Promise<bigint> {
  const addr = (await labExec(`grep ' ${name}$' /proc/kallsyms`)).stdout.trim().split(/\s+/)[0];
  assert.match(addr ?? '', /^[0-9a-f]{16}$/, `kallsyms: ${name}`);
  return BigInt('0x' + addr);
}

export const hex = (v: bigint): string => '0x' + v.toString(16);

/** gdb commands that attach to a guest's stub. */
export function target(g: LabGuest): string[] {
  const cmds = ['set pagination off', 'set confirm off'];
  if (g.symbols) cmds.push(`file ${g.symbols}`);
  return [...cmds, 'set remotetimeout 30', `target remote 127.0.0.1:${g.stub.port}`];
}

/** gdb -batch attached to the guest: its commands, then detach. */
export function gdbOn(g: LabGuest, cmds: string[], timeoutMs = 300000): ReturnType<typeof gdbBatch> {
  return gdbBatch([...target(g), ...cmds, 'detach'], timeoutMs);
}

/** gdb/MI attached to a guest's stub (stopped, as the stub attaches). */
export async function miConnect(g: LabGuest): Promise<MiClient> {
  const mi = new MiClient();
  try {
    if (g.symbols) await mi.cmd(`-file-exec-and-symbols ${g.symbols}`);
    await mi.cmd('-gdb-set mi-async on');
    await mi.cmd('-gdb-set remotetimeout 30');
    const r = await mi.cmd(`-target-select remote 127.0.0.1:${g.stub.port}`, { timeoutMs: 120000 });
    assert.strictEqual(r.cls, 'connected', JSON.stringify(r) + '\n' + mi.log.slice(-20).join('\n'));
  } catch (e) {
    mi.kill();
    throw e;
  }
  return mi;
}

export async function miDetach(mi: MiClient): Promise<void> {
  try {
    await mi.cmd('-target-detach', { timeoutMs: 60000 });
  } finally {
    await mi.quit();
  }
}

/** Undo MI c-string escapes. */
function unquote(s: string): string {
  return s.replace(/\\(n|t|r|"|\\|[0-7]{3})/g, (_m, e: string) =>
    e === 'n' ? '\n' : e === 't' ? '\t' : e === 'r' ? '\r' : /^[0-7]{3}$/.test(e) ? String.fromCharCode(parseInt(e, 8)) : e);
}

/**
 * A CLI command through MI; returns what gdb printed for it (console, target and log
 * streams) and the result record. A gdb error comes back as cls 'error' with its msg.
 */
export async function miConsole(mi: MiClient, command: string, timeoutMs = 120000): Promise<{ cls: string; out: string; text: string }> {
  const from = mi.log.length;
  const r = await mi.cmd(`-interpreter-exec console ${JSON.stringify(command)}`, { timeoutMs });
  const out = mi.log.slice(from).filter((l) => /^[~@&]"/.test(l)).map((l) => unquote(l.slice(2, -1))).join('');
  return { cls: r.cls, out, text: unquote(r.text) };
}

/** An expression's value in thread `thread` (frame 0), as gdb prints it. */
export async function miEval(mi: MiClient, expr: string, thread: number): Promise<string> {
  const r = await mi.cmd(`-data-evaluate-expression --thread ${thread} --frame 0 ${JSON.stringify(expr)}`, { timeoutMs: 60000 });
  assert.strictEqual(r.cls, 'done', `${expr} on thread ${thread}: ${r.text}`);
  const m = /value="([^"]*)"/.exec(r.text);
  assert.ok(m, r.text);
  return m[1];
}

/** Resume all, wait, Ctrl-C: a stop at another moment. Returns the *stopped record. */
export async function miContinueInterrupt(mi: MiClient, runMs: number): Promise<string> {
  const since = mi.asyncRecords.length;
  const r = await mi.cmd('-exec-continue', { timeoutMs: 60000 });
  assert.strictEqual(r.cls, 'running', JSON.stringify(r));
  await sleep(runMs);
  await mi.cmd('-exec-interrupt', { timeoutMs: 60000 });
  return (await mi.waitAsync(/^\*stopped/, since, 120000)).line;
}

/** Per VCPU, its run time in seconds from `xl vcpu-list`. */
export async function vcpuTimes(xlName: string): Promise<number[]> {
  const r = await labExec(`xl vcpu-list ${xlName}`);
  assert.strictEqual(r.code, 0, r.stderr);
  const times: number[] = [];
  for (const line of r.stdout.split('\n')) {
    const f = line.trim().split(/\s+/);
    // Name ID VCPU CPU State Time(s) Affinity...
    if (f[0] === xlName && /^\d+$/.test(f[2])) times[Number(f[2])] = Number(f[5]);
  }
  return times;
}

/**
 * Which VCPUs did not run over `ms` (their run time did not grow). The lab's Linux
 * guests keep every VCPU busy in user mode, so a VCPU that does not run is paused
 * (by someone's pause, or waiting for a vm_event reply that nobody will send).
 */
export async function vcpusNotRunning(xlName: string, ms = 4000): Promise<number[]> {
  const t0 = await vcpuTimes(xlName);
  await sleep(ms);
  const t1 = await vcpuTimes(xlName);
  return t0.map((t, i) => (t1[i] > t ? -1 : i)).filter((i) => i >= 0);
}

/** The guest's jiffies, read through its stub (a fresh session each time). */
export async function jiffies(g: LabGuest): Promise<bigint> {
  const a = await ksym('jiffies');
  const r = await gdbOn(g, [`p/d *(unsigned long *)${hex(a)}`], 180000);
  const m = /\$1 = (\d+)/.exec(r.stdout);
  assert.ok(m, `jiffies: ${r.stdout}${r.stderr}`);
  return BigInt(m[1]);
}

/** The bytes at `addr` as gdb's x/Nxb shows them through the stub (a fresh session). */
export async function bytesAt(g: LabGuest, addr: bigint, n = 16): Promise<string> {
  const r = await gdbOn(g, [`x/${n}xb ${hex(addr)}`], 180000);
  assert.strictEqual(r.code, 0, r.stdout + r.stderr);
  const bytes = [...r.stdout.matchAll(/\t0x([0-9a-f]{2})\b/g)].map((m) => m[1]);
  assert.strictEqual(bytes.length, n, r.stdout);
  return bytes.join(' ');
}
