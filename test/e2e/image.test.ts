// The demo kernel's image is mapped as a real kernel maps its own: text, rodata, data and
// bss contiguously from _text up to the 2 MiB boundary after _end (Linux's
// cleanup_highmap), nothing below _text. gdb reads around pc and dumps whole ranges;
// near the image's first and last addresses that must work as on a real guest.
// Also what gdb sees of the idle demo: VCPUs asleep after their hlt, woken by the timer.
import assert from 'assert';
import fs from 'fs';
import os from 'os';
import path from 'path';
import { spawnSync } from 'child_process';
import { startStub, gdbBatch, gdbConnect as connect, MiClient, Stub, symbols, sleep } from './harness';
import { parseElf } from '../../src/xg/sim/elf';

const PAGE = 4096n;

/** `x/64xb ADDR` printed 64 bytes from ADDR on (8 lines of 8). */
function assertDumped(out: string, addr: bigint, what: string): void {
  const lines = [...out.matchAll(new RegExp(`^0x([0-9a-f]+)(?: <[^>]*>)?:((?:\\s+0x[0-9a-f]{2})+)$`, 'gm'))]
    .map((m) => ({ at: BigInt('0x' + m[1]), n: m[2].trim().split(/\s+/).length }))
    .filter((l) => l.at >= addr && l.at < addr + 64n);
  const n = lines.reduce((s, l) => s + l.n, 0);
  assert.strictEqual(n, 64, `${what}: 64 bytes from 0x${addr.toString(16)}\n${out}`);
}

for (const width of [64, 32] as const) {
  describe(`gdb reads the demo kernel's image as on a real guest (${width}-bit)`, function () {
    this.timeout(60000);
    let stub: Stub;
    let dir: string;

    before(function () {
      if (spawnSync('gdb', ['--version']).status !== 0) throw new Error('gdb is not installed (.ci/run installs it: apt-get install gdb)');
    });
    beforeEach(() => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gdbsx-image-'));
    });
    afterEach(async () => {
      await stub?.close();
      fs.rmSync(dir, { recursive: true, force: true });
    });

    it('around its first and last code addresses, across its end, and all of it from _text to _end', async () => {
      stub = await startStub({ width });
      const sym = symbols(stub.image);
      const at = (name: string): bigint => {
        const a = sym.get(name);
        assert.ok(a !== undefined, `the demo kernel has ${name}`);
        return a;
      };
      const [text, etext, end] = [at('_text'), at('_etext'), at('_end')];
      const ahead = path.join(dir, 'ahead.bin');
      const behind = path.join(dir, 'behind.bin');
      const whole = path.join(dir, 'whole.bin');
      const r = await gdbBatch([...connect(stub),
        // The first code address and the pages after it, as gdb reads ahead from a pc.
        'x/64xb _text',
        `dump binary memory ${ahead} (char*)&_text (char*)&_text+4*4096`,
        // The last code address: across its page's end, and the pages after it.
        'x/64xb (char *) &_etext - 32',
        `x/64xb 0x${((etext & ~(PAGE - 1n)) + PAGE - 32n).toString(16)}`,
        `dump binary memory ${behind} (char*)&_etext-64 (char*)&_etext+4*4096`,
        // Across the image's last byte (the bss) into the rest of its mapping.
        'x/64xb (char *) &_end - 32',
        // Everything from the first byte to the last, by symbols (dump's expressions end at a space).
        `dump binary memory ${whole} (char*)&_text (char*)&_end`,
        // Below _text a 64-bit kernel maps nothing (cleanup_highmap); a 32-bit one's image
        // lies in the direct map of all RAM.
        'x/8xb (char *) &_text - 8',
        'detach']);
      const out = r.stdout + r.stderr;
      assertDumped(r.stdout, text, 'the first code address');
      assertDumped(r.stdout, etext - 32n, 'the last code address');
      assertDumped(r.stdout, (etext & ~(PAGE - 1n)) + PAGE - 32n, 'across the last code page');
      assertDumped(r.stdout, end - 32n, 'across _end');
      if (width === 64) assert.match(out, new RegExp(`Cannot access memory at address 0x${(text - 8n).toString(16)}`), 'below _text');
      assert.strictEqual((out.match(/Cannot access memory/g) ?? []).length, width === 64 ? 1 : 0, out);
      assert.strictEqual(fs.statSync(ahead).size, 4 * 4096, out);
      assert.strictEqual(fs.statSync(behind).size, 64 + 4 * 4096, out);
      // The whole image, byte for byte: code and read-only data as in the ELF file.
      const image = fs.readFileSync(whole);
      assert.strictEqual(BigInt(image.length), end - text);
      for (const s of parseElf(fs.readFileSync(stub.image), stub.image).segments) {
        if (s.vaddr >= at('_sdata')) continue; // data and bss change as the guest runs
        const off = Number(s.vaddr - text);
        assert.ok(image.subarray(off, off + s.data.length).equals(s.data), `segment at 0x${s.vaddr.toString(16)} as in the ELF`);
      }
    });
  });
}

describe('gdb and the idle demo guest', function () {
  this.timeout(60000);
  let stub: Stub;

  afterEach(async () => {
    await stub?.close();
  });

  it('Ctrl-C finds halted VCPUs just after their hlt; continue, breakpoints and stepi go on from there', async () => {
    // A slow timer, so that the VCPUs are asleep whenever gdb looks (they work ~0.1 ms a tick).
    stub = await startStub({ vcpus: 2, xen: { timerHz: 2 } });
    const idle = symbols(stub.image).get('demo_idle');
    assert.ok(idle);
    const mi = new MiClient();
    try {
      await mi.cmd(`-file-exec-and-symbols ${stub.image}`);
      await mi.cmd('-gdb-set mi-async on');
      await mi.cmd(`-target-select remote 127.0.0.1:${stub.port}`);
      const since = mi.asyncRecords.length;
      assert.strictEqual((await mi.cmd('-exec-continue')).cls, 'running');
      await sleep(200);
      await mi.cmd('-exec-interrupt');
      const stopped = (await mi.waitAsync(/^\*stopped/, since, 10000)).line;
      assert.match(stopped, /reason="signal-received",signal-name="SIGINT"/);
      const st = stub.sim.domainState(stub.domid);
      assert.ok(st.halted.some(Boolean), `some VCPU asleep in hlt: ${JSON.stringify(st.halted)}`);
      for (let v = 0; v < 2; v++) {
        if (!st.halted[v]) continue;
        const pc = await mi.cmd(`-data-evaluate-expression --thread ${v + 1} $pc`);
        assert.match(pc.text, new RegExp(`0x${(idle + 2n).toString(16)} <demo_idle\\+2>`), `thread ${v + 1}`);
        const insn = await mi.cmd(`-data-disassemble --thread ${v + 1} -s ${idle + 1n} -e ${idle + 2n} -- 0`);
        assert.match(insn.text, /inst="hlt"/, `thread ${v + 1}: the instruction before pc is its hlt`);
      }
      // stepi from the hlt: the VCPU runs on when the timer wakes it (its ret).
      const s1 = mi.asyncRecords.length;
      const halted = st.halted.indexOf(true) + 1;
      await mi.cmd(`-thread-select ${halted}`);
      await mi.cmd('-gdb-set scheduler-locking on');
      assert.strictEqual((await mi.cmd('-exec-step-instruction')).cls, 'running');
      const stepped = (await mi.waitAsync(/^\*stopped/, s1, 10000)).line;
      assert.match(stepped, /reason="end-stepping-range"/);
      assert.match(stepped, /func="demo_start"/, 'demo_idle returned to the loop');
      await mi.cmd('-gdb-set scheduler-locking off');
      // A breakpoint in the periodic work is hit once the timer wakes the VCPUs.
      await mi.cmd('-break-insert demo_tick');
      for (let round = 0; round < 2; round++) {
        const s2 = mi.asyncRecords.length;
        assert.strictEqual((await mi.cmd('-exec-continue')).cls, 'running');
        const hit = (await mi.waitAsync(/^\*stopped/, s2, 10000)).line;
        assert.match(hit, /reason="breakpoint-hit".*func="demo_tick"/);
      }
      await mi.cmd('-break-delete');
      await mi.cmd('-target-detach');
    } finally {
      await mi.quit();
    }
  });
});
