// XEN_DOMCTL_gethvmcontext_partial's CPU record on the simulated Xen, and the Xen
// release option with the 4.21.0/4.21.1 bug that loses r8-r15 in the VCPU context domctls.
import { strict as assert } from 'assert';
import { CTX64, ContextRegName, readField } from '../../src/xg/context';
import { DomctlCmd, HVM_HW_CPU_SIZE, HVM_SAVE_CODE_CPU, HvmCpu, Off, newDomctl } from '../../src/xg/domctl';
import { Errno } from '../../src/xg/errors';
import { SimXen } from '../../src/xg/sim';
import { XenControl } from '../../src/xg/xenctl';
import { errnoOf, startGuest } from './helpers';

const GPRS = ['rax', 'rbx', 'rcx', 'rdx', 'rbp', 'rsi', 'rdi', 'rsp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'] as const;
const HIGH = ['r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'] as const;

/** A raw gethvmcontext_partial, so that bufsz and the errno can be seen. */
function rawPartial(sim: SimXen, domid: number, type: number, instance: number, bufsz: number, buf?: Buffer): { errno: number; op: Buffer } {
  const op = newDomctl(DomctlCmd.gethvmcontext_partial, 0x15, domid);
  op.writeUInt32LE(type, Off.hvmCtxType);
  op.writeUInt32LE(instance, Off.hvmCtxInstance);
  op.writeBigUInt64LE(BigInt(bufsz), Off.hvmCtxBufsz);
  const errno = errnoOf(() => sim.domctl(op, buf ? { buf, handleOffset: Off.hvmCtxHandle } : undefined));
  return { errno, op };
}

describe('sim gethvmcontext_partial (the CPU record)', () => {
  for (const width of [64, 32] as const) {
    it(`${width}-bit PVH: the record is the live VCPU`, () => {
      const g = startGuest({ width, type: 'pvh', vcpus: 2, sim: { autoRun: false } });
      const { sim, xc, domid } = g;
      sim.runSlice();
      const rec = xc.getHvmCpu(domid, 1);
      const r = sim.registers(domid, 1);
      for (const n of GPRS) assert.equal(rec.readBigUInt64LE(HvmCpu[n]), r[n], n);
      for (const n of ['rip', 'rflags', 'cr0', 'cr2', 'cr3', 'cr4', 'dr6', 'dr7'] as const) assert.equal(rec.readBigUInt64LE(HvmCpu[n]), r[n], n);
      assert.equal(rec.readBigUInt64LE(HvmCpu.msrEfer), width === 64 ? 0xd01n : 0x800n);
      assert.equal(rec.readUInt16LE(0), 0x37f); // FCW of the FXSAVE image
      assert.equal(rec.readUInt32LE(736), 0x10); // cs selector
      assert.equal(rec.readBigUInt64LE(808 + 4 * 8), r.gs_base); // gs base
      g.close();
    });
  }

  it('EINVAL for PV and unknown record types, ENOENT past the last VCPU, ENODATA for a VCPU that is down, ENOBUFS for a short buffer', () => {
    const pv = startGuest({ vcpus: 1, sim: { autoRun: false } });
    assert.equal(errnoOf(() => pv.xc.getHvmCpu(pv.domid, 0)), Errno.EINVAL);
    pv.close();
    const g = startGuest({ type: 'pvh', vcpus: 3, onlineVcpus: 1, sim: { autoRun: false } });
    const { sim, domid } = g;
    const buf = Buffer.alloc(HVM_HW_CPU_SIZE);
    assert.equal(rawPartial(sim, domid, 1, 0, buf.length, buf).errno, Errno.EINVAL); // HEADER: not simulated
    assert.equal(rawPartial(sim, domid, 99, 0, buf.length, buf).errno, Errno.EINVAL);
    assert.equal(rawPartial(sim, domid, HVM_SAVE_CODE_CPU, 3, buf.length, buf).errno, Errno.ENOENT);
    assert.equal(rawPartial(sim, domid, HVM_SAVE_CODE_CPU, 2, buf.length, buf).errno, Errno.ENODATA);
    assert.equal(rawPartial(sim, domid, HVM_SAVE_CODE_CPU, 0, 100, buf).errno, 105 /* ENOBUFS */);
    // A null buffer asks for the size; a real one gets it back in bufsz.
    const size = rawPartial(sim, domid, HVM_SAVE_CODE_CPU, 0, 0);
    assert.equal(size.errno, 0);
    assert.equal(size.op.readBigUInt64LE(Off.hvmCtxBufsz), BigInt(HVM_HW_CPU_SIZE));
    const full = rawPartial(sim, domid, HVM_SAVE_CODE_CPU, 0, 4096, buf);
    assert.equal(full.errno, 0);
    assert.equal(full.op.readBigUInt64LE(Off.hvmCtxBufsz), BigInt(HVM_HW_CPU_SIZE));
    g.close();
  });
});

describe('sim Xen release option and the 4.21.0/4.21.1 r8-r15 bug', () => {
  it('release 4.21.1: xen_version 4.21 ".1", domctl interface 0x17', () => {
    const sim = new SimXen({ release: '4.21.1', autoRun: false });
    const xc = new XenControl(sim);
    const v = xc.version();
    assert.equal(v.major, 4);
    assert.equal(v.minor, 21);
    assert.equal(v.extra, '.1');
    assert.equal(xc.probeInterfaceVersion(), 0x17);
    sim.close();
  });

  for (const type of ['pv', 'pvh'] as const) {
    it(`4.21.1, 64-bit ${type}: getvcpucontext shows r8-r15 as 0 and setvcpucontext zeroes them`, () => {
      const g = startGuest({ type, vcpus: 2, sim: { release: '4.21.1', autoRun: false } });
      const { sim, xc, domid } = g;
      sim.runSlice();
      const live = sim.registers(domid, 1);
      assert.equal(live.r12, 1n); // the demo guest keeps its VCPU number in r12...
      assert.ok(live.r13 > 0n); // ...and its iteration count in r13
      xc.pauseDomain(domid);
      const ctx = xc.getVcpuContext(domid, 1);
      for (const n of HIGH) assert.equal(readField(ctx, CTX64, n), 0n, n);
      assert.equal(readField(ctx, CTX64, 'rip'), live.rip);
      if (type === 'pvh') {
        // The CPU record is not affected: the workaround's source of truth.
        const rec = xc.getHvmCpu(domid, 1);
        assert.equal(rec.readBigUInt64LE(HvmCpu.r12), 1n);
        assert.equal(rec.readBigUInt64LE(HvmCpu.r13), live.r13);
      }
      xc.setVcpuContext(domid, 1, ctx);
      const after = sim.registers(domid, 1);
      for (const n of HIGH) assert.equal(after[n], 0n, n);
      assert.equal(after.rip, live.rip);
      g.close();
    });
  }

  for (const release of ['4.21.2', undefined]) {
    it(`${release ?? 'the default release'}: r8-r15 survive a get/set`, () => {
      const g = startGuest({ vcpus: 2, sim: { release, autoRun: false } });
      const { sim, xc, domid } = g;
      sim.runSlice();
      xc.pauseDomain(domid);
      const live = sim.registers(domid, 1);
      const ctx = xc.getVcpuContext(domid, 1);
      for (const n of HIGH) assert.equal(readField(ctx, CTX64, n as ContextRegName), live[n], n);
      xc.setVcpuContext(domid, 1, ctx);
      assert.equal(sim.registers(domid, 1).r12, 1n);
      g.close();
    });
  }
});
