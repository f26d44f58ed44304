// The domain's VCPUs as the debugger sees them: which are up, and each one's context,
// read once per stop and cached until the guest runs again. Also where one known
// hypervisor bug is worked around: Xen 4.21.0 and 4.21.1 drop r8-r15 in
// get/setvcpucontext (fixed in 4.21.2, d5ad2233bb).
import { XenControl } from '../xg/xenctl';
import { DomainInfo, HvmCpu } from '../xg/domctl';
import { ContextRegName, EFLAGS_TF, readField, writeField } from '../xg/context';
import { Errno, isXenError } from '../xg/errors';
import { RefusedError } from './stop';
import { VcpuContext, contextLayoutFor } from './registers';

const HIGH_GPRS: readonly ContextRegName[] = ['r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'];

/** True for the Xen releases whose register domctls lose r8-r15. */
export function losesHighGprs(major: number, minor: number, extra: string): boolean {
  if (major !== 4 || minor !== 21) return false;
  const m = /^\.(\d+)/.exec(extra);
  return m !== null && Number(m[1]) <= 1;
}

export class VcpuSet {
  private readonly xc: XenControl;
  private readonly domid: number;
  private readonly width: 32 | 64;
  private readonly hvm: boolean;
  /** Xen 4.21.0/.1: contexts miss r8-r15 and a setvcpucontext zeroes them. */
  readonly highGprsBug: boolean;
  private maxVcpuId: number;
  private online: number[] = [];
  private readonly cache = new Map<number, VcpuContext>();
  /** The online list was read after the guest last ran (the wait for the stop does it). */
  private listCurrent = false;

  constructor(xc: XenControl, domid: number, width: 32 | 64, info: DomainInfo, highGprsBug: boolean) {
    this.xc = xc;
    this.domid = domid;
    this.width = width;
    this.hvm = info.hvm;
    this.maxVcpuId = info.maxVcpuId;
    this.highGprsBug = highGprsBug && width === 64;
  }

  get maxVcpu(): number {
    return this.maxVcpuId;
  }

  /** VCPU ids that are up, ascending. */
  list(): readonly number[] {
    return this.online;
  }

  isOnline(vcpu: number): boolean {
    return this.online.includes(vcpu);
  }

  /**
   * Which VCPUs are up. getdomaininfo's online count saves probing each VCPU
   * (which matters with many VCPUs) when all of them are up.
   */
  refresh(info = this.xc.getDomainInfo(this.domid)): void {
    this.maxVcpuId = info.maxVcpuId;
    if (info.nrOnlineVcpus === info.maxVcpuId + 1) {
      this.online = Array.from({ length: info.maxVcpuId + 1 }, (_, i) => i);
      this.listCurrent = true;
      return;
    }
    const up: number[] = [];
    for (let v = 0; v <= info.maxVcpuId; v++) {
      try {
        this.context(v);
        up.push(v);
      } catch (e) {
        if (!isXenError(e, Errno.ENODATA) && !isXenError(e, Errno.EINVAL)) throw e;
      }
    }
    this.online = up;
    this.listCurrent = true;
  }

  /** The guest is about to run: VCPUs may come or go before the next stop. */
  willRun(): void {
    this.listCurrent = false;
  }

  /** refresh(), unless the list was read since the guest last ran (one getdomaininfo less per stop). */
  refreshIfRan(): void {
    if (!this.listCurrent) this.refresh();
  }

  /** The VCPU's context, cached while the guest is stopped. */
  context(vcpu: number): VcpuContext {
    let c = this.cache.get(vcpu);
    if (!c) {
      const buf = this.xc.getVcpuContext(this.domid, vcpu);
      c = { buf, layout: contextLayoutFor(this.width, this.hvm), hvm: this.hvm };
      if (this.highGprsBug) {
        if (this.hvm) {
          // The CPU record has them right.
          const cpu = this.xc.getHvmCpu(this.domid, vcpu);
          for (const r of HIGH_GPRS) writeField(buf, c.layout, r, cpu.readBigUInt64LE(HvmCpu[r as keyof typeof HvmCpu]));
        } else {
          c.lost = new Set(HIGH_GPRS);
        }
      }
      this.cache.set(vcpu, c);
    }
    return c;
  }

  /** Drop cached contexts (the guest ran, or Xen's copy changed). */
  invalidate(vcpu?: number): void {
    if (vcpu === undefined) this.cache.clear();
    else this.cache.delete(vcpu);
  }

  /** Keep `c` as the VCPU's current context (after it was written). */
  remember(vcpu: number, c: VcpuContext): void {
    this.cache.set(vcpu, c);
  }

  /** setvcpucontext with `c`; refused where it would zero the guest's r8-r15. */
  put(vcpu: number, c: VcpuContext): void {
    if (this.highGprsBug) {
      throw new RefusedError('this hypervisor (Xen 4.21.0/4.21.1) zeroes r8-r15 on every VCPU context write ' +
        '(fixed in 4.21.2): register writes, TF steps and debug registers are refused to keep the guest intact');
    }
    try {
      this.xc.setVcpuContext(this.domid, vcpu, c.buf);
    } catch (e) {
      this.cache.delete(vcpu); // our copy no longer matches Xen's
      throw e;
    }
  }

  pc(vcpu: number): bigint {
    const c = this.context(vcpu);
    return readField(c.buf, c.layout, 'rip') ?? 0n;
  }

  setPc(vcpu: number, pc: bigint): void {
    const c = this.context(vcpu);
    writeField(c.buf, c.layout, 'rip', pc);
    this.put(vcpu, c);
  }

  setTrapFlag(vcpu: number, on: boolean): void {
    const c = this.context(vcpu);
    const fl = readField(c.buf, c.layout, 'rflags') ?? 0n;
    const next = on ? fl | EFLAGS_TF : fl & ~EFLAGS_TF;
    if (next === fl) return;
    writeField(c.buf, c.layout, 'rflags', next);
    this.put(vcpu, c);
  }
}
