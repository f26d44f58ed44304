// Guest user mode on the simulated Xen (SimXen.enterUserMode): each VCPU runs a process
// of its own; Xen's gdbsx memory path, which walks VCPU0's active table, loses the
// kernel, while walks from ctrlreg[3] (PV) or the kernel half of cr3 (PTI) still reach it.
import { strict as assert } from 'assert';
import { CTX32, CTX64, Vgcf, readField, writeField } from '../../src/xg/context';
import { PageType } from '../../src/xg/domctl';
import { Errno } from '../../src/xg/errors';
import { PFINFO_LPINTAB } from '../../src/xg/sim/loader';
import { UNMAPPED } from '../../src/xg/sim/paging';
import { TestGuest, errnoOf, guestRam, startGuest, walkVa } from './helpers';

const BANNER = 'Xen gdbsx demo guest: hello from the simulated hypervisor';
/** ctrlreg[1] in the x86_64 vcpu_guest_context. */
const CTRLREG1 = 4992;

function flagsOf(ctx: Buffer, layout = CTX64): number {
  return Number(readField(ctx, layout, 'flags') ?? 0n);
}

function bannerVia(g: TestGuest): { ok: boolean; errno: number } {
  const b = Buffer.alloc(BANNER.length);
  const errno = errnoOf(() => g.xc.guestMemIo(g.domid, g.sym('demo_banner'), b, false));
  if (errno === 0) assert.equal(b.toString('latin1'), BANNER);
  return { ok: errno === 0, errno };
}

/** The C string at guest-physical `pa`. */
function cstr(mem: Buffer, pa: number): string {
  return mem.subarray(pa, mem.indexOf(0, pa)).toString('latin1');
}

const KINDS = [
  { width: 64, type: 'pv' },
  { width: 64, type: 'pvh' },
  { width: 32, type: 'pv' },
  { width: 32, type: 'pvh' },
] as const;

describe('sim guest user mode', () => {
  for (const { width, type } of KINDS) {
    it(`${width}-bit ${type}: the VCPU keeps running its process's loop; the others stay in the kernel`, () => {
      const g = startGuest({ width, type, vcpus: 2, sim: { autoRun: false } });
      const { sim, domid } = g;
      sim.runSlice();
      const info = sim.enterUserMode(domid, 0);
      const before = sim.domainState(domid).instructions;
      // demo_ticks[1], read through VCPU1's (kernel) tables.
      const ticks1 = () => sim.readVirt(domid, g.sym('demo_ticks') + BigInt(width / 8), 4, 1).readUInt32LE();
      const t0 = ticks1();
      for (let i = 0; i < 3; i++) sim.runSlice();
      const after = sim.domainState(domid).instructions;
      assert.ok(after[0] - before[0] >= 10000, `VCPU0 ran ${after[0] - before[0]} instructions`);
      const r = sim.registers(domid, 0);
      assert.ok(r.rip >= info.codeAddr && r.rip < info.codeAddr + 4096n, `rip 0x${r.rip.toString(16)} in the code page`);
      assert.ok(r.rax > 1000n); // the loop's counter
      assert.equal(r.cr3, info.userCr3);
      assert.equal(sim.domainState(domid).crashReason, undefined);
      assert.ok(ticks1() > t0);
      // Still there across a pause and an unpause.
      g.xc.pauseDomain(domid);
      g.xc.unpauseDomain(domid);
      sim.runSlice();
      const r2 = sim.registers(domid, 0);
      assert.ok(r2.rip >= info.codeAddr && r2.rip < info.codeAddr + 4096n);
      assert.ok(r2.rax > r.rax);
      g.close();
    });
  }

  for (const type of ['pv', 'pvh'] as const) {
    it(`64-bit ${type}: gdbsx_guestmemio loses the kernel while VCPU0 is in user mode (EFAULT), not for other VCPUs`, () => {
      const g = startGuest({ type, vcpus: 2, sim: { autoRun: false } });
      const { sim, domid } = g;
      assert.ok(bannerVia(g).ok);
      sim.enterUserMode(domid, 1);
      assert.ok(bannerVia(g).ok, 'VCPU1 in user mode does not matter');
      const info = sim.enterUserMode(domid, 0);
      sim.runSlice();
      assert.equal(bannerVia(g).errno, Errno.EFAULT);
      // The user half is what it sees: VCPU0's process data.
      const data = Buffer.alloc(19);
      g.xc.guestMemIo(domid, info.dataAddr, data, false);
      assert.equal(data.toString('latin1'), 'user data of vcpu 0');
      sim.leaveUserMode(domid, 0);
      assert.ok(bannerVia(g).ok);
      assert.equal(errnoOf(() => g.xc.guestMemIo(domid, info.dataAddr, data, false)), Errno.EFAULT);
      sim.runSlice();
      assert.equal(sim.domainState(domid).crashReason, undefined);
      g.close();
    });
  }

  it('32-bit (PAE, no PTI): the process PDPT keeps the kernel top GB, so gdbsx memio still works', () => {
    for (const type of ['pv', 'pvh'] as const) {
      const g = startGuest({ width: 32, type, vcpus: 1, sim: { autoRun: false } });
      const info = g.sim.enterUserMode(g.domid, 0);
      assert.equal(info.kernelCr3, info.userCr3);
      assert.ok(bannerVia(g).ok);
      g.close();
    }
  });

  it('64-bit PV: no VGCF_in_kernel, ctrlreg[3] = kernel PGD, ctrlreg[1] = user PGD (the live cr3); all back after leaving', () => {
    const g = startGuest({ vcpus: 2, sim: { autoRun: false } });
    const { sim, xc, domid } = g;
    sim.runSlice();
    const root = BigInt(sim.layout(domid).cr3);
    const kernelRip = sim.registers(domid, 0).rip;
    const info = sim.enterUserMode(domid, 0);
    const ctx = xc.getVcpuContext(domid, 0);
    assert.equal(flagsOf(ctx) & Vgcf.inKernel, 0);
    assert.equal(flagsOf(ctx) & Vgcf.online, Vgcf.online);
    assert.equal(readField(ctx, CTX64, 'cr3'), info.kernelCr3);
    assert.equal(ctx.readBigUInt64LE(CTRLREG1), info.userCr3);
    assert.notEqual(info.kernelCr3, info.userCr3);
    assert.equal(sim.registers(domid, 0).cr3, info.userCr3);
    assert.equal(readField(ctx, CTX64, 'cs'), 0x33n);
    assert.equal(readField(ctx, CTX64, 'rip'), info.codeAddr);
    // VCPU1, in the kernel: in_kernel, no user table.
    const c1 = xc.getVcpuContext(domid, 1);
    assert.equal(flagsOf(c1) & Vgcf.inKernel, Vgcf.inKernel);
    assert.equal(c1.readBigUInt64LE(CTRLREG1), 0n);
    assert.equal(readField(c1, CTX64, 'cr3'), root);
    sim.leaveUserMode(domid, 0);
    const back = xc.getVcpuContext(domid, 0);
    assert.equal(flagsOf(back) & Vgcf.inKernel, Vgcf.inKernel);
    assert.equal(back.readBigUInt64LE(CTRLREG1), 0n);
    assert.equal(readField(back, CTX64, 'cr3'), root);
    assert.equal(readField(back, CTX64, 'rip'), kernelRip);
    assert.equal(readField(back, CTX64, 'cs'), 0xe033n);
    g.close();
  });

  it('64-bit PV: a walk from ctrlreg[3] reaches kernel symbols and that VCPU\'s own user data; ctrlreg[1] only the user half', () => {
    const g = startGuest({ vcpus: 3, sim: { autoRun: false } });
    const { sim, xc, domid } = g;
    sim.enterUserMode(domid, 0);
    const info1 = sim.enterUserMode(domid, 1, { data: Buffer.from('VCPU one was here\0') });
    sim.runSlice();
    const ram = guestRam(sim, domid);
    const expected = ['user data of vcpu 0', 'VCPU one was here'];
    for (const v of [0, 1]) {
      const ctx = xc.getVcpuContext(domid, v);
      const k = readField(ctx, CTX64, 'cr3') ?? 0n;
      const u = ctx.readBigUInt64LE(CTRLREG1);
      const banner = walkVa(ram, k, g.sym('demo_banner'), 64);
      assert.notEqual(banner, UNMAPPED);
      assert.equal(ram.subarray(banner, banner + BANNER.length).toString('latin1'), BANNER);
      const data = walkVa(ram, k, info1.dataAddr, 64);
      assert.equal(cstr(ram, data), expected[v]);
      assert.equal(walkVa(ram, u, info1.dataAddr, 64), data);
      assert.equal(walkVa(ram, u, g.sym('demo_banner'), 64), UNMAPPED);
      assert.equal(walkVa(ram, u, sim.layout(domid).directMap, 64), UNMAPPED);
    }
    // VCPU2 never entered user mode: nothing at the user address.
    const k2 = readField(xc.getVcpuContext(domid, 2), CTX64, 'cr3') ?? 0n;
    assert.equal(walkVa(ram, k2, info1.dataAddr, 64), UNMAPPED);
    g.close();
  });

  it('64-bit PVH (PTI): cr3 is the user PGD, 4 KiB above an 8 KiB-aligned kernel PGD; context and CPU record show it', () => {
    const g = startGuest({ type: 'pvh', vcpus: 1, sim: { autoRun: false } });
    const { sim, xc, domid } = g;
    const info = sim.enterUserMode(domid, 0);
    sim.runSlice();
    assert.equal(info.kernelCr3 % 0x2000n, 0n);
    assert.equal(info.userCr3, info.kernelCr3 + 0x1000n);
    const ctx = xc.getVcpuContext(domid, 0);
    assert.equal(readField(ctx, CTX64, 'cr3'), info.userCr3);
    assert.equal((readField(ctx, CTX64, 'cs') ?? 0n) & 3n, 3n); // CPL 3
    assert.equal(flagsOf(ctx) & Vgcf.inKernel, 0);
    const rec = xc.getHvmCpu(domid, 0);
    assert.equal(rec.readBigUInt64LE(672), info.userCr3); // HvmCpu.cr3
    const ram = guestRam(sim, domid);
    assert.equal(walkVa(ram, info.userCr3, g.sym('demo_banner'), 64), UNMAPPED);
    assert.notEqual(walkVa(ram, info.userCr3, info.dataAddr, 64), UNMAPPED);
    const kernelHalf = info.userCr3 & ~0x1000n;
    const banner = walkVa(ram, kernelHalf, g.sym('demo_banner'), 64);
    assert.equal(ram.subarray(banner, banner + BANNER.length).toString('latin1'), BANNER);
    assert.equal(cstr(ram, walkVa(ram, kernelHalf, info.dataAddr, 64)), 'user data of vcpu 0');
    g.close();
  });

  it('64-bit PVH with PCIDs: CR4.PCIDE on, the user PCID (bit 11 set) in cr3\'s low bits', () => {
    const g = startGuest({ type: 'pvh', vcpus: 1, sim: { autoRun: false } });
    const { sim, xc, domid } = g;
    const cr4 = sim.registers(domid, 0).cr4;
    const info = sim.enterUserMode(domid, 0, { pcid: 5 });
    assert.equal(info.userCr3 & 0xfffn, 0x805n);
    assert.equal(info.kernelCr3 & 0xfffn, 5n);
    assert.equal((info.userCr3 & ~0xfffn) - (info.kernelCr3 & ~0xfffn), 0x1000n);
    sim.runSlice();
    const r = sim.registers(domid, 0);
    assert.equal(r.cr3, info.userCr3);
    assert.equal(r.cr4 & (1n << 17n), 1n << 17n);
    assert.ok(r.rip >= info.codeAddr && r.rip < info.codeAddr + 4096n);
    assert.equal(readField(xc.getVcpuContext(domid, 0), CTX64, 'cr3'), info.userCr3);
    sim.leaveUserMode(domid, 0);
    assert.equal(sim.registers(domid, 0).cr4, cr4);
    assert.throws(() => sim.enterUserMode(domid, 0, { pcid: 0x800 }), /pcid/);
    g.close();
  });

  it('64-bit PV: the process\'s tables are PV page tables (typed, pinned PGDs, read-only mappable) until it goes', () => {
    const g = startGuest({ vcpus: 1, sim: { autoRun: false } });
    const { sim, xc, domid } = g;
    const info = sim.enterUserMode(domid, 0);
    const frames = info.tableFrames.map((f) => BigInt(f));
    const types = xc.getPageFrameInfo(domid, frames);
    const pinnedL4 = (PageType.l4 | PFINFO_LPINTAB) >>> 0;
    assert.deepEqual([...types].sort(), [pinnedL4, pinnedL4, PageType.l3, PageType.l2, PageType.l2, PageType.l1, PageType.l1].sort());
    assert.equal(types[info.tableFrames.indexOf(Number(info.kernelCr3 / 4096n))], pinnedL4);
    assert.equal(types[info.tableFrames.indexOf(Number(info.userCr3 / 4096n))], pinnedL4);
    const rw = sim.mapForeign(domid, frames, true);
    assert.ok(rw.errors.every((e) => e === Errno.EBUSY));
    rw.unmap();
    const ro = sim.mapForeign(domid, frames, false);
    assert.ok(ro.errors.every((e) => e === 0));
    ro.unmap();
    // The data page is ordinary memory.
    const ram = guestRam(sim, domid);
    const dataFrame = BigInt(Math.floor(walkVa(ram, info.userCr3, info.dataAddr, 64) / 4096));
    assert.deepEqual(xc.getPageFrameInfo(domid, [dataFrame]), [0]);
    const w = sim.mapForeign(domid, [dataFrame], true);
    w.write(0, Buffer.from('poked\0'));
    w.unmap();
    assert.equal(sim.readVirt(domid, info.dataAddr, 5).toString(), 'poked');
    sim.leaveUserMode(domid, 0);
    assert.ok(xc.getPageFrameInfo(domid, frames).every((t) => t === 0));
    g.close();
  });

  it('32-bit PV: the process PDPT is a pinned L3 with a private copy of the kernel L2 (the top GB)', () => {
    const g = startGuest({ width: 32, vcpus: 1, sim: { autoRun: false } });
    const { sim, xc, domid } = g;
    const info = sim.enterUserMode(domid, 0);
    const types = xc.getPageFrameInfo(domid, info.tableFrames.map((f) => BigInt(f)));
    assert.equal(types[info.tableFrames.indexOf(Number(info.kernelCr3 / 4096n))], (PageType.l3 | PFINFO_LPINTAB) >>> 0);
    assert.equal(types.filter((t) => t === PageType.l2).length, 3);
    const ctx = xc.getVcpuContext(domid, 0);
    assert.equal(readField(ctx, CTX32, 'cr3'), info.kernelCr3);
    assert.equal(flagsOf(ctx, CTX32) & Vgcf.inKernel, 0); // cs 0x73: ring 3
    const ram = guestRam(sim, domid);
    const kernelL2 = ram.readUInt32LE(sim.layout(domid).cr3 + 24) & 0xfffff000;
    const ownL2 = ram.readUInt32LE(Number(info.kernelCr3) + 24) & 0xfffff000;
    assert.notEqual(ownL2, kernelL2);
    assert.deepEqual(ram.subarray(ownL2, ownL2 + 4096), ram.subarray(kernelL2, kernelL2 + 4096));
    sim.leaveUserMode(domid, 0);
    assert.equal(flagsOf(xc.getVcpuContext(domid, 0), CTX32) & Vgcf.inKernel, Vgcf.inKernel);
    g.close();
  });

  it('64-bit PV setvcpucontext: a get/set round trip works in user mode; another ctrlreg[3]/[1] is EOPNOTSUPP', () => {
    const g = startGuest({ vcpus: 2, sim: { autoRun: false } });
    const { sim, xc, domid } = g;
    const info = sim.enterUserMode(domid, 0);
    xc.pauseDomain(domid);
    const ctx = xc.getVcpuContext(domid, 0);
    xc.setVcpuContext(domid, 0, ctx);
    assert.deepEqual(xc.getVcpuContext(domid, 0), ctx);
    const bad1 = Buffer.from(ctx);
    bad1.writeBigUInt64LE(info.kernelCr3, CTRLREG1);
    assert.equal(errnoOf(() => xc.setVcpuContext(domid, 0, bad1)), Errno.EOPNOTSUPP);
    const bad3 = Buffer.from(ctx);
    writeField(bad3, CTX64, 'cr3', info.userCr3);
    assert.equal(errnoOf(() => xc.setVcpuContext(domid, 0, bad3)), Errno.EOPNOTSUPP);
    // A kernel-mode VCPU with no user table: ctrlreg[1] must stay 0 and in_kernel set.
    const k = xc.getVcpuContext(domid, 1);
    const withUser = Buffer.from(k);
    withUser.writeBigUInt64LE(info.userCr3, CTRLREG1);
    assert.equal(errnoOf(() => xc.setVcpuContext(domid, 1, withUser)), Errno.EOPNOTSUPP);
    const userFlags = Buffer.from(k);
    writeField(userFlags, CTX64, 'flags', BigInt(flagsOf(k) & ~Vgcf.inKernel));
    assert.equal(errnoOf(() => xc.setVcpuContext(domid, 1, userFlags)), Errno.EOPNOTSUPP);
    xc.setVcpuContext(domid, 1, k);
    xc.unpauseDomain(domid);
    sim.runSlice();
    const r = sim.registers(domid, 0);
    assert.ok(r.rip >= info.codeAddr && r.rip < info.codeAddr + 4096n);
    assert.equal(r.cr3, info.userCr3);
    assert.equal(sim.domainState(domid).crashReason, undefined);
    g.close();
  });

  it('refuses to enter twice or on a VCPU that is down, and to leave when not in user mode', () => {
    const g = startGuest({ vcpus: 2, onlineVcpus: 1, sim: { autoRun: false } });
    const { sim, domid } = g;
    sim.enterUserMode(domid, 0);
    assert.throws(() => sim.enterUserMode(domid, 0), /already in user mode/);
    assert.throws(() => sim.enterUserMode(domid, 1), /not up/);
    sim.leaveUserMode(domid, 0);
    assert.throws(() => sim.enterUserMode(domid, 0, { data: Buffer.alloc(4097) }), /at most one page/);
    assert.throws(() => sim.leaveUserMode(domid, 0), /not in user mode/);
    assert.throws(() => sim.enterUserMode(domid, 0, { pcid: 5 }), /PVH/); // PCIDs: PVH only
    // Entering again gets a fresh process.
    const info = sim.enterUserMode(domid, 0, { data: Buffer.from('second\0') });
    assert.equal(sim.readVirt(domid, info.dataAddr, 6).toString(), 'second');
    g.close();
  });
});
