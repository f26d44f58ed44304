// The simulated CPU's arithmetic against BigInt reference definitions of the x86
// flags, for every operand size (property-based: the (lo, hi) split is where bugs hide).
import { strict as assert } from 'assert';
import fc from 'fast-check';
import {
  Flag, LogicOp, OpSize, ShiftOp, aluAdd, aluLogic, aluShift, aluSub, condition, newAluOut,
} from '../../src/xg/sim/alu';

const SIZES: OpSize[] = [8, 16, 32, 64];

function split(v: bigint): [number, number] {
  return [Number(v & 0xffffffffn), Number(v >> 32n)];
}

function join(lo: number, hi: number): bigint {
  return (BigInt(hi) << 32n) | BigInt(lo);
}

function parity(r: bigint): boolean {
  let bits = 0;
  for (let v = Number(r & 0xffn); v; v >>= 1) bits += v & 1;
  return bits % 2 === 0;
}

/** ZF SF PF of a result, the reference way. */
function szp(size: number, r: bigint): number {
  return (r === 0n ? Flag.ZF : 0) | ((r >> BigInt(size - 1)) & 1n ? Flag.SF : 0) | (parity(r) ? Flag.PF : 0);
}

const sized = (size: number) => fc.bigUintN(64).map((v) => BigInt.asUintN(size, v));

describe('sim ALU flags (reference: BigInt)', () => {
  for (const size of SIZES) {
    const M = 1n << BigInt(size);
    const sign = (v: bigint) => (v >> BigInt(size - 1)) & 1n;

    it(`add/adc ${size}-bit`, () => {
      fc.assert(fc.property(sized(size), sized(size), fc.integer({ min: 0, max: 1 }), (a, b, cin) => {
        const out = newAluOut();
        aluAdd(size, ...split(a), ...split(b), cin, out);
        const full = a + b + BigInt(cin);
        const r = full % M;
        const flags = szp(size, r) | (full >= M ? Flag.CF : 0) |
          (sign(a) === sign(b) && sign(r) !== sign(a) ? Flag.OF : 0) | (Number((a ^ b ^ r) & 0x10n) ? Flag.AF : 0);
        assert.equal(join(out.lo, out.hi), r);
        assert.equal(out.flags, flags);
      }), { numRuns: 400 });
    });

    it(`sub/sbb/cmp ${size}-bit`, () => {
      fc.assert(fc.property(sized(size), sized(size), fc.integer({ min: 0, max: 1 }), (a, b, bin) => {
        const out = newAluOut();
        aluSub(size, ...split(a), ...split(b), bin, out);
        const r = BigInt.asUintN(size, a - b - BigInt(bin));
        const flags = szp(size, r) | (a < b + BigInt(bin) ? Flag.CF : 0) |
          (sign(a) !== sign(b) && sign(r) !== sign(a) ? Flag.OF : 0) | (Number((a ^ b ^ r) & 0x10n) ? Flag.AF : 0);
        assert.equal(join(out.lo, out.hi), r);
        assert.equal(out.flags, flags);
      }), { numRuns: 400 });
    });

    it(`and/or/xor ${size}-bit`, () => {
      fc.assert(fc.property(sized(size), sized(size), (a, b) => {
        for (const [op, r] of [[LogicOp.And, a & b], [LogicOp.Or, a | b], [LogicOp.Xor, a ^ b]] as const) {
          const out = newAluOut();
          aluLogic(op, size, ...split(a), ...split(b), out);
          assert.equal(join(out.lo, out.hi), r);
          assert.equal(out.flags, szp(size, r));
        }
      }), { numRuns: 200 });
    });

    it(`shl/shr/sar ${size}-bit`, () => {
      fc.assert(fc.property(sized(size), fc.integer({ min: 1, max: size - 1 }), (a, c) => {
        const n = BigInt(c);
        const signed = BigInt.asIntN(size, a);
        const cases: [ShiftOp, bigint, bigint, boolean][] = [
          [ShiftOp.Shl, (a << n) % M, (a >> BigInt(size - c)) & 1n, Boolean(sign((a << n) % M) ^ ((a >> BigInt(size - c)) & 1n))],
          [ShiftOp.Shr, a >> n, (a >> (n - 1n)) & 1n, sign(a) === 1n],
          [ShiftOp.Sar, BigInt.asUintN(size, signed >> n), (signed >> (n - 1n)) & 1n, false],
        ];
        for (const [op, r, cf, of] of cases) {
          const out = newAluOut();
          assert.equal(aluShift(op, size, ...split(a), c, out), true);
          assert.equal(join(out.lo, out.hi), r, `op ${op} by ${c}`);
          // OF is defined for 1-bit shifts only.
          const keep = c === 1 ? ~0 : ~Flag.OF;
          assert.equal(out.flags & keep, (szp(size, r) | (cf ? Flag.CF : 0) | (of ? Flag.OF : 0)) & keep, `op ${op} by ${c}`);
        }
      }), { numRuns: 300 });
    });
  }

  it('a zero shift count changes nothing', () => {
    const out = newAluOut();
    assert.equal(aluShift(ShiftOp.Shl, 64, 1, 2, 0, out), false);
  });

  it('conditions match their definitions for every flag combination', () => {
    for (let bits = 0; bits < 32; bits++) {
      const cf = (bits & 1) !== 0;
      const zf = (bits & 2) !== 0;
      const sf = (bits & 4) !== 0;
      const of = (bits & 8) !== 0;
      const pf = (bits & 16) !== 0;
      const flags = (cf ? Flag.CF : 0) | (zf ? Flag.ZF : 0) | (sf ? Flag.SF : 0) | (of ? Flag.OF : 0) | (pf ? Flag.PF : 0);
      const want = [of, !of, cf, !cf, zf, !zf, cf || zf, !(cf || zf), sf, !sf, pf, !pf, sf !== of, sf === of, zf || sf !== of, !(zf || sf !== of)];
      want.forEach((w, cc) => assert.equal(condition(cc, flags), w, `cc ${cc} flags ${flags.toString(16)}`));
    }
  });
});
