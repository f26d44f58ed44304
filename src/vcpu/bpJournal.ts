// What we have changed in the guest, on disk, so that a stub killed with SIGKILL
// (nothing of it runs then) does not leave it so for good: our int3s and whether we
// hold a pause of the domain. The next stub for the same domain finds the journal, puts
// the original bytes back before anything runs and undoes the dead stub's pause.
// Without it, on stock Xen the next stub would take such an int3 for the guest's own
// and hand it to the guest, whose kernel oopses on an int3 it never planted. One small
// JSON file per domain (keyed by domid and the domain's UUID, so a new domain with a
// reused domid never inherits it), rewritten on every change, removed at detach.
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

export interface JournalState {
  int3s: JournalEntry[];
  /** The stub held one pause of the domain (the guest was stopped under gdb). */
  heldPause: boolean;
}

export class BreakpointJournal {
  readonly file: string;
  private broken = false;
  private state: JournalState = { int3s: [], heldPause: false };

  constructor(domid: number, uuid: string, dir = journalDir()) {
    this.file = path.join(dir, `dom${domid}-${uuid}.json`);
  }

  /** What a stub that died left here (nothing if none). */
  read(): JournalState {
    try {
      const v = JSON.parse(fs.readFileSync(this.file, 'utf8')) as Partial<JournalState>;
      const int3s = Array.isArray(v.int3s) ? v.int3s.filter((e) => typeof e.addr === 'string' && typeof e.orig === 'number') : [];
      return { int3s, heldPause: v.heldPause === true };
    } catch {
      return { int3s: [], heldPause: false };
    }
  }

  /** Our int3s now. */
  write(entries: JournalEntry[]): void {
    this.state.int3s = entries;
    this.save();
  }

  /** Whether we hold a pause now (skips the disk when nothing changed). */
  heldPause(held: boolean): void {
    if (this.state.heldPause === held) return;
    this.state.heldPause = held;
    this.save();
  }

  /** Detached: nothing of ours is left in the guest. */
  clear(): void {
    this.state = { int3s: [], heldPause: false };
    this.save();
  }

  /** Rewrite the file (removed when there is nothing to say). Never throws: a journal is a safety net, not a requirement. */
  private save(): void {
    if (this.broken) return;
    const entries = this.state;
    try {
      if (entries.int3s.length === 0 && !entries.heldPause) {
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
