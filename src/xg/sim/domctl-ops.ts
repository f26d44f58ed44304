// __HYPERVISOR_domctl for the simulated Xen: the 144-byte struct decoded as
// xen/common/domctl.c and xen/arch/x86/{domctl,gdbsx}.c do, in the same order of
// checks (version -> EACCES, domain lookup -> ESRCH, then per command), with the
// struct copied back only for the commands (and outcomes) where Xen copies it back.
import { DOMCTL_SIZE, DomInf, DomctlCmd, Off, VcpuAffinity, X86Emu, domctlName, encodeDomainInfo } from '../domctl';
import { Errno, XenError } from '../errors';
import { DomctlData } from '../hypercalls';
import { MAX_PAUSE_COUNT, SimDomain, SimVcpu } from './domain';
import { getPageFrameInfo } from './foreign';
import { guestMemIo } from './memio';
import type { SimMonitor } from './monitor';
import { applyContext, encodeContext, getHvmContextPartial } from './vcpu-context';
import { shadowOp } from './logDirty';

/** The simulated toolstack runs in dom0: that is "current->domain" for the checks. */
export const CALLER_DOMID = 0;
const DOMID_FIRST_RESERVED = 0x7ff0;
/** 4.18 (interface 0x16) made getdomaininfo fail for a missing domid instead of answering the next one. */
const FIRST_EXACT_GETDOMAININFO = 0x16;

/** What the domctl code needs from the simulated hypervisor. */
export interface DomctlHost {
  readonly interfaceVersion: number;
  /** Xen 4.21.0/4.21.1: get/setvcpucontext lose r8-r15 (see ContextQuirks). */
  readonly dropsHighGprs?: boolean;
  readonly gdbsx: boolean;
  readonly mtf: boolean;
  /** CONFIG_SHADOW_PAGING: PV log-dirty possible (default true). */
  readonly shadowPaging?: boolean;
  domain(domid: number): SimDomain | undefined;
  /** Existing domains in domid order. */
  domains(): SimDomain[];
  /** Something about `d` changed (it may have become runnable). */
  changed(d: SimDomain, what: string): void;
  /** Physical CPUs of the host (affinity maps, the CPU a VCPU runs on). */
  readonly pcpus: number;
  /** vm_event_op and monitor_op (monitor.ts). */
  readonly monitor?: SimMonitor;
}

interface Call {
  host: DomctlHost;
  name: string;
  op: Buffer;
  d: SimDomain;
  data: DomctlData | undefined;
}

/** A handler returns true when Xen copies the struct back to the caller. */
type Handler = (c: Call) => boolean;

function fail(c: { name: string }, errno: number, hint?: string): never {
  throw new XenError(c.name, errno, hint);
}

function vcpuArg(c: Call, off: number) {
  const n = c.op.readUInt32LE(off);
  return n < c.d.vcpus.length ? c.d.vcpus[n] : fail(c, Errno.EINVAL, `no VCPU ${n}`);
}

const handlers: Record<number, Handler> = {
  [DomctlCmd.pausedomain](c) {
    if (c.d.domid === CALLER_DOMID) fail(c, Errno.EINVAL, 'a domain cannot pause itself');
    if (c.d.controllerPause >= MAX_PAUSE_COUNT) fail(c, Errno.EOVERFLOW);
    c.d.controllerPause++;
    c.host.changed(c.d, 'paused');
    return false;
  },

  [DomctlCmd.unpausedomain](c) {
    if (c.d.controllerPause === 0) fail(c, Errno.EINVAL, 'not paused');
    c.d.controllerPause--;
    c.host.changed(c.d, 'unpaused');
    return false;
  },

  [DomctlCmd.getvcpucontext](c) {
    const v = vcpuArg(c, Off.ctxVcpu);
    if (c.d.domid === CALLER_DOMID && v.id === 0) fail(c, Errno.EINVAL, 'the calling VCPU');
    if (!v.initialised) fail(c, Errno.ENODATA);
    if (!c.data || c.data.buf.length < c.d.layout.size) fail(c, Errno.EFAULT);
    encodeContext(c.d, v, c.data.buf, { dropHighGprs: c.host.dropsHighGprs });
    return true;
  },

  [DomctlCmd.getvcpuinfo](c) {
    // xen/common/domctl.c: vcpu >= max_vcpus -> EINVAL; no pause, copied back.
    const v = vcpuArg(c, Off.viVcpu);
    const online = !v.down;
    c.op.writeUInt8(online ? 1 : 0, Off.viOnline);
    c.op.writeUInt8(online && v.halted ? 1 : 0, Off.viBlocked);
    c.op.writeUInt8(online && !v.halted && c.d.canRun(v) ? 1 : 0, Off.viRunning);
    c.op.writeBigUInt64LE(BigInt(v.instructions), Off.viCpuTime); // 1 ns per instruction, as getdomaininfo
    c.op.writeUInt32LE(online ? physicalCpu(v, c.host.pcpus) : 0, Off.viCpu);
    return true;
  },

  [DomctlCmd.getvcpuaffinity](c) {
    // xen/common/domctl.c + vcpu_affinity_domctl: the maps asked for by flags, each copied
    // into its xenctl_bitmap (min of both sizes, the rest of the caller's bytes zeroed).
    const v = vcpuArg(c, Off.affVcpu);
    const flags = c.op.readUInt32LE(Off.affFlags);
    if ((flags & (VcpuAffinity.hard | VcpuAffinity.soft)) === 0) fail(c, Errno.EINVAL, 'neither hard nor soft asked');
    for (const [bit, handle, nrOff, cpus] of [
      [VcpuAffinity.hard, Off.affHardBitmap, Off.affHardNrBits, v.hardAffinity],
      [VcpuAffinity.soft, Off.affSoftBitmap, Off.affSoftNrBits, v.softAffinity],
    ] as const) {
      if (!(flags & bit)) continue;
      const guestBytes = Math.ceil(c.op.readUInt32LE(nrOff) / 8);
      if (!c.data || c.data.handleOffset !== handle || c.data.buf.length < guestBytes) fail(c, Errno.EFAULT);
      const map = c.data.buf.subarray(0, guestBytes);
      map.fill(0);
      for (const cpu of cpus ?? [...Array(c.host.pcpus).keys()]) if (cpu < guestBytes * 8) map[cpu >> 3] |= 1 << (cpu & 7);
    }
    return false;
  },

  [DomctlCmd.setvcpucontext](c) {
    if (c.d.domid === CALLER_DOMID) fail(c, Errno.EINVAL, 'the calling domain');
    const v = vcpuArg(c, Off.ctxVcpu);
    if (!c.data) {
      // A NULL handle: vcpu_reset.
      v.initialised = false;
      v.down = true;
      v.halted = false;
    } else {
      if (c.data.buf.length < c.d.layout.size) fail(c, Errno.EFAULT);
      applyContext(c.d, v, c.data.buf, c.name, { dropHighGprs: c.host.dropsHighGprs });
    }
    c.host.changed(c.d, `vcpu ${v.id} context set`);
    return false;
  },

  [DomctlCmd.gethvmcontext_partial](c) {
    return getHvmContextPartial(c.d, c.op, c.data, c.name, CALLER_DOMID);
  },

  [DomctlCmd.getpageframeinfo3](c) {
    getPageFrameInfo(c.d, c.op, c.data, c.name);
    return false;
  },

  [DomctlCmd.shadow_op](c) {
    const r = shadowOp(c.d, c.op, c.data, c.name, CALLER_DOMID, c.host.shadowPaging ?? true);
    c.host.changed(c.d, 'log-dirty op');
    return r;
  },

  [DomctlCmd.setdebugging](c) {
    if (c.d.domid === CALLER_DOMID) fail(c, Errno.EINVAL, 'the calling domain');
    c.d.debuggerAttached = c.op.readUInt8(Off.debugEnable) !== 0;
    c.host.changed(c.d, c.d.debuggerAttached ? 'debugger attached' : 'debugger detached');
    return false;
  },

  [DomctlCmd.get_address_size](c) {
    c.op.writeUInt32LE(c.d.pv32 ? 32 : 64, Off.addressSize);
    return true;
  },

  [DomctlCmd.debug_op](c) {
    const v = vcpuArg(c, Off.debugOpVcpu);
    // arch_do_domctl: HVM only (and never the caller's own VCPU); hvm_debug_op: MTF is VMX only.
    if (!c.d.hvm || (c.d.domid === CALLER_DOMID && v.id === 0)) fail(c, Errno.EINVAL, 'not an HVM domain');
    const sub = c.op.readUInt32LE(Off.debugOpOp);
    if (sub > 1) fail(c, Errno.ENOSYS);
    if (!c.host.mtf) fail(c, Errno.EOPNOTSUPP, 'no monitor trap flag (not VMX)');
    v.singleStep = sub === 1;
    c.host.changed(c.d, `vcpu ${v.id} single-step ${v.singleStep ? 'on' : 'off'}`);
    return false;
  },

  [DomctlCmd.gdbsx_pausevcpu](c) {
    if (c.d.controllerPause === 0) fail(c, Errno.EBUSY, 'domain not paused');
    const v = vcpuArg(c, Off.pvVcpu);
    if (v.pauseCount >= MAX_PAUSE_COUNT) fail(c, Errno.EOVERFLOW);
    v.pauseCount++;
    c.host.changed(c.d, `vcpu ${v.id} paused`);
    return false;
  },

  [DomctlCmd.gdbsx_unpausevcpu](c) {
    if (c.d.controllerPause === 0) fail(c, Errno.EBUSY, 'domain not paused');
    const v = vcpuArg(c, Off.pvVcpu);
    if (v.pauseCount === 0) fail(c, Errno.EINVAL, `vcpu ${v.id} is not paused`);
    v.pauseCount--;
    c.host.changed(c.d, `vcpu ${v.id} unpaused`);
    return false;
  },

  [DomctlCmd.gdbsx_domstatus](c) {
    const paused = c.d.controllerPause > 0;
    c.op.writeUInt8(paused ? 1 : 0, Off.dsPaused);
    c.op.writeInt32LE(-1, Off.dsVcpuId);
    if (paused) {
      // The first VCPU with a pending event; reading clears it. vcpu_ev is left alone otherwise.
      const v = c.d.vcpus.find((x) => x.event !== 0);
      if (v) {
        c.op.writeUInt32LE(v.id, Off.dsVcpuId);
        c.op.writeUInt32LE(v.event, Off.dsVcpuEv);
        v.event = 0;
      }
    }
    return true;
  },
};

/** The physical CPU the scheduler puts `v` on: its own number's CPU if its hard affinity allows, else the first it allows. */
export function physicalCpu(v: SimVcpu, pcpus: number): number {
  const allowed = v.hardAffinity ?? [...Array(pcpus).keys()];
  const own = v.id % pcpus;
  return allowed.includes(own) ? own : allowed[0] ?? 0;
}

function fillDomainInfo(op: Buffer, d: SimDomain): void {
  let online = 0;
  let blocked = true;
  let running = false;
  for (const v of d.vcpus) {
    if (v.down) continue;
    online++;
    if (!v.halted) blocked = false;
    if (d.canRun(v) && !v.halted) running = true;
  }
  const flags = (online ? (blocked ? DomInf.blocked : 0) | (running ? DomInf.running : 0) : 0) |
    (d.dying ? DomInf.dying : 0) |
    (d.isShutdown ? DomInf.shutdown | ((d.shutdownCode ?? 0) << DomInf.shutdownShift) : 0) |
    (d.controllerPause > 0 ? DomInf.paused : 0) |
    (d.debuggerAttached ? DomInf.debugged : 0) |
    (d.hvm ? DomInf.hvmGuest | DomInf.hap : 0);
  encodeDomainInfo(op, {
    domid: d.domid,
    flags,
    totPages: BigInt(d.pages),
    maxPages: BigInt(d.pages + d.maxPagesSlack),
    cpuTimeNs: d.cpuTimeNs(),
    nrOnlineVcpus: online,
    maxVcpuId: d.vcpus.length - 1,
    handle: d.handle,
    sharedInfoFrame: BigInt(d.sharedInfoFrame),
    // A PVH domU as libxl builds it: Xen emulates its local APIC and nothing else.
    emulationFlags: d.hvm ? X86Emu.lapic : 0,
  });
}

function getDomainInfo(host: DomctlHost, name: string, op: Buffer): void {
  const domid = op.readUInt16LE(Off.domain);
  let d = host.domain(domid);
  if (!d) {
    if (domid >= DOMID_FIRST_RESERVED) fail({ name }, Errno.EINVAL);
    // Xen 4.17: the first existing domain at or above the one asked for.
    if (host.interfaceVersion < FIRST_EXACT_GETDOMAININFO) d = host.domains().find((x) => x.domid >= domid);
    if (!d) fail({ name }, Errno.ESRCH);
  }
  fillDomainInfo(op, d);
}

function gdbsxGuestMemIo(host: DomctlHost, name: string, op: Buffer, data: DomctlData | undefined): void {
  // Xen looks the domain up itself here: a missing or dying one gives remain = len, EFAULT.
  const d = host.domain(op.readUInt16LE(Off.domain));
  const len = op.readUInt32LE(Off.memLen);
  const remain = guestMemIo(d, op.readBigUInt64LE(Off.memGva), data?.buf ?? Buffer.alloc(0), len,
    op.readUInt8(Off.memGwr) !== 0, op.readBigUInt64LE(Off.memPgd3val));
  op.writeUInt32LE(remain, Off.memRemain);
  if (remain !== 0) fail({ name }, Errno.EFAULT, `${len - remain} of ${len} bytes done`);
}

export function doDomctl(host: DomctlHost, user: Buffer, data?: DomctlData): number {
  if (user.length < DOMCTL_SIZE) throw new XenError('XEN_DOMCTL', Errno.EFAULT, 'short domctl struct');
  // copy_from_guest: work on a private copy, copy back only where Xen does.
  const op = Buffer.from(user.subarray(0, DOMCTL_SIZE));
  const cmd = op.readUInt32LE(Off.cmd);
  const name = domctlName(cmd);
  if (op.readUInt32LE(Off.interfaceVersion) !== host.interfaceVersion) fail({ name }, Errno.EACCES);
  const gdbsxCmd = cmd >= DomctlCmd.gdbsx_guestmemio && cmd <= DomctlCmd.gdbsx_domstatus;

  if (cmd === DomctlCmd.getdomaininfo) {
    getDomainInfo(host, name, op);
    op.copy(user);
    return 0;
  }
  if (cmd === DomctlCmd.gdbsx_guestmemio) {
    if (!host.gdbsx) fail({ name }, Errno.ENOSYS, 'built without CONFIG_GDBSX');
    gdbsxGuestMemIo(host, name, op, data);
    op.copy(user);
    return 0;
  }
  if (cmd === DomctlCmd.vm_event_op && host.monitor) {
    // Looks the domain up itself: DOMID_INVALID is allowed (GET_VERSION).
    if (host.monitor.vmEventOp(name, op, op.readUInt16LE(Off.domain))) op.copy(user);
    return 0;
  }
  const d = host.domain(op.readUInt16LE(Off.domain));
  if (!d) fail({ name }, Errno.ESRCH);
  if (cmd === DomctlCmd.monitor_op && host.monitor) {
    if (host.monitor.monitorOp(name, op, d)) op.copy(user);
    return 0;
  }
  if (gdbsxCmd && !host.gdbsx) fail({ name }, Errno.ENOSYS, 'built without CONFIG_GDBSX');
  const h = handlers[cmd];
  if (!h) fail({ name }, Errno.ENOSYS);
  if (h({ host, name, op, d, data })) op.copy(user);
  return 0;
}
