// What a packet handler may use of its connection: the session implements it, the
// handlers see only this (no import of the session, so no circle between them).
import type { Guest, ResumePlan, StopEvent } from '../../vcpu/guest';
import type { XsTransport } from '../../xs/transport';
import type { DomainBroker } from '../broker';
import type { RegView } from '../regView';
import type { Framed, Reply } from '../reply';

export interface HandlerContext {
  // The domains held (several with multiprocess in extended mode) and the current one.
  /** The current domain; throws a readable error when none is attached. */
  readonly guest: Guest;
  /** The current domain, or undefined. */
  readonly attached: Guest | undefined;
  readonly domains: Guest[];
  holding(domid: number): Guest | undefined;
  addGuest(guest: Guest): void;
  /** Make `domid` the current domain (gdb selected one of its threads). */
  select(domid: number): void;
  /** Detach `domid` and stop serving it; the connection stays. */
  release(domid: number, why: string): void;
  /** The registers this client is shown for the current domain. */
  readonly regs: RegView;
  readonly lastStop: StopEvent;

  // Threads: the selections gdb and LLDB made.
  gVcpu: number | undefined;
  cVcpu: number | 'all' | undefined;
  suffixVcpu: number | undefined;
  readonly currentVcpu: number;
  readonly memoryVcpu: number;
  readonly stoppedVcpu: number;
  stoppedVcpuOf(g: Guest): number;

  // Features negotiated in qSupported (and LLDB's Q packets).
  multiprocess: boolean;
  swbreak: boolean;
  hwbreak: boolean;
  threadSuffix: boolean;
  listThreadsInStopReply: boolean;
  /** gdb sent `!` (extended-remote). */
  extended: boolean;

  // Who attaches domains (vAttach) and how `monitor info` reaches xenstore.
  broker: DomainBroker | undefined;
  xenstore: (() => Promise<XsTransport>) | undefined;

  // Replies and output.
  /** A reused buffer for memory reads of `n` bytes. */
  readBuffer(n: number): Buffer;
  /** A framed hex reply built in reused buffers. */
  hexReply(data: Buffer): Framed;
  send(reply: string | Buffer | Framed, rle?: boolean): void;
  /** Text for gdb's console (an `O` packet). */
  console(text: string): void;
  /** A one-line note for the stub's user. */
  readonly onNote: (message: string) => void;
  /** Run the given domains until one stops (all-stop); the stop reply. */
  resume(plans: ReadonlyMap<Guest, ResumePlan>): Promise<Reply>;
  close(why: string): void;
}
