// The guest kernel's VMCOREINFO: Linux keeps it as a ready-made ELF note at the start of
// a page (vmcoreinfo_note, CONFIG_VMCORE_INFO), "VMCOREINFO" then "OSRELEASE=...".
// crash takes phys_base and the KASLR offset from it; gdb users need KERNELOFFSET.
// Pages are looked at as they are copied; the last one seen wins (pages copied again
// in later rounds are newer).

const NAME = Buffer.from('VMCOREINFO\0', 'latin1');
const MAX_DESC = 4096 - 24;

export class VmcoreinfoFinder {
  private found: { pfn: number; text: Buffer } | undefined;

  /** Called for each non-zero page copied. */
  inspect(pfn: number, page: Buffer): void {
    if (page.readUInt32LE(0) !== NAME.length || page.readUInt32LE(8) !== 0) return;
    if (!page.subarray(12, 12 + NAME.length).equals(NAME)) return;
    const len = page.readUInt32LE(4);
    if (len === 0 || len > MAX_DESC) return;
    const text = page.subarray(24, 24 + len);
    if (!text.subarray(0, 10).equals(Buffer.from('OSRELEASE=', 'latin1'))) return;
    this.found = { pfn, text: Buffer.from(text) };
  }

  get text(): Buffer | undefined {
    return this.found?.text;
  }

  /** KEY=value pairs. */
  entries(): Map<string, string> {
    const m = new Map<string, string>();
    for (const line of (this.found?.text.toString('latin1') ?? '').split('\n')) {
      const i = line.indexOf('=');
      if (i > 0) m.set(line.slice(0, i), line.slice(i + 1).replace(/\0+$/, ''));
    }
    return m;
  }
}
