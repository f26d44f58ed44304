// The live view's window and frame, without a terminal: what a frame shows for known samples.
import { strict as assert } from 'assert';
import { LiveWindow, liveFrame } from '../../src/profile/live';
import { Naming } from '../../src/profile/report';
import { Sample } from '../../src/profile/profiler';

const naming: Naming = { symbols: undefined, symbolNote: 'none' };
const k = (vcpu: number, rip: bigint): Sample => ({ vcpu, mode: 'kernel', rip, cr3: 0x1000n });
const idle = (vcpu: number): Sample => ({ vcpu, mode: 'idle', rip: 0n, cr3: 0n });

describe('profile --live: window and frame', () => {
  it('the "last" columns count only the window; the whole-run columns count everything', () => {
    const w = new LiveWindow(naming);
    for (let t = 0; t < 10; t++) w.add([k(0, 0xaaan), idle(1)], t * 1000); // 10 s of one function and idle
    for (let t = 10; t < 13; t++) w.add([k(0, 0xbbbn), k(1, 0xbbbn)], t * 1000); // then 3 s of another
    const v = w.view(12500, 2); // the window: 10.5 .. 12.5 s -> the ticks at 11 and 12 s
    assert.equal(v.recent.length, 4);
    assert.deepEqual(v.recentByFunction, [{ key: '0xbbb', count: 4 }]);
    assert.equal(v.total, 26);
    assert.deepEqual(v.totalByFunction.map((r) => [r.key, r.count]), [['0xaaa', 10], ['[idle]', 10], ['0xbbb', 6]]);
    const f = liveFrame({ domid: 7, vcpus: 2, hz: 1, windowSeconds: 2, seconds: Infinity }, naming, v, 12500, 100, 40);
    assert.equal(f[0], 'gdbsx profile: domain 7, 2 VCPUs, 1 Hz, 12.5 s, 26 samples. Ctrl-C ends it and writes the profile.');
    assert.match(f.find((l) => l.startsWith('   1 '))!, /^ {3}1 +100\.0% +0\.0% +0\.0% +0\.0% +0\.0% +0xbbb \(cr3 0x1000\)$/);
    const i = f.findIndex((l) => l.startsWith('by function'));
    assert.match(f[i + 1], /^100\.0%  0xbbb +38\.5%  0xaaa$/);
    assert.ok(f.every((l) => l.length <= 100));
  });

  it('a frame fits the terminal: long names cut, no more lines than rows', () => {
    const w = new LiveWindow(naming);
    const many = Array.from({ length: 50 }, (_, i) => k(0, BigInt(0x1000 + i)));
    w.add(many, 0);
    const f = liveFrame({ domid: 1, vcpus: 1, hz: 97, windowSeconds: 5, seconds: 10 }, naming, w.view(0, 5), 0, 40, 12);
    assert.ok(f.length <= 12, String(f.length));
    assert.ok(f.every((l) => l.length <= 40), f.join('\n'));
    assert.match(f[0], /…$/);
  });
});
