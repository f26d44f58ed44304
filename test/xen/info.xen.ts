// `gdbsx info` and `monitor info` in the lab's dom0 against real Xen guests, each view
// compared with what Xen's own tools say: xl list/vcpu-list/info for the domain and
// VCPUs, xenstore-read/xenstore-list for the devices (the lab's guests have the primary
// console and the xenstore ring; no vif or vbd), through xenstored's socket and through
// /dev/xen/xenbus (both transports), the event channels by EVTCHNOP_status against
// xenstore's ports, and the refusals (dom0, a domain that is not there).
// In .ci/run (gdbsx build). Alone: `npx mocha --timeout 1800000 dist/test/xen/info.xen.js`
// inside the lab lock (see docs/lab.md).
import assert from 'assert';
import { readState, labExec, guest, guestDomid, LabGuest } from '../lab/client';
import { labState, gdbOn, liveGuest, againAfterTripleFault } from './labUtil';
import type { InfoView } from '../../src/info/collect';

const GDBSX = 'node /opt/gdbsx/bin/gdbsx';

async function info(domid: number, extra = ''): Promise<InfoView> {
  const r = await labExec(`${GDBSX} info ${domid} --json ${extra}`, { timeoutMs: 120000 });
  assert.strictEqual(r.code, 0, r.stdout + r.stderr);
  return JSON.parse(r.stdout) as InfoView;
}

async function xsRead(path: string): Promise<string> {
  const r = await labExec(`xenstore-read ${path}`);
  assert.strictEqual(r.code, 0, `xenstore-read ${path}: ${r.stderr}`);
  return r.stdout.trim();
}

/** dom0's physical CPUs (`xl info` nr_cpus). */
async function nrCpus(): Promise<number> {
  const r = await labExec('xl info');
  const m = /^nr_cpus\s*:\s*(\d+)/m.exec(r.stdout);
  assert.ok(m, r.stdout);
  return Number(m[1]);
}

describe('real Xen: gdbsx info and monitor info', function () {
  this.timeout(1200000);

  before(function () {
    if (labState()?.status !== 'ready') this.skip();
  });

  for (const name of ['pv', 'pvh', 'testkernel64']) {
    describe(name, function () {
      let g: LabGuest;
      let domid: number;

      before(async function () {
        if (!readState().guests[name]) this.skip();
        g = await liveGuest(name);
        domid = await guestDomid(name);
      });

      it('the domain: name, type, width, VCPUs and memory as xl and xenstore have them', async () => {
        const v = await info(domid);
        assert.strictEqual(v.domain.domid, domid);
        assert.strictEqual(v.domain.name, g.xlName);
        assert.strictEqual(v.domain.type, g.type.toUpperCase());
        assert.strictEqual(v.domain.width, g.width);
        assert.strictEqual(v.domain.vcpusMax, g.vcpus);
        assert.strictEqual(v.domain.memory.staticMaxKiB, Number(await xsRead(`/local/domain/${domid}/memory/static-max`)));
        assert.strictEqual(v.domain.memory.targetKiB, Number(await xsRead(`/local/domain/${domid}/memory/target`)));
        assert.ok(v.domain.memory.currentKiB > 0 && v.domain.memory.currentKiB <= v.domain.memory.maxKiB, JSON.stringify(v.domain.memory));
        const xl = (await labExec(`xl list -v ${g.xlName}`)).stdout;
        assert.match(xl, new RegExp(v.domain.uuid), xl);
        assert.strictEqual(v.domain.dying, false);
        assert.strictEqual(v.domain.shutdown, false);
      });

      it('each VCPU: online, on a physical CPU its affinity allows, CPU time growing; affinity as xl vcpu-list shows it', async () => {
        const n = await nrCpus();
        const a = await info(domid, 'vcpus');
        await new Promise((r) => setTimeout(r, 2000));
        const b = await info(domid, 'vcpus');
        assert.strictEqual(a.vcpus.length, g.vcpus);
        const xl = (await labExec(`xl vcpu-list ${g.xlName}`)).stdout;
        for (const v of b.vcpus) {
          assert.notStrictEqual(v.state, 'offline');
          assert.ok(v.cpu !== undefined && v.cpu < n && v.hardAffinity.includes(v.cpu), JSON.stringify(v));
          // xl vcpu-list: "all" where every CPU is allowed, else the list.
          const row = xl.split('\n').map((l) => l.trim().split(/\s+/)).find((f) => f[0] === g.xlName && f[2] === String(v.vcpu));
          assert.ok(row, xl);
          const hard = row[6];
          if (hard === 'all') assert.deepStrictEqual(v.hardAffinity, [...Array(n).keys()]);
          else assert.strictEqual(v.hardAffinity.join(','), hard);
        }
        assert.ok(b.vcpus.some((v, i) => v.cpuTimeSeconds > a.vcpus[i].cpuTimeSeconds), 'no VCPU ran in 2 s');
      });

      it('devices and event channels: the console and the xenstore ring, as xenstore-read has them; the same through /dev/xen/xenbus', async () => {
        const v = await info(domid);
        const con = v.devices?.find((d) => d.kind === 'console');
        assert.ok(con, JSON.stringify(v.devices));
        assert.strictEqual(con.frontend.path, `/local/domain/${domid}/console`);
        assert.strictEqual(con.backend?.path, await xsRead(`/local/domain/${domid}/console/backend`));
        assert.strictEqual(con.frontend.keys.port, await xsRead(`/local/domain/${domid}/console/port`));
        const kinds = (await labExec(`xenstore-list /local/domain/${domid}/device`)).stdout.split('\n').filter(Boolean).sort();
        assert.deepStrictEqual([...new Set(v.devices?.filter((d) => d.frontend.path.includes('/device/')).map((d) => d.kind))].sort(), kinds);
        // Event channels from Xen (EVTCHNOP_status), named from xenstore: the xenstore and
        // console rings are bound to dom0 (xenstored, xenconsoled); a Linux guest has a timer VIRQ per VCPU.
        assert.strictEqual(v.eventChannelsFrom, 'EVTCHNOP_status', v.eventChannelsNote);
        for (const [use, key] of [['xenstore ring', 'store/port'], ['console', 'console/port']]) {
          const e = v.eventChannels?.find((x) => x.use === use);
          assert.ok(e, `${use}: ${JSON.stringify(v.eventChannels)}`);
          assert.strictEqual(String(e.port), await xsRead(`/local/domain/${domid}/${key}`));
          assert.strictEqual(e.status, 'interdomain', JSON.stringify(e));
          assert.strictEqual(e.remoteDomid, 0);
        }
        if (name !== 'testkernel64') {
          const timers = v.eventChannels?.filter((e) => e.virq === 'VIRQ_TIMER').map((e) => e.vcpu).sort();
          assert.deepStrictEqual(timers, [...Array(g.vcpus).keys()], JSON.stringify(v.eventChannels));
        }
        // The other transport gives the same tree.
        const dev = await info(domid, '--xenstore /dev/xen/xenbus');
        assert.deepStrictEqual(dev.devices, v.devices);
        assert.deepStrictEqual(dev.eventChannels, v.eventChannels);
      });

      it('monitor info through the guest\'s stub: the domain held by gdb, its VCPUs and its console', async () => {
        const r = await gdbOn(g, ['monitor info'], 300000);
        assert.strictEqual(r.code, 0, r.stderr);
        const out = r.stdout + r.stderr;
        assert.match(out, new RegExp(`^domain ${domid} "${g.xlName}": ${g.type.toUpperCase()} ${g.width}-bit`, 'm'), out);
        assert.match(out, /^ {2}state: +\w+, paused, /m);
        assert.match(out, /^VCPUs of domain \d+$/m);
        assert.match(out, new RegExp(`^ {2}console 0: frontend .*, backend \\(dom0\\) XenbusState\\w+$`, 'm'), out);
      });
      if (name !== 'pv') againAfterTripleFault(this, name, (x) => { g = x; domid = x.domid as number; });
    });
  }

  it('refuses dom0 and a domain that does not exist, with one line and status 1', async () => {
    for (const [id, re] of [[0, /dom0 is the control domain/], [7777, /domain 7777 does not exist/]] as const) {
      const r = await labExec(`${GDBSX} info ${id}`);
      assert.strictEqual(r.code, 1, r.stdout + r.stderr);
      assert.strictEqual(r.stdout, '');
      assert.strictEqual(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, re);
    }
  });
});
