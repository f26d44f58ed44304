// What the command line serves: a hypercall path (Xen's, or the simulator's) and what
// goes with it. A leaf, so the simulated demo (simDemo.ts) and cli.ts need not import
// each other.
import type { Hypercalls } from './xg/hypercalls';
import type { XsTransport } from './xs/transport';

export interface Backend {
  hc: Hypercalls;
  /** Demo ELF for the simulated guest (for the gdb `file` hint). */
  symbolFile?: string;
  /** The xenstore `monitor info` reads: the simulated one; unset, this host's. */
  xenstore?: () => Promise<XsTransport>;
  close(): void;
}
