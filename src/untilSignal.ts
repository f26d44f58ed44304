// How `gdbsx -a` and `gdbsx serve` end: on SIGINT, SIGTERM, SIGHUP or a bug of ours,
// the server detaches what it holds (no guest left paused, with our int3s or a monitor
// ring behind), the backend is released, and the process exits 0.
export function runUntilSignal(o: {
  /** What a stop does, for the line on stderr, e.g. "detaching from domain 3 (...)". */
  detaching: string;
  close: (sig: string) => Promise<void>;
  release: () => void;
  /** Called once the handlers are in place: only then say where to connect. */
  ready: () => void;
}): Promise<number> {
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (sig: string) => {
      if (stopping) return;
      stopping = true;
      console.error(`gdbsx: ${sig}: ${o.detaching}`);
      void o.close(sig).then(() => {
        o.release();
        resolve(0);
      });
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGHUP', () => stop('SIGHUP'));
    process.once('uncaughtException', (e) => {
      console.error(`gdbsx: internal error: ${e.stack ?? String(e)}`);
      stop('internal error');
    });
    o.ready();
  });
}
