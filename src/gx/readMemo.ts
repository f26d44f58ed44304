// gdb reads the same few bytes several times per stop: on code without GCC's debug
// info its epilogue sniffer reads the byte at pc once for every frame it builds, and it
// builds the frame again after each stop's thread-list update (five identical `m` per
// `stepi` on the demo guest). The reply to such a read stays right while nothing but
// reads happens, so it is kept, as sent, and sent again.
import type { Framed } from './reply';

/** Longest reply kept (gdb's repeated reads are a byte or a line). */
const MAX_BYTES = 300;
/** As the line cache (memory.ts): bounds staleness if memory changes under a stopped guest. */
const TTL_MS = 500;

export class ReadMemo {
  private readonly replies = new Map<string, Buffer>();
  private since = 0;

  /**
   * Before answering `text`: the reply kept for it, if any. Any packet but a memory read
   * or the thread list may change memory or the address space (a write, a resume, Hg, a
   * monitor command): it empties the memo.
   */
  lookup(text: string): Buffer | undefined {
    if (text.charCodeAt(0) !== 0x6d /* m */) {
      if (this.replies.size > 0 && !text.startsWith('qXfer:threads:read:')) this.replies.clear();
      return undefined;
    }
    if (this.replies.size === 0) return undefined;
    if (performance.now() - this.since > TTL_MS) {
      this.replies.clear();
      return undefined;
    }
    return this.replies.get(text);
  }

  /** After answering a memory read with `reply`. */
  remember(text: string, reply: Framed): void {
    if (text.charCodeAt(0) !== 0x6d || reply.bytes.length > MAX_BYTES) return;
    if (this.replies.size === 0) this.since = performance.now();
    // The framed bytes live in a buffer the next reply reuses.
    this.replies.set(text, Buffer.from(reply.bytes));
  }
}
