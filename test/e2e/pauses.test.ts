// An administrator's pause (`xl pause`) is theirs (issue 10, item 3): continue undoes
// only the debugger's pauses (and, on the gdbsx path, its traps'), gdb is told the
// domain is paused by someone else, and detach leaves their pause in place.
import assert from 'assert';
import { startStub, Stub, sleep } from './harness';
import { RspClient } from '../support/rspClient';
import { frame } from '../../src/gx/packet';

const TARGETS = [
  { name: 'gdbsx build, PV', o: {} },
  { name: 'stock Xen, PVH on AMD (monitor ring)', o: { type: 'pvh' as const, xen: { gdbsx: false, mtf: false } } },
  { name: 'stock Xen, PVH on Intel (monitor ring, MTF)', o: { type: 'pvh' as const, xen: { gdbsx: false, mtf: true } } },
  { name: 'stock Xen, PV (pause only)', o: { type: 'pv' as const, xen: { gdbsx: false } } },
];

function pauses(stub: Stub): number {
  return stub.sim.domainState(stub.domid).controllerPauseCount;
}

function ran(stub: Stub): number {
  return stub.sim.domainState(stub.domid).instructions.reduce((a, b) => a + b, 0);
}

async function runs(stub: Stub): Promise<boolean> {
  const before = ran(stub);
  await sleep(100);
  return ran(stub) > before;
}

/** The stop reply after any console packets; the console text too. */
async function stopReply(c: RspClient): Promise<{ stop: string; said: string }> {
  let said = '';
  for (;;) {
    const p = await c.readPacket();
    if (!p.startsWith('O') || p === 'OK') return { stop: p, said };
    said += Buffer.from(p.slice(1), 'hex').toString('utf8');
  }
}

async function cont(c: RspClient): Promise<{ stop: string; said: string }> {
  c.writeRaw(frame(Buffer.from('vCont;c')));
  return stopReply(c);
}

for (const target of TARGETS) describe(`an admin's pause stays theirs (${target.name})`, function () {
  this.timeout(30000);
  let stub: Stub;
  afterEach(async () => stub.close());

  it('xl pause while gdb holds it stopped: continue does not undo it and says so; after xl unpause, continue runs it', async () => {
    stub = await startStub({ vcpus: 2, ...target.o });
    const c = await RspClient.session(stub.port);
    stub.xc.pauseDomain(stub.domid); // `xl pause`
    assert.strictEqual(pauses(stub), 2, 'ours + theirs');
    const r = await cont(c);
    assert.match(r.stop, /^T02/, 'continue ends at once: the domain cannot run');
    assert.match(r.said, /paused by someone else \(xl pause\).*xl unpause 1/);
    assert.strictEqual(pauses(stub), 2, 'their pause is still there, and ours');
    assert.ok(!(await runs(stub)), 'the guest stays paused');
    // Again: still told, still paused.
    const r2 = await cont(c);
    assert.match(r2.said, /paused by someone else/);
    assert.strictEqual(pauses(stub), 2);
    stub.xc.unpauseDomain(stub.domid); // `xl unpause`
    c.writeRaw(frame(Buffer.from('vCont;c')));
    await sleep(50);
    assert.ok(await runs(stub), 'runs once they unpaused it');
    c.writeRaw(Buffer.from([3]));
    assert.match((await stopReply(c)).stop, /^T02/);
    assert.strictEqual(await c.request('D'), 'OK');
    c.close();
    for (let i = 0; i < 100 && stub.server.activeSession; i++) await sleep(10);
    assert.strictEqual(pauses(stub), 0, 'detached: no pause left');
    assert.ok(await runs(stub));
  });

  it('xl pause while the guest runs: reported as a stop; continue keeps it paused; detach leaves their pause alone', async () => {
    stub = await startStub({ vcpus: 2, ...target.o });
    const c = await RspClient.session(stub.port);
    c.writeRaw(frame(Buffer.from('vCont;c')));
    await sleep(50);
    stub.xc.pauseDomain(stub.domid);
    const r = await stopReply(c);
    assert.match(r.stop, /^T02/);
    assert.match(r.said, /was paused by someone else \(xl pause\)/);
    const r2 = await cont(c);
    assert.match(r2.said, /is paused by someone else/);
    assert.ok(!(await runs(stub)), 'continue did not undo their pause');
    assert.strictEqual(await c.request('D'), 'OK');
    c.close();
    for (let i = 0; i < 100 && stub.server.activeSession; i++) await sleep(10);
    assert.strictEqual(pauses(stub), 1, 'detached: their pause stays, ours are gone');
    assert.ok(!(await runs(stub)));
    stub.xc.unpauseDomain(stub.domid);
    assert.ok(await runs(stub), 'their unpause lets it run');
  });

  it('a domain already paused when gdb comes (xl create -p) stays paused by its owner', async () => {
    stub = await startStub({ vcpus: 2, ...target.o });
    stub.xc.pauseDomain(stub.domid);
    const c = await RspClient.session(stub.port);
    const r = await cont(c);
    assert.match(r.said, /paused by someone else/);
    stub.xc.unpauseDomain(stub.domid);
    c.writeRaw(frame(Buffer.from('vCont;c')));
    await sleep(50);
    assert.ok(await runs(stub));
    c.writeRaw(Buffer.from([3]));
    await stopReply(c);
    assert.strictEqual(await c.request('D'), 'OK');
    c.close();
    for (let i = 0; i < 100 && stub.server.activeSession; i++) await sleep(10);
    assert.strictEqual(pauses(stub), 0);
  });

  if (target.name.includes('pause only')) return; // no breakpoints there
  it('stopped at a breakpoint, then xl pause: continue leaves it paused; after xl unpause, the next hit comes', async () => {
    stub = await startStub({ vcpus: 2, ...target.o });
    const c = await RspClient.session(stub.port);
    const tick = stub.sim.symbol(stub.domid, 'demo_tick');
    assert.strictEqual(await c.request(`Z0,${tick.toString(16)},1`), 'OK');
    for (let i = 0; i < 3; i++) assert.match((await cont(c)).stop, /^T05.*swbreak/, `hit ${i}`);
    stub.xc.pauseDomain(stub.domid);
    const before = ran(stub);
    // Hits of other VCPUs that came before their pause are reported first (without running).
    let r = await cont(c);
    for (let i = 0; i < 4 && /^T05/.test(r.stop); i++) r = await cont(c);
    assert.match(r.said, /paused by someone else/, r.stop);
    assert.match(r.stop, /^T02/);
    // Step too: nothing runs while their pause holds.
    c.writeRaw(frame(Buffer.from('vCont;s')));
    const s = await stopReply(c);
    assert.match(s.said, /paused by someone else/, s.stop);
    assert.strictEqual(ran(stub), before, 'no instruction ran');
    stub.xc.unpauseDomain(stub.domid);
    for (let i = 0; i < 3; i++) assert.match((await cont(c)).stop, /^T05.*swbreak/, `hit after unpause ${i}`);
    assert.strictEqual(await c.request(`z0,${tick.toString(16)},1`), 'OK');
    assert.strictEqual(await c.request('D'), 'OK');
    c.close();
    for (let i = 0; i < 100 && stub.server.activeSession; i++) await sleep(10);
    assert.strictEqual(pauses(stub), 0, 'no pause left: the traps\' pauses were ours to undo');
    assert.ok(await runs(stub));
  });
});
