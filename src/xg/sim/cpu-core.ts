// State of one simulated x86 CPU and its operand plumbing: registers, paged memory
// access through the CPU's own cr3 (with a small TLB), instruction fetch and ModRM/SIB
// decoding. The instruction set itself is in cpu.ts.
import { OpSize } from './alu';
import { CPU_RULES, PAGE_SIZE, UNMAPPED, walk4, walkPae } from './paging';

/** x86 exception vectors the simulation raises. */
export const Vector = { DE: 0, DB: 1, BP: 3, UD: 6, GP: 13, PF: 14 } as const;

/** A fault while executing an instruction: the instruction has no effect (rip unchanged). */
export class CpuFault extends Error {
  readonly vector: number;
  constructor(vector: number, message: string) {
    super(message);
    this.vector = vector;
  }
}

/** GPR numbers as encoded in instructions. */
export const Gpr = {
  rax: 0, rcx: 1, rdx: 2, rbx: 3, rsp: 4, rbp: 5, rsi: 6, rdi: 7,
  r8: 8, r9: 9, r10: 10, r11: 11, r12: 12, r13: 13, r14: 14, r15: 15,
} as const;
export type GprName = keyof typeof Gpr;

/** An operand value as a (lo, hi) pair of unsigned 32-bit numbers. */
export interface Val {
  lo: number;
  hi: number;
}

export function hex64(lo: number, hi: number): string {
  return '0x' + (hi ? hi.toString(16) + lo.toString(16).padStart(8, '0') : lo.toString(16));
}

export function toBig(lo: number, hi: number): bigint {
  return (BigInt(hi) << 32n) | BigInt(lo);
}

export class X86Core {
  /** GPRs: low and high 32 bits; in 32-bit mode `hi` stays 0. */
  readonly lo = new Uint32Array(16);
  readonly hi = new Uint32Array(16);
  ripLo = 0;
  ripHi = 0;
  rflags = 0x2;
  /** Long mode (64-bit code) or 32-bit protected mode with PAE paging. */
  readonly long: boolean;
  /** Control and debug registers as the VCPU context shows them (cold: bigint). */
  cr0 = 0n;
  cr2 = 0n;
  cr4 = 0n;
  dr: bigint[] = [0n, 0n, 0n, 0n, 0n, 0n, 0xffff0ff0n, 0x400n];
  fsBase = 0n;
  gsBase = 0n;
  gsBaseUser = 0n;
  private cr3Value = 0n;
  /** Page-table root as a number, for the walker. */
  private root = 0;

  /** The physical memory this CPU addresses (the domain's RAM). */
  readonly mem: Buffer;
  /** Log-dirty on: one byte per frame of `mem`, set on every write (the domain's, shared by its VCPUs). */
  dirtyLog: Uint8Array | undefined;
  private readonly tlb = new Map<number, number>();
  /**
   * Data breakpoints armed from DR7 (armDataBreakpoints): bit n set when DRn watches
   * writes (R/W = 01) or reads and writes (R/W = 11). Zero keeps memory access fast.
   */
  watchMask = 0;
  /** Slots whose data breakpoint matched an access of the current instruction (DR6's B0-3 to be). */
  dataHits = 0;
  private readonly watchStart: bigint[] = [0n, 0n, 0n, 0n];
  private readonly watchLen: bigint[] = [1n, 1n, 1n, 1n];
  private readonly watchReads: boolean[] = [false, false, false, false];
  private lastKey = -1;
  private lastBase = 0;

  // Instruction fetch cursor (address of the next byte to decode).
  protected fLo = 0;
  protected fHi = 0;
  private fKey = -1;
  private fBase = 0;

  // Decoded ModRM of the current instruction.
  protected hasRex = false;
  protected rexW = false;
  protected rexR = 0;
  protected rexX = 0;
  protected rexB = 0;
  /** 0x64/0x65 segment override in long mode: add this base (lo/hi), else 0. */
  protected segLo = 0;
  protected segHi = 0;
  /** ModRM.reg with REX.R. */
  protected mReg = 0;
  /** ModRM.rm with REX.B when it names a register. */
  protected mRm = 0;
  protected mIsMem = false;
  protected eaLo = 0;
  protected eaHi = 0;

  constructor(mem: Buffer, long: boolean) {
    this.mem = mem;
    this.long = long;
  }

  get cr3(): bigint {
    return this.cr3Value;
  }

  set cr3(v: bigint) {
    this.cr3Value = v;
    this.root = Number(BigInt.asUintN(52, v));
    this.flushTlb();
  }

  /** Drop cached translations (a new slice, a new cr3, page tables edited from outside). */
  flushTlb(): void {
    this.tlb.clear();
    this.lastKey = -1;
    this.fKey = -1;
  }

  get rip(): bigint {
    return toBig(this.ripLo, this.ripHi);
  }

  set rip(v: bigint) {
    this.ripLo = Number(v & 0xffffffffn);
    this.ripHi = this.long ? Number((v >> 32n) & 0xffffffffn) : 0;
  }

  getGpr(n: number): bigint {
    return toBig(this.lo[n], this.hi[n]);
  }

  setGpr(n: number, v: bigint): void {
    this.lo[n] = Number(v & 0xffffffffn);
    this.hi[n] = this.long ? Number((v >> 32n) & 0xffffffffn) : 0;
  }

  // ---- paging ----

  /** Virtual to physical through this CPU's page tables, or UNMAPPED. */
  translate(lo: number, hi: number): number {
    if (!this.long && hi !== 0) return UNMAPPED;
    const key = hi * 1048576 + (lo >>> 12);
    if (key === this.lastKey) return this.lastBase + (lo & 0xfff);
    let base = this.tlb.get(key);
    if (base === undefined) {
      const pageLo = (lo & 0xfffff000) >>> 0;
      base = this.long ? walk4(this.mem, this.root, pageLo, hi, CPU_RULES) : walkPae(this.mem, this.root, pageLo, CPU_RULES);
      if (base === UNMAPPED) return UNMAPPED;
      this.tlb.set(key, base);
    }
    this.lastKey = key;
    this.lastBase = base;
    return base + (lo & 0xfff);
  }

  private xlate(lo: number, hi: number): number {
    const pa = this.translate(lo, hi);
    if (pa === UNMAPPED) {
      this.cr2 = toBig(lo, hi);
      throw new CpuFault(Vector.PF, `#PF: page fault at ${hex64(lo, hi)}`);
    }
    return pa;
  }

  /** Address + small signed delta, wrapping at 64 bits (long mode) or 32 bits. */
  protected addrAdd(lo: number, hi: number, delta: number, out: Val): void {
    const s = lo + delta;
    out.lo = s >>> 0;
    if (!this.long) out.hi = 0;
    else if (s > 0xffffffff) out.hi = (hi + 1) >>> 0;
    else if (s < 0) out.hi = (hi - 1) >>> 0;
    else out.hi = hi;
  }

  private readonly tmpA: Val = { lo: 0, hi: 0 };

  /**
   * Read DR0-3/DR7 into the data-breakpoint state (DR7 changes only through a VCPU
   * context write, between slices). LEN 00/01/11/10 = 1/2/4/8 bytes; the hardware
   * ignores the address bits below the length. R/W 10 (I/O) is not modelled.
   */
  armDataBreakpoints(): void {
    const dr7 = this.dr[7];
    let mask = 0;
    for (let n = 0; n < 4; n++) {
      const enabled = (dr7 >> BigInt(2 * n)) & 3n;
      const rw = Number((dr7 >> BigInt(16 + 4 * n)) & 3n);
      if (enabled === 0n || (rw !== 1 && rw !== 3)) continue;
      const len = [1n, 2n, 8n, 4n][Number((dr7 >> BigInt(18 + 4 * n)) & 3n)];
      this.watchLen[n] = len;
      this.watchStart[n] = this.dr[n] & ~(len - 1n);
      this.watchReads[n] = rw === 3;
      mask |= 1 << n;
    }
    this.watchMask = mask;
    this.dataHits = 0;
  }

  /** An access of `bytes` at lo:hi: note each armed slot it touches. */
  private noteAccess(lo: number, hi: number, bytes: number, write: boolean): void {
    const a = toBig(lo, hi);
    const end = a + BigInt(bytes);
    for (let n = 0; n < 4; n++) {
      if ((this.watchMask & (1 << n)) === 0 || (!write && !this.watchReads[n])) continue;
      const s = this.watchStart[n];
      if (a < s + this.watchLen[n] && s < end) this.dataHits |= 1 << n;
    }
  }

  readMem(lo: number, hi: number, size: OpSize, out: Val): void {
    const bytes = size >>> 3;
    const mem = this.mem;
    if (this.watchMask !== 0) this.noteAccess(lo, hi, bytes, false);
    if ((lo & 0xfff) + bytes <= PAGE_SIZE) {
      const pa = this.xlate(lo, hi);
      out.hi = 0;
      switch (size) {
        case 8: out.lo = mem[pa]; break;
        case 16: out.lo = mem.readUInt16LE(pa); break;
        case 32: out.lo = mem.readUInt32LE(pa); break;
        case 64: out.lo = mem.readUInt32LE(pa); out.hi = mem.readUInt32LE(pa + 4); break;
      }
      return;
    }
    // Crosses a page: byte by byte, each through the walk.
    let vlo = 0;
    let vhi = 0;
    const a = this.tmpA;
    for (let i = 0; i < bytes; i++) {
      this.addrAdd(lo, hi, i, a);
      const b = mem[this.xlate(a.lo, a.hi)];
      if (i < 4) vlo += b * 2 ** (8 * i);
      else vhi += b * 2 ** (8 * (i - 4));
    }
    out.lo = vlo;
    out.hi = vhi;
  }

  writeMem(lo: number, hi: number, size: OpSize, vLo: number, vHi: number): void {
    const bytes = size >>> 3;
    const mem = this.mem;
    if (this.watchMask !== 0) this.noteAccess(lo, hi, bytes, true);
    if ((lo & 0xfff) + bytes <= PAGE_SIZE) {
      const pa = this.xlate(lo, hi);
      if (this.dirtyLog) this.dirtyLog[pa >>> 12] = 1;
      switch (size) {
        case 8: mem[pa] = vLo; break;
        case 16: mem.writeUInt16LE(vLo & 0xffff, pa); break;
        case 32: mem.writeUInt32LE(vLo >>> 0, pa); break;
        case 64: mem.writeUInt32LE(vLo >>> 0, pa); mem.writeUInt32LE(vHi >>> 0, pa + 4); break;
      }
      return;
    }
    // Translate every byte first so a fault leaves memory untouched.
    const a = this.tmpA;
    const pas: number[] = [];
    for (let i = 0; i < bytes; i++) {
      this.addrAdd(lo, hi, i, a);
      pas.push(this.xlate(a.lo, a.hi));
    }
    for (let i = 0; i < bytes; i++) {
      if (this.dirtyLog) this.dirtyLog[pas[i] >>> 12] = 1;
      mem[pas[i]] = i < 4 ? (vLo >>> (8 * i)) & 0xff : (vHi >>> (8 * (i - 4))) & 0xff;
    }
  }

  // ---- instruction fetch ----

  protected fetch8(): number {
    const lo = this.fLo;
    const key = this.fHi * 1048576 + (lo >>> 12);
    if (key !== this.fKey) {
      this.fBase = this.xlate(lo, this.fHi) - (lo & 0xfff);
      this.fKey = key;
    }
    const v = this.mem[this.fBase + (lo & 0xfff)];
    if (lo === 0xffffffff) {
      this.fLo = 0;
      if (this.long) this.fHi = (this.fHi + 1) >>> 0;
    } else {
      this.fLo = lo + 1;
    }
    return v;
  }

  protected fetchS8(): number {
    return (this.fetch8() << 24) >> 24;
  }

  protected fetch16(): number {
    return this.fetch8() | (this.fetch8() << 8);
  }

  protected fetch32(): number {
    return (this.fetch8() | (this.fetch8() << 8) | (this.fetch8() << 16) | (this.fetch8() << 24)) >>> 0;
  }

  /** Start decoding at rip. */
  protected beginFetch(): void {
    this.fLo = this.ripLo;
    this.fHi = this.ripHi;
  }

  // ---- registers by operand size ----

  /** Read GPR `r` at `size`; 8-bit numbers 4..7 are AH..BH unless a REX prefix is present. */
  protected getReg(r: number, size: OpSize, out: Val): void {
    out.hi = 0;
    switch (size) {
      case 8:
        out.lo = r >= 4 && r < 8 && !this.hasRex ? (this.lo[r - 4] >>> 8) & 0xff : this.lo[r] & 0xff;
        break;
      case 16: out.lo = this.lo[r] & 0xffff; break;
      case 32: out.lo = this.lo[r]; break;
      case 64: out.lo = this.lo[r]; out.hi = this.hi[r]; break;
    }
  }

  /** Write GPR `r`: 8/16-bit writes merge, 32-bit writes zero the upper half (as in long mode). */
  protected setReg(r: number, size: OpSize, lo: number, hi: number): void {
    switch (size) {
      case 8:
        if (r >= 4 && r < 8 && !this.hasRex) this.lo[r - 4] = (this.lo[r - 4] & 0xffff00ff) | ((lo & 0xff) << 8);
        else this.lo[r] = (this.lo[r] & 0xffffff00) | (lo & 0xff);
        break;
      case 16: this.lo[r] = (this.lo[r] & 0xffff0000) | (lo & 0xffff); break;
      case 32: this.lo[r] = lo; this.hi[r] = 0; break;
      case 64: this.lo[r] = lo; this.hi[r] = hi; break;
    }
  }

  // ---- ModRM ----

  /**
   * Decode ModRM (+SIB +displacement). `immBytes` is the size of the immediate that
   * follows, needed because RIP-relative addresses count from the instruction's end.
   */
  protected decodeModRM(immBytes: number): void {
    const m = this.fetch8();
    const mod = m >>> 6;
    this.mReg = ((m >>> 3) & 7) | this.rexR;
    const rm = m & 7;
    if (mod === 3) {
      this.mIsMem = false;
      this.mRm = rm | this.rexB;
      return;
    }
    this.mIsMem = true;
    if (rm === 4) {
      const sib = this.fetch8();
      const scale = 1 << (sib >>> 6);
      const index = ((sib >>> 3) & 7) | this.rexX;
      const base = sib & 7;
      const noBase = base === 5 && mod === 0;
      let lo = noBase ? 0 : this.lo[base | this.rexB];
      let hi = noBase ? 0 : this.hi[base | this.rexB];
      if (index !== 4) {
        const scaled = this.lo[index] * scale;
        const s = lo + (scaled % 4294967296);
        const carry = Math.floor(scaled / 4294967296) + (s > 0xffffffff ? 1 : 0);
        lo = s >>> 0;
        hi = (hi + this.hi[index] * scale + carry) >>> 0;
      }
      if (noBase) this.addDisp(lo, hi, this.fetch32() | 0);
      else { this.eaLo = lo; this.eaHi = hi; }
    } else if (rm === 5 && mod === 0) {
      const disp = this.fetch32() | 0;
      if (this.long) {
        // RIP-relative: from the end of the instruction (the immediate still follows).
        this.addrAdd(this.fLo, this.fHi, immBytes, this.eaTmp);
        this.addDisp(this.eaTmp.lo, this.eaTmp.hi, disp);
      } else {
        this.eaLo = disp >>> 0;
        this.eaHi = 0;
      }
    } else {
      const b = rm | this.rexB;
      this.eaLo = this.lo[b];
      this.eaHi = this.hi[b];
    }
    if (mod === 1) this.addDisp(this.eaLo, this.eaHi, this.fetchS8());
    else if (mod === 2) this.addDisp(this.eaLo, this.eaHi, this.fetch32() | 0);
    if (!this.long) this.eaHi = 0;
    if (this.segLo !== 0 || this.segHi !== 0) {
      const s = this.eaLo + this.segLo;
      this.eaHi = (this.eaHi + this.segHi + (s > 0xffffffff ? 1 : 0)) >>> 0;
      this.eaLo = s >>> 0;
    }
  }

  private readonly eaTmp: Val = { lo: 0, hi: 0 };

  private addDisp(lo: number, hi: number, disp: number): void {
    const s = lo + disp;
    this.eaLo = s >>> 0;
    if (!this.long) this.eaHi = 0;
    else if (s > 0xffffffff) this.eaHi = (hi + 1) >>> 0;
    else if (s < 0) this.eaHi = (hi - 1) >>> 0;
    else this.eaHi = hi;
  }

  /** Read the r/m operand (register or memory). */
  protected readRM(size: OpSize, out: Val): void {
    if (this.mIsMem) this.readMem(this.eaLo, this.eaHi, size, out);
    else this.getReg(this.mRm, size, out);
  }

  protected writeRM(size: OpSize, lo: number, hi: number): void {
    if (this.mIsMem) this.writeMem(this.eaLo, this.eaHi, size, lo, hi);
    else this.setReg(this.mRm, size, lo, hi);
  }

  /** True if `flag` is set in rflags. */
  protected flag(flag: number): boolean {
    return (this.rflags & flag) !== 0;
  }

}
