// The profiler against the simulated Xen's ground truth: the simulator counts the
// instructions each VCPU retires by address (SimXen.tallyPcs) while the profiler
// samples from outside; the functions' shares of the samples must match the shares of
// the instructions.
import { strict as assert } from 'assert';
import fs from 'fs';
import { XenControl } from '../../src/xg/xenctl';
import { DomainSampler } from '../../src/profile/sampler';
import { runProfile } from '../../src/profile/profiler';
import { parseElfSymbols, SymbolTable } from '../../src/profile/symbols';
import { openSimTarget } from '../../src/profile/main';
import { inclusive, leafName, tally, textReport } from '../../src/profile/report';
import { StackWalker } from '../../src/profile/stacks';

/** Share of each function in a count map (address -> count). */
function shares(counts: Map<string, number>): Map<string, number> {
  const total = [...counts.values()].reduce((a, b) => a + b, 0);
  return new Map([...counts].map(([k, v]) => [k, v / total]));
}

function truthByFunction(tallyMap: Map<bigint, number>, syms: SymbolTable): Map<string, number> {
  const m = new Map<string, number>();
  for (const [pc, n] of tallyMap) {
    const name = syms.nameOf(pc) ?? '[unknown kernel]';
    m.set(name, (m.get(name) ?? 0) + n);
  }
  return shares(m);
}

const pct = (x: number) => (100 * x).toFixed(1) + '%';

for (const type of ['pv', 'pvh'] as const) {
  describe(`profile on the simulated Xen (${type})`, function () {
    this.timeout(60000);

    it('the busiest functions and their shares match the instructions the simulator counted', async () => {
      const t = openSimTarget({ type, vcpus: 2 });
      try {
        const syms = parseElfSymbols(fs.readFileSync(t.symbolFile as string), 'demo');
        const sampler = DomainSampler.open(new XenControl(t.hc), t.domid);
        t.sim.tallyPcs(t.domid);
        const before = t.sim.domainState(t.domid).instructions.reduce((a, b) => a + b, 0);
        // No rate check: this machine may be loaded; the shares do not depend on the rate.
        const p = await runProfile(sampler, { hz: 200, seconds: 5, calibrateMs: Infinity });
        const truth = truthByFunction(t.sim.pcTally(t.domid), syms);
        const busy = p.samples.filter((s) => s.mode === 'kernel');
        assert.ok(busy.length >= 400, `only ${busy.length} kernel samples`);
        assert.ok(t.sim.domainState(t.domid).instructions.reduce((a, b) => a + b, 0) > before, 'the guest ran');
        // Nothing the guest runs is in user mode, and its one address space is the kernel's.
        assert.equal(p.samples.filter((s) => s.mode === 'user').length, 0);
        assert.equal(new Set(busy.map((s) => s.cr3)).size, 1);
        assert.equal(busy[0].cr3, BigInt(t.sim.layout(t.domid).cr3));
        const naming = { symbols: syms, symbolNote: 'demo' };
        const got = shares(new Map(tally(busy, (s) => leafName(naming, s)).map((r) => [r.key, r.count])));
        const table = [...truth].sort((a, b) => b[1] - a[1]).map(([f, s]) => `${f}: truth ${pct(s)}, profile ${pct(got.get(f) ?? 0)}`).join('\n  ');
        const top = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1])[0][0];
        assert.equal(top(got), top(truth), `top function differs:\n  ${table}`);
        for (const [f, s] of truth) {
          if (s < 0.02) continue;
          const diff = Math.abs((got.get(f) ?? 0) - s);
          assert.ok(diff < 0.05, `${f} is off by ${pct(diff)}:\n  ${table}`);
        }
        assert.equal(t.sim.domainState(t.domid).controllerPauseCount, 0, 'left paused');
        assert.equal(t.sim.liveMappings(t.domid), 0);
      } finally {
        t.close();
      }
    });

    it('a domain destroyed mid-profile ends it with what was sampled', async () => {
      const t = openSimTarget({ type, vcpus: 2 });
      try {
        const sampler = DomainSampler.open(new XenControl(t.hc), t.domid);
        setTimeout(() => t.sim.destroyDomain(t.domid), 700);
        const p = await runProfile(sampler, { hz: 50, seconds: 20, calibrateMs: Infinity });
        assert.equal(p.endedBy, 'domain gone');
        assert.ok(p.samples.length > 0 && p.elapsedMs < 10000, `${p.samples.length} samples in ${p.elapsedMs} ms`);
      } finally {
        t.close();
      }
    });

    it('a domain that shuts down mid-profile ends it (its frozen VCPUs are not counted as busy)', async () => {
      const t = openSimTarget({ type, vcpus: 2 });
      try {
        const sampler = DomainSampler.open(new XenControl(t.hc), t.domid);
        setTimeout(() => t.sim.shutdownDomain(t.domid, 'reboot'), 500);
        const p = await runProfile(sampler, { hz: 50, seconds: 20, calibrateMs: Infinity });
        assert.equal(p.endedBy, 'domain shut down');
        assert.ok(p.elapsedMs < 5000, `ran ${p.elapsedMs} ms`);
      } finally {
        t.close();
      }
    });

    it('--stacks: samples in demo_work are called from demo_start, through its frame pointer', async () => {
      const t = openSimTarget({ type, vcpus: 2 });
      try {
        const syms = parseElfSymbols(fs.readFileSync(t.symbolFile as string), 'demo');
        const sampler = DomainSampler.open(new XenControl(t.hc), t.domid);
        const stacks = new StackWalker(t.hc, t.domid, 64, syms);
        const p = await runProfile(sampler, { hz: 100, seconds: 2, stacks, calibrateMs: Infinity });
        const work = p.samples.filter((s) => s.mode === 'kernel' && syms.nameOf(s.rip) === 'demo_work');
        assert.ok(work.length > 20, `${work.length} samples in demo_work`);
        // demo_work's frame exists once its prologue ran (push rbp; mov rsp, rbp): most samples.
        const framed = work.filter((s) => (s.callers ?? []).length > 0);
        assert.ok(framed.length > work.length / 2, `${framed.length} of ${work.length} with callers`);
        for (const s of framed) assert.equal(syms.nameOf((s.callers as bigint[])[0] - 1n), 'demo_start');
        assert.equal(t.sim.liveMappings(t.domid), 0, 'mappings left');
      } finally {
        t.close();
      }
    });

    it('--stacks: callers found where rbp is still the caller\'s (a frameless leaf, a prologue, a ret); the inclusive table puts the loop first', async () => {
      const t = openSimTarget({ type, vcpus: 2 });
      try {
        const syms = parseElfSymbols(fs.readFileSync(t.symbolFile as string), 'demo');
        const sampler = DomainSampler.open(new XenControl(t.hc), t.domid);
        const stacks = new StackWalker(t.hc, t.domid, 64, syms);
        const p = await runProfile(sampler, { hz: 100, seconds: 2, stacks, calibrateMs: Infinity });
        // demo_tick has no frame (lea; incq; ret): every sample in it is called from demo_start.
        const tick = p.samples.filter((s) => s.mode === 'kernel' && syms.nameOf(s.rip) === 'demo_tick');
        assert.ok(tick.length > 3, `${tick.length} samples in demo_tick`);
        for (const s of tick) assert.equal(syms.nameOf((s.callers ?? [0n])[0] - 1n), 'demo_start', `demo_tick+0x${(s.rip - syms.lookup(s.rip)!.sym.addr).toString(16)}`);
        // Every sample in demo_work, at any instruction (its first ones included), has demo_start above it.
        const work = p.samples.filter((s) => s.mode === 'kernel' && syms.nameOf(s.rip) === 'demo_work');
        for (const s of work) assert.equal(syms.nameOf((s.callers ?? [0n])[0] - 1n), 'demo_start', `demo_work+0x${(s.rip - syms.lookup(s.rip)!.sym.addr).toString(16)}`);
        const rows = inclusive(p.samples, { symbols: syms, symbolNote: '' });
        assert.equal(rows[0].key, 'demo_start');
        assert.ok(rows[0].count >= 0.95 * p.samples.length, `${rows[0].count} of ${p.samples.length}`);
        const text = textReport(p, { symbols: syms, symbolNote: '' });
        assert.equal((text.match(/^ {4}by function, with what it called \(inclusive\)$/gm) ?? []).length, 3);
        assert.doesNotMatch(textReport({ ...p, samples: p.samples.map(({ callers: _c, ...s }) => s) }, { symbols: syms, symbolNote: '' }), /inclusive/);
      } finally {
        t.close();
      }
    });
  });
}
