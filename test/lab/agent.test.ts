// The lab's control channel without Xen: the dom0 agent (test/lab/dom0-agent.js) runs
// here on 127.0.0.1 and the host-side client (client.ts) talks to it.
import assert from 'assert';
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { LabClient } from './client';

const ROOT = path.resolve(__dirname, '../../..');
const AGENT = path.join(ROOT, 'test/lab/dom0-agent.js');

function rawLine(port: number, line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1', () => sock.write(line + '\n'));
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl >= 0) { sock.destroy(); resolve(buf.slice(0, nl)); }
    });
    sock.on('error', reject);
  });
}

describe('lab: dom0 agent and client (on the host, no Xen)', function () {
  this.timeout(20000);
  let agent: ChildProcess;
  let port = 0;
  let c: LabClient;
  let dir: string;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lab-agent-'));
    agent = spawn(process.execPath, [AGENT, '--port', '0', '--host', '127.0.0.1'], { stdio: ['ignore', 'pipe', 'inherit'] });
    port = await new Promise<number>((resolve, reject) => {
      let out = '';
      agent.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /listening on (\d+)/.exec(out);
        if (m) resolve(Number(m[1]));
      });
      agent.on('exit', (code) => reject(new Error(`agent exited ${code}`)));
    });
    c = new LabClient({ port });
  });

  after(() => {
    agent?.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('answers ping', async () => {
    const r = await c.ping();
    assert.ok(r.uptime > 0);
    assert.strictEqual(r.pid, agent.pid);
  });

  it('runs a command: exit code, stdout, stderr, env, cwd', async () => {
    const r = await c.exec('echo out; echo err >&2; echo $FOO; pwd; exit 3', { env: { FOO: 'bar' }, cwd: dir });
    assert.strictEqual(r.code, 3);
    assert.strictEqual(r.stdout, `out\nbar\n${fs.realpathSync(dir)}\n`);
    assert.strictEqual(r.stderr, 'err\n');
    assert.strictEqual(r.timedOut, false);
  });

  it('kills a command that outlives its timeout', async () => {
    const t0 = Date.now();
    const r = await c.exec('sleep 10', { timeoutMs: 300 });
    assert.strictEqual(r.timedOut, true);
    assert.strictEqual(r.signal, 'SIGKILL');
    assert.ok(Date.now() - t0 < 5000);
  });

  it('takes a plain line as a command, and echoes ids', async () => {
    const plain = JSON.parse(await rawLine(port, 'echo hi'));
    assert.strictEqual(plain.ok, true);
    assert.strictEqual(plain.stdout, 'hi\n');
    const withId = JSON.parse(await rawLine(port, JSON.stringify({ op: 'ping', id: 42 })));
    assert.strictEqual(withId.id, 42);
    const bad = JSON.parse(await rawLine(port, '{not json'));
    assert.strictEqual(bad.ok, false);
    const unknown = JSON.parse(await rawLine(port, JSON.stringify({ op: 'nope' })));
    assert.match(unknown.error, /unknown op/);
  });

  it('spawns in the background and kills the whole process group', async () => {
    const log = path.join(dir, 'spawn.log');
    const { pid } = await c.spawn('echo started; sleep 30 & sleep 30', { log });
    const w = await c.waitFile(log, 'started', 5000);
    assert.strictEqual(w, true);
    assert.deepStrictEqual(await c.kill(pid), { alive: false });
    // the group's other members got the signal too (they may take a moment to go)
    let left = '';
    for (let i = 0; i < 20; i++) {
      left = (await c.exec(`ps -eo pgid=,stat= | awk '$1 == ${pid} && $2 !~ /^Z/' || true`)).stdout.trim();
      if (!left) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.strictEqual(left, '');
  });

  it('puts and gets files with a mode', async () => {
    const f = path.join(dir, 'f.bin');
    const data = Buffer.from([0, 1, 2, 255, 10, 13]);
    assert.strictEqual(await c.put(f, data, 0o751), data.length);
    assert.deepStrictEqual(await c.get(f), data);
    assert.strictEqual(fs.statSync(f).mode & 0o777, 0o751);
    await assert.rejects(c.get(path.join(dir, 'missing')), /get failed/);
  });

  it('waits for a listener, and gives up when the process dies', async () => {
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    const p = (srv.address() as net.AddressInfo).port;
    assert.deepStrictEqual(await c.waitListen(p, { timeoutMs: 3000 }), { met: true, pidAlive: undefined });
    srv.close();
    const { pid } = await c.spawn('sleep 0.3', { log: path.join(dir, 's.log') });
    const t0 = Date.now();
    const r = await c.waitListen(1, { pid, timeoutMs: 10000 });
    assert.deepStrictEqual(r, { met: false, pidAlive: false });
    assert.ok(Date.now() - t0 < 5000);
  });
});
