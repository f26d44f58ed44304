// Faults and soak on a real Xen (the lab's PV guest, where int3 traps to Xen):
// the connection dropped while stopped at breakpoints and while running leaves the
// guest running with its memory as before; a thousand continue -> breakpoint -> step
// cycles lose no stop.
import assert from 'assert';
import { readState, labExec, guest, xlStateOf, LabGuest } from '../lab/client';
import { RspClient } from '../support/rspClient';
import { frame } from '../../src/gx/packet';
import { sleep } from '../e2e/harness';

const CYCLES = Number(process.env.LAB_SOAK_CYCLES ?? 1000);

async function sym(name: string): Promise<string> {
  const addr = (await labExec(`grep ' ${name}$' /proc/kallsyms`)).stdout.trim().split(/\s+/)[0];
  assert.match(addr, /^[0-9a-f]{16}$/, name);
  return addr;
}

function session(g: LabGuest): Promise<RspClient> {
  return RspClient.session(g.stub.port, 60000);
}

async function paused(g: LabGuest): Promise<boolean> {
  return /p/.test(await xlStateOf(g.xlName));
}

describe('real Xen: faults and soak (PV guest)', function () {
  this.timeout(1800000);
  let g: LabGuest;
  const sites: Record<string, string> = {};

  before(async function () {
    const st = readState();
    if (st.status !== 'ready' || st.xen !== 'gdbsx' || !st.guests.pv) this.skip();
    g = guest('pv');
    for (const f of ['__schedule', 'xen_safe_halt', 'ktime_get']) sites[f] = await sym(f);
  });

  async function original(): Promise<string> {
    const c = await session(g);
    const bytes = await Promise.all(Object.values(sites).map((a) => c.request(`m${a},10`, 60000)));
    c.close();
    await sleep(500);
    return bytes.join(' ');
  }

  it('dropping the connection at a breakpoint, and while running, restores everything', async () => {
    const before = await original();
    for (const running of [false, true]) {
      const c = await session(g);
      for (const a of Object.values(sites)) assert.strictEqual(await c.request(`Z0,${a},1`, 60000), 'OK');
      assert.match(await c.request('vCont;c', 300000), /^T05swbreak/);
      if (running) {
        for (const a of Object.values(sites)) await c.request(`z0,${a},1`, 60000);
        await c.request(`Z0,${sites.__schedule},1`, 60000);
        c.writeRaw(frame(Buffer.from('vCont;s:1'))); // mid-step, then gone
      }
      c.close();
      await sleep(2000);
      assert.strictEqual(await paused(g), false, `left paused (${running ? 'dropped mid-step' : 'dropped at a breakpoint'})`);
      assert.strictEqual(await original(), before, 'our int3 left in memory');
    }
  });

  it(`${CYCLES} continue -> breakpoint -> step cycles, no stop lost`, async () => {
    const c = await session(g);
    const bp = sites.__schedule;
    const t0 = Date.now();
    // While a debugger is attached Xen reports every guest-kernel int3 to it, Linux's
    // own too: the lab guests flip a tracepoint's static key every 50 ms (live code
    // patching, int3s across the VCPUs). The guest handles those itself: every stop
    // here must be our breakpoint.
    try {
      for (let i = 0; i < CYCLES; i++) {
        assert.strictEqual(await c.request(`Z0,${bp},1`, 60000), 'OK');
        const stop = await c.request('vCont;c', 120000);
        const m = /^T05swbreak:;thread:p[0-9a-f]+\.(\d+);/.exec(stop);
        assert.ok(m, `cycle ${i}: not our breakpoint: ${stop}`);
        assert.strictEqual(await c.request(`z0,${bp},1`, 60000), 'OK');
        assert.match(await c.request(`vCont;s:p${g.domid?.toString(16)}.${m[1]}`, 120000), new RegExp(`^T05thread:p[0-9a-f]+\\.${m[1]};`), `cycle ${i}`);
      }
    } catch (e) {
      c.close(); // the suites after this one attach to the same stub
      throw e;
    }
    const perCycle = (Date.now() - t0) / CYCLES;
    // monitor xen: console packets, then OK
    c.writeRaw(frame(Buffer.from(`qRcmd,${Buffer.from('xen').toString('hex')}`)));
    let handled = '';
    for (let p = await c.readPacket(60000); p !== 'OK'; p = await c.readPacket(60000)) handled += Buffer.from(p.slice(1), 'hex').toString();
    const bursts = /guest int3s handled by the guest: (\d+)/.exec(handled)?.[1] ?? '?';
    assert.strictEqual(await c.request('D', 60000), 'OK');
    c.close();
    await sleep(1000);
    assert.strictEqual(await paused(g), false);
    process.stderr.write(`      (${CYCLES} cycles, ${perCycle.toFixed(1)} ms each; the guest's own int3s met meanwhile, handled by the guest: ${bursts})\n`);
    const stub = await labExec(`ps -o pid,rss,args | grep 'gdbsx -a' | grep -v grep; ls /proc/${g.stub.dom0Pid}/fd 2>/dev/null | wc -l`);
    process.stderr.write(`      stub in dom0 after the soak: ${stub.stdout.trim().replace(/\n/g, ' | ')}\n`);
  });

  // gdb with `set scheduler-locking on`: only VCPU 0 runs (vCont with one action), and
  // ktime_get is hit again right away from its timer interrupt. Xen's CPU time did not
  // always show such a quick trap, and the stub undid its pause: the guest died with
  // #UD at ktime_get+1 within 10-400 cycles (fixed; test/sim/unpauseRace.test.ts).
  // VCPU 1 stays held all along, so VCPU 0 can end up waiting for it (a lock VCPU 1
  // holds: Linux's PV spinlock then blocks VCPU 0 in SCHEDOP_poll, and no timer wakes
  // it), as it would for a gdb user: such a continue is ended with Ctrl-C, all VCPUs
  // run for a moment, and the cycles go on. A lost stop would look the same from here,
  // so Xen's view of VCPU 0 is taken first, and such waits must stay rare.
  it('300 scheduler-locked continue -> breakpoint -> step cycles stop on the breakpoint every time', async () => {
    const c = await session(g);
    const waits: string[] = [];
    try {
      const bp = sites.ktime_get;
      const bpLE = Buffer.from(bp, 'hex').reverse().toString('hex');
      const t = `p${g.domid?.toString(16)}.1`;
      for (let i = 0; i < 300; i++) {
        assert.strictEqual(await c.request(`Z0,${bp},1`, 60000), 'OK');
        let vcpus = '';
        let stop = await c.request(`vCont;c:${t}`, 30000).catch((e: Error) => {
          if (!/timed out/.test(e.message)) throw e;
          return '';
        });
        if (stop === '') {
          vcpus = (await labExec(`xl vcpu-list ${g.xlName}`)).stdout.trim().split('\n').slice(1).map((l) => l.trim().replace(/\s+/g, ' ')).join(' | ');
          c.writeRaw(Buffer.from([3]));
          stop = await c.readPacket(60000);
        }
        if (!stop.startsWith('T05')) {
          // No stop for 30 s: the Ctrl-C stopped it.
          assert.match(stop, /^T02/, `cycle ${i}: Ctrl-C after a continue with no stop for 30 s: ${stop}`);
          waits.push(`cycle ${i}: ${vcpus}`);
          // Everyone runs for a moment (VCPU 1 lets go of what VCPU 0 waits for), then on.
          assert.strictEqual(await c.request(`z0,${bp},1`, 60000), 'OK');
          c.writeRaw(frame(Buffer.from('vCont;c')));
          await sleep(300);
          c.writeRaw(Buffer.from([3]));
          assert.match(await c.readPacket(60000), /^T/);
          assert.ok(waits.length <= 30, `VCPU 0 waited on the held VCPU 1 in ${waits.length} cycles:\n${waits.join('\n')}`);
          continue;
        }
        // The guest's own int3s (the static key flipping, as in the soak above) never show.
        assert.match(stop, /^T05swbreak:;thread:p[0-9a-f]+\.1;/, `cycle ${i}: ${stop}`);
        assert.ok(stop.includes(`;10:${bpLE};`), `cycle ${i}: pc is not the breakpoint: ${stop}`);
        assert.strictEqual(await c.request(`z0,${bp},1`, 60000), 'OK');
        assert.match(await c.request(`vCont;s:${t}`, 120000), /^T05thread:p[0-9a-f]+\.1;/, `cycle ${i}`);
      }
      assert.strictEqual(await c.request('D', 60000), 'OK');
    } finally {
      // Never leave the stub's session open: the suites after this one attach to the same stub.
      c.close();
    }
    if (waits.length) process.stderr.write(`      (VCPU 0 waited on the held VCPU 1, ended with Ctrl-C: ${waits.join('; ')})\n`);
    await sleep(1000);
    const state = await xlStateOf(g.xlName);
    assert.doesNotMatch(state, /c/, `the guest crashed (xl state ${state})`);
    assert.doesNotMatch(state, /p/, 'the guest was left paused');
  });
});
