// `gdbsx profile --live`: a top-like view on a terminal, redrawn once a second while the
// profile runs: each VCPU's modes over the last few seconds and where it was last seen,
// then the busiest functions and address spaces of that window beside the whole run's.
// It reads the samples the profiler keeps; nothing here touches the guest.
import { Sample } from './profiler';
import { Naming, Row, leafName, spaceName } from './report';

export interface LiveOptions {
  domid: number;
  vcpus: number;
  hz: number;
  /** Seconds of samples the "recent" columns cover. */
  windowSeconds: number;
  /** The run's planned length in seconds (Infinity: until Ctrl-C). */
  seconds: number;
}

interface Seen {
  sample: Sample;
  ms: number;
  fn: string;
  space: string;
}

/**
 * The samples of the last few seconds, and counts over the whole run kept as they come
 * (a long live run would otherwise tally hundreds of thousands of samples each second).
 */
export class LiveWindow {
  private recent: Seen[] = [];
  private total = 0;
  private readonly fnTotal = new Map<string, number>();
  private readonly spaceTotal = new Map<string, number>();

  constructor(private readonly naming: Naming) {}

  add(samples: readonly Sample[], ms: number): void {
    for (const s of samples) {
      const seen = { sample: s, ms, fn: leafName(this.naming, s), space: spaceName(s) };
      this.recent.push(seen);
      this.total++;
      this.fnTotal.set(seen.fn, (this.fnTotal.get(seen.fn) ?? 0) + 1);
      this.spaceTotal.set(seen.space, (this.spaceTotal.get(seen.space) ?? 0) + 1);
    }
  }

  /** What one frame shows, at `nowMs`, for a window of `seconds`. */
  view(nowMs: number, seconds: number): LiveCounts {
    const from = nowMs - seconds * 1000;
    const first = this.recent.findIndex((x) => x.ms >= from);
    this.recent = first < 0 ? [] : this.recent.slice(first);
    const rows = (m: Map<string, number>): Row[] => [...m].map(([key, count]) => ({ key, count })).sort((a, b) => b.count - a.count || (a.key < b.key ? -1 : 1));
    const count = (key: (x: Seen) => string) => {
      const m = new Map<string, number>();
      for (const x of this.recent) m.set(key(x), (m.get(key(x)) ?? 0) + 1);
      return rows(m);
    };
    return {
      recent: this.recent.map((x) => x.sample),
      recentByFunction: count((x) => x.fn),
      recentBySpace: count((x) => x.space),
      total: this.total,
      totalByFunction: rows(this.fnTotal),
      totalBySpace: rows(this.spaceTotal),
    };
  }
}

export interface LiveCounts {
  recent: readonly Sample[];
  recentByFunction: Row[];
  recentBySpace: Row[];
  total: number;
  totalByFunction: Row[];
  totalBySpace: Row[];
}

const ESC = '\x1b[';
/** Home, draw, clear what is left of the screen: no flicker of a full clear. */
export const FRAME_START = `${ESC}H`;
export const FRAME_END = `${ESC}J`;

const pct = (n: number, of: number) => (of ? ((100 * n) / of).toFixed(1) : '0.0').padStart(5) + '%';
const MODES = ['kernel', 'user', 'idle', 'waiting', 'offline'] as const;

function fit(s: string, width: number): string {
  return s.length > width ? s.slice(0, Math.max(0, width - 1)) + '…' : s;
}

/** One frame of the live view, as lines (no escapes), for a terminal `cols` wide and `rows` high. */
export function liveFrame(o: LiveOptions, n: Naming, w: LiveCounts, elapsedMs: number, cols: number, rows: number): string[] {
  const secs = (elapsedMs / 1000).toFixed(1);
  const plan = Number.isFinite(o.seconds) ? ` of ${o.seconds} s` : '';
  const lines = [
    fit(`gdbsx profile: domain ${o.domid}, ${o.vcpus} VCPU${o.vcpus === 1 ? '' : 's'}, ${o.hz} Hz, ${secs} s${plan}, ${w.total} samples. Ctrl-C ends it and writes the profile.`, cols),
    '',
    fit(`VCPU ${MODES.map((m) => m.padStart(8)).join('')}   (last ${o.windowSeconds} s)  last seen in`, cols),
  ];
  for (let v = 0; v < o.vcpus; v++) {
    const mine = w.recent.filter((s) => s.vcpu === v);
    const counts = MODES.map((m) => mine.filter((s) => s.mode === m).length);
    const last = mine.length ? mine[mine.length - 1] : undefined;
    const where = last ? (last.mode === 'kernel' || last.mode === 'user' ? `${leafName(n, last)} (${spaceName(last)})` : `[${last.mode}]`) : '-';
    lines.push(fit(`${String(v).padStart(4)} ${counts.map((c) => pct(c, mine.length).padStart(8)).join('')}   ${where}`, cols));
  }
  // Two tables side by side: the window and the whole run.
  const half = Math.max(20, Math.floor((cols - 2) / 2));
  const room = Math.max(3, rows - lines.length - 5);
  const side = (title: string, left: Row[], leftOf: number, right: Row[], rightOf: number) => {
    lines.push('', fit(`${`${title}, last ${o.windowSeconds} s`.padEnd(half)}  ${title}, whole run`, cols));
    for (let i = 0; i < Math.min(room, Math.max(left.length, right.length)); i++) {
      const l = left[i] ? `${pct(left[i].count, leftOf)}  ${left[i].key}` : '';
      const r = right[i] ? `${pct(right[i].count, rightOf)}  ${right[i].key}` : '';
      lines.push(fit(`${fit(l, half).padEnd(half)}  ${r}`, cols));
    }
  };
  side('by function', w.recentByFunction, w.recent.length, w.totalByFunction, w.total);
  side('by address space', w.recentBySpace.slice(0, 4), w.recent.length, w.totalBySpace.slice(0, 4), w.total);
  return lines.slice(0, rows);
}

/** Draws `liveFrame` on a terminal stream once a second until stopped. */
export class LiveView {
  private readonly window: LiveWindow;
  private timer?: NodeJS.Timeout;
  private readonly t0 = Date.now();

  constructor(private readonly out: NodeJS.WriteStream, private readonly o: LiveOptions, private readonly naming: Naming) {
    this.window = new LiveWindow(naming);
  }

  add(samples: readonly Sample[]): void {
    this.window.add(samples, Date.now() - this.t0);
  }

  start(): void {
    // Alternate screen and no cursor while drawing, as top does; stop() gives both back.
    this.out.write(`${ESC}?1049h${ESC}?25l`);
    this.draw();
    this.timer = setInterval(() => this.draw(), 1000);
  }

  draw(): void {
    const now = Date.now() - this.t0;
    const lines = liveFrame(this.o, this.naming, this.window.view(now, this.o.windowSeconds), now, this.out.columns || 100, this.out.rows || 30);
    this.out.write(FRAME_START + lines.map((l) => l + `${ESC}K`).join('\n') + FRAME_END);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.out.write(`${ESC}?25h${ESC}?1049l`);
  }
}
