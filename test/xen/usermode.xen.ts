// A guest stopped while its VCPUs run user code (both hypervisor builds, PV and PVH
// Linux guests). The lab's guests run one process per VCPU, pinned to it, spinning in
// user mode with its own string at the same user address (state: guest.userWorkload;
// test/lab/guest/userspin.c). Through gdb: each VCPU is seen in user mode, kernel memory
// is read by symbol from there, the user address reads the string of the process on the
// selected thread's VCPU, `monitor translate` shows the page walk, `monitor cr3` each
// VCPU's cr3; detach leaves the guest running.
import assert from 'assert';
import { readState, guest, xlStateOf, recreateGuest, LabGuest } from '../lab/client';
import { MiClient } from '../e2e/harness';
import {
  installXenctx, xenctx, ksym, hex, miConnect, miDetach, miConsole, miEval, miContinueInterrupt,
  vcpusNotRunning, jiffies,
  labState,
  againAfterTripleFault,
} from './labUtil';
import { sleep } from '../e2e/harness';

const TRIES = 30;

/** Lower-half (user) addresses on x86_64. */
const USER_TOP = 0x0000800000000000n;

describe('real Xen: VCPUs stopped in user mode', function () {
  this.timeout(900000);

  before(async function () {
    const st = labState();
    if (st?.status !== 'ready') this.skip();
    await installXenctx();
  });

  for (const name of ['pv', 'pvh']) {
    describe(name, function () {
      let g: LabGuest;
      let mi: MiClient | null = null;

      before(async function () {
        const st = readState();
        if (!st.guests[name]?.userWorkload) this.skip();
        g = guest(name);
        const state = await xlStateOf(g.xlName);
        if (state === '' || /[sc]/.test(state)) {
          process.stderr.write(`      (${name} was found shut down (xl state '${state}'): created again)\n`);
          g = await recreateGuest(name);
        }
        assert.ok(g.stub.running, `the stub for ${name} is not running: ${g.stub.error ?? ''}`);
      });

      afterEach(async () => {
        // never leave gdb attached (the stub takes one at a time) nor the guest stopped
        if (mi) {
          try { await miDetach(mi); } catch { mi.kill(); }
          mi = null;
        }
      });

      /** Is thread t (VCPU t-1) in user mode: CPL 3 and a lower-half pc. (A 64-bit PV
       * kernel runs in ring 3 too, so the pc tells its kernel from its user space.) */
      async function inUser(m: MiClient, t: number): Promise<boolean> {
        const cpl = Number(await miEval(m, '$cs & 3', t));
        const pc = BigInt(await miEval(m, '(unsigned long)$pc', t));
        return cpl === 3 && pc < USER_TOP;
      }

      /** Stop the guest with the given threads in user mode (continue + Ctrl-C until so). */
      async function stopInUser(m: MiClient, threads: number[]): Promise<number> {
        for (let i = 0; i < TRIES; i++) {
          const user = await Promise.all(threads.map((t) => inUser(m, t)));
          if (user.every(Boolean)) return i;
          await miContinueInterrupt(m, 700 + 100 * (i % 10));
        }
        assert.fail(`threads ${threads.join(', ')} of ${name} not all in user mode after ${TRIES} stops`);
      }

      /** x/s at the workload's address on thread t; the string gdb printed. */
      async function userString(m: MiClient, t: number): Promise<string> {
        const sel = await miConsole(m, `thread ${t}`);
        assert.strictEqual(sel.cls, 'done', sel.text);
        const r = await miConsole(m, `x/s ${g.userWorkload?.address}`);
        assert.strictEqual(r.cls, 'done', `x/s ${g.userWorkload?.address} on thread ${t}: ${r.text} ${r.out}`);
        const s = /:\s+"((?:[^"\\]|\\.)*)"/.exec(r.out);
        assert.ok(s, r.out);
        return s[1];
      }

      it('attached stopped, thread 1 is seen in user mode (CPL 3), and its cs/pc agree with xenctx', async () => {
        mi = await miConnect(g);
        const tries = await stopInUser(mi, [1]);
        const pc = BigInt(await miEval(mi, '(unsigned long)$pc', 1));
        const ref = await xenctx(g.domid as number, 0);
        assert.strictEqual(pc, ref.rip, 'gdb and xenctx agree on VCPU 0 rip');
        assert.ok(pc < USER_TOP, `user pc ${hex(pc)}`);
        process.stderr.write(`      (${name}: VCPU 0 in user mode at ${hex(pc)} after ${tries} extra stop(s))\n`);
      });

      it('from user mode: kernel memory by symbol (linux_banner); each thread reads its own process at the same user address', async () => {
        const w = g.userWorkload;
        assert.ok(w);
        const banner = await ksym('linux_banner');
        mi = await miConnect(g);
        let last = '';
        for (let i = 0; i < TRIES; i++) {
          await stopInUser(mi, [1, 2]);
          const b = await miConsole(mi, `x/s ${hex(banner)}`);
          assert.strictEqual(b.cls, 'done', b.text);
          assert.match(b.out, /"Linux version 6\.1/, `linux_banner read with VCPU 0 in user mode: ${b.out}`);
          const s2 = await userString(mi, 2);
          const s1 = await userString(mi, 1);
          // Another user process can run on a VCPU now and then (the guest's init
          // shell): each string must be the workload's own; retry if one is a stranger's.
          last = `thread 1: "${s1}", thread 2: "${s2}"`;
          if (s1 === w.strings[0] && s2 === w.strings[1]) return;
          assert.ok(!w.strings.includes(s1) || s1 === w.strings[0], `thread 1 (VCPU 0) read VCPU 1's process: ${last}`);
          assert.ok(!w.strings.includes(s2) || s2 === w.strings[1], `thread 2 (VCPU 1) read VCPU 0's process: ${last}`);
          await miContinueInterrupt(mi, 1500);
        }
        assert.fail(`never read both workload strings (${TRIES} stops); last: ${last}`);
      });

      it('monitor translate shows the page walk of the user address; monitor cr3 lists each VCPU\'s cr3', async () => {
        const w = g.userWorkload;
        assert.ok(w);
        mi = await miConnect(g);
        await stopInUser(mi, [1]);
        const sel = await miConsole(mi, 'thread 1');
        assert.strictEqual(sel.cls, 'done', sel.text);
        const tr = await miConsole(mi, `monitor translate ${w.address}`);
        assert.strictEqual(tr.cls, 'done', `monitor translate: ${tr.text} ${tr.out}`);
        assert.match(tr.out, /L4|level/i, `a per-level walk: ${tr.out}`);
        assert.ok(tr.out.split('\n').filter((l) => /L[1-4]|level\s*[1-4]/i.test(l)).length >= 4, `four levels: ${tr.out}`);
        assert.match(tr.out, /(frame|[gmp]fn|phys|maddr|gpa)\b[^\n]*(0x)?[0-9a-f]{3,}/i, `the frame of ${w.address}: ${tr.out}`);
        const cr = await miConsole(mi, 'monitor cr3');
        assert.strictEqual(cr.cls, 'done', `monitor cr3: ${cr.text} ${cr.out}`);
        const lines = cr.out.split('\n').filter((l) => /cr3/i.test(l) || /(vcpu|thread)\s*\d/i.test(l));
        for (let v = 0; v < g.vcpus; v++) {
          const cr3 = BigInt(await miEval(mi, '(unsigned long)$cr3', v + 1));
          const line = lines.find((l) => new RegExp(`(vcpu\\s*${v}|thread\\s*${v + 1})\\b`, 'i').test(l));
          assert.ok(line, `a line for VCPU ${v} in: ${cr.out}`);
          const values = [...line.matchAll(/(?:0x)?([0-9a-f]{4,16})\b/gi)].map((m) => BigInt('0x' + m[1]));
          assert.ok(values.includes(cr3), `VCPU ${v}'s cr3 ${hex(cr3)} in "${line}"`);
        }
      });

      it('detach leaves it running: no VCPU paused, jiffies advance', async () => {
        mi = await miConnect(g);
        await stopInUser(mi, [1]);
        await miDetach(mi);
        mi = null;
        assert.doesNotMatch(await xlStateOf(g.xlName), /[pc]/, 'not paused, not crashed');
        assert.deepStrictEqual(await vcpusNotRunning(g.xlName), [], 'every VCPU runs (the workload spins on each)');
        const j0 = await jiffies(g);
        await sleep(2000);
        assert.ok((await jiffies(g)) > j0, 'jiffies advance');
      });
      if (name === 'pvh') againAfterTripleFault(this, name, (x) => { g = x; });
    });
  }
});
