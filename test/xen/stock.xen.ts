// Debian's stock hypervisor (built without CONFIG_GDBSX): the stub attaches all the
// same and does what Xen allows there (shared/reference/stock-xen.md):
//  - PV guest: memory, registers, pause/Ctrl-C, detach. No breakpoints and no stepping
//    (Xen has no trap path for them without CONFIG_GDBSX): refused with gdb's "Cannot
//    insert breakpoint" and a message naming CONFIG_GDBSX, and the guest unharmed.
//  - PVH guest: breakpoints, stepping and hardware breakpoints through Xen's monitor
//    (vm_event) ring; detach removes everything; a stub killed with -9 leaves a ring
//    behind that the next stub reports and recovers from.
// Runs in a lab started with LAB_XEN=stock LAB_GUESTS=pv,pvh (.ci/run does).
import assert from 'assert';
import { readState, guest, xlStateOf, labExec, labClient, startStub, recreateGuest, LabGuest } from '../lab/client';
import { MiClient, sleep } from '../e2e/harness';
import {
  installXenctx, xenctx, ksym, hex, target, gdbOn, miConnect, miDetach, miConsole, miContinueInterrupt,
  vcpusNotRunning, jiffies, bytesAt,
  labState,
  againAfterTripleFault,
} from './labUtil';
import { gdbBatch } from '../e2e/harness';

function regValue(text: string, number: number): bigint {
  const m = new RegExp(`\\{number="${number}",value="(0x[0-9a-f]+)"\\}`).exec(text);
  assert.ok(m, `register ${number} in ${text.slice(0, 200)}`);
  return BigInt(m[1]);
}

async function regNumbers(mi: MiClient): Promise<Map<string, number>> {
  const r = await mi.cmd('-data-list-register-names');
  const names = [...r.text.matchAll(/"([^"]*)"/g)].map((m) => m[1]);
  return new Map(names.map((n, i) => [n, i] as [string, number]).filter(([n]) => n));
}

/** Insert a breakpoint through MI; its address. */
async function breakAt(mi: MiClient, where: string, hw = false): Promise<bigint> {
  const bp = await mi.cmd(`-break-insert ${hw ? '-h ' : ''}${where}`);
  assert.strictEqual(bp.cls, 'done', bp.text);
  const addr = BigInt(/addr="(0x[0-9a-f]+)"/.exec(bp.text)?.[1] ?? '0');
  assert.ok(addr > 0n, bp.text);
  return addr;
}

/** Continue until the next stop; the *stopped record. */
async function continueToStop(mi: MiClient, timeoutMs = 180000): Promise<string> {
  const since = mi.asyncRecords.length;
  const r = await mi.cmd('-exec-continue', { timeoutMs: 60000 });
  assert.strictEqual(r.cls, 'running', JSON.stringify(r));
  return (await mi.waitAsync(/^\*stopped/, since, timeoutMs)).line;
}

/**
 * After a test: no gdb left attached, the stub listening, the guest neither paused nor
 * crashed (a guest this suite broke is created again, so the next test starts clean).
 */
async function cleanUp(name: string, mi: MiClient | null): Promise<void> {
  if (mi) {
    try { await miDetach(mi); } catch { mi.kill(); }
  }
  let g = guest(name);
  const alive = g.stub.dom0Pid ? (await labExec(`kill -0 ${g.stub.dom0Pid}`)).code === 0 : false;
  if (!alive) g = { ...g, stub: await startStub(name) };
  const state = await xlStateOf(g.xlName);
  if (state === '' || /[sc]/.test(state)) {
    process.stderr.write(`      (cleanup: ${name} is in xl state '${state}': created again)\n`);
    await recreateGuest(name);
    return;
  }
  if (/p/.test(state)) {
    process.stderr.write(`      (cleanup: ${name} was left paused: xl unpause)\n`);
    await labExec(`xl unpause ${g.xlName}`);
  }
  const stuck = await vcpusNotRunning(g.xlName, 3000);
  if (stuck.length) {
    process.stderr.write(`      (cleanup: ${name}'s VCPU(s) ${stuck.join(', ')} do not run: created again)\n`);
    await recreateGuest(name);
  }
}

describe('real Xen: Debian\'s stock hypervisor (no CONFIG_GDBSX)', function () {
  this.timeout(900000);

  before(async function () {
    const st = labState();
    if (st?.status !== 'ready' || st.xen !== 'stock') this.skip();
    await installXenctx();
  });

  describe('PV guest', () => {
    let g: LabGuest;
    let mi: MiClient | null = null;

    before(async function () {
      if (!readState().guests.pv) this.skip();
      g = guest('pv');
    });

    afterEach(async () => {
      const m = mi;
      mi = null;
      await cleanUp('pv', m);
      g = guest('pv');
    });

    it('gdbsx -a <domid> 64 <port> attaches (no "built without CONFIG_GDBSX" exit)', async () => {
      const log = (await labExec(`cat ${g.stub.log}`)).stdout;
      assert.doesNotMatch(log, /guests cannot be debugged/, log);
      assert.match(log, /PV guest on a stock hypervisor/, log);
      assert.ok(g.stub.running, `the stub for pv is not running: ${g.stub.error ?? ''}`);
      assert.match(g.stub.cmd ?? '', new RegExp(`gdbsx -a ${g.domid} 64 ${g.stub.port}\\b`));
      const r = await gdbOn(g, ['info threads']);
      assert.strictEqual(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /Thread .*"VCPU 0"/);
    });

    it('info threads lists both VCPUs; registers match xenctx', async () => {
      mi = await miConnect(g);
      const threads = await mi.cmd('-thread-info');
      assert.strictEqual([...threads.text.matchAll(/name="VCPU \d+"/g)].length, 2, threads.text);
      const nums = await regNumbers(mi);
      for (const vcpu of [0, 1]) {
        const names = ['rip', 'rsp', 'rbp', 'rax'];
        const ids = names.map((n) => nums.get(n) as number);
        const vals = await mi.cmd(`-data-list-register-values --thread ${vcpu + 1} x ${ids.join(' ')}`);
        const ref = await xenctx(g.domid as number, vcpu);
        names.forEach((n, i) => assert.strictEqual(regValue(vals.text, ids[i]), ref[n], `VCPU ${vcpu} ${n}`));
      }
    });

    it('reads memory by symbol', async () => {
      const banner = await ksym('linux_banner');
      const r = await gdbOn(g, [`x/s ${hex(banner)}`, 'x/2i __schedule']);
      assert.strictEqual(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /"Linux version 6\.1/);
      assert.match(r.stdout, /<__schedule(\+\d+)?>:/);
    });

    it('break + continue: "Cannot insert breakpoint"; the guest is unharmed, its code unchanged', async () => {
      const fn = await ksym('__schedule');
      const before = await bytesAt(g, fn);
      const r = await gdbOn(g, ['break __schedule', 'continue', 'delete'], 300000);
      const out = r.stdout + r.stderr;
      assert.match(out, /Cannot insert breakpoint/, out);
      const state = await xlStateOf(g.xlName);
      assert.doesNotMatch(state, /c/, `crashed (xl state ${state})`);
      assert.doesNotMatch(state, /p/, `left paused (xl state ${state})`);
      assert.strictEqual(await bytesAt(g, fn), before, 'the code at __schedule changed');
      const j0 = await jiffies(g);
      await sleep(2000);
      assert.ok((await jiffies(g)) > j0, 'the guest runs after detach');
      assert.doesNotMatch(await xlStateOf(g.xlName), /c/, 'crashed later');
    });

    it('stepi is refused with a message naming CONFIG_GDBSX', async () => {
      const r = await gdbOn(g, ['stepi'], 300000);
      const out = r.stdout + r.stderr;
      assert.match(out, /CONFIG_GDBSX/, out);
      assert.doesNotMatch(await xlStateOf(g.xlName), /[pc]/);
    });

    it('continue then Ctrl-C stops it; detach leaves it running', async () => {
      mi = await miConnect(g);
      const stop = await miContinueInterrupt(mi, 2000);
      assert.match(stop, /signal-name="SIGINT"/, stop);
      assert.match(await xlStateOf(g.xlName), /p/, 'paused while stopped');
      await miDetach(mi);
      mi = null;
      assert.doesNotMatch(await xlStateOf(g.xlName), /p/, 'detach unpauses');
      const j0 = await jiffies(g);
      await sleep(2000);
      assert.ok((await jiffies(g)) > j0, 'jiffies advance after detach');
    });
  });

  describe('PVH guest', function () {
    let g: LabGuest;
    let mi: MiClient | null = null;
    const original: Record<string, string> = {};
    const fns = ['__schedule', 'ktime_get'];

    before(async function () {
      if (!readState().guests.pvh) this.skip();
      g = guest('pvh');
      const state = await xlStateOf(g.xlName);
      if (state === '' || /[sc]/.test(state)) g = await recreateGuest('pvh');
      // the code as it is before any test (each test checks its own preconditions:
      // without a working stub this stays empty and those tests fail one by one)
      if (g.stub.running) {
        try {
          for (const f of fns) original[f] = await bytesAt(g, await ksym(f));
        } catch (e) {
          process.stderr.write(`      (could not read the original code: ${(e as Error).message.split('\n')[0]})\n`);
        }
      }
    });

    afterEach(async () => {
      const m = mi;
      mi = null;
      await cleanUp('pvh', m);
      g = guest('pvh');
    });

    it('break on a hot kernel function + continue hits it, on the VCPU xenctx shows there; stepi moves to the next instruction', async () => {
      mi = await miConnect(g);
      const addr = await breakAt(mi, '__schedule');
      const stop = await continueToStop(mi);
      assert.match(stop, /reason="breakpoint-hit"/, stop);
      const tid = Number(/thread-id="(\d+)"/.exec(stop)?.[1]);
      assert.ok(tid === 1 || tid === 2, stop);
      assert.strictEqual((await xenctx(g.domid as number, tid - 1)).rip, addr, `xenctx: VCPU ${tid - 1} sits on the breakpoint`);
      // one instruction: the next one (the first instructions of __schedule are no branch)
      const dis = await mi.cmd(`-data-disassemble -s ${addr} -e ${addr + 16n} -- 0`);
      const insns = [...dis.text.matchAll(/address="(0x[0-9a-f]+)".*?inst="([^"]*)"/g)].map((m) => ({ addr: BigInt(m[1]), inst: m[2] }));
      assert.ok(insns.length >= 2 && insns[0].addr === addr, dis.text);
      assert.doesNotMatch(insns[0].inst, /^(j|call|ret|loop)/, `first instruction of __schedule is a branch: ${insns[0].inst}`);
      await mi.cmd('-break-delete');
      const since = mi.asyncRecords.length;
      await mi.cmd(`-exec-step-instruction --thread ${tid}`, { timeoutMs: 60000 });
      const st2 = (await mi.waitAsync(/^\*stopped/, since, 120000)).line;
      assert.match(st2, /reason="end-stepping-range"/, st2);
      const ref = await xenctx(g.domid as number, tid - 1);
      assert.strictEqual(ref.rip, insns[1].addr, `stepi from ${hex(addr)} (${insns[0].inst}): xenctx rip ${hex(ref.rip ?? 0n)}, expected ${hex(insns[1].addr)}`);
    });

    // Not in this lab: QEMU's TCG does not turn a debug-register hit inside the nested
    // guest into the #DB intercept Xen always sets (no DEBUG_EXCEPTION request ever came;
    // the guest took the #DB itself, re-entered the breakpoint from its handler and
    // triple-faulted, 3 of 3 tries). The same path is tested on the simulated Xen.
    it.skip('hbreak on another hot function is hit', async () => {
      mi = await miConnect(g);
      const addr = await breakAt(mi, 'ktime_get', true);
      const stop = await continueToStop(mi);
      assert.match(stop, /reason="breakpoint-hit"/, stop);
      const tid = Number(/thread-id="(\d+)"/.exec(stop)?.[1]);
      assert.strictEqual((await xenctx(g.domid as number, tid - 1)).rip, addr, `xenctx: VCPU ${tid - 1} sits on the hardware breakpoint`);
    });

    it('continue then Ctrl-C stops it', async () => {
      mi = await miConnect(g);
      const stop = await miContinueInterrupt(mi, 2000);
      assert.match(stop, /signal-name="SIGINT"/, stop);
      assert.deepStrictEqual(await vcpusNotRunning(g.xlName, 2000), [0, 1], 'no VCPU runs while stopped');
    });

    it('detach: no int3 left, the guest runs, a second attach works', async () => {
      mi = await miConnect(g);
      await breakAt(mi, '__schedule');
      await breakAt(mi, 'ktime_get');
      const stop = await continueToStop(mi);
      assert.match(stop, /reason="breakpoint-hit"/, stop);
      await miDetach(mi);
      mi = null;
      for (const f of fns) {
        assert.ok(original[f], `no reading of ${f} from before the tests`);
        assert.strictEqual(await bytesAt(g, await ksym(f)), original[f], `${f}: our int3 left in memory`);
      }
      assert.doesNotMatch(await xlStateOf(g.xlName), /[pc]/);
      assert.deepStrictEqual(await vcpusNotRunning(g.xlName), [], 'every VCPU runs after detach');
      const r = await gdbOn(g, ['info threads']);
      assert.strictEqual(r.code, 0, r.stdout + r.stderr);
      assert.strictEqual((r.stdout.match(/Thread [^\n]*"VCPU \d+"/g) ?? []).length, 2, `second attach: ${r.stdout}${r.stderr}`);
    });

    it('kill -9 of the stub with a breakpoint inserted and the guest running: the next stub reports the ring left behind and recovers', async () => {
      assert.ok(original.__schedule, 'no reading of __schedule from before the tests');
      mi = await miConnect(g);
      const addr = await breakAt(mi, '__schedule');
      const stop = await continueToStop(mi);
      assert.match(stop, /reason="breakpoint-hit"/, stop);
      // running again, our int3 in its code: a VCPU meets it within moments and waits
      // on the monitor ring for a reply from the stub we now kill
      const r = await mi.cmd('-exec-continue', { timeoutMs: 60000 });
      assert.strictEqual(r.cls, 'running');
      await sleep(300);
      const old = guest('pvh').stub;
      assert.ok(old.dom0Pid);
      await labClient().kill(old.dom0Pid, 'SIGKILL');
      mi.kill();
      mi = null;
      await sleep(1000);
      // the stub again (the same command on the same port)
      const stub = await startStub('pvh');
      assert.ok(stub.running, `restarted stub: ${stub.error ?? ''}`);
      g = guest('pvh');
      const s = await gdbBatch([...target(g), 'info threads', 'detach'], 300000);
      assert.strictEqual(s.code, 0, s.stdout + s.stderr);
      const log = (await labExec(`cat ${stub.log}`)).stdout;
      assert.match(log + s.stdout + s.stderr, /ring/i, `a message about the monitor ring left behind:\n${log}`);
      assert.doesNotMatch(await xlStateOf(g.xlName), /[pc]/, 'after detach: neither paused nor crashed');
      assert.deepStrictEqual(await vcpusNotRunning(g.xlName), [], 'no VCPU left paused');
      // gdb puts the breakpoint past the prologue (addr); the reading is of the function's start
      assert.strictEqual(await bytesAt(g, await ksym('__schedule')), original.__schedule, `the dead stub's int3 at ${hex(addr)} is gone`);
      const j0 = await jiffies(g);
      await sleep(2000);
      assert.ok((await jiffies(g)) > j0, 'jiffies advance');
    });
    againAfterTripleFault(this, 'pvh', (x) => { g = x; });
  });
});
