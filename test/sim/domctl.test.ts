// The simulated Xen's domctls as XenControl sees them: interface-version probe,
// getdomaininfo (flags, the 4.17 next-domain quirk), pause counts, address size,
// xen_version, CONFIG_GDBSX=n.
import { strict as assert } from 'assert';
import { DomInf, DomctlCmd, Off, ShutdownReason, newDomctl } from '../../src/xg/domctl';
import { Errno, XenError } from '../../src/xg/errors';
import { SimXen } from '../../src/xg/sim';
import { XenControl } from '../../src/xg/xenctl';
import { startGuest, errnoOf } from './helpers';

describe('sim domctls: versions and domain info', () => {
  it('accepts only its interface version; XenControl probes down to it', () => {
    for (const version of [0x15, 0x16, 0x17, 0x18]) {
      const sim = new SimXen({ interfaceVersion: version, autoRun: false });
      assert.equal(new XenControl(sim).probeInterfaceVersion(), version);
      const other = newDomctl(DomctlCmd.getdomaininfo, version === 0x15 ? 0x18 : 0x15, 0);
      assert.equal(errnoOf(() => sim.domctl(other)), Errno.EACCES);
      sim.close();
    }
  });

  it('EACCES comes before ESRCH, and unknown commands give ENOSYS', () => {
    const sim = new SimXen({ autoRun: false });
    assert.equal(errnoOf(() => sim.domctl(newDomctl(DomctlCmd.pausedomain, 0x14, 99))), Errno.EACCES);
    assert.equal(errnoOf(() => sim.domctl(newDomctl(DomctlCmd.pausedomain, 0x15, 99))), Errno.ESRCH);
    assert.equal(errnoOf(() => sim.domctl(newDomctl(777, 0x15, 0))), Errno.ENOSYS);
    sim.close();
  });

  it('xen_version: 4.17, extraversion and capabilities', () => {
    const sim = new SimXen({ autoRun: false });
    const v = new XenControl(sim).version();
    assert.deepEqual(v, {
      major: 4, minor: 17, extra: '.5-sim',
      capabilities: 'xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64',
    });
    assert.equal(errnoOf(() => sim.xenVersion(99)), Errno.ENOSYS);
    sim.close();
  });

  it('getdomaininfo of a running PV guest, of dom0, and of a PVH guest', () => {
    const g = startGuest({ vcpus: 3, width: 64, sim: { autoRun: false } });
    const info = g.xc.getDomainInfo(g.domid);
    assert.equal(info.domid, g.domid);
    assert.equal(info.flags & ~DomInf.running, 0); // running only: not paused, not hvm, not debugged
    assert.equal(info.running, true);
    assert.equal(info.nrOnlineVcpus, 3);
    assert.equal(info.maxVcpuId, 2);
    assert.equal(info.totPages, BigInt((64 << 20) / 4096));
    assert.notEqual(info.handle, '00000000-0000-0000-0000-000000000000');
    const dom0 = g.xc.getDomainInfo(0);
    assert.equal(dom0.domid, 0);
    assert.equal(dom0.blocked, true);
    assert.equal(dom0.handle, '00000000-0000-0000-0000-000000000000');
    const pvh = g.sim.createDomain({ vcpus: 1, width: 32, type: 'pvh' });
    const pinfo = g.xc.getDomainInfo(pvh);
    assert.equal(pinfo.hvm, true);
    assert.ok(pinfo.flags & DomInf.hap);
    g.close();
  });

  it('answers the next existing domain for a missing domid (Xen 4.17), which XenControl turns into ESRCH', () => {
    const sim = new SimXen({ autoRun: false });
    const d5 = sim.createDomain({ domid: 5, vcpus: 1, width: 64 });
    const op = newDomctl(DomctlCmd.getdomaininfo, 0x15, 3);
    sim.domctl(op);
    assert.equal(op.readUInt16LE(Off.infoDomain), d5);
    assert.equal(op.readUInt16LE(Off.domain), d5); // op->domain is rewritten too
    const xc = new XenControl(sim);
    assert.equal(errnoOf(() => xc.getDomainInfo(3)), Errno.ESRCH);
    assert.equal(errnoOf(() => sim.domctl(newDomctl(DomctlCmd.getdomaininfo, 0x15, 6))), Errno.ESRCH);
    assert.equal(errnoOf(() => sim.domctl(newDomctl(DomctlCmd.getdomaininfo, 0x15, 0x7ff0))), Errno.EINVAL);
    sim.close();
    // From 4.18 on a missing domid is ESRCH.
    const sim18 = new SimXen({ interfaceVersion: 0x16, autoRun: false });
    sim18.createDomain({ domid: 5, vcpus: 1, width: 64 });
    assert.equal(errnoOf(() => sim18.domctl(newDomctl(DomctlCmd.getdomaininfo, 0x16, 3))), Errno.ESRCH);
    sim18.close();
  });

  it('reports shutdown with its reason, dying, and then no domain', () => {
    const g = startGuest({ sim: { autoRun: false } });
    g.sim.shutdownDomain(g.domid, 'reboot');
    let info = g.xc.getDomainInfo(g.domid);
    assert.equal(info.shutdown, true);
    assert.equal(info.shutdownReason, ShutdownReason.reboot);
    assert.equal(info.running, false);
    g.sim.destroyDomain(g.domid, { zombie: true });
    info = g.xc.getDomainInfo(g.domid);
    assert.equal(info.dying, true);
    g.sim.destroyDomain(g.domid);
    assert.equal(errnoOf(() => g.xc.getDomainInfo(g.domid)), Errno.ESRCH);
    assert.equal(errnoOf(() => g.xc.pauseDomain(g.domid)), Errno.ESRCH);
    g.close();
  });

  it('cpu_time follows executed instructions', () => {
    const g = startGuest({ sim: { autoRun: false } });
    const t0 = g.xc.getDomainInfo(g.domid).cpuTimeNs;
    g.sim.runSlice();
    const t1 = g.xc.getDomainInfo(g.domid).cpuTimeNs;
    assert.ok(t1 > t0);
    assert.equal(t1, BigInt(g.sim.domainState(g.domid).instructions.reduce((a, b) => a + b, 0)));
    g.close();
  });
});

describe('sim domctls: pausing', () => {
  it('counts controller pauses: paused flag, EINVAL below 0, EOVERFLOW above 255', () => {
    const g = startGuest({ sim: { autoRun: false } });
    const { xc, domid } = g;
    assert.equal(errnoOf(() => xc.unpauseDomain(domid)), Errno.EINVAL);
    xc.pauseDomain(domid);
    xc.pauseDomain(domid);
    let info = xc.getDomainInfo(domid);
    assert.equal(info.paused, true);
    assert.equal(info.running, false);
    xc.unpauseDomain(domid);
    assert.equal(xc.getDomainInfo(domid).paused, true);
    xc.unpauseDomain(domid);
    info = xc.getDomainInfo(domid);
    assert.equal(info.paused, false);
    for (let i = 0; i < 255; i++) xc.pauseDomain(domid);
    assert.equal(errnoOf(() => xc.pauseDomain(domid)), Errno.EOVERFLOW);
    assert.equal(g.sim.domainState(domid).controllerPauseCount, 255);
    g.close();
  });

  it('dom0 is the caller: it cannot pause itself', () => {
    const sim = new SimXen({ autoRun: false });
    const err = (() => {
      try {
        new XenControl(sim).pauseDomain(0);
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    assert.ok(err instanceof XenError && err.errno === Errno.EINVAL, String(err));
    assert.match(String(err), /cannot pause itself/);
    sim.close();
  });

  it('does not copy the struct back for pausedomain (Xen does not)', () => {
    const g = startGuest({ sim: { autoRun: false } });
    const op = newDomctl(DomctlCmd.pausedomain, 0x15, g.domid);
    op.fill(0x5a, 16);
    const before = Buffer.from(op);
    g.sim.domctl(op);
    assert.deepEqual(op, before);
    g.close();
  });

  it('get_address_size: 32 only for 32-bit PV', () => {
    const sim = new SimXen({ autoRun: false });
    const xc = new XenControl(sim);
    const cases: [32 | 64, 'pv' | 'pvh', number][] = [[64, 'pv', 64], [32, 'pv', 32], [32, 'pvh', 64], [64, 'pvh', 64]];
    for (const [width, type, want] of cases) {
      const d = sim.createDomain({ vcpus: 1, width, type });
      assert.equal(xc.getAddressSize(d), want, `${width}-bit ${type}`);
    }
    sim.close();
  });

  it('without CONFIG_GDBSX the four gdbsx domctls are ENOSYS', () => {
    const g = startGuest({ sim: { gdbsx: false, autoRun: false } });
    const { xc, domid } = g;
    assert.equal(xc.hasGdbsx(domid), false);
    xc.pauseDomain(domid);
    assert.equal(errnoOf(() => xc.pauseVcpu(domid, 0)), Errno.ENOSYS);
    assert.equal(errnoOf(() => xc.unpauseVcpu(domid, 0)), Errno.ENOSYS);
    assert.equal(errnoOf(() => xc.domStatus(domid)), Errno.ENOSYS);
    assert.equal(errnoOf(() => xc.guestMemIo(domid, g.sym('demo_banner'), Buffer.alloc(8), false)), Errno.ENOSYS);
    // The rest still works.
    xc.setDebugging(domid, true);
    assert.equal(xc.getDomainInfo(domid).debugged, true);
    g.close();
    const g2 = startGuest({ sim: { autoRun: false } });
    assert.equal(g2.xc.hasGdbsx(g2.domid), true);
    g2.close();
  });
});
