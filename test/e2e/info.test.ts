// `monitor info` through the real gdb on the simulated Xen: the domain, VCPUs, devices
// and event channels, each section alone, and a session without xenstore.
import assert from 'assert';
import { spawnSync } from 'child_process';
import { startStub, gdbBatch, gdbConnect as connect, Stub } from './harness';
import { collectInfo } from '../../src/info/collect';

describe('monitor info through gdb (simulated Xen)', function () {
  this.timeout(60000);
  let stub: Stub;

  before(function () {
    if (spawnSync('gdb', ['--version']).status !== 0) throw new Error('gdb is not installed (.ci/run installs it: apt-get install gdb)');
  });
  afterEach(async () => {
    await stub?.close();
  });

  /** gdb prints the stub's console output on its stderr: both, together. */
  async function monitor(cmds: string[]): Promise<string> {
    const r = await gdbBatch([...connect(stub), ...cmds.map((c) => `monitor ${c}`), 'detach']);
    assert.strictEqual(r.code, 0, r.stderr);
    return r.stdout + r.stderr;
  }

  it('all four sections: the domain held by gdb (paused, debugged), VCPUs as pinned, devices and ports from xenstore', async () => {
    stub = await startStub({ vcpus: 3, type: 'pvh' });
    stub.sim.setVcpuAffinity(stub.domid, 2, [3], [1, 3]);
    const out = await monitor(['info']);
    const name = stub.sim.domainState(stub.domid).name;
    assert.match(out, new RegExp(`^domain 1 "${name}": PVH 64-bit, uuid ${stub.xc.getDomainInfo(1).handle}, cpupool 0$`, 'm'));
    assert.match(out, /^ {2}state: +\w+, paused, debugged$/m);
    assert.match(out, /^ {2}VCPUs: +3 online of 3$/m);
    assert.match(out, /^ +2 +\w+ +3 +\d+\.\d+ +3 +1,3$/m);
    assert.match(out, /^ +0 +\w+ +0 +\d+\.\d+ +0-3 +0-3$/m);
    const mac = stub.sim.xenstore.read('/local/domain/1/device/vif/0/mac') as string;
    assert.match(out, new RegExp(`^ {6}mac ${mac}, bridge xenbr0,`, 'm'));
    assert.match(out, /^ {6}backend {2}\/local\/domain\/0\/backend\/vbd\/1\/51712$/m);
    assert.match(out, /^ {6}params \/var\/lib\/xen\/images\/demo\.img, type phy, mode w,/m);
    assert.match(out, /^ +4 +interdomain +0 +dom0 port \d+ +vbd 51712$/m);
    assert.match(out, /^ +\d+ +virq +2 +VIRQ_TIMER$/m);
  });

  it('one section at a time, an unknown one refused; a device state change is seen at the next connection', async () => {
    stub = await startStub({ vcpus: 2 });
    const cmds = ['info vcpus', 'info nonsense'];
    const first = await monitor(cmds);
    assert.match(first, /^VCPUs of domain 1$/m);
    assert.doesNotMatch(first, /^devices of domain/m);
    assert.doesNotMatch(first, /^domain 1 "/m);
    assert.match(first, /unknown section 'nonsense'/);
    stub.sim.xenstore.write('/local/domain/0/backend/vbd/1/51712/state', '6');
    const second = await monitor(['info devices']);
    assert.match(second, /^ {2}vbd 51712 \(xvda\): frontend XenbusStateConnected, backend \(dom0\) XenbusStateClosed$/m);
    assert.doesNotMatch(second, /^VCPUs of domain 1$/m);
  });

  it('without xenstore: the domain and VCPUs, and one line saying why there are no devices', async () => {
    stub = await startStub({ vcpus: 2 });
    stub.sim.xenstore.available = false;
    const out = await monitor(['info']);
    assert.match(out, /^domain 1: PV 64-bit/m);
    assert.match(out, /^VCPUs of domain 1$/m);
    assert.match(out, /^devices of domain 1: not known \(the simulated xenstore is switched off\)$/m);
    // Event channels come from Xen: there, without xenstore's names.
    assert.match(out, /^ +1 +interdomain +0 +dom0 port \d+$/m);
  });
});

describe('monitor info evtchn on stock Xen (PVH, monitor ring)', function () {
  this.timeout(60000);
  let stub: Stub;
  afterEach(async () => {
    await stub?.close();
  });

  it('shows the monitor ring\'s Xen port, bound to dom0, while the stub holds the ring; gone after detach', async () => {
    stub = await startStub({ vcpus: 2, type: 'pvh', xen: { gdbsx: false, mtf: true } });
    const r = await gdbBatch([...connect(stub), 'monitor info evtchn', 'detach']);
    assert.strictEqual(r.code, 0, r.stderr);
    const out = r.stdout + r.stderr;
    // An interdomain port to dom0 that xenstore does not name: the ring's (the guest's own are named).
    const unnamed = [...out.matchAll(/^ +(\d+) +interdomain +0 +dom0 port \d+$/gm)].map((m) => Number(m[1]));
    assert.equal(unnamed.length, 1, out);
    assert.ok(!stub.sim.xenstore.read('/local/domain/1/store/port')?.includes(String(unnamed[0])));
    // After detach the stub has torn the ring down: Xen's port is closed (left out).
    const after = await collectInfo(stub.xc, stub.xc.getDomainInfo(1), undefined, { width: 64 });
    assert.ok(!after.eventChannels?.some((e) => e.port === unnamed[0]), JSON.stringify(after.eventChannels));
  });
});
