// Robustness: property-based tests over the framing and the handlers, and a fuzz
// run of mutated real gdb packets against a live stub. Every reply must be
// protocol-correct (an E NN error, empty, or a well-formed answer), the stub must
// never crash or hang, and the guest must end up running with no int3 of ours.
import assert from 'assert';
import fc from 'fast-check';
import { Framer } from '../../src/gx/framer';
import { escapeBinary, unescapeBinary, rleDecode, rleEncode, frame } from '../../src/gx/packet';
import { startStub, Stub, symbols, sleep } from './harness';
import { RspClient } from '../support/rspClient';
import { PACKET_SIZE } from '../../src/gx/reply';

const RUNS = Number(process.env.FUZZ_RUNS ?? 20000);

describe('property: framing', () => {
  it('the framer never throws and never holds more than its limit on random bytes', () => {
    fc.assert(fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 20 }), (chunks) => {
      const f = new Framer(128);
      for (const c of chunks) {
        for (const ev of f.push(Buffer.from(c))) {
          if (ev.type === 'packet' || ev.type === 'bad-checksum') assert.ok(ev.data.length <= 128);
        }
      }
    }), { numRuns: 2000 });
  });

  it('any payload survives frame -> framer, whatever the chunking', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), fc.nat(), (bytes, cutSeed) => {
      const payload = escapeBinary(Buffer.from(bytes));
      const wire = frame(payload);
      const cut = cutSeed % (wire.length + 1);
      const f = new Framer(1024);
      const evs = [...f.push(wire.subarray(0, cut)), ...f.push(wire.subarray(cut))];
      assert.strictEqual(evs.length, 1);
      assert.strictEqual(evs[0].type, 'packet');
      if (evs[0].type === 'packet') assert.deepStrictEqual(unescapeBinary(evs[0].data), Buffer.from(bytes));
    }), { numRuns: 2000 });
  });

  it('RLE round-trips any printable payload', () => {
    fc.assert(fc.property(fc.array(fc.constantFrom(...'0123456789abcdefT;:xE'.split('')), { maxLength: 400 }), (chars) => {
      const b = Buffer.from(chars.join(''));
      assert.deepStrictEqual(rleDecode(rleEncode(b)), b);
    }), { numRuns: 2000 });
  });
});

/** Packets a real gdb 13 session sends (shared/reference, Appendix A), as mutation seeds. */
function corpus(tick: bigint, banner: bigint): string[] {
  const T = tick.toString(16);
  const B = banner.toString(16);
  return [
    'qSupported:multiprocess+;swbreak+;hwbreak+;qRelocInsn+;fork-events+;vfork-events+;exec-events+;vContSupported+;QThreadEvents+;no-resumed+;memory-tagging+;xmlRegisters=i386',
    'vMustReplyEmpty', 'Hgp0.0', 'qXfer:features:read:target.xml:0,1000', 'qXfer:features:read:target.xml:1000,1000', 'qTStatus', '?',
    'qXfer:threads:read::0,1000', 'qAttached:1', 'Hc-1', `m${B},1`, `m${B},40`, `Z0,${T},1`, `z0,${T},1`, 'vCont?', 'g', 'Hgp1.2',
    'Tp1.2', 'p10', 'p3b', 'qfThreadInfo', 'qsThreadInfo', 'qThreadExtraInfo,1', 'qC', 'qOffsets', 'qSymbol::', 'qRcmd,68656c70',
    'qRcmd,7067643320307831323334', 'qHostInfo', 'qProcessInfo', `x${B},10`, 'Hg1', 'Hc1', 'qXfer:features:read:other.xml:0,10',
    // Writes and resumes are fuzzed separately (they change the guest or wait for it).
  ];
}

// No raw '#' or '$': a client never sends them unescaped (they are framing).
const ALPHABET = 'qQmMgGpPxXzZvHTcsCSD?:;,.-=p0123456789abcdefxyzE}*';

function mutate(seed: string, rnd: () => number): string {
  let s = seed;
  const n = 1 + Math.floor(rnd() * 4);
  for (let i = 0; i < n; i++) {
    const pos = Math.floor(rnd() * (s.length + 1));
    switch (Math.floor(rnd() * 5)) {
      case 0: s = s.slice(0, pos) + s.slice(pos + 1); break; // delete
      case 1: s = s.slice(0, pos) + ALPHABET[Math.floor(rnd() * ALPHABET.length)] + s.slice(pos); break; // insert
      case 2: s = s.slice(0, pos) + ALPHABET[Math.floor(rnd() * ALPHABET.length)] + s.slice(pos + 1); break; // replace
      case 3: s = s.slice(0, pos); break; // truncate
      case 4: s = s.slice(0, pos) + 'f'.repeat(Math.floor(rnd() * 40)) + s.slice(pos); break; // long numbers
    }
  }
  return s;
}

function isResumeOrEnd(p: string): boolean {
  return /^(vCont;|[cCsS]|D|k|vKill|vRun|vAttach|!|R)/.test(p) || /^[MXGP]/.test(p);
}

describe('fuzz: mutated gdb packets against a live stub', function () {
  this.timeout(180000);
  let stub: Stub;
  afterEach(async () => stub?.close());

  // 32-bit too: `monitor pgd3` is refused on a 64-bit guest, and the 32-bit PAE guest is
  // where a pgd3 that changes between inserting and removing a breakpoint can leak an int3.
  for (const [width, runs] of [[64, RUNS], [32, Math.ceil(RUNS / 4)]] as const) it(`${width}-bit guest: answers ${runs} mutated packets with protocol-correct replies and leaves the guest intact`, async () => {
    stub = await startStub({ vcpus: 2, width });
    const sym = symbols(stub.image);
    const tick = sym.get('demo_tick');
    const banner = sym.get('demo_banner');
    assert.ok(tick && banner);
    const seeds = corpus(tick, banner);
    const text = Buffer.alloc(4096);
    stub.xc.guestMemIo(stub.domid, tick & ~0xfffn, text, false);

    let seed = 12345;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x80000000;
    };
    let c = await RspClient.connect(stub.port);
    let sent = 0;
    while (sent < runs) {
      let p = mutate(seeds[Math.floor(rnd() * seeds.length)], rnd);
      if (isResumeOrEnd(p)) p = 'q' + p; // keep the session stopped and alive
      const t0 = Date.now();
      const reply = await c.request(p, 10000);
      if (process.env.FUZZ_SLOW && Date.now() - t0 > 20) console.log(`slow ${Date.now() - t0} ms: ${JSON.stringify(p).slice(0, 80)} -> ${reply.slice(0, 40)}`);
      sent++;
      // Protocol-correct: errors are exactly E + two hex digits (no hex reply starts with 'E').
      if (reply.startsWith('E')) assert.match(reply, /^E[0-9a-f]{2}$/, `reply to ${JSON.stringify(p)}`);
      if (rnd() < 0.002) {
        // Now and then a whole new session: drop the connection mid-way.
        c.close();
        await sleep(20);
        c = await RspClient.connect(stub.port);
      }
    }
    // An oversized packet is refused with E2BIG, not buffered without limit.
    c.writeRaw(Buffer.from('$' + 'A'.repeat(PACKET_SIZE + 0x100) + '#00'));
    assert.strictEqual(await c.readPacket(), 'E07');
    // Raw garbage (a bad checksum, a NAK that asks for a resend): then a normal request still works.
    c.writeRaw(Buffer.from([0x24, 0x7d, 0x23, 0x00, 0xff, 0x2b, 0x2d]));
    c.writeRaw(frame(Buffer.from('?')));
    let r = await c.readPacket();
    while (r === 'E07') r = await c.readPacket();
    assert.match(r, /^T/);
    c.close();
    await sleep(100);

    const after = Buffer.alloc(4096);
    stub.xc.guestMemIo(stub.domid, tick & ~0xfffn, after, false);
    const diffs = [...after].map((b, i) => [i, text[i], b]).filter(([, x, y]) => x !== y);
    assert.deepStrictEqual(diffs.map(([i, x, y]) => `+0x${i.toString(16)}: 0x${x.toString(16)} -> 0x${y.toString(16)}`), [], `guest text changed (page 0x${(tick & ~0xfffn).toString(16)})`);
    assert.strictEqual(stub.xc.getDomainInfo(stub.domid).paused, false, 'guest left paused');
  });

  it('survives resume packets with Ctrl-C, and writes to unmapped memory, in random order', async () => {
    stub = await startStub({ vcpus: 2 });
    const tick = symbols(stub.image).get('demo_tick');
    assert.ok(tick);
    const c = await RspClient.connect(stub.port);
    await c.request('QStartNoAckMode');
    c.noAck = true;
    const ops = fc.sample(fc.oneof(
      fc.constantFrom('vCont;c', 'vCont;c:p1.-1', 'vCont;s:1', 'vCont;s:2;c', 'c', 's', 'C05', 'S0b', 'vCont;C05:2'),
      fc.tuple(fc.bigUintN(32), fc.uint8Array({ maxLength: 16 })).map(([a, d]) => `M${(0xdead00000000n + a).toString(16)},${d.length.toString(16)}:${Buffer.from(d).toString('hex')}`),
      fc.constant(`Z0,${tick.toString(16)},1`), fc.constant(`z0,${tick.toString(16)},1`),
    ), { numRuns: 300, seed: 42 });
    for (const op of ops) {
      c.writeRaw(frame(Buffer.from(op)));
      if (/^(vCont;|[cCsS])/.test(op)) {
        await sleep(2);
        c.writeRaw(Buffer.from([0x03]));
        let r = await c.readPacket(10000);
        while (r.startsWith('O') && r !== 'OK') r = await c.readPacket(10000);
        assert.match(r, /^T[0-9a-f]{2}thread:/, op);
      } else {
        assert.match(await c.readPacket(), /^(OK|E[0-9a-f]{2})$/, op);
      }
    }
    // A Ctrl-C that raced a stop may be queued: drain it with one more resume.
    c.close();
    await sleep(100);
    const b = Buffer.alloc(1);
    stub.xc.guestMemIo(stub.domid, tick, b, false);
    assert.notStrictEqual(b[0], 0xcc, 'our int3 was left in memory');
    assert.strictEqual(stub.xc.getDomainInfo(stub.domid).paused, false);
  });
});
