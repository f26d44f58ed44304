import assert from 'assert';
import { AMD64, I386, readReg, writeReg, VcpuContext } from '../../src/vcpu/registers';
import { encodeGBlock } from '../../src/gx/handlers/registers';
import { CTX32, CTX64, writeField, readField } from '../../src/xg/context';
import { targetXml } from '../../src/gx/targetXml';

function ctx64(): VcpuContext {
  return { buf: Buffer.alloc(5168), layout: CTX64, hvm: false };
}

describe('register layouts', () => {
  it('amd64 g block: gdb core order, 4-byte eflags and selectors, sizes add up', () => {
    const names = AMD64.regs.map((r) => r.name);
    assert.deepStrictEqual(names.slice(0, 24), ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rbp', 'rsp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15', 'rip', 'eflags', 'cs', 'ss', 'ds', 'es', 'fs', 'gs']);
    assert.strictEqual(AMD64.pcReg, 0x10);
    assert.strictEqual(AMD64.spReg, 7);
    assert.strictEqual(AMD64.fpReg, 6);
    // Core + SSE = 536 bytes as in gdb's own amd64 layout; then fs_base at 536, gs_base at 544.
    assert.strictEqual(AMD64.offsets[names.indexOf('mxcsr')], 532);
    assert.strictEqual(AMD64.offsets[names.indexOf('fs_base')], 536);
    assert.strictEqual(AMD64.offsets[names.indexOf('gs_base')], 544);
    assert.strictEqual(encodeGBlock(AMD64, ctx64()).length, AMD64.gSize * 2);
  });

  it('i386 order is eax ecx edx ebx esp ebp esi edi eip', () => {
    assert.deepStrictEqual(I386.regs.slice(0, 9).map((r) => r.name), ['eax', 'ecx', 'edx', 'ebx', 'esp', 'ebp', 'esi', 'edi', 'eip']);
    assert.strictEqual(I386.pcReg, 8);
    assert.strictEqual(I386.offsets[I386.regs.findIndex((r) => r.name === 'mxcsr')], 304);
  });

  it('maps Xen x86_64 context fields to gdb registers and back', () => {
    const c = ctx64();
    writeField(c.buf, CTX64, 'rip', 0xffffffff81000123n);
    writeField(c.buf, CTX64, 'rflags', 0x246n);
    writeField(c.buf, CTX64, 'cs', 0xe033n);
    writeField(c.buf, CTX64, 'r15', 0x1122334455667788n);
    const g = encodeGBlock(AMD64, c);
    assert.strictEqual(g.slice(16 * 16, 17 * 16), '23010081ffffffff');
    assert.strictEqual(g.slice(136 * 2, 140 * 2), '46020000');
    assert.strictEqual(g.slice(140 * 2, 144 * 2), '33e00000');
    assert.strictEqual(g.slice(120 * 2, 128 * 2), '8877665544332211');
    assert.ok(writeReg(c, AMD64.regs[0], Buffer.from('efbeadde00000000', 'hex')));
    assert.strictEqual(readField(c.buf, CTX64, 'rax'), 0xdeadbeefn);
  });

  it('32-bit PV compat layout: registers come from the 2800-byte context; no fs_base there', () => {
    const c: VcpuContext = { buf: Buffer.alloc(5168), layout: CTX32, hvm: false };
    writeField(c.buf, CTX32, 'rip', 0xc1000010n);
    writeField(c.buf, CTX32, 'rcx', 7n);
    assert.strictEqual(readReg(c, I386.regs[8])?.toString('hex'), '100000c1');
    assert.strictEqual(readReg(c, I386.regs[1])?.toString('hex'), '07000000');
    const fsb = I386.regs.find((r) => r.name === 'fs_base');
    assert.ok(fsb);
    assert.strictEqual(readReg(c, fsb), undefined);
    assert.match(encodeGBlock(I386, c), /x{8}/);
  });

  it('gs_base follows the VCPU mode; eflags writes keep the upper rflags half', () => {
    const c = ctx64();
    writeField(c.buf, CTX64, 'gs_base_kernel', 0xffff888000001000n);
    writeField(c.buf, CTX64, 'gs_base_user', 0x7f0000000000n);
    writeField(c.buf, CTX64, 'flags', 4n); // VGCF_in_kernel
    const gs = AMD64.regs.find((r) => r.name === 'gs_base');
    const kgs = AMD64.regs.find((r) => r.name === 'k_gs_base');
    assert.ok(gs && kgs);
    assert.strictEqual(readReg(c, gs)?.readBigUInt64LE(), 0xffff888000001000n);
    assert.strictEqual(readReg(c, kgs)?.readBigUInt64LE(), 0x7f0000000000n);
    writeField(c.buf, CTX64, 'flags', 0n);
    assert.strictEqual(readReg(c, gs)?.readBigUInt64LE(), 0x7f0000000000n);
  });

  it('target XML lists registers in g order with the standard feature names', () => {
    for (const arch of [AMD64, I386]) {
      const xml = targetXml(arch);
      assert.match(xml, new RegExp(`<architecture>${arch.gdbArch}</architecture>`));
      for (const f of ['org.gnu.gdb.i386.core', 'org.gnu.gdb.i386.sse']) assert.ok(xml.includes(f), f);
      // gdb 13 asserts on a 32-bit description with the segments feature: only amd64 has it.
      assert.strictEqual(xml.includes('org.gnu.gdb.i386.segments'), arch === AMD64);
      for (const b of ['fs_base', 'gs_base']) assert.ok(xml.includes(`name="${b}"`), b);
      const regs = [...xml.matchAll(/<reg name="([^"]+)" bitsize="(\d+)"[^>]*regnum="(\d+)"/g)];
      assert.deepStrictEqual(regs.map((m) => m[1]), arch.regs.map((r) => r.name));
      assert.strictEqual(regs.reduce((n, m) => n + Number(m[2]) / 8, 0), arch.gSize);
      assert.ok(!xml.includes('orig_rax') && !xml.includes('i386.linux'), 'no Linux user-space feature for a kernel stub');
      for (const cr of ['cr0', 'cr2', 'cr3', 'cr4']) assert.ok(xml.includes(`name="${cr}"`));
    }
  });
});
