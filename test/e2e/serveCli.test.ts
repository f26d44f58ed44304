// `gdbsx serve` as a user types it: its mistakes (one line, exit 2) and `--sim` with its
// two demo domains, driven by gdb's `target extended-remote`, then SIGINT.
import assert from 'assert';
import path from 'path';
import { spawn } from 'child_process';
import { gdbBatch, sleep } from './harness';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const BIN = path.join(ROOT, 'bin', 'gdbsx');

function start(args: string[]) {
  const p = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => p.on('close', (code) => resolve(code)));
  return { p, exited, out: () => stdout, err: () => stderr };
}

describe('gdbsx serve: the command line', function () {
  this.timeout(60000);

  for (const [args, re] of [
    [['serve', '5'], /^gdbsx serve: unexpected '5': gdbsx serve takes no domain id \(gdb attaches one: `attach <domid>`\)/],
    [['serve', '--port', '70000'], /^gdbsx serve: invalid port '70000'/],
    [['serve', '--poll-us', '-5'], /^gdbsx serve: invalid --poll-us '-5'/],
    [['serve', '--bogus'], /^gdbsx serve: Unknown argument: bogus/],
  ] as const) {
    it(`${args.join(' ')}: one line, exit 2`, async () => {
      const r = start([...args]);
      const code = await r.exited;
      assert.strictEqual(code, 2, r.err());
      assert.strictEqual(r.err().trimEnd().split('\n').length, 1, r.err());
      assert.match(r.err(), re);
    });
  }

  it('--sim: two demo domains listed and attached one after the other; SIGINT ends it cleanly', async () => {
    const s = start(['serve', '--sim', '--port', '0']);
    try {
      for (let i = 0; i < 400 && !/listening on \S+/.test(s.out()); i++) await sleep(25);
      const m = /listening on (\S+)/.exec(s.out());
      assert.ok(m, s.out() + s.err());
      assert.match(s.out(), /target extended-remote /);
      const r = await gdbBatch(['set pagination off', 'set confirm off', `target extended-remote ${m[1]}`, 'info os processes',
        `file ${path.join(ROOT, 'guest/build/demo32.elf')}`, 'attach 2', 'info threads', 'p *(int *)&demo_ticks > 0', 'detach',
        // Another width: the 32-bit file is dropped first (gdb would reject the 64-bit description), loaded after attach.
        'file', 'attach 1', `file ${path.join(ROOT, 'guest/build/demo64.elf')}`, 'info threads', 'detach']);
      const out = r.stdout + r.stderr;
      assert.match(out, /^1\s+demo\s+PV 64-bit, 2 VCPUs/m, out);
      assert.match(out, /^2\s+demo32\s+PV 32-bit, 1 VCPU,/m, out);
      assert.match(out, /Thread 2\.1 "VCPU 0" \(VCPU 0 of domain 2, paused\)/, out);
      assert.match(out, /Thread 1\.2 "VCPU 1" \(VCPU 1 of domain 1, paused\) \w+ \(\)/, 'symbols of the 64-bit file: ' + out);
      assert.doesNotMatch(out, /not compatible|not recognized/, out);
      assert.match(out, /^\$1 = 1$/m, 'the 32-bit domain has ticked: ' + out);
      assert.match(s.err(), /attached domain 2 \(32-bit, 1 VCPUs\)/);
    } finally {
      s.p.kill('SIGINT');
      assert.strictEqual(await s.exited, 0, s.err());
    }
  });

  it('--sim: both demo domains at once, one inferior each (add-inferior, attach 2)', async () => {
    const s = start(['serve', '--sim', '--port', '0']);
    try {
      for (let i = 0; i < 400 && !/listening on \S+/.test(s.out()); i++) await sleep(25);
      const m = /listening on (\S+)/.exec(s.out());
      assert.ok(m, s.out() + s.err());
      const r = await gdbBatch(['set pagination off', 'set confirm off', `file ${path.join(ROOT, 'guest/build/demo64.elf')}`,
        `target extended-remote ${m[1]}`, 'attach 1', 'add-inferior', 'inferior 2', 'attach 2', `file ${path.join(ROOT, 'guest/build/demo32.elf')}`,
        'info inferiors', 'info threads', 'p sizeof(long)', 'inferior 1', 'p sizeof(long)']);
      const out = r.stdout + r.stderr;
      assert.match(out, /^\s+1\s+process 1\s[^\n]*demo64\.elf\s*\n\*\s+2\s+process 2\s[^\n]*demo32\.elf/m, out);
      assert.match(out, /1\.1\s+Thread 1\.1 "VCPU 0" \(VCPU 0 of domain 1, paused\) demo_idle[^\n]*\n\s+1\.2\s+Thread 1\.2 "VCPU 1" \(VCPU 1 of domain 1, paused\) demo_idle[^\n]*\n\*\s+2\.1\s+Thread 2\.1 "VCPU 0" \(VCPU 0 of domain 2, paused\) demo_idle/, out);
      assert.match(r.stdout, /^\$1 = 4\n[\s\S]*^\$2 = 8$/m, 'each inferior its own width: ' + out);
      assert.doesNotMatch(out, /failed|not compatible/, out);
      for (let i = 0; i < 200 && !/domain 2 detached/.test(s.err()); i++) await sleep(25);
      assert.match(s.err(), /attached domain 1 [\s\S]*attached domain 2 [\s\S]*gdb from \S+ disconnected/, s.err());
    } finally {
      s.p.kill('SIGINT');
      assert.strictEqual(await s.exited, 0, s.err());
    }
  });
});
