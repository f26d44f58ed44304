// Reconnects (issue 10, item 1): a connection that comes while the previous session is
// still ending waits for that end and is served; a second debugger while another is
// really attached gets a refusal gdb prints.
import assert from 'assert';
import { startStub, Stub, gdbBatch, gdbConnect, sleep } from './harness';
import { RspClient } from '../support/rspClient';

describe('reconnects', function () {
  this.timeout(120000);
  let stub: Stub;
  beforeEach(async () => {
    stub = await startStub({ vcpus: 2 });
  });
  afterEach(async () => stub.close());

  it('a hundred back-to-back connect / query / close cycles: none refused', async () => {
    const events: string[] = [];
    stub.server.onEvent = (m) => events.push(m);
    for (let i = 0; i < 100; i++) {
      const c = await RspClient.connect(stub.port);
      const sup = await c.request('qSupported:multiprocess+;swbreak+;hwbreak+', 5000);
      assert.match(sup, /PacketSize=/, `cycle ${i}: ${sup}`);
      assert.match(await c.request('?', 5000), /^T/, `cycle ${i}`);
      // Half of them detach first (gdb's `detach`), half just hang up (an IDE restarting).
      if (i % 2 === 0) assert.strictEqual(await c.request('D', 5000), 'OK');
      c.close();
    }
    assert.deepStrictEqual(events.filter((e) => /refused/.test(e)), []);
    for (let i = 0; i < 100 && stub.server.activeSession; i++) await sleep(10);
    assert.strictEqual(stub.sim.domainState(stub.domid).controllerPauseCount, 0, 'detached: running');
  });

  it('gdb connecting while another gdb is attached prints the refusal; the first goes on', async () => {
    const first = await RspClient.session(stub.port);
    const r = await gdbBatch([...gdbConnect(stub), 'info threads'], 30000);
    const out = r.stdout + r.stderr;
    assert.match(out, /Remote failure reply: E\.gdbsx: domain 1 is already being debugged by another connection/, out);
    assert.doesNotMatch(out, /unrecognized item/);
    assert.match(await first.request('?'), /^T/, 'the first session is untouched');
    assert.strictEqual(await first.request('D'), 'OK');
    first.close();
  });

  it('gdb detach then gdb attach again at once, ten times', async () => {
    for (let i = 0; i < 10; i++) {
      const r = await gdbBatch([...gdbConnect(stub), 'info threads', 'detach'], 30000);
      assert.strictEqual(r.code, 0, r.stderr);
      assert.match(r.stdout, /Thread 1\.1/, `round ${i}: ${r.stdout}${r.stderr}`);
      assert.doesNotMatch(r.stdout + r.stderr, /already being debugged/);
    }
  });
});
