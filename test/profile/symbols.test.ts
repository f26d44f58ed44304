// Symbol sources: System.map text, an ELF's .symtab (the demo guest's, and a file shaped
// like the lab's kallsyms.elf), and Linux's compressed kallsyms found in guest memory.
import { strict as assert } from 'assert';
import fs from 'fs';
import os from 'os';
import path from 'path';
import { execFileSync } from 'child_process';
import { XenControl } from '../../src/xg/xenctl';
import { UserError } from '../../src/xg/errors';
import { DomainSampler } from '../../src/profile/sampler';
import { runProfile } from '../../src/profile/profiler';
import { parseElfSymbols, parseSystemMap, loadSymbolFile } from '../../src/profile/symbols';
import { WalkReader, findKallsyms } from '../../src/profile/kallsyms';
import { openSimTarget } from '../../src/profile/main';
import { leafName, tally } from '../../src/profile/report';
import { buildKallsyms, FixtureSym } from './kallsymsFixture';

const DEMO = path.resolve(__dirname, '..', '..', '..', 'guest', 'build', 'demo64.elf');

/** The demo's symbols as `nm` prints them (the reference the parsers are checked against). */
function nmSymbols(): { addr: bigint; type: string; name: string }[] {
  return execFileSync('nm', ['-n', DEMO], { encoding: 'latin1' }).trim().split('\n').map((l) => {
    const [a, type, name] = l.split(' ');
    return { addr: BigInt('0x' + a), type, name };
  });
}

/** Symbol names by address, in nm's order. */
function namesByAddr(syms: { addr: bigint; name: string }[]): Map<bigint, string[]> {
  const m = new Map<bigint, string[]>();
  // The linker's section markers (_text, _etext) are not functions: tables leave them out.
  for (const s of syms) if (!/^_(s?text|etext)$/.test(s.name)) m.set(s.addr, [...(m.get(s.addr) ?? []), s.name]);
  return m;
}

describe('profile symbols', () => {
  it('System.map: text symbols only, looked up by address (and a wrong file is one clear error)', () => {
    const nm = nmSymbols();
    const map = nm.map((s) => `${s.addr.toString(16).padStart(16, '0')} ${s.type} ${s.name}`).join('\n') + '\n';
    const t = parseSystemMap(map);
    const text = nm.filter((s) => /^[tTwW]$/.test(s.type));
    // Aliases (the linker's _text is demo_start): one function per address, named by one of them.
    const names = namesByAddr(text);
    assert.equal(t.size, names.size);
    for (const [addr, at] of names) {
      assert.ok(at.includes(t.nameOf(addr) as string), `0x${addr.toString(16)}: ${t.nameOf(addr)} is not one of ${at}`);
      assert.equal(t.nameOf(addr + 1n), t.nameOf(addr));
    }
    // Data symbols are not functions; the last function does not reach into data.
    assert.equal(t.addressOf('demo_banner'), undefined);
    assert.throws(() => parseSystemMap('this is not\na System.map\n'), (e: Error) => e instanceof UserError && /not "address type name"/.test(e.message));
  });

  it('ELF .symtab: STT_FUNC with sizes (demo) and untyped symbols of a text section (kallsyms.elf shape)', () => {
    const t = parseElfSymbols(fs.readFileSync(DEMO), 'demo');
    for (const [addr, at] of namesByAddr(nmSymbols().filter((x) => /^[tT]$/.test(x.type)))) {
      assert.equal(t.nameOf(addr), at[0], at.join(', '));
    }
    // Sized: past demo_panic's 2 bytes nothing is named.
    const panic = t.addressOf('demo_panic') as bigint;
    assert.equal(t.nameOf(panic + 1n), 'demo_panic');
    assert.equal(t.nameOf(panic + 2n), undefined);
    // A kallsyms.elf-like file: NOTYPE symbols in a NOBITS executable section, built the way the lab builds it.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gdbsx-ksym-'));
    try {
      fs.writeFileSync(path.join(dir, 'e.s'), '.text\n');
      fs.writeFileSync(path.join(dir, 'k.ld'), 'SECTIONS { .text 0xffffffff81000000 (NOLOAD) : { alpha = 0x0; beta = 0x40; gamma = 0x1000; . = 0x1010; } }\n');
      execFileSync('as', ['--64', '-o', path.join(dir, 'e.o'), path.join(dir, 'e.s')]);
      execFileSync('ld', ['-m', 'elf_x86_64', '-T', path.join(dir, 'k.ld'), '-o', path.join(dir, 'k.elf'), path.join(dir, 'e.o')]);
      const k = loadSymbolFile(path.join(dir, 'k.elf'), 'vmlinux');
      assert.equal(k.nameOf(0xffffffff81000010n), 'alpha');
      assert.equal(k.nameOf(0xffffffff81000040n), 'beta');
      assert.equal(k.nameOf(0xffffffff81000fffn), 'beta');
      assert.equal(k.nameOf(0xffffffff81001004n), 'gamma');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    assert.throws(() => parseElfSymbols(Buffer.from('not an elf at all, no not at all, certainly not an ELF file')), /not a usable ELF/);
    assert.throws(() => loadSymbolFile('/nonexistent/vmlinux', 'vmlinux'), /cannot read symbol file \/nonexistent\/vmlinux: ENOENT/);
  });

  for (const variant of [
    { layout: 'old', absolutePercpu: true, seqsOfNames: false },
    { layout: 'old', absolutePercpu: true, seqsOfNames: true },
    { layout: 'new', absolutePercpu: false, seqsOfNames: true },
  ] as const) {
    it(`kallsyms in guest memory (${variant.layout} layout, ${variant.absolutePercpu ? 'absolute-percpu' : 'relative'} offsets${variant.seqsOfNames ? ', seqs_of_names' : ''}): found, decoded, and the profile names the demo's functions by it`, async () => {
      const t = openSimTarget({ type: 'pv', vcpus: 2 });
      try {
        const demo = nmSymbols().filter((s) => /^[tTdDbBrR]$/.test(s.type));
        // The demo's symbols, more than 256 filler functions (several markers) and one long name (a two-byte length).
        const syms: FixtureSym[] = [...demo];
        for (let i = 0; i < 700; i++) syms.push({ addr: 0xffffffff81100000n + BigInt(i * 32), type: i % 3 ? 't' : 'T', name: `filler_sym${i}` });
        syms.push({ addr: 0xffffffff81200000n, type: 'T', name: 'x'.repeat(140) });
        const fx = buildKallsyms(syms, { ...variant, relativeBase: 0xffffffff81000000n });
        // Into guest RAM, seen through the direct map, the way rodata is seen in the kernel image.
        const pa = 0x2000000 + 0x123 * 8;
        t.sim.writePhys(t.domid, pa, fx.blob);
        const dm = t.sim.layout(t.domid).directMap;
        const sampler = DomainSampler.open(new XenControl(t.hc), t.domid);
        const r = new WalkReader(t.hc, t.domid, 64, sampler.kernelRoot() as NonNullable<ReturnType<DomainSampler['kernelRoot']>>);
        const k = findKallsyms(r, dm + 0x1000000n, dm + 0x3000000n, 0xffffffff80000000n);
        r.close();
        assert.ok(k, 'kallsyms not found');
        assert.equal(k.tables.names, dm + BigInt(pa + fx.at.names));
        assert.equal(k.tables.tokenIndex, dm + BigInt(pa + fx.at.tokenIndex));
        assert.equal(k.tables.numSyms, syms.length);
        const textSyms = syms.filter((s) => /^[tTwW]$/.test(s.type));
        const byAddr = namesByAddr(textSyms);
        assert.equal(k.table.size, byAddr.size);
        for (const [addr, at] of byAddr) assert.ok(at.includes(k.table.nameOf(addr) as string), `0x${addr.toString(16)}: ${k.table.nameOf(addr)} is not one of ${at}`);
        // And profiling with it.
        const p = await runProfile(sampler, { hz: 100, seconds: 1, calibrateMs: Infinity });
        const rows = tally(p.samples.filter((s) => s.mode === 'kernel'), (s) => leafName({ symbols: k.table, symbolNote: '' }, s));
        assert.equal(rows[0].key, 'demo_work');
        assert.ok(rows.every((x) => x.key.startsWith('demo_')), rows.map((x) => x.key).join(', '));
        assert.equal(t.sim.liveMappings(t.domid), 0);
      } finally {
        t.close();
      }
    });
  }

  it('no kallsyms in the demo guest: the search says so and the CLI falls back to the demo ELF', () => {
    const t = openSimTarget({ type: 'pvh', vcpus: 1 });
    try {
      const sampler = DomainSampler.open(new XenControl(t.hc), t.domid);
      const r = new WalkReader(t.hc, t.domid, 64, sampler.kernelRoot() as NonNullable<ReturnType<DomainSampler['kernelRoot']>>);
      assert.equal(findKallsyms(r, 0xffffffff80000000n, 0xffffffffc0000000n), undefined);
      r.close();
    } finally {
      t.close();
    }
  });
});
