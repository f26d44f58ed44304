// The bench's raw RSP figure (bench/transport.ts rawRsp) on the simulated Xen: it must
// read the stub's run-length encoded PacketSize (PacketSize=40*!) right, or its chunks
// shrink to 32 bytes and the figure measures something else.
import assert from 'assert';
import { startStub, Stub, symbols } from '../e2e/harness';
import { rawRsp } from '../../bench/transport';
import { PACKET_SIZE } from '../../src/gx/reply';

describe('bench rawRsp (shared RSP client) on the simulated Xen', function () {
  this.timeout(30000);
  let stub: Stub;

  beforeEach(async () => {
    stub = await startStub({ vcpus: 2 });
  });
  afterEach(async () => {
    await stub?.close();
  });

  it('reads in chunks of half the advertised PacketSize and decodes what it asked for', async () => {
    const addr = symbols(stub.image).get('_text');
    assert.ok(addr !== undefined);
    const bytes = 16384;
    const r = await rawRsp(stub.port, addr, bytes, 2, 1);
    assert.strictEqual(r.chunk, Math.min(bytes, PACKET_SIZE / 2));
    assert.strictEqual(r.qcMs.length, 10);
    assert.strictEqual(r.m1Ms.length, 10);
    assert.strictEqual(r.readMiBps.length, 1);
  });
});
