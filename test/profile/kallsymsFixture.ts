// Builds Linux-style compressed kallsyms tables (scripts/kallsyms.c's output) from a
// symbol list, for the decoder's tests: a token table where the unprintable byte codes
// stand for multi-character tokens, names as token bytes (with "big symbol" two-byte
// lengths), markers every 256 names, and s32 offsets from a relative base, in the
// layout of Linux up to 6.3 (offsets first) or of later kernels (offsets last), with or
// without kallsyms_seqs_of_names between the markers and the token table.

export interface FixtureSym {
  addr: bigint;
  type: string;
  name: string;
}

export interface Fixture {
  blob: Buffer;
  /** Offsets of the tables inside blob. */
  at: { names: number; tokenTable: number; tokenIndex: number; offsets: number; relativeBase: number; numSyms: number };
}

const MULTI = ['demo_', 'work', 'tick', 'rare', 'filler_', 'sym', '_x', 'ab', 'cd', 'ef', 'start', 'hook'];

function tokens(): string[] {
  const t: string[] = [];
  let m = 0;
  for (let i = 0; i < 256; i++) {
    if (i >= 0x21 && i <= 0x7e) t.push(String.fromCharCode(i));
    else t.push(m < MULTI.length ? MULTI[m++] : `q${i.toString(16)}`); // never used, but each token is non-empty
  }
  return t;
}

/** Greedy encoding with the longest token first. */
function encode(s: string, tok: string[]): number[] {
  const order = tok.map((x, i) => [x, i] as const).sort((a, b) => b[0].length - a[0].length);
  const out: number[] = [];
  for (let p = 0; p < s.length;) {
    const hit = order.find(([x]) => x.length > 0 && s.startsWith(x, p));
    if (!hit) throw new Error(`cannot encode '${s[p]}'`);
    out.push(hit[1]);
    p += hit[0].length;
  }
  return out;
}

export function buildKallsyms(symsIn: FixtureSym[], o: { layout: 'old' | 'new'; absolutePercpu: boolean; relativeBase: bigint; seqsOfNames?: boolean }): Fixture {
  const syms = [...symsIn].sort((a, b) => (a.addr < b.addr ? -1 : a.addr > b.addr ? 1 : 0));
  const tok = tokens();
  const parts: Buffer[] = [];
  let size = 0;
  const put = (b: Buffer) => {
    const at = size;
    parts.push(b);
    size += b.length;
    return at;
  };
  const align = () => {
    if (size % 8) put(Buffer.alloc(8 - (size % 8)));
  };
  const n = syms.length;
  const offsets = Buffer.alloc(4 * n);
  syms.forEach((s, i) => {
    const d = s.addr - o.relativeBase;
    offsets.writeInt32LE(Number(o.absolutePercpu ? -1n - d : d) | 0, 4 * i);
    if (!o.absolutePercpu) offsets.writeUInt32LE(Number(d), 4 * i);
  });
  const rb = Buffer.alloc(8);
  rb.writeBigUInt64LE(o.relativeBase);
  const num = Buffer.alloc(4);
  num.writeUInt32LE(n);
  const names: number[] = [];
  const markers: number[] = [];
  syms.forEach((s, i) => {
    if (i % 256 === 0) markers.push(names.length);
    const e = encode(s.type + s.name, tok);
    if (e.length > 0x7f) names.push((e.length & 0x7f) | 0x80, e.length >> 7);
    else names.push(e.length);
    names.push(...e);
  });
  const mk = Buffer.alloc(4 * markers.length);
  markers.forEach((v, i) => mk.writeUInt32LE(v, 4 * i));
  const tt = Buffer.from(tok.map((x) => x + '\0').join(''), 'latin1');
  const ti = Buffer.alloc(512);
  let off = 0;
  tok.forEach((x, i) => {
    ti.writeUInt16LE(off, 2 * i);
    off += x.length + 1;
  });
  // Something before the tables, as in a kernel's rodata.
  put(Buffer.from('some rodata before the tables\0', 'latin1'));
  align();
  const at = { names: 0, tokenTable: 0, tokenIndex: 0, offsets: 0, relativeBase: 0, numSyms: 0 };
  if (o.layout === 'old') {
    at.offsets = put(offsets);
    align();
    at.relativeBase = put(rb);
  }
  at.numSyms = put(num);
  align();
  at.names = put(Buffer.from(names));
  align();
  put(mk);
  align();
  if (o.seqsOfNames) {
    // kallsyms_seqs_of_names (Linux 6.2+, and Debian's 6.1): 3 bytes per symbol, the symbol numbers in name order.
    const order = syms.map((x, i) => [x.name, i] as const).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    const seqs = Buffer.alloc(3 * n);
    order.forEach(([, i], k) => seqs.writeUIntBE(i, 3 * k, 3));
    put(seqs);
    align();
  }
  at.tokenTable = put(tt);
  align();
  at.tokenIndex = put(ti);
  if (o.layout === 'new') {
    align();
    at.offsets = put(offsets);
    align();
    at.relativeBase = put(rb);
  }
  align();
  put(Buffer.from('and rodata after\0', 'latin1'));
  return { blob: Buffer.concat(parts), at };
}
