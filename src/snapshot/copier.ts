// Copies guest pages into the core file through foreign mappings, in batches of one
// MMAPBATCH each. A frame Xen refuses (ballooned out, a hole) is skipped and left out
// of the file. Between batches a caller may yield (the live pre-copy lets the guest
// and signals run) and report progress.
import { Hypercalls } from '../xg/hypercalls';
import { CoreFile, PAGE } from './coreFile';
import { GuestFrames } from './memoryMap';

export const BATCH = 1024;

export interface CopyStats {
  copied: number;
  skipped: number;
}

/** One batch: pfns ascending; contiguous ones are written together. */
function copyBatch(hc: Hypercalls, domid: number, frames: GuestFrames, core: CoreFile, pfns: readonly number[], buf: Buffer, stats: CopyStats): void {
  const m = hc.mapForeign(domid, pfns.map((p) => frames.frameOf(p)), false);
  try {
    const errs = m.errors;
    if (errs.every((e) => e === 0)) {
      m.read(0, buf.subarray(0, pfns.length * PAGE));
    } else {
      errs.forEach((e, i) => {
        if (e === 0) m.read(i * PAGE, buf.subarray(i * PAGE, (i + 1) * PAGE));
      });
    }
    let i = 0;
    while (i < pfns.length) {
      if (errs[i] !== 0) {
        stats.skipped++;
        i++;
        continue;
      }
      let j = i + 1;
      while (j < pfns.length && errs[j] === 0 && pfns[j] === pfns[j - 1] + 1) j++;
      core.writePages(pfns[i], buf.subarray(i * PAGE, j * PAGE));
      stats.copied += j - i;
      i = j;
    }
  } finally {
    m.unmap();
  }
}

/** Copy `pfns` without yielding (the guest is paused, or must not run in between). */
export function copyPagesSync(hc: Hypercalls, domid: number, frames: GuestFrames, core: CoreFile, pfns: readonly number[]): CopyStats {
  const stats = { copied: 0, skipped: 0 };
  const buf = Buffer.alloc(BATCH * PAGE);
  for (let i = 0; i < pfns.length; i += BATCH) copyBatch(hc, domid, frames, core, pfns.slice(i, i + BATCH), buf, stats);
  return stats;
}

/** Copy `pfns` while the guest runs, calling `between` after each batch (yield, progress, abort checks). */
export async function copyPages(hc: Hypercalls, domid: number, frames: GuestFrames, core: CoreFile, pfns: readonly number[],
  between: (done: number) => Promise<void>): Promise<CopyStats> {
  const stats = { copied: 0, skipped: 0 };
  const buf = Buffer.alloc(BATCH * PAGE);
  for (let i = 0; i < pfns.length; i += BATCH) {
    copyBatch(hc, domid, frames, core, pfns.slice(i, i + BATCH), buf, stats);
    await between(Math.min(i + BATCH, pfns.length));
  }
  return stats;
}
