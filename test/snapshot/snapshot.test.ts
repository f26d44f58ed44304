// Live snapshots on the simulated Xen: the core equals the guest's memory at the pause
// instant while the guest writes memory during the copy; the pause covers only the last
// round; log-dirty is off and the guest running after success, errors and signals; the
// paused-copy fallback; the file opens in the real gdb; `monitor snapshot`.
import assert from 'assert';
import { spawn, spawnSync } from 'child_process';
import fs from 'fs';
import os from 'os';
import path from 'path';
import { startSimDemo, demoImage } from '../../src/simDemo';
import { XenControl } from '../../src/xg/xenctl';
import { Hypercalls, forwardBeyondDomctl } from '../../src/xg/hypercalls';
import { Errno, XenError } from '../../src/xg/errors';
import type { SimXen } from '../../src/xg/sim';
import { SnapshotResult, snapshotDomain } from '../../src/snapshot';
import { Core } from './coreReader';
import { gdbBatch, startStub, gdbConnect, Stub } from '../e2e/harness';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const MEM_MIB = 64;

interface Instant {
  mem: Buffer;
  regs: { rip: bigint; rsp: bigint }[];
  counter: bigint;
}

/** The simulated guest, a writer playing a busy guest (only while the domain can run), and the state at our pause. */
function setup(o: { type?: 'pv' | 'pvh'; shadowPaging?: boolean; failMapAfter?: number } = {}) {
  const demo = startSimDemo({ domid: 1, vcpus: 2, width: 64, type: o.type ?? 'pvh', memMiB: MEM_MIB, xen: { shadowPaging: o.shadowPaging } });
  const sim = demo.sim;
  const domid = demo.domid;
  let instant: Instant | undefined;
  let pauses = 0;
  sim.onStateChange((e) => {
    if (e.type !== 'state' || e.domid !== domid || e.what !== 'paused') return;
    pauses++;
    instant = {
      mem: sim.readPhys(domid, 0, MEM_MIB << 20),
      regs: [0, 1].map((v) => ({ rip: sim.registers(domid, v).rip, rsp: sim.registers(domid, v).rsp })),
      counter: sim.readVirt(domid, sim.symbol(domid, 'demo_counter'), 8).readBigUInt64LE(0),
    };
  });
  // Count what is copied while the domain is paused (by anyone): the pause must cover the last round only.
  let mappedWhilePaused = 0;
  let maps = 0;
  const hc: Hypercalls = {
    kind: 'sim',
    domctl: (op, data) => sim.domctl(op, data),
    xenVersion: (cmd, arg) => sim.xenVersion(cmd, arg),
    ...forwardBeyondDomctl(sim),
    mapForeign: (d, frames, w) => {
      if (o.failMapAfter !== undefined && ++maps > o.failMapAfter) throw new XenError('IOCTL_PRIVCMD_MMAPBATCH_V2', Errno.EIO, 'injected');
      if (sim.domainState(domid).controllerPauseCount > 0) mappedWhilePaused += frames.length;
      return sim.mapForeign(d, frames, w);
    },
    close: () => undefined,
  };
  // The busy guest: 8 pages of a free region (32..48 MiB) rewritten whenever the guest runs.
  let n = 0;
  let writing = true;
  const write = () => {
    if (!writing) return;
    const s = sim.domainIds().includes(domid) ? sim.domainState(domid) : undefined;
    if (s && s.controllerPauseCount === 0 && !s.dying) {
      for (let i = 0; i < 8; i++) {
        const page = Buffer.alloc(4096, (n + i) & 0xff);
        page.writeUInt32LE(n, 0);
        sim.writePhys(domid, (32 << 20) + (((n * 8 + i) * 7919) % 4096) * 4096, page);
      }
      n++;
    }
    setImmediate(write);
  };
  setImmediate(write);
  return {
    sim, domid, xc: new XenControl(hc),
    instant: () => instant, pauses: () => pauses, mappedWhilePaused: () => mappedWhilePaused, writes: () => n,
    close() {
      writing = false;
      demo.close();
    },
  };
}

function tmpFile(name: string): string {
  return path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'gdbsx-snap-')), name);
}

/** Every RAM page of the core, by physical address, against the guest's memory at the pause. */
function assertEqualsMemory(core: Core, mem: Buffer): void {
  let differ = 0;
  let first = -1;
  for (let pa = 0; pa < mem.length; pa += 4096) {
    const page = core.physPage(pa);
    assert.ok(page, `page 0x${pa.toString(16)} is missing from the core`);
    if (!page.equals(mem.subarray(pa, pa + 4096))) {
      if (first < 0) first = pa;
      differ++;
    }
  }
  assert.strictEqual(differ, 0, `${differ} pages differ from the guest's memory at the pause instant (first at 0x${first.toString(16)})`);
}

function assertClean(sim: SimXen, domid: number): void {
  const s = sim.domainState(domid);
  assert.strictEqual(s.logDirty, false, 'log-dirty left on');
  assert.strictEqual(s.controllerPauseCount, 0, 'guest left paused');
}

describe('snapshot on the simulated Xen', function () {
  this.timeout(120000);

  it('equals the guest memory at the pause instant while the guest writes during the copy; the pause covers only the last round', async () => {
    const t = setup();
    try {
      const file = tmpFile('core');
      const r = await snapshotDomain(t.xc, t.domid, file, {});
      const inst = t.instant();
      assert.ok(inst, 'the snapshot never paused the guest');
      assert.strictEqual(t.pauses(), 1, 'one pause, for the last round');
      assert.strictEqual(r.method, 'log-dirty pre-copy');
      assert.ok(t.writes() > 5, `the writer ran only ${t.writes()} times during the snapshot`);
      // The pause: only the last round was copied while paused, and it was small.
      assert.ok(r.rounds.length >= 2);
      assert.ok(r.rounds.slice(0, -1).every((x) => !x.paused) && r.rounds[r.rounds.length - 1].paused, JSON.stringify(r.rounds));
      assert.strictEqual(t.mappedWhilePaused(), r.pagesWhilePaused, 'pages mapped while paused vs the last round');
      assert.ok(r.pagesWhilePaused > 0, 'the last round copied nothing: the guest wrote nothing after the pre-copy?');
      assert.ok(r.pagesWhilePaused < r.guestPages / 20, `${r.pagesWhilePaused} of ${r.guestPages} pages copied while paused`);
      const core = new Core(file);
      try {
        assertEqualsMemory(core, inst.mem);
        assert.ok(core.loads.every((p) => p.align === 0n), 'p_align must be 0 (kdump) for crash');
        assert.ok(!core.notes.some((n) => n.name === 'Xen'), 'a PVH core is no Xen host dump: no crash-info note');
        const regs = core.prstatus();
        assert.deepStrictEqual([...regs.keys()], [1, 2]);
        for (const v of [0, 1]) {
          assert.strictEqual(regs.get(v + 1)?.rip, inst.regs[v].rip, `VCPU ${v} rip`);
          assert.strictEqual(regs.get(v + 1)?.rsp, inst.regs[v].rsp, `VCPU ${v} rsp`);
        }
      } finally {
        core.close();
      }
      // And the guest ran on and changed since: the snapshot is of the pause instant, not of now.
      await new Promise((res) => setTimeout(res, 50));
      assert.notDeepStrictEqual(t.sim.readPhys(t.domid, 32 << 20, 16 << 20), inst.mem.subarray(32 << 20, 48 << 20));
      assertClean(t.sim, t.domid);
      assert.ok(fs.statSync(file).blocks * 512 < (MEM_MIB << 20) / 4, 'zero pages must be holes');
    } finally {
      t.close();
    }
  });

  // xl gives every PVH/HVM guest a little more max_pages than memory: that is not
  // populate-on-demand, and the frames between RAM and the special pages near 4 GiB are
  // empty. Before, such a guest's summary counted the whole pfn space as guest memory
  // (983040 pages for the lab's 256 MiB PVH guest) and every frame of it was mapped.
  for (const podEntries of [0, 1024]) {
    it(`a PVH guest with max_pages above tot_pages and ${podEntries ? 'PoD entries' : 'no PoD entries'}: guest memory is the frames it has${podEntries ? ' (found by mapping)' : ''}`, async () => {
      const t = setup();
      try {
        t.sim.setMemoryLimits(t.domid, { maxPagesSlack: 256, podEntries });
        const maps: number[] = [];
        const xc = new XenControl({ ...t.xc.hc, mapForeign: (d, f, w) => (maps.push(f.length), t.xc.hc.mapForeign(d, f, w)) });
        const r = await snapshotDomain(xc, t.domid, tmpFile('core'), {});
        const ram = (MEM_MIB << 20) / 4096;
        // RAM and the few special pages (the monitor ring's, xenstore's, ... in the sim) and nothing else.
        assert.ok(r.guestPages >= ram && r.guestPages < ram + 16, `guest memory ${r.guestPages} pages for ${ram} pages of RAM`);
        const mapped = maps.reduce((a, b) => a + b, 0);
        if (podEntries === 0) assert.ok(mapped < 2 * ram, `${mapped} frames mapped for ${ram} pages of RAM`);
        assertClean(t.sim, t.domid);
      } finally {
        t.close();
      }
    });
  }

  it('falls back to a paused copy where Xen refuses log-dirty (PV without shadow paging), and says so', async () => {
    const t = setup({ type: 'pv', shadowPaging: false });
    try {
      const file = tmpFile('core');
      const r = await snapshotDomain(t.xc, t.domid, file, {});
      assert.strictEqual(r.method, 'paused copy');
      assert.match(r.fallbackReason ?? '', /EOPNOTSUPP/);
      assert.strictEqual(r.pagesWhilePaused, r.pagesCopied);
      assert.strictEqual(t.mappedWhilePaused(), r.pagesCopied);
      const inst = t.instant();
      assert.ok(inst);
      const core = new Core(file);
      try {
        assertEqualsMemory(core, inst.mem);
      } finally {
        core.close();
      }
      assertClean(t.sim, t.domid);
    } finally {
      t.close();
    }
  });

  it('a PV guest with log-dirty: pre-copy through its p2m', async () => {
    const t = setup({ type: 'pv' });
    try {
      const file = tmpFile('core');
      const r = await snapshotDomain(t.xc, t.domid, file, {});
      assert.strictEqual(r.method, 'log-dirty pre-copy');
      const inst = t.instant();
      assert.ok(inst);
      const core = new Core(file);
      try {
        assertEqualsMemory(core, inst.mem);
        // crash's way into a PV domain: Xen's crash-info note naming the guest's p2m frame-list list.
        const m = t.xc.hc.mapForeign(t.domid, [t.xc.getDomainInfo(t.domid).sharedInfoFrame], false);
        const si = Buffer.alloc(4096);
        m.read(0, si);
        m.unmap();
        const xen = core.notes.filter((n) => n.name === 'Xen' && n.type === 0x1000001);
        assert.strictEqual(xen.length, 1, 'one XEN_ELFNOTE_CRASH_INFO');
        assert.strictEqual(xen[0].desc.length, 80);
        assert.strictEqual(xen[0].desc.readBigUInt64LE(72), si.readBigUInt64LE(3088 + 8), 'the frame-list list of shared_info');
        assert.strictEqual(Number(xen[0].desc.readBigUInt64LE(0)), t.xc.version().major);
      } finally {
        core.close();
      }
      assertClean(t.sim, t.domid);
    } finally {
      t.close();
    }
  });

  it('a failure mid-copy: a clear error, no file, log-dirty off, the guest running', async () => {
    const t = setup({ failMapAfter: 5 });
    try {
      const file = tmpFile('core');
      await assert.rejects(snapshotDomain(t.xc, t.domid, file, {}), /MMAPBATCH_V2 failed: EIO/);
      assert.deepStrictEqual(fs.readdirSync(path.dirname(file)), [], 'no file, no temporary file');
      assertClean(t.sim, t.domid);
    } finally {
      t.close();
    }
  });

  it('a domain that dies mid-copy: says so, no file', async () => {
    const t = setup();
    try {
      const file = tmpFile('core');
      let batches = 0;
      await assert.rejects(snapshotDomain(t.xc, t.domid, file, {
        betweenBatches: () => {
          if (++batches === 3) t.sim.destroyDomain(t.domid);
        },
      }), /domain 1 went away during the snapshot/);
      assert.deepStrictEqual(fs.readdirSync(path.dirname(file)), []);
    } finally {
      t.close();
    }
  });

  it('an abort (the CLI\'s SIGINT) between batches: log-dirty off, guest running, no file', async () => {
    const t = setup();
    try {
      const file = tmpFile('core');
      const ac = new AbortController();
      let batches = 0;
      await assert.rejects(snapshotDomain(t.xc, t.domid, file, { signal: ac.signal, betweenBatches: () => { if (++batches === 4) ac.abort('SIGINT'); } }), /interrupted \(SIGINT\)/);
      assert.deepStrictEqual(fs.readdirSync(path.dirname(file)), []);
      assertClean(t.sim, t.domid);
    } finally {
      t.close();
    }
  });

  describe('the command line', () => {
    const cli = (args: string[], env: NodeJS.ProcessEnv = {}) => spawn(process.execPath, [path.join(ROOT, 'bin', 'gdbsx'), 'snapshot', ...args],
      { env: { ...process.env, GDBSX_SIM_EXIT_REPORT: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const collect = (p: ReturnType<typeof cli>) => new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
      let out = '';
      let err = '';
      p.stdout.on('data', (d: Buffer) => (out += d.toString()));
      p.stderr.on('data', (d: Buffer) => (err += d.toString()));
      p.on('close', (code) => resolve({ code, out, err }));
    });

    it('prints the pause, rounds, pages and file size', async () => {
      const file = tmpFile('core');
      const r = await collect(cli(['--sim', '1', file]));
      assert.strictEqual(r.code, 0, r.err);
      assert.match(r.out, /guest paused \d+\.\d+ ms/);
      assert.match(r.out, /\d+ rounds?: \d+/);
      assert.match(r.out, /\d+ pages copied, \d+ while paused/);
      assert.match(r.out, /file: [\d.]+ MiB \([\d.]+ MiB on disk/);
      assert.match(r.out, /snapshot-sim-exit \{"logDirty":false,"controllerPauseCount":0\}/);
      assert.ok(fs.existsSync(file));
    });

    it('SIGINT mid-copy: log-dirty off, guest running, no file', async () => {
      const file = tmpFile('core');
      const p = cli(['--sim', '--sim-mem', '1024', '1', file]);
      const done = collect(p);
      await new Promise<void>((resolve) => p.stderr.on('data', (d: Buffer) => { if (/round 0/.test(d.toString())) resolve(); }));
      p.kill('SIGINT');
      const r = await done;
      assert.strictEqual(r.code, 1, r.out + r.err);
      assert.match(r.err, /interrupted \(SIGINT\)/);
      assert.match(r.out, /snapshot-sim-exit \{"logDirty":false,"controllerPauseCount":0\}/);
      assert.deepStrictEqual(fs.readdirSync(path.dirname(file)), []);
    });

    it('a full disk (a file size limit): a clear error, log-dirty off, no file', async () => {
      const file = tmpFile('core');
      const p = spawn('bash', ['-c', `ulimit -f 64; exec "${process.execPath}" "${path.join(ROOT, 'bin', 'gdbsx')}" snapshot --sim 1 "${file}"`],
        { env: { ...process.env, GDBSX_SIM_EXIT_REPORT: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
      const r = await collect(p as ReturnType<typeof cli>);
      assert.strictEqual(r.code, 1, r.out + r.err);
      assert.match(r.err, /cannot write .*: .*no file written/);
      assert.match(r.out, /snapshot-sim-exit \{"logDirty":false,"controllerPauseCount":0\}/);
      assert.deepStrictEqual(fs.readdirSync(path.dirname(file)), []);
    });
  });

  describe('in the real gdb', () => {
    before(function () {
      if (spawnSync('gdb', ['--version']).status !== 0) throw new Error('gdb is not installed (.ci/run installs it)');
    });

    it('one thread per VCPU with the registers of the pause, memory by symbol as it was then', async () => {
      const t = setup();
      try {
        const file = tmpFile('core');
        await snapshotDomain(t.xc, t.domid, file, {});
        const inst = t.instant();
        assert.ok(inst);
        const r = await gdbBatch(['set pagination off', `file ${demoImage(64)}`, `core-file ${file}`, 'info threads',
          'thread 1', 'p/x $rip', 'p/x $rsp', 'thread 2', 'p/x $rip', 'p/x $rsp', 'x/s &demo_banner', 'p/x *(unsigned long *)&demo_counter', 'bt']);
        assert.strictEqual(r.code, 0, r.stderr);
        assert.match(r.stdout, /^\*? *1 +LWP 1 /m);
        assert.match(r.stdout, /^\*? *2 +LWP 2 /m);
        assert.doesNotMatch(r.stdout, /LWP 3/);
        const vals = [...r.stdout.matchAll(/^\$\d+ = (0x[0-9a-f]+)$/gm)].map((m) => BigInt(m[1]));
        assert.deepStrictEqual(vals.slice(0, 4), [inst.regs[0].rip, inst.regs[0].rsp, inst.regs[1].rip, inst.regs[1].rsp]);
        assert.strictEqual(vals[4], inst.counter, 'demo_counter as it was at the pause');
        assert.match(r.stdout, /"Xen gdbsx demo guest: hello from the simulated hypervisor"/);
        assert.match(r.stdout, /#0 .* in demo_|#0 +demo_/);
      } finally {
        t.close();
      }
    });

    it('monitor snapshot from a debug session: the stopped guest as it stands, without our int3s', async () => {
      let stub: Stub | undefined;
      try {
        stub = await startStub({ vcpus: 2 });
        const file = tmpFile('core');
        // always-inserted: our int3 stays in guest memory while gdb has the guest stopped.
        const live = await gdbBatch([...gdbConnect(stub), 'set breakpoint always-inserted on', 'break demo_tick', 'continue', 'p/x $pc',
          `monitor snapshot ${file}`, 'x/1xb demo_tick', 'detach'], 60000);
        assert.strictEqual(live.code, 0, live.stderr);
                const console = live.stdout + live.stderr; // gdb -batch prints monitor output on stderr
        assert.match(console, /snapshot of a PV 64-bit guest written to/);
        assert.match(console, /already stopped/);
        const orig = live.stdout.match(/<demo_tick>:\s+(0x[0-9a-f]{2})/);
        assert.ok(orig, live.stdout);
        const r = await gdbBatch(['set pagination off', `file ${stub.image}`, `core-file ${file}`, 'info threads', 'x/1xb demo_tick', 'p/x $pc']);
        assert.strictEqual(r.code, 0, r.stderr);
        assert.match(r.stdout, /2 +LWP 2/);
        // The byte under the stub's int3 is the guest's own, as gdb showed it live.
        assert.match(r.stdout, new RegExp(`<demo_tick>:\\s+${orig[1]}`));
        assert.notStrictEqual(orig[1], '0xcc');
      } finally {
        await stub?.close();
      }
    });
  });
});
