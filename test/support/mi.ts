// The one GDB/MI driver of the tests and the benchmark: every output line is stamped
// with the time its chunk arrived (the bench's figures; tests ignore the stamps),
// commands resolve with their result record and the console output they produced,
// and async records (*stopped) can be awaited with their arrival time.
import { spawn, ChildProcessWithoutNullStreams } from 'child_process';
import { performance } from 'perf_hooks';

const now = (): number => performance.now();

export const GDB = process.env.GDB ?? 'gdb';

export interface MiResult {
  cls: string;
  text: string;
  /** Console (~"...") and target (@"...") stream output printed while the command ran, unescaped. */
  console: string;
  /** Log stream output (&"...", e.g. `set debug remote 1`), unescaped. */
  log: string;
  sent: number;
  done: number;
}

export interface MiAsync {
  line: string;
  t: number;
}

interface Waiting {
  token: number;
  sent: number;
  console: string[];
  log: string[];
  resolve: (r: MiResult) => void;
}

/** Unquote an MI C string ("...\n..."). */
export function miString(s: string): string {
  if (!s.startsWith('"')) return s;
  let out = '';
  for (let i = 1; i < s.length - 1; i++) {
    const c = s[i];
    if (c !== '\\') {
      out += c;
      continue;
    }
    const n = s[++i];
    if (n === 'n') out += '\n';
    else if (n === 't') out += '\t';
    else if (n === '"') out += '"';
    else if (n === '\\') out += '\\';
    else out += n;
  }
  return out;
}

/** Quote a console command for -interpreter-exec. */
function miQuote(s: string): string {
  return '"' + s.replace(/\\/g, '\\\\').replace(/"/g, '\\"') + '"';
}

/** Per driver (the defaults) or per command. */
export interface MiOptions {
  /** Reject a command's promise on ^error (the bench); tests pass false to assert on the class. */
  strict?: boolean;
  /** Ms a command (or, as a default, an awaited async record) may take. */
  timeoutMs?: number;
}

export class MiGdb {
  private readonly p: ChildProcessWithoutNullStreams;
  private buf = '';
  private next = 1;
  private current: Waiting | undefined;
  private readonly waiting = new Map<number, Waiting>();
  readonly asyncRecords: MiAsync[] = [];
  private asyncWaiters: { re: RegExp; since: number; resolve: (a: MiAsync) => void }[] = [];
  /** Every line gdb printed (stderr chunks as 'stderr: ...'); tests slice it from a recorded length. */
  readonly log: string[] = [];
  private readonly strict: boolean;
  private readonly timeoutMs: number;
  /** When set, every log-stream line (e.g. `set debug remote 1` output) is appended here. */
  capture: { text: string; t: number }[] | undefined;
  private exited = false;

  constructor(args: string[] = [], o: MiOptions = {}) {
    this.strict = o.strict ?? true;
    this.timeoutMs = o.timeoutMs ?? 60000;
    this.p = spawn(GDB, ['-nx', '-q', '--interpreter=mi2', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.p.stdout.on('data', (d: Buffer) => this.onData(d.toString('utf8'), now()));
    this.p.stderr.on('data', (d: Buffer) => this.keep('stderr: ' + d.toString()));
    this.p.on('exit', () => { this.exited = true; });
    this.p.stdin.on('error', () => undefined);
  }

  get pid(): number | undefined {
    return this.p.pid;
  }

  private keep(line: string): void {
    this.log.push(line);
  }

  /** The last lines of gdb's output, for error messages. */
  recent(): string {
    return this.log.slice(-60).join('\n');
  }

  private onData(s: string, t: number): void {
    this.buf += s;
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl).replace(/\r$/, '');
      this.buf = this.buf.slice(nl + 1);
      this.keep(line);
      const m = /^(\d+)\^(\w+),?(.*)$/.exec(line);
      if (m) {
        const w = this.waiting.get(Number(m[1]));
        if (w) {
          this.waiting.delete(w.token);
          if (this.current === w) this.current = undefined;
          w.resolve({ cls: m[2], text: m[3], console: w.console.join(''), log: w.log.join(''), sent: w.sent, done: t });
        }
        continue;
      }
      // ~ console stream; @ target stream (what the stub sends in O packets, e.g. `monitor` output).
      if (line.startsWith('~') || line.startsWith('@')) {
        this.current?.console.push(miString(line.slice(1)));
        continue;
      }
      if (line.startsWith('&')) {
        const text = miString(line.slice(1));
        this.current?.log.push(text);
        this.capture?.push({ text, t });
        continue;
      }
      if (/^[*=]/.test(line)) {
        const rec = { line, t };
        this.asyncRecords.push(rec);
        const idx = this.asyncRecords.length - 1;
        this.asyncWaiters = this.asyncWaiters.filter((w) => {
          if (idx >= w.since && w.re.test(line)) {
            w.resolve(rec);
            return false;
          }
          return true;
        });
      }
    }
  }

  /** An MI command; resolves with its result record (rejects on timeout or ^error if `strict`). */
  cmd(c: string, o: MiOptions = {}): Promise<MiResult> {
    const timeoutMs = o.timeoutMs ?? this.timeoutMs;
    const strict = o.strict ?? this.strict;
    if (this.exited) return Promise.reject(new Error(`gdb has exited (sending '${c}')\n${this.recent()}`));
    const token = this.next++;
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiting.delete(token);
        reject(new Error(`gdb: '${c}' got no result within ${timeoutMs} ms\n${this.recent()}`));
      }, timeoutMs);
      const w: Waiting = {
        token, sent: 0, console: [], log: [],
        resolve: (r) => {
          clearTimeout(t);
          if (strict && r.cls === 'error') reject(new Error(`gdb: '${c}': ${miString(r.text.replace(/^msg=/, ''))}`));
          else resolve(r);
        },
      };
      this.waiting.set(token, w);
      this.current = w;
      w.sent = now();
      this.p.stdin.write(`${token}${c}\n`);
    });
  }

  /** A CLI command through the MI (its printed output is in .console). */
  console(c: string, o: MiOptions = {}): Promise<MiResult> {
    return this.cmd(`-interpreter-exec console ${miQuote(c)}`, o);
  }

  /** Index to pass as `since` to catch async records that arrive after this point. */
  mark(): number {
    return this.asyncRecords.length;
  }

  /** The first async record matching `re` from index `since` on (see mark()), seen or to come. */
  waitAsync(re: RegExp, since = 0, timeoutMs = this.timeoutMs): Promise<MiAsync> {
    for (let i = since; i < this.asyncRecords.length; i++) {
      if (re.test(this.asyncRecords[i].line)) return Promise.resolve(this.asyncRecords[i]);
    }
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`gdb: no ${re} within ${timeoutMs} ms\n${this.recent()}`)), timeoutMs);
      this.asyncWaiters.push({ re, since, resolve: (a) => { clearTimeout(t); resolve(a); } });
    });
  }

  /** Usual settings for scripted use. */
  async setup(): Promise<void> {
    for (const s of ['pagination off', 'confirm off', 'width 0', 'height 0', 'print pretty off']) await this.cmd(`-gdb-set ${s}`);
  }

  async quit(): Promise<void> {
    if (this.exited) return;
    const closed = new Promise<void>((resolve) => this.p.once('exit', () => resolve()));
    this.p.stdin.write('-gdb-exit\n');
    const t = setTimeout(() => this.kill(), 5000);
    await closed;
    clearTimeout(t);
  }

  kill(): void {
    if (!this.exited && this.p.pid !== undefined) {
      try { process.kill(this.p.pid, 'SIGKILL'); } catch { /* already gone */ }
    }
  }
}
