// gdbsx info: the view collected from a simulated Xen as its state changes (in process),
// and the command line as a user runs it (text, --json, bad input).
import { strict as assert } from 'assert';
import { execFile } from 'child_process';
import path from 'path';
import { XenControl } from '../../src/xg/xenctl';
import { XsClient } from '../../src/xs/client';
import { collectInfo, InfoView } from '../../src/info/collect';
import { infoText } from '../../src/info/format';
import { startSimDemo } from '../../src/simDemo';
import { SimXen } from '../../src/xg/sim';

const BIN = path.resolve(__dirname, '..', '..', '..', 'bin', 'gdbsx');

interface Run { code: number | null; stdout: string; stderr: string }

function run(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, 'info', ...args], { timeout: 60000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr });
    });
  });
}

describe('gdbsx info: the view of a simulated domain', () => {
  let sim: SimXen;
  let xc: XenControl;
  let close: () => void;
  const view = async (): Promise<InfoView> => collectInfo(xc, xc.getDomainInfo(1), new XsClient(await sim.xenstore.transport()));

  beforeEach(() => {
    const demo = startSimDemo({ domid: 1, vcpus: 3, width: 64, type: 'pvh', xen: { autoRun: false } });
    sim = demo.sim;
    close = demo.close;
    xc = new XenControl(demo.hc);
  });
  afterEach(() => close());

  it('domain: name and uuid from xenstore and getdomaininfo, PVH from the emulation flags, memory, flags', async () => {
    for (let i = 0; i < 3; i++) sim.runSlice();
    xc.pauseDomain(1);
    const v = await view();
    const st = sim.domainState(1);
    assert.equal(v.domain.name, st.name);
    assert.equal(v.domain.type, 'PVH');
    assert.equal(v.domain.width, 64);
    assert.equal(v.domain.paused, true);
    assert.equal(v.domain.shutdown, false);
    assert.equal(v.domain.vcpusMax, 3);
    assert.equal(v.domain.memory.currentKiB, 64 * 1024);
    assert.equal(v.domain.memory.targetKiB, Number(sim.xenstore.read('/local/domain/1/memory/target')));
    assert.equal(v.domain.uuid, xc.getDomainInfo(1).handle);
    assert.equal(sim.xenstore.read(`${sim.xenstore.read('/local/domain/1/vm')}/uuid`), v.domain.uuid);
    // CPU time: the simulated CPUs retire one instruction per ns.
    const instructions = st.instructions.reduce((a, b) => a + b, 0);
    assert.ok(instructions > 0);
    assert.equal(Math.round(v.domain.cpuTimeSeconds * 1e9), instructions);
    sim.shutdownDomain(1, 'crash', 'test');
    const after = await view();
    assert.equal(after.domain.shutdown, true);
    assert.equal(after.domain.shutdownReason, 'crash');
    assert.match(infoText(after, ['domain']), /state: +\w+, paused, shut down \(crash\)/);
  });

  it('VCPUs: state, physical CPU, CPU time and affinity as pinned', async () => {
    sim.setVcpuAffinity(1, 1, [2], [1, 2]);
    sim.setVcpuAffinity(1, 2, [0, 1, 3], undefined);
    sim.runSlice();
    const v = await view();
    assert.deepEqual(v.vcpus.map((c) => c.hardAffinity), [[0, 1, 2, 3], [2], [0, 1, 3]]);
    assert.deepEqual(v.vcpus.map((c) => c.softAffinity), [[0, 1, 2, 3], [1, 2], [0, 1, 2, 3]]);
    assert.deepEqual(v.vcpus.map((c) => c.cpu), [0, 2, 0]);
    const st = sim.domainState(1);
    v.vcpus.forEach((c, i) => {
      assert.equal(Math.round(c.cpuTimeSeconds * 1e9), st.instructions[i]);
      assert.equal(c.state, st.halted[i] ? 'blocked' : 'running');
    });
    const text = infoText(v, ['vcpus']);
    assert.match(text, /^ +1 +\w+ +2 +\d+\.\d+ +2 +1-2$/m);
    assert.match(text, /^ +2 +\w+ +0 +\d+\.\d+ +0-1,3 +0-3$/m);
  });

  it('devices: frontend and backend paths, states by name, MAC, bridge, disk; they follow xenstore', async () => {
    sim.xenstore.write('/local/domain/0/backend/vif/1/0/state', '5');
    sim.xenstore.write('/local/domain/1/device/vif/0/state', '6');
    const v = await view();
    const vif = v.devices?.find((d) => d.kind === 'vif');
    assert.ok(vif, JSON.stringify(v.devices));
    assert.equal(vif.frontend.path, '/local/domain/1/device/vif/0');
    assert.equal(vif.frontend.stateName, 'XenbusStateClosed');
    assert.equal(vif.backend?.path, '/local/domain/0/backend/vif/1/0');
    assert.equal(vif.backend?.stateName, 'XenbusStateClosing');
    assert.equal(vif.details.mac, sim.xenstore.read('/local/domain/1/device/vif/0/mac'));
    assert.equal(vif.details.bridge, 'xenbr0');
    const vbd = v.devices?.find((d) => d.kind === 'vbd');
    assert.equal(vbd?.details.params, sim.xenstore.read('/local/domain/0/backend/vbd/1/51712/params'));
    assert.equal(vbd?.backend?.stateName, 'XenbusStateConnected');
    assert.ok(v.devices?.some((d) => d.kind === 'console' && d.frontend.path === '/local/domain/1/console'));
    // Named by xenstore where it names them (store/port, console/port, the devices' event-channel).
    assert.equal(v.eventChannelsFrom, 'EVTCHNOP_status');
    const named = v.eventChannels?.filter((e) => e.use).map((e) => [e.port, e.use, e.status, e.remoteDomid]);
    assert.deepEqual(named, [[1, 'xenstore ring', 'interdomain', 0], [2, 'console', 'interdomain', 0], [3, 'vif 0', 'interdomain', 0], [4, 'vbd 51712', 'interdomain', 0]]);
    assert.equal(String(v.eventChannels?.find((e) => e.use === 'vif 0')?.port), sim.xenstore.read('/local/domain/1/device/vif/0/event-channel'));
    // A device added later is seen.
    sim.xenstore.write('/local/domain/1/device/vkbd/0/backend', '/local/domain/0/backend/vkbd/1/0');
    sim.xenstore.write('/local/domain/1/device/vkbd/0/state', '1');
    const again = await view();
    assert.equal(again.devices?.find((d) => d.kind === 'vkbd')?.frontend.stateName, 'XenbusStateInitialising');
    assert.match(infoText(again, ['devices']), /^ {2}vkbd 0: frontend XenbusStateInitialising, backend \(dom\?\) has no state$/m);
  });

  it('event channels: every bound port by EVTCHNOP_status (a timer VIRQ per VCPU), closed ones left out', async () => {
    const v = await view();
    const timers = v.eventChannels?.filter((e) => e.status === 'virq' && e.virq === 'VIRQ_TIMER').map((e) => e.vcpu);
    assert.deepEqual(timers, [0, 1, 2]);
    assert.ok(v.eventChannels?.every((e) => e.status !== 'closed'));
    // Each entry is what Xen answers for that port.
    for (const e of v.eventChannels ?? []) {
      const s = xc.evtchnStatus(1, e.port);
      assert.equal(e.status, s?.status);
      assert.equal(e.remotePort, s?.remotePort);
    }
    // Past the table: EINVAL, seen as the end.
    assert.equal(xc.evtchnStatus(1, 64), undefined);
    assert.match(infoText(v, ['evtchn']), /^ +1 +interdomain +0 +dom0 port \d+ +xenstore ring$/m);
    assert.match(infoText(v, ['evtchn']), /^ +\d+ +virq +2 +VIRQ_TIMER$/m);
  });

  it('a hypervisor transport without event_channel_op: the ports xenstore names, and why', async () => {
    const bare = new XenControl(new Proxy(sim, { get: (t, k) => (k === 'eventChannelOp' ? undefined : Reflect.get(t, k, t)) }));
    const v = await collectInfo(bare, bare.getDomainInfo(1), new XsClient(await sim.xenstore.transport()));
    assert.equal(v.eventChannelsFrom, 'xenstore');
    assert.deepEqual(v.eventChannels?.map((e) => e.port), [1, 2, 3, 4]);
    assert.match(infoText(v, ['evtchn']), /^event channels of domain 1 named in xenstore \(EVTCHNOP_status: .*no event_channel_op.*\)/m);
  });

  it('without xenstore: the domctl parts, and why the rest is missing', async () => {
    const v = await collectInfo(xc, xc.getDomainInfo(1), undefined, { xsError: 'no xenstore here' });
    assert.equal(v.devices, undefined);
    assert.equal(v.vcpus.length, 3);
    assert.match(infoText(v), /^devices of domain 1: not known \(no xenstore here\)$/m);
  });
});

describe('gdbsx info (command line, simulated Xen)', function () {
  this.timeout(60000);

  it('text: the four sections', async () => {
    const r = await run(['--sim', '1']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    assert.match(r.stdout, /^domain 1 "demo": PV 64-bit, uuid [0-9a-f-]{36}, cpupool 0$/m);
    assert.match(r.stdout, /^ {2}VCPU +state +CPU +time \(s\) +hard affinity +soft affinity$/m);
    assert.match(r.stdout, /^ {2}vif 0: frontend XenbusStateConnected, backend \(dom0\) XenbusStateConnected$/m);
    assert.match(r.stdout, /^ {6}mac 00:16:3e:00:01:01, bridge xenbr0,/m);
    assert.match(r.stdout, /^ {2}vbd 51712 \(xvda\): /m);
    assert.match(r.stdout, /^ +3 +interdomain +0 +dom0 port \d+ +vif 0$/m);
  });

  it('--json: parses, and its fields are the simulated domain\'s', async () => {
    const r = await run(['--sim', '1', '--json', '--sim-vcpus', '3', '--sim-type', 'pvh']);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout) as InfoView;
    // The same domain built here: the simulated Xen is deterministic in everything but time.
    const demo = startSimDemo({ domid: 1, vcpus: 3, width: 64, type: 'pvh', xen: { autoRun: false } });
    try {
      const xc = new XenControl(demo.hc);
      const info = xc.getDomainInfo(1);
      assert.equal(j.domain.domid, 1);
      assert.equal(j.domain.name, demo.sim.domainState(1).name);
      assert.equal(j.domain.uuid, info.handle);
      assert.equal(j.domain.type, 'PVH');
      assert.equal(j.domain.memory.currentKiB, Number(info.totPages) * 4);
      assert.equal(j.vcpus.length, 3);
      for (const v of j.vcpus) assert.deepEqual(v.hardAffinity, [...Array(demo.sim.pcpus).keys()]);
      const vif = j.devices?.find((d) => d.kind === 'vif');
      assert.equal(vif?.frontend.keys.mac, demo.sim.xenstore.read('/local/domain/1/device/vif/0/mac'));
      assert.equal(vif?.backend?.keys.bridge, demo.sim.xenstore.read('/local/domain/0/backend/vif/1/0/bridge'));
      assert.equal(vif?.backend?.state, 4);
      assert.ok(j.eventChannels?.some((e) => e.use === 'vbd 51712' && e.status === 'interdomain'));
      assert.equal(j.eventChannelsFrom, 'EVTCHNOP_status');
    } finally {
      demo.close();
    }
    // One section asked: the domain and that one.
    const only = JSON.parse((await run(['--sim', '1', 'vcpus', '--json'])).stdout) as Record<string, unknown>;
    assert.deepEqual(Object.keys(only).sort(), ['domain', 'vcpus']);
  });

  for (const [what, args, code, re] of [
    ['no such domain', ['--sim', '5'], 1, /^gdbsx info: domain 5 does not exist/],
    ['dom0', ['--sim', '0'], 1, /^gdbsx info: dom0 is the control domain/],
    ['a missing xenstore', ['--sim', '1', '--xenstore', '/nonexistent/xenstored/socket'], 1, /^gdbsx info: no xenstore at \/nonexistent\/xenstored\/socket/],
    ['a xenstore that does not answer as one', ['--sim', '1', '--xenstore', '/dev/null'], 1, /^gdbsx info: cannot read domain 1's xenstore entries: .*end of file/],
    ['an invalid domain id', ['abc'], 2, /^gdbsx info: invalid domain id 'abc'/],
    ['no domain id', [], 2, /^gdbsx info: give a domain id/],
    ['an unknown section', ['--sim', '1', 'disks'], 2, /^gdbsx info: unknown section 'disks'/],
  ] as const) {
    it(`${what}: one line on stderr, nothing on stdout, exit status ${code}`, async () => {
      const r = await run([...args]);
      assert.equal(r.code, code, r.stderr);
      assert.equal(r.stdout, '');
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0], re);
    });
  }
});
