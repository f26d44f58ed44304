import assert from 'assert';
import { checksum, escapeBinary, unescapeBinary, rleEncode, rleDecode, frame, errorReply, fromHex, parseHexBig, ProtocolError } from '../../src/gx/packet';
import { Framer } from '../../src/gx/framer';

describe('packet encoding', () => {
  it('checksums are the byte sum mod 256', () => {
    assert.strictEqual(checksum(Buffer.from('OK')), 0x9a);
    assert.strictEqual(checksum(Buffer.from('')), 0);
    assert.strictEqual(frame(Buffer.from('qSupported')).toString(), '$qSupported#37');
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
