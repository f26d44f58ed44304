// Faults with nothing lost (issue: robustness and safety): gdb killed at every
// stage, the stub stopped by a signal, the guest paused/crashed/destroyed by
// someone else, bad command lines, and a soak of continue/breakpoint/step cycles.
import assert from 'assert';
import fs from 'fs';
import path from 'path';
import net from 'net';
import { spawn, execFile } from 'child_process';
import { startStub, Stub, MiClient, sleep, gdbBatch } from './harness';
import { RspClient } from '../support/rspClient';
import { frame } from '../../src/gx/packet';
import { guestIntegrity } from '../../src/simIntegrity';
import { Guest } from '../../src/vcpu/guest';
import { UserError } from '../../src/xg/errors';

const BIN = path.resolve(__dirname, '..', '..', '..', 'bin', 'gdbsx');

async function settled(stub: Stub): Promise<void> {
  // The stub notices a dropped connection asynchronously.
  for (let i = 0; i < 100 && stub.server.activeSession; i++) await sleep(10);
  await sleep(20);
}

function assertIntact(stub: Stub, what: string): void {
  const g = guestIntegrity(stub.sim, stub.domid, stub.image);
  assert.ok(g.ok, `${what}: ${JSON.stringify(g)}`);
}

function counter(stub: Stub): bigint {
  return stub.sim.readVirt(stub.domid, stub.sim.symbol(stub.domid, 'demo_counter'), 8).readBigUInt64LE();
}

async function assertRuns(stub: Stub, what: string): Promise<void> {
  const c0 = counter(stub);
  await sleep(100);
  assert.ok(counter(stub) > c0, `${what}: the guest is not running`);
}

/** The hypervisors and guest types whose run-control paths the fault tests cover. */
const TARGETS = [
  { name: 'gdbsx build, PV', o: {} },
  { name: 'stock Xen, PVH on AMD (monitor ring, TF steps)', o: { type: 'pvh' as const, xen: { gdbsx: false, mtf: false } } },
  { name: 'stock Xen, PVH on Intel (monitor ring, MTF steps)', o: { type: 'pvh' as const, xen: { gdbsx: false, mtf: true } } },
];

for (const target of TARGETS) describe(`faults: gdb or the connection dies at any stage (${target.name})`, function () {
  this.timeout(30000);
  let stub: Stub;
  beforeEach(async () => {
    stub = await startStub({ vcpus: 2, ...target.o });
  });
  afterEach(async () => stub.close());

  async function stoppedAtBreakpoint(): Promise<RspClient> {
    const c = await RspClient.session(stub.port);
    for (const f of ['demo_tick', 'demo_work', 'demo_rare']) assert.strictEqual(await c.request(`Z0,${stub.sim.symbol(stub.domid, f).toString(16)},1`), 'OK');
    assert.match(await c.request('vCont;c'), /^T05swbreak/);
    return c;
  }

  it('while the guest runs', async () => {
    const c = await stoppedAtBreakpoint();
    c.writeRaw(frame(Buffer.from('vCont;c')));
    await sleep(30);
    c.close();
    await settled(stub);
    assertIntact(stub, 'killed while running');
    await assertRuns(stub, 'killed while running');
  });

  it('while stopped at a breakpoint, breakpoints inserted', async () => {
    const c = await stoppedAtBreakpoint();
    c.close();
    await settled(stub);
    assertIntact(stub, 'killed at a breakpoint');
    await assertRuns(stub, 'killed at a breakpoint');
  });

  it('mid-step (trap flag set, other VCPUs held)', async () => {
    const c = await stoppedAtBreakpoint();
    c.writeRaw(Buffer.concat([frame(Buffer.from('vCont;s:1')), frame(Buffer.from('vCont;s:2'))]));
    c.close();
    await settled(stub);
    assertIntact(stub, 'killed mid-step');
    await assertRuns(stub, 'killed mid-step');
  });

  it('mid-packet', async () => {
    const c = await stoppedAtBreakpoint();
    c.writeRaw('$m' + 'f'.repeat(8) + ',4');
    c.close();
    await settled(stub);
    assertIntact(stub, 'killed mid-packet');
    await assertRuns(stub, 'killed mid-packet');
  });

  it('a real gdb killed with SIGKILL while stopped at a breakpoint, then while running', async () => {
    for (const running of [false, true]) {
      const mi = new MiClient();
      await mi.cmd(`-file-exec-and-symbols ${stub.image}`);
      await mi.cmd('-gdb-set mi-async on');
      await mi.cmd(`-target-select remote 127.0.0.1:${stub.port}`);
      await mi.cmd('-break-insert demo_tick');
      await mi.cmd('-break-insert demo_work');
      const since = mi.asyncRecords.length;
      await mi.cmd('-exec-continue');
      await mi.waitAsync(/^\*stopped,reason="breakpoint-hit"/, since, 10000);
      if (running) {
        await mi.cmd('-break-delete');
        await mi.cmd('-exec-continue');
        await sleep(50);
      }
      mi.kill();
      await settled(stub);
      assertIntact(stub, `gdb SIGKILLed ${running ? 'while running' : 'at a breakpoint'}`);
      await assertRuns(stub, 'after gdb died');
    }
  });
});

describe('faults: the guest changes under the debugger', function () {
  this.timeout(30000);
  let stub: Stub;
  beforeEach(async () => {
    stub = await startStub({ vcpus: 2 });
  });
  afterEach(async () => stub.close());

  async function running(): Promise<RspClient> {
    const c = await RspClient.session(stub.port);
    c.writeRaw(frame(Buffer.from('vCont;c')));
    await sleep(50);
    return c;
  }

  it('xl pause from outside is reported as a stop; continue resumes once they unpause (pauses.test.ts has the rest)', async () => {
    const c = await running();
    stub.xc.pauseDomain(stub.domid); // what `xl pause` does
    const stop = await c.readPacket();
    assert.match(stop, /^O/, 'a console message says who paused it');
    assert.match(await c.readPacket(), /^T02thread:/);
    stub.xc.unpauseDomain(stub.domid); // `xl unpause`: their pause was theirs to undo
    c.writeRaw(frame(Buffer.from('vCont;c')));
    await sleep(50);
    await assertRuns(stub, 'after continue');
    c.writeRaw(Buffer.from([3]));
    assert.match(await c.readPacket(), /^T02/);
    assert.strictEqual(await c.request('D'), 'OK');
    c.close();
    await settled(stub);
    assertIntact(stub, 'after xl pause + detach');
  });

  it('a crash is a SIGSEGV stop with the state kept for inspection; continuing reports it cannot run', async () => {
    const c = await running();
    stub.sim.shutdownDomain(stub.domid, 'crash', 'test crash');
    let r = await c.readPacket();
    while (r.startsWith('O')) r = await c.readPacket();
    assert.match(r, /^T0bthread:/);
    assert.match(await c.request('g'), /^[0-9a-f]+$/, 'registers of the crashed guest are readable');
    assert.match(await c.request(`m${stub.sim.symbol(stub.domid, 'demo_banner').toString(16)},4`), /^[0-9a-f]{8}$/);
    c.writeRaw(frame(Buffer.from('vCont;c')));
    r = await c.readPacket();
    while (r.startsWith('O')) r = await c.readPacket();
    assert.match(r, /^X0b;process:1$/);
    c.close();
  });

  it('destroyed while running: X09 (killed), and the stub keeps serving', async () => {
    const c = await running();
    stub.sim.destroyDomain(stub.domid);
    let r = await c.readPacket();
    while (r.startsWith('O')) r = await c.readPacket();
    assert.match(r, /^X09;process:1$/);
    c.close();
    await settled(stub);
    // A new connection gets a clear refusal (the domain is gone), not a hang.
    const c2 = await RspClient.connect(stub.port);
    assert.match(await c2.request('qSupported', 5000), /^E\.gdbsx: cannot attach to domain 1: domain 1 does not exist/);
  });

  it('powered off while running: W00', async () => {
    const c = await running();
    stub.sim.shutdownDomain(stub.domid, 'poweroff');
    let r = await c.readPacket();
    while (r.startsWith('O')) r = await c.readPacket();
    assert.match(r, /^W00;process:1$/);
    c.close();
  });

  it('refuses dom0 and a domain that does not exist', () => {
    assert.throws(() => Guest.attach(stub.xc, 0), (e: Error) => e instanceof UserError && /dom0/.test(e.message));
    assert.throws(() => Guest.attach(stub.xc, 42), (e: Error) => e instanceof UserError && /domain 42 does not exist/.test(e.message));
    assert.strictEqual(stub.sim.domainState(stub.domid).controllerPauseCount, 0);
  });
});

function runCli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, timeout: 20000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr });
    });
  });
}

describe('faults: the stub itself', function () {
  this.timeout(30000);

  for (const [sig, extra] of [['SIGINT', []], ['SIGTERM', []], ['SIGTERM', ['--sim-type', 'pvh', '--sim-xen', 'stock-amd']], ['SIGHUP', ['--sim-type', 'pvh', '--sim-xen', 'stock-intel']]] as const) {
    it(`${sig} to the stub ${extra.join(' ')} while gdb holds the guest at a breakpoint: clean restore, then exit`, async () => {
      const p = spawn(process.execPath, [BIN, '--sim', '--port', '0', ...extra], { env: { ...process.env, GDBSX_SIM_EXIT_REPORT: '1' } });
      let out = '';
      p.stdout.on('data', (d: Buffer) => (out += d.toString()));
      for (let i = 0; i < 200 && !/listening on 127\.0\.0\.1:(\d+)/.test(out); i++) await sleep(25);
      const port = Number(/listening on 127\.0\.0\.1:(\d+)/.exec(out)?.[1]);
      const image = path.resolve(__dirname, '..', '..', '..', 'guest', 'build', 'demo64.elf');
      const r = gdbBatch(['set confirm off', `file ${image}`, `target remote 127.0.0.1:${port}`, 'break demo_tick', 'break demo_work', 'continue', 'shell sleep 3']);
      for (let i = 0; i < 200 && !/hit Breakpoint|sim-exit/.test(out); i++) await sleep(25);
      await sleep(300);
      const exited = new Promise<number | null>((resolve) => p.on('exit', (code) => resolve(code)));
      p.kill(sig);
      assert.strictEqual(await exited, 0);
      const rep = /sim-exit-report (.*)/.exec(out);
      assert.ok(rep, out);
      const g = JSON.parse(rep[1]) as { ok: boolean };
      assert.ok(g.ok, rep[1]);
      await r;
    });
  }

  it('bad command lines and environments give one clear message and a non-zero exit', async () => {
    const cases: [string[], RegExp, number][] = [
      [[], /give a domain/, 2],
      [['-a', '5'], /give a TCP port/, 2],
      [['-a', 'x', '1234'], /domain|number/i, 2],
      [['-a', '5', '64', 'notaport'], /invalid port 'notaport'/, 2],
      [['-a', '5', '70000'], /invalid port/, 2],
      [['-a', '5', '--bogus', '1234'], /Unknown argument/i, 2],
      [['-a', '5', '1234'], /no \/dev\/xen\/privcmd: this is not a Xen dom0/, 1],
      [['--sim', '-a', '0', '1234'], /refusing to attach to dom0/, 1],
    ];
    for (const [args, re, code] of cases) {
      const r = await runCli(args);
      assert.strictEqual(r.code, code, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, re, args.join(' '));
      assert.ok(r.stderr.trim().split('\n')[0].startsWith('gdbsx: '), r.stderr);
    }
  });

  it('a port already in use is reported plainly', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', () => resolve()));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      const r = await runCli(['--sim', '-a', '1', String(port)]);
      assert.strictEqual(r.code, 1);
      assert.match(r.stderr, new RegExp(`port ${port} is already in use`));
    } finally {
      blocker.close();
    }
  });
});

describe('soak: continue -> breakpoint -> step cycles', function () {
  this.timeout(300000);
  const CYCLES = Number(process.env.SOAK_CYCLES ?? 10000);

  for (const target of TARGETS) it(`${target.name}: ${CYCLES} cycles with no lost stop and no growth in memory or file descriptors`, async () => {
    const stub = await startStub({ vcpus: 2, ...target.o });
    try {
      const c = await RspClient.session(stub.port);
      const tick = stub.sim.symbol(stub.domid, 'demo_tick').toString(16);
      const fds = () => fs.readdirSync('/proc/self/fd').length;
      let fd0 = 0;
      let heap0 = 0;
      for (let i = 0; i < CYCLES; i++) {
        if (i === 200) {
          global.gc?.();
          fd0 = fds();
          heap0 = process.memoryUsage().heapUsed;
        }
        assert.strictEqual(await c.request(`Z0,${tick},1`), 'OK');
        const stop = await c.request('vCont;c', 10000);
        const m = /^T05swbreak:;thread:p1\.(\d+);/.exec(stop);
        assert.ok(m, `cycle ${i}: ${stop}`);
        assert.strictEqual(await c.request(`z0,${tick},1`), 'OK');
        assert.match(await c.request(`vCont;s:p1.${m[1]}`, 10000), new RegExp(`^T05thread:p1\\.${m[1]};`), `cycle ${i}`);
      }
      global.gc?.();
      const heapGrowth = process.memoryUsage().heapUsed - heap0;
      assert.ok(fds() <= fd0, `file descriptors grew: ${fd0} -> ${fds()}`);
      assert.ok(heapGrowth < 8 * 1024 * 1024, `heap grew by ${heapGrowth} bytes`);
      assert.strictEqual(await c.request('D'), 'OK');
      c.close();
      await settled(stub);
      assertIntact(stub, 'after the soak');
    } finally {
      await stub.close();
    }
  });
});
