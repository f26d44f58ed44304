// Who may attach which domain for a connection: the server, in its two modes.
// `gdbsx -a <domid>` serves one domain (attached when gdb connects); `gdbsx serve`
// attaches any guest domain on gdb's `attach <domid>` (vAttach); a domain belongs to one
// connection at a time (which may hold several, one per gdb inferior). The protocol side (extended.ts) asks; refusals are errors whose message is
// the text gdb should print.
import type { Guest } from '../vcpu/guest';

export interface DomainBroker {
  /** The one domain a `gdbsx -a` server serves; undefined for `gdbsx serve`. */
  readonly fixedDomid: number | undefined;
  /** Attach `domid` for the connection `owner` (paused, as `gdbsx -a` does), or throw with a readable reason. */
  attach(domid: number, owner: object): Guest;
  /** `owner` has detached `domid` (detach, kill, or the connection ended). */
  released(domid: number, owner: object): void;
  /** The osdata documents (`info os`): see domainList.ts. */
  osdata(annex: string): Promise<string | undefined>;
}
