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

  close(): void;
}
