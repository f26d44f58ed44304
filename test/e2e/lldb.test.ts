// End-to-end with LLDB (issue 10, item 8): the real `lldb` binary in batch mode against
// the stub on the simulated Xen. Threads, registers (64- and 32-bit guests), memory, a
// breakpoint hit, `process detach`, and `process kill`, which must end without an error
// and leave the guest running, unpaused and without our int3s (it is never destroyed).
import assert from 'assert';
import { spawnSync } from 'child_process';
import { startStub, gdbBatch, gdbConnect, runBatch, BatchResult, Stub, symbols, sleep } from './harness';
import { guestIntegrity } from '../../src/simIntegrity';
import { CTX64, readField } from '../../src/xg/context';

const LLDB = process.env.LLDB ?? 'lldb';

type LldbResult = BatchResult;

/** `lldb -b` with one -o per command; batch mode stops at the first command that fails. */
function lldbBatch(cmds: string[], timeoutMs = 60000): Promise<LldbResult> {
  return runBatch(LLDB, ['--no-lldbinit', '-b', ...cmds.flatMap((c) => ['-o', c])], timeoutMs);
}

function connect(stub: Stub): string {
  return `gdb-remote 127.0.0.1:${stub.port}`;
}

function hex(v: bigint): string {
  return '0x' + v.toString(16);
}

/** The value `register read` printed for `name`. */
function reg(out: string, name: string): bigint {
  const m = new RegExp(`^\\s*${name} = (0x[0-9a-f]+)`, 'm').exec(out);
  assert.ok(m, `no ${name} in:\n${out}`);
  return BigInt(m[1]);
}

/** All of a batch's commands ran and none reported an error. */
function assertClean(r: LldbResult, what: string): void {
  const all = `${what}\nexit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
  assert.strictEqual(r.code, 0, all);
  assert.doesNotMatch(r.stdout, /^error:|failed to send|unexpected response/im, all);
  assert.doesNotMatch(r.stderr, /^error:/im, all);
}

async function sessionEnded(stub: Stub): Promise<void> {
  for (let i = 0; i < 200 && stub.server.activeSession; i++) await sleep(10);
  assert.strictEqual(stub.server.activeSession, undefined, 'the stub still holds a session');
}

function counter(stub: Stub, width: 32 | 64): bigint {
  const b = stub.sim.readVirt(stub.domid, stub.sim.symbol(stub.domid, 'demo_counter'), width / 8);
  return width === 64 ? b.readBigUInt64LE() : BigInt(b.readUInt32LE());
}

/** Restored as found (no int3, no pause, debugging off) and running. */
async function assertIntactAndRunning(stub: Stub, width: 32 | 64, what: string): Promise<void> {
  await sessionEnded(stub);
  const g = guestIntegrity(stub.sim, stub.domid, stub.image);
  assert.ok(g.ok, `${what}: ${JSON.stringify(g)}`);
  assert.ok(stub.sim.domainIds().includes(stub.domid), `${what}: the domain is gone`);
  const c0 = counter(stub, width);
  for (let i = 0; i < 100 && counter(stub, width) === c0; i++) await sleep(10);
  assert.ok(counter(stub, width) > c0, `${what}: the guest does not run`);
}

describe('LLDB end-to-end on the simulated Xen', function () {
  this.timeout(120000);
  let stub: Stub | undefined;

  before(function () {
    const v = spawnSync(LLDB, ['--version'], { encoding: 'utf8' });
    if (v.error || v.status !== 0) {
      throw new Error(`LLDB is not installed ('${LLDB} --version' failed: ${v.error?.message ?? v.stderr}). ` +
        'Install it (Debian: apt-get install lldb; .ci/run does) or point LLDB= at it: these tests do not skip.');
    }
  });
  afterEach(async () => {
    await stub?.close();
    stub = undefined;
  });

  it('64-bit guest: VCPUs as threads, sane registers, memory, a breakpoint hit, detach', async () => {
    stub = await startStub({ vcpus: 2 });
    const sym = symbols(stub.image);
    const tick = sym.get('demo_tick');
    const banner = sym.get('demo_banner');
    const end = sym.get('_end');
    assert.ok(tick && banner && end);
    const r = await lldbBatch([connect(stub), 'thread list', 'register read', `memory read -c 16 ${hex(banner)}`,
      `breakpoint set -a ${hex(tick)}`, 'process continue', 'register read rip', 'breakpoint delete -f', 'process detach']);
    assertClean(r, 'lldb on the 64-bit guest');
    const out = r.stdout;
    // One thread per VCPU, ids from 1.
    assert.match(out, /thread #1: tid = 0x0001, 0x[0-9a-f]+/);
    assert.match(out, /thread #2: tid = 0x0002, 0x[0-9a-f]+/);
    assert.doesNotMatch(out, /thread #3/);
    // Registers as the guest has them: pc in the kernel image, the stack in the direct map,
    // PV selectors, gs base on the VCPU's per-cpu page; nothing LLDB filled in.
    const rip = reg(out, 'rip');
    assert.ok(rip >= 0xffffffff81000000n && rip < end, `rip ${hex(rip)}`);
    const rsp = reg(out, 'rsp');
    assert.ok(rsp >= 0xffff888000100000n && rsp < 0xffff888000200000n, `rsp ${hex(rsp)}`);
    assert.strictEqual(reg(out, 'cs'), 0xe033n);
    const gsBase = reg(out, 'gs_base');
    assert.ok(gsBase >= 0xffff888000100000n && gsBase < 0xffff888000200000n, `gs_base ${hex(gsBase)}`);
    assert.doesNotMatch(out, /0xcccccccc/);
    // Memory by address, as the guest holds it.
    assert.match(out, new RegExp(`${hex(banner)}: 58 65 6e 20 67 64 62 73 78 20 64 65 6d 6f 20 67\\s+Xen gdbsx demo g`));
    // The breakpoint is hit, on the address asked for.
    assert.match(out, /stop reason = breakpoint 1\.1/);
    assert.match(out, new RegExp(`rip = ${hex(tick).replace('0x', '0x0*')}\\b`));
    assert.match(out, /Process 1 detached/);
    await assertIntactAndRunning(stub, 64, 'after process detach');
  });

  it('32-bit PV guest: registers without 0xcccccccc (no fs/gs base in the compat context: not described)', async () => {
    stub = await startStub({ vcpus: 2, width: 32 });
    const sym = symbols(stub.image);
    const end = sym.get('_end');
    assert.ok(end);
    const r = await lldbBatch([connect(stub), 'thread list', 'register read --all', 'process detach']);
    assertClean(r, 'lldb on the 32-bit guest');
    const out = r.stdout;
    assert.match(out, /thread #2: tid = 0x0002/);
    const eip = reg(out, 'eip');
    assert.ok(eip >= 0xc1000000n && eip < end, `eip ${hex(eip)}`);
    assert.strictEqual(reg(out, 'cs'), 0xe019n);
    assert.ok(reg(out, 'cr3') !== 0n);
    assert.doesNotMatch(out, /0xcccccccc|0xcc 0xcc/, 'LLDB shows bytes it could not read as 0xcc');
    assert.doesNotMatch(out, /fs_base|gs_base/);
    await assertIntactAndRunning(stub, 32, 'after process detach');
  });

  it('32-bit PVH guest: fs_base/gs_base shown with the values the VCPU context holds', async () => {
    stub = await startStub({ vcpus: 1, width: 32, type: 'pvh' });
    // The bases as Xen's VCPU context holds them (the native layout, which PVH guests get).
    const ctx = stub.xc.getVcpuContext(stub.domid, 0);
    const fsBase = (readField(ctx, CTX64, 'fs_base') ?? 0n) & 0xffffffffn;
    const gsBase = (readField(ctx, CTX64, 'gs_base_kernel') ?? 0n) & 0xffffffffn;
    const r = await lldbBatch([connect(stub), 'register read fs_base gs_base eip', 'process detach']);
    assertClean(r, 'lldb on the 32-bit PVH guest');
    assert.doesNotMatch(r.stdout, /0xcccccccc/);
    assert.strictEqual(reg(r.stdout, 'fs_base'), fsBase);
    assert.strictEqual(reg(r.stdout, 'gs_base'), gsBase);
  });

  for (const width of [64, 32] as const) {
    it(`${width}-bit guest: process kill at a breakpoint ends cleanly and leaves the guest running, no int3 left`, async () => {
      stub = await startStub({ vcpus: 2, width });
      const tick = stub.sim.symbol(stub.domid, 'demo_tick');
      const r = await lldbBatch([connect(stub), `breakpoint set -a ${hex(tick)}`, 'process continue', 'process kill']);
      assertClean(r, 'lldb process kill');
      assert.match(r.stdout, /stop reason = breakpoint 1\.1/);
      assert.match(r.stdout, /Process 1 exited with status = 0/);
      await assertIntactAndRunning(stub, width, 'after process kill');
    });
  }

  it('gdb sending k (no vKill, no multiprocess) gets the same end of session and ignores the W00', async () => {
    stub = await startStub({ vcpus: 2 });
    // gdb sends k only without multiprocess (with it, and no vKill, it refuses to kill).
    const r = await gdbBatch(['set remote multiprocess-feature-packet off', 'set remote kill-packet off', ...gdbConnect(stub),
      'break demo_tick', 'continue', 'kill', 'info threads']);
    assert.strictEqual(r.code, 0, r.stderr);
    assert.match(r.stdout, /hit Breakpoint 1/);
    assert.match(r.stdout, /\[Inferior 1 \(.*\) killed\]/);
    assert.match(r.stdout + r.stderr, /No threads/);
    await assertIntactAndRunning(stub, 64, 'after gdb kill with k');
  });
});
