// LLDB's packets, raw (lldb/docs/resources/lldbgdbremote.md): QThreadSuffixSupported,
// QListThreadsInStopReply, qThreadStopInfo, jThreadsInfo; and gdb's stop replies unchanged
// when a client did not ask for them.
import assert from 'assert';
import { startStub, Stub } from './harness';
import { RspClient } from '../support/rspClient';
import { unescapeBinary } from '../../src/gx/packet';
import { CTX64, readField } from '../../src/xg/context';

interface ThreadJson {
  tid: number;
  name: string;
  signal: number;
  reason?: string;
  registers: Record<string, string>;
}

function le64(hex: string): bigint {
  return Buffer.from(hex, 'hex').readBigUInt64LE();
}

describe('LLDB protocol extensions (raw packets, sim)', function () {
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

  async function lldbHandshake(): Promise<void> {
    assert.strictEqual(await c.request('QStartNoAckMode'), 'OK');
    c.noAck = true;
    await c.request('qSupported:xmlRegisters=i386,arm,mips,arc;multiprocess+;fork-events+;vfork-events+');
    assert.strictEqual(await c.request('QThreadSuffixSupported'), 'OK');
    assert.strictEqual(await c.request('QListThreadsInStopReply'), 'OK');
  }

  it('gdb (no QListThreadsInStopReply): stop replies are the thread plus pc, sp, fp only', async () => {
    await c.request('qSupported:multiprocess+;swbreak+;hwbreak+;vContSupported+;xmlRegisters=i386');
    assert.strictEqual(await c.request('QStartNoAckMode'), 'OK');
    c.noAck = true;
    assert.match(await c.request('?'), /^T05thread:p1\.1;(?:[0-9a-f]{2}:[0-9a-f]+;){3}$/);
    const tick = stub.sim.symbol(stub.domid, 'demo_tick');
    assert.strictEqual(await c.request(`Z0,${tick.toString(16)},1`), 'OK');
    assert.match(await c.request('vCont;c', 10000), /^T05swbreak:;thread:p1\.[12];(?:[0-9a-f]{2}:[0-9a-f]+;){3}$/);
  });

  it('QListThreadsInStopReply: name, threads, thread-pcs and jstopinfo in the T reply; pcs are the VCPUs\'', async () => {
    await lldbHandshake();
    const tick = stub.sim.symbol(stub.domid, 'demo_tick');
    assert.strictEqual(await c.request(`Z0,${tick.toString(16)},1`), 'OK');
    const t = await c.request('vCont;c', 10000);
    const m = /^T05thread:p1\.([12]);name:VCPU ([01]);reason:breakpoint;threads:p1\.1,p1\.2;thread-pcs:([0-9a-f]+),([0-9a-f]+);jstopinfo:([0-9a-f]+);/.exec(t);
    assert.ok(m, t);
    const stopped = Number(m[2]);
    assert.strictEqual(Number(m[1]), stopped + 1);
    const pcs = [BigInt('0x' + m[3]), BigInt('0x' + m[4])];
    assert.strictEqual(pcs[stopped], tick);
    for (const v of [0, 1]) assert.strictEqual(pcs[v], readField(stub.xc.getVcpuContext(stub.domid, v), CTX64, 'rip'), `VCPU ${v}'s pc`);
    const info = JSON.parse(Buffer.from(m[5], 'hex').toString('utf8')) as ThreadJson[];
    assert.deepStrictEqual(info.map((i) => [i.tid, i.name, i.signal, i.reason]),
      [0, 1].map((v) => [v + 1, `VCPU ${v}`, v === stopped ? 5 : 0, v === stopped ? 'breakpoint' : undefined]));
    for (const v of [0, 1]) assert.strictEqual(le64(info[v].registers['16']), pcs[v]);
    // Expedited: pc (0x10), sp (7), fp (6) and eflags (0x11), in the target description's numbering.
    assert.match(t, /;10:[0-9a-f]{16};07:[0-9a-f]{16};06:[0-9a-f]{16};11:[0-9a-f]{8};$/);
  });

  it('qThreadStopInfo and jThreadsInfo: every VCPU by name, its own registers; the stopped one with its signal', async () => {
    await lldbHandshake();
    const other = await c.request('qThreadStopInfo2');
    assert.match(other, /^T00thread:p1\.2;name:VCPU 1;threads:p1\.1,p1\.2;/);
    assert.doesNotMatch(other, /jstopinfo/);
    assert.match(await c.request('qThreadStopInfo1'), /^T05thread:p1\.1;name:VCPU 0;/);
    assert.strictEqual(await c.request('qThreadStopInfo9'), 'E01');
    const json = unescapeBinary(Buffer.from(await c.request('jThreadsInfo'), 'latin1')).toString('utf8');
    const all = JSON.parse(json) as ThreadJson[];
    assert.deepStrictEqual(all.map((i) => [i.tid, i.name, i.signal]), [[1, 'VCPU 0', 5], [2, 'VCPU 1', 0]]);
    for (const v of [0, 1]) {
      // Register keys are decimal here: 16 is rip, 7 rsp; each as p reads it for that thread.
      assert.strictEqual(all[v].registers['16'], await c.request(`p10;thread:p1.${v + 1};`));
      assert.strictEqual(all[v].registers['7'], await c.request(`p7;thread:p1.${v + 1};`));
    }
  });

  it('QThreadSuffixSupported: g/p/P with ;thread: act on that VCPU whatever Hg selected; an unknown thread is an error', async () => {
    await lldbHandshake();
    assert.strictEqual(await c.request('Hg2'), 'OK');
    const g2 = await c.request('g');
    assert.strictEqual(await c.request('Hg1'), 'OK');
    const g1 = await c.request('g');
    assert.notStrictEqual(g1, g2, 'the VCPUs differ (rsp, gs_base)');
    assert.strictEqual(await c.request('g;thread:2;'), g2);
    assert.strictEqual(await c.request('g;thread:p1.2;'), g2);
    assert.strictEqual(await c.request('g'), g1, 'the suffix does not change the Hg thread');
    // P with a suffix writes that VCPU's rbx (1) only.
    const rbx1 = await c.request('p1;thread:1;');
    assert.strictEqual(await c.request('P1=8877665544332211;thread:2;'), 'OK');
    assert.strictEqual(await c.request('p1;thread:2;'), '8877665544332211');
    assert.strictEqual(await c.request('p1'), rbx1);
    assert.match(await c.request('p10;thread:9;'), /^E/);
  });
  // LLDB never sends Hg once it has the thread suffix: after `thread select 2` it reads
  // that thread's registers with ;thread:2; and then memory at its pc or stack with plain
  // m. A user address must then read in thread 2's process, not the Hg/stopped thread's.
  it('QThreadSuffixSupported: m reads user memory in the process of the thread the last suffixed register access named', async () => {
    c.close();
    await new Promise((r) => setTimeout(r, 50));
    const a = stub.sim.enterUserMode(stub.domid, 0);
    stub.sim.enterUserMode(stub.domid, 1);
    c = await RspClient.connect(stub.port);
    await lldbHandshake();
    // 'user data of vcpu N' (19 bytes) at the same user address in each VCPU's process.
    const read = async () => Buffer.from(await c.request(`m${a.dataAddr.toString(16)},13`), 'hex').toString('latin1');
    await c.request('p10;thread:2;');
    assert.strictEqual(await read(), 'user data of vcpu 1', 'after a register read of thread 2');
    await c.request('g;thread:1;');
    assert.strictEqual(await read(), 'user data of vcpu 0', 'after a register read of thread 1');
    await c.request('p10;thread:2;');
    assert.strictEqual(await read(), 'user data of vcpu 1');
  });
});
