// Typed domctls over a Hypercalls transport (real or simulated). No policy here:
// one method per hypercall, errors named after the call, the interface version
// probed once instead of compiled in.
import createDebug from 'debug';
import {
  DOMCTL_INTERFACE_VERSIONS, DMOP_INJECT_EVENT, DOMID_INVALID, DmOpInject, DomctlCmd, DebugOp, DomainInfo, DomStatus,
  HVM_HW_CPU_SIZE, HVM_PARAM_SIZE, HVM_SAVE_CODE_CPU, HvmOp, MemRes, MonitorOp, Off, ShadowOp,
  VCPU_CONTEXT_ANY_SIZE, VcpuAffinity, VcpuInfo, bitmapCpus, VmEventMode, VmEventOp, XenMem, PodTarget, XenVer, decodeDomStatus, decodeDomainInfo, decodeVcpuInfo, domctlName, newDomctl,
} from './domctl';
import { Errno, XenError } from './errors';
import { Hypercalls } from './hypercalls';
import { EVTCHNOP_STATUS, EvtchnStatus, decodeEvtchnStatus, encodeEvtchnStatusRequest } from './evtchnStatus';

const log = createDebug('gdbsx:xg');

export interface XenVersion {
  major: number;
  minor: number;
  extra: string;
  capabilities: string;
}

/** What to tell the user for each errno, by call. */
function hintFor(cmd: number, errno: number): string {
  if (errno === Errno.ENOSYS && cmd >= DomctlCmd.gdbsx_guestmemio && cmd <= DomctlCmd.gdbsx_domstatus) {
    return 'this hypervisor was built without CONFIG_GDBSX. Rebuild Xen with CONFIG_EXPERT=y and CONFIG_GDBSX=y ' +
      '(or a debug build, CONFIG_DEBUG=y); distribution packages usually leave it out';
  }
  switch (errno) {
    case Errno.ESRCH: return 'no such domain (check `xl list`)';
    case Errno.EPERM: return 'permission denied: run as root in dom0 (or a domain with control rights)';
    case Errno.EACCES: return 'the hypervisor refused the domctl interface version';
    case Errno.EBUSY: return 'the domain or VCPU is not in the state this call needs (not paused?)';
    case Errno.ENODATA: return 'that VCPU has never been brought up';
    case Errno.EOVERFLOW: return 'the domain has been paused too many times (255)';
    case Errno.EFAULT: return 'address not mapped in the guest';
    case Errno.EINVAL: return cmd === DomctlCmd.pausedomain ? 'a domain cannot pause itself (is this dom0?)' : 'invalid argument';
    default: return '';
  }
}

export class XenControl {
  readonly hc: Hypercalls;
  private ifVersion = 0;

  constructor(hc: Hypercalls) {
    this.hc = hc;
  }

  get interfaceVersion(): number {
    return this.ifVersion;
  }

  /**
   * Find the domctl interface version this hypervisor accepts: Xen answers -EACCES
   * to any other. Probed with getdomaininfo on `domid` (any result but EACCES ends it).
   */
  probeInterfaceVersion(domid = 0): number {
    if (this.ifVersion) return this.ifVersion;
    for (const { version, xen } of DOMCTL_INTERFACE_VERSIONS) {
      const op = newDomctl(DomctlCmd.getdomaininfo, version, domid);
      try {
        this.hc.domctl(op);
      } catch (e) {
        if (e instanceof XenError && e.errno === Errno.EACCES) continue;
        if (!(e instanceof XenError)) throw e;
      }
      log('domctl interface version 0x%s (Xen %s)', version.toString(16), xen);
      this.ifVersion = version;
      return version;
    }
    throw new XenError('XEN_DOMCTL_getdomaininfo', Errno.EACCES,
      `the hypervisor accepts none of the domctl interface versions we know (${DOMCTL_INTERFACE_VERSIONS.map((v) => '0x' + v.version.toString(16)).join(', ')}); ` +
      'this Xen is newer than this tool: please report it');
  }

  private call(cmd: number, domid: number, fill?: (op: Buffer) => void, data?: { buf: Buffer; handleOffset: number }): Buffer {
    const op = newDomctl(cmd, this.probeInterfaceVersion(domid), domid);
    fill?.(op);
    try {
      this.hc.domctl(op, data);
    } catch (e) {
      if (e instanceof XenError) {
        // Re-throw with the call's name and a hint (the transport may not know them).
        throw new XenError(`${domctlName(cmd)}(dom${domid})`, e.errno, hintFor(cmd, e.errno));
      }
      throw e;
    }
    return op;
  }

  getDomainInfo(domid: number): DomainInfo {
    const op = this.call(DomctlCmd.getdomaininfo, domid);
    const info = decodeDomainInfo(op);
    // Xen 4.17 answers with the next existing domain when `domid` is gone.
    if (info.domid !== domid) {
      throw new XenError(`XEN_DOMCTL_getdomaininfo(dom${domid})`, Errno.ESRCH, hintFor(DomctlCmd.getdomaininfo, Errno.ESRCH));
    }
    return info;
  }

  /**
   * getdomaininfo as Xen answers it: on Xen 4.17 the first domain whose id is `domid` or
   * more (how libxc listed domains before XEN_SYSCTL_getdomaininfolist), from 4.18 on
   * exactly `domid`; undefined where there is none (ESRCH).
   */
  domainInfoFrom(domid: number): DomainInfo | undefined {
    try {
      return decodeDomainInfo(this.call(DomctlCmd.getdomaininfo, domid));
    } catch (e) {
      if (e instanceof XenError && e.errno === Errno.ESRCH) return undefined;
      throw e;
    }
  }

  pauseDomain(domid: number): void {
    this.call(DomctlCmd.pausedomain, domid);
  }

  unpauseDomain(domid: number): void {
    this.call(DomctlCmd.unpausedomain, domid);
  }

  setDebugging(domid: number, enable: boolean): void {
    this.call(DomctlCmd.setdebugging, domid, (op) => op.writeUInt8(enable ? 1 : 0, Off.debugEnable));
  }

  /** 32 or 64 (XEN_DOMCTL_get_address_size): the PV ABI width; HVM domains answer 64. */
  getAddressSize(domid: number): number {
    return this.call(DomctlCmd.get_address_size, domid).readUInt32LE(Off.addressSize);
  }

  /** The raw context (5168-byte union; 32-bit PV domains fill the compat layout). */
  getVcpuContext(domid: number, vcpu: number): Buffer {
    const buf = Buffer.alloc(VCPU_CONTEXT_ANY_SIZE);
    this.call(DomctlCmd.getvcpucontext, domid, (op) => op.writeUInt32LE(vcpu, Off.ctxVcpu), { buf, handleOffset: Off.ctxHandle });
    return buf;
  }

  /**
   * XEN_DOMCTL_getvcpuinfo: online/blocked/running and CPU time. Xen answers it from the
   * scheduler's state without pausing the VCPU or taking the global domctl lock.
   */
  getVcpuInfo(domid: number, vcpu: number): VcpuInfo {
    return decodeVcpuInfo(this.call(DomctlCmd.getvcpuinfo, domid, (op) => op.writeUInt32LE(vcpu, Off.viVcpu)));
  }

  /**
   * XEN_DOMCTL_getvcpuaffinity: the physical CPUs a VCPU may run on (hard) and prefers
   * (soft). Asked one map per call, each into a bitmap of `nrBits` CPUs (Xen copies
   * what it has and zeroes the rest).
   */
  getVcpuAffinity(domid: number, vcpu: number, nrBits = 1024): { hard: number[]; soft: number[] } {
    const get = (which: number, handle: number, nrOff: number) => {
      const buf = Buffer.alloc(Math.ceil(nrBits / 8));
      this.call(DomctlCmd.getvcpuaffinity, domid, (op) => {
        op.writeUInt32LE(vcpu, Off.affVcpu);
        op.writeUInt32LE(which, Off.affFlags);
        op.writeUInt32LE(nrBits, nrOff);
      }, { buf, handleOffset: handle });
      return bitmapCpus(buf);
    };
    return {
      hard: get(VcpuAffinity.hard, Off.affHardBitmap, Off.affHardNrBits),
      soft: get(VcpuAffinity.soft, Off.affSoftBitmap, Off.affSoftNrBits),
    };
  }

  setVcpuContext(domid: number, vcpu: number, ctx: Buffer): void {
    // Xen only reads the buffer: a whole union (what getVcpuContext gives) goes as it is.
    let buf = ctx;
    if (ctx.length !== VCPU_CONTEXT_ANY_SIZE) {
      buf = Buffer.alloc(VCPU_CONTEXT_ANY_SIZE);
      ctx.copy(buf);
    }
    this.call(DomctlCmd.setvcpucontext, domid, (op) => op.writeUInt32LE(vcpu, Off.ctxVcpu), { buf, handleOffset: Off.ctxHandle });
  }

  debugOp(domid: number, vcpu: number, on: boolean): void {
    this.call(DomctlCmd.debug_op, domid, (op) => {
      op.writeUInt32LE(on ? DebugOp.singleStepOn : DebugOp.singleStepOff, Off.debugOpOp);
      op.writeUInt32LE(vcpu, Off.debugOpVcpu);
    });
  }

  /**
   * XEN_DOMCTL_gdbsx_guestmemio: read into / write from `buf` at guest virtual `gva`.
   * Xen fails the whole call with EFAULT if any byte is unmapped (and leaves a prefix
   * done), so callers split at page boundaries to find the readable part.
   */
  guestMemIo(domid: number, gva: bigint, buf: Buffer, write: boolean, pgd3val = 0n): void {
    this.call(DomctlCmd.gdbsx_guestmemio, domid, (op) => {
      op.writeBigUInt64LE(pgd3val, Off.memPgd3val);
      op.writeBigUInt64LE(BigInt.asUintN(64, gva), Off.memGva);
      op.writeUInt32LE(buf.length, Off.memLen);
      op.writeUInt8(write ? 1 : 0, Off.memGwr);
    }, { buf, handleOffset: Off.memUva });
  }

  pauseVcpu(domid: number, vcpu: number): void {
    this.call(DomctlCmd.gdbsx_pausevcpu, domid, (op) => op.writeUInt32LE(vcpu, Off.pvVcpu));
  }

  unpauseVcpu(domid: number, vcpu: number): void {
    this.call(DomctlCmd.gdbsx_unpausevcpu, domid, (op) => op.writeUInt32LE(vcpu, Off.pvVcpu));
  }

  /** Read-to-clear: the first VCPU with a pending debug event, if the domain is paused. */
  domStatus(domid: number): DomStatus {
    return decodeDomStatus(this.call(DomctlCmd.gdbsx_domstatus, domid));
  }

  /**
   * True if the hypervisor has the gdbsx domctls: a harmless gdbsx_unpausevcpu of an
   * invalid VCPU gives EINVAL/EBUSY/ESRCH when present and ENOSYS when compiled out.
   */
  hasGdbsx(domid: number): boolean {
    try {
      this.call(DomctlCmd.gdbsx_unpausevcpu, domid, (op) => op.writeUInt32LE(0xffffffff, Off.pvVcpu));
      return true;
    } catch (e) {
      if (e instanceof XenError && e.errno === Errno.ENOSYS) return false;
      return true;
    }
  }

  /** The VCPU's CPU record (struct hvm_hw_cpu, HVM/PVH only): EFER, segment bases, the real CR3. */
  getHvmCpu(domid: number, vcpu: number): Buffer {
    const buf = Buffer.alloc(HVM_HW_CPU_SIZE);
    this.call(DomctlCmd.gethvmcontext_partial, domid, (op) => {
      op.writeUInt32LE(HVM_SAVE_CODE_CPU, Off.hvmCtxType);
      op.writeUInt32LE(vcpu, Off.hvmCtxInstance);
      op.writeBigUInt64LE(BigInt(buf.length), Off.hvmCtxBufsz);
    }, { buf, handleOffset: Off.hvmCtxHandle });
    return buf;
  }

  /** getpageframeinfo3: each frame's page type (PageType.*: l1..l4 tables, xtab for none). */
  getPageFrameInfo(domid: number, frames: readonly bigint[]): number[] {
    const buf = Buffer.alloc(frames.length * 8);
    frames.forEach((f, i) => buf.writeBigUInt64LE(f, i * 8));
    this.call(DomctlCmd.getpageframeinfo3, domid, (op) => op.writeBigUInt64LE(BigInt(frames.length), Off.pfiNum),
      { buf, handleOffset: Off.pfiHandle });
    return frames.map((_, i) => Number(buf.readBigUInt64LE(i * 8) & 0xffffffffn));
  }

  /** XEN_VM_EVENT_ENABLE in monitor mode: returns Xen's event channel port for the ring. */
  monitorRingEnable(domid: number): number {
    return this.call(DomctlCmd.vm_event_op, domid, (op) => {
      op.writeUInt32LE(VmEventOp.enable, Off.vmeOp);
      op.writeUInt32LE(VmEventMode.monitor, Off.vmeMode);
    }).readUInt32LE(Off.vmePort);
  }

  /** XEN_VM_EVENT_DISABLE: frees the ring and resets every monitor event (VCPUs waiting on a response stay paused!). */
  monitorRingDisable(domid: number): void {
    this.call(DomctlCmd.vm_event_op, domid, (op) => {
      op.writeUInt32LE(VmEventOp.disable, Off.vmeOp);
      op.writeUInt32LE(VmEventMode.monitor, Off.vmeMode);
    });
  }

  /** XEN_VM_EVENT_RESUME: have Xen process the responses on the ring (as a notify does). */
  monitorRingResume(domid: number): void {
    this.call(DomctlCmd.vm_event_op, domid, (op) => {
      op.writeUInt32LE(VmEventOp.resume, Off.vmeOp);
      op.writeUInt32LE(VmEventMode.monitor, Off.vmeMode);
    });
  }

  /** VM_EVENT_INTERFACE_VERSION of this hypervisor (7 for 4.17-4.22). */
  vmEventVersion(): number {
    return this.call(DomctlCmd.vm_event_op, DOMID_INVALID, (op) => op.writeUInt32LE(VmEventOp.getVersion, Off.vmeOp))
      .readUInt32LE(Off.vmePort);
  }

  /** monitor_op GET_CAPABILITIES: bit n set = MonitorEvent n available (PV: 0). */
  monitorCapabilities(domid: number): number {
    return this.call(DomctlCmd.monitor_op, domid, (op) => op.writeUInt32LE(MonitorOp.getCapabilities, Off.monOp))
      .readUInt32LE(Off.monEvent);
  }

  /** Enable or disable one monitor event (`sync`: the trapping VCPU waits for our response). */
  monitorEvent(domid: number, event: number, enable: boolean, sync = true): void {
    this.call(DomctlCmd.monitor_op, domid, (op) => {
      op.writeUInt32LE(enable ? MonitorOp.enable : MonitorOp.disable, Off.monOp);
      op.writeUInt32LE(event, Off.monEvent);
      op.writeUInt8(sync ? 1 : 0, Off.monSync);
    });
  }

  /**
   * XEN_DOMCTL_shadow_op for log-dirty: ENABLE_LOGDIRTY, OFF, or CLEAN/PEEK into `bitmap`
   * (bit pfn%8 of byte pfn/8: written since the last CLEAN). Returns the pfns Xen covered
   * and its stats.
   */
  shadowOp(domid: number, op: number, mode = 0, bitmap?: Buffer): { pages: bigint; faultCount: number; dirtyCount: number } {
    const r = this.call(DomctlCmd.shadow_op, domid, (b) => {
      b.writeUInt32LE(op, Off.shadowOp);
      b.writeUInt32LE(mode, Off.shadowMode);
      b.writeBigUInt64LE(bitmap ? BigInt(bitmap.length * 8) : 0n, Off.shadowPages);
    }, bitmap ? { buf: bitmap, handleOffset: Off.shadowBitmap } : undefined);
    return { pages: r.readBigUInt64LE(Off.shadowPages), faultCount: r.readUInt32LE(Off.shadowFaultCount), dirtyCount: r.readUInt32LE(Off.shadowDirtyCount) };
  }

  logDirtyEnable(domid: number): void {
    this.shadowOp(domid, ShadowOp.enableLogDirty);
  }

  logDirtyOff(domid: number): void {
    this.shadowOp(domid, ShadowOp.off);
  }

  /**
   * EVTCHNOP_status of one port of `domid`; undefined where the port is past the
   * domain's table (Xen: EINVAL). Throws XenError ENOSYS where the transport has no
   * event_channel_op.
   */
  evtchnStatus(domid: number, port: number): EvtchnStatus | undefined {
    const name = `EVTCHNOP_status(dom${domid}, port ${port})`;
    if (!this.hc.eventChannelOp) throw new XenError(name, Errno.ENOSYS, 'this hypercall transport has no event_channel_op');
    const arg = encodeEvtchnStatusRequest(domid, port);
    try {
      this.named(name, () => (this.hc.eventChannelOp as (c: number, a: Buffer) => number)(EVTCHNOP_STATUS, arg));
    } catch (e) {
      if (e instanceof XenError && e.errno === Errno.EINVAL) return undefined;
      throw e;
    }
    return decodeEvtchnStatus(arg);
  }

  /** XENMEM_get_pod_target (HVM/PVH): populate-on-demand entries not yet backed by memory, and the cache for them. */
  podTarget(domid: number): { totPages: bigint; podCachePages: bigint; podEntries: bigint } {
    const arg = Buffer.alloc(PodTarget.size);
    arg.writeUInt16LE(domid, PodTarget.domid);
    this.named(`XENMEM_get_pod_target(dom${domid})`, () => this.hc.memoryOp(XenMem.getPodTarget, arg));
    return {
      totPages: arg.readBigUInt64LE(PodTarget.totPages),
      podCachePages: arg.readBigUInt64LE(PodTarget.podCachePages),
      podEntries: arg.readBigUInt64LE(PodTarget.podEntries),
    };
  }

  /** XENMEM_maximum_gpfn: the highest guest frame the domain's p2m has mapped (HVM/PVH). */
  maximumGpfn(domid: number): bigint {
    const arg = Buffer.alloc(8);
    arg.writeUInt16LE(domid, 0);
    return BigInt(this.named(`XENMEM_maximum_gpfn(dom${domid})`, () => this.hc.memoryOp(XenMem.maximumGpfn, arg)));
  }

  /** HVMOP_get_param. */
  hvmGetParam(domid: number, index: number): bigint {
    const arg = Buffer.alloc(HVM_PARAM_SIZE);
    arg.writeUInt16LE(domid, 0);
    arg.writeUInt32LE(index, 4);
    this.named(`HVMOP_get_param(dom${domid}, ${index})`, () => this.hc.hvmOp(HvmOp.getParam, arg));
    return arg.readBigUInt64LE(8);
  }

  /** XENMEM_populate_physmap / XENMEM_decrease_reservation of single 4 KiB frames; returns how many were done. */
  reservation(domid: number, which: 'populate' | 'decrease', gfns: readonly bigint[]): number {
    const arg = Buffer.alloc(MemRes.size);
    const list = Buffer.alloc(gfns.length * 8);
    gfns.forEach((g, i) => list.writeBigUInt64LE(g, i * 8));
    arg.writeBigUInt64LE(BigInt(gfns.length), MemRes.nrExtents);
    arg.writeUInt16LE(domid, MemRes.domid);
    const cmd = which === 'populate' ? XenMem.populatePhysmap : XenMem.decreaseReservation;
    return this.named(`XENMEM_${which === 'populate' ? 'populate_physmap' : 'decrease_reservation'}(dom${domid})`,
      () => this.hc.memoryOp(cmd, arg, { buf: list, handleOffset: MemRes.extentStart }));
  }

  /** XEN_DMOP_inject_event: deliver an exception to `vcpu` at its next entry (HVM/PVH). */
  injectEvent(domid: number, vcpu: number, vector: number, type: number, insnLen: number, cr2 = 0n): void {
    const b = Buffer.alloc(DmOpInject.size);
    b.writeUInt32LE(DMOP_INJECT_EVENT, DmOpInject.op);
    b.writeUInt32LE(vcpu, DmOpInject.vcpu);
    b.writeUInt8(vector, DmOpInject.vector);
    b.writeUInt8(type, DmOpInject.type);
    b.writeUInt8(insnLen, DmOpInject.insnLen);
    b.writeUInt32LE(0xffffffff, DmOpInject.errorCode);
    b.writeBigUInt64LE(cr2, DmOpInject.cr2);
    this.named(`XEN_DMOP_inject_event(dom${domid}, vcpu ${vcpu}, vector ${vector})`, () => this.hc.dmOp(domid, [b]));
  }

  /** Run a non-domctl hypercall, renaming its error after the call. */
  private named<T>(name: string, fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      if (e instanceof XenError) throw new XenError(name, e.errno, e.hint || hintFor(-1, e.errno));
      throw e;
    }
  }

  version(): XenVersion {
    const v = this.hc.xenVersion(XenVer.version);
    const extraBuf = Buffer.alloc(16);
    this.hc.xenVersion(XenVer.extraversion, extraBuf);
    const capBuf = Buffer.alloc(1024);
    this.hc.xenVersion(XenVer.capabilities, capBuf);
    const cstr = (b: Buffer) => b.subarray(0, Math.max(0, b.indexOf(0) < 0 ? b.length : b.indexOf(0))).toString('latin1');
    return { major: v >>> 16, minor: v & 0xffff, extra: cstr(extraBuf), capabilities: cstr(capBuf) };
  }
}
