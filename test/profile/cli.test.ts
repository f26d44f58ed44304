// `gdbsx profile` as a user runs it: every output format parses as its readers expect,
// bad input gets one clear line and a non-zero exit, and Ctrl-C (SIGINT) ends the
// profile early and still writes what was sampled.
import { strict as assert } from 'assert';
import { ChildProcess, execFile, spawn } from 'child_process';
import fs from 'fs';
import os from 'os';
import path from 'path';
import zlib from 'zlib';
import { Profile } from 'pprof-format';

const BIN = path.resolve(__dirname, '..', '..', '..', 'bin', 'gdbsx');

interface Run { code: number | null; stdout: string; stderr: string }

function run(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, 'profile', ...args], { timeout: 60000, maxBuffer: 1 << 26 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr });
    });
  });
}

/** One line of stderr that says `what`, and nothing else there. */
function oneLine(r: Run, what: RegExp): void {
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `stderr: ${r.stderr}`);
  assert.match(lines[0], /^gdbsx profile: /);
  assert.match(lines[0], what);
}

describe('gdbsx profile (command line, simulated Xen)', function () {
  this.timeout(120000);
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gdbsx-prof-'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('text: tables by address space and by function, for all VCPUs and each, with percentages', async () => {
    const r = await run(['--sim', '--hz', '20', '--seconds', '1.5']);
    assert.equal(r.code, 0, r.stderr);
    const out = r.stdout;
    assert.match(out, /^gdbsx profile: domain 1, 2 VCPUs, /);
    for (const title of ['all VCPUs', 'VCPU 0', 'VCPU 1']) assert.match(out, new RegExp(`^${title}: \\d+ samples \\(kernel \\d`, 'm'));
    assert.equal((out.match(/^ {4}by address space$/gm) ?? []).length, 3);
    assert.equal((out.match(/^ {4}by function$/gm) ?? []).length, 3);
    assert.match(out, /^\s+\d+\s+\d+\.\d%\s+cr3 0x[0-9a-f]+$/m);
    assert.match(out, /^\s+\d+\s+\d+\.\d%\s+demo_work$/m);
  });

  it('folded stacks: "frame;frame count" lines, counts summing to the samples', async () => {
    const file = path.join(dir, 'p.folded');
    const r = await run(['--sim', '--hz', '20', '--seconds', '1.5', '--stacks', '--format', 'folded', '-o', file]);
    assert.equal(r.code, 0, r.stderr);
    const m = /wrote .* \(folded, (\d+) samples\)/.exec(r.stderr);
    assert.ok(m, r.stderr);
    const lines = fs.readFileSync(file, 'utf8').trimEnd().split('\n');
    let total = 0;
    for (const l of lines) {
      assert.match(l, /^[^;\s]+(;[^;\s]+)* \d+$/, l);
      total += Number(l.split(' ').pop());
      assert.match(l, /^vcpu[01];(cr3=0x[0-9a-f]+|idle|waiting|offline);/, l);
    }
    assert.equal(total, Number(m[1]));
    assert.ok(lines.some((l) => /;demo_start_\[k\];demo_work_\[k\] \d+$/.test(l)), 'a demo_start -> demo_work stack');
  });

  it('speedscope: a sampled profile per VCPU whose samples index the shared frames', async () => {
    const file = path.join(dir, 'p.speedscope.json');
    const r = await run(['--sim', '--hz', '20', '--seconds', '1.5', '--format', 'speedscope', '-o', file]);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(fs.readFileSync(file, 'utf8'));
    assert.equal(j.$schema, 'https://www.speedscope.app/file-format-schema.json');
    assert.ok(Array.isArray(j.shared.frames) && j.shared.frames.every((f: { name: unknown }) => typeof f.name === 'string'));
    assert.equal(j.profiles.length, 2);
    for (const p of j.profiles) {
      assert.equal(p.type, 'sampled');
      assert.ok(['none', 'nanoseconds', 'microseconds', 'milliseconds', 'seconds', 'bytes'].includes(p.unit));
      assert.equal(p.samples.length, p.weights.length);
      assert.ok(p.samples.length > 10);
      for (const s of p.samples) for (const i of s) assert.ok(Number.isInteger(i) && i >= 0 && i < j.shared.frames.length);
      assert.equal(p.endValue - p.startValue, p.weights.reduce((a: number, b: number) => a + b, 0));
    }
    assert.ok(j.shared.frames.some((f: { name: string }) => f.name === 'demo_work'));
    assert.ok(j.activeProfileIndex >= 0 && j.activeProfileIndex < j.profiles.length);
  });

  it('pprof: gzipped profile.proto that decodes back; sample counts sum to the samples, labels carry vcpu, cr3 and mode', async () => {
    const file = path.join(dir, 'p.pb.gz');
    const r = await run(['--sim', '--hz', '20', '--seconds', '1.5', '--stacks', '--format', 'pprof', '-o', file]);
    assert.equal(r.code, 0, r.stderr);
    const n = Number(/\(pprof, (\d+) samples\)/.exec(r.stderr)?.[1]);
    const p = Profile.decode(zlib.gunzipSync(fs.readFileSync(file)));
    const str = (i: number | bigint) => p.stringTable.strings[Number(i)];
    assert.equal(str(0), '');
    assert.deepEqual(p.sampleType.map((t) => [str(t.type), str(t.unit)]), [['samples', 'count'], ['cpu', 'nanoseconds']]);
    assert.equal(p.sample.reduce((t, s) => t + Number(s.value[0]), 0), n);
    const period = Number(p.period);
    for (const s of p.sample) assert.equal(Number(s.value[1]), Number(s.value[0]) * period);
    const locs = new Map(p.location.map((l) => [Number(l.id), l]));
    const fns = new Map(p.function.map((f) => [Number(f.id), str(f.name)]));
    // Leaf first: the first location of a demo_work sample is demo_work.
    const leafNames = p.sample.map((s) => fns.get(Number(locs.get(Number(s.locationId[0]))?.line[0].functionId)));
    assert.ok(leafNames.includes('demo_work'));
    for (const s of p.sample) {
      const keys = s.label.map((l) => str(l.key)).sort();
      assert.deepEqual(keys, ['cr3', 'mode', 'vcpu']);
      const root = fns.get(Number(locs.get(Number(s.locationId[s.locationId.length - 1]))?.line[0].functionId));
      assert.match(root ?? '', /^vcpu[01]$/);
    }
  });

  it('bad input: one clear line and a non-zero exit', async () => {
    const cases: [string[], RegExp][] = [
      [['--sim', '7', '--seconds', '1'], /domain 7 does not exist/],
      [['--sim', '0', '--seconds', '1'], /dom0/],
      [['--sim', '--vmlinux', '/nonexistent/vmlinux', '--seconds', '1'], /cannot read symbol file \/nonexistent\/vmlinux/],
      [['--sim', '--system-map', BIN, '--seconds', '1'], /is not "address type name"/],
      [['--sim', '--hz', '0'], /--hz must be a positive number/],
      [['--sim', '--hz', '50000'], /at most 10000 Hz/],
      [['--sim', 'abc'], /invalid domain id 'abc'/],
      [[], /give a domain id/],
      [['--sim', '--format', 'svg'], /format/],
    ];
    for (const [args, what] of cases) {
      const r = await run(args);
      assert.notEqual(r.code, 0, `${args.join(' ')}: exit 0`);
      assert.equal(r.stdout, '', `${args.join(' ')}: wrote output`);
      oneLine(r, what);
    }
  });

  it('a rate the machine cannot sustain is measured and refused with the rate it did achieve', async () => {
    // 64 VCPUs at 9000 Hz: a sample of all of them takes far longer than the 111 µs between ticks.
    const r = await run(['--sim', '--sim-vcpus', '64', '--hz', '9000', '--seconds', '3']);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    oneLine(r, /asked for 9000 Hz but this machine sustained \d+ Hz \(a sample of all 64 VCPUs takes \d+ µs here\): use --hz \d+ or less/);
  });

  it('SIGINT ends the profile early and still writes what was sampled', async () => {
    const file = path.join(dir, 'int.folded');
    const p: ChildProcess = spawn(process.execPath, [BIN, 'profile', '--sim', '--hz', '20', '--seconds', '60', '--format', 'folded', '-o', file]);
    let err = '';
    p.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    const started = Date.now();
    // Let it take samples for a while (the guest's kallsyms search comes first).
    await new Promise((r) => setTimeout(r, 3000));
    p.kill('SIGINT');
    const code = await new Promise<number | null>((r) => p.on('exit', (c) => r(c)));
    assert.equal(code, 0, err);
    assert.ok(Date.now() - started < 30000, 'did not end early');
    const m = /interrupted after ([\d.]+) s: wrote the (\d+) samples taken/.exec(err);
    assert.ok(m, err);
    assert.ok(Number(m[2]) > 0);
    const total = fs.readFileSync(file, 'utf8').trimEnd().split('\n').reduce((t, l) => t + Number(l.split(' ').pop()), 0);
    assert.equal(total, Number(m[2]));
  });
  // --live on a real pseudo-terminal: util-linux's script(1) gives the command one.
  it('--live: a top-like view redrawn every second on a terminal (alternate screen), then the report as without it; refused off a terminal', async function () {
    const out = path.join(dir, 'live.tty');
    const cmd = `stty cols 120 rows 30; ${process.execPath} ${BIN} profile --sim --live --window 2 --seconds 3.5 --hz 40`;
    const r = await new Promise<{ code: number | null }>((resolve) => {
      execFile('script', ['-qfec', cmd, out], { timeout: 60000 }, (err) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0 }));
    });
    assert.equal(r.code, 0);
    const tty = fs.readFileSync(out, 'utf8');
    const start = tty.indexOf('\x1b[?1049h');
    const end = tty.indexOf('\x1b[?1049l');
    assert.ok(start >= 0 && end > start, 'the view is drawn on the alternate screen and leaves it');
    // A frame is drawn at the start and then once a second: 3.5 s gives at least 3.
    const frames = tty.slice(start, end).split('\x1b[H').slice(1).map((f) => f.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').replace(/\r/g, ''));
    assert.ok(frames.length >= 3, `${frames.length} frames`);
    const last = frames[frames.length - 1];
    assert.match(last, /^gdbsx profile: domain 1, 2 VCPUs, 40 Hz, [\d.]+ s of 3.5 s, \d+ samples\./);
    assert.match(last, /^ {3}0 +\d+\.\d% .* demo_\w+ \(cr3 0x[0-9a-f]+\)$/m);
    assert.match(last, /^ {3}1 +\d+\.\d%/m);
    assert.match(last, /^by function, last 2 s +by function, whole run$/m);
    assert.match(last, /^ *\d+\.\d%  demo_work +\d+\.\d%  \S+/m);
    // Sample counts grow from frame to frame.
    const counts = frames.map((f) => Number(/, (\d+) samples\./.exec(f)?.[1]));
    assert.ok(counts[counts.length - 1] > counts[1], counts.join(' '));
    // After the view: the usual text report.
    assert.match(tty.slice(end), /^\x1b\[\?1049lgdbsx profile: domain 1, 2 VCPUs, 3\.\d s at 40 Hz/);
    assert.match(tty.slice(end), /^VCPU 1: \d+ samples/m);

    const piped = await run(['--sim', '--live', '--seconds', '1']);
    assert.equal(piped.code, 2);
    oneLine(piped, /--live draws on a terminal, and stdout is not one/);
  });
});
