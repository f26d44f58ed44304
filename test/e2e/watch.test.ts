// End-to-end: watchpoints (watch, rwatch, awatch: RSP Z2/Z3/Z4) in the x86 debug
// registers, with the real gdb (batch and MI) and LLDB against the stub on the
// simulated Xen, whose CPU raises #DB on a data access matching DR0-3/DR7. The demo
// guest writes demo_ticks[v] on VCPU v only, demo_counter on every VCPU, and
// demo_rare_count (lock add in demo_rare, then a plain read in demo_hook); nothing
// writes demo_banner, which demo_rare reads.
import assert from 'assert';
import { spawnSync } from 'child_process';
import { startStub, gdbBatch, gdbConnect as connect, runBatch, MiClient, Stub, symbols, sleep } from './harness';
import { RspClient } from '../support/rspClient';
import { readField, CTX64, CTX32 } from '../../src/xg/context';
import { guestIntegrity } from '../../src/simIntegrity';

/** The debug registers DR0-3 and DR7 of a VCPU as the simulated Xen has them. */
function debugRegs(stub: Stub, vcpu: number, width: 32 | 64 = 64): { dr: bigint[]; dr7: bigint } {
  const ctx = stub.xc.getVcpuContext(stub.domid, vcpu);
  const layout = width === 64 ? CTX64 : CTX32;
  return {
    dr: (['dr0', 'dr1', 'dr2', 'dr3'] as const).map((r) => readField(ctx, layout, r) ?? 0n),
    dr7: readField(ctx, layout, 'dr7') ?? 0n,
  };
}

/** The guest as it was before gdb came: no debug register enabled or set, no int3, no pause, running. */
async function assertNothingLeft(stub: Stub, what: string, width: 32 | 64 = 64): Promise<void> {
  for (let i = 0; i < 200 && stub.server.activeSession; i++) await sleep(10);
  for (const v of stub.sim.domainState(stub.domid).vcpuPauseCounts.keys()) {
    assert.deepStrictEqual(debugRegs(stub, v, width), { dr: [0n, 0n, 0n, 0n], dr7: 0x400n }, `${what}: VCPU ${v}'s debug registers`);
  }
  const g = guestIntegrity(stub.sim, stub.domid, stub.image);
  assert.ok(g.ok, `${what}: ${JSON.stringify(g)}`);
}

/** gdb's "Old value = a / New value = b" pairs, in order. */
function changes(out: string): [bigint, bigint][] {
  return [...out.matchAll(/Old value = (\d+)\nNew value = (\d+)/g)].map((m) => [BigInt(m[1]), BigInt(m[2])]);
}

describe('watchpoints end-to-end on the simulated Xen', function () {
  this.timeout(60000);
  let stub: Stub | undefined;

  before(function () {
    if (spawnSync('gdb', ['--version']).status !== 0) throw new Error('gdb is not installed (.ci/run installs it: apt-get install gdb)');
  });
  afterEach(async () => {
    await stub?.close();
    stub = undefined;
  });

  for (const width of [64, 32] as const) {
    it(`${width}-bit: watch stops on the VCPU that wrote, with the old and new values; detach leaves no debug register`, async () => {
      stub = await startStub({ vcpus: 2, width });
      const type = width === 64 ? 'long long' : 'int';
      const r = await gdbBatch([...connect(stub), `watch ((${type} *)&demo_ticks)[1]`, 'continue', 'continue', 'info threads', 'detach']);
      assert.strictEqual(r.code, 0, r.stderr);
      const hits = [...r.stdout.matchAll(/Thread (\d+) "VCPU (\d+)" hit Hardware watchpoint 1: \(\(.* \*\)&demo_ticks\)\[1\]/g)];
      assert.strictEqual(hits.length, 2, r.stdout + r.stderr);
      for (const h of hits) assert.deepStrictEqual([h[1], h[2]], ['2', '1'], 'only VCPU 1 writes demo_ticks[1]');
      const ch = changes(r.stdout);
      assert.strictEqual(ch.length, 2, r.stdout);
      for (const [a, b] of ch) assert.strictEqual(b, a + 1n);
      assert.strictEqual(ch[1][0], ch[0][1], 'the second hit starts where the first left off');
      // Reported after the write (a trap): VCPU 1 is in demo_tick, past its incq.
      assert.match(r.stdout, /^\* 2\s+Thread 1\.2 "VCPU 1" .*demo_tick/m);
      await assertNothingLeft(stub, 'after detach', width);
    });
  }

  it('rwatch reports reads only: the writes that R/W = 11 also traps are not reported', async () => {
    stub = await startStub({ vcpus: 2 });
    const r = await gdbBatch([...connect(stub), 'rwatch *(long long *)&demo_rare_count', 'continue', 'p $pc', 'continue', 'p $pc', 'continue', 'p $pc', 'detach']);
    assert.strictEqual(r.code, 0, r.stderr);
    const hits = [...r.stdout.matchAll(/hit Hardware read watchpoint 1: \*\(long long \*\)&demo_rare_count\n\nValue = (\d+)/g)];
    assert.strictEqual(hits.length, 3, r.stdout + r.stderr);
    // demo_rare's lock add writes it (not reported); demo_hook reads it (reported, just after the read).
    const pcs = [...r.stdout.matchAll(/\$\d+ = \(void \(\*\)\(\)\) 0x[0-9a-f]+ <(\w+)\+\d+>/g)].map((m) => m[1]);
    assert.deepStrictEqual(pcs, ['demo_hook', 'demo_hook', 'demo_hook'], r.stdout);
    await assertNothingLeft(stub, 'after detach');
  });

  it('rwatch: a stepi over a write is just the step; the next continue stops at the read', async () => {
    stub = await startStub({ vcpus: 2 });
    // demo_rare+1 is `lock addq $1, demo_rare_count`.
    const r = await gdbBatch([...connect(stub), 'break *(demo_rare+1)', 'continue', 'delete', 'set scheduler-locking step',
      'rwatch *(long long *)&demo_rare_count', 'stepi', 'p $pc', 'continue', 'p $pc', 'detach']);
    assert.strictEqual(r.code, 0, r.stderr);
    const pcs = [...r.stdout.matchAll(/\$\d+ = \(void \(\*\)\(\)\) 0x[0-9a-f]+ <(\w+\+\d+)>/g)].map((m) => m[1]);
    assert.deepStrictEqual(pcs, ['demo_rare+10', 'demo_hook+7'], r.stdout);
    const hits = [...r.stdout.matchAll(/hit Hardware read watchpoint 2/g)];
    assert.strictEqual(hits.length, 1, `only the read is reported:\n${r.stdout}`);
    await assertNothingLeft(stub, 'after detach');
  });

  it('rwatch on data nothing writes, and awatch: reads ("Value =") and writes ("Old value / New value")', async () => {
    stub = await startStub({ vcpus: 2 });
    const r = await gdbBatch([...connect(stub), 'rwatch *(char *)&demo_banner', 'continue', 'delete',
      'awatch *(long long *)&demo_rare_count', 'continue', 'continue', 'continue', 'detach']);
    assert.strictEqual(r.code, 0, r.stderr);
    assert.match(r.stdout, /hit Hardware read watchpoint 1: \*\(char \*\)&demo_banner\n\nValue = 88 'X'/, r.stdout + r.stderr);
    const acc = [...r.stdout.matchAll(/hit Hardware access \(read\/write\) watchpoint 2: \*\(long long \*\)&demo_rare_count\n\n(Value|Old value) = /g)].map((m) => m[1]);
    assert.strictEqual(acc.length, 3, r.stdout);
    assert.ok(acc.includes('Value') && acc.includes('Old value'), `reads and writes both reported: ${acc}`);
    await assertNothingLeft(stub, 'after detach');
  });

  it('four debug registers for watch and hbreak together: the fifth is refused with the reason, and works once one is deleted', async () => {
    stub = await startStub({ vcpus: 2 });
    const r = await gdbBatch([...connect(stub), 'watch *(long long *)&demo_counter', 'watch ((long long *)&demo_ticks)[0]',
      'hbreak demo_rare', 'awatch *(long long *)&demo_last_work', 'watch ((long long *)&demo_ticks)[1]', 'continue',
      'delete 1 2 3 4', 'continue', 'detach']);
    assert.strictEqual(r.code, 0, r.stderr);
    // gdb inserts them in its own order: one of the five is refused, and all of gdb's go in once four are deleted.
    assert.match(r.stderr, /Could not insert hardware (watchpoint|breakpoint) [1-5]\./);
    assert.match(r.stderr, /gdbsx: a watchpoint was refused: all four x86 debug registers are in use \(4 by hardware breakpoints and watchpoints of this session\)/);
    assert.match(r.stdout, /Thread 2 "VCPU 1" hit Hardware watchpoint 5: \(\(long long \*\)&demo_ticks\)\[1\]\n\nOld value/, r.stdout + r.stderr);
    await assertNothingLeft(stub, 'after detach');
  });

  it('a misaligned address or a length x86 cannot watch is refused with the reason', async () => {
    stub = await startStub({ vcpus: 1 });
    const r = await gdbBatch([...connect(stub), 'watch *(long long *)((char *)&demo_counter + 4)', 'continue', 'delete',
      'watch *(char (*)[3])&demo_counter', 'continue', 'delete', 'watch *(long long *)&demo_counter', 'continue', 'detach']);
    assert.strictEqual(r.code, 0, r.stderr);
    assert.match(r.stderr, /Could not insert hardware watchpoint 1/);
    assert.match(r.stderr, /gdbsx: a watchpoint was refused: an x86 debug register watches 8 bytes at an address aligned to 8: 0x[0-9a-f]+ is not/);
    assert.match(r.stderr, /Could not insert hardware watchpoint 2/);
    assert.match(r.stderr, /gdbsx: a watchpoint was refused: an x86 debug register watches 1, 2, 4, 8 bytes, not 3/);
    assert.match(r.stdout, /Hardware watchpoint 3: \*\(long long \*\)&demo_counter\n\nOld value = \d+\nNew value = \d+/, r.stdout + r.stderr);
    await assertNothingLeft(stub, 'after detach');
  });

  it('MI: -break-watch then -exec-continue stops with reason="watchpoint-trigger"; delete puts DR7 back on every VCPU', async () => {
    stub = await startStub({ vcpus: 2 });
    const counter = symbols(stub.image).get('demo_counter') as bigint;
    const mi = new MiClient();
    try {
      await mi.cmd(`-file-exec-and-symbols ${stub.image}`);
      await mi.cmd('-gdb-set breakpoint always-inserted on'); // inserted at once, removed at delete
      assert.strictEqual((await mi.cmd(`-target-select remote 127.0.0.1:${stub.port}`)).cls, 'connected');
      const w = await mi.cmd('-break-watch "*(long long *)&demo_counter"');
      assert.strictEqual(w.cls, 'done', w.text);
      for (const v of [0, 1]) {
        const d = debugRegs(stub, v);
        const slot = d.dr.indexOf(counter);
        assert.ok(slot >= 0, `VCPU ${v}: DR0-3 ${d.dr.map((a) => a.toString(16))}`);
        assert.strictEqual((d.dr7 >> BigInt(2 * slot)) & 3n, 1n, 'locally enabled');
        assert.strictEqual((d.dr7 >> BigInt(16 + 4 * slot)) & 0xfn, 0b1001n, 'R/W 01 (write), LEN 10 (8 bytes)');
      }
      const listed = mi.log.length;
      assert.strictEqual((await mi.cmd('-interpreter-exec console "monitor breakpoints"')).cls, 'done');
      assert.match(mi.log.slice(listed).join('\n'), new RegExp(`0x${counter.toString(16)}  watch 8 bytes \\(debug register\\)`));
      const since = mi.asyncRecords.length;
      assert.strictEqual((await mi.cmd('-exec-continue')).cls, 'running');
      const stopped = (await mi.waitAsync(/^\*stopped/, since, 20000)).line;
      assert.match(stopped, /reason="watchpoint-trigger",wpt=\{number="1",exp="\*\(long long \*\)&demo_counter"\},value=\{old="\d+",new="\d+"\}/);
      assert.strictEqual((await mi.cmd('-break-delete 1')).cls, 'done');
      for (const v of [0, 1]) assert.deepStrictEqual(debugRegs(stub, v), { dr: [0n, 0n, 0n, 0n], dr7: 0x400n }, `VCPU ${v} after delete`);
      await mi.cmd('-target-detach');
    } finally {
      await mi.quit();
    }
    await assertNothingLeft(stub, 'after MI detach');
  });

  it('a dropped connection with watchpoints inserted leaves no debug register behind', async () => {
    stub = await startStub({ vcpus: 2 });
    const sym = symbols(stub.image);
    const c = await RspClient.session(stub.port);
    try {
      assert.strictEqual(await c.request(`Z2,${(sym.get('demo_counter') as bigint).toString(16)},8`), 'OK');
      assert.strictEqual(await c.request(`Z3,${(sym.get('demo_banner') as bigint).toString(16)},1`), 'OK');
      assert.strictEqual(await c.request(`Z4,${(sym.get('demo_ticks') as bigint).toString(16)},4`), 'OK');
      assert.notStrictEqual(debugRegs(stub, 1).dr7 & 0xffn, 0n, 'set on every VCPU');
    } finally {
      c.close(); // no D, no k: the connection just goes
    }
    await assertNothingLeft(stub, 'after the connection dropped');
  });

  it('stock Xen, PVH: watch through the monitor ring\'s debug-exception event; PV refused with the reason', async () => {
    stub = await startStub({ vcpus: 2, type: 'pvh', xen: { gdbsx: false } });
    const r = await gdbBatch([...connect(stub), 'watch ((long long *)&demo_ticks)[1]', 'continue', 'detach']);
    assert.strictEqual(r.code, 0, r.stderr);
    assert.match(r.stdout, /Thread 2 "VCPU 1" hit Hardware watchpoint 1: .*\n\nOld value = \d+\nNew value = \d+/, r.stdout + r.stderr);
    assert.strictEqual(stub.sim.domainState(stub.domid).debuggerAttached, false, 'setdebugging never turned on');
    await assertNothingLeft(stub, 'pvh after detach');
    await stub.close();

    stub = await startStub({ vcpus: 2, type: 'pv', xen: { gdbsx: false } });
    const p = await gdbBatch([...connect(stub), 'watch *(long long *)&demo_counter', 'continue', 'detach']);
    assert.match(p.stderr, /Could not insert hardware watchpoint 1/);
    await assertNothingLeft(stub, 'stock pv after detach');
    // The reason, in the error reply (gdb shows it at the next resume, which a stock PV guest with nothing to trap rarely gets).
    const c = await RspClient.session(stub.port);
    try {
      const counter = symbols(stub.image).get('demo_counter') as bigint;
      assert.match(await c.request(`Z2,${counter.toString(16)},8`), /^E\.this hypervisor was built without CONFIG_GDBSX.* given watchpoints$/);
    } finally {
      c.close();
    }
  });

  for (const [name, o] of [['gdbsx build, PV (TF)', {}], ['stock Xen, PVH on AMD (TF)', { type: 'pvh', xen: { gdbsx: false } }],
    ['stock Xen, PVH on Intel (MTF)', { type: 'pvh', xen: { gdbsx: false, mtf: true } }]] as const) {
    it(`${name}: stepi over the write reports the watchpoint with the step; the next continue the next write`, async () => {
      stub = await startStub({ vcpus: 2, ...o });
      // demo_tick+7 is `incq (%rax,%rdi,8)`: demo_ticks[vcpu]++.
      const r = await gdbBatch([...connect(stub), 'break *(demo_tick+7)', 'continue', 'delete', 'set scheduler-locking step',
        'watch -l *(long long *)($rax+$rdi*8)', 'stepi', 'p $pc', 'continue', 'p $pc', 'detach']);
      assert.strictEqual(r.code, 0, r.stderr);
      const hits = [...r.stdout.matchAll(/hit Hardware watchpoint 2: -location .*\n\nOld value = (\d+)\nNew value = (\d+)\n.*\n.*\n\$(\d) = \(void \(\*\)\(\)\) 0x[0-9a-f]+ <demo_tick\+11>/g)];
      assert.strictEqual(hits.length, 2, r.stdout + r.stderr);
      assert.deepStrictEqual(hits.map((h) => h[3]), ['1', '2']);
      assert.strictEqual(BigInt(hits[0][2]), BigInt(hits[0][1]) + 1n);
      assert.strictEqual(BigInt(hits[1][1]), BigInt(hits[0][2]), 'the continue stops at the next write, not on a stale DR6 bit');
      await assertNothingLeft(stub, 'after detach');
    });
  }

  it('gdbsx build, PVH: watchpoints refused with the reason (never the empty reply)', async () => {
    stub = await startStub({ vcpus: 1, type: 'pvh' });
    const c = await RspClient.session(stub.port);
    try {
      const counter = symbols(stub.image).get('demo_counter') as bigint;
      for (const t of [2, 3, 4]) {
        assert.strictEqual(await c.request(`Z${t},${counter.toString(16)},8`), 'E.hardware watchpoints (debug registers) are not offered for HVM/PVH guests on the gdbsx path');
      }
    } finally {
      c.close();
    }
  });

  it('LLDB: watchpoint set expression -w write stops with the watchpoint, old and new values, on the writing thread', async () => {
    const LLDB = process.env.LLDB ?? 'lldb';
    const v = spawnSync(LLDB, ['--version'], { encoding: 'utf8' });
    if (v.error || v.status !== 0) throw new Error(`LLDB is not installed ('${LLDB} --version' failed): apt-get install lldb`);
    stub = await startStub({ vcpus: 2 });
    const tick1 = (symbols(stub.image).get('demo_ticks') as bigint) + 8n;
    const r = await runBatch(LLDB, ['--no-lldbinit', '-b', '-o', `gdb-remote 127.0.0.1:${stub.port}`,
      '-o', `watchpoint set expression -w write -s 8 -- 0x${tick1.toString(16)}`, '-o', 'process continue', '-o', 'watchpoint list', '-o', 'process detach'], 60000);
    assert.strictEqual(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /Watchpoint created: Watchpoint 1: addr = 0x[0-9a-f]+ size = 8 state = enabled type = w/, r.stdout);
    const m = /Watchpoint 1 hit:\s*\nold value: (\d+)\s*\nnew value: (\d+)/.exec(r.stdout);
    assert.ok(m, r.stdout);
    assert.strictEqual(BigInt(m[2]), BigInt(m[1]) + 1n);
    assert.match(r.stdout, /\* thread #2, name = 'VCPU 1', stop reason = watchpoint 1/);
    assert.match(r.stdout, /Number of supported hardware watchpoints: 4/);
    await assertNothingLeft(stub, 'after lldb detach');
  });
});
