// End-to-end: the real gdb (batch and MI) against the stub on the simulated Xen.
import assert from 'assert';
import { execFileSync, spawnSync } from 'child_process';
import path from 'path';
import { startStub, gdbBatch, gdbConnect as connect, MiClient, Stub, symbols, sleep } from './harness';
import { readField, CTX64, CTX32 } from '../../src/xg/context';
import { guestIntegrity } from '../../src/simIntegrity';

function rip(stub: Stub, vcpu: number, width: 32 | 64 = 64): bigint {
  const ctx = stub.xc.getVcpuContext(stub.domid, vcpu);
  return readField(ctx, width === 64 ? CTX64 : CTX32, 'rip') ?? 0n;
}

function readGuest(stub: Stub, addr: bigint, len: number): Buffer {
  const b = Buffer.alloc(len);
  stub.xc.guestMemIo(stub.domid, addr, b, false);
  return b;
}


describe('gdb end-to-end on the simulated Xen', function () {
  this.timeout(60000);
  let stub: Stub;

  before(function () {
    if (spawnSync('gdb', ['--version']).status !== 0) throw new Error('gdb is not installed (.ci/run installs it: apt-get install gdb)');
  });
  afterEach(async () => {
    await stub?.close();
  });

  it('lists every VCPU as a thread, named, numbered from 1', async () => {
    stub = await startStub({ vcpus: 3 });
    const r = await gdbBatch([...connect(stub), 'info threads', 'detach']);
    assert.strictEqual(r.code, 0, r.stderr);
    for (let v = 0; v < 3; v++) assert.match(r.stdout, new RegExp(`Thread 1\\.${v + 1} "VCPU ${v}"`), r.stdout);
    assert.doesNotMatch(r.stdout, /Thread 1\.4/);
  });

  it('lists all of a 16-VCPU guest (thread ids and cores past 9)', async () => {
    stub = await startStub({ vcpus: 16 });
    const r = await gdbBatch([...connect(stub), 'info threads', 'thread 16', 'p $pc', 'detach']);
    assert.strictEqual(r.code, 0, r.stderr);
    for (let v = 0; v < 16; v++) assert.match(r.stdout, new RegExp(`Thread 1\\.${v + 1} "VCPU ${v}"`), `VCPU ${v}`);
    assert.match(r.stdout, /Switching to thread 16 \(Thread 1\.16\)/);
  });

  it('shows amd64 registers including segments, fs_base/gs_base and control registers', async () => {
    stub = await startStub();
    const r = await gdbBatch([...connect(stub), 'info registers', 'p/x $cr3', 'p $cr0', 'detach']);
    assert.strictEqual(r.code, 0, r.stderr);
    for (const reg of ['rip', 'rsp', 'eflags', 'cs', 'ss', 'fs_base', 'gs_base', 'cr0', 'cr3', 'cr4']) assert.match(r.stdout, new RegExp(`^${reg}\\s+0x`, 'm'), reg);
    const ctx = stub.xc.getVcpuContext(stub.domid, 0);
    const cr3 = readField(ctx, CTX64, 'cr3') ?? 0n;
    assert.match(r.stdout, new RegExp(`\\$1 = 0x${cr3.toString(16)}\\b`));
    assert.match(r.stdout, /\$2 = \[ PE .*PG \]/);
  });

  it('shows i386 registers for a 32-bit guest', async () => {
    stub = await startStub({ width: 32 });
    const r = await gdbBatch([...connect(stub), 'info registers', 'p $pc', 'detach']);
    assert.strictEqual(r.code, 0, r.stderr);
    for (const reg of ['eax', 'ecx', 'esp', 'eip', 'eflags', 'cs', 'cr0', 'cr3']) assert.match(r.stdout, new RegExp(`^${reg}\\s+0x`, 'm'), reg);
    assert.doesNotMatch(r.stdout, /^rip/m);
    // The guest runs again after gdb detaches, so compare gdb's $pc with its own eip line.
    const eip = /^eip\s+(0x[0-9a-f]+)/m.exec(r.stdout);
    assert.ok(eip);
    assert.match(r.stdout, new RegExp(`\\$1 = \\(void \\(\\*\\)\\(\\)\\) ${eip[1]}`));
  });

  it('reads a known string with x/s', async () => {
    stub = await startStub();
    const r = await gdbBatch([...connect(stub), 'x/s &demo_banner', 'detach']);
    assert.strictEqual(r.code, 0, r.stderr);
    assert.match(r.stdout, /<demo_banner>:\s+"Xen gdbsx demo guest: hello from the simulated hypervisor"/);
  });

  it('breaks at a function on the right thread, steps over it, and continues', async () => {
    stub = await startStub({ vcpus: 2 });
    const sym = symbols(stub.image);
    const tick = sym.get('demo_tick');
    assert.ok(tick);
    const r = await gdbBatch([...connect(stub), 'break demo_tick', 'continue', 'p $pc', 'info threads', 'continue', 'p $pc', 'detach']);
    assert.strictEqual(r.code, 0, r.stderr);
    const hits = [...r.stdout.matchAll(/Thread (\d+) "VCPU (\d+)" hit Breakpoint 1, (0x[0-9a-f]+ in )?demo_tick/g)];
    assert.strictEqual(hits.length, 2, r.stdout);
    for (const h of hits) assert.strictEqual(Number(h[1]), Number(h[2]) + 1);
    const pcs = [...r.stdout.matchAll(/\$\d+ = \(void \(\*\)\(\)\) (0x[0-9a-f]+) <demo_tick>/g)];
    assert.strictEqual(pcs.length, 2, r.stdout);
    for (const p of pcs) assert.strictEqual(BigInt(p[1]), tick);
    // The current thread in `info threads` is the one that hit.
    assert.match(r.stdout, /^\* \d+\s+Thread 1\.\d+ "VCPU \d+" .*demo_tick/m);
  });

  it('hbreak: a hardware breakpoint stops on the right thread; detach clears the debug registers', async () => {
    stub = await startStub({ vcpus: 2 });
    const work = symbols(stub.image).get('demo_work');
    assert.ok(work);
    // always-inserted: gdb keeps the breakpoint set while stopped, so the monitor lists it.
    const r = await gdbBatch([...connect(stub), 'set breakpoint always-inserted on', 'hbreak demo_work', 'continue', 'p $pc', 'continue', 'p $pc', 'monitor breakpoints', 'detach']);
    assert.strictEqual(r.code, 0, r.stderr);
    const hits = [...r.stdout.matchAll(/Thread (\d+) "VCPU (\d+)" hit Breakpoint 1, .*demo_work/g)];
    assert.strictEqual(hits.length, 2, r.stdout + r.stderr);
    for (const h of hits) assert.strictEqual(Number(h[1]), Number(h[2]) + 1);
    const pcs = [...r.stdout.matchAll(/\$\d+ = \(void \(\*\)\(\)\) (0x[0-9a-f]+) <demo_work>/g)].map((m) => BigInt(m[1]));
    assert.deepStrictEqual(pcs, [work, work]);
    assert.match(r.stderr, /hardware \(debug register\)/);
    await sleep(50);
    const g = guestIntegrity(stub.sim, stub.domid, stub.image);
    assert.ok(g.ok, JSON.stringify(g));
  });

  it('stepi on thread 2 with scheduler-locking on moves only VCPU 1', async () => {
    stub = await startStub({ vcpus: 3 });
    const r1 = await gdbBatch([...connect(stub), 'thread 2', 'set scheduler-locking on', 'p/x $pc', 'stepi', 'p/x $pc', 'stepi', 'p/x $pc', 'info threads']);
    // gdb -batch detaches when it ends (qAttached=1); before that, look at all VCPUs in the MI test below.
    assert.strictEqual(r1.code, 0, r1.stderr);
    const pcs = [...r1.stdout.matchAll(/\$\d+ = (0x[0-9a-f]+)/g)].map((m) => BigInt(m[1]));
    assert.strictEqual(pcs.length, 3, r1.stdout);
    assert.notStrictEqual(pcs[0], pcs[1]);
    assert.notStrictEqual(pcs[1], pcs[2]);
    assert.match(r1.stdout, /^\* 2\s+Thread 1\.2 "VCPU 1"/m);
  });

  it('MI: stepi on thread 2 under scheduler-locking leaves the other VCPUs exactly where they were', async () => {
    stub = await startStub({ vcpus: 3 });
    const mi = new MiClient();
    try {
      await mi.cmd(`-file-exec-and-symbols ${stub.image}`);
      assert.strictEqual((await mi.cmd(`-target-select remote 127.0.0.1:${stub.port}`)).cls, 'connected');
      await mi.cmd('-gdb-set scheduler-locking on');
      const before = [0, 1, 2].map((v) => rip(stub, v));
      const since = mi.asyncRecords.length;
      assert.strictEqual((await mi.cmd('-exec-step-instruction --thread 2')).cls, 'running');
      const stopped = (await mi.waitAsync(/^\*stopped/, since, 20000)).line;
      assert.match(stopped, /thread-id="2"/);
      const after = [0, 1, 2].map((v) => rip(stub, v));
      assert.strictEqual(after[0], before[0], 'VCPU 0 must not move');
      assert.strictEqual(after[2], before[2], 'VCPU 2 must not move');
      assert.notStrictEqual(after[1], before[1], 'VCPU 1 must have stepped');
      const regs = await mi.cmd('-data-list-register-values --thread 2 x 16');
      assert.match(regs.text, new RegExp(`number="16",value="0x${after[1].toString(16)}"`));
      await mi.cmd('-target-detach');
    } finally {
      await mi.quit();
    }
  });

  it('MI: interrupt (Ctrl-C) stops a running guest with SIGINT, and continue/interrupt repeats', async () => {
    stub = await startStub({ vcpus: 2 });
    const mi = new MiClient();
    try {
      await mi.cmd(`-file-exec-and-symbols ${stub.image}`);
      await mi.cmd('-gdb-set mi-async on');
      await mi.cmd(`-target-select remote 127.0.0.1:${stub.port}`);
      const counter = symbols(stub.image).get('demo_counter');
      assert.ok(counter);
      for (let round = 0; round < 2; round++) {
        const c0 = readGuest(stub, counter, 8).readBigUInt64LE();
        const since = mi.asyncRecords.length;
        assert.strictEqual((await mi.cmd('-exec-continue')).cls, 'running');
        await sleep(300);
        assert.ok(readGuest(stub, counter, 8).readBigUInt64LE() > c0, 'the guest runs after -exec-continue');
        await mi.cmd('-exec-interrupt');
        const stopped = (await mi.waitAsync(/^\*stopped/, since, 10000)).line;
        assert.match(stopped, /reason="signal-received",signal-name="SIGINT"/);
        const c1 = readGuest(stub, counter, 8).readBigUInt64LE();
        await sleep(100);
        assert.strictEqual(readGuest(stub, counter, 8).readBigUInt64LE(), c1, 'the guest is stopped');
      }
      await mi.cmd('-target-detach');
    } finally {
      await mi.quit();
    }
  });

  it('detach leaves the guest running with its memory byte-for-byte as before; reconnecting works', async () => {
    stub = await startStub({ vcpus: 2 });
    const sym = symbols(stub.image);
    const tick = sym.get('demo_tick');
    const work = sym.get('demo_work');
    const counter = sym.get('demo_counter');
    assert.ok(tick && work && counter);
    const textStart = (tick < work ? tick : work) & ~0xfffn;
    const before = readGuest(stub, textStart, 4096);
    const r = await gdbBatch([...connect(stub), 'break demo_tick', 'break demo_work', 'continue', 'continue', 'stepi', 'detach']);
    assert.strictEqual(r.code, 0, r.stderr);
    assert.match(r.stdout, /hit Breakpoint/);
    assert.deepStrictEqual(readGuest(stub, textStart, 4096), before, 'text differs after detach');
    const info = stub.xc.getDomainInfo(stub.domid);
    assert.strictEqual(info.paused, false, 'the domain must not be left paused');
    const c0 = readGuest(stub, counter, 8).readBigUInt64LE();
    await sleep(200);
    assert.ok(readGuest(stub, counter, 8).readBigUInt64LE() > c0, 'the guest runs after detach');
    // A second session on the same stub.
    const r2 = await gdbBatch([...connect(stub), 'break demo_rare', 'continue', 'bt 1', 'detach']);
    assert.strictEqual(r2.code, 0, r2.stderr);
    assert.match(r2.stdout, /hit Breakpoint 1, .*demo_rare/);
    assert.deepStrictEqual(readGuest(stub, textStart, 4096), before);
  });

  it('monitor commands: help, vcpus, pgd3', async () => {
    stub = await startStub({ vcpus: 2 });
    const r0 = await gdbBatch([...connect(stub), 'monitor help', 'monitor vcpus', 'monitor domain', 'monitor pgd3 0', 'monitor pgd3 zz', 'detach']);
    assert.strictEqual(r0.code, 0, r0.stderr);
    // gdb prints the stub's console output on its stderr.
    const r = { stdout: r0.stdout + r0.stderr };
    assert.match(r.stdout, /pgd3 <hex>/);
    assert.match(r.stdout, /^\s+0\s+1\s+0x[0-9a-f]{16}/m);
    assert.match(r.stdout, /domain 1: PV 64-bit guest/);
    assert.match(r.stdout, /pgd3 off/);
    assert.match(r.stdout, /Invalid pgd3 value 'zz'/);
  });

  it('monitor pgd3 on a 64-bit guest is refused, and memory reads keep working', async () => {
    stub = await startStub({ vcpus: 2 });
    const r0 = await gdbBatch([...connect(stub), 'monitor pgd3 0x1000', 'x/s &demo_banner', 'monitor domain', 'detach']);
    assert.strictEqual(r0.code, 0, r0.stderr);
    const out = r0.stdout + r0.stderr;
    assert.match(out, /pgd3 refused: this guest is 64-bit; pgd3 .* is only for 32-bit PAE guests' module addresses/);
    assert.match(out, /<demo_banner>:\s+"Xen gdbsx demo guest: hello from the simulated hypervisor"/);
    assert.match(out, /pgd3: off/);
  });

  it('reads partly unmapped memory up to the fault, then reports the exact address', async () => {
    stub = await startStub();
    // The first unmapped page after the kernel image's mapping (the 2 MiB boundary after _end).
    const hole = stub.sim.layout(stub.domid).mappedEnd;
    const r = await gdbBatch([...connect(stub), `x/8xb ${hole - 4n}`, 'detach']);
    assert.match(r.stdout + r.stderr, new RegExp(`Cannot access memory at address 0x${hole.toString(16)}`));
    assert.match(r.stdout, new RegExp(`0x${(hole - 4n).toString(16)}.*:\\s+0x[0-9a-f]{2}\\s+0x[0-9a-f]{2}\\s+0x[0-9a-f]{2}\\s+0x[0-9a-f]{2}`));
  });
});

describe('gdbsx -c (context dump)', function () {
  this.timeout(30000);
  it('prints every VCPU context of the simulated guest', () => {
    const bin = path.resolve(__dirname, '..', '..', '..', 'bin', 'gdbsx');
    const out = execFileSync(process.execPath, [bin, '--sim', '--sim-vcpus', '2', '-c', '1', '64'], { encoding: 'utf8' });
    assert.match(out, /^domain 1: PV 64-bit, 2 VCPU\(s\)/);
    assert.match(out, /^vcpu 0:$/m);
    assert.match(out, /^vcpu 1:$/m);
    assert.match(out, /rip\s+0xffffffff81[0-9a-f]{6}/);
    assert.match(out, /cr3 0x[0-9a-f]{16}/);
    assert.match(out, /cs e033/);
  });
});
