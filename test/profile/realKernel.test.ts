// The kallsyms finder on a real kernel: Debian's Linux image from the Xen lab's cache
// (the one the lab's guests run), decompressed, its LOAD segments standing in for guest
// memory. The functions it finds must be those of the lab's kallsyms.elf (made from
// /proc/kallsyms of the same kernel), at the same addresses. Skipped without the cache.
import { strict as assert } from 'assert';
import { execFileSync } from 'child_process';
import fs from 'fs';
import path from 'path';
import { MemReader, findKallsyms } from '../../src/profile/kallsyms';
import { parseElfSymbols } from '../../src/profile/symbols';

const CACHE = process.env.GDBSX_LAB_CACHE || '/var/cache/gdbsx-lab';

function labKernel(): { vmlinuz: string; kallsymsElf: string } | undefined {
  const dir = path.join(CACHE, 'linux');
  if (!fs.existsSync(dir)) return undefined;
  for (const d of fs.readdirSync(dir)) {
    const vmlinuz = path.join(dir, d, 'vmlinuz');
    const kallsymsElf = path.join(dir, d, 'kallsyms.elf');
    if (fs.existsSync(vmlinuz) && fs.existsSync(kallsymsElf)) return { vmlinuz, kallsymsElf };
  }
  return undefined;
}

/** The vmlinux inside a bzImage compressed with xz (Debian's). */
function extractVmlinux(vmlinuz: string): Buffer | undefined {
  const img = fs.readFileSync(vmlinuz);
  const at = img.indexOf(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]));
  if (at < 0) return undefined;
  try {
    // xz stops with an error at the bzImage's trailing bytes after the stream; its output is complete.
    return execFileSync('xz', ['-dc', '--single-stream'], { input: img.subarray(at), maxBuffer: 1 << 28 });
  } catch {
    return undefined;
  }
}

/** Guest memory as the ELF's LOAD segments place it. */
function elfMemory(b: Buffer): MemReader {
  const phoff = Number(b.readBigUInt64LE(0x20));
  const segs: { off: number; va: bigint; size: number }[] = [];
  for (let i = 0; i < b.readUInt16LE(0x38); i++) {
    const o = phoff + i * 56;
    if (b.readUInt32LE(o) === 1) segs.push({ off: Number(b.readBigUInt64LE(o + 8)), va: b.readBigUInt64LE(o + 16), size: Number(b.readBigUInt64LE(o + 32)) });
  }
  return {
    read(addr, len) {
      const s = segs.find((x) => addr >= x.va && addr < x.va + BigInt(x.size));
      if (!s) return Buffer.alloc(0);
      const start = Number(addr - s.va);
      return b.subarray(s.off + start, s.off + Math.min(s.size, start + len));
    },
    nextMapped(addr, limit) {
      const next = segs.filter((x) => x.va + BigInt(x.size) > addr && x.va < limit).sort((x, y) => (x.va < y.va ? -1 : 1))[0];
      if (!next) return undefined;
      return addr >= next.va ? addr : next.va;
    },
  };
}

describe('profile symbols: kallsyms of the lab\'s real Linux image', function () {
  this.timeout(120000);

  it('found in the image and equal to kallsyms.elf for (almost) every function', function () {
    const k = labKernel();
    if (!k) this.skip();
    const vmlinux = extractVmlinux((k as { vmlinuz: string }).vmlinuz);
    if (!vmlinux) this.skip();
    const found = findKallsyms(elfMemory(vmlinux as Buffer), 0xffffffff80000000n, 0xffffffffc0000000n);
    assert.ok(found, 'no kallsyms found in the image');
    const elf = parseElfSymbols(fs.readFileSync((k as { kallsymsElf: string }).kallsymsElf), 'kallsyms.elf');
    const mem = new Map<string, bigint>();
    for (const s of found.table.all()) if (!mem.has(s.name)) mem.set(s.name, s.addr);
    let same = 0;
    const differ: string[] = [];
    for (const s of elf.all()) {
      const a = mem.get(s.name);
      if (a === s.addr) same++;
      else if (a !== undefined) differ.push(s.name);
    }
    assert.equal(differ.length, 0, `at other addresses: ${differ.slice(0, 10).join(', ')}`);
    assert.ok(same > 0.99 * elf.size, `${same} of ${elf.size}`);
  });
});
