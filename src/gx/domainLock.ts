// One debugger per domain across the stubs of this host: while a gdb has a domain
// attached, its stub holds `dom<id>-<uuid>.owner` (its pid) in the state directory the
// breakpoint journals use. Another stub (`gdbsx -a` or `gdbsx serve`) that finds a live
// owner refuses the attach instead of pausing a guest someone is debugging. A lock whose
// process is gone is stale and taken over. Within one process the servers keep their
// own books (the domain's connection), so a lock of our own pid is not a refusal.
import fs from 'fs';
import createDebug from 'debug';
import path from 'path';
import { journalDir } from '../vcpu/bpJournal';
import { lookupGuest } from '../vcpu/lookup';
import { Guest, AttachOptions } from '../vcpu/guest';
import { XenControl } from '../xg/xenctl';
import { processAlive } from '../processAlive';

const log = createDebug('gdbsx:lock');

export class DomainLock {
  /** `file` undefined: the state directory cannot be written (a user without /run): no lock, as the journal then does. */
  private constructor(readonly file: string | undefined) {}

  /** Take the lock of domain `domid` (Xen's handle `uuid`), or throw with who holds it. */
  static acquire(domid: number, uuid: string, dir = journalDir()): DomainLock {
    const file = path.join(dir, `dom${domid}-${uuid}.owner`);
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
        fs.writeFileSync(file, `${process.pid}\n`, { flag: 'wx', mode: 0o600 });
        return new DomainLock(file);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') {
          log('no lock for dom%d (%s): %s', domid, file, (e as Error).message);
          return new DomainLock(undefined);
        }
      }
      let owner = NaN;
      try {
        owner = Number(fs.readFileSync(file, 'utf8').trim());
      } catch {
        /* removed meanwhile: try again */
      }
      if (owner === process.pid) return new DomainLock(file);
      if (Number.isInteger(owner) && owner > 0 && processAlive(owner)) {
        throw new Error(`domain ${domid} is being debugged by another gdbsx (pid ${owner}): detach it there first`);
      }
      try {
        fs.unlinkSync(file); // stale: its stub is gone
      } catch {
        /* someone else took it over: the next attempt sees who */
      }
    }
    throw new Error(`domain ${domid}: could not take ${file}`);
  }

  release(): void {
    if (!this.file) return;
    try {
      if (Number(fs.readFileSync(this.file, 'utf8').trim()) === process.pid) fs.unlinkSync(this.file);
    } catch {
      /* already gone */
    }
  }
}

const DOM0 = 'refusing to attach to dom0 (the domain this stub runs in): give the id of a guest domain (`xl list`)';

/** Guest.attach under the domain's lock: refused before anything is paused if another stub debugs it. */
export function attachExclusive(xc: XenControl, domid: number, opts: AttachOptions): { guest: Guest; lock: DomainLock } {
  const info = lookupGuest(xc, domid, DOM0);
  const lock = DomainLock.acquire(domid, info.handle);
  try {
    return { guest: Guest.attach(xc, domid, opts), lock };
  } catch (e) {
    lock.release();
    throw e;
  }
}
