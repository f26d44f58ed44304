// Polling for the client's next packet for a moment after each reply, instead of
// sleeping in epoll at once. gdb on the same host answers most replies within a few
// hundred µs (it asks for a byte, its stack line, its thread list in turn); a stub asleep
// by then needs the kernel to wake it: on a virtual CPU an interprocessor interrupt and
// a VM exit, about half of a loopback round trip (docs/benchmark.md: 66 µs asleep,
// 33 µs polling, for a `qC`). A few hundred µs of polling per burst of packets buys that
// back, where there is a CPU to spare for it:
// - never with one CPU to run on (the polling would take it from gdb itself);
// - per connection, only while its client does answer within the window: gdb across a
//   network or a slow forward (the lab's 1-3 ms) soon stops it, a fast one starts it again.
import os from 'os';
import { performance } from 'perf_hooks';
import createDebug from 'debug';

const log = createDebug('gdbsx:poll');

/** How long to poll after a reply unless told otherwise (`--poll-us`), µs. */
export const DEFAULT_POLL_US = 300;

/** The default window: DEFAULT_POLL_US, or 0 (off) where this process can use only one CPU. */
export function defaultPollUs(cpus = os.availableParallelism()): number {
  return cpus > 1 ? DEFAULT_POLL_US : 0;
}

// One event loop per process, so one poller for all connections: it keeps the loop
// turning (a pending setImmediate makes libuv poll its descriptors without blocking)
// until the latest deadline any connection asked for.
let until = 0;
let polling = false;

function turn(): void {
  if (performance.now() < until) setImmediate(turn);
  else polling = false;
}

function pollUntil(deadline: number): void {
  if (deadline > until) until = deadline;
  if (!polling) {
    polling = true;
    setImmediate(turn);
  }
}

/** True while the event loop is being kept polling (for tests). */
export function loopPolling(): boolean {
  return polling;
}

/** One connection's side: when it replies, and how fast its client has answered lately. */
export class ReplyPoll {
  private readonly windowMs: number;
  private sentAt: number | undefined;
  /** The client's last two answer times, ms (its turnaround, plus our wakeup if asleep). */
  private readonly gaps: [number, number] = [0, 0];
  private readonly now: () => number;
  /** What the last reply did, for the log: polled or not. */
  private polled: boolean | undefined;

  constructor(windowUs: number, now: () => number = () => performance.now()) {
    if (!(windowUs > 0)) throw new RangeError(`a reply-poll window must be positive, not ${windowUs}`);
    this.windowMs = windowUs / 1000;
    this.now = now;
  }

  /**
   * Whether to poll after a reply: while either of the client's last two answers came
   * within the window (one long pause, the user at gdb's prompt, does not stop it).
   */
  get worthIt(): boolean {
    return this.gaps[0] <= this.windowMs || this.gaps[1] <= this.windowMs;
  }

  /** A reply went out. */
  sent(): void {
    const t = this.now();
    this.sentAt = t;
    const worth = this.worthIt;
    if (worth) pollUntil(t + this.windowMs);
    if (worth !== this.polled && log.enabled) {
      log('%s after replies: the client answered in %s ms', worth ? 'polling' : 'no polling', this.gaps.map((g) => g.toFixed(3)).join(' and '));
    }
    this.polled = worth;
  }

  /** A packet came from the client (acks are not answers): how long after our last reply. */
  received(): void {
    if (this.sentAt === undefined) return;
    this.gaps[0] = this.gaps[1];
    this.gaps[1] = this.now() - this.sentAt;
    this.sentAt = undefined;
  }
}
