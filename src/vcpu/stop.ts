// What run control reports and takes: leaf types shared by the Guest facade, the
// run-control paths and the protocol layer.

/** GDB signal numbers (not the host's). */
export const Sig = { INT: 2, TRAP: 5, KILL: 9, SEGV: 11, TERM: 15 } as const;

/** gdb's names for the three kinds of watchpoint (Z2, Z3, Z4), as its stop replies say them. */
export type WatchKind = 'watch' | 'rwatch' | 'awatch';

export type StopEvent =
  | {
    kind: 'stopped'; vcpu: number; signal: number; swbreak?: boolean; hwbreak?: boolean; message?: string;
    /** A data breakpoint fired (a trap: the access is done): which kind, at the address gdb gave. */
    watch?: { kind: WatchKind; addr: bigint };
  }
  /** The domain is gone (destroyed, powered off, rebooted into a new domid). */
  | { kind: 'exited'; code: number; message: string }
  | { kind: 'terminated'; signal: number; message: string };

export interface ResumePlan {
  /** VCPU to single-step, if any. */
  step?: number;
  /** VCPUs to run freely. VCPUs in neither stay stopped. */
  cont: ReadonlySet<number>;
}

/** A request this target cannot carry out, with the reason: answered to gdb as `E.<reason>`. */
export class RefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RefusedError';
  }
}
