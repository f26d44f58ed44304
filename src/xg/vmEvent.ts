// The monitor (vm_event) ring: one 4 KiB page shared with Xen, Xen the front end
// (requests), the debugger the back end (responses). Layout from
// xen/include/public/vm_event.h and io/ring.h; identical from Xen 4.17 to 4.22
// (VM_EVENT_INTERFACE_VERSION 7). Used by the stock-Xen run control and by the
// simulated Xen, so both agree on every byte.

export const VM_EVENT_INTERFACE_VERSION = 7;

/** Shared ring header: req_prod, req_event, rsp_prod, rsp_event (u32 each), padding to 64. */
export const Ring = { reqProd: 0, reqEvent: 4, rspProd: 8, rspEvent: 12, header: 64, slotSize: 400, slots: 8 } as const;

/** Byte offset of ring slot `idx` (requests and responses share the slots). */
export function slotOffset(idx: number): number {
  return Ring.header + Ring.slotSize * (idx & (Ring.slots - 1));
}

/** VM_EVENT_REASON_*. */
export const Reason = {
  memAccess: 1, writeCtrlreg: 4, movToMsr: 5, softwareBreakpoint: 6, singlestep: 7, guestRequest: 8,
  debugException: 9, cpuid: 10,
} as const;

/** VM_EVENT_FLAG_*. */
export const VmFlag = {
  vcpuPaused: 0x1, foreign: 0x2, emulate: 0x4, toggleSinglestep: 0x10, deny: 0x40, alternateP2m: 0x80,
  setRegisters: 0x100, setEmulInsnData: 0x200, fastSinglestep: 0x800,
} as const;

/** Offsets inside a 400-byte vm_event_request_t / vm_event_response_t. */
export const Req = {
  version: 0, flags: 4, reason: 8, vcpuId: 12, altp2mIdx: 16,
  /** u.software_breakpoint / u.debug_exception / u.singlestep: gfn. */
  gfn: 24,
  /** u.debug_exception: pending_dbg (u64), insn_length (u32), type (u8). */
  pendingDbg: 32, insnLength: 40, type: 44,
  /** data.regs.x86 */
  regs: 56,
  size: 400,
} as const;

/** Offsets inside data.regs.x86 (GPRs in hardware order), relative to Req.regs. */
export const Regs = {
  rax: 0, rcx: 8, rdx: 16, rbx: 24, rsp: 32, rbp: 40, rsi: 48, rdi: 56,
  r8: 64, r9: 72, r10: 80, r11: 88, r12: 96, r13: 104, r14: 112, r15: 120,
  rflags: 128, dr6: 136, dr7: 144, rip: 152, cr0: 160, cr2: 168, cr3: 176, cr4: 184,
  msrEfer: 216,
} as const;

export interface VmEventRequest {
  version: number;
  flags: number;
  reason: number;
  vcpu: number;
  gfn: bigint;
  pendingDbg: bigint;
  insnLength: number;
  /** X86_EVENTTYPE_* of a debug_exception / software_breakpoint event. */
  type: number;
  rip: bigint;
  rflags: bigint;
  cr3: bigint;
  dr7: bigint;
}

export function decodeRequest(slot: Buffer): VmEventRequest {
  const r = Req.regs;
  return {
    version: slot.readUInt32LE(Req.version),
    flags: slot.readUInt32LE(Req.flags),
    reason: slot.readUInt32LE(Req.reason),
    vcpu: slot.readUInt32LE(Req.vcpuId),
    gfn: slot.readBigUInt64LE(Req.gfn),
    pendingDbg: slot.readBigUInt64LE(Req.pendingDbg),
    insnLength: slot.readUInt32LE(Req.insnLength),
    type: slot.readUInt8(Req.type),
    rip: slot.readBigUInt64LE(r + Regs.rip),
    rflags: slot.readBigUInt64LE(r + Regs.rflags),
    cr3: slot.readBigUInt64LE(r + Regs.cr3),
    dr7: slot.readBigUInt64LE(r + Regs.dr7),
  };
}

/**
 * A response to `req`: same reason and VCPU, version 7 (Xen ignores any other), and
 * `flags` (VCPU_PAUSED to release the VCPU, plus TOGGLE_SINGLESTEP etc.).
 */
export function encodeResponse(req: VmEventRequest, flags: number): Buffer {
  const b = Buffer.alloc(Req.size);
  b.writeUInt32LE(VM_EVENT_INTERFACE_VERSION, Req.version);
  b.writeUInt32LE(flags >>> 0, Req.flags);
  b.writeUInt32LE(req.reason, Req.reason);
  b.writeUInt32LE(req.vcpu, Req.vcpuId);
  return b;
}

/** A request as Xen writes it (for the simulated Xen). */
export function encodeRequest(req: Partial<VmEventRequest> & { reason: number; vcpu: number }): Buffer {
  const b = Buffer.alloc(Req.size);
  const r = Req.regs;
  b.writeUInt32LE(req.version ?? VM_EVENT_INTERFACE_VERSION, Req.version);
  b.writeUInt32LE((req.flags ?? VmFlag.vcpuPaused) >>> 0, Req.flags);
  b.writeUInt32LE(req.reason, Req.reason);
  b.writeUInt32LE(req.vcpu, Req.vcpuId);
  b.writeBigUInt64LE(req.gfn ?? 0n, Req.gfn);
  b.writeBigUInt64LE(req.pendingDbg ?? 0n, Req.pendingDbg);
  b.writeUInt32LE(req.insnLength ?? 0, Req.insnLength);
  b.writeUInt8(req.type ?? 0, Req.type);
  b.writeBigUInt64LE(req.rip ?? 0n, r + Regs.rip);
  b.writeBigUInt64LE(req.rflags ?? 0n, r + Regs.rflags);
  b.writeBigUInt64LE(req.cr3 ?? 0n, r + Regs.cr3);
  b.writeBigUInt64LE(req.dr7 ?? 0n, r + Regs.dr7);
  return b;
}
