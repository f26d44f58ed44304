// The command line as a user types it (issue 10, item 6): `node bin/gdbsx ...` on the
// simulated Xen (--sim), its stderr and exit code. A mistake gets one line that names
// what is wrong and a non-zero exit; a width that is not the guest's is said and the
// guest's own is served; the address printed is the one listened on.
import assert from 'assert';
import fs from 'fs';
import path from 'path';
import { spawn } from 'child_process';
import { gdbBatch } from './harness';
import { BIN, ROOT, serveStub as serve } from '../support/stubProcess';
const IMAGE64 = path.join(ROOT, 'guest', 'build', 'demo64.elf');

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run the stub to its end (the cases that must refuse, or print and exit). */
function run(args: string[], timeoutMs = 15000): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const t = setTimeout(() => {
      p.kill('SIGKILL');
      reject(new Error(`gdbsx ${args.join(' ')} did not exit within ${timeoutMs} ms (it serves?)\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    p.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

/** A mistake: exactly one line on stderr, starting with "gdbsx: ", matching `re`, no stack trace. */
function assertOneLine(r: Ran, args: string[], re: RegExp, code: number): void {
  const what = `gdbsx ${args.join(' ')}\nexit ${r.code}\nstderr:\n${r.stderr}`;
  assert.strictEqual(r.code, code, what);
  const lines = r.stderr.trimEnd().split('\n');
  assert.strictEqual(lines.length, 1, `one line wanted: ${what}`);
  assert.match(lines[0], /^gdbsx: /, what);
  assert.match(lines[0], re, what);
  assert.doesNotMatch(r.stderr, /internal error|\n\s+at |NaN/, what);
}

describe('command line: one clear line and a non-zero exit for each mistake', function () {
  this.timeout(60000);

  const cases: [string[], RegExp, number][] = [
    // Domain ids: what was typed is named (not NaN), non-negative integers below Xen's reserved ids.
    [['-a', 'abc', '64', '9999'], /invalid domain id 'abc'/, 2],
    [['-a', '-1', '9999'], /invalid domain id '-1'/, 2],
    [['-a', '1.5', '9999'], /invalid domain id '1\.5'/, 2],
    [['-a', '40000', '9999'], /invalid domain id '40000'/, 2],
    [['-c', 'x'], /invalid domain id 'x'/, 2],
    // Widths: the wrong field is named.
    [['-a', '5', '65', '9999'], /invalid guest width '65': give 32 or 64/, 2],
    [['-c', '5', '16', '0'], /invalid guest width '16': give 32 or 64/, 2],
    // Ports: 1..65535; a forgotten port is not "port 64".
    [['-a', '1', '64'], /give a TCP port.*'64' is the guest width/, 2],
    [['-a', '1', '32'], /give a TCP port.*'32' is the guest width/, 2],
    [['-a', '5', '64', '0'], /invalid port '0': give a TCP port from 1 to 65535/, 2],
    [['-a', '5', '64', '65536'], /invalid port '65536'/, 2],
    [['-a', '5', '64', 'http'], /invalid port 'http'/, 2],
    [['-a', '5', '--port', '99999'], /invalid port '99999'/, 2],
    [['-a', '5', '64', '9999', '--port', '9998'], /the port is given twice/, 2],
    [['-c', '5', '64', 'one'], /invalid VCPU 'one'/, 2],
    // Options of the simulated Xen and the stub.
    [['--sim', '--sim-vcpus', '0'], /invalid --sim-vcpus '0': the simulated guest has 1 to 128 VCPUs/, 2],
    [['--sim', '--sim-vcpus', '500'], /invalid --sim-vcpus '500'/, 2],
    [['--sim', '--step-timeout', 'soon'], /invalid --step-timeout 'soon'/, 2],
    [['--sim', '--poll-us', 'fast'], /invalid --poll-us 'fast': give microseconds, 0 \(never\) to 100000/, 2],
    [['--sim', '--poll-us', '200000'], /invalid --poll-us '200000'/, 2],
    // Found out only when acting on it.
    [['--sim', '--host', 'nosuchhost.invalid', '--port', '0'], /cannot listen on 'nosuchhost\.invalid': no such host name/, 1],
    [['--sim', '-c', '1', '5'], /domain 1 has no VCPU 5 \(its VCPUs are 0-1\)/, 1],
    [['--sim', '--sim-vcpus', '1', '-c', '1', '1'], /domain 1 has no VCPU 1 \(its VCPUs are 0\)/, 1],
  ];
  for (const [args, re, code] of cases) {
    it(`gdbsx ${args.join(' ')}`, async () => {
      const r = await run(args);
      assertOneLine(r, args, re, code);
      assert.strictEqual(r.stdout, '', `nothing on stdout: ${r.stdout}`);
    });
  }

  it('no arguments at all: what is missing, then the usage', async () => {
    const r = await run([]);
    assert.strictEqual(r.code, 2);
    assert.match(r.stderr, /^gdbsx: give a domain/);
    assert.match(r.stderr, /Usage:/);
  });
});

describe('command line: what it does right', function () {
  this.timeout(60000);

  it('--version prints the package version and exits 0', async () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const r = await run(['--version']);
    assert.strictEqual(r.code, 0, r.stderr);
    assert.strictEqual(r.stdout, `gdbsx ${pkg.version}\n`);
    assert.strictEqual(r.stderr, '');
  });

  it('-c prints only the VCPU asked for; a VCPU that exists works', async () => {
    const r = await run(['--sim', '-c', '1', '1']);
    assert.strictEqual(r.code, 0, r.stderr);
    assert.match(r.stdout, /^vcpu 1:/m);
    assert.doesNotMatch(r.stdout, /^vcpu 0:/m);
  });

  it('-c with a width that is not the guest\'s: one warning line, the guest\'s real registers', async () => {
    const r = await run(['--sim', '-c', '1', '32', '0']);
    assert.strictEqual(r.code, 0, r.stderr);
    assert.strictEqual(r.stderr, 'gdbsx: warning: the guest is 64-bit, not 32-bit as given: it is shown as 64-bit\n');
    assert.match(r.stdout, /PV 64-bit/);
    assert.match(r.stdout, /rip\s+0xffffffff81/, r.stdout);
  });

  it('-a with a width that is not the guest\'s: warned on stderr and to gdb, served with the guest\'s width (no zeros)', async () => {
    const s = await serve(['--sim', '-a', '1', '32', '--port', '0']);
    try {
      assert.match(s.stderr(), /^gdbsx: warning: the guest is 64-bit, not 32-bit as given: it is served as 64-bit$/m);
      assert.strictEqual(s.stderr().split('\n').filter((l) => /warning: the guest is/.test(l)).length, 1, s.stderr());
      assert.match(s.stdout(), /domain 1 \(64-bit/);
      const r = await gdbBatch(['set pagination off', 'set confirm off', `file ${IMAGE64}`, `target remote ${s.listen}`,
        'p/x $pc', 'break demo_tick', 'continue', 'p/x $pc', 'detach']);
      assert.strictEqual(r.code, 0, r.stderr);
      const out = r.stdout + r.stderr;
      const pcs = [...out.matchAll(/^\$\d+ = (0x[0-9a-f]+)$/gm)].map((m) => BigInt(m[1]));
      assert.strictEqual(pcs.length, 2, out);
      for (const pc of pcs) assert.ok(pc >= 0xffffffff81000000n, `pc 0x${pc.toString(16)} is not the 64-bit guest's: ${out}`);
      // gdb is told too, once, as console output at the first resume.
      assert.strictEqual(out.split('\n').filter((l) => /gdbsx: warning: the guest is 64-bit, not 32-bit as given/.test(l)).length, 1, out);
    } finally {
      assert.strictEqual(await s.stop(), 0);
    }
  });

  it('--host ::1: the address listened on is printed, the connect hint is bracketed, and gdb connects with it', async () => {
    const s = await serve(['--sim', '--host', '::1', '--port', '0']);
    try {
      assert.match(s.listen, /^\[::1\]:\d+$/);
      assert.ok(s.stdout().includes(`target remote ${s.listen}'`), s.stdout());
      assert.doesNotMatch(s.stdout() + s.stderr(), /127\.0\.0\.1/);
      assert.doesNotMatch(s.stderr(), /WARNING/); // ::1 is loopback
      const r = await gdbBatch(['set confirm off', `file ${IMAGE64}`, `target remote ${s.listen}`, 'info threads', 'detach']);
      assert.strictEqual(r.code, 0, r.stderr);
      assert.match(r.stdout, /VCPU 1/);
    } finally {
      assert.strictEqual(await s.stop(), 0);
    }
  });

  it('--poll-us 0 (no polling after replies): gdb breaks and steps as with the default', async () => {
    const s = await serve(['--sim', '--port', '0', '--poll-us', '0']);
    try {
      const r = await gdbBatch(['set pagination off', 'set confirm off', `file ${IMAGE64}`, `target remote ${s.listen}`,
        'break demo_tick', 'continue', 'stepi', 'stepi', 'p/x $pc', 'detach']);
      assert.strictEqual(r.code, 0, r.stderr);
      const pcs = [...(r.stdout + r.stderr).matchAll(/^\$\d+ = (0x[0-9a-f]+)$/gm)].map((m) => BigInt(m[1]));
      assert.strictEqual(pcs.length, 1, r.stdout + r.stderr);
      assert.match(r.stdout, /Breakpoint 1, .*demo_tick/);
    } finally {
      assert.strictEqual(await s.stop(), 0);
    }
  });

  it('--host localhost: the address it resolved to is printed, not the name', async () => {
    const s = await serve(['--sim', '--host', 'localhost', '--port', '0']);
    try {
      assert.match(s.listen, /^(127\.0\.0\.1|\[::1\]):\d+$/, s.stdout());
      assert.ok(s.stdout().includes(`target remote ${s.listen}'`), s.stdout());
    } finally {
      assert.strictEqual(await s.stop(), 0);
    }
  });

  it('--sim -a 1 64 --port 0: 64 is the width (and --port 0 any free port)', async () => {
    const s = await serve(['--sim', '-a', '1', '64', '--port', '0']);
    try {
      assert.match(s.stdout(), /domain 1 \(64-bit/);
      assert.doesNotMatch(s.stderr(), /warning/);
    } finally {
      assert.strictEqual(await s.stop(), 0);
    }
  });
});
