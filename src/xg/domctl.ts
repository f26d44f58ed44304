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
  shadow_op: 10,
  setvcpucontext: 12,
  getvcpucontext: 13,
  getvcpuinfo: 14,
  getvcpuaffinity: 25,
  setdebugging: 18,
  get_address_size: 36,
  gethvmcontext_partial: 55,
  vm_event_op: 56,
  getpageframeinfo3: 61,
  monitor_op: 77,
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
  /** arch_config (struct xen_arch_domainconfig): x86 emulation_flags, then misc_flags. */
  infoEmulationFlags: 120,
  // getvcpucontext / setvcpucontext
  ctxVcpu: 16,
  ctxHandle: 24,
  // getvcpuinfo: vcpu (IN); online, blocked, running (u8), cpu_time (ns), cpu (OUT)
  viVcpu: 16,
  viOnline: 20,
  viBlocked: 21,
  viRunning: 22,
  viCpuTime: 24,
  viCpu: 32,
  // getvcpuaffinity: vcpu, flags (IN); cpumap_hard, cpumap_soft (struct xenctl_bitmap: handle, nr_bits)
  affVcpu: 16,
  affFlags: 20,
  affHardBitmap: 24,
  affHardNrBits: 32,
  affSoftBitmap: 40,
  affSoftNrBits: 48,
  // setdebugging
  debugEnable: 16,
  // get_address_size (OUT)
  addressSize: 16,
  // debug_op
  debugOpOp: 16,
  debugOpVcpu: 20,
  // gethvmcontext_partial: type, instance, bufsz, buffer handle
  hvmCtxType: 16,
  hvmCtxInstance: 20,
  hvmCtxBufsz: 24,
  hvmCtxHandle: 32,
  // vm_event_op: op, mode, u.enable.port (OUT) / u.version (OUT)
  vmeOp: 16,
  vmeMode: 20,
  vmePort: 24,
  // getpageframeinfo3: num, array handle (u64 frames in, types out)
  pfiNum: 16,
  pfiHandle: 24,
  // monitor_op: op, event (capabilities OUT), u (sync byte first for debug_exception etc.)
  monOp: 16,
  monEvent: 20,
  monSync: 24,
  // shadow_op: op, mode, mb, dirty_bitmap handle, pages (IN/OUT), stats (OUT)
  shadowOp: 16,
  shadowMode: 20,
  shadowMb: 24,
  shadowBitmap: 32,
  shadowPages: 40,
  shadowFaultCount: 48,
  shadowDirtyCount: 52,
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

/** XEN_VCPUAFFINITY_* (vcpuaffinity.flags): which map to get or set. */
export const VcpuAffinity = { hard: 1, soft: 2 } as const;

/** XEN_X86_EMU_* (arch_config.emulation_flags): what Xen emulates for an HVM-container domain. */
export const X86Emu = { lapic: 1 << 0, hpet: 1 << 1, pm: 1 << 2, rtc: 1 << 3, ioapic: 1 << 4, pic: 1 << 5, vga: 1 << 6, iommu: 1 << 7, pit: 1 << 8, usePirq: 1 << 9, vpci: 1 << 10 } as const;

/** PV, or an HVM container without (PVH: at most a local APIC and vPCI) or with emulated platform devices (HVM). */
export function domainType(info: Pick<DomainInfo, 'hvm' | 'emulationFlags'>): 'PV' | 'PVH' | 'HVM' {
  if (!info.hvm) return 'PV';
  return (info.emulationFlags & ~(X86Emu.lapic | X86Emu.vpci)) === 0 ? 'PVH' : 'HVM';
}

/** XEN_DOMCTL_SHADOW_OP_* (shadow_op.op) and the mode flags we use. */
export const ShadowOp = { off: 0, enableLogDirty: 2, clean: 11, peek: 12, enable: 32 } as const;
export const SHADOW_ENABLE_LOG_DIRTY = 1 << 2;
/** CLEAN/PEEK mode: the last round (HVM: also the frames Xen itself maps writable). */
export const SHADOW_LOGDIRTY_FINAL = 1 << 0;

/** SHUTDOWN_* reasons (xen/include/public/sched.h). */
export const ShutdownReason = { poweroff: 0, reboot: 1, suspend: 2, crash: 3, watchdog: 4, softReset: 5 } as const;

export const DebugOp = { singleStepOff: 0, singleStepOn: 1 } as const;

/** gdbsx_vcpu_event values reported by gdbsx_domstatus. */
export const VcpuEvent = { none: 0, breakpoint: 3 } as const;

/** __HYPERVISOR_* numbers and XENVER_* sub-ops. */
export const Hypercall = { memory_op: 12, xen_version: 17, hvm_op: 34, domctl: 36, dm_op: 41 } as const;

/** XEN_VM_EVENT_* ops and modes (vm_event_op). */
export const VmEventOp = { enable: 0, disable: 1, resume: 2, getVersion: 3 } as const;
export const VmEventMode = { paging: 1, monitor: 2, sharing: 3 } as const;

/** XEN_DOMCTL_MONITOR_OP_* and XEN_DOMCTL_MONITOR_EVENT_* (monitor_op). */
export const MonitorOp = { enable: 0, disable: 1, getCapabilities: 2 } as const;
export const MonitorEvent = {
  writeCtrlreg: 0, movToMsr: 1, singlestep: 2, softwareBreakpoint: 3, guestRequest: 4, debugException: 5, cpuid: 6,
} as const;

/** HVM_SAVE_CODE(CPU): the per-VCPU CPU record of gethvmcontext_partial (struct hvm_hw_cpu, 1032 bytes). */
export const HVM_SAVE_CODE_CPU = 2;
export const HVM_HW_CPU_SIZE = 1032;
/** Offsets inside struct hvm_hw_cpu. */
export const HvmCpu = {
  rax: 512, rbx: 520, rcx: 528, rdx: 536, rbp: 544, rsi: 552, rdi: 560, rsp: 568,
  r8: 576, r9: 584, r10: 592, r11: 600, r12: 608, r13: 616, r14: 624, r15: 632,
  rip: 640, rflags: 648, cr0: 656, cr2: 664, cr3: 672, cr4: 680,
  dr0: 688, dr1: 696, dr2: 704, dr3: 712, dr6: 720, dr7: 728,
  msrEfer: 992,
} as const;

/** HVMOP_get_param and the parameter the monitor ring lives in. */
export const HvmOp = { setParam: 0, getParam: 1 } as const;
export const HVM_PARAM_MONITOR_RING_PFN = 28;
/** struct xen_hvm_param: domid u16 @0, index u32 @4, value u64 @8. */
export const HVM_PARAM_SIZE = 16;

/** XENMEM_* sub-ops and struct xen_memory_reservation (32 bytes). */
export const XenMem = { increaseReservation: 0, decreaseReservation: 1, populatePhysmap: 6, maximumGpfn: 14, getPodTarget: 17 } as const;
/** struct xen_pod_target (XENMEM_get_pod_target, HVM/PVH only): target_pages in, tot_pages/pod_cache_pages/pod_entries out, domid in. */
export const PodTarget = { targetPages: 0, totPages: 8, podCachePages: 16, podEntries: 24, domid: 32, size: 40 } as const;
export const MemRes = { extentStart: 0, nrExtents: 8, extentOrder: 16, memFlags: 20, domid: 24, size: 32 } as const;

/** XEN_DMOP_inject_event: struct xen_dm_op (op u32 @0, then the inject_event payload). */
export const DMOP_INJECT_EVENT = 13;
export const DmOpInject = { op: 0, vcpu: 8, vector: 12, type: 13, insnLen: 14, errorCode: 16, cr2: 24, size: 32 } as const;
/** X86_EVENTTYPE_*: how an injected event is delivered. */
export const X86EventType = { hwException: 3, privSwException: 5, swException: 6 } as const;

/** getpageframeinfo3 types (top nibble of each returned entry). */
export const PageType = { none: 0, l1: 0x10000000, l2: 0x20000000, l3: 0x30000000, l4: 0x40000000, pinned: 0x80000000, broken: 0xd0000000, xtab: 0xf0000000, mask: 0xf0000000, levelMask: 0x70000000 } as const;

/** DOMID_INVALID, the domain vm_event GET_VERSION is asked with. */
export const DOMID_INVALID = 0x7ff4;
export const XenVer = { version: 0, extraversion: 1, capabilities: 3 } as const;

/** Sizes of the VCPU context union and its two layouts (see context.ts). */
export const VCPU_CONTEXT_ANY_SIZE = 5168;

export const VIRQ_DEBUGGER = 6;

/** A fresh request: cmd, version and domain set; payload zeroed. */
export function newDomctl(cmd: number, interfaceVersion: number, domid: number): Buffer {
  // From Node's small-buffer pool (one per domctl; Buffer.alloc would make an ArrayBuffer each time).
  const b = Buffer.allocUnsafe(DOMCTL_SIZE).fill(0);
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
  /** The shared_info page's frame (an MFN for PV guests). */
  sharedInfoFrame: bigint;
  cpuTimeNs: bigint;
  nrOnlineVcpus: number;
  maxVcpuId: number;
  handle: string;
  /** The CPU pool the domain is in. */
  cpupool: number;
  /** X86Emu bits (0 for PV). */
  emulationFlags: number;
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
    sharedInfoFrame: b.readBigUInt64LE(Off.infoSharedInfoFrame),
    cpuTimeNs: b.readBigUInt64LE(Off.infoCpuTime),
    nrOnlineVcpus: b.readUInt32LE(Off.infoNrOnlineVcpus),
    maxVcpuId: b.readUInt32LE(Off.infoMaxVcpuId),
    handle: `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`,
    cpupool: b.readUInt32LE(Off.infoCpupool),
    emulationFlags: b.readUInt32LE(Off.infoEmulationFlags),
  };
}

/** Encode a DomainInfo into a getdomaininfo reply (used by the simulated Xen). */
export function encodeDomainInfo(b: Buffer, info: Omit<DomainInfo, 'dying' | 'hvm' | 'shutdown' | 'shutdownReason' | 'paused' | 'blocked' | 'running' | 'debugged' | 'handle' | 'sharedInfoFrame' | 'cpupool' | 'emulationFlags'> & { handle?: Buffer; sharedInfoFrame?: bigint; cpupool?: number; emulationFlags?: number }): void {
  b.fill(0, DOMCTL_PAYLOAD);
  b.writeUInt16LE(info.domid, Off.infoDomain);
  b.writeUInt16LE(info.domid, Off.domain);
  b.writeUInt32LE(info.flags >>> 0, Off.infoFlags);
  b.writeBigUInt64LE(info.totPages, Off.infoTotPages);
  b.writeBigUInt64LE(info.maxPages, Off.infoMaxPages);
  b.writeBigUInt64LE(info.sharedInfoFrame ?? 0n, Off.infoSharedInfoFrame);
  b.writeBigUInt64LE(info.cpuTimeNs, Off.infoCpuTime);
  b.writeUInt32LE(info.nrOnlineVcpus, Off.infoNrOnlineVcpus);
  b.writeUInt32LE(info.maxVcpuId, Off.infoMaxVcpuId);
  if (info.handle) info.handle.copy(b, Off.infoHandle, 0, 16);
  b.writeUInt32LE(info.cpupool ?? 0, Off.infoCpupool);
  b.writeUInt32LE(info.emulationFlags ?? 0, Off.infoEmulationFlags);
}

/** CPU numbers set in a xenctl_bitmap (bit n of byte n/8). */
export function bitmapCpus(b: Buffer): number[] {
  const out: number[] = [];
  for (let i = 0; i < b.length * 8; i++) if (b[i >> 3] & (1 << (i & 7))) out.push(i);
  return out;
}

/** XEN_DOMCTL_getvcpuinfo: the scheduler's view of one VCPU (Xen answers it without pausing anything). */
export interface VcpuInfo {
  online: boolean;
  /** Blocked in Xen (SCHEDOP_block, hlt): idle. */
  blocked: boolean;
  /** On a physical CPU right now. */
  running: boolean;
  cpuTimeNs: bigint;
  cpu: number;
}

export function decodeVcpuInfo(b: Buffer): VcpuInfo {
  return {
    online: b.readUInt8(Off.viOnline) !== 0,
    blocked: b.readUInt8(Off.viBlocked) !== 0,
    running: b.readUInt8(Off.viRunning) !== 0,
    cpuTimeNs: b.readBigUInt64LE(Off.viCpuTime),
    cpu: b.readUInt32LE(Off.viCpu),
  };
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
