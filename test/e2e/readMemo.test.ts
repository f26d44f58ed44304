// The session's memo of memory-read replies (src/gx/readMemo.ts): a repeated `m` is
// answered without reading again while only reads come, and never outlives a packet
// that may change what it read.
import assert from 'assert';
import { startStub, Stub, symbols, sleep } from './harness';
import { RspClient } from '../support/rspClient';
import { frame } from '../../src/gx/packet';
import { Guest } from '../../src/vcpu/guest';

describe('repeated memory reads (read memo)', function () {
  this.timeout(20000);
  let stub: Stub;
  let c: RspClient;
  let reads = 0;
  const realRead = Guest.prototype.readMemory;

  beforeEach(async () => {
    stub = await startStub({ vcpus: 2 });
    c = await RspClient.session(stub.port);
    reads = 0;
    Guest.prototype.readMemory = function (this: Guest, ...a: Parameters<Guest['readMemory']>) {
      reads++;
      return realRead.apply(this, a);
    };
  });
  afterEach(async () => {
    Guest.prototype.readMemory = realRead;
    c?.close();
    await stub?.close();
  });

  const counter = () => {
    const a = symbols(stub.image).get('demo_counter');
    assert.ok(a);
    return a.toString(16);
  };

  it('answers a repeated read, thread-list updates between, without reading again', async () => {
    const A = counter();
    const first = await c.request(`m${A},4`);
    assert.strictEqual(reads, 1);
    assert.match(await c.request('qXfer:threads:read::0,1000'), /^l<\?xml/);
    assert.strictEqual(await c.request(`m${A},4`), first);
    assert.strictEqual(reads, 1, 'the second read came from the memo');
    // Another address is a read of its own.
    await c.request(`m${A},2`);
    assert.strictEqual(reads, 2);
  });

  it('forgets on a write: M and X show the new bytes', async () => {
    const A = counter();
    await c.request(`m${A},4`);
    assert.strictEqual(await c.request(`M${A},4:11223344`), 'OK');
    assert.strictEqual(await c.request(`m${A},4`), '11223344');
    assert.strictEqual(await c.request(`X${A},1:\x55`), 'OK');
    assert.strictEqual(await c.request(`m${A},4`), '55223344');
  });

  it('forgets when the guest runs', async () => {
    const A = counter();
    const before = await c.request(`m${A},4`);
    c.writeRaw(frame(Buffer.from('vCont;c:p1.-1')));
    await sleep(200); // the demo guest counts its loops in demo_counter
    c.writeRaw(Buffer.from([0x03]));
    assert.match(await c.readPacket(), /^T02/);
    const n = reads;
    const after = await c.request(`m${A},4`);
    assert.strictEqual(reads, n + 1, 'read again after the run');
    assert.notStrictEqual(after, before);
  });

  it('forgets on a thread switch (Hg) and after its time to live', async () => {
    const A = counter();
    await c.request(`m${A},4`);
    assert.strictEqual(await c.request('Hgp1.2'), 'OK');
    await c.request(`m${A},4`);
    assert.strictEqual(reads, 2, 'Hg: read again');
    await sleep(600);
    await c.request(`m${A},4`);
    assert.strictEqual(reads, 3, 'older than its time to live: read again');
  });
});
