// Integer arithmetic and status flags for the simulated x86 CPU.
// Values are (lo, hi) pairs of unsigned 32-bit numbers so the hot path never needs
// BigInt; for operand sizes 8/16/32 only `lo` is used and `hi` is 0.

export const Flag = {
  CF: 0x1, PF: 0x4, AF: 0x10, ZF: 0x40, SF: 0x80, TF: 0x100, IF: 0x200, DF: 0x400, OF: 0x800,
} as const;
/** The six arithmetic status flags an ALU operation rewrites. */
export const STATUS_FLAGS = Flag.CF | Flag.PF | Flag.AF | Flag.ZF | Flag.SF | Flag.OF;

export type OpSize = 8 | 16 | 32 | 64;

/** Result of one operation: the value and the new status flags. Reused to avoid allocation. */
export interface AluOut {
  lo: number;
  hi: number;
  flags: number;
}

export function newAluOut(): AluOut {
  return { lo: 0, hi: 0, flags: 0 };
}

const PARITY = new Uint8Array(256);
for (let i = 0; i < 256; i++) {
  let bits = 0;
  for (let v = i; v; v >>= 1) bits += v & 1;
  PARITY[i] = bits % 2 === 0 ? Flag.PF : 0;
}

function mask(size: OpSize): number {
  return size === 8 ? 0xff : size === 16 ? 0xffff : 0xffffffff;
}

function signBit(size: OpSize): number {
  return size === 8 ? 0x80 : size === 16 ? 0x8000 : 0x80000000;
}

/** ZF, SF and PF of a result. */
function szp(size: OpSize, lo: number, hi: number): number {
  const top = size === 64 ? hi : lo;
  let f = PARITY[lo & 0xff];
  if (lo === 0 && hi === 0) f |= Flag.ZF;
  if ((top & signBit(size === 64 ? 32 : size)) !== 0) f |= Flag.SF;
  return f;
}

/** a + b + carryIn (ADD, ADC, INC). */
export function aluAdd(size: OpSize, aLo: number, aHi: number, bLo: number, bHi: number, carryIn: number, out: AluOut): void {
  let cf: boolean;
  let of: boolean;
  let lo: number;
  let hi = 0;
  if (size === 64) {
    const sl = aLo + bLo + carryIn;
    lo = sl >>> 0;
    const sh = aHi + bHi + (sl > 0xffffffff ? 1 : 0);
    hi = sh >>> 0;
    cf = sh > 0xffffffff;
    of = ((aHi ^ hi) & (bHi ^ hi) & 0x80000000) !== 0;
  } else {
    const m = mask(size);
    const s = aLo + bLo + carryIn;
    lo = size === 32 ? s >>> 0 : s & m;
    cf = s > m;
    of = ((aLo ^ lo) & (bLo ^ lo) & signBit(size)) !== 0;
  }
  out.lo = lo;
  out.hi = hi;
  out.flags = szp(size, lo, hi) | (cf ? Flag.CF : 0) | (of ? Flag.OF : 0) | ((aLo ^ bLo ^ lo) & Flag.AF);
}

/** a - b - borrowIn (SUB, SBB, CMP, DEC, NEG). */
export function aluSub(size: OpSize, aLo: number, aHi: number, bLo: number, bHi: number, borrowIn: number, out: AluOut): void {
  let cf: boolean;
  let of: boolean;
  let lo: number;
  let hi = 0;
  if (size === 64) {
    const dl = aLo - bLo - borrowIn;
    lo = dl >>> 0;
    const dh = aHi - bHi - (dl < 0 ? 1 : 0);
    hi = dh >>> 0;
    cf = dh < 0;
    of = ((aHi ^ bHi) & (aHi ^ hi) & 0x80000000) !== 0;
  } else {
    const d = aLo - bLo - borrowIn;
    lo = size === 32 ? d >>> 0 : d & mask(size);
    cf = d < 0;
    of = ((aLo ^ bLo) & (aLo ^ lo) & signBit(size)) !== 0;
  }
  out.lo = lo;
  out.hi = hi;
  out.flags = szp(size, lo, hi) | (cf ? Flag.CF : 0) | (of ? Flag.OF : 0) | ((aLo ^ bLo ^ lo) & Flag.AF);
}

export const enum LogicOp { And, Or, Xor }

/** AND/OR/XOR/TEST: CF = OF = 0 (AF is undefined on hardware; we clear it). */
export function aluLogic(op: LogicOp, size: OpSize, aLo: number, aHi: number, bLo: number, bHi: number, out: AluOut): void {
  let lo: number;
  let hi: number;
  switch (op) {
    case LogicOp.And: lo = aLo & bLo; hi = aHi & bHi; break;
    case LogicOp.Or: lo = aLo | bLo; hi = aHi | bHi; break;
    case LogicOp.Xor: lo = aLo ^ bLo; hi = aHi ^ bHi; break;
  }
  lo >>>= 0;
  hi = size === 64 ? hi >>> 0 : 0;
  if (size < 32) lo &= mask(size);
  out.lo = lo;
  out.hi = hi;
  out.flags = szp(size, lo, hi);
}

export const enum ShiftOp { Shl, Shr, Sar }

/**
 * SHL/SHR/SAR by `count` (already masked to 5 or 6 bits by the caller, as the CPU does).
 * Returns false for a zero count: then neither the value nor the flags change.
 * OF follows the count-1 definition for every count (it is undefined otherwise).
 */
export function aluShift(op: ShiftOp, size: OpSize, aLo: number, aHi: number, count: number, out: AluOut): boolean {
  if (count === 0) return false;
  let lo: number;
  let hi = 0;
  let cf: number;
  let of: boolean;
  if (size === 64) {
    const sh = aHi | 0;
    if (op === ShiftOp.Shl) {
      if (count < 32) {
        hi = ((aHi << count) | (aLo >>> (32 - count))) >>> 0;
        lo = (aLo << count) >>> 0;
        cf = (aHi >>> (32 - count)) & 1;
      } else {
        const c = count - 32;
        hi = (aLo << c) >>> 0;
        lo = 0;
        cf = c === 0 ? aHi & 1 : (aLo >>> (32 - c)) & 1;
      }
      of = ((hi >>> 31) ^ cf) !== 0;
    } else {
      if (count < 32) {
        lo = ((aLo >>> count) | (aHi << (32 - count))) >>> 0;
        hi = op === ShiftOp.Shr ? aHi >>> count : (sh >> count) >>> 0;
        cf = (aLo >>> (count - 1)) & 1;
      } else {
        const c = count - 32;
        lo = op === ShiftOp.Shr ? aHi >>> c : (sh >> c) >>> 0;
        hi = op === ShiftOp.Shr ? 0 : (sh >> 31) >>> 0;
        cf = c === 0 ? aLo >>> 31 : op === ShiftOp.Shr ? (aHi >>> (c - 1)) & 1 : (sh >> (c - 1)) & 1;
      }
      of = op === ShiftOp.Shr ? aHi >>> 31 !== 0 : false;
    }
  } else {
    const m = mask(size);
    const sb = signBit(size);
    if (op === ShiftOp.Shl) {
      lo = count >= size ? 0 : (aLo << count) & m;
      if (size === 32) lo >>>= 0;
      cf = count > size ? 0 : (aLo >>> (size - count)) & 1;
      of = (((lo & sb) !== 0 ? 1 : 0) ^ cf) !== 0;
    } else if (op === ShiftOp.Shr) {
      lo = count >= 32 ? 0 : aLo >>> count;
      cf = count > size ? 0 : (aLo >>> (count - 1)) & 1;
      of = (aLo & sb) !== 0;
    } else {
      const sv = size === 8 ? (aLo << 24) >> 24 : size === 16 ? (aLo << 16) >> 16 : aLo | 0;
      const c = Math.min(count, 31);
      lo = (sv >> c) & m;
      if (size === 32) lo >>>= 0;
      cf = (sv >> Math.min(count - 1, 31)) & 1;
      of = false;
    }
  }
  out.lo = lo;
  out.hi = hi;
  out.flags = szp(size, lo, hi) | (cf ? Flag.CF : 0) | (of ? Flag.OF : 0);
  return true;
}

/** Jcc/SETcc condition `cc` (the low nibble of the opcode) against `rflags`. */
export function condition(cc: number, rflags: number): boolean {
  let r: boolean;
  switch (cc >> 1) {
    case 0: r = (rflags & Flag.OF) !== 0; break;
    case 1: r = (rflags & Flag.CF) !== 0; break;
    case 2: r = (rflags & Flag.ZF) !== 0; break;
    case 3: r = (rflags & (Flag.CF | Flag.ZF)) !== 0; break;
    case 4: r = (rflags & Flag.SF) !== 0; break;
    case 5: r = (rflags & Flag.PF) !== 0; break;
    case 6: r = ((rflags & Flag.SF) !== 0) !== ((rflags & Flag.OF) !== 0); break;
    default: r = (rflags & Flag.ZF) !== 0 || ((rflags & Flag.SF) !== 0) !== ((rflags & Flag.OF) !== 0); break;
  }
  return (cc & 1) !== 0 ? !r : r;
}
