// Host-side client of the Xen lab (see docs/lab.md): reads the state file that
// test/lab/lab.sh writes and talks to the agent in dom0 (test/lab/dom0-agent.js)
// through QEMU's forward on 127.0.0.1. Tests import it from dist/test/lab/client;
// lab.sh runs it as a CLI (`node dist/test/lab/client.js exec 'xl list'`).
import * as fs from 'fs';
import * as net from 'net';

export interface ExecResult {
  /** Exit code, null if killed by a signal. */
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  ms: number;
  timedOut: boolean;
}

export interface LabStub {
  /** Port in dom0, forwarded from the same port on the host's 127.0.0.1. */
  port: number;
  /** pid in dom0 of the stub's process (group), null if not started. */
  dom0Pid: number | null;
  /** Its stdout+stderr, a path in dom0 (read it with labExec('cat ...')). */
  log: string;
  running: boolean;
  /** The command line it was started with (after $DOMID etc. were set). */
  cmd?: string;
  error?: string;
}

/**
 * The Linux guests' user-mode workload: on VCPU i a process pinned to it spins in user
 * mode with `strings[i]` (NUL-terminated) at user address `address` in its own address
 * space (test/lab/guest/userspin.c).
 */
export interface LabUserWorkload {
  /** "0x5a5a0000" */
  address: string;
  /** Per VCPU: the string at `address` in the process pinned to that VCPU. */
  strings: string[];
  /** Per VCPU: the program's path in the guest. */
  programs: string[];
}

export interface LabGuest {
  /** pv, pvh, testkernel64, ... */
  name: string;
  /** The name given to xl ("lab-" + name). */
  xlName: string;
  type: 'pv' | 'pvh';
  width: 32 | 64;
  domid: number | null;
  vcpus: number;
  memoryMiB: number;
  /** Paths in dom0. */
  kernel: string;
  ramdisk: string | null;
  cfg: string;
  consoleLog: string;
  /** Host path of an ELF with symbols for gdb, if any (the test kernels). */
  symbols: string | null;
  stub: LabStub;
  /** The gdb command line for the user. */
  gdb: string;
  /** The user-mode workload of a Linux guest (null for the test kernels; absent in older states). */
  userWorkload?: LabUserWorkload | null;
  /**
   * Credit2 cap (% of one CPU) set once the guest is up (its workload spins on every
   * VCPU, and under TCG a spinning VCPU costs a host core and starves dom0); null: none.
   */
  capAfterBoot?: number | null;
}

export interface LabState {
  version: 1;
  status: 'booting' | 'ready' | 'failed' | 'stopped';
  startedAt: string;
  readyAt?: string;
  qemuPid: number;
  xen: 'gdbsx' | 'stock';
  xenImage: string;
  /** Xen's own gdbsx built from the gdbsx hypervisor's source (host path), null if it was not built (absent before it existed). */
  referenceGdbsx?: string | null;
  serialLog: string;
  runDir: string;
  cacheDir: string;
  agent: { host: string; port: number };
  ports: { base: number; count: number; forwarded: number[] };
  stub: { enabled: boolean; cmd: string; extraFiles: string };
  guests: Record<string, LabGuest>;
  timings: Record<string, number>;
}

export function statePath(): string {
  return process.env.GDBSX_LAB_STATE || `${process.env.GDBSX_LAB_RUN || '/tmp/gdbsx-lab'}/state.json`;
}

export function readState(path = statePath()): LabState {
  return JSON.parse(fs.readFileSync(path, 'utf8')) as LabState;
}

/** Read-modify-write of the state file (rename into place, so readers never see half). */
export function updateState(fn: (s: LabState) => void, path = statePath()): LabState {
  const s = readState(path);
  fn(s);
  const tmp = `${path}.tmp.${process.pid}`;
  fs.writeFileSync(tmp, JSON.stringify(s, null, 2) + '\n');
  fs.renameSync(tmp, path);
  return s;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Reply = { ok: boolean; error?: string; [k: string]: any };

export class LabClient {
  readonly host: string;
  readonly port: number;

  constructor(opts: { host?: string; port?: number } = {}) {
    if (opts.port !== undefined) {
      this.host = opts.host || '127.0.0.1';
      this.port = opts.port;
    } else {
      const s = readState();
      this.host = opts.host || s.agent.host;
      this.port = s.agent.port;
    }
  }

  /** One request, one reply, on a connection of its own. */
  request(req: Record<string, unknown>, timeoutMs = 180000): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const sock = net.connect(this.port, this.host);
      let buf = '';
      let done = false;
      const finish = (err: Error | null, reply?: Reply) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        sock.destroy();
        if (err) reject(err); else resolve(reply as Reply);
      };
      const timer = setTimeout(() => finish(new Error(`lab agent ${this.host}:${this.port}: no reply in ${timeoutMs} ms to ${JSON.stringify(req).slice(0, 200)}`)), timeoutMs);
      sock.setEncoding('utf8');
      sock.on('connect', () => sock.write(JSON.stringify(req) + '\n'));
      sock.on('data', (d: string) => {
        buf += d;
        const nl = buf.indexOf('\n');
        if (nl >= 0) {
          try {
            finish(null, JSON.parse(buf.slice(0, nl)) as Reply);
          } catch (e) {
            finish(e as Error);
          }
        }
      });
      sock.on('error', (e) => finish(new Error(`lab agent ${this.host}:${this.port}: ${e.message}`)));
      sock.on('close', () => finish(new Error(`lab agent ${this.host}:${this.port}: connection closed without a reply (is the lab up? lab.sh status)`)));
    });
  }

  private async ok(req: Record<string, unknown>, timeoutMs?: number): Promise<Reply> {
    const r = await this.request(req, timeoutMs);
    if (!r.ok) throw new Error(`lab agent: ${req.op} failed: ${r.error}`);
    return r;
  }

  async ping(): Promise<{ uptime: number; pid: number }> {
    const r = await this.ok({ op: 'ping' }, 10000);
    return { uptime: r.uptime, pid: r.pid };
  }

  /** Run `cmd` with /bin/sh -c in dom0 and wait for it. */
  async exec(cmd: string, opts: { timeoutMs?: number; env?: Record<string, string>; cwd?: string } = {}): Promise<ExecResult> {
    const timeoutMs = opts.timeoutMs ?? 120000;
    const r = await this.ok({ op: 'exec', cmd, timeoutMs, env: opts.env, cwd: opts.cwd }, timeoutMs + 15000);
    return { code: r.code, signal: r.signal, stdout: r.stdout, stderr: r.stderr, ms: r.ms, timedOut: r.timedOut };
  }

  /** Start `cmd` in dom0 in the background (own process group), output to `log`. */
  async spawn(cmd: string, opts: { log?: string; env?: Record<string, string>; cwd?: string } = {}): Promise<{ pid: number; log: string }> {
    const r = await this.ok({ op: 'spawn', cmd, log: opts.log, env: opts.env, cwd: opts.cwd });
    return { pid: r.pid, log: r.log };
  }

  /** Signal a process group started by spawn; waits up to 5 s for it to go. */
  async kill(pid: number, signal = 'SIGTERM'): Promise<{ alive: boolean }> {
    const r = await this.ok({ op: 'kill', pid, signal });
    return { alive: r.alive };
  }

  /** Wait (in dom0, without forking) until `file` contains `contains`. */
  async waitFile(file: string, contains: string, timeoutMs = 60000): Promise<boolean> {
    const r = await this.ok({ op: 'wait', file, contains, timeoutMs }, timeoutMs + 15000);
    return r.met;
  }

  /** Wait until something listens on TCP `port` in dom0; gives up early if `pid` exits. */
  async waitListen(port: number, opts: { pid?: number; timeoutMs?: number } = {}): Promise<{ met: boolean; pidAlive?: boolean }> {
    const timeoutMs = opts.timeoutMs ?? 60000;
    const r = await this.ok({ op: 'wait', listen: port, pid: opts.pid, timeoutMs }, timeoutMs + 15000);
    return { met: r.met, pidAlive: r.pidAlive };
  }

  async put(path: string, data: Buffer | string, mode?: number): Promise<number> {
    const r = await this.ok({ op: 'put', path, data: Buffer.from(data).toString('base64'), mode });
    return r.bytes;
  }

  async get(path: string): Promise<Buffer> {
    const r = await this.ok({ op: 'get', path });
    return Buffer.from(r.data, 'base64');
  }
}

let defaultClient: LabClient | null = null;
export function labClient(): LabClient {
  if (!defaultClient) defaultClient = new LabClient();
  return defaultClient;
}

/** Run a shell command in dom0: `await labExec('xl list')`. */
export function labExec(cmd: string, opts?: { timeoutMs?: number; env?: Record<string, string>; cwd?: string }): Promise<ExecResult> {
  return labClient().exec(cmd, opts);
}

/** Like labExec, but throws unless the command exits 0; returns stdout. */
export async function labRun(cmd: string, opts?: { timeoutMs?: number; env?: Record<string, string> }): Promise<string> {
  const r = await labExec(cmd, opts);
  if (r.code !== 0) throw new Error(`dom0: '${cmd}' exited ${r.code ?? r.signal}${r.timedOut ? ' (timed out)' : ''}: ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}

export function guest(name: string, state = readState()): LabGuest {
  const g = state.guests[name];
  if (!g) throw new Error(`no guest '${name}' in the lab (have: ${Object.keys(state.guests).join(', ')})`);
  return g;
}

/** The gdb command line for a guest's stub. */
export function gdbCommand(name: string, state = readState()): string {
  return guest(name, state).gdb;
}

/** The current domid of a guest, asked from xl (it changes when a guest is recreated). */
export async function guestDomid(name: string): Promise<number> {
  const out = await labRun(`xl domid ${guest(name).xlName}`);
  return Number(out.trim());
}

/** dom0's /proc/kallsyms: the symbols of the PV guest too (same kernel image, no KASLR for PV). */
export async function kallsyms(): Promise<string> {
  return (await labClient().get('/proc/kallsyms')).toString('utf8');
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * (Re)start a guest's stub in dom0: `cmd` (default: the state's stub command, where
 * $DOMID, $WIDTH, $PORT and $NAME are set) on the guest's port (or `port`), then wait
 * until it listens. Records it in the state file.
 */
export async function startStub(name: string, opts: { cmd?: string; port?: number; env?: Record<string, string>; waitMs?: number; record?: boolean } = {}): Promise<LabStub> {
  const st = readState();
  const g = guest(name, st);
  if (g.stub.dom0Pid) await stopStub(name);
  const domid = g.domid ?? await guestDomid(name);
  const port = opts.port ?? g.stub.port;
  const cmd = opts.cmd ?? st.stub.cmd;
  const env = { DOMID: String(domid), WIDTH: String(g.width), PORT: String(port), NAME: name, ...(opts.env || {}) };
  await labExec(`: > ${g.stub.log}`);
  const { pid } = await labClient().spawn(cmd, { log: g.stub.log, env, cwd: '/opt/gdbsx' });
  const stub: LabStub = { port, dom0Pid: pid, log: g.stub.log, running: false, cmd: cmd.replace(/\$(DOMID|WIDTH|PORT|NAME)\b/g, (_m, v: string) => env[v as keyof typeof env]) };
  const w = await labClient().waitListen(port, { pid, timeoutMs: opts.waitMs ?? 180000 });
  if (w.met) {
    stub.running = true;
  } else if (w.pidAlive === false) {
    stub.dom0Pid = null;
    stub.error = `exited: ${(await labExec(`tail -c 2000 ${g.stub.log}`)).stdout.trim()}`;
  } else {
    stub.error = `not listening on ${port} after ${opts.waitMs ?? 180000} ms (log: ${g.stub.log} in dom0)`;
  }
  if (opts.record !== false) updateState((s) => { s.guests[name].stub = stub; });
  return stub;
}

export async function stopStub(name: string): Promise<void> {
  const g = guest(name);
  if (g.stub.dom0Pid) await labClient().kill(g.stub.dom0Pid);
  updateState((s) => { s.guests[name].stub = { ...s.guests[name].stub, dom0Pid: null, running: false }; });
}

/**
 * Destroy a guest (if it exists) and create it again from its config: for tests that
 * crash, shut down or destroy one. Waits until a Linux guest is up, restarts its stub
 * (unless `stub: false` or stubs are off), records the new domid. Returns the guest.
 */
export async function recreateGuest(name: string, opts: { stub?: boolean; timeoutMs?: number } = {}): Promise<LabGuest> {
  const st = readState();
  const g = guest(name, st);
  if (g.stub.dom0Pid) await stopStub(name);
  await createAgain(name, g);
  if (g.ramdisk) await waitBooted(name, (m) => process.stderr.write(`[lab] ${m}\n`), 6, opts.timeoutMs ?? 300000);
  await capAfterBoot(name);
  if (opts.stub !== false && st.stub.enabled) await startStub(name);
  return guest(name);
}

/** Once a guest is up: its cap, if the state gives one (see LabGuest.capAfterBoot). */
export async function capAfterBoot(name: string): Promise<void> {
  const g = guest(name);
  if (!g.capAfterBoot) return;
  const r = await labExec(`xl sched-credit2 -d ${g.xlName} -c ${g.capAfterBoot} || xl sched-credit -d ${g.xlName} -c ${g.capAfterBoot}`);
  if (r.code !== 0) process.stderr.write(`[lab] could not cap ${g.xlName}: ${r.stderr}\n`);
}

/** The xl state letters of a guest ('r', 'b', 'p', 's', 'c', 'd'), '' if it is gone. */
export async function xlStateOf(xlName: string): Promise<string> {
  const line = (await labExec(`xl list ${xlName} 2>/dev/null`)).stdout.split('\n').find((l) => l.startsWith(xlName));
  return line ? line.trim().split(/\s+/)[4] ?? '' : '';
}

/**
 * Wait for a Linux guest's ready marker. Under QEMU/TCG's nested SVM a PVH guest
 * now and then triple-faults early in its boot (Xen shuts it down): notice that
 * within seconds and create it again, a few times, instead of waiting out the timeout.
 */
export async function waitBooted(name: string, log: (m: string) => void, tries = 6, timeoutMs = 300000): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const g = guest(name);
    const deadline = Date.now() + timeoutMs;
    let died = false;
    while (Date.now() < deadline) {
      if (await labClient().waitFile(g.consoleLog, 'GDBSX-LAB-GUEST-READY', 10000)) return;
      const state = await xlStateOf(g.xlName);
      if (state === '' || /[sc]/.test(state)) {
        died = true;
        break;
      }
    }
    if (!died || attempt >= tries) {
      throw new Error(`guest ${name} did not boot${died ? ` (it shut down during boot, ${attempt} tries)` : ` in ${timeoutMs / 1000} s`} (its console in dom0: ${g.consoleLog}; Xen's: the serial log)`);
    }
    log(`guest ${name} died while booting (try ${attempt}; serial log has Xen's reason): creating it again`);
    await createAgain(name, g);
  }
}

/** Destroy the guest's domain (if any) and create it from its config; records the new domid. */
async function createAgain(name: string, g: LabGuest): Promise<void> {
  await labExec(`xl destroy ${g.xlName} 2>/dev/null; true`, { timeoutMs: 120000 });
  await labExec(`: > ${g.consoleLog}`);
  const r = await labExec(`xl create ${g.cfg} >&2 && xl domid ${g.xlName}`, { timeoutMs: 300000 });
  if (r.code !== 0) throw new Error(`xl create ${g.cfg} failed (${r.code}): ${r.stderr}`);
  const domid = Number(r.stdout.trim());
  updateState((s) => { s.guests[name].domid = domid; });
}

/**
 * What lab.sh start runs once dom0 is up: create the guests with xl (in parallel),
 * wait for the Linux guests' init, start the stubs, mark the state ready.
 */
export async function setup(log: (m: string) => void = (m) => process.stderr.write(`[lab] ${m}\n`)): Promise<LabState> {
  let st = readState();
  for (let i = 0; ; i++) {
    try { await labClient().ping(); break; } catch (e) { if (i > 60) throw e; await sleep(500); }
  }
  const t0 = Date.now();
  const names = Object.keys(st.guests);
  log(`creating guests: ${names.join(', ')}`);
  const domids: Record<string, number> = {};
  await Promise.all(names.map(async (n) => {
    const g = st.guests[n];
    const r = await labExec(`xl create ${g.cfg} >&2 && xl domid ${g.xlName}`, { timeoutMs: 300000 });
    if (r.code !== 0) throw new Error(`xl create ${g.cfg} failed (${r.code}): ${r.stderr}`);
    domids[n] = Number(r.stdout.trim());
  }));
  st = updateState((s) => { for (const n of names) s.guests[n].domid = domids[n]; });
  const tCreated = Date.now();
  let stubs = st.stub.enabled;
  if (stubs && st.stub.cmd.includes('/opt/gdbsx/bin/gdbsx') && (await labExec('test -f /opt/gdbsx/bin/gdbsx')).code !== 0) {
    log('no /opt/gdbsx/bin/gdbsx in this tree yet: stubs not started');
    stubs = false;
  }
  // Per guest: wait until it is up (Linux guests say GDBSX-LAB-GUEST-READY on their
  // console, which xenconsoled logs), then start its stub; all guests at once.
  let tBooted = tCreated;
  const started: Record<string, LabStub> = {};
  await Promise.all(names.map(async (n) => {
    const g = st.guests[n];
    if (g.ramdisk) await waitBooted(n, log);
    tBooted = Math.max(tBooted, Date.now());
    await capAfterBoot(n);
    if (stubs) {
      const s = await startStub(n, { record: false });
      started[n] = s;
      log(`stub for ${n}: ${s.running ? `listening on ${s.port}` : `NOT running: ${s.error}`}`);
    }
  }));
  const tStubs = Date.now();
  const now = readState();
  log(`guests up: ${names.map((n) => `${n}=${now.guests[n].domid}`).join(' ')} (created in ${((tCreated - t0) / 1000).toFixed(1)} s, ` +
    `booted in ${((tBooted - t0) / 1000).toFixed(1)} s, stubs ready in ${((tStubs - t0) / 1000).toFixed(1)} s)`);
  // one writer: the stubs were not recorded one by one
  if (stubs) updateState((s) => { for (const n of names) s.guests[n].stub = started[n]; });
  return updateState((s) => {
    s.status = 'ready';
    s.readyAt = new Date().toISOString();
    s.timings.guestsCreateSeconds = Math.round((tCreated - t0) / 100) / 10;
    s.timings.guestsBootSeconds = Math.round((tBooted - t0) / 100) / 10;
    s.timings.stubsReadySeconds = Math.round((tStubs - t0) / 100) / 10;
  });
}

async function cli(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  const c = () => labClient();
  switch (cmd) {
    case 'exec': {
      const r = await c().exec(rest.join(' '), { timeoutMs: Number(process.env.LAB_EXEC_TIMEOUT_MS || 600000) });
      process.stdout.write(r.stdout);
      process.stderr.write(r.stderr);
      if (r.timedOut) process.stderr.write('[lab] timed out\n');
      return r.code ?? 128;
    }
    case 'json': {
      const r = await c().exec(rest.join(' '), { timeoutMs: Number(process.env.LAB_EXEC_TIMEOUT_MS || 600000) });
      process.stdout.write(JSON.stringify(r) + '\n');
      return 0;
    }
    case 'ping': console.log(JSON.stringify(await c().ping())); return 0;
    case 'spawn': console.log(JSON.stringify(await c().spawn(rest[0], { log: rest[1] }))); return 0;
    case 'kill': console.log(JSON.stringify(await c().kill(Number(rest[0]), rest[1]))); return 0;
    case 'put': console.log(await c().put(rest[1], fs.readFileSync(rest[0]), rest[2] ? parseInt(rest[2], 8) : undefined)); return 0;
    case 'get': {
      const data = await c().get(rest[0]);
      if (rest[1]) fs.writeFileSync(rest[1], data); else process.stdout.write(data);
      return 0;
    }
    case 'kallsyms': process.stdout.write(await kallsyms()); return 0;
    case 'stub': {
      const [action, name] = rest;
      if (!name) throw new Error('usage: stub start|stop|restart NAME');
      if (action === 'stop') { await stopStub(name); return 0; }
      const s = await startStub(name, process.env.LAB_STUB_CMD ? { cmd: process.env.LAB_STUB_CMD } : {});
      console.log(JSON.stringify(s));
      if (s.running) console.log(gdbCommand(name));
      return s.running ? 0 : 1;
    }
    case 'gdb': console.log(gdbCommand(rest[0] || 'pv')); return 0;
    case 'recreate': {
      if (!rest[0]) throw new Error('usage: recreate NAME');
      const g = await recreateGuest(rest[0]);
      console.log(`${g.xlName} domid ${g.domid}, stub ${g.stub.running ? 'listening on ' + g.stub.port : 'not running'}`);
      return 0;
    }
    case 'setup': await setup(); return 0;
    case 'set-state': updateState((s) => { (s as unknown as Record<string, unknown>)[rest[0]] = rest[1]; }); return 0;
    case 'set-timing':
      updateState((s) => { for (let i = 0; i + 1 < rest.length; i += 2) s.timings[rest[i]] = Number(rest[i + 1]); });
      return 0;
    default:
      process.stderr.write('usage: client.js exec CMD | json CMD | ping | spawn CMD [LOG] | kill PID [SIG] | put LOCAL REMOTE [MODE] |\n' +
        '       get REMOTE [LOCAL] | kallsyms | stub start|stop|restart NAME | recreate NAME | gdb NAME | setup\n');
      return 2;
  }
}

if (require.main === module) {
  cli(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (e: Error) => {
    process.stderr.write(`[lab] ${e.message}\n`);
    process.exitCode = 1;
  });
}
