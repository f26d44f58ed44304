// What the user sees while a snapshot runs: a bar on a terminal, a line per round otherwise.
import { SnapshotProgress } from './snapshot';

export class ProgressView {
  private lastRound = -1;
  private lastDraw = 0;
  private drawn = false;

  constructor(private readonly out: NodeJS.WriteStream, private readonly tty = out.isTTY === true) {}

  update(p: SnapshotProgress): void {
    if (!this.tty) {
      if (p.round !== this.lastRound) {
        this.lastRound = p.round;
        this.out.write(`gdbsx: snapshot: round ${p.round}${p.paused ? ' (guest paused)' : ''}: ${p.total} pages\n`);
      }
      return;
    }
    const t = Date.now();
    if (t - this.lastDraw < 50 && p.done < p.total) return;
    this.lastDraw = t;
    const width = 30;
    const frac = p.total ? p.done / p.total : 1;
    const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '.');
    this.out.write(`\r\x1b[Ksnapshot round ${p.round}${p.paused ? ' (paused)' : ''} [${bar}] ${p.done}/${p.total} pages`);
    this.drawn = true;
  }

  end(): void {
    if (this.tty && this.drawn) this.out.write('\r\x1b[K');
    this.drawn = false;
  }
}
