// Binary layout of `struct xen_domctl` and the payloads we use.
// Offsets are from xen/include/public/domctl.h; they are identical from Xen 4.17
// to 4.22, only XEN_DOMCTL_INTERFACE_VERSION changes (see docs/xen-interface.md).

export const DOMCTL_SIZE = 144;
/** The union `u` starts here; payload offsets below are absolute. */
export const DOMCTL_PAYLOAD = 16;

/** Interface versions by Xen release; probed at run time, newest first. */
export const DOMCTL_INTERFACE_VERSIONS: readonly { version: number; xen: string }[] = [
  { version: 0x18, xen: '4.22' },
  { version: 0x17, xen: '4.19-4.21' },
  { version: 0x16, xen: '4.18' },
  { version: 0x15, xen: '4.17' },
];

export const DomctlCmd = {
  pausedomain: 3,
  unpausedomain: 4,
  getdomaininfo: 5,
  setvcpucontext: 12,
  getvcpucontext: 13,
  setdebugging: 18,
  get_address_size: 36,
  debug_op: 54,
  gdbsx_guestmemio: 1000,
  gdbsx_pausevcpu: 1001,
  gdbsx_unpausevcpu: 1002,
  gdbsx_domstatus: 1003,
} as const;
export type DomctlCmdName = keyof typeof DomctlCmd;

const cmdNames = new Map<number, string>(Object.entries(DomctlCmd).map(([k, v]) => [v, k]));
export function domctlName(cmd: number): string {
  return `XEN_DOMCTL_${cmdNames.get(cmd) ?? String(cmd)}`;
}

/** Absolute offsets inside the 144-byte struct. */
export const Off = {
  cmd: 0,
  interfaceVersion: 4,
  domain: 8,
  // getdomaininfo (OUT)
  infoDomain: 16,
  infoFlags: 20,
  infoTotPages: 24,
  infoMaxPages: 32,
  infoSharedInfoFrame: 64,
  infoCpuTime: 72,
  infoNrOnlineVcpus: 80,
  infoMaxVcpuId: 84,
  infoSsidref: 88,
  infoHandle: 92,
  infoCpupool: 108,
  // getvcpucontext / setvcpucontext
  ctxVcpu: 16,
  ctxHandle: 24,
  // setdebugging
  debugEnable: 16,
  // get_address_size (OUT)
  addressSize: 16,
  // debug_op
  debugOpOp: 16,
  debugOpVcpu: 20,
  // gdbsx_guestmemio
  memPgd3val: 16,
  memGva: 24,
  memUva: 32,
  memLen: 40,
  memGwr: 44,
  memRemain: 48,
  // gdbsx_pausevcpu / gdbsx_unpausevcpu
  pvVcpu: 16,
  // gdbsx_domstatus (OUT)
  dsPaused: 16,
  dsVcpuId: 20,
  dsVcpuEv: 24,
} as const;

/** XEN_DOMINF_* flags in getdomaininfo.flags. */
export const DomInf = {
  dying: 0x1,
  hvmGuest: 0x2,
  shutdown: 0x4,
  paused: 0x8,
  blocked: 0x10,
  running: 0x20,
  debugged: 0x40,
  xsDomain: 0x80,
  hap: 0x100,
  shutdownShift: 16,
  shutdownMask: 0xff,
} as const;

/** SHUTDOWN_* reasons (xen/include/public/sched.h). */
export const ShutdownReason = { poweroff: 0, reboot: 1, suspend: 2, crash: 3, watchdog: 4, softReset: 5 } as const;

export const DebugOp = { singleStepOff: 0, singleStepOn: 1 } as const;

/** gdbsx_vcpu_event values reported by gdbsx_domstatus. */
export const VcpuEvent = { none: 0, breakpoint: 3 } as const;

/** __HYPERVISOR_* numbers and XENVER_* sub-ops. */
export const Hypercall = { xen_version: 17, domctl: 36 } as const;
export const XenVer = { version: 0, extraversion: 1, capabilities: 3 } as const;

/** Sizes of the VCPU context union and its two layouts (see context.ts). */
export const VCPU_CONTEXT_ANY_SIZE = 5168;

export const VIRQ_DEBUGGER = 6;

/** A fresh request: cmd, version and domain set; payload zeroed. */
export function newDomctl(cmd: number, interfaceVersion: number, domid: number): Buffer {
  const b = Buffer.alloc(DOMCTL_SIZE);
  b.writeUInt32LE(cmd, Off.cmd);
  b.writeUInt32LE(interfaceVersion, Off.interfaceVersion);
  b.writeUInt16LE(domid, Off.domain);
  return b;
}

export interface DomainInfo {
  domid: number;
  flags: number;
  dying: boolean;
  hvm: boolean;
  shutdown: boolean;
  shutdownReason: number;
  paused: boolean;
  blocked: boolean;
  running: boolean;
  debugged: boolean;
  totPages: bigint;
  maxPages: bigint;
  cpuTimeNs: bigint;
  nrOnlineVcpus: number;
  maxVcpuId: number;
  handle: string;
}

export function decodeDomainInfo(b: Buffer): DomainInfo {
  const flags = b.readUInt32LE(Off.infoFlags);
  const h = b.subarray(Off.infoHandle, Off.infoHandle + 16).toString('hex');
  return {
    domid: b.readUInt16LE(Off.infoDomain),
    flags,
    dying: (flags & DomInf.dying) !== 0,
    hvm: (flags & DomInf.hvmGuest) !== 0,
    shutdown: (flags & DomInf.shutdown) !== 0,
    shutdownReason: (flags >>> DomInf.shutdownShift) & DomInf.shutdownMask,
    paused: (flags & DomInf.paused) !== 0,
    blocked: (flags & DomInf.blocked) !== 0,
    running: (flags & DomInf.running) !== 0,
    debugged: (flags & DomInf.debugged) !== 0,
    totPages: b.readBigUInt64LE(Off.infoTotPages),
    maxPages: b.readBigUInt64LE(Off.infoMaxPages),
    cpuTimeNs: b.readBigUInt64LE(Off.infoCpuTime),
    nrOnlineVcpus: b.readUInt32LE(Off.infoNrOnlineVcpus),
    maxVcpuId: b.readUInt32LE(Off.infoMaxVcpuId),
    handle: `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`,
  };
}

/** Encode a DomainInfo into a getdomaininfo reply (used by the simulated Xen). */
export function encodeDomainInfo(b: Buffer, info: Omit<DomainInfo, 'dying' | 'hvm' | 'shutdown' | 'shutdownReason' | 'paused' | 'blocked' | 'running' | 'debugged' | 'handle'> & { handle?: Buffer }): void {
  b.fill(0, DOMCTL_PAYLOAD);
  b.writeUInt16LE(info.domid, Off.infoDomain);
  b.writeUInt16LE(info.domid, Off.domain);
  b.writeUInt32LE(info.flags >>> 0, Off.infoFlags);
  b.writeBigUInt64LE(info.totPages, Off.infoTotPages);
  b.writeBigUInt64LE(info.maxPages, Off.infoMaxPages);
  b.writeBigUInt64LE(info.cpuTimeNs, Off.infoCpuTime);
  b.writeUInt32LE(info.nrOnlineVcpus, Off.infoNrOnlineVcpus);
  b.writeUInt32LE(info.maxVcpuId, Off.infoMaxVcpuId);
  if (info.handle) info.handle.copy(b, Off.infoHandle, 0, 16);
}

export interface DomStatus {
  paused: boolean;
  /** -1 when no VCPU has a pending event. */
  vcpuId: number;
  vcpuEvent: number;
}

export function decodeDomStatus(b: Buffer): DomStatus {
  return {
    paused: b.readUInt8(Off.dsPaused) !== 0,
    vcpuId: b.readInt32LE(Off.dsVcpuId),
    vcpuEvent: b.readUInt32LE(Off.dsVcpuEv),
  };
}
