// `gdbsx serve` in the lab's dom0 (issue 13, "many domains through one port"): one
// stub on the pv guest's port, gdb's `target extended-remote`, `info os processes`
// against `xl list`, attach / detach / attach another guest, `kill` leaving the guest
// running (xl state not paused), `run` and dom0 refused. The pv guest's own stub is
// stopped meanwhile and started again at the end.
// In .ci/run (gdbsx build). Alone: `npx mocha --timeout 1800000 dist/test/xen/serve.xen.js`
// inside the lab lock (see docs/lab.md).
import assert from 'assert';
import { readState, guest, guestDomid, startStub, stopStub, xlStateOf, labClient, LabGuest, LabStub } from '../lab/client';
import { labState } from './labUtil';
import { gdbBatch } from '../e2e/harness';

describe('real Xen: gdbsx serve (extended-remote, many domains)', function () {
  this.timeout(1200000);
  const names = ['pv', 'pvh'];
  let port: number;
  const g: Record<string, LabGuest> = {};
  const domid: Record<string, number> = {};
  let serve: LabStub | undefined;

  before(async function () {
    if (labState()?.status !== 'ready') this.skip();
    const st = readState();
    if (!names.every((n) => st.guests[n])) this.skip();
    for (const n of names) {
      g[n] = guest(n, st);
      domid[n] = await guestDomid(n);
    }
    port = g.pv.stub.port;
    await stopStub('pv');
    serve = await startStub('pv', { cmd: 'node /opt/gdbsx/bin/gdbsx serve --port $PORT --host 0.0.0.0', record: false });
    assert.ok(serve.running, serve.error);
  });

  after(async () => {
    if (!g.pv) return;
    if (serve?.dom0Pid) await labClient().kill(serve.dom0Pid);
    await startStub('pv'); // the pv guest's own stub again, on its port
  });

  const connect = () => ['set pagination off', 'set confirm off', 'set remotetimeout 30', `target extended-remote 127.0.0.1:${port}`];

  it('info os processes lists the guests as xl names them', async () => {
    const r = await gdbBatch([...connect(), 'info os processes'], 300000);
    const out = r.stdout + r.stderr;
    for (const n of names) {
      assert.match(out, new RegExp(`^${domid[n]}\\s+${g[n].xlName}\\s+${g[n].type.toUpperCase()}${g[n].type === 'pv' ? ` ${g[n].width}-bit` : ''}, ${g[n].vcpus} VCPUs?,`, 'm'), out);
    }
    assert.doesNotMatch(out, /^0\s/m, 'dom0 is not offered');
  });

  it('attach pv, threads, detach, attach pvh, kill: both guests run on; run and dom0 refused', async () => {
    const r = await gdbBatch([...connect(), `attach ${domid.pv}`, 'info threads', 'detach', `attach ${domid.pvh}`, 'info threads', 'kill',
      'run', 'attach 0', 'info os processes'], 600000);
    const out = r.stdout + r.stderr;
    assert.match(out, new RegExp(`Thread ${domid.pv}\\.1 "VCPU 0"`), out);
    assert.match(out, new RegExp(`\\[Inferior 1 \\(process ${domid.pv}\\) detached\\]`), out);
    assert.match(out, new RegExp(`Thread ${domid.pvh}\\.1 "VCPU 0"`), out);
    assert.match(out, new RegExp(`\\[Inferior 1 \\(process ${domid.pvh}\\) killed\\]`), out);
    assert.match(out, /Running the default executable on the remote target failed/, out);
    assert.match(out, /Attaching to process 0 failed/, out);
    assert.doesNotMatch(out, /Remote connection closed/, out);
    for (const n of names) {
      const state = await xlStateOf(g[n].xlName);
      assert.doesNotMatch(state, /[psc]/, `${n} after kill/detach: xl state '${state}'`);
    }
  });
});
