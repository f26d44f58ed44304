// Our int3s on disk, so that a stub killed with SIGKILL (nothing of it runs then) does
// not leave them in the guest for good: the next stub for the same domain finds the
// journal and puts the original bytes back before anything runs. Without it, on stock
// Xen the next stub would take such an int3 for the guest's own and hand it to the
// guest, whose kernel oopses on an int3 it never planted. One small JSON file per
// domain (keyed by domid and the domain's UUID, so a new domain with a reused domid
// never inherits it), rewritten on every insert and remove, removed at detach.
import fs from 'fs';
import path from 'path';
import createDebug from 'debug';

const log = createDebug('gdbsx:journal');

/** One int3 of ours: where it lives (a frame of the memory path, or an address) and the byte it replaced. */
export interface JournalEntry {
  addr: string;
  /** The frame it was written to (page walk), hex; absent for gdbsx_guestmemio (re-translated instead). */
  frame?: string;
  offset?: number;
  orig: number;
}

export function journalDir(): string {
  return process.env.GDBSX_STATE_DIR ?? '/run/gdbsx';
}

export class BreakpointJournal {
  readonly file: string;
  private broken = false;

  constructor(domid: number, uuid: string, dir = journalDir()) {
    this.file = path.join(dir, `dom${domid}-${uuid}.int3.json`);
  }

  /** What a stub that died left here (empty if none). */
  read(): JournalEntry[] {
    try {
      const v: unknown = JSON.parse(fs.readFileSync(this.file, 'utf8'));
      return Array.isArray(v) ? (v as JournalEntry[]).filter((e) => typeof e.addr === 'string' && typeof e.orig === 'number') : [];
    } catch {
      return [];
    }
  }

  /** Replace the journal with `entries` (removed when empty). Never throws: a journal is a safety net, not a requirement. */
  write(entries: JournalEntry[]): void {
    if (this.broken) return;
    try {
      if (entries.length === 0) {
        fs.rmSync(this.file, { force: true });
        return;
      }
      fs.mkdirSync(path.dirname(this.file), { recursive: true, mode: 0o700 });
      const tmp = `${this.file}.${process.pid}`;
      fs.writeFileSync(tmp, JSON.stringify(entries));
      fs.renameSync(tmp, this.file);
    } catch (e) {
      this.broken = true;
      log('cannot keep the breakpoint journal %s: %s (a SIGKILL would leave int3s behind)', this.file, (e as Error).message);
    }
  }
}
