// The file a snapshot is written to: every guest page at a fixed offset (a reserved
// header area, then pfn * 4096), so a page copied again in a later round is rewritten in
// place; zero pages stay holes (a sparse file). Written under a temporary name and
// renamed at the end, so a failed snapshot never leaves a file that looks complete.
import fs from 'fs';
import path from 'path';

export const PAGE = 4096;
/** Room for the ELF header, program headers and notes before the first page (a hole where unused). */
export const HEADER_AREA = 4 << 20;
const ZERO = Buffer.alloc(PAGE);

export class CoreFile {
  readonly path: string;
  readonly tmp: string;
  private fd: number;
  private closed = false;
  /** Pages holding data now (non-zero); a page that becomes zero is overwritten, never left stale. */
  private readonly nonZero = new Set<number>();
  /** Pages copied at least once (present in the guest). */
  readonly present = new Set<number>();
  /** Sees every non-zero page written (the VMCOREINFO finder). */
  inspect: ((pfn: number, page: Buffer) => void) | undefined;

  constructor(file: string) {
    this.path = path.resolve(file);
    this.tmp = path.join(path.dirname(this.path), `.${path.basename(this.path)}.${process.pid}.tmp`);
    this.fd = fs.openSync(this.tmp, 'w+', 0o600);
  }

  offsetOf(pfn: number): number {
    return HEADER_AREA + pfn * PAGE;
  }

  /** Store pages [pfn, pfn+n) from `data` (n pages); zero pages become (or stay) holes. */
  writePages(pfn: number, data: Buffer): void {
    const n = data.length / PAGE;
    let runStart = -1;
    const flush = (end: number) => {
      if (runStart < 0) return;
      fs.writeSync(this.fd, data, runStart * PAGE, (end - runStart) * PAGE, this.offsetOf(pfn + runStart));
      runStart = -1;
    };
    for (let i = 0; i < n; i++) {
      const p = pfn + i;
      this.present.add(p);
      const zero = data.subarray(i * PAGE, (i + 1) * PAGE).equals(ZERO);
      if (zero && !this.nonZero.has(p)) {
        flush(i);
        continue;
      }
      if (zero) {
        this.nonZero.delete(p);
      } else {
        this.nonZero.add(p);
        this.inspect?.(p, data.subarray(i * PAGE, (i + 1) * PAGE));
      }
      if (runStart < 0) runStart = i;
    }
    flush(n);
  }

  /** A page as stored (zeros for a hole). */
  readPage(pfn: number, into: Buffer = Buffer.alloc(PAGE)): Buffer {
    if (!this.nonZero.has(pfn)) return into.fill(0);
    fs.readSync(this.fd, into, 0, PAGE, this.offsetOf(pfn));
    return into;
  }

  writeHeader(data: Buffer): void {
    if (data.length > HEADER_AREA) throw new Error(`ELF headers of ${data.length} bytes do not fit the ${HEADER_AREA}-byte area`);
    fs.writeSync(this.fd, data, 0, data.length, 0);
  }

  /** Size the file (holes up to the last page), flush it to disk and give it its name. */
  commit(size: number): number {
    fs.ftruncateSync(this.fd, size);
    fs.fsyncSync(this.fd);
    fs.closeSync(this.fd);
    this.closed = true;
    fs.renameSync(this.tmp, this.path);
    return size;
  }

  /** Drop the temporary file (any failure). Idempotent. */
  discard(): void {
    if (!this.closed) {
      try { fs.closeSync(this.fd); } catch { /* already closed */ }
      this.closed = true;
    }
    try { fs.unlinkSync(this.tmp); } catch { /* already gone */ }
  }
}
