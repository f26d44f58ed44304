import assert from 'assert';
import { checksum, escapeBinary, unescapeBinary, rleEncode, rleDecode, frame, closeFrame, hexRleInto, hexBlocksInto, errorReply, fromHex, parseHexBig, ProtocolError } from '../../src/gx/packet';
import { Framer } from '../../src/gx/framer';

describe('packet encoding', () => {
  it('checksums are the byte sum mod 256', () => {
    assert.strictEqual(checksum(Buffer.from('OK')), 0x9a);
    assert.strictEqual(checksum(Buffer.from('')), 0);
    assert.strictEqual(frame(Buffer.from('qSupported')).toString(), '$qSupported#37');
  });

  it('checksums long packets at any alignment as a plain byte sum', () => {
    const big = Buffer.alloc(70001);
    for (let i = 0; i < big.length; i++) big[i] = (i * 131 + 7) & 0xff;
    for (const [start, end] of [[0, 70001], [1, 70001], [3, 69998], [2, 300], [5, 261]]) {
      let want = 0;
      for (let i = start; i < end; i++) want += big[i];
      assert.strictEqual(checksum(big, start, end), want & 0xff, `${start}..${end}`);
      const sub = big.subarray(start, end); // a view at an odd byteOffset
      assert.strictEqual(checksum(sub), want & 0xff);
    }
    assert.strictEqual(checksum(Buffer.alloc(100000, 0xff)), (100000 * 255) & 0xff);
  });

  it('escapes # $ } * and round-trips every byte value', () => {
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const esc = escapeBinary(all);
    for (const c of [0x23, 0x24, 0x2a]) assert.ok(!esc.includes(c), `0x${c.toString(16)} must not appear raw`);
    assert.deepStrictEqual(unescapeBinary(esc), all);
    assert.deepStrictEqual(escapeBinary(Buffer.from([0x24])), Buffer.from([0x7d, 0x04]));
    assert.throws(() => unescapeBinary(Buffer.from([0x41, 0x7d])), ProtocolError);
  });

  it('run-length encodes runs, never producing # or $ as counts', () => {
    for (let n = 1; n < 300; n++) {
      const data = Buffer.from('a' + '0'.repeat(n) + 'b');
      const enc = rleEncode(data);
      for (let i = 0; i < enc.length; i++) {
        if (enc[i] === 0x2a) assert.ok(enc[i + 1] !== 0x23 && enc[i + 1] !== 0x24 && enc[i + 1] >= 32 && enc[i + 1] <= 126, `bad count for n=${n}`);
      }
      assert.deepStrictEqual(rleDecode(enc), data, `n=${n}`);
    }
    assert.ok(rleEncode(Buffer.from('0'.repeat(64))).length < 10);
  });

  it('hexRleInto writes exactly rleEncode(hex) for runs, zero blocks and dense data', () => {
    const cases: Buffer[] = [Buffer.alloc(0), Buffer.from([0]), Buffer.from([0x10, 0, 0, 0x01]), Buffer.from([0xab, 0xab, 0xab])];
    for (const n of [1, 2, 3, 4, 48, 49, 127, 128, 255, 256, 257, 511, 512, 513, 4096, 70000]) {
      cases.push(Buffer.alloc(n), Buffer.alloc(n, 0xff), Buffer.alloc(n, 0x01));
      const mixed = Buffer.alloc(n);
      for (let i = 0; i < n; i += 300) mixed[i] = 0x40 + (i % 7); // sparse non-zero bytes across block edges
      cases.push(mixed, Buffer.concat([Buffer.from([0x10]), Buffer.alloc(n), Buffer.from([0x01])]));
    }
    let seed = 12345;
    const dense = Buffer.alloc(65536);
    for (let i = 0; i < dense.length; i++) dense[i] = (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24;
    cases.push(dense);
    for (const data of cases) {
      const out = Buffer.alloc(2 * data.length + 8, 0x55);
      const end = hexRleInto(data, out, 3);
      const want = rleEncode(Buffer.from(data.toString('hex'), 'latin1'));
      assert.deepStrictEqual(out.subarray(3, end), want, `length ${data.length}, first byte ${data[0]}`);
      assert.deepStrictEqual(rleDecode(out.subarray(3, end)).toString('latin1'), data.toString('hex'));
    }
  });

  it('hexBlocksInto decodes to the hex of the data and turns zero blocks into runs', () => {
    const page = Buffer.alloc(4096);
    page.write('kernel text', 1000);
    const cases = [Buffer.alloc(0), Buffer.alloc(100), Buffer.alloc(300, 0x90), Buffer.alloc(70000), page,
      Buffer.concat([page, Buffer.alloc(8192), page, Buffer.alloc(255), page.subarray(0, 777)])];
    for (let n = 1; n < 1100; n += 37) cases.push(Buffer.concat([Buffer.from([1]), Buffer.alloc(n), Buffer.from([2])]));
    for (const data of cases) {
      const out = Buffer.alloc(2 * data.length + 8);
      const end = hexBlocksInto(data, out, 1);
      const enc = out.subarray(1, end);
      for (let i = 0; i < enc.length; i++) {
        assert.ok(enc[i] !== 0x23 && enc[i] !== 0x24, 'no frame characters in a payload');
        if (enc[i] === 0x2a) assert.ok(enc[i + 1] >= 32 && enc[i + 1] <= 126);
      }
      assert.strictEqual(rleDecode(enc).toString('latin1'), data.toString('hex'), `length ${data.length}`);
    }
    // 64 KiB of zeros: runs of 98 characters in 3 bytes each.
    const zeros = Buffer.alloc(65536);
    const out = Buffer.alloc(2 * zeros.length);
    assert.ok(hexBlocksInto(zeros, out, 0) < 4100);
  });

  it('closeFrame appends # and the checksum of what follows the $', () => {
    const out = Buffer.alloc(16);
    out[0] = 0x24;
    out.write('qSupported', 1, 'latin1');
    assert.strictEqual(closeFrame(out, 11).toString('latin1'), '$qSupported#37');
  });

  it('formats errors as E + two hex digits', () => {
    assert.strictEqual(errorReply(0x14), 'E14');
    assert.strictEqual(errorReply(1), 'E01');
    assert.strictEqual(errorReply(0x1ff), 'Eff');
  });

  it('rejects malformed hex', () => {
    assert.throws(() => fromHex('abc'), ProtocolError);
    assert.throws(() => fromHex('zz'), ProtocolError);
    assert.throws(() => parseHexBig(''), ProtocolError);
    assert.throws(() => parseHexBig('1'.repeat(17)), ProtocolError);
    assert.strictEqual(parseHexBig('ffffffff81000000'), 0xffffffff81000000n);
  });
});

describe('framer', () => {
  it('splits packets, acks and interrupts across arbitrary chunking', () => {
    const stream = Buffer.concat([Buffer.from('+'), frame(Buffer.from('qSupported:x+')), Buffer.from([0x03]), Buffer.from('-'), frame(Buffer.from('m0,4'))]);
    for (let cut = 1; cut < stream.length; cut++) {
      const f = new Framer(1024);
      const evs = [...f.push(stream.subarray(0, cut)), ...f.push(stream.subarray(cut))];
      assert.deepStrictEqual(evs.map((e) => e.type), ['ack', 'packet', 'interrupt', 'nak', 'packet']);
    }
  });

  it('treats 0x03 inside a packet as data', () => {
    const f = new Framer(1024);
    const payload = Buffer.from([0x58, 0x31, 0x2c, 0x31, 0x3a, 0x03]); // X1,1:\x03
    const evs = f.push(frame(payload));
    assert.strictEqual(evs.length, 1);
    assert.strictEqual(evs[0].type, 'packet');
    if (evs[0].type === 'packet') assert.deepStrictEqual(evs[0].data, payload);
  });

  it('reports bad checksums and oversized packets without growing without bound', () => {
    const f = new Framer(16);
    assert.deepStrictEqual(f.push(Buffer.from('$OK#00')).map((e) => e.type), ['bad-checksum']);
    assert.deepStrictEqual(f.push(Buffer.from('$OK#zz')).map((e) => e.type), ['bad-checksum']);
    assert.deepStrictEqual(f.push(frame(Buffer.alloc(100, 0x41))).map((e) => e.type), ['oversized']);
    assert.deepStrictEqual(f.push(frame(Buffer.from('g'))).map((e) => e.type), ['packet']);
  });

  it('ignores junk between packets', () => {
    const f = new Framer(64);
    assert.deepStrictEqual(f.push(Buffer.from('junk\r\n$g#67')).map((e) => e.type), ['packet']);
  });
});
