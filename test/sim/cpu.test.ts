// Instruction-level tests of the simulated CPU on a bare identity-mapped machine.
// The hex is what GNU as emits for the instruction in the comment.
import { strict as assert } from 'assert';
import { StepResult } from '../../src/xg/sim/cpu';
import { Gpr, Vector } from '../../src/xg/sim/cpu-core';
import { Flag } from '../../src/xg/sim/alu';
import { CODE, HOLE, STACK, bareCpu, runCode } from './helpers';

const { rax, rbx, rcx, rdx, rsp, rsi } = Gpr;

describe('sim CPU, 64-bit long mode', () => {
  it('carries from the low into the high half, and 32-bit writes zero-extend', () => {
    const c = bareCpu(true);
    c.setGpr(rax, -1n & 0xffffffffffffffffn);
    runCode(c, 'b8ffffffff 4883c001', 2); // mov $0xffffffff,%eax; add $1,%rax
    assert.equal(c.getGpr(rax), 0x100000000n);
    assert.equal(c.rflags & (Flag.CF | Flag.ZF | Flag.OF), 0);
    assert.equal(c.rip, BigInt(CODE + 9));
  });

  it('movabs, sign-extended imm32 and 16-bit operations that keep the upper bits', () => {
    const c = bareCpu(true);
    runCode(c, '48b8f0debc9a78563412', 1); // movabs $0x123456789abcdef0,%rax
    assert.equal(c.getGpr(rax), 0x123456789abcdef0n);
    runCode(c, '48c7c0ffffffff'); // mov $-1,%rax
    assert.equal(c.getGpr(rax), 0xffffffffffffffffn);
    runCode(c, '66b83412 6683c001', 2); // movw $0x1234,%ax; addw $1,%ax
    assert.equal(c.getGpr(rax), 0xffffffffffff1235n);
    c.setGpr(rcx, 0xffffffff00000000n);
    runCode(c, 'ffc9'); // dec %ecx
    assert.equal(c.getGpr(rcx), 0xffffffffn);
  });

  it('push/pop, call/ret and int3 (a trap: rip is past it)', () => {
    const c = bareCpu(true);
    c.setGpr(rax, 0xdeadbeefcafen);
    runCode(c, '505b', 2); // push %rax; pop %rbx
    assert.equal(c.getGpr(rbx), 0xdeadbeefcafen);
    assert.equal(c.getGpr(rsp), BigInt(STACK));
    assert.equal(c.mem.readBigUInt64LE(STACK - 8), 0xdeadbeefcafen);
    runCode(c, 'e801000000 cc c3', 1); // call 1f; int3; 1: ret
    assert.equal(c.rip, BigInt(CODE + 6));
    assert.equal(c.getGpr(rsp), BigInt(STACK - 8));
    assert.equal(c.mem.readBigUInt64LE(STACK - 8), BigInt(CODE + 5));
    assert.equal(c.step(), StepResult.Ok); // ret
    assert.equal(c.rip, BigInt(CODE + 5));
    assert.equal(c.step(), StepResult.Int3);
    assert.equal(c.rip, BigInt(CODE + 6));
  });

  it('RIP-relative addressing counts from the end of the instruction, immediates included', () => {
    const c = bareCpu(true);
    runCode(c, '488d0510000000'); // lea 0x10(%rip),%rax
    assert.equal(c.getGpr(rax), BigInt(CODE + 7 + 0x10));
    runCode(c, 'c7050001000044332211'); // movl $0x11223344,0x100(%rip)
    assert.equal(c.mem.readUInt32LE(CODE + 10 + 0x100), 0x11223344);
    c.mem.writeBigUInt64LE(41n, CODE + 9 + 0x100);
    runCode(c, 'f04883050001000001'); // lock addq $1,0x100(%rip)
    assert.equal(c.mem.readBigUInt64LE(CODE + 9 + 0x100), 42n);
  });

  it('SIB, displacement and fs/gs-relative operands', () => {
    const c = bareCpu(true);
    c.mem.writeBigUInt64LE(0x1122334455667788n, 0x20018);
    c.setGpr(rax, 0x20000n);
    c.setGpr(rbx, 3n);
    runCode(c, '488b0cd8'); // mov (%rax,%rbx,8),%rcx
    assert.equal(c.getGpr(rcx), 0x1122334455667788n);
    c.mem.writeBigUInt64LE(7n, STACK + 8);
    runCode(c, '488b542408'); // mov 0x8(%rsp),%rdx
    assert.equal(c.getGpr(rdx), 7n);
    c.gsBase = 0x20010n;
    runCode(c, '65488b042508000000'); // mov %gs:8,%rax
    assert.equal(c.getGpr(rax), 0x1122334455667788n);
  });

  it('byte registers: ah..bh without REX, sil..dil with it; movzx/movsx/movsxd', () => {
    const c = bareCpu(true);
    c.setGpr(rax, 0x1280n);
    runCode(c, '0fb6cc'); // movzbl %ah,%ecx
    assert.equal(c.getGpr(rcx), 0x12n);
    runCode(c, '480fbec8'); // movsbq %al,%rcx
    assert.equal(c.getGpr(rcx), 0xffffffffffffff80n);
    c.setGpr(rax, 0x8000n);
    runCode(c, '0fbfc8'); // movswl %ax,%ecx
    assert.equal(c.getGpr(rcx), 0xffff8000n);
    c.setGpr(rax, 0x80000000n);
    runCode(c, '4863c8'); // movslq %eax,%rcx
    assert.equal(c.getGpr(rcx), 0xffffffff80000000n);
    c.setGpr(rsi, 0xabn);
    c.setGpr(rax, 0n);
    c.setGpr(rdx, 0n);
    runCode(c, '4088f0'); // mov %sil,%al
    assert.equal(c.getGpr(rax), 0xabn);
  });

  it('shifts, neg/not, adc/sbb and memory read-modify-write', () => {
    const c = bareCpu(true);
    c.setGpr(rax, 3n);
    c.setGpr(rbx, 0x8000000000000000n);
    c.setGpr(rcx, 36n);
    c.setGpr(rdx, 1n);
    runCode(c, '48d1e8 48c1fb04 48d3e2', 3); // shr $1,%rax; sar $4,%rbx; shl %cl,%rdx
    assert.equal(c.getGpr(rax), 1n);
    assert.equal(c.getGpr(rbx), 0xf800000000000000n);
    assert.equal(c.getGpr(rdx), 1n << 36n);
    runCode(c, '48f7d8 48f7d3', 2); // neg %rax; not %rbx
    assert.equal(c.getGpr(rax), 0xffffffffffffffffn);
    assert.equal(c.getGpr(rbx), 0x07ffffffffffffffn);
    assert.ok(c.rflags & Flag.CF); // neg of non-zero sets CF (not touches no flags)
    runCode(c, '4883d000 4819db', 2); // adc $0,%rax; sbb %rbx,%rbx
    assert.equal(c.getGpr(rax), 0n); // -1 + 0 + CF
    assert.equal(c.getGpr(rbx), 0xffffffffffffffffn); // CF from the adc wrap
    c.setGpr(rax, 0x20000n);
    runCode(c, 'c6007f 800001', 2); // movb $0x7f,(%rax); addb $1,(%rax)
    assert.equal(c.mem[0x20000], 0x80);
    assert.ok(c.rflags & Flag.OF);
  });

  it('conditional and indirect branches', () => {
    const c = bareCpu(true);
    c.setGpr(rax, 1n);
    c.setGpr(rbx, 2n);
    runCode(c, '4839d8 7205 9090909090 90', 2); // cmp %rbx,%rax; jb +5
    assert.equal(c.rip, BigInt(CODE + 10));
    c.setGpr(rax, 3n);
    runCode(c, '4839d8 7205', 2);
    assert.equal(c.rip, BigInt(CODE + 5));
    c.setGpr(rax, 0x123456n);
    runCode(c, 'ffe0'); // jmp *%rax
    assert.equal(c.rip, 0x123456n);
    c.mem.writeBigUInt64LE(0x4242n, 0x20000);
    c.setGpr(rax, 0x20000n);
    runCode(c, 'ff10'); // call *(%rax)
    assert.equal(c.rip, 0x4242n);
    assert.equal(c.mem.readBigUInt64LE(Number(c.getGpr(rsp))), BigInt(CODE + 2));
  });

  it('multi-byte nops, pause, cli/sti and hlt', () => {
    const c = bareCpu(true);
    runCode(c, '660f1f0400 0f1f00 6690 f390', 4);
    assert.equal(c.rip, BigInt(CODE + 12));
    c.rflags |= Flag.IF;
    runCode(c, 'fa');
    assert.equal(c.rflags & Flag.IF, 0);
    runCode(c, 'fb');
    assert.ok(c.rflags & Flag.IF);
    assert.equal(runCode(c, 'f4'), StepResult.Halt);
    assert.equal(c.rip, BigInt(CODE + 1));
  });

  it('reads and writes across pages, each page translated separately', () => {
    const c = bareCpu(true);
    // Remap virtual 0x201000 to physical 0x250000.
    c.mem.writeBigUInt64LE(0x250000n | 3n, 0x4000 + 8);
    c.mem.writeUInt32LE(0xaaaaaaaa, 0x200ffc);
    c.mem.writeUInt32LE(0xbbbbbbbb, 0x250000);
    c.setGpr(rbx, 0x200ffcn);
    runCode(c, '488b03'); // mov (%rbx),%rax
    assert.equal(c.getGpr(rax), 0xbbbbbbbbaaaaaaaan);
  });

  it('faults leave the instruction undone: #PF (with cr2), #GP, and #UD for everything outside the subset', () => {
    const c = bareCpu(true);
    c.setGpr(rax, 0x1111n);
    c.setGpr(rbx, BigInt(HOLE - 4));
    c.mem.writeUInt32LE(0x5a5a5a5a, HOLE - 4);
    assert.equal(runCode(c, '488903'), StepResult.Fault); // mov %rax,(%rbx): straddles into the hole
    assert.equal(c.fault?.vector, Vector.PF);
    assert.equal(c.cr2, BigInt(HOLE));
    assert.equal(c.rip, BigInt(CODE));
    assert.equal(c.mem.readUInt32LE(HOLE - 4), 0x5a5a5a5a);
    c.setGpr(rax, 0x0000800000000000n);
    assert.equal(runCode(c, 'ffe0'), StepResult.Fault); // jmp to a non-canonical address
    assert.equal(c.fault?.vector, Vector.GP);
    for (const [hex, what] of [
      ['48d1c0', 'rol'], ['f3a4', 'rep movsb'], ['0f0b', 'ud2'], ['480fafc3', 'imul'], ['0f94c0', 'sete'],
      ['f048ffc0', 'lock inc on a register'], ['f04839d8', 'lock cmp'],
    ]) {
      assert.equal(runCode(c, hex), StepResult.Fault, what);
      assert.equal(c.fault?.vector, Vector.UD, what);
      assert.equal(c.rip, BigInt(CODE), what);
    }
  });
});

describe('sim CPU, 32-bit protected mode with PAE', () => {
  it('0x40-0x4f are inc/dec, not REX', () => {
    const c = bareCpu(false);
    c.setGpr(rax, 0xffffffffn);
    c.setGpr(rcx, 0n);
    runCode(c, '40 49', 2); // inc %eax; dec %ecx
    assert.equal(c.getGpr(rax), 0n);
    assert.equal(c.getGpr(rcx), 0xffffffffn);
    assert.ok(c.rflags & Flag.SF);
  });

  it('absolute and moffs addressing, SIB without base', () => {
    const c = bareCpu(false);
    c.setGpr(rax, 0x12345678n);
    runCode(c, 'a300800000 8b1d00800000', 2); // mov %eax,0x8000; mov 0x8000,%ebx
    assert.equal(c.getGpr(rbx), 0x12345678n);
    c.setGpr(rax, 3n);
    c.mem.writeUInt32LE(9, 0x2000 + 12);
    runCode(c, 'ff048500200000'); // incl 0x2000(,%eax,4)
    assert.equal(c.mem.readUInt32LE(0x200c), 10);
  });

  it('a 4-byte stack: push imm8, pop, call, ret; ah writes', () => {
    const c = bareCpu(false);
    runCode(c, '6afe 58', 2); // push $-2; pop %eax
    assert.equal(c.getGpr(rax), 0xfffffffen);
    assert.equal(c.getGpr(rsp), BigInt(STACK));
    runCode(c, 'e801000000 f4 c3', 1); // call 1f; hlt; 1: ret
    assert.equal(c.getGpr(rsp), BigInt(STACK - 4));
    assert.equal(c.mem.readUInt32LE(STACK - 4), CODE + 5);
    c.step();
    assert.equal(c.rip, BigInt(CODE + 5));
    runCode(c, 'b878563412 b49a 0fb6cc', 3); // mov $0x12345678,%eax; movb $0x9a,%ah; movzbl %ah,%ecx
    assert.equal(c.getGpr(rax), 0x12349a78n);
    assert.equal(c.getGpr(rcx), 0x9an);
  });

  it('addresses wrap at 4 GiB and fs/gs overrides are refused', () => {
    const c = bareCpu(false);
    c.setGpr(rax, 0xfffffff0n);
    runCode(c, '8d4020'); // lea 0x20(%eax),%eax
    assert.equal(c.getGpr(rax), 0x10n);
    assert.equal(runCode(c, '658b0508000000'), StepResult.Fault); // mov %gs:8,%eax
    assert.equal(c.fault?.vector, Vector.UD);
  });
});
