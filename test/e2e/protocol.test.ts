// Protocol conformance, packet by packet (the checklist in
// shared/reference/gdb-rsp-client-expectations.md, section 8).
import assert from 'assert';
import { startStub, Stub, symbols, sleep } from './harness';
import { RspClient } from '../support/rspClient';
import { frame } from '../../src/gx/packet';
import { readField, CTX64 } from '../../src/xg/context';
import { AMD64 } from '../../src/vcpu/registers';

describe('RSP conformance (raw packets)', function () {
  this.timeout(20000);
  let stub: Stub;
  let c: RspClient;

  beforeEach(async () => {
    stub = await startStub({ vcpus: 2 });
    c = await RspClient.connect(stub.port);
  });
  afterEach(async () => {
    c?.close();
    await stub?.close();
  });

  async function handshake(): Promise<string> {
    const sup = await c.request('qSupported:multiprocess+;swbreak+;hwbreak+;vContSupported+;xmlRegisters=i386');
    assert.strictEqual(await c.request('QStartNoAckMode'), 'OK');
    c.noAck = true;
    return sup;
  }

  it('T1: qSupported advertises a large PacketSize, no-ack, XML, vCont; unknown packets are empty', async () => {
    const sup = await handshake();
    const size = /PacketSize=([0-9a-f]+)/.exec(sup);
    assert.ok(size && parseInt(size[1], 16) >= 0x10000, sup);
    for (const f of ['QStartNoAckMode+', 'qXfer:features:read+', 'qXfer:threads:read+', 'swbreak+', 'hwbreak+', 'multiprocess+', 'vContSupported+']) assert.ok(sup.includes(f), f);
    assert.strictEqual(await c.request('vMustReplyEmpty'), '');
    assert.strictEqual(await c.request('qFooBar'), '');
    assert.strictEqual(await c.request('vFoo'), '');
    assert.strictEqual(await c.request('vCont?'), 'vCont;c;C;s;S');
  });

  it('T2/T7: ? answers a T packet naming a thread >= 1 with expedited pc; g size equals the XML', async () => {
    await handshake();
    const q = await c.request('?');
    assert.match(q, /^T05thread:p1\.1;/);
    assert.match(q, /10:[0-9a-f]{16};/);
    const g = await c.request('g');
    assert.strictEqual(g.length, AMD64.gSize * 2);
    let xml = '';
    for (let off = 0; ; off += 0x100) {
      const chunk = await c.request(`qXfer:features:read:target.xml:${off.toString(16)},100`);
      xml += chunk.slice(1);
      if (chunk[0] === 'l') break;
      assert.strictEqual(chunk[0], 'm');
    }
    const bits = [...xml.matchAll(/bitsize="(\d+)"/g)].reduce((n, m) => n + Number(m[1]), 0);
    assert.strictEqual(bits / 8, AMD64.gSize);
  });

  it('T3: m across the end of the mapping returns the prefix; fully unmapped is E14', async () => {
    await handshake();
    // The first unmapped page after the kernel image's mapping (the 2 MiB boundary after _end).
    const hole = stub.sim.layout(stub.domid).mappedEnd;
    const r = await c.request(`m${(hole - 16n).toString(16)},20`);
    assert.strictEqual(r.length, 32, 'exactly the 16 mapped bytes');
    assert.strictEqual(await c.request(`m${hole.toString(16)},10`), 'E14');
  });

  it('T4: X with bytes that need escaping round-trips; M too; X A,0: is OK', async () => {
    await handshake();
    const addr = symbols(stub.image).get('demo_scratch') ?? symbols(stub.image).get('demo_counter');
    assert.ok(addr);
    const A = addr.toString(16);
    const bytes = Buffer.from([0x23, 0x24, 0x7d, 0x2a, 0x03, 0x00, 0xff, 0x41]);
    const esc: number[] = [];
    for (const b of bytes) {
      if ([0x23, 0x24, 0x7d, 0x2a].includes(b)) esc.push(0x7d, b ^ 0x20);
      else esc.push(b);
    }
    assert.strictEqual(await c.request(`X${A},0:`), 'OK');
    assert.strictEqual(await c.request(Buffer.concat([Buffer.from(`X${A},8:`), Buffer.from(esc)])), 'OK');
    assert.strictEqual(await c.request(`m${A},8`), bytes.toString('hex'));
    assert.strictEqual(await c.request(`M${A},2:beef`), 'OK');
    assert.strictEqual(await c.request(`m${A},2`), 'beef');
  });

  it('T5: Z0 is idempotent, hidden from m, and z0 of an unknown address is OK', async () => {
    await handshake();
    const tick = symbols(stub.image).get('demo_tick');
    assert.ok(tick);
    const A = tick.toString(16);
    const orig = await c.request(`m${A},4`);
    assert.strictEqual(await c.request(`Z0,${A},1`), 'OK');
    assert.strictEqual(await c.request(`Z0,${A},1`), 'OK');
    assert.strictEqual(await c.request(`m${A},4`), orig, 'the int3 is hidden from reads');
    const raw = Buffer.alloc(1);
    stub.xc.guestMemIo(stub.domid, tick, raw, false);
    assert.strictEqual(raw[0], 0xcc, 'the int3 is really in guest memory');
    assert.strictEqual(await c.request(`z0,${A},1`), 'OK');
    stub.xc.guestMemIo(stub.domid, tick, raw, false);
    assert.strictEqual(raw[0].toString(16).padStart(2, '0'), orig.slice(0, 2), 'the original byte is back');
    assert.strictEqual(await c.request(`z0,${A},1`), 'OK');
    assert.strictEqual(await c.request('z0,1234,1'), 'OK');
  });

  it('T6: vCont;s:2 steps only VCPU 1; after a stop, g without Hg reads the stopped thread', async () => {
    await handshake();
    const rip = (v: number) => readField(stub.xc.getVcpuContext(stub.domid, v), CTX64, 'rip');
    const r0 = rip(0);
    const r1 = rip(1);
    const stop = await c.request('vCont;s:p1.2');
    assert.match(stop, /^T05thread:p1\.2;/);
    assert.doesNotMatch(stop, /swbreak/);
    assert.strictEqual(rip(0), r0);
    assert.notStrictEqual(rip(1), r1);
    const g = await c.request('g');
    const pc = Buffer.from(g.slice(AMD64.offsets[16] * 2, AMD64.offsets[16] * 2 + 16), 'hex').readBigUInt64LE();
    assert.strictEqual(pc, rip(1));
  });

  it('T6: vCont;c + 0x03 gives T02 naming a thread; a queued 0x03 while stopped interrupts the next resume', async () => {
    await handshake();
    c.writeRaw(frame(Buffer.from('vCont;c:p1.-1')));
    await sleep(100);
    c.writeRaw(Buffer.from([0x03]));
    assert.match(await c.readPacket(), /^T02thread:p1\.[12];/);
    c.writeRaw(Buffer.from([0x03])); // while stopped: queued
    assert.match(await c.request('vCont;c:p1.-1'), /^T02thread:/);
  });

  it('T6: a breakpoint hit reports swbreak and pc = the breakpoint address', async () => {
    await handshake();
    const tick = symbols(stub.image).get('demo_tick');
    assert.ok(tick);
    assert.strictEqual(await c.request(`Z0,${tick.toString(16)},1`), 'OK');
    const stop = await c.request('vCont;c:p1.-1');
    assert.match(stop, /^T05swbreak:;thread:p1\.([12]);/);
    const pcField = /;10:([0-9a-f]{16});/.exec(stop);
    assert.ok(pcField);
    assert.strictEqual(Buffer.from(pcField[1], 'hex').readBigUInt64LE(), tick);
  });

  it('Z1: a hardware breakpoint stops with hwbreak and pc = its address, and never writes guest memory', async () => {
    await handshake();
    const work = symbols(stub.image).get('demo_work');
    assert.ok(work);
    const raw = () => { const b = Buffer.alloc(1); stub.xc.guestMemIo(stub.domid, work, b, false); return b[0]; };
    const orig = raw();
    assert.strictEqual(await c.request(`Z1,${work.toString(16)},1`), 'OK');
    assert.strictEqual(raw(), orig, 'no int3 written');
    const stop = await c.request('vCont;c:p1.-1');
    assert.match(stop, /^T05hwbreak:;thread:p1\.[12];/);
    const pcField = /;10:([0-9a-f]{16});/.exec(stop);
    assert.ok(pcField);
    assert.strictEqual(Buffer.from(pcField[1], 'hex').readBigUInt64LE(), work);
    assert.strictEqual(await c.request(`z1,${work.toString(16)},1`), 'OK');
    for (const a of [1n, 2n, 3n, 4n]) assert.strictEqual(await c.request(`Z1,${(work + a).toString(16)},1`), 'OK');
    assert.match(await c.request(`Z1,${(work + 5n).toString(16)},1`), /^E\.all four x86 debug registers are in use/, 'a fifth one: no debug register left');
  });

  it('Z2/Z3/Z4: watchpoints stop with watch:/rwatch:/awatch: and the address; lengths and alignment are checked; z frees the slot', async () => {
    await handshake();
    const sym = symbols(stub.image);
    const ticks = sym.get('demo_ticks');
    const banner = sym.get('demo_banner');
    const rare = sym.get('demo_rare_count');
    assert.ok(ticks && banner && rare);
    const tick1 = ticks + 8n; // demo_ticks[1]: only VCPU 1 writes it
    assert.strictEqual(await c.request('qWatchpointSupportInfo'), 'num:4;');
    assert.strictEqual(await c.request(`Z2,${tick1.toString(16)},8`), 'OK');
    const stop = await c.request('vCont;c:p1.-1');
    assert.match(stop, new RegExp(`^T05watch:${tick1.toString(16)};thread:p1\\.2;`), stop);
    assert.strictEqual(await c.request(`z2,${tick1.toString(16)},8`), 'OK');
    // rwatch: the banner is only read (by demo_rare).
    assert.strictEqual(await c.request(`Z3,${banner.toString(16)},1`), 'OK');
    assert.match(await c.request('vCont;c:p1.-1'), new RegExp(`^T05rwatch:${banner.toString(16)};thread:p1\\.[12];`));
    assert.strictEqual(await c.request(`z3,${banner.toString(16)},1`), 'OK');
    assert.strictEqual(await c.request(`Z4,${rare.toString(16)},8`), 'OK');
    assert.match(await c.request('vCont;c:p1.-1'), new RegExp(`^T05awatch:${rare.toString(16)};thread:p1\\.[12];`));
    assert.strictEqual(await c.request(`z4,${rare.toString(16)},8`), 'OK');
    // Refused with the reason: odd lengths, misaligned addresses (never the empty reply).
    assert.match(await c.request(`Z2,${tick1.toString(16)},3`), /^E\.an x86 debug register watches 1, 2, 4, 8 bytes, not 3/);
    assert.match(await c.request(`Z2,${tick1.toString(16)},10`), /^E\.an x86 debug register watches 1, 2, 4, 8 bytes, not 16/);
    assert.match(await c.request(`Z2,${(tick1 + 4n).toString(16)},8`), /^E\.an x86 debug register watches 8 bytes at an address aligned to 8/);
    assert.match(await c.request(`Z4,${(tick1 + 1n).toString(16)},2`), /^E\.an x86 debug register watches 2 bytes at an address aligned to 2/);
    // Four slots, shared with Z1; z of one frees it for another.
    for (const n of [0n, 1n, 2n]) assert.strictEqual(await c.request(`Z2,${(ticks + 8n * n).toString(16)},8`), 'OK');
    assert.strictEqual(await c.request(`Z1,${(sym.get('demo_work') as bigint).toString(16)},1`), 'OK');
    assert.match(await c.request(`Z4,${rare.toString(16)},4`), /^E\.all four x86 debug registers are in use/);
    assert.strictEqual(await c.request(`z2,${ticks.toString(16)},8`), 'OK');
    assert.strictEqual(await c.request(`Z4,${rare.toString(16)},4`), 'OK');
  });

  it('T8: qXfer:threads chunks concatenate to the document with names', async () => {
    await handshake();
    let doc = '';
    for (let off = 0; ; off += 0x10) {
      const chunk = await c.request(`qXfer:threads:read::${off.toString(16)},10`);
      doc += chunk.slice(1);
      if (chunk[0] === 'l') break;
    }
    assert.match(doc, /<thread id="p1\.1" core="0" name="VCPU 0">/);
    assert.match(doc, /<thread id="p1\.2" core="1" name="VCPU 1">/);
  });

  it('T9: ack mode until QStartNoAckMode; a NAK gets the reply resent', async () => {
    c.writeRaw(frame(Buffer.from('qC')));
    const first = await c.readPacket();
    c.writeRaw('-');
    const again = await c.readPacket();
    assert.strictEqual(again, first);
    c.writeRaw('$qC#00'); // bad checksum
    await sleep(50);
    assert.strictEqual(await c.request('qAttached'), '1');
  });

  it('T10/T11: errors are E + 2 hex digits; qAttached is 1; T for a missing thread is E01', async () => {
    await handshake();
    for (const bad of ['mzz,4', 'm1', 'Mzz', 'p9999', 'P0=zz', 'Z0,,', 'Hgzz', 'vCont;q', 'qRcmd,zz', 'Gzz']) {
      assert.match(await c.request(bad), /^(E[0-9a-f]{2}|)$/, bad);
    }
    assert.strictEqual(await c.request('qAttached'), '1');
    assert.strictEqual(await c.request('T9'), 'E01');
    assert.strictEqual(await c.request('Tp1.2'), 'OK');
  });

  it('T11: D resumes all VCPUs and removes our breakpoints; EOF does the same', async () => {
    await handshake();
    const tick = symbols(stub.image).get('demo_tick');
    assert.ok(tick);
    await c.request(`Z0,${tick.toString(16)},1`);
    assert.strictEqual(await c.request('D;1'), 'OK');
    await sleep(50);
    const b = Buffer.alloc(1);
    stub.xc.guestMemIo(stub.domid, tick, b, false);
    assert.notStrictEqual(b[0], 0xcc);
    assert.strictEqual(stub.xc.getDomainInfo(stub.domid).paused, false);
    // EOF while stopped at a breakpoint with others inserted.
    const c2 = await RspClient.connect(stub.port);
    await c2.request(`Z0,${tick.toString(16)},1`);
    assert.match(await c2.request('vCont;c'), /^T05/);
    c2.close();
    await sleep(100);
    stub.xc.guestMemIo(stub.domid, tick, b, false);
    assert.notStrictEqual(b[0], 0xcc);
    assert.strictEqual(stub.xc.getDomainInfo(stub.domid).paused, false);
  });

  it('refuses a second debugger while one is connected', async () => {
    await handshake();
    const other = await RspClient.connect(stub.port);
    const reply = await other.request('qSupported', 5000);
    assert.strictEqual(reply, 'E.gdbsx: domain 1 is already being debugged by another connection');
    other.close();
    assert.match(await c.request('?'), /^T05/);
  });
});

describe('breakpoints on aliases of one byte (32-bit guest)', function () {
  this.timeout(30000);
  let stub: Stub;
  afterEach(async () => stub.close());

  it('two addresses that reach the same byte (0xA and 0x1_0000_000A on a 32-bit guest): no int3 left, whatever the removal order', async () => {
    stub = await startStub({ vcpus: 2, width: 32 });
    const tick = symbols(stub.image).get('demo_tick') as bigint;
    const orig = stub.sim.readVirt(stub.domid, tick, 1)[0];
    const c = await RspClient.session(stub.port);
    const alias = tick + (1n << 32n); // the stub masks addresses to the guest's width
    for (const order of [[tick, alias], [alias, tick]]) {
      assert.strictEqual(await c.request(`Z0,${tick.toString(16)},1`), 'OK');
      assert.strictEqual(await c.request(`Z0,${alias.toString(16)},1`), 'OK');
      assert.strictEqual(stub.sim.readVirt(stub.domid, tick, 1)[0], 0xcc);
      for (const a of order) assert.strictEqual(await c.request(`z0,${a.toString(16)},1`), 'OK');
      assert.strictEqual(stub.sim.readVirt(stub.domid, tick, 1)[0], orig, `removed in the order ${order.map((a) => a.toString(16))}`);
    }
    assert.strictEqual(await c.request('D'), 'OK');
    c.close();
  });
});
