// LLDB on a par with gdb for threads (issue 13): the real `lldb` against the stub on the
// simulated Xen. VCPU names in `thread list` and at a stop, the stop's pc, few packets per
// stop (LLDB's own packet log counts them), and registers of a thread other than the
// current one read and written through the `;thread:<id>;` suffixed p/P packets.
import assert from 'assert';
import fs from 'fs';
import os from 'os';
import path from 'path';
import { spawnSync } from 'child_process';
import { startStub, runBatch, BatchResult, Stub } from './harness';
import { CTX64, CTX32, ContextLayout, ContextRegName, readField } from '../../src/xg/context';

const LLDB = process.env.LLDB ?? 'lldb';

function lldbBatch(cmds: string[], timeoutMs = 60000): Promise<BatchResult> {
  return runBatch(LLDB, ['--no-lldbinit', '-b', ...cmds.flatMap((c) => ['-o', c])], timeoutMs);
}

function assertClean(r: BatchResult, what: string): void {
  const all = `${what}\nexit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
  assert.strictEqual(r.code, 0, all);
  assert.doesNotMatch(r.stdout, /^error:|failed to send|unexpected response/im, all);
  assert.doesNotMatch(r.stderr, /^error:/im, all);
}

function hex(v: bigint): string {
  return '0x' + v.toString(16);
}

/** The value `register read` printed for `name` after `from` in the output. */
function reg(out: string, name: string): bigint {
  const m = new RegExp(`^\\s*${name} = (0x[0-9a-f]+)`, 'm').exec(out);
  assert.ok(m, `no ${name} in:\n${out}`);
  return BigInt(m[1]);
}

/**
 * Logging on before connecting: LLDB dumps its packet history into the first log it opens,
 * so later logs hold only the packets of the commands they enclose.
 */
function logFirst(dir: string): string {
  return `log enable -f ${path.join(dir, 'connect.log')} gdb-remote packets`;
}

/** The packets LLDB sent, from its `log enable gdb-remote packets` file. */
function sentPackets(logFile: string): string[] {
  const text = fs.readFileSync(logFile, 'utf8');
  return [...text.matchAll(/send packet: \$([^#]*)#/g)].map((m) => m[1]);
}

function field(ctx: Buffer, layout: ContextLayout, name: ContextRegName): bigint {
  const v = readField(ctx, layout, name);
  assert.ok(v !== undefined, `no ${name} in the context`);
  return v;
}

describe('LLDB threads: VCPU names, few packets per stop, thread-suffixed registers (sim)', function () {
  this.timeout(120000);
  let stub: Stub | undefined;
  let dir: string;

  before(function () {
    const v = spawnSync(LLDB, ['--version'], { encoding: 'utf8' });
    if (v.error || v.status !== 0) {
      throw new Error(`LLDB is not installed ('${LLDB} --version' failed): install it (Debian: apt-get install lldb) or point LLDB= at it`);
    }
  });
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gdbsx-lldb-'));
  });
  afterEach(async () => {
    await stub?.close();
    stub = undefined;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Connect to 4 VCPUs, thread list, stop at demo_tick twice (the second stop's packets logged), thread list. */
  async function twoStops(width: 64 | 32): Promise<{ out: string; tick: bigint; stopLog: string }> {
    stub = await startStub({ vcpus: 4, width });
    const tick = stub.sim.symbol(stub.domid, 'demo_tick');
    const stopLog = path.join(dir, 'stop.log');
    const r = await lldbBatch([logFirst(dir), `gdb-remote 127.0.0.1:${stub.port}`, 'thread list',
      `breakpoint set -a ${hex(tick)}`, 'process continue',
      // The next stop alone: its resume, stop reply and whatever LLDB asks after it.
      `log enable -f ${stopLog} gdb-remote packets`, 'process continue', 'log disable gdb-remote packets',
      'thread list', 'breakpoint delete -f', 'process detach']);
    assertClean(r, 'lldb thread names and stops');
    return { out: r.stdout, tick, stopLog };
  }

  for (const width of [64, 32] as const) {
    it(`${width}-bit guest, 4 VCPUs: thread list names the VCPUs; a breakpoint stop names its VCPU and has the right pc`, async () => {
      const { out, tick } = await twoStops(width);
      // At connect and after the stops: every VCPU by name.
      for (let v = 0; v < 4; v++) {
        const re = new RegExp(`thread #${v + 1}: tid = 0x000${v + 1}, 0x[0-9a-f]+, name = 'VCPU ${v}'`, 'g');
        assert.strictEqual([...out.matchAll(re)].length, 2, `thread #${v + 1} named 'VCPU ${v}' in both thread lists:\n${out}`);
      }
      // Each stop: the VCPU's name, the breakpoint, its address as frame 0's pc.
      const stops = [...out.matchAll(/\* thread #(\d+), name = 'VCPU (\d+)', stop reason = breakpoint 1\.1\n\s+frame #0: (0x[0-9a-f]+)/g)];
      assert.strictEqual(stops.length, 2, out);
      for (const m of stops) {
        assert.strictEqual(Number(m[1]), Number(m[2]) + 1, 'thread n+1 is VCPU n');
        assert.strictEqual(BigInt(m[3]), tick);
      }
      const last = out.slice(out.lastIndexOf('(lldb) thread list'));
      assert.match(last, new RegExp(`\\* thread #${stops[1][1]}: tid = 0x000${stops[1][1]}, ${hex(tick).replace('0x', '0x0*')}, name = 'VCPU ${stops[1][2]}', stop reason = breakpoint 1\\.1`));
    });

    it(`${width}-bit guest, 4 VCPUs: after a breakpoint stop LLDB sends at most 3 packets, none per VCPU`, async () => {
      const { stopLog } = await twoStops(width);
      // Packets LLDB sent for the stop, the resume (c or vCont) and breakpoint moves aside:
      // before LLDB's extensions were answered it asked qfThreadInfo/qsThreadInfo, then Hg
      // and p (pc, fp, sp) for each other VCPU (15 with 4 VCPUs); now jThreadsInfo (once per
      // public stop) and the disassembly's memory read.
      const sent = sentPackets(stopLog).filter((p) => !/^(c|vCont|[zZ]\d)/.test(p));
      assert.deepStrictEqual(sent.filter((p) => /^(p|g|Hg|qfThreadInfo|qsThreadInfo|qThreadStopInfo)/.test(p)), [],
        `no thread list or register reads after a stop: ${sent.join(' ')}`);
      assert.ok(sent.length <= 3, `at most 3 packets after the stop, got ${sent.length}: ${sent.join(' ')}`);
    });
  }

  it('registers of a non-current VCPU, read and written through p/P with the ;thread: suffix, are the VCPU\'s own', async () => {
    stub = await startStub({ vcpus: 4 });
    // Let the VCPUs run apart (r13 counts iterations, r12 is the VCPU number), then hold the
    // domain paused (our pause: it outlives the session), so the state read here is the one
    // LLDB sees.
    const c0 = stub.sim.readVirt(stub.domid, stub.sim.symbol(stub.domid, 'demo_counter'), 8).readBigUInt64LE();
    for (let i = 0; i < 200; i++) {
      if (stub.sim.readVirt(stub.domid, stub.sim.symbol(stub.domid, 'demo_counter'), 8).readBigUInt64LE() > c0 + 20n) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    stub.xc.pauseDomain(stub.domid);
    const ctx = [0, 1, 2, 3].map((v) => Buffer.from(stub!.xc.getVcpuContext(stub!.domid, v)));
    const names: ContextRegName[] = ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rbp', 'rsp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15', 'rip'];
    const regLog = path.join(dir, 'regs.log');
    const written = 0x1122334455667788n;
    const r = await lldbBatch([logFirst(dir), `gdb-remote 127.0.0.1:${stub.port}`, `log enable -f ${regLog} gdb-remote packets`,
      'thread select 3', `register read ${names.join(' ')} gs_base`, `register write rbx ${hex(written)}`,
      'thread select 1', 'register read rbx', 'log disable gdb-remote packets', 'process detach']);
    assertClean(r, 'lldb registers of thread 3');
    const out = r.stdout;
    const t3 = out.slice(out.indexOf('(lldb) thread select 3'), out.indexOf('(lldb) register write'));
    const t1 = out.slice(out.indexOf('(lldb) thread select 1'));
    for (const n of names) assert.strictEqual(reg(t3, n), field(ctx[2], CTX64, n), `thread 3 ${n} is VCPU 2's`);
    assert.strictEqual(reg(t3, 'gs_base'), field(ctx[2], CTX64, 'gs_base_kernel'), 'gs_base: VCPU 2\'s per-cpu area');
    assert.notStrictEqual(field(ctx[2], CTX64, 'r12'), field(ctx[0], CTX64, 'r12'), 'the VCPUs differ (r12 is the VCPU number)');
    assert.strictEqual(reg(t1, 'rbx'), field(ctx[0], CTX64, 'rbx'), 'thread 1 keeps its own rbx');
    // The write went to VCPU 2 only (the domain is still paused by us: nothing ran since).
    assert.strictEqual(field(stub.xc.getVcpuContext(stub.domid, 2), CTX64, 'rbx'), written);
    assert.strictEqual(field(stub.xc.getVcpuContext(stub.domid, 0), CTX64, 'rbx'), field(ctx[0], CTX64, 'rbx'));
    // Through the suffixed packets, with no Hg selecting a thread first.
    const sent = sentPackets(regLog);
    assert.ok(sent.some((p) => /^p[0-9a-f]+;thread:0*3;$/.test(p)), `p with ;thread:3; in ${sent.join(' ')}`);
    assert.ok(sent.some((p) => /^P[0-9a-f]+=[0-9a-f]+;thread:0*3;$/.test(p)), `P with ;thread:3; in ${sent.join(' ')}`);
    assert.deepStrictEqual(sent.filter((p) => p.startsWith('Hg')), []);
    stub.xc.unpauseDomain(stub.domid);
  });

  it('32-bit guest: a non-current VCPU\'s registers through the suffixed p packets are its own', async () => {
    stub = await startStub({ vcpus: 2, width: 32 });
    stub.xc.pauseDomain(stub.domid);
    const ctx = [0, 1].map((v) => Buffer.from(stub!.xc.getVcpuContext(stub!.domid, v)));
    const names: [string, ContextRegName][] = [['eax', 'rax'], ['ecx', 'rcx'], ['edx', 'rdx'], ['ebx', 'rbx'], ['esp', 'rsp'], ['ebp', 'rbp'],
      ['esi', 'rsi'], ['edi', 'rdi'], ['eip', 'rip']];
    const regLog = path.join(dir, 'regs.log');
    const r = await lldbBatch([logFirst(dir), `gdb-remote 127.0.0.1:${stub.port}`, `log enable -f ${regLog} gdb-remote packets`,
      'thread select 2', `register read ${names.map(([n]) => n).join(' ')}`, 'log disable gdb-remote packets', 'process detach']);
    assertClean(r, 'lldb registers of thread 2, 32-bit');
    const t2 = r.stdout.slice(r.stdout.indexOf('(lldb) thread select 2'));
    for (const [n, f] of names) assert.strictEqual(reg(t2, n), field(ctx[1], CTX32, f) & 0xffffffffn, `thread 2 ${n} is VCPU 1's`);
    const sent = sentPackets(regLog);
    assert.ok(sent.some((p) => /^p[0-9a-f]+;thread:0*2;$/.test(p)), `p with ;thread:2; in ${sent.join(' ')}`);
    assert.deepStrictEqual(sent.filter((p) => p.startsWith('Hg')), []);
    stub.xc.unpauseDomain(stub.domid);
  });
});
