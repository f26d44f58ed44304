// gdb's view after each of many stepi equals the simulated CPU's own state at that step's
// trap: one instruction per step, the same registers, the same stack bytes. Guards the
// stop path's shortcuts (cached contexts and VCPU lists, the line cache read ahead after
// a stop reply, table copies reused across stops): none may show gdb a stale value.
import assert from 'assert';
import { spawnSync } from 'child_process';
import { startStub, gdbBatch, gdbConnect as connect, Stub } from './harness';
import type { SimRegisters } from '../../src/xg/sim';

const STEPS = 300;
type Gpr = 'rax' | 'rbx' | 'rcx' | 'rdx' | 'rsi' | 'rdi' | 'rbp' | 'r8' | 'r9' | 'r10' | 'r11' | 'r12' | 'r13' | 'r14' | 'r15';
/** The GPRs compared, by the simulator's name, and what gdb calls each for the guest's width. */
const GPRS: Record<32 | 64, [Gpr, string][]> = {
  64: (['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rbp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'] as const).map((r) => [r, r]),
  32: (['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rbp'] as const).map((r) => [r, 'e' + r.slice(1)]),
};

interface Truth {
  regs: SimRegisters;
  /** The 16 bytes at rsp when the step trapped. */
  stack: Buffer;
  instructions: number;
}

/** One line per stepi: pc, sp, the GPRs, then the two words at sp (all hex). */
function probe(width: 32 | 64): string {
  const w = width === 64 ? 'unsigned long long' : 'unsigned int';
  const vals = [`(${w})$pc`, `(${w})$sp`, ...GPRS[width].map(([, r]) => `(${w})$${r}`), `*(${w} *)$sp`, `*(${w} *)($sp + ${width / 8})`];
  return `printf "STEP${' %llx'.repeat(vals.length)}\\n", ${vals.map((v) => `(unsigned long long)${v}`).join(', ')}`;
}

/** The demo function containing `pc` (the nearest demo_ symbol at or below it). */
function functionAt(stub: Stub, pc: bigint): string {
  let best: [string, bigint] | undefined;
  for (const [name, addr] of stub.sim.symbols(stub.domid)) {
    if (name.startsWith('demo_') && addr <= pc && (!best || addr > best[1])) best = [name, addr];
  }
  return best?.[0] ?? '?';
}

function word(b: Buffer, i: number, width: 32 | 64): bigint {
  return width === 64 ? b.readBigUInt64LE(8 * i) : BigInt(b.readUInt32LE(4 * i));
}

describe('stepi: gdb sees the simulated CPU as it is after each step', function () {
  this.timeout(120000);
  let stub: Stub;

  before(function () {
    if (spawnSync('gdb', ['--version']).status !== 0) throw new Error('gdb is not installed (.ci/run installs it: apt-get install gdb)');
  });
  afterEach(async () => {
    await stub?.close();
  });

  for (const [width, locking] of [[64, 'off'], [64, 'step'], [32, 'off']] as const) {
    it(`${width}-bit PV, ${STEPS} stepi on VCPU 0 (scheduler-locking ${locking}): pc, sp, every GPR and the stack at sp equal the CPU's at each trap, one instruction per step`, async () => {
      stub = await startStub({ vcpus: 2, width });
      const truth: Truth[] = [];
      const unsub = stub.sim.onStateChange((e) => {
        if (e.type !== 'trap' || e.domid !== stub.domid || e.vcpu !== 0 || e.kind !== 'step') return;
        const regs = stub.sim.registers(stub.domid, 0);
        truth.push({ regs, stack: stub.sim.readVirt(stub.domid, regs.rsp, 16, 0), instructions: stub.sim.domainState(stub.domid).instructions[0] });
      });
      try {
        const steps = Array.from({ length: STEPS }, () => ['stepi', probe(width)]).flat();
        const r = await gdbBatch([...connect(stub), 'thread 1', `set scheduler-locking ${locking}`, ...steps, 'detach'], 90000);
        assert.strictEqual(r.code, 0, r.stderr);
        const seen = r.stdout.split('\n').filter((l) => l.startsWith('STEP ')).map((l) => l.split(' ').slice(1).map((x) => BigInt('0x' + x)));
        assert.strictEqual(seen.length, STEPS, `gdb printed ${seen.length} steps\n${r.stdout.slice(-2000)}\n${r.stderr}`);
        assert.strictEqual(truth.length, STEPS, `the CPU trapped ${truth.length} times for ${STEPS} stepi`);
        const funcs = new Set<string>();
        for (let i = 0; i < STEPS; i++) {
          const [pc, sp, ...rest] = seen[i];
          const t = truth[i];
          const where = `step ${i + 1} (pc 0x${t.regs.rip.toString(16)})`;
          assert.strictEqual(pc, t.regs.rip, `${where}: gdb's pc`);
          assert.strictEqual(sp, t.regs.rsp, `${where}: gdb's sp`);
          const gprs = GPRS[width];
          gprs.forEach(([sim, gdb], k) => assert.strictEqual(rest[k], t.regs[sim], `${where}: gdb's ${gdb}`));
          assert.strictEqual(rest[gprs.length], word(t.stack, 0, width), `${where}: the word at sp as gdb reads it`);
          assert.strictEqual(rest[gprs.length + 1], word(t.stack, 1, width), `${where}: the word after it as gdb reads it`);
          if (i > 0) assert.strictEqual(t.instructions - truth[i - 1].instructions, 1, `${where}: instructions retired by the step`);
          funcs.add(functionAt(stub, pc));
        }
        // The steps went through calls and returns (the stack changed under the line cache).
        assert.ok(funcs.has('demo_work') && funcs.has('demo_tick'), `stepped through ${[...funcs].join(', ')}`);
      } finally {
        unsub();
      }
    });
  }
});
