// The guest's own int3s (issue 10, item 2): with a debugger attached on a CONFIG_GDBSX
// hypervisor, Xen hands every guest-kernel int3 to us, Linux's own included (text
// patching for static keys, jump labels, ftrace). None may reach gdb, and none may
// livelock the guest: it handles them as it would with no debugger attached.
import assert from 'assert';
import { startStub, Stub, sleep, symbols } from './harness';
import { RspClient } from '../support/rspClient';
import { frame } from '../../src/gx/packet';
import { guestIntegrity } from '../../src/simIntegrity';

async function stopReply(c: RspClient, timeoutMs = 10000): Promise<string> {
  for (;;) {
    const p = await c.readPacket(timeoutMs);
    if (!p.startsWith('O') || p === 'OK') return p;
  }
}

function counter(stub: Stub): bigint {
  return stub.sim.readVirt(stub.domid, stub.sim.symbol(stub.domid, 'demo_counter'), 8).readBigUInt64LE();
}

const TARGETS = [
  { name: 'gdbsx build, PV', o: {} },
  { name: 'gdbsx build, PVH', o: { type: 'pvh' as const } },
];

for (const target of TARGETS) describe(`the guest's own int3s never reach gdb (${target.name})`, function () {
  this.timeout(120000);
  let stub: Stub;
  let stopPoke: () => void = () => undefined;
  afterEach(async () => {
    stopPoke();
    await stub.close();
  });

  async function patching(): Promise<{ c: RspClient; stats: { patches: number; waits: number } }> {
    stub = await startStub({ vcpus: 2, guestTrapHandlers: true, ...target.o });
    // Linux patching a hot instruction (demo_tick's incq) over and over, VCPU 0 patching.
    const site = (symbols(stub.image).get('demo_tick') as bigint) + 7n;
    const { loop, stop } = stub.sim.textPokeLoop(stub.domid, site, { len: 4, patcher: 0, gap: 2 });
    stopPoke = stop;
    const c = await RspClient.session(stub.port);
    return { c, stats: loop.stats };
  }

  it('a breakpoint soak while the guest patches its code: every stop is our breakpoint, and the patches go on', async () => {
    const { c, stats } = await patching();
    // demo_rare: every 64th round; a hotter one lets VCPU 0 hit it before VCPU 1 gets its first quantum of a slice.
    const work = stub.sim.symbol(stub.domid, 'demo_rare');
    assert.strictEqual(await c.request(`Z0,${work.toString(16)},1`), 'OK');
    const before = stats.patches;
    for (let i = 0; i < 150; i++) {
      c.writeRaw(frame(Buffer.from('vCont;c')));
      const r = await stopReply(c);
      assert.match(r, /^T05.*swbreak/, `stop ${i} is not our breakpoint: ${r}`);
      const thread = (/thread:([^;]+);/.exec(r) as RegExpExecArray)[1];
      assert.strictEqual(await c.request(`Hg${thread}`), 'OK');
      const rip = Buffer.from(await c.request('p10'), 'hex').readBigUInt64LE();
      assert.strictEqual(rip, work, `stop ${i} at 0x${rip.toString(16)}`);
      // Step over it as gdb does: out, one step of that thread, back in.
      assert.strictEqual(await c.request(`z0,${work.toString(16)},1`), 'OK');
      c.writeRaw(frame(Buffer.from(`vCont;s:${thread}`)));
      assert.match(await stopReply(c), /^T05/, `step over, stop ${i}`);
      assert.strictEqual(await c.request(`Z0,${work.toString(16)},1`), 'OK');
    }
    assert.ok(stats.patches > before, `the guest's patching made progress (${stats.patches - before} patches, ${stats.waits} waits, ${JSON.stringify(stub.sim.domainState(stub.domid))})`);
    // monitor xen counts them (console packets, then OK).
    c.writeRaw(frame(Buffer.from(`qRcmd,${Buffer.from('xen').toString('hex')}`)));
    let said = '';
    for (let p = await c.readPacket(); p !== 'OK'; p = await c.readPacket()) said += Buffer.from(p.slice(p.startsWith('O') ? 1 : 0), 'hex').toString();
    const n = Number(/guest int3s handled by the guest: (\d+)/.exec(said)?.[1]);
    assert.ok(n > 0, said);
    assert.strictEqual(await c.request(`z0,${work.toString(16)},1`), 'OK');
    assert.strictEqual(await c.request('D'), 'OK');
    c.close();
    for (let i = 0; i < 100 && stub.server.activeSession; i++) await sleep(10);
    stopPoke();
    const g = guestIntegrity(stub.sim, stub.domid, stub.image);
    assert.ok(g.ok, JSON.stringify(g));
    assert.strictEqual(stub.sim.domainState(stub.domid).crashReason, undefined, 'no crash');
  });

  it('an int3 the guest plants and later removes: no stop; the VCPU waits in its handler, then runs the finished instruction', async () => {
    stub = await startStub({ vcpus: 2, guestTrapHandlers: true, ...target.o });
    const c = await RspClient.session(stub.port);
    const tick = stub.sim.symbol(stub.domid, 'demo_tick');
    const rare = stub.sim.symbol(stub.domid, 'demo_rare');
    const finish = stub.sim.guestPatch(stub.domid, tick);
    c.writeRaw(frame(Buffer.from('vCont;c')));
    await sleep(300);
    const c0 = counter(stub);
    await sleep(100);
    assert.strictEqual(counter(stub), c0, 'the VCPUs wait on the int3 (in the guest\'s handler)');
    finish();
    await sleep(100);
    assert.ok(counter(stub) > c0, 'the patch done, they run on');
    c.writeRaw(Buffer.from([3]));
    assert.match(await stopReply(c), /^T02/, 'no stop before our Ctrl-C');
    assert.strictEqual(await c.request(`Z0,${rare.toString(16)},1`), 'OK');
    assert.match(await c.request('vCont;c'), /^T05swbreak:/, 'the guest runs on (no crash)');
    assert.strictEqual(stub.sim.domainState(stub.domid).crashReason, undefined);
  });

  it('continue with no breakpoint while the guest patches: runs until Ctrl-C (SIGINT), no livelock', async () => {
    const { c, stats } = await patching();
    const before = stats.patches;
    const c0 = counter(stub);
    c.writeRaw(frame(Buffer.from('vCont;c')));
    await sleep(1500);
    c.writeRaw(Buffer.from([3]));
    const r = await stopReply(c);
    assert.match(r, /^T02/, `the only stop is our Ctrl-C: ${r}`);
    assert.ok(stats.patches - before > 5, `patches went on (${stats.patches - before})`);
    assert.ok(counter(stub) > c0 + 100n, 'the guest ran');
    assert.strictEqual(await c.request('D'), 'OK');
    c.close();
  });
});
