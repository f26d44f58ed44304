// The one interface both hypervisors implement: the real one (privcmd ioctl, see
// privcmd.ts) and the simulated one (sim/). It sits at the level of the raw
// hypercalls so that everything above it (xenctl.ts, src/vcpu) runs unchanged on both.

/**
 * A caller buffer referenced from inside the domctl struct: the real backend writes
 * `buf`'s address at `handleOffset` (a guest handle or gdbsx's raw `uva`); the
 * simulated one reads and writes `buf` directly.
 */
export interface DomctlData {
  buf: Buffer;
  handleOffset: number;
}

/**
 * Guest frames mapped into our address space (mmap of privcmd + IOCTL_PRIVCMD_MMAPBATCH_V2
 * on real Xen). Frames are MFNs for a PV guest and GFNs for HVM/PVH. Access goes through
 * read/write (copies) so that a frame Xen refused, or a mapping already unmapped, gives
 * an error instead of SIGBUS/SIGSEGV.
 */
export interface ForeignMapping {
  /** Number of frames asked for (the mapping is frames * 4096 bytes). */
  readonly frames: number;
  readonly writable: boolean;
  /** Per frame: 0, or the positive errno Xen gave for it (EINVAL hole, ENOENT paged, EPERM...). */
  readonly errors: readonly number[];
  /** Copy `into.length` bytes from byte `offset` of the mapping. Throws XenError EFAULT over a failed frame. */
  read(offset: number, into: Buffer): void;
  /** Copy `from` to byte `offset` of the mapping (writable mappings only). */
  write(offset: number, from: Buffer): void;
  /** munmap; idempotent. Later read/write throw. */
  unmap(): void;
}

/** A bound interdomain event channel (the monitor ring's). */
export interface EventPort {
  readonly localPort: number;
  /** IOCTL_EVTCHN_NOTIFY: kick the remote end (Xen processes our ring responses). */
  notify(): void;
  /** Unbind; idempotent. */
  close(): void;
}

export interface Hypercalls {
  /** "xen" (privcmd) or "sim". */
  readonly kind: 'xen' | 'sim';

  /**
   * __HYPERVISOR_domctl with `op` (the 144-byte struct xen_domctl, in/out: Xen copies it
   * back for the calls that return data). Returns the hypercall's non-negative result;
   * throws XenError (with the domctl's name and errno) on a negative one.
   */
  domctl(op: Buffer, data?: DomctlData): number;

  /** __HYPERVISOR_xen_version(cmd, arg). `arg` (if any) is filled in place. */
  xenVersion(cmd: number, arg?: Buffer): number;

  /**
   * Subscribe to "a domain has paused for debugging" (VIRQ_DEBUGGER or the simulated
   * equivalent). Optional: a backend without it is polled. Returns an unsubscribe.
   * Xen raises the VIRQ for single-step traps but not for breakpoints, so callers must
   * still poll; the event only shortens the wait.
   */
  onDebuggerEvent?(listener: () => void): () => void;

  /**
   * Map `frames` of `domid` read-only or read-write in one batch. A frame Xen refuses
   * does not fail the call: its entry in `errors` is set. Throws XenError when the
   * mapping as a whole cannot be made (no privcmd mmap, bad domain).
   */
  mapForeign(domid: number, frames: readonly bigint[], writable: boolean): ForeignMapping;

  /** __HYPERVISOR_hvm_op(cmd, arg): `arg` (e.g. struct xen_hvm_param) in/out. */
  hvmOp(cmd: number, arg: Buffer): number;

  /**
   * __HYPERVISOR_memory_op(cmd, arg): `arg` in/out (e.g. struct xen_memory_reservation,
   * whose extent_start handle points at `data.buf`, written at `data.handleOffset`).
   */
  memoryOp(cmd: number, arg: Buffer, data?: DomctlData): number;

  /**
   * __HYPERVISOR_event_channel_op(cmd, arg): `arg` (e.g. struct evtchn_status) in/out.
   * Optional: an addon built before it was added, or a test double, has none.
   */
  eventChannelOp?(cmd: number, arg: Buffer): number;

  /** __HYPERVISOR_dm_op through IOCTL_PRIVCMD_DM_OP on `domid` with these buffers (in/out). */
  dmOp(domid: number, bufs: Buffer[]): number;

  /**
   * Bind an interdomain event channel to `remotePort` of `domid` (/dev/xen/evtchn);
   * `onEvent` runs on the event loop each time Xen signals it.
   */
  bindInterdomain(domid: number, remotePort: number, onEvent: () => void): EventPort;

  close(): void;
}

/** The calls beyond domctl of `inner`, bound: for wrappers that intercept only domctls (tests, bench tracing). */
export function forwardBeyondDomctl(inner: Hypercalls): Pick<Hypercalls, 'mapForeign' | 'hvmOp' | 'memoryOp' | 'dmOp' | 'bindInterdomain'> {
  return {
    mapForeign: (domid, frames, writable) => inner.mapForeign(domid, frames, writable),
    hvmOp: (cmd, arg) => inner.hvmOp(cmd, arg),
    memoryOp: (cmd, arg, data) => inner.memoryOp(cmd, arg, data),
    dmOp: (domid, bufs) => inner.dmOp(domid, bufs),
    bindInterdomain: (domid, port, onEvent) => inner.bindInterdomain(domid, port, onEvent),
  };
}
