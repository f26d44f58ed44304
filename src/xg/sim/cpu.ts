// The simulated CPU's instruction set: a documented subset of x86 (docs/sim.md), in
// 64-bit long mode and 32-bit protected mode, all at CPL 0. Anything outside the
// subset raises #UD so that guest bugs (and emulator gaps) are loud.
import {
  AluOut, Flag, LogicOp, OpSize, STATUS_FLAGS, ShiftOp, aluAdd, aluLogic, aluShift, aluSub, condition, newAluOut,
} from './alu';
import { CpuFault, Gpr, Val, Vector, X86Core, hex64 } from './cpu-core';
import { isCanonical } from './paging';

export const enum StepResult {
  /** The instruction completed. */
  Ok,
  /** hlt completed: the CPU sleeps until the next timer tick (scheduler.ts). */
  Halt,
  /** int3 trapped: rip is already past it. */
  Int3,
  /** A fault (see `fault`): the instruction had no effect. */
  Fault,
}

/** Opcodes that accept a lock prefix (with a memory destination; ModRM.reg checked separately). */
const LOCKABLE = new Set([0x00, 0x01, 0x08, 0x09, 0x10, 0x11, 0x18, 0x19, 0x20, 0x21, 0x28, 0x29, 0x30, 0x31,
  0x80, 0x81, 0x83, 0xf6, 0xf7, 0xfe, 0xff]);

/** Bytes that may be prefixes (REX only in long mode, checked in the loop): one lookup for the common case. */
const PREFIX = new Uint8Array(256);
for (const b of [0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x66, 0xf0, 0xf2, 0xf3]) PREFIX[b] = 1;
for (let b = 0x40; b < 0x50; b++) PREFIX[b] = 1;

function ud(what: string): CpuFault {
  return new CpuFault(Vector.UD, `#UD: ${what}`);
}

export class X86Cpu extends X86Core {
  /** The last fault, when step() returned Fault. */
  fault: CpuFault | undefined;
  /**
   * PV guests: cli/sti set the virtual event mask (evtchn_upcall_mask) and rflags.IF
   * stays set, as Xen forces it. HVM guests: cli/sti change rflags.IF.
   */
  readonly virtualIf: boolean;
  eventMask = false;

  private readonly a: Val = { lo: 0, hi: 0 };
  private readonly b: Val = { lo: 0, hi: 0 };
  private readonly t: Val = { lo: 0, hi: 0 };
  private readonly out: AluOut = newAluOut();
  private lock = false;

  constructor(mem: Buffer, long: boolean, virtualIf: boolean) {
    super(mem, long);
    this.virtualIf = virtualIf;
  }

  /** Execute one instruction. */
  step(): StepResult {
    this.beginFetch();
    try {
      const r = this.exec();
      this.ripLo = this.fLo;
      this.ripHi = this.fHi;
      return r;
    } catch (e) {
      if (!(e instanceof CpuFault)) throw e;
      this.fault = e;
      return StepResult.Fault;
    }
  }

  private exec(): StepResult {
    let opsize16 = false;
    let rep = 0;
    this.lock = false;
    this.hasRex = false;
    this.rexW = false;
    this.rexR = this.rexX = this.rexB = 0;
    this.segLo = this.segHi = 0;
    let op = this.fetch8();
    for (let n = 0; PREFIX[op] !== 0; n++) {
      if (n > 14) throw new CpuFault(Vector.GP, '#GP: instruction longer than 15 bytes');
      if (op === 0x66) opsize16 = true;
      else if (op === 0xf0) this.lock = true;
      else if (op === 0xf2 || op === 0xf3) rep = op;
      else if (op === 0x26 || op === 0x2e || op === 0x36 || op === 0x3e) { /* flat segments: no effect */ }
      else if (op === 0x64 || op === 0x65) {
        // fs/gs overrides add the segment base (long mode only: no descriptor tables here).
        if (!this.long) throw ud('fs/gs segment override in 32-bit mode');
        const base = op === 0x64 ? this.fsBase : this.gsBase;
        this.segLo = Number(base & 0xffffffffn);
        this.segHi = Number((base >> 32n) & 0xffffffffn);
      } else if (this.long && (op & 0xf0) === 0x40) {
        // REX must come last: the next byte is the opcode.
        this.hasRex = true;
        this.rexW = (op & 8) !== 0;
        this.rexR = (op & 4) << 1;
        this.rexX = (op & 2) << 2;
        this.rexB = (op & 1) << 3;
        op = this.fetch8();
        break;
      } else break; // 0x40-0x4f in 32-bit mode: inc/dec
      op = this.fetch8();
    }
    const osz: OpSize = this.rexW ? 64 : opsize16 ? 16 : 32;
    if (this.lock && !LOCKABLE.has(op)) throw ud('lock prefix on a non-lockable instruction');
    if (rep !== 0 && !(rep === 0xf3 && op === 0x90)) throw ud('rep prefix (string instructions are not simulated)');
    if (op === 0x0f) return this.exec0f(this.fetch8(), osz);
    return this.exec1(op, osz, opsize16);
  }

  private exec1(op: number, osz: OpSize, opsize16: boolean): StepResult {
    const { a, b } = this;
    if (op < 0x40) {
      if ((op & 7) > 5) throw ud(`opcode ${op.toString(16)}`);
      return this.aluForm(op >>> 3, op & 7, osz);
    }
    if (op < 0x50) {
      // 32-bit mode only (in long mode these are REX prefixes): inc/dec r32.
      const r = op & 7;
      this.getReg(r, osz, a);
      this.incDec(op >= 0x48, osz, a);
      this.setReg(r, osz, this.out.lo, this.out.hi);
      return StepResult.Ok;
    }
    switch (op) {
      case 0x50: case 0x51: case 0x52: case 0x53: case 0x54: case 0x55: case 0x56: case 0x57:
        this.noOpsize16(opsize16);
        this.getReg((op & 7) | this.rexB, this.stackSize(), a);
        this.push(a.lo, a.hi);
        return StepResult.Ok;
      case 0x58: case 0x59: case 0x5a: case 0x5b: case 0x5c: case 0x5d: case 0x5e: case 0x5f:
        this.noOpsize16(opsize16);
        this.pop(a);
        this.setReg((op & 7) | this.rexB, this.stackSize(), a.lo, a.hi);
        return StepResult.Ok;
      case 0x63: {
        // movsxd r64, r/m32 (long mode only; 0x63 is arpl in 32-bit mode).
        if (!this.long) throw ud('arpl');
        this.decodeModRM(0);
        this.readRM(32, a);
        if (osz === 64) this.setReg(this.mReg, 64, a.lo, a.lo & 0x80000000 ? 0xffffffff : 0);
        else this.setReg(this.mReg, osz, a.lo, 0);
        return StepResult.Ok;
      }
      case 0x68: case 0x6a:
        this.noOpsize16(opsize16);
        this.imm(op === 0x6a ? 1 : 4, this.stackSize(), a);
        this.push(a.lo, a.hi);
        return StepResult.Ok;
      case 0x80: case 0x81: case 0x83: {
        const size: OpSize = op === 0x80 ? 8 : osz;
        const immBytes = op === 0x81 ? this.immBytes(osz) : 1;
        this.decodeModRM(immBytes);
        const sub = this.mReg & 7;
        this.checkLock(sub !== 7);
        this.imm(immBytes, size, b);
        this.readRM(size, a);
        if (this.alu(sub, size, a, b)) this.writeRM(size, this.out.lo, this.out.hi);
        return StepResult.Ok;
      }
      case 0x84: case 0x85: {
        const size: OpSize = op === 0x84 ? 8 : osz;
        this.decodeModRM(0);
        this.readRM(size, a);
        this.getReg(this.mReg, size, b);
        this.logic(LogicOp.And, size, a, b);
        return StepResult.Ok;
      }
      case 0x88: case 0x89: {
        const size: OpSize = op === 0x88 ? 8 : osz;
        this.decodeModRM(0);
        this.getReg(this.mReg, size, a);
        this.writeRM(size, a.lo, a.hi);
        return StepResult.Ok;
      }
      case 0x8a: case 0x8b: {
        const size: OpSize = op === 0x8a ? 8 : osz;
        this.decodeModRM(0);
        this.readRM(size, a);
        this.setReg(this.mReg, size, a.lo, a.hi);
        return StepResult.Ok;
      }
      case 0x8d:
        this.decodeModRM(0);
        if (!this.mIsMem) throw ud('lea with a register operand');
        this.setReg(this.mReg, osz, osz === 16 ? this.eaLo & 0xffff : this.eaLo, this.eaHi);
        return StepResult.Ok;
      case 0x90:
        // nop / pause (F3 90); with REX.B it would be xchg r8, rax.
        if (this.rexB) throw ud('xchg');
        return StepResult.Ok;
      case 0xa0: case 0xa1: case 0xa2: case 0xa3: {
        // mov al/eax/rax <-> [moffs]: an absolute address as wide as the address size.
        const size: OpSize = (op & 1) === 0 ? 8 : osz;
        const lo = this.fetch32();
        const hi = this.long ? this.fetch32() : 0;
        const s = lo + this.segLo;
        const eaLo = s >>> 0;
        const eaHi = this.long ? (hi + this.segHi + (s > 0xffffffff ? 1 : 0)) >>> 0 : 0;
        if (op <= 0xa1) {
          this.readMem(eaLo, eaHi, size, a);
          this.setReg(Gpr.rax, size, a.lo, a.hi);
        } else {
          this.getReg(Gpr.rax, size, a);
          this.writeMem(eaLo, eaHi, size, a.lo, a.hi);
        }
        return StepResult.Ok;
      }
      case 0xa8: case 0xa9: {
        const size: OpSize = op === 0xa8 ? 8 : osz;
        this.getReg(Gpr.rax, size, a);
        this.imm(this.immBytes(size), size, b);
        this.logic(LogicOp.And, size, a, b);
        return StepResult.Ok;
      }
      case 0xb0: case 0xb1: case 0xb2: case 0xb3: case 0xb4: case 0xb5: case 0xb6: case 0xb7:
        this.setReg((op & 7) | this.rexB, 8, this.fetch8(), 0);
        return StepResult.Ok;
      case 0xb8: case 0xb9: case 0xba: case 0xbb: case 0xbc: case 0xbd: case 0xbe: case 0xbf: {
        const r = (op & 7) | this.rexB;
        if (osz === 64) {
          const lo = this.fetch32();
          this.setReg(r, 64, lo, this.fetch32());
        } else {
          this.setReg(r, osz, osz === 16 ? this.fetch16() : this.fetch32(), 0);
        }
        return StepResult.Ok;
      }
      case 0xc0: case 0xc1: case 0xd0: case 0xd1: case 0xd2: case 0xd3: {
        const size: OpSize = (op & 1) === 0 ? 8 : osz;
        this.decodeModRM(op <= 0xc1 ? 1 : 0);
        const count = op <= 0xc1 ? this.fetch8() : op <= 0xd1 ? 1 : this.lo[Gpr.rcx] & 0xff;
        this.shift(this.mReg & 7, size, count);
        return StepResult.Ok;
      }
      case 0xc3:
        this.noOpsize16(opsize16);
        this.pop(a);
        this.jumpTo(a.lo, a.hi);
        return StepResult.Ok;
      case 0xc6: case 0xc7: {
        const size: OpSize = op === 0xc6 ? 8 : osz;
        const immBytes = this.immBytes(size);
        this.decodeModRM(immBytes);
        if ((this.mReg & 7) !== 0) throw ud(`opcode ${op.toString(16)} /${this.mReg & 7}`);
        this.imm(immBytes, size, a);
        this.writeRM(size, a.lo, a.hi);
        return StepResult.Ok;
      }
      case 0xcc:
        return StepResult.Int3;
      case 0xe8: case 0xe9: {
        this.noOpsize16(opsize16);
        const rel = this.fetch32() | 0;
        if (op === 0xe8) this.push(this.fLo, this.fHi);
        this.jumpRel(rel);
        return StepResult.Ok;
      }
      case 0xeb:
        this.jumpRel(this.fetchS8());
        return StepResult.Ok;
      case 0xf4:
        return StepResult.Halt;
      case 0xf6: case 0xf7:
        return this.group3(op === 0xf6 ? 8 : osz);
      case 0xfa: case 0xfb:
        if (this.virtualIf) this.eventMask = op === 0xfa;
        else this.rflags = op === 0xfa ? this.rflags & ~Flag.IF : this.rflags | Flag.IF;
        return StepResult.Ok;
      case 0xfe: case 0xff:
        return this.group45(op === 0xfe ? 8 : osz, op === 0xfe, opsize16);
      default:
        if (op >= 0x70 && op <= 0x7f) {
          const rel = this.fetchS8();
          if (condition(op & 0xf, this.rflags)) this.jumpRel(rel);
          return StepResult.Ok;
        }
        throw ud(`opcode ${op.toString(16)}`);
    }
  }

  private exec0f(op: number, osz: OpSize): StepResult {
    const { a } = this;
    if (op >= 0x80 && op <= 0x8f) {
      const rel = this.fetch32() | 0;
      if (condition(op & 0xf, this.rflags)) this.jumpRel(rel);
      return StepResult.Ok;
    }
    switch (op) {
      case 0x0b:
        throw ud('ud2');
      case 0x1f:
        // nopw/nopl r/m: decoded, never accessed.
        this.decodeModRM(0);
        return StepResult.Ok;
      case 0xb6: case 0xb7: case 0xbe: case 0xbf: {
        const from: OpSize = (op & 1) === 0 ? 8 : 16;
        this.decodeModRM(0);
        this.readRM(from, a);
        let lo = a.lo;
        let hi = 0;
        if (op >= 0xbe) {
          // Sign-extend to 64 bits, then let setReg truncate.
          lo = (from === 8 ? (lo << 24) >> 24 : (lo << 16) >> 16) >>> 0;
          hi = lo & 0x80000000 ? 0xffffffff : 0;
        }
        this.setReg(this.mReg, osz, osz === 16 ? lo & 0xffff : lo, hi);
        return StepResult.Ok;
      }
      default:
        throw ud(`opcode 0f ${op.toString(16)}`);
    }
  }

  /** The eight classic ALU ops in their six encodings (00-3d). */
  private aluForm(aluOp: number, form: number, osz: OpSize): StepResult {
    const { a, b } = this;
    const size: OpSize = (form & 1) === 0 ? 8 : osz;
    if (form >= 4) {
      this.getReg(Gpr.rax, size, a);
      this.imm(this.immBytes(size), size, b);
      if (this.alu(aluOp, size, a, b)) this.setReg(Gpr.rax, size, this.out.lo, this.out.hi);
      return StepResult.Ok;
    }
    this.decodeModRM(0);
    if (form < 2) {
      this.checkLock(aluOp !== 7);
      this.readRM(size, a);
      this.getReg(this.mReg, size, b);
      if (this.alu(aluOp, size, a, b)) this.writeRM(size, this.out.lo, this.out.hi);
    } else {
      this.getReg(this.mReg, size, a);
      this.readRM(size, b);
      if (this.alu(aluOp, size, a, b)) this.setReg(this.mReg, size, this.out.lo, this.out.hi);
    }
    return StepResult.Ok;
  }

  /** test/not/neg (F6/F7); mul and div are not simulated. */
  private group3(size: OpSize): StepResult {
    const { a, b } = this;
    const peek = this.peekReg();
    const immBytes = peek === 0 ? this.immBytes(size) : 0;
    this.decodeModRM(immBytes);
    this.checkLock(peek === 2 || peek === 3);
    switch (peek) {
      case 0:
        this.imm(immBytes, size, b);
        this.readRM(size, a);
        this.logic(LogicOp.And, size, a, b);
        return StepResult.Ok;
      case 2:
        this.readRM(size, a);
        this.writeRM(size, (~a.lo & mask(size)) >>> 0, size === 64 ? ~a.hi >>> 0 : 0);
        return StepResult.Ok;
      case 3:
        this.readRM(size, a);
        aluSub(size, 0, 0, a.lo, a.hi, 0, this.out);
        this.setStatus(this.out.flags);
        this.writeRM(size, this.out.lo, this.out.hi);
        return StepResult.Ok;
      default:
        throw ud(`opcode f6/f7 /${peek} (mul/div)`);
    }
  }

  /** inc/dec (FE/FF) and call/jmp/push r/m (FF). */
  private group45(size: OpSize, byteForm: boolean, opsize16: boolean): StepResult {
    const { a } = this;
    this.decodeModRM(0);
    const sub = this.mReg & 7;
    this.checkLock(sub <= 1);
    if (sub <= 1) {
      this.readRM(size, a);
      this.incDec(sub === 1, size, a);
      this.writeRM(size, this.out.lo, this.out.hi);
      return StepResult.Ok;
    }
    if (byteForm) throw ud(`opcode fe /${sub}`);
    this.noOpsize16(opsize16);
    switch (sub) {
      case 2:
      case 4:
        // Near call/jmp: the operand is 64-bit in long mode whatever REX.W says.
        this.readRM(this.stackSize(), a);
        if (sub === 2) this.push(this.fLo, this.fHi);
        this.jumpTo(a.lo, a.hi);
        return StepResult.Ok;
      case 6:
        this.readRM(this.stackSize(), a);
        this.push(a.lo, a.hi);
        return StepResult.Ok;
      default:
        throw ud(`opcode ff /${sub}`);
    }
  }

  // ---- helpers ----

  /** ModRM.reg of the next byte, without consuming it (group 3 needs it to size the immediate). */
  private peekReg(): number {
    const lo = this.fLo;
    const hi = this.fHi;
    const m = this.fetch8();
    this.fLo = lo;
    this.fHi = hi;
    return (m >>> 3) & 7;
  }

  private checkLock(allowed: boolean): void {
    if (this.lock && !(allowed && this.mIsMem)) throw ud('lock prefix without a lockable memory destination');
  }

  private noOpsize16(opsize16: boolean): void {
    if (opsize16) throw ud('16-bit operand size for a stack or branch instruction');
  }

  private stackSize(): OpSize {
    return this.long ? 64 : 32;
  }

  private immBytes(size: OpSize): number {
    return size === 8 ? 1 : size === 16 ? 2 : 4;
  }

  /** Fetch an immediate of `bytes` and sign-extend it to `size`. */
  private imm(bytes: number, size: OpSize, out: Val): void {
    let v = bytes === 1 ? this.fetchS8() : bytes === 2 ? (this.fetch16() << 16) >> 16 : this.fetch32() | 0;
    if (size < 32) v &= mask(size);
    out.lo = v >>> 0;
    out.hi = size === 64 && v < 0 ? 0xffffffff : 0;
  }

  private setStatus(flags: number): void {
    this.rflags = (this.rflags & ~STATUS_FLAGS) | flags;
  }

  /** One of add/or/adc/sbb/and/sub/xor/cmp into `out`; returns false for cmp (no write-back). */
  private alu(op: number, size: OpSize, a: Val, b: Val): boolean {
    const o = this.out;
    const cf = this.rflags & Flag.CF;
    switch (op) {
      case 0: aluAdd(size, a.lo, a.hi, b.lo, b.hi, 0, o); break;
      case 1: aluLogic(LogicOp.Or, size, a.lo, a.hi, b.lo, b.hi, o); break;
      case 2: aluAdd(size, a.lo, a.hi, b.lo, b.hi, cf, o); break;
      case 3: aluSub(size, a.lo, a.hi, b.lo, b.hi, cf, o); break;
      case 4: aluLogic(LogicOp.And, size, a.lo, a.hi, b.lo, b.hi, o); break;
      case 5: case 7: aluSub(size, a.lo, a.hi, b.lo, b.hi, 0, o); break;
      default: aluLogic(LogicOp.Xor, size, a.lo, a.hi, b.lo, b.hi, o); break;
    }
    this.setStatus(o.flags);
    return op !== 7;
  }

  private logic(op: LogicOp, size: OpSize, a: Val, b: Val): void {
    aluLogic(op, size, a.lo, a.hi, b.lo, b.hi, this.out);
    this.setStatus(this.out.flags);
  }

  /** inc/dec into `out`: like add/sub 1 but CF is preserved. */
  private incDec(dec: boolean, size: OpSize, a: Val): void {
    if (dec) aluSub(size, a.lo, a.hi, 1, 0, 0, this.out);
    else aluAdd(size, a.lo, a.hi, 1, 0, 0, this.out);
    this.setStatus((this.out.flags & ~Flag.CF) | (this.rflags & Flag.CF));
  }

  private shift(sub: number, size: OpSize, count: number): void {
    if (sub < 4) throw ud(`rotate (group 2 /${sub})`);
    const op = sub === 5 ? ShiftOp.Shr : sub === 7 ? ShiftOp.Sar : ShiftOp.Shl;
    this.readRM(size, this.a);
    if (aluShift(op, size, this.a.lo, this.a.hi, count & (size === 64 ? 63 : 31), this.out)) {
      this.setStatus(this.out.flags);
      this.writeRM(size, this.out.lo, this.out.hi);
    }
  }

  private push(lo: number, hi: number): void {
    const size = this.stackSize();
    const t = this.t;
    this.addrAdd(this.lo[Gpr.rsp], this.hi[Gpr.rsp], -(size >>> 3), t);
    this.writeMem(t.lo, t.hi, size, lo, hi);
    this.lo[Gpr.rsp] = t.lo;
    this.hi[Gpr.rsp] = t.hi;
  }

  private pop(out: Val): void {
    const size = this.stackSize();
    const t = this.t;
    this.readMem(this.lo[Gpr.rsp], this.hi[Gpr.rsp], size, out);
    this.addrAdd(this.lo[Gpr.rsp], this.hi[Gpr.rsp], size >>> 3, t);
    this.lo[Gpr.rsp] = t.lo;
    this.hi[Gpr.rsp] = t.hi;
  }

  private jumpRel(rel: number): void {
    this.addrAdd(this.fLo, this.fHi, rel, this.t);
    this.jumpTo(this.t.lo, this.t.hi);
  }

  /** Continue at (lo, hi): becomes rip when the instruction completes. */
  private jumpTo(lo: number, hi: number): void {
    if (this.long && !isCanonical(hi)) throw new CpuFault(Vector.GP, `#GP: jump to non-canonical ${hex64(lo, hi)}`);
    this.fLo = lo;
    this.fHi = this.long ? hi : 0;
  }
}

function mask(size: OpSize): number {
  return size === 8 ? 0xff : size === 16 ? 0xffff : 0xffffffff;
}
