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
    if (out.length > 0) this.stats.withCallers++;
    return out;
  }

  /** The guest ran on: what we mapped of its page tables is stale. */
  afterTick(): void {
    this.mem.release();
  }

  close(): void {
    this.mem.release();
  }
}
