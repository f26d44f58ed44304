// VCPU contexts through XenControl: the x86_64 layout for 64-bit PV and every PVH
// guest, the x86_32 compat layout for 32-bit PV; what set accepts, refuses and changes.
import { strict as assert } from 'assert';
import { CTX32, CTX64, EFLAGS_IF, EFLAGS_TF, Vgcf, readField, writeField } from '../../src/xg/context';
import { Errno } from '../../src/xg/errors';
import { MemoryMap } from '../../src/xg/sim';
import { startGuest, errnoOf } from './helpers';

describe('sim VCPU contexts', () => {
  it('64-bit PV: the loader state in the native layout, and a get/set round trip', () => {
    const g = startGuest({ vcpus: 2, width: 64, paused: true, sim: { autoRun: false } });
    const { xc, sim, domid } = g;
    const lay = sim.layout(domid);
    const ctx = xc.getVcpuContext(domid, 1);
    const f = (n: Parameters<typeof readField>[2]) => readField(ctx, CTX64, n);
    assert.equal(f('rip'), lay.entry);
    assert.equal(f('rdi'), 1n); // the VCPU number
    assert.equal(f('cs'), 0xe033n);
    assert.equal(f('ss'), 0xe02bn);
    assert.equal(f('cr3'), BigInt(lay.cr3));
    assert.equal(f('flags'), BigInt(Vgcf.i387Valid | Vgcf.inKernel | Vgcf.online));
    assert.equal(f('rsp'), MemoryMap.directMap64 + BigInt(MemoryMap.vcpuAreas + MemoryMap.vcpuAreaSize + MemoryMap.stackSize));
    const percpu = f('gs_base_kernel') ?? 0n;
    assert.equal(g.peek(percpu, 8), 1n); // gs:0 holds the VCPU number
    assert.equal((f('rflags') ?? 0n) & EFLAGS_IF, EFLAGS_IF);
    assert.equal(f('dr6'), 0xffff0ff0n);
    assert.equal(ctx.readUInt16LE(0), 0x37f); // FCW in the FXSAVE image
    xc.setVcpuContext(domid, 1, ctx);
    assert.deepEqual(xc.getVcpuContext(domid, 1), ctx);
    g.close();
  });

  it('32-bit PV: the compat layout, leaving the rest of the 5168-byte union alone', () => {
    const g = startGuest({ vcpus: 2, width: 32, paused: true, sim: { autoRun: false } });
    const { xc, sim, domid } = g;
    const ctx = xc.getVcpuContext(domid, 1);
    const f = (n: Parameters<typeof readField>[2]) => readField(ctx, CTX32, n);
    assert.equal(f('rip'), sim.layout(domid).entry);
    assert.equal(f('rax'), 1n); // the VCPU number, in eax
    assert.equal(f('cs'), 0xe019n);
    assert.equal(f('cr3'), BigInt(sim.layout(domid).cr3));
    assert.ok(ctx.subarray(CTX32.size).every((b) => b === 0));
    // The live registers follow a set.
    writeField(ctx, CTX32, 'rax', 0x12345678n);
    writeField(ctx, CTX32, 'rip', sim.symbol(domid, 'demo_tick'));
    xc.setVcpuContext(domid, 1, ctx);
    const r = sim.registers(domid, 1);
    assert.equal(r.rax, 0x12345678n);
    assert.equal(r.rip, sim.symbol(domid, 'demo_tick'));
    g.close();
  });

  it('32-bit PVH uses the native layout', () => {
    const g = startGuest({ vcpus: 1, width: 32, type: 'pvh', paused: true, sim: { autoRun: false } });
    const ctx = g.xc.getVcpuContext(g.domid, 0);
    assert.equal(readField(ctx, CTX64, 'rip'), g.sim.layout(g.domid).entry);
    assert.equal(readField(ctx, CTX64, 'cs'), 0x10n);
    assert.equal(readField(ctx, CTX64, 'flags'), BigInt(Vgcf.i387Valid | Vgcf.online)); // no in_kernel for HVM
    g.close();
  });

  it('EINVAL for a VCPU out of range, ENODATA for one never brought up', () => {
    const g = startGuest({ vcpus: 3, onlineVcpus: 1, sim: { autoRun: false } });
    const { xc, domid } = g;
    assert.equal(errnoOf(() => xc.getVcpuContext(domid, 3)), Errno.EINVAL);
    assert.equal(errnoOf(() => xc.getVcpuContext(domid, 0xffffffff)), Errno.EINVAL);
    assert.equal(errnoOf(() => xc.getVcpuContext(domid, 2)), Errno.ENODATA);
    const info = xc.getDomainInfo(domid);
    assert.equal(info.nrOnlineVcpus, 1);
    assert.equal(info.maxVcpuId, 2);
    g.close();
  });

  it('setvcpucontext brings a never-initialised VCPU up, and it runs', () => {
    const g = startGuest({ vcpus: 2, onlineVcpus: 1, sim: { autoRun: false } });
    const { xc, sim, domid } = g;
    xc.pauseDomain(domid);
    const ctx = xc.getVcpuContext(domid, 0);
    writeField(ctx, CTX64, 'rdi', 1n);
    writeField(ctx, CTX64, 'rsp', MemoryMap.directMap64 + BigInt(MemoryMap.vcpuAreas + MemoryMap.vcpuAreaSize + MemoryMap.stackSize));
    writeField(ctx, CTX64, 'gs_base_kernel', MemoryMap.directMap64 + BigInt(MemoryMap.vcpuAreas + MemoryMap.vcpuAreaSize + MemoryMap.stackSize));
    writeField(ctx, CTX64, 'rip', sim.layout(domid).entry);
    xc.setVcpuContext(domid, 1, ctx);
    assert.equal(xc.getDomainInfo(domid).nrOnlineVcpus, 2);
    xc.unpauseDomain(domid);
    sim.runSlice();
    assert.ok(sim.domainState(domid).instructions[1] > 0);
    assert.equal(sim.domainState(domid).crashReason, undefined);
    assert.ok(g.peek(g.sym('demo_ticks') + 8n, 8) > 0n);
    g.close();
  });

  it('PV: EOPNOTSUPP when cr3 differs from the live one; PVH: control registers are ignored', () => {
    const pv = startGuest({ vcpus: 1, paused: true, sim: { autoRun: false } });
    const ctx = pv.xc.getVcpuContext(pv.domid, 0);
    writeField(ctx, CTX64, 'cr3', 0x2000n);
    assert.equal(errnoOf(() => pv.xc.setVcpuContext(pv.domid, 0, ctx)), Errno.EOPNOTSUPP);
    pv.close();
    const hvm = startGuest({ vcpus: 1, type: 'pvh', paused: true, sim: { autoRun: false } });
    const hctx = hvm.xc.getVcpuContext(hvm.domid, 0);
    const cr3 = readField(hctx, CTX64, 'cr3');
    writeField(hctx, CTX64, 'cr3', 0x2000n);
    hvm.xc.setVcpuContext(hvm.domid, 0, hctx);
    assert.equal(hvm.sim.registers(hvm.domid, 0).cr3, cr3);
    hvm.close();
  });

  it('rflags: TF is taken as given, IF is forced on and IOPL virtualised for PV', () => {
    const g = startGuest({ vcpus: 1, paused: true, sim: { autoRun: false } });
    const { xc, sim, domid } = g;
    const ctx = xc.getVcpuContext(domid, 0);
    writeField(ctx, CTX64, 'rflags', EFLAGS_TF | 0x3000n); // TF, IOPL 3, IF clear
    xc.setVcpuContext(domid, 0, ctx);
    const live = sim.registers(domid, 0).rflags;
    assert.equal(live & EFLAGS_TF, EFLAGS_TF);
    assert.equal(live & EFLAGS_IF, EFLAGS_IF);
    assert.equal(live & 0x3000n, 0n); // not in the real flags...
    assert.equal((readField(xc.getVcpuContext(domid, 0), CTX64, 'rflags') ?? 0n) & 0x3000n, 0x3000n); // ...but shown
    writeField(ctx, CTX64, 'rflags', 0x2n);
    xc.setVcpuContext(domid, 0, ctx);
    assert.equal(sim.registers(domid, 0).rflags & EFLAGS_TF, 0n);
    g.close();
  });

  it('a context without VGCF_online takes the VCPU down', () => {
    const g = startGuest({ vcpus: 2, paused: true, sim: { autoRun: false } });
    const { xc, domid } = g;
    const ctx = xc.getVcpuContext(domid, 1);
    writeField(ctx, CTX64, 'flags', BigInt(Vgcf.i387Valid | Vgcf.inKernel));
    xc.setVcpuContext(domid, 1, ctx);
    assert.equal(xc.getDomainInfo(domid).nrOnlineVcpus, 1);
    xc.unpauseDomain(domid);
    g.sim.runSlice();
    assert.equal(g.sim.domainState(domid).instructions[1], 0);
    g.close();
  });
});
