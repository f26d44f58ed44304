// The reference: Xen's own gdbsx (tools/debugger/gdbsx, built by the lab from the gdbsx
// hypervisor's Debian source, test/lab/lib/ref-gdbsx.sh) measured in the same boot, on
// the same guest, through the same gdb as our stub. It is copied into the running dom0
// (not part of the dom0 image) and started per gdb session on the spare forwarded port:
// gdbsx takes one connection, and exits when it ends.
//
// What gdbsx cannot do shows in its cells (see docs/benchmark.md): no target description
// (gdb is told `set architecture`), no Ctrl-C (a wedged resume is ended with `xl pause`, as
// its README says), no Z packets (gdb writes int3 with M), thread ids from 0, no reply to D
// (sessions end with a disconnect), and every VCPU resumes on `c`.
import fs from 'fs';
import { LabClient, LabGuest, LabState } from '../test/lab/client';
import { MiGdb } from '../test/support/mi';
import { cliTimes, connect, continueStops, defineCommands, dumpTimes, stepiTimes, GdbStop } from './gdbFigures';
import { sleep } from './stats';

export const REF_NAME = 'reference gdbsx';
/** Where the bench puts the binary in dom0 (dom0's root is a RAM disk: gone at the next boot). */
export const REF_DOM0_PATH = '/opt/extra/ref-gdbsx';

/** One figure of the reference: its runs (ms), or why it has none. */
export interface RefResult {
  ms?: number[];
  cannot?: string;
  notes: string[];
}

export type RefKey = 'read.1MiB' | 'read.16MiB' | 'read.dense' | 'read.raw' | 'stepi' | 'stop' | 'regs' | 'bt' | 'attach';

export interface RefPlan {
  g: LabGuest;
  parts: Set<'read' | 'step' | 'stop' | 'regs' | 'attach'>;
  addr?: bigint;
  bp?: { name: string; addr: bigint };
}

export interface RefConfig {
  runs: number;
  /** Runs of the 1 MiB read (each is ~5000 packets of gdb's default size through gdbsx). */
  readRuns: number;
  /** Per gdb command: a wedged gdbsx must not hang the bench. */
  timeoutMs: number;
  log: (m: string) => void;
}

/** What the bench learnt while running the reference on one guest, for the report. */
export interface RefOutcome {
  results: Partial<Record<RefKey, RefResult>>;
  notes: string[];
}

/** The reference's cell text for what it cannot do. */
export function cannot(why: string): string {
  return `cannot: ${why}`;
}

/** Why a lab has no reference, or undefined if it can run one. */
export function referenceMissing(st: LabState): string | undefined {
  if (st.xen === 'stock') return 'this lab\'s Xen is stock: no CONFIG_GDBSX, so gdbsx gets ENOSYS ("Hyp is NOT enabled for gdbsx")';
  if (!st.referenceGdbsx) return 'the lab did not build it (see `lab.sh build`; labs started before it existed have no referenceGdbsx in their state file)';
  if (!fs.existsSync(st.referenceGdbsx)) return `${st.referenceGdbsx} is gone from the host`;
  return undefined;
}

/** Copy the reference into dom0 (once per run). */
export async function installReference(agent: LabClient, st: LabState): Promise<void> {
  await agent.exec(`mkdir -p ${REF_DOM0_PATH.replace(/\/[^/]+$/, '')}`, { timeoutMs: 20000 });
  await agent.put(REF_DOM0_PATH, fs.readFileSync(st.referenceGdbsx as string), 0o755);
}

/** The guest's state letters from `xl list` (r b p s c d), or undefined. */
async function xlState(agent: LabClient, g: LabGuest): Promise<string | undefined> {
  const r = await agent.exec(`xl list ${g.xlName}`, { timeoutMs: 30000 });
  const line = r.stdout.split('\n').find((l) => l.startsWith(g.xlName + ' '));
  return line?.trim().split(/\s+/)[4];
}

const paused = (s: string | undefined) => !!s && s.includes('p');

/** One gdbsx process and the gdb connected to it. */
class RefSession {
  private constructor(readonly gdb: MiGdb, readonly pid: number, private readonly agent: LabClient, readonly connectMs: number) {}

  static async open(agent: LabClient, g: LabGuest, port: number, cfg: RefConfig, gdbIn?: MiGdb): Promise<RefSession> {
    const log = `/var/log/ref-gdbsx-${g.name}.log`;
    const { pid } = await agent.spawn(`exec ${REF_DOM0_PATH} -a ${g.domid} ${g.width} ${port}`, { log });
    const w = await agent.waitListen(port, { pid, timeoutMs: 60000 });
    if (!w.met) {
      const tail = (await agent.exec(`tail -c 400 ${log}`, { timeoutMs: 20000 })).stdout.trim().split('\n').slice(-2).join(' / ');
      await agent.kill(pid).catch(() => undefined);
      throw new Error(`gdbsx did not listen on ${port}: ${tail}`);
    }
    let gdb = gdbIn;
    try {
      if (!gdb) {
        gdb = new MiGdb(g.symbols ? [g.symbols] : []);
        await gdb.setup();
        await defineCommands(gdb);
      }
      // No target description from gdbsx: without the ELF's architecture gdb would take the g packet for i386's.
      await gdb.console(`set architecture ${g.width === 64 ? 'i386:x86-64' : 'i386'}`);
      await gdb.console('set remotetimeout 30');
      let ms: number | undefined;
      for (let tries = 0; ms === undefined; tries++) {
        try {
          ms = await connect(gdb, port, cfg.timeoutMs);
        } catch (e) {
          if (tries >= 10) throw e;
          await sleep(200);
        }
      }
      return new RefSession(gdb, pid, agent, ms);
    } catch (e) {
      if (gdb && !gdbIn) gdb.kill();
      await agent.kill(pid).catch(() => undefined);
      throw e;
    }
  }

  /**
   * A disconnect (gdbsx never sends D's reply: a detach would wait out remotetimeout);
   * gdbsx then detaches the guest (setdebugging off, unpause) and exits. Returns whether
   * it had to be killed (then the guest may be left paused and with debugging on).
   */
  async close(keepGdb = false): Promise<boolean> {
    await this.gdb.cmd('-target-disconnect', { strict: false, timeoutMs: 20000 }).catch(() => undefined);
    if (!keepGdb) {
      await Promise.race([this.gdb.quit(), sleep(5000)]);
      this.gdb.kill();
    }
    for (let i = 0; i < 25; i++) {
      if ((await this.agent.exec(`kill -0 ${this.pid} 2>/dev/null`, { timeoutMs: 20000 })).code !== 0) return false;
      await sleep(200);
    }
    await this.agent.kill(this.pid).catch(() => undefined);
    return true;
  }

  /** A resume that did not end: `xl pause` (gdbsx's README's Ctrl-C) makes gdbsx report a stop, so gdb removes its int3s. */
  async unwedge(g: LabGuest): Promise<boolean> {
    const mark = this.gdb.mark();
    await this.agent.exec(`xl pause ${g.xlName}`, { timeoutMs: 30000 });
    try {
      await this.gdb.waitAsync(/^\*stopped/, mark, 30000);
      return true;
    } catch {
      return false;
    }
  }
}

function first(e: unknown): string {
  return (e as Error).message.split('\n')[0];
}

/**
 * The reference's figures on one guest, for the parts our stub measured there. The guest
 * is left as it was found: if it is paused afterwards and was not before, gdbsx left it so
 * and the bench unpauses it (said in the notes).
 */
export async function runReference(plan: RefPlan, agent: LabClient, port: number, cfg: RefConfig): Promise<RefOutcome> {
  const { g, parts } = plan;
  const out: RefOutcome = { results: {}, notes: [] };
  const R = (k: RefKey): RefResult => (out.results[k] ??= { notes: [] });
  const before = await xlState(agent, g);
  let killed = false;
  let wedged = false;
  const session = async (what: string, fn: (s: RefSession) => Promise<void>, onFail: (why: string) => void) => {
    let s: RefSession | undefined;
    try {
      s = await RefSession.open(agent, g, port, cfg);
      await fn(s);
    } catch (e) {
      cfg.log(`lab: reference gdbsx, ${what}: ${(e as Error).message}`);
      onFail(first(e));
      if (s && /within \d+ ms/.test((e as Error).message)) {
        wedged = true;
        if (!(await s.unwedge(g))) out.notes.push(`${what}: gdbsx did not report a stop after \`xl pause\` either`);
      }
    } finally {
      if (s) killed = (await s.close()) || killed;
    }
  };

  if (parts.has('read') && plan.addr !== undefined) {
    const addr = plan.addr;
    await session('reads', async (s) => {
      // One small read first: gdbsx reads through VCPU 0's current page tables only.
      const probe = await s.gdb.console(`x/1gx 0x${addr.toString(16)}`, { strict: false, timeoutMs: cfg.timeoutMs });
      if (/Cannot access memory/.test(probe.console + probe.text)) {
        const pc = await s.gdb.console('p/x $pc', { strict: false, timeoutMs: cfg.timeoutMs });
        const v = /= (0x[0-9a-f]+)/.exec(pc.console)?.[1];
        const user = v !== undefined && BigInt(v) < 0x800000000000n;
        R('read.1MiB').cannot = cannot(`E01 at 0x${addr.toString(16)}: gdbsx reads through VCPU 0's current page tables, and VCPU 0 was at ${v ?? 'an unknown pc'}` +
          (user ? ' in user mode (a PV guest\'s user page tables do not map the kernel; a lab with LAB_USERSPIN=off keeps VCPU 0 in the kernel)' : ''));
        return;
      }
      R('read.1MiB').ms = await dumpTimes(s.gdb, addr, 1 << 20, cfg.readRuns);
    }, (why) => { R('read.1MiB').cannot = `failed: ${why}`; });
    const slow = 'not run: at gdbsx\'s speed (gdb\'s default 400-byte packets, no PacketSize) a dump this size takes minutes; its 1 MiB row is the read figure';
    R('read.16MiB').cannot = slow;
    R('read.dense').cannot = slow;
    R('read.raw').cannot = 'not measured (no gdb: a raw client\'s 2 MiB m requests would overflow gdbsx\'s 4096-byte reply buffer)';
  }
  if (parts.has('stop') && plan.bp) {
    const loc = `*0x${plan.bp.addr.toString(16)}`;
    await session('continue to a breakpoint', async (s) => {
      const got: GdbStop[] = [];
      // As for ours; gdbsx has no vCont, so gdb sends Hc and c, and gdbsx resumes every VCPU anyway.
      await s.gdb.cmd('-gdb-set scheduler-locking on');
      try {
        await continueStops(s.gdb, loc, cfg.runs, cfg.timeoutMs, got);
      } finally {
        R('stop').ms = got.map((x) => x.totalMs);
      }
      await s.gdb.cmd('-gdb-set scheduler-locking off');
    }, (why) => {
      R('stop').notes.push(`${R('stop').ms?.length ?? 0} of ${cfg.runs} continues timed before: ${why}`);
      if (!R('stop').ms?.length) R('stop').cannot = `failed: ${why}`;
    });
    R('stop').notes.push('gdbsx has no Z0: gdb writes the int3 itself (m + M) at every resume and removes it at every stop; its c resumes every VCPU (no vCont, so scheduler-locking is not honoured)');
  }
  if (parts.has('step')) {
    await session('stepi', async (s) => {
      R('stepi').ms = await stepiTimes(s.gdb, cfg.runs);
    }, (why) => { R('stepi').cannot = `failed: ${why}`; });
  }
  if (parts.has('regs')) {
    await session('registers and bt', async (s) => {
      R('regs').ms = (await cliTimes(s.gdb, 'bench-regs', cfg.runs, false)).ms;
      R('regs').notes.push('gdbsx sends the general registers only (164 bytes: no x87/SSE, fs_base, gs_base; gdb shows them unavailable)');
      R('bt').ms = (await cliTimes(s.gdb, 'bench-bt', cfg.runs, false)).ms;
    }, (why) => {
      if (!R('regs').ms) R('regs').cannot = `failed: ${why}`;
      R('bt').cannot = `failed: ${why}`;
    });
  }
  if (parts.has('attach')) {
    const ms: number[] = [];
    const gdb = new MiGdb(g.symbols ? [g.symbols] : []);
    try {
      await gdb.setup();
      for (let r = 0; r < Math.min(cfg.runs, 5) + 1; r++) {
        const s = await RefSession.open(agent, g, port, cfg, gdb);
        if (r > 0) ms.push(s.connectMs);
        killed = (await s.close(true)) || killed;
      }
    } catch (e) {
      R('attach').notes.push(`${ms.length} runs timed before: ${first(e)}`);
    } finally {
      await Promise.race([gdb.quit(), sleep(5000)]);
      gdb.kill();
    }
    if (ms.length) R('attach').ms = ms;
    else R('attach').cannot ??= 'failed (see notes)';
    R('attach').notes.push('one gdbsx process per connection (it accepts one and exits when it ends); ended by a disconnect: gdbsx never sends the reply to D');
    R('attach').notes.push('gdbsx attaches the guest (pause, setdebugging, getdomaininfo) when it starts, before it listens: its connect time holds no attach hypercalls, ours does');
  }

  // Leave the guest as it was.
  const after = await xlState(agent, g);
  if (paused(after) && !paused(before)) {
    for (let i = 0; i < 8 && paused(await xlState(agent, g)); i++) await agent.exec(`xl unpause ${g.xlName}`, { timeoutMs: 30000 });
    out.notes.push(`gdbsx left ${g.xlName} paused (xl list: ${after}); the bench unpaused it (now ${await xlState(agent, g)})`);
  }
  if (killed || wedged) {
    out.notes.push(`a gdbsx session ${killed ? 'had to be killed' : 'was ended with xl pause'}: Xen's setdebugging stays on until the next debugger detaches (our stub's next session resets it)`);
  }
  return out;
}
