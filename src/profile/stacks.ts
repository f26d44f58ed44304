// Kernel call stacks through the frame-pointer chain: the return address at [rbp+8],
// the caller's frame at [rbp]. Read from guest memory with our page walk from the
// sampled VCPU's own page tables while the guest runs on, so a chain may be torn: each
// return address must fall in a known kernel function and each frame must lie above
// the last on the same stack, or the walk stops there. A kernel built without frame
// pointers (Linux's ORC unwinder, the x86_64 default) gives chains that stop at once.
import { Hypercalls } from '../xg/hypercalls';
import { XenError } from '../xg/errors';
import { PageWalkMemory, WalkRoot } from '../vcpu/pageWalkMemory';
import { VcpuSample } from './sampler';
import { SymbolTable } from './symbols';

const MAX_DEPTH = 64;
/** x86 near `ret`, and `push %rbp` (the first byte of a frame-pointer prologue). */
const RET = 0xc3;
const PUSH_RBP = 0x55;
const ENDBR64 = Buffer.from([0xf3, 0x0f, 0x1e, 0xfa]);
/** The 5-byte nop Linux leaves at a function's start for ftrace (a `call` rel32 while ftrace traces it). */
const NOP5 = Buffer.from([0x0f, 0x1f, 0x44, 0x00, 0x00]);
const CALL_REL32 = 0xe8;
/** Frames of one chain lie on one stack: Linux x86_64 stacks are 16 KiB, IRQ stacks too. */
const MAX_FRAME_GAP = 64n * 1024n;

export class StackWalker {
  private readonly mem: PageWalkMemory;
  private readonly roots = new Map<number, WalkRoot>();
  private readonly ptr: number;
  private readonly kernelHalf: bigint;
  private readonly symbols: SymbolTable | undefined;
  /** Kernel samples walked, and how many gave at least one caller. */
  readonly stats = { walked: 0, withCallers: 0 };
  /**
   * Where each function's `push %rbp` is (null: none), read once per function: a hot
   * function's entry is otherwise read again at every sample in it. The answer does not
   * change when ftrace turns the entry's nop into a call, as both are 5 bytes.
   */
  private readonly prologues = new Map<bigint, bigint | null>();

  constructor(hc: Hypercalls, domid: number, width: 32 | 64, symbols?: SymbolTable) {
    this.ptr = width / 8;
    this.kernelHalf = width === 64 ? 1n << 63n : 0xc0000000n;
    this.symbols = symbols;
    this.mem = new PageWalkMemory(hc, domid, width, (v) => {
      const r = this.roots.get(v);
      if (!r) throw new Error(`no sampled page-table root for VCPU ${v}`);
      return r;
    });
  }

  private isText(addr: bigint): boolean {
    if (addr < this.kernelHalf) return false;
    return this.symbols ? this.symbols.lookup(addr) !== undefined : true;
  }

  private readPtr(addr: bigint, vcpu: number): bigint | undefined {
    const b = Buffer.alloc(this.ptr);
    try {
      if (this.mem.read(addr, b, { vcpu, pgd3: 0n }) !== this.ptr) return undefined;
    } catch (e) {
      if (e instanceof XenError) return undefined;
      throw e;
    }
    return this.ptr === 8 ? b.readBigUInt64LE() : BigInt(b.readUInt32LE());
  }

  /** Return addresses of the callers of the sampled function, innermost first. */
  callers(s: VcpuSample): bigint[] {
    const out: bigint[] = [];
    if (!s.root) return out;
    this.roots.set(s.vcpu, s.root);
    this.stats.walked++;
    // At a function's first instruction, just after its `push %rbp`, or on a `ret` (after
    // `pop %rbp`), rbp is still the caller's frame: the caller's own return address is on
    // the stack top, and the frame chain alone would skip it.
    const slot = this.returnSlot(s);
    let guessed = false;
    if (slot !== undefined) {
      const ret = this.readPtr(slot, s.vcpu);
      if (ret !== undefined && this.isText(ret)) {
        out.push(ret);
        guessed = true;
      }
    }
    let bp = s.rbp;
    const align = BigInt(this.ptr - 1);
    for (let i = 0; i < MAX_DEPTH; i++) {
      if (bp < this.kernelHalf || (bp & align) !== 0n) break;
      // The frame must be on the sampled stack (at or above rsp, not far from it).
      if (i === 0 && (bp < s.rsp || bp - s.rsp > MAX_FRAME_GAP)) break;
      const ret = this.readPtr(bp + BigInt(this.ptr), s.vcpu);
      if (ret === undefined || !this.isText(ret)) break;
      out.push(ret);
      const next = this.readPtr(bp, s.vcpu);
      if (next === undefined || next <= bp || next - bp > MAX_FRAME_GAP) break;
      bp = next;
    }
    // Counted only when the frame chain gave callers: whether the kernel keeps frame pointers.
    if (out.length > (guessed ? 1 : 0)) this.stats.withCallers++;
    return out;
  }

  /**
   * Where the return address is when the sampled function has no frame of its own: at its
   * first instruction, just after its `push %rbp`, on a `ret`, or anywhere in a function
   * without a frame-pointer prologue (a leaf such as a hypercall stub; a guess, checked
   * only by the address being kernel text).
   */
  private returnSlot(s: VcpuSample): bigint | undefined {
    const at = this.symbols?.lookup(s.rip);
    if (this.byteAt(s.rip, s.vcpu) === RET) return s.rsp;
    if (!at) return undefined;
    const push = this.prologuePush(s.rip - at.offset, s.vcpu);
    if (push === undefined) return s.rsp;
    if (s.rip <= push) return s.rsp;
    if (s.rip === push + 1n) return s.rsp + BigInt(this.ptr);
    return undefined;
  }

  /** The address of the function's `push %rbp` (after endbr64 and an ftrace nop or call), if it has one. */
  private prologuePush(fn: bigint, vcpu: number): bigint | undefined {
    const known = this.prologues.get(fn);
    if (known !== undefined) return known ?? undefined;
    const b = Buffer.alloc(10);
    try {
      if (this.mem.read(fn, b, { vcpu, pgd3: 0n }) !== b.length) return fn; // unreadable: assume a frame (not kept)
    } catch (e) {
      if (e instanceof XenError) return fn;
      throw e;
    }
    let i = 0;
    if (b.subarray(i, i + 4).equals(ENDBR64)) i += 4;
    if (b.subarray(i, i + 5).equals(NOP5) || b[i] === CALL_REL32) i += 5;
    const push = b[i] === PUSH_RBP ? fn + BigInt(i) : null;
    this.prologues.set(fn, push);
    return push ?? undefined;
  }

  private byteAt(addr: bigint, vcpu: number): number | undefined {
    const b = Buffer.alloc(1);
    try {
      return this.mem.read(addr, b, { vcpu, pgd3: 0n }) === 1 ? b[0] : undefined;
    } catch (e) {
      if (e instanceof XenError) return undefined;
      throw e;
    }
  }

  /** The guest ran on: what we mapped of its page tables is stale. */
  afterTick(): void {
    this.mem.release();
  }

  close(): void {
    this.mem.release();
  }
}
