// `gdbsx serve` (issue 13, "many domains through one port"): gdb's extended-remote mode
// against the simulated Xen with two demo domains; and `target extended-remote` on a
// `gdbsx -a` stub (one domain), where run, attach and kill used to close the connection.
import assert from 'assert';
import { spawn } from 'child_process';
import fs from 'fs';
import path from 'path';
import { journalDir } from '../../src/vcpu/bpJournal';
import { XenControl } from '../../src/xg/xenctl';
import { DomainServer } from '../../src/gx/domainServer';
import { startSimDemo, demoImage } from '../../src/simDemo';
import { guestIntegrity, GuestIntegrity } from '../../src/simIntegrity';
import type { SimXen } from '../../src/xg/sim';
import { gdbBatch, gdbConnect, startStub, Stub, sleep, MiClient } from './harness';
import { RspClient } from '../support/rspClient';
import { frame } from '../../src/gx/packet';

/** Pretend another gdbsx (a live process: `sleep`) holds domain `domid`'s lock; returns its end. */
async function otherStub(sim: SimXen, domid: number): Promise<{ pid: number; file: string; end(): Promise<void> }> {
  const child = spawn('sleep', ['60'], { stdio: 'ignore' });
  const pid = child.pid as number;
  const file = path.join(journalDir(), `dom${domid}-${new XenControl(sim).getDomainInfo(domid).handle}.owner`);
  fs.mkdirSync(journalDir(), { recursive: true });
  fs.writeFileSync(file, `${pid}\n`);
  return {
    pid, file,
    end: () => new Promise((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    }),
  };
}

interface Serve {
  port: number;
  sim: SimXen;
  server: DomainServer;
  events: string[];
  close(): Promise<void>;
}

async function startServe(): Promise<Serve> {
  const demo = startSimDemo({ domid: 1, vcpus: 2, width: 64, type: 'pv' });
  demo.sim.createDomain({ domid: 2, name: 'demo32', vcpus: 1, width: 32, type: 'pv', image: demoImage(32) });
  const server = new DomainServer(new XenControl(demo.hc), { host: '127.0.0.1', port: 0, xenstore: demo.xenstore });
  const events: string[] = [];
  server.onEvent = (m) => events.push(m);
  const port = await server.listen();
  return {
    port, sim: demo.sim, server, events,
    async close() {
      await server.close();
      demo.close();
    },
  };
}

function extendedConnect(port: number, width: 32 | 64 = 64): string[] {
  return ['set pagination off', 'set confirm off', `file ${demoImage(width)}`, `target extended-remote 127.0.0.1:${port}`];
}

/** Wait until no connection holds a domain (gdb has exited and the stub seen it). */
async function settled(s: Serve): Promise<void> {
  for (let i = 0; i < 200 && s.server.activeSessions.length > 0; i++) await sleep(10);
}

describe('gdbsx serve: many domains through one port (extended-remote)', function () {
  this.timeout(120000);
  let s: Serve;
  beforeEach(async () => {
    s = await startServe();
  });
  afterEach(async () => s.close());

  it('info os processes lists the domains (pid, name, type, width, VCPUs, state)', async () => {
    const r = await gdbBatch([...extendedConnect(s.port), 'info os', 'info os processes']);
    const out = r.stdout + r.stderr;
    assert.match(out, /processes\s+Listing of all Xen domains/, out);
    assert.match(out, /^1\s+demo\s+PV 64-bit, 2 VCPUs, \w+/m, out);
    assert.match(out, /^2\s+demo32\s+PV 32-bit, 1 VCPU, \w+/m, out);
    assert.doesNotMatch(out, /Remote connection closed|^0\s/m, out);
  });

  it('the list is read each time: a domain created or destroyed meanwhile is seen', async () => {
    const c = await RspClient.session(s.port);
    assert.strictEqual(await c.request('!'), 'OK');
    const list = () => c.request('qXfer:osdata:read:processes:0,fff');
    assert.match(await list(), /<column name="pid">2<\/column>/);
    assert.doesNotMatch(await list(), /<column name="pid">3<\/column>/);
    s.sim.createDomain({ domid: 3, name: 'late', vcpus: 1, width: 64, type: 'pvh', image: demoImage(64) });
    s.sim.destroyDomain(2);
    const after = await list();
    assert.match(after, /<column name="pid">3<\/column>\s*<column name="user">late<\/column>\s*<column name="command">PVH, 1 VCPU/, after);
    assert.doesNotMatch(after, /<column name="pid">2<\/column>/, after);
    c.close();
  });

  it('attach 1, info threads, a breakpoint hit, detach, attach again; then attach 2', async () => {
    const r = await gdbBatch([...extendedConnect(s.port), 'info threads', 'attach 1', 'info threads', 'break demo_tick', 'continue',
      'detach', 'info threads', 'attach 1', 'info threads', 'detach', 'attach 2', 'info threads', 'detach']);
    const out = r.stdout + r.stderr;
    assert.match(out, /No threads/, 'no domain before attach: ' + out);
    assert.match(out, /Thread 1\.1 "VCPU 0" \(VCPU 0 of domain 1, paused\)[\s\S]*Thread 1\.2 "VCPU 1"/, out);
    assert.match(out, /hit Breakpoint 1, demo_tick \(\)/, out);
    assert.strictEqual(out.match(/\[Inferior 1 \(process 1\) detached\]/g)?.length, 2, out);
    assert.match(out, /Thread 2\.1 "VCPU 0" \(VCPU 0 of domain 2, paused\)/, out);
    assert.match(out, /\[Inferior 1 \(process 2\) detached\]/, out);
    assert.doesNotMatch(out, /Remote connection closed|failed/, out);
    await settled(s);
    for (const d of [1, 2]) assert.ok(guestIntegrity(s.sim, d, demoImage(d === 1 ? 64 : 32)).ok, `domain ${d} left as found`);
  });

  it('kill detaches: the domain runs on, unpaused, without breakpoints, and the connection stays', async () => {
    let atKill: GuestIntegrity | undefined;
    s.server.onEvent = (m) => {
      s.events.push(m);
      if (/^kill/.test(m)) atKill = guestIntegrity(s.sim, 1, demoImage(64));
    };
    const ticks = () => s.sim.readVirt(1, s.sim.symbol(1, 'demo_ticks'), 8).readBigUInt64LE();
    const r = await gdbBatch([...extendedConnect(s.port), 'attach 1', 'break demo_tick', 'continue', 'kill', 'info os processes', 'attach 2', 'info threads']);
    const out = r.stdout + r.stderr;
    assert.match(out, /hit Breakpoint 1, demo_tick/, out);
    assert.match(out, /\[Inferior 1 \(process 1\) killed\]/, out);
    assert.ok(atKill, `the stub said nothing at kill: ${s.events.join('\n')}`);
    assert.ok(atKill.ok, `after kill: ${JSON.stringify(atKill)}`);
    assert.match(s.events.join('\n'), /kill \(a domain is never destroyed\): domain 1 detached, left running/);
    assert.match(out, /^1\s+demo\s+PV 64-bit/m, 'still connected after kill: ' + out);
    assert.match(out, /Thread 2\.1 "VCPU 0"/, out);
    assert.ok(s.sim.domainState(1) !== undefined, 'domain 1 still exists');
    const t0 = ticks();
    for (let i = 0; i < 300 && ticks() === t0; i++) await sleep(10);
    assert.notStrictEqual(ticks(), t0, 'domain 1 runs on');
  });

  it('run is refused with how to start a domain', async () => {
    const r = await gdbBatch([...extendedConnect(s.port), 'run', 'info os processes']);
    const out = r.stdout + r.stderr;
    assert.match(out, /Running the default executable on the remote target failed/, out);
    assert.match(out, /^1\s+demo\s/m, 'still connected: ' + out);
    assert.match(s.events.join('\n'), /refused `run`: a domain is started with `xl create`/);
    const c = await RspClient.session(s.port);
    assert.strictEqual(await c.request('!'), 'OK');
    assert.match(await c.request('vRun;'), /^E\.gdbsx: `run` cannot start a domain: create it in dom0 with `xl create <config>`.*then `attach <domid>`/);
    c.close();
  });

  it('an unknown domain, dom0 and a domain another connection holds are refused readably', async () => {
    const r = await gdbBatch([...extendedConnect(s.port), 'attach 9', 'info os processes']);
    assert.match(r.stdout + r.stderr, /Attaching to process 9 failed/);
    assert.match(s.events.join('\n'), /refused to attach domain 9: domain 9 does not exist/);
    const a = await RspClient.session(s.port);
    const b = await RspClient.session(s.port);
    for (const c of [a, b]) assert.strictEqual(await c.request('!'), 'OK');
    assert.match(await a.request('vAttach;9'), /^E\.gdbsx: domain 9 does not exist \(see `xl list`\)$/);
    assert.match(await a.request('vAttach;0'), /^E\.gdbsx: refusing to attach to dom0/);
    assert.match(await a.request('vAttach;1'), /^T05.*thread:p1\.1;/);
    assert.strictEqual(await b.request('vAttach;1'), 'E.gdbsx: domain 1 is already being debugged by another connection');
    assert.strictEqual(await a.request('vAttach;1'), 'E.gdbsx: domain 1 is already attached on this connection (process 1)', 'the same domain twice');
    assert.match(await b.request('vAttach;2'), /^T05.*thread:p2\.1;/, 'another domain for another connection');
    assert.strictEqual(await a.request('vAttach;2'), 'E.gdbsx: domain 2 is already being debugged by another connection');
    assert.strictEqual(await a.request('D;1'), 'OK');
    assert.match(await b.request('g'), /^[0-9a-fx]+$/, 'b still has domain 2');
    assert.strictEqual(await b.request('D;2'), 'OK');
    assert.match(await b.request('vAttach;1'), /^T05/, 'domain 1 free again after a\'s detach');
    assert.strictEqual(await b.request('vKill;1'), 'OK');
    assert.match(await b.request('g'), /^E\.no domain attached/);
    a.close();
    b.close();
  });

  it('multiprocess: two domains on one connection (vAttach twice, threads and descriptions of both, D;pid detaches one)', async () => {
    const c = await RspClient.session(s.port);
    assert.strictEqual(await c.request('!'), 'OK');
    assert.match(await c.request('vAttach;1'), /^T05.*thread:p1\.1;/);
    assert.match(await c.request('vAttach;2'), /^T05.*thread:p2\.1;/, 'a second domain while the first is attached');
    assert.strictEqual(await c.request('qC'), 'QCp2.1', 'the domain attached last is the current process');
    assert.strictEqual(await c.request('qfThreadInfo'), 'mp1.1,p1.2,p2.1');
    assert.strictEqual(await c.request('qsThreadInfo'), 'l');
    const threads = await c.request('qXfer:threads:read::0,fff');
    assert.match(threads, /id="p1\.2"[^>]*>VCPU 1 of domain 1, paused<[\s\S]*id="p2\.1"[^>]*>VCPU 0 of domain 2, paused</, threads);
    // The description, registers and memory of the process Hg selects.
    assert.strictEqual(await c.request('Hgp1.1'), 'OK');
    assert.match(await c.request('qXfer:features:read:target.xml:0,fff'), /<architecture>i386:x86-64<\/architecture>/);
    const g1 = await c.request('g');
    const t1 = s.sim.symbol(1, 'demo_ticks');
    assert.strictEqual(await c.request(`m${t1.toString(16)},8`), s.sim.readVirt(1, t1, 8).toString('hex'));
    assert.strictEqual(await c.request('Hgp2.1'), 'OK');
    assert.match(await c.request('qXfer:features:read:target.xml:0,fff'), /<architecture>i386<\/architecture>/);
    assert.ok((await c.request('g')).length < g1.length, 'domain 2\'s register block is the 32-bit one');
    const t2 = s.sim.symbol(2, 'demo_ticks');
    assert.strictEqual(await c.request(`m${t2.toString(16)},4`), s.sim.readVirt(2, t2, 4).toString('hex'));
    assert.strictEqual(await c.request('Tp1.2'), 'OK');
    assert.strictEqual(await c.request('Tp2.2'), 'E01', 'domain 2 has one VCPU');
    // Detach one: the other stays attached and answers.
    assert.strictEqual(await c.request('D;1'), 'OK');
    assert.ok(guestIntegrity(s.sim, 1, demoImage(64)).ok, 'domain 1 detached: running, as found');
    assert.strictEqual(await c.request('qfThreadInfo'), 'mp2.1');
    assert.strictEqual(await c.request('Hgp1.1'), 'E01', 'domain 1 is no longer held');
    assert.strictEqual(await c.request('Hgp2.1'), 'OK');
    assert.strictEqual(await c.request(`m${t2.toString(16)},4`), s.sim.readVirt(2, t2, 4).toString('hex'));
    assert.strictEqual(s.sim.domainState(2).controllerPauseCount > 0, true, 'domain 2 still attached (paused)');
    assert.match(await c.request('vAttach;1'), /^T05.*thread:p1\.1;/, 'domain 1 again, beside domain 2');
    assert.strictEqual(await c.request('vKill;2'), 'OK');
    assert.ok(guestIntegrity(s.sim, 2, demoImage(32)).ok, 'killed = detached, running');
    assert.strictEqual(await c.request('qfThreadInfo'), 'mp1.1,p1.2');
    c.close();
    await settled(s);
    assert.ok(guestIntegrity(s.sim, 1, demoImage(64)).ok, 'the connection ended: domain 1 detached');
  });

  it('multiprocess: vCont resumes the processes it names; the first stop stops the others (all-stop); 0x03 stops all', async () => {
    const ticks = (d: number) => s.sim.readVirt(d, s.sim.symbol(d, 'demo_ticks'), 4).readUInt32LE();
    const c = await RspClient.session(s.port);
    assert.strictEqual(await c.request('!'), 'OK');
    assert.match(await c.request('vAttach;1'), /^T05/);
    assert.match(await c.request('vAttach;2'), /^T05/);
    const tick1 = s.sim.symbol(1, 'demo_tick');
    const tick2 = s.sim.symbol(2, 'demo_tick');
    // A breakpoint belongs to the process Hg selected.
    assert.strictEqual(await c.request('Hgp1.1'), 'OK');
    assert.strictEqual(await c.request(`Z0,${tick1.toString(16)},1`), 'OK');
    assert.strictEqual(await c.request('Hgp2.1'), 'OK');
    assert.strictEqual(await c.request(`Z0,${tick2.toString(16)},1`), 'OK');
    assert.strictEqual(s.sim.readVirt(1, tick1, 1)[0], 0xcc);
    assert.strictEqual(s.sim.readVirt(2, tick2, 1)[0], 0xcc);
    // Only domain 2 runs (gdb's default: the current inferior's threads); domain 1 stays stopped.
    const before1 = ticks(1);
    const r2 = await c.request('vCont;c:p2.-1', 20000);
    assert.match(r2, /^T05.*thread:p2\.1;/, r2);
    assert.strictEqual(s.sim.registers(2, 0).rip & 0xffffffffn, tick2 & 0xffffffffn, 'domain 2 at its breakpoint');
    assert.strictEqual(ticks(1), before1, 'domain 1 did not run');
    assert.strictEqual(await c.request('qC'), 'QCp2.1');
    // Both run (schedule-multiple), a breakpoint in domain 1 only: its hit stops domain 2 too.
    assert.strictEqual(await c.request(`z0,${tick2.toString(16)},1`), 'OK');
    const r = await c.request('vCont;c', 20000);
    assert.match(r, /^T05.*thread:p1\.\d+;/, r);
    assert.strictEqual(await c.request('qC'), `QC${/thread:(p1\.\d+);/.exec(r)?.[1]}`, 'the stopping thread is the current one');
    for (const d of [1, 2]) assert.ok(s.sim.domainState(d).controllerPauseCount > 0, `domain ${d} stopped after domain 1's breakpoint: ${r}`);
    const t1 = ticks(1);
    const t2 = ticks(2);
    await sleep(100);
    assert.deepStrictEqual([ticks(1), ticks(2)], [t1, t2], 'neither domain runs after the stop');
    // Breakpoints out; both run until 0x03, which stops both.
    assert.strictEqual(await c.request('Hgp1.1'), 'OK');
    assert.strictEqual(await c.request(`z0,${tick1.toString(16)},1`), 'OK');
    c.writeRaw(frame(Buffer.from('vCont;c:p-1.-1')));
    const a1 = ticks(1);
    const a2 = ticks(2);
    for (let i = 0; i < 300 && (ticks(1) === a1 || ticks(2) === a2); i++) await sleep(10);
    assert.ok(ticks(1) !== a1 && ticks(2) !== a2, 'both run');
    c.writeRaw(Buffer.from([3]));
    const stop = await c.readPacket(10000);
    assert.match(stop, /^T02.*thread:p[12]\.\d+;/, stop);
    for (const d of [1, 2]) assert.ok(s.sim.domainState(d).controllerPauseCount > 0, `domain ${d} stopped by 0x03`);
    c.close();
    await settled(s);
    for (const d of [1, 2]) assert.ok(guestIntegrity(s.sim, d, demoImage(d === 1 ? 64 : 32)).ok, `domain ${d} left as found`);
  });

  it('without multiprocess: one domain per connection, the second attach refused', async () => {
    const c = await RspClient.connect(s.port);
    assert.match(await c.request('qSupported:swbreak+'), /PacketSize/);
    assert.strictEqual(await c.request('!'), 'OK');
    assert.match(await c.request('vAttach;1'), /^T05.*thread:1;/);
    assert.match(await c.request('vAttach;2'), /^E\.gdbsx: this connection is debugging domain 1; one domain per connection/);
    assert.strictEqual(await c.request('qfThreadInfo'), 'm1,2');
    assert.strictEqual(await c.request('D'), 'OK');
    assert.match(await c.request('vAttach;2'), /^T05.*thread:1;/);
    assert.strictEqual(await c.request('D'), 'OK');
    c.close();
  });

  it('gdb: two inferiors at once (64-bit domain 1, 32-bit domain 2): threads, widths and a breakpoint hit in each; detach one; gdb gone: both run as found', async () => {
    const ticks = (d: number) => s.sim.readVirt(d, s.sim.symbol(d, 'demo_ticks'), 4).readUInt32LE();
    const r = await gdbBatch([...extendedConnect(s.port), 'attach 1', 'add-inferior', 'inferior 2', 'attach 2', `file ${demoImage(32)}`,
      'info inferiors', 'info threads',
      'inferior 1', 'p sizeof(long)', 'p/x *(unsigned long *)&demo_banner', 'monitor domain',
      'inferior 2', 'p sizeof(long)', 'p/x *(unsigned long *)&demo_banner', 'monitor domain',
      'break demo_tick',
      // gdb's default (schedule-multiple off): only the current inferior runs.
      'inferior 1', 'set debug remote 1', 'continue', 'set debug remote 0',
      'inferior 2', 'continue',
      'inferior 1', 'detach', 'info inferiors', 'inferior 2', 'info threads', 'continue', 'info threads']);
    const out = r.stdout + r.stderr;
    assert.match(out, /^\s+1\s+process 1\s+1 \(extended-remote [^)]+\)\s+\S*demo64\.elf\s*\n\*\s+2\s+process 2\s+1 \(extended-remote [^)]+\)\s+\S*demo32\.elf/m, out);
    assert.match(out, /1\.1\s+Thread 1\.1 "VCPU 0" \(VCPU 0 of domain 1, paused\)[^\n]*\n\s+1\.2\s+Thread 1\.2 "VCPU 1" \(VCPU 1 of domain 1, paused\)[^\n]*\n\*\s+2\.1\s+Thread 2\.1 "VCPU 0" \(VCPU 0 of domain 2, paused\) demo_idle \(\) at \S*demo32\.S/, out);
    // Each inferior has its own description: 8-byte longs in domain 1, 4-byte in domain 2, read from each domain's memory.
    const banner64 = Buffer.from('Xen gdbs', 'latin1').readBigUInt64LE().toString(16);
    const banner32 = Buffer.from('Xen ', 'latin1').readUInt32LE().toString(16);
    assert.match(r.stdout, new RegExp(`\\$\\d+ = 8\\n\\$\\d+ = 0x${banner64}\\n[\\s\\S]*\\$\\d+ = 4\\n\\$\\d+ = 0x${banner32}\\n`), out);
    // `monitor` acts on the selected inferior's domain (gdb's batch mode prints its output on stderr).
    assert.match(r.stderr, /domain 1: PV 64-bit guest, paused[\s\S]*domain 2: PV 32-bit guest, paused/, out);
    assert.match(out, /Breakpoint 1 at 0x[0-9a-f]+: demo_tick\. \(2 locations\)/, out);
    assert.match(out, /Sending packet: \$vCont;c:p1\.-1#/, 'only inferior 1 resumed: ' + out);
    assert.match(out, /Packet received: T05swbreak:;thread:p1\.\d;/, out);
    // One breakpoint of gdb's, a location in each domain: each Z0 goes to the process gdb selected first (Hg).
    const tick1 = s.sim.symbol(1, 'demo_tick');
    const tick2 = s.sim.symbol(2, 'demo_tick');
    const zTo = new Map<string, string>();
    let hg = '';
    for (const m of out.matchAll(/Sending packet: \$(Hgp([0-9a-f]+)\.|Z0,([0-9a-f]+),)/g)) {
      if (m[2] !== undefined) hg = m[2];
      else zTo.set(m[3], hg);
    }
    assert.deepStrictEqual([zTo.get(tick1.toString(16)), zTo.get(tick2.toString(16))], ['1', '2'], out);
    assert.match(out, /Thread 1\.\d "VCPU \d" hit Breakpoint 1\.\d, demo_tick \(\) at \S*demo64\.S:\d+/, out);
    assert.match(out, /Thread 2\.1 "VCPU 0" hit Breakpoint 1\.\d, demo_tick \(\) at \S*demo32\.S:\d+/, out);
    // Inferior 1 detached: inferior 2 still attached and working (its breakpoint hit again).
    assert.match(out, /\[Inferior 1 \(process 1\) detached\]\n\s+Num\s+Description[^\n]*\n\*?\s+1\s+<null>[^\n]*\n\*?\s+2\s+process 2/, out);
    assert.strictEqual(out.match(/Thread 2\.1 "VCPU 0" hit Breakpoint 1\.\d, demo_tick/g)?.length, 2, out);
    assert.match(s.events.join('\n'), /detach: domain 1 detached, left running/);
    assert.doesNotMatch(out, /Remote connection closed|failed|not compatible|Cannot/, out);
    // gdb gone: the connection detached domain 2 too; both run, their code as in the ELF (no int3 left).
    await settled(s);
    for (const [d, at] of [[1, tick1], [2, tick2]] as const) {
      assert.ok(guestIntegrity(s.sim, d, demoImage(d === 1 ? 64 : 32)).ok, `domain ${d} left as found: ${JSON.stringify(guestIntegrity(s.sim, d, demoImage(d === 1 ? 64 : 32)))}`);
      assert.notStrictEqual(s.sim.readVirt(d, at, 1)[0], 0xcc, `no int3 left in domain ${d}`);
      const t0 = ticks(d);
      for (let i = 0; i < 300 && ticks(d) === t0; i++) await sleep(10);
      assert.notStrictEqual(ticks(d), t0, `domain ${d} runs on`);
    }
  });

  it('gdb: schedule-multiple on: both inferiors run, a breakpoint in domain 1 stops both (all-stop), interrupt stops both', async () => {
    const ticks = (d: number) => s.sim.readVirt(d, s.sim.symbol(d, 'demo_ticks'), 4).readUInt32LE();
    const frozen = async () => {
      const t = [ticks(1), ticks(2)];
      await sleep(150);
      return t[0] === ticks(1) && t[1] === ticks(2);
    };
    const mi = new MiClient();
    try {
      const ok = async (c: string) => assert.notStrictEqual((await mi.cmd(c)).cls, 'error', `${c}: ${mi.log.slice(-5).join('\n')}`);
      await ok(`-file-exec-and-symbols ${demoImage(64)}`);
      await ok('-gdb-set mi-async on');
      await ok('-gdb-set schedule-multiple on');
      await ok(`-target-select extended-remote 127.0.0.1:${s.port}`);
      await ok('-target-attach 1');
      assert.match((await mi.cmd('-add-inferior')).text, /inferior="i2"/);
      await ok('-interpreter-exec console "inferior 2"');
      await ok('-target-attach 2');
      await ok(`-file-exec-and-symbols ${demoImage(32)}`);
      const threads = await mi.cmd('-thread-info');
      assert.strictEqual(threads.text.match(/\{id="\d+",target-id="Thread \d\.\d"/g)?.length, 3, threads.text);
      // Only in domain 1 (an address breakpoint is in the current inferior's program space): domain 2 stops only if stopped by it.
      await ok('-interpreter-exec console "inferior 1"');
      const tick1 = s.sim.symbol(1, 'demo_tick');
      assert.match((await mi.cmd(`-break-insert *0x${tick1.toString(16)}`)).text, /times="0"/);
      for (let round = 0; round < 2; round++) {
        const since = mi.asyncRecords.length;
        assert.strictEqual((await mi.cmd('-exec-continue')).cls, 'running');
        const hit = (await mi.waitAsync(/^\*stopped,reason="breakpoint-hit"/, since, 10000)).line;
        assert.match(hit, /func="demo_tick"[\s\S]*thread-id="[12]"/, hit);
        assert.ok(await frozen(), `both domains stopped at the breakpoint (round ${round}): ${hit}`);
        for (const d of [1, 2]) assert.ok(s.sim.domainState(d).controllerPauseCount > 0, `domain ${d} paused`);
      }
      await ok('-break-delete');
      const since = mi.asyncRecords.length;
      assert.strictEqual((await mi.cmd('-exec-continue')).cls, 'running');
      const t = [ticks(1), ticks(2)];
      for (let i = 0; i < 300 && (ticks(1) === t[0] || ticks(2) === t[1]); i++) await sleep(10);
      assert.ok(ticks(1) !== t[0] && ticks(2) !== t[1], 'both domains run');
      await mi.cmd('-exec-interrupt');
      const stopped = (await mi.waitAsync(/^\*stopped/, since, 10000)).line;
      assert.match(stopped, /reason="signal-received",signal-name="SIGINT"/, stopped);
      assert.ok(await frozen(), 'interrupt stopped both domains');
    } finally {
      await mi.quit();
    }
    await settled(s);
    for (const d of [1, 2]) assert.ok(guestIntegrity(s.sim, d, demoImage(d === 1 ? 64 : 32)).ok, `domain ${d} left as found`);
  });

  it('a domain another gdbsx debugs is refused before anything is paused; its lock, once stale, is taken over', async () => {
    const other = await otherStub(s.sim, 1);
    const c = await RspClient.session(s.port);
    assert.strictEqual(await c.request('!'), 'OK');
    assert.strictEqual(await c.request('vAttach;1'), `E.gdbsx: domain 1 is being debugged by another gdbsx (pid ${other.pid}): detach it there first`);
    assert.strictEqual(s.sim.domainState(1).controllerPauseCount, 0, 'not paused by the refused attach');
    await other.end();
    assert.match(await c.request('vAttach;1'), /^T05/, 'stale lock taken over');
    assert.strictEqual(fs.readFileSync(other.file, 'utf8').trim(), String(process.pid));
    assert.strictEqual(await c.request('D;1'), 'OK');
    assert.ok(!fs.existsSync(other.file), 'released at detach');
    c.close();
  });
});

describe('target extended-remote on gdbsx -a (one domain)', function () {
  this.timeout(120000);
  let stub: Stub;
  beforeEach(async () => {
    stub = await startStub({ vcpus: 2 });
  });
  afterEach(async () => stub.close());

  it('attach, kill and run keep the connection; another domain is refused', async () => {
    const r = await gdbBatch([...extendedConnect(stub.port), 'info threads', 'attach 1', 'info threads', 'kill', 'info threads', 'attach 1',
      'break demo_tick', 'continue', 'run', 'attach 1', 'attach 2', 'detach', 'attach 1', 'info threads']);
    const out = r.stdout + r.stderr;
    assert.doesNotMatch(out, /Remote connection closed/, out);
    assert.match(out, /\[Inferior 1 \(process 1\) killed\]/, out);
    assert.match(out, /No threads/, 'no domain after kill: ' + out);
    assert.match(out, /hit Breakpoint 1, demo_tick/, out);
    assert.match(out, /Running the default executable on the remote target failed/, out);
    assert.match(out, /Attaching to process 2 failed/, out);
    // gdb kills (here: detaches) before `run` and before attaching another domain; the last attach holds until gdb quits (and detaches).
    assert.match(r.stdout, /Thread 1\.2 "VCPU 1" \(VCPU 1 of domain 1, paused\)[^\n]*\n\[Inferior 1 \(process 1\) detached\]\n$/, 'attached at the end: ' + out);
    for (let i = 0; i < 200 && stub.server.activeSession; i++) await sleep(10);
    assert.ok(guestIntegrity(stub.sim, 1, stub.image).ok, 'gdb gone: detached, running');
  });

  it('gdb is refused readably while another gdbsx debugs the domain', async () => {
    const other = await otherStub(stub.sim, 1);
    try {
      const r = await gdbBatch([...gdbConnect(stub), 'info threads']);
      assert.match(r.stdout + r.stderr, new RegExp(`Remote failure reply: E\\.gdbsx: cannot attach to domain 1: domain 1 is being debugged by another gdbsx \\(pid ${other.pid}\\)`), r.stdout + r.stderr);
      assert.strictEqual(stub.sim.domainState(1).controllerPauseCount, 0);
    } finally {
      await other.end();
    }
    const r = await gdbBatch([...gdbConnect(stub), 'info threads', 'detach']);
    assert.match(r.stdout, /Thread 1\.1/, r.stdout + r.stderr);
  });

  it('the refusals name the one domain served', async () => {
    const c = await RspClient.session(stub.port);
    assert.strictEqual(await c.request('!'), 'OK');
    assert.match(await c.request('vAttach;1'), /^T05.*thread:p1\.1;/, 'the attached domain: its stop');
    assert.match(await c.request('vAttach;2'), /^E\.gdbsx: this connection is debugging domain 1/);
    assert.strictEqual(await c.request('vKill;1'), 'OK');
    assert.strictEqual(await c.request('?'), 'W00');
    assert.ok(guestIntegrity(stub.sim, 1, stub.image).ok, 'killed = detached, running');
    assert.match(await c.request('vAttach;2'), /^E\.gdbsx: this stub serves domain 1 only \(gdbsx -a 1\); `gdbsx serve` serves any domain$/);
    assert.match(await c.request('qXfer:osdata:read:processes:0,fff'), /<column name="pid">1<\/column>/);
    assert.match(await c.request('vAttach;1'), /^T05/);
    assert.strictEqual(await c.request('D;1'), 'OK');
    c.close();
  });
});
