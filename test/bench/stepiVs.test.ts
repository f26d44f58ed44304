// The alternating stepi figures (bench/stepiVs.ts): ours against gdbserver on each of its
// programs, judged on the goal (our rate at least gdbserver's).
import assert from 'assert';
import { StepiRounds, roundRatios, stepiVsFigures } from '../../bench/stepiVs';
import { PacketTrace } from '../../bench/gdbFigures';

function trace(sent: number): PacketTrace {
  return { kinds: {}, sent, received: sent, bytesSent: 0, bytesReceived: 0, largestRead: 1, first: [] };
}

function rounds(oursMs: number, cMs: number, asmMs: number): StepiRounds {
  const ms = (x: number) => [x * 0.9, x, x * 1.1];
  return {
    rounds: 2, steps: 3,
    ms: { ours: ms(oursMs), gdbserver: ms(cMs), 'gdbserver-asm': ms(asmMs) },
    roundRates: { ours: [1000 / oursMs, 500 / oursMs], gdbserver: [1000 / cMs, 1000 / cMs], 'gdbserver-asm': [1000 / asmMs, 1000 / asmMs] },
    cpu: { ours: { gdb: 0.3, server: 0.5 }, gdbserver: { gdb: 0.3, server: 0.2 }, 'gdbserver-asm': { gdb: 0.3, server: 0.25 } },
    packets: { ours: trace(140), gdbserver: trace(112), 'gdbserver-asm': trace(178) },
    packetsPerStep: { ours: 7, gdbserver: 5.6, 'gdbserver-asm': 8.9 },
  };
}

describe('bench: stepi alternating with gdbserver', () => {
  it('one figure per gdbserver program, our time over its time, met only at or below 1x', () => {
    const [c, asm] = stepiVsFigures(rounds(1.0, 0.8, 1.25), 'stepi, gdb -> stub');
    assert.strictEqual(c.id, 'sim.ceiling.stepi');
    assert.strictEqual(asm.id, 'sim.ceiling.stepi.samecode');
    assert.ok(Math.abs((c.vsCeiling ?? 0) - 1.25) < 1e-9, String(c.vsCeiling));
    assert.ok(Math.abs((asm.vsCeiling ?? 0) - 0.8) < 1e-9, String(asm.vsCeiling));
    assert.strictEqual(c.target?.met, false);
    assert.strictEqual(c.target?.value, '1.25x gdbserver\'s time');
    assert.strictEqual(asm.target?.met, true);
    assert.match(asm.notes.join(' '), /ours 7\.0, gdbserver 8\.9/);
    assert.match(c.ceiling?.what ?? '', /C from GCC/);
    assert.match(asm.ceiling?.what ?? '', /hand-written assembly/);
  });

  it('notes our stub without its reply polling, from the same rounds', () => {
    const r = rounds(1.0, 0.8, 1.25);
    r.ms['ours-nopoll'] = [1.5, 1.6, 1.7];
    r.roundRates['ours-nopoll'] = [1000 / 1.6, 1000 / 1.6];
    r.cpu['ours-nopoll'] = { gdb: 0.3, server: 0.4 };
    const [c] = stepiVsFigures(r, 'stepi');
    assert.match(c.notes.join(' '), /--poll-us 0.*625 steps\/s, 2\.00x gdbserver's time; its process 0\.400 CPU ms/);
    assert.ok(Math.abs((c.vsCeiling ?? 0) - 1.25) < 1e-9, 'judged on the stub as shipped');
    assert.doesNotMatch(stepiVsFigures(rounds(1, 1, 1), 'x')[0].notes.join(' '), /poll/);
  });

  it('leaves out a gdbserver program that did not run', () => {
    const r = rounds(1, 1, 1);
    delete r.ms['gdbserver-asm'];
    assert.deepStrictEqual(stepiVsFigures(r, 'x').map((f) => f.id), ['sim.ceiling.stepi']);
  });

  it('gives each round\'s time ratio from its median rates', () => {
    const r = rounds(1.0, 0.8, 1.25);
    assert.deepStrictEqual(roundRatios(r, 'ours', 'gdbserver').map((x) => Math.round(x * 1000) / 1000), [1.25, 2.5]);
  });
});
