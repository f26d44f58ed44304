// xenstore's wire format (src/xs/wire.ts), the client over it, the simulated xenstore
// answering it, and the socket transport over a real unix socket.
import { strict as assert } from 'assert';
import fs from 'fs';
import net from 'net';
import os from 'os';
import path from 'path';
import { XS_HEADER_SIZE, XsError, XsFramer, XsMessage, XsType, decodeMessage, encodeMessage, errorCode, errorReply, payloadStrings, requestPayload } from '../../src/xs/wire';
import { XsClient } from '../../src/xs/client';
import { openXenStore } from '../../src/xs/transport';
import { SimXenStore } from '../../src/xg/sim/xenstore';
import { UserError } from '../../src/xg/errors';

function msg(type: number, payload: Buffer, reqId = 7, txId = 0): XsMessage {
  return { type, reqId, txId, payload };
}

describe('xenstore wire format', () => {
  it('encodes struct xsd_sockmsg little-endian: type, req_id, tx_id, len, then the payload', () => {
    const b = encodeMessage(msg(XsType.read, requestPayload('/local/domain/1/name'), 0x01020304, 5));
    assert.equal(b.length, XS_HEADER_SIZE + 21);
    assert.deepEqual([...b.subarray(0, 16)], [2, 0, 0, 0, 4, 3, 2, 1, 5, 0, 0, 0, 21, 0, 0, 0]);
    assert.equal(b.subarray(16).toString('latin1'), '/local/domain/1/name\0');
  });

  it('round-trips every field, and refuses a message whose length disagrees with its header', () => {
    const m = msg(XsType.directory, Buffer.from('vif\0vbd\0'), 0xfffffffe, 3);
    assert.deepEqual(decodeMessage(encodeMessage(m)), m);
    const b = encodeMessage(m);
    assert.throws(() => decodeMessage(b.subarray(0, b.length - 1)), RangeError);
    assert.throws(() => decodeMessage(Buffer.concat([b, Buffer.alloc(1)])), RangeError);
    assert.throws(() => encodeMessage(msg(XsType.write, Buffer.alloc(4097))), RangeError);
  });

  it('the framer joins messages split anywhere and splits messages sent together', () => {
    const a = encodeMessage(msg(XsType.read, Buffer.from('value-a'), 1));
    const b = encodeMessage(msg(XsType.getDomainPath, Buffer.from('/local/domain/3\0'), 2));
    const all = Buffer.concat([a, b]);
    for (let cut = 0; cut <= all.length; cut++) {
      const f = new XsFramer();
      const got = [...f.push(all.subarray(0, cut)), ...f.push(all.subarray(cut))];
      assert.deepEqual(got.map((m) => [m.reqId, m.payload.toString()]), [[1, 'value-a'], [2, '/local/domain/3\0']], `cut at ${cut}`);
      assert.equal(f.pending, 0);
    }
  });

  it('error replies carry the errno name, NUL-terminated', () => {
    const r = errorReply(msg(XsType.read, requestPayload('/x'), 9, 0), 'ENOENT');
    const wire = encodeMessage(r);
    assert.equal(wire.readUInt32LE(0), XsType.error);
    assert.equal(wire.readUInt32LE(4), 9);
    assert.equal(wire.subarray(16).toString('latin1'), 'ENOENT\0');
    assert.equal(errorCode(decodeMessage(wire)), 'ENOENT');
    assert.deepEqual(payloadStrings(Buffer.from('a\0b\0')), ['a', 'b']);
  });
});

describe('xenstore client on the simulated xenstore', () => {
  function simClient(): { xs: XsClient; store: SimXenStore } {
    const store = new SimXenStore();
    store.addDomain({ domid: 1, name: 'demo', type: 'pv', uuid: '00000000-0000-4000-8000-000000000001', vcpus: 2, memKiB: 65536 });
    return { xs: new XsClient(store.transport()), store };
  }

  it('reads values, lists directories, gives the domain path', async () => {
    const { xs } = simClient();
    assert.equal(await xs.getDomainPath(1), '/local/domain/1');
    assert.equal(await xs.read('/local/domain/1/name'), 'demo');
    assert.deepEqual((await xs.directory('/local/domain/1/device')).sort(), ['vbd', 'vif']);
    assert.equal(await xs.read('/local/domain/0/backend/vif/1/0/bridge'), 'xenbr0');
    assert.equal(await xs.read('/local/domain/1/device/vif/0/backend'), '/local/domain/0/backend/vif/1/0');
  });

  it('ENOENT: read gives undefined and directory [] ; other errors throw with their name', async () => {
    const { xs, store } = simClient();
    assert.equal(await xs.read('/local/domain/1/nothing'), undefined);
    assert.deepEqual(await xs.directory('/local/domain/9'), []);
    await assert.rejects(xs.read('bad path!'), (e: unknown) => e instanceof XsError && e.code === 'EINVAL');
    // A write is refused (the client never writes; the simulated store answers like xenstored to a reader).
    const rep = decodeMessage(store.handleBytes(encodeMessage(msg(XsType.write, requestPayload('/local/domain/1/name', 'x')))));
    assert.equal(rep.type, XsType.error);
    assert.equal(errorCode(rep), 'EACCES');
    assert.equal(store.read('/local/domain/1/name'), 'demo');
  });

  it('removing a domain takes its tree and its backends', async () => {
    const { xs, store } = simClient();
    store.removeDomain(1);
    assert.equal(await xs.read('/local/domain/1/name'), undefined);
    assert.deepEqual(await xs.directory('/local/domain/0/backend/vif'), []);
  });
});

describe('xenstore socket transport (a unix socket serving the simulated store)', () => {
  let dir: string;
  let server: net.Server;
  let sockPath: string;
  const store = new SimXenStore();
  store.addDomain({ domid: 2, name: 'guest2', type: 'pvh', uuid: '00000000-0000-4000-8000-000000000002', vcpus: 1, memKiB: 131072 });

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gdbsx-xs-'));
    sockPath = path.join(dir, 'socket');
    server = net.createServer((s) => {
      const f = new XsFramer();
      s.on('data', (d: Buffer) => {
        for (const m of f.push(d)) {
          // Reply in two pieces, as a stream may deliver it.
          const out = store.handleBytes(encodeMessage(m));
          s.write(out.subarray(0, 5));
          setImmediate(() => s.write(out.subarray(5)));
        }
      });
    });
    await new Promise<void>((r) => server.listen(sockPath, r));
  });
  after(() => {
    server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('speaks the same bytes over a socket', async () => {
    const xs = new XsClient(await openXenStore(sockPath));
    try {
      assert.equal(await xs.getDomainPath(2), '/local/domain/2');
      const [name, kinds] = await Promise.all([xs.read('/local/domain/2/name'), xs.directory('/local/domain/2/device')]);
      assert.equal(name, 'guest2');
      assert.deepEqual(kinds.sort(), ['vbd', 'vif']);
    } finally {
      xs.close();
    }
  });

  it('a missing path, or one that is no xenstore, is a UserError naming it', async () => {
    await assert.rejects(openXenStore(path.join(dir, 'none')), (e: unknown) => e instanceof UserError && /no xenstore at .*none/.test((e as Error).message));
    fs.writeFileSync(path.join(dir, 'file'), '');
    await assert.rejects(openXenStore(path.join(dir, 'file')), (e: unknown) => e instanceof UserError && /not a xenstore/.test((e as Error).message));
    const dev = new XsClient(await openXenStore('/dev/null'));
    await assert.rejects(dev.read('/local/domain/2/name'), (e: unknown) => e instanceof UserError && /end of file/.test((e as Error).message));
    dev.close();
  });
});
