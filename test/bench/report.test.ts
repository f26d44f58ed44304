// The report's reference gdbsx column (bench/report.ts): its figure or what it cannot do,
// our speed over its speed, and the goals against it.
import assert from 'assert';
import { Results, figure, measure, rate, throughput } from '../../bench/model';
import { markdown, refCellText, svg } from '../../bench/report';
import { judgeReference } from '../../bench/targets';
import { cannot } from '../../bench/reference';

function results(): Results {
  const MiB = 1 << 20;
  const read = figure({
    id: 'lab.read.1MiB', env: 'lab', group: 'Bulk memory read', name: '1 MiB (pv)',
    ours: measure('dump, ours', 'MiB/s', throughput(MiB, [20, 22, 24])), // ~45 MiB/s
    reference: measure('dump, gdbsx', 'MiB/s', throughput(MiB, [12000, 13000, 14000])), // 13 s
  });
  read.referenceTarget = judgeReference(read, 'read');
  const step = figure({
    id: 'lab.stepi', env: 'lab', group: 'Single-step', name: 'stepi (testkernel64)',
    ours: measure('stepi, ours', 'steps/s', rate([40, 50, 60])),
    reference: measure('stepi, gdbsx', 'steps/s', rate([100, 110, 120])),
  });
  step.referenceTarget = judgeReference(step, 'stepi');
  const dense = figure({
    id: 'lab.read.dense.4MiB', env: 'lab', group: 'Bulk memory read', name: '4 MiB of kernel text (pv)',
    ours: measure('dump, ours', 'MiB/s', throughput(4 * MiB, [100])),
    referenceNote: cannot('E01 | VCPU 0 in user mode'),
  });
  const sim = figure({ id: 'sim.stepi', env: 'sim', group: 'Single-step', name: 'stepi', ours: measure('stepi', 'steps/s', rate([5])) });
  return {
    schema: 1, startedAt: 'x', finishedAt: 'y', durationSec: 1,
    host: { hostname: 'h', cpus: 2, cpuModel: 'c', loadavgAtStart: [0], node: 'v', gdb: 'gdb', commit: 'abc' },
    config: {}, figures: [sim, read, step, dense], paths: [],
    profile: { dumps: [], packets: {}, hypercallsUs: {}, encodeUsPer64KiB: {}, roundTripMs: {}, whatIf: {}, domctls: {}, notes: [] },
    skipped: [],
  };
}

describe('bench report: the reference gdbsx column', () => {
  it('gives our speed over the reference\'s, whatever the unit', () => {
    const r = results();
    const read = r.figures.find((f) => f.id === 'lab.read.1MiB');
    const step = r.figures.find((f) => f.id === 'lab.stepi');
    assert.ok(read?.vsReference !== undefined && Math.abs(read.vsReference - 13000 / 22) < 1e-6, String(read?.vsReference));
    assert.ok(step?.vsReference !== undefined && Math.abs(step.vsReference - 110 / 50) < 1e-6, String(step?.vsReference));
    const t = figure({ id: 'lab.regs', env: 'lab', group: 'g', name: 'n', ours: measure('o', 'ms', [10]), reference: measure('r', 'ms', [30]) });
    assert.strictEqual(t.vsReference, 3);
  });

  it('judges the goals: reads 1000x, stepi 4x', () => {
    const r = results();
    const read = r.figures.find((f) => f.id === 'lab.read.1MiB');
    const step = r.figures.find((f) => f.id === 'lab.stepi');
    assert.strictEqual(read?.referenceTarget?.met, false); // ~591x
    assert.match(read?.referenceTarget?.value ?? '', /^591x gdbsx's$/);
    assert.strictEqual(step?.referenceTarget?.met, false); // 2.2x
    const faster = figure({ id: 'lab.stepi', env: 'lab', group: 'g', name: 'n', ours: measure('o', 'steps/s', [100]), reference: measure('r', 'steps/s', [20]) });
    assert.strictEqual(judgeReference(faster, 'stepi').met, true);
    const none = figure({ id: 'lab.stepi', env: 'lab', group: 'g', name: 'n', ours: measure('o', 'steps/s', [100]), referenceNote: cannot('x') });
    assert.deepStrictEqual([judgeReference(none, 'stepi').met, judgeReference(none, 'stepi').value], [null, 'cannot: x']);
  });

  it('puts the reference and the ratio in the lab table, and a cannot cell as text', () => {
    const md = markdown(results());
    const lab = md.slice(md.indexOf('## Xen lab'));
    const header = lab.split('\n').find((l) => l.startsWith('| Group |')) ?? '';
    assert.match(header, /\| reference gdbsx \| ours \/ gdbsx \(speed\) \|$/);
    const cols = (l: string) => l.split(/(?<!\\)\|/).slice(1, -1).map((c) => c.trim());
    assert.strictEqual(cols(header).length, 9);
    const readRow = lab.split('\n').find((l) => l.startsWith('| Bulk memory read | 1 MiB (pv)')) ?? '';
    assert.strictEqual(cols(readRow).length, 9);
    assert.match(cols(readRow)[7], /^0\.077 MiB\/s/);
    assert.strictEqual(cols(readRow)[8], '590.9×');
    const denseRow = lab.split('\n').find((l) => l.includes('4 MiB of kernel text')) ?? '';
    assert.strictEqual(cols(denseRow).length, 9, denseRow);
    assert.strictEqual(cols(denseRow)[7], 'cannot: E01 \\| VCPU 0 in user mode');
    assert.strictEqual(cols(denseRow)[8], '–');
    // The sim table has no reference: no extra columns there.
    const simHeader = md.slice(md.indexOf('## Simulated Xen')).split('\n').find((l) => l.startsWith('| Group |')) ?? '';
    assert.strictEqual(cols(simHeader).length, 7);
    // The goals are in the Targets table.
    assert.match(md, /\| bulk reads \(1 MiB\) at least 1000x the reference gdbsx's throughput .* \| 591x gdbsx's \| ❌ not met \|/);
    assert.strictEqual(refCellText(results().figures[0]), '–');
  });

  it('charts the ratios, with the cannot rows as text', () => {
    const pic = svg(results());
    assert.match(pic, /Ours vs the reference gdbsx/);
    assert.match(pic, />590.9×</);
    assert.match(pic, />cannot: E01 \| VCPU 0 in user mode</);
  });
});
