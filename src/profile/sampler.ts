// One sample of every VCPU of a running domain, from dom0, changing nothing: the
// scheduler's view first (getvcpuinfo: no pause, no domctl lock), and only for a VCPU
// that is on a physical CPU right now the registers, through the one call that has them
// (PV: getvcpucontext; HVM/PVH: the CPU record of gethvmcontext_partial). Xen pauses
// that one VCPU for the copy and nothing else.
import { XenControl } from '../xg/xenctl';
import { DomainInfo, HvmCpu } from '../xg/domctl';
import { readField } from '../xg/context';
import { Errno, UserError, isXenError } from '../xg/errors';
import { lookupGuest } from '../vcpu/lookup';
import { Guest } from '../vcpu/guest';
import { contextLayoutFor, inKernel } from '../vcpu/registers';
import { WalkRoot } from '../vcpu/pageWalkMemory';
import { pagingModeHvm, pagingModePv, pv32Cr3ToAddr, rootOf, kernelHalfCr3 } from '../vcpu/pageWalk';

/**
 * kernel/user: the VCPU was on a physical CPU running guest code; idle: blocked in Xen;
 * waiting: runnable but not on a CPU (preempted, or held back by a cap: steal time,
 * where its pc is only where it last left the CPU); offline: down.
 */
export type Mode = 'kernel' | 'user' | 'idle' | 'waiting' | 'offline';

export interface VcpuSample {
  vcpu: number;
  mode: Mode;
  rip: bigint;
  rsp: bigint;
  rbp: bigint;
  /** The address space: cr3 without the PCID (bits 0-11) and PTI (bit 12) bits; PV: the process's kernel table (ctrlreg[3]). 0 unless kernel/user. */
  cr3: bigint;
  /** Where a walk of this VCPU's memory starts, as sampled (for stacks). */
  root?: WalkRoot;
}

/** In struct hvm_hw_cpu: the CS selector (its low bits are the CPL). */
const HVM_CS_SEL = 736;
/** PCID and Linux's PTI user bit. */
const CR3_SPACE_MASK = ~0x1fffn;

export class DomainSampler {
  readonly xc: XenControl;
  readonly domid: number;
  readonly hvm: boolean;
  readonly width: 32 | 64;
  readonly vcpuCount: number;
  /** Register reads (each a brief pause of one VCPU inside Xen). */
  registerReads = 0;

  private constructor(xc: XenControl, domid: number, info: DomainInfo, width: 32 | 64) {
    this.xc = xc;
    this.domid = domid;
    this.hvm = info.hvm;
    this.width = width;
    this.vcpuCount = info.maxVcpuId + 1;
  }

  /** Checks the domain (exists, not dom0, not dying) without pausing it. */
  static open(xc: XenControl, domid: number): DomainSampler {
    const info = lookupGuest(xc, domid, 'cannot profile dom0 from itself (Xen does not give a domain its own running VCPUs\' registers): give a guest\'s domain id (`xl list`)');
    if (info.shutdown) throw new UserError(`domain ${domid} has shut down (reason ${info.shutdownReason}): nothing runs to profile`);
    return new DomainSampler(xc, domid, info, Guest.detectWidth(xc, domid, info));
  }

  /** Why the domain can no longer be profiled (shut down, dying), or undefined while it runs. Throws XenError ESRCH when it is gone. */
  ended(): string | undefined {
    const info = this.xc.getDomainInfo(this.domid);
    if (info.dying) return 'domain dying';
    if (info.shutdown) return 'domain shut down';
    return undefined;
  }

  /** Where to walk kernel memory from: the first VCPU that is up (a blocked one too: one brief read). */
  kernelRoot(): WalkRoot | undefined {
    for (let v = 0; v < this.vcpuCount; v++) {
      try {
        const s = this.hvm ? this.sampleHvm(v) : this.samplePv(v);
        if (s.root) return s.root;
      } catch (e) {
        if (!isXenError(e, Errno.ENODATA) && !isXenError(e, Errno.EINVAL)) throw e;
      }
    }
    return undefined;
  }

  /** One VCPU now. Throws XenError ESRCH when the domain is gone. */
  sample(vcpu: number): VcpuSample {
    const none = (mode: Mode): VcpuSample => ({ vcpu, mode, rip: 0n, rsp: 0n, rbp: 0n, cr3: 0n });
    const vi = this.xc.getVcpuInfo(this.domid, vcpu);
    if (!vi.online) return none('offline');
    if (vi.blocked) return none('idle');
    // Not on a CPU: its registers say where it last left one, not where time goes now.
    if (!vi.running) return none('waiting');
    this.registerReads++;
    try {
      return this.hvm ? this.sampleHvm(vcpu) : this.samplePv(vcpu);
    } catch (e) {
      // It went down between the two calls.
      if (isXenError(e, Errno.ENODATA)) return none('offline');
      throw e;
    }
  }

  private sampleHvm(vcpu: number): VcpuSample {
    const cpu = this.xc.getHvmCpu(this.domid, vcpu);
    const q = (off: number) => cpu.readBigUInt64LE(off);
    const cr3 = q(HvmCpu.cr3);
    const mode = pagingModeHvm(q(HvmCpu.cr0), q(HvmCpu.cr4), q(HvmCpu.msrEfer));
    const root: WalkRoot = { mode, root: rootOf(mode, cr3) };
    if ((mode.kind === '4level' || mode.kind === '5level') && (cr3 & 0x1000n) !== 0n) root.kernelRoot = rootOf(mode, kernelHalfCr3(cr3));
    return {
      vcpu,
      mode: (cpu.readUInt32LE(HVM_CS_SEL) & 3) === 0 ? 'kernel' : 'user',
      rip: q(HvmCpu.rip), rsp: q(HvmCpu.rsp), rbp: q(HvmCpu.rbp),
      cr3: cr3 & CR3_SPACE_MASK & 0xffffffffffffn,
      root,
    };
  }

  private samplePv(vcpu: number): VcpuSample {
    const buf = this.xc.getVcpuContext(this.domid, vcpu);
    const c = { buf, layout: contextLayoutFor(this.width, false), hvm: false };
    const f = (n: 'rip' | 'rsp' | 'rbp' | 'cr3') => readField(buf, c.layout, n) ?? 0n;
    const cr3 = f('cr3');
    const mode = pagingModePv(this.width);
    const table = this.width === 32 ? pv32Cr3ToAddr(cr3) : cr3;
    return {
      vcpu,
      mode: inKernel(c) ? 'kernel' : 'user',
      rip: f('rip'), rsp: f('rsp'), rbp: f('rbp'),
      cr3: table & CR3_SPACE_MASK & 0xffffffffffffn,
      root: { mode, root: rootOf(mode, table) },
    };
  }
}

