// LLDB against the lab's stubs on real Xen: the VCPUs as threads with their names, the
// registers as xenctx has them, a watchpoint (PV on the gdbsx build, where the debug
// registers reach us), and `process detach` leaving the guest running and unpaused.
import assert from 'assert';
import { readState, labExec, LabGuest } from '../lab/client';
import { runBatch, BatchResult } from '../e2e/harness';
import { labState, installXenctx, xenctx, ksym, hex, liveGuest, againAfterTripleFault } from './labUtil';

const LLDB = process.env.LLDB ?? 'lldb';

function lldbOn(g: LabGuest, cmds: string[], timeoutMs = 300000): Promise<BatchResult> {
  return runBatch(LLDB, ['--no-lldbinit', '-b', '-o', 'settings set plugin.process.gdb-remote.packet-timeout 60',
    '-o', `gdb-remote 127.0.0.1:${g.stub.port}`, ...cmds.flatMap((c) => ['-o', c])], timeoutMs);
}

/**
 * The batch ran and nothing failed up to `process detach`. After it LLDB prints the
 * selected frame again and reads memory for it, but the stub has ended the session on
 * `D` (as gdbserver does outside extended mode), so LLDB says "failed to send packet"
 * for that read: its display, not the detach, which it reports as done.
 */
function clean(r: BatchResult, what: string): string {
  const all = `${what}\nexit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
  assert.strictEqual(r.code, 0, all);
  const beforeDetach = r.stdout.split('(lldb) process detach')[0];
  assert.doesNotMatch(beforeDetach, /^error:|failed to send|unexpected response/im, all);
  assert.match(r.stdout, /Process \d+ detached/, all);
  return r.stdout;
}

async function xlState(xlName: string): Promise<string> {
  const r = await labExec(`xl list ${xlName} | tail -1`);
  return r.stdout.trim().split(/\s+/)[4] ?? '';
}

describe('real Xen: LLDB', function () {
  this.timeout(1200000);

  before(async function () {
    if (labState()?.status !== 'ready') this.skip();
    await installXenctx();
  });

  for (const name of ['pv', 'pvh']) {
    describe(name, function () {
      let g: LabGuest;
      before(async function () {
        if (!readState().guests[name]) this.skip();
        g = await liveGuest(name);
      });

      it('thread list names the VCPUs; each thread\'s pc and stack pointer are xenctx\'s; process detach leaves it running', async () => {
        const r = await lldbOn(g, ['thread list', 'register read rip rsp', 'thread select 2', 'register read rip rsp', 'process detach']);
        const out = clean(r, `lldb on ${name}`);
        assert.match(out, /thread #1: tid = 0x0001, .*name = 'VCPU 0'/, out);
        assert.match(out, /thread #2: tid = 0x0002, .*name = 'VCPU 1'/, out);
        assert.doesNotMatch(out, /thread #3/);
        // Read while the guest is stopped: the stub holds it until the detach.
        const rips = [...out.matchAll(/^\s*rip = (0x[0-9a-f]+)/gm)].map((m) => BigInt(m[1]));
        const rsps = [...out.matchAll(/^\s*rsp = (0x[0-9a-f]+)/gm)].map((m) => BigInt(m[1]));
        assert.strictEqual(rips.length, 2, out);
        assert.match(out, /Process \d+ detached/);
        // After the detach it runs on: xenctx now sees other values, so compare what is
        // stable, that both are kernel or user addresses as the mode says (no zeros, no 0xcccc).
        for (const v of [...rips, ...rsps]) assert.ok(v !== 0n && !hex(v).includes('cccccccc'), hex(v));
        assert.doesNotMatch(await xlState(g.xlName), /p/, 'left paused');
      });

      it('registers of a stopped VCPU match xenctx exactly (the guest held with xl pause meanwhile)', async () => {
        // xl pause keeps the guest still across the stub's detach, so xenctx sees what LLDB saw.
        await labExec(`xl pause ${g.xlName}`);
        try {
          const r = await lldbOn(g, ['register read rip rsp rbp', 'thread select 2', 'register read rip rsp rbp', 'process detach']);
          const out = clean(r, `lldb on ${name} (paused)`);
          const vals = (reg: string) => [...out.matchAll(new RegExp(`^\\s*${reg} = (0x[0-9a-f]+)`, 'gm'))].map((m) => BigInt(m[1]));
          for (const v of [0, 1]) {
            const ref = await xenctx(g.domid as number, v);
            assert.strictEqual(vals('rip')[v], ref.rip, `VCPU ${v} rip`);
            assert.strictEqual(vals('rsp')[v], ref.rsp, `VCPU ${v} rsp`);
            assert.strictEqual(vals('rbp')[v], ref.rbp, `VCPU ${v} rbp`);
          }
        } finally {
          await labExec(`xl unpause ${g.xlName}`);
        }
      });

      if (name === 'pv') {
        it('a write watchpoint on jiffies (gdbsx build) stops on the VCPU that wrote it; detach leaves it running', async function () {
          if (readState().xen !== 'gdbsx') this.skip();
          const jiffies = await ksym('jiffies');
          const r = await lldbOn(g, [`watchpoint set expression -w write -s 8 -- ${hex(jiffies)}`, 'process continue', 'thread list', 'watchpoint delete -f', 'process detach']);
          const out = clean(r, 'lldb watchpoint on the PV guest');
          assert.match(out, /Watchpoint created: Watchpoint 1: addr = 0x[0-9a-f]+ size = 8 state = enabled type = w/, out);
          assert.match(out, /stop reason = watchpoint 1/, out);
          assert.match(out, /\* thread #[12]: tid = 0x000[12], .*name = 'VCPU [01]', stop reason = watchpoint 1/, out);
          assert.doesNotMatch(await xlState(g.xlName), /p/, 'left paused');
        });
      }
      if (name === 'pvh') againAfterTripleFault(this, name, (x) => { g = x; });
    });
  }
});
