// A consistent core file of a guest. Live: the way live migration copies memory, with a
// pause instead of a suspend: log-dirty on, every page copied while the guest runs, then
// rounds of the pages dirtied meanwhile, then a pause for the last (small) round and the
// VCPU registers, and the guest runs on. Where Xen refuses log-dirty (PV without shadow
// paging, passthrough, someone else's log-dirty) it falls back to copying with the
// guest paused throughout, and says so. Log-dirty is turned off and our pause undone on
// every exit path. Stopped (`monitor snapshot`): the guest is already stopped by the
// debugger, so it is copied as it stands.
import fs from 'fs';
import { XenControl } from '../xg/xenctl';
import { SHADOW_LOGDIRTY_FINAL, ShadowOp } from '../xg/domctl';
import { Errno, UserError, XenError, isXenError } from '../xg/errors';
import { lookupGuest } from '../vcpu/lookup';
import { Guest } from '../vcpu/guest';
import { VcpuSet, losesHighGprs } from '../vcpu/vcpus';
import { CoreFile, HEADER_AREA, PAGE } from './coreFile';
import { copyPages, copyPagesSync } from './copier';
import { GuestFrames, enumerateFrames } from './memoryMap';
import { VcpuSnapshot, kernelWalkRoot, readVcpus } from './cpuState';
import { walkKernel } from './kernelMap';
import { buildLayout } from './layout';
import { buildHeaders, prstatus, qemuCpuNote, vmcoreinfoNote, xenCrashInfoNote } from './elfCore';
import { VmcoreinfoFinder } from './vmcoreinfo';

export interface SnapshotProgress {
  round: number;
  done: number;
  total: number;
  paused: boolean;
}

export interface RoundStat {
  round: number;
  /** Pages in this round (dirty pages after round 0). */
  pages: number;
  ms: number;
  paused: boolean;
}

export interface SnapshotOptions {
  /** Pre-copy rounds after the first full copy (default 5, as libxenguest). */
  maxRounds?: number;
  /** Pause once fewer pages than this are dirty (default 50, as libxenguest). */
  minDirty?: number;
  /** 'live' (default): pre-copy with log-dirty. 'stopped': the guest is already stopped; copy as it stands. */
  mode?: 'live' | 'stopped';
  signal?: AbortSignal;
  onProgress?: (p: SnapshotProgress) => void;
  /** Bytes someone else (the debugger's int3s) has in guest memory: their originals go in the file. */
  patches?: readonly { frame: bigint; offset: number; orig: number }[];
  /** Called between batches while the guest runs (tests: a guest writing memory meanwhile). */
  betweenBatches?: () => void | Promise<void>;
}

export interface SnapshotResult {
  file: string;
  /** The file's size, and the bytes it really occupies on disk (zero pages are holes). */
  size: number;
  allocated: number;
  /** How long the guest was paused by us (0 when it was already stopped). */
  pausedMs: number;
  totalMs: number;
  method: 'log-dirty pre-copy' | 'paused copy' | 'already stopped';
  /** Why log-dirty could not be used, for the paused copy. */
  fallbackReason?: string;
  rounds: RoundStat[];
  pagesCopied: number;
  /** Pages copied while the guest was paused by us (the last round; everything for a paused copy). */
  pagesWhilePaused: number;
  guestPages: number;
  vcpus: number;
  segments: number;
  width: 32 | 64;
  hvm: boolean;
  vmcoreinfo?: Map<string, string>;
  kernelText?: { va: bigint; pa: bigint };
  frames: string;
}

const now = () => Number(process.hrtime.bigint()) / 1e6;

/** Dirty pfns from a CLEAN/PEEK bitmap. */
function bitsSet(bitmap: Buffer, limit: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < bitmap.length; i++) {
    const b = bitmap[i];
    if (!b) continue;
    for (let k = 0; k < 8; k++) if (b & (1 << k) && i * 8 + k < limit) out.push(i * 8 + k);
  }
  return out;
}

/** Turn low-level failures into one sentence for the user. */
function explain(e: unknown, xc: XenControl, domid: number, core: CoreFile): unknown {
  let gone = false;
  try {
    const info = xc.getDomainInfo(domid);
    gone = info.dying;
  } catch (err) {
    gone = isXenError(err, Errno.ESRCH);
  }
  if (gone) return new UserError(`domain ${domid} went away during the snapshot (${(e as Error).message}); no file written`);
  const code = (e as NodeJS.ErrnoException).code;
  if (code && ['ENOSPC', 'EFBIG', 'EDQUOT', 'EIO', 'EROFS'].includes(code)) {
    return new UserError(`cannot write ${core.tmp}: ${code === 'ENOSPC' ? 'the disk is full' : (e as Error).message}; no file written (the guest runs on)`);
  }
  return e;
}

/**
 * Snapshot `domid` into `file`. Throws UserError for what the user can act on; the guest
 * is left running (unless it was stopped before), log-dirty off, no file behind.
 */
export async function snapshotDomain(xc: XenControl, domid: number, file: string, o: SnapshotOptions = {}): Promise<SnapshotResult> {
  const t0 = now();
  const info = lookupGuest(xc, domid, 'cannot snapshot dom0 (the domain this tool runs in): give a guest\'s domain id (`xl list`)');
  const mode = o.mode ?? 'live';
  const width = Guest.detectWidth(xc, domid, info);
  const v = xc.version();
  const vcpuSet = new VcpuSet(xc, domid, width, info, losesHighGprs(v.major, v.minor, v.extra));
  const frames = enumerateFrames(xc, domid, info, width);
  const core = new CoreFile(file);
  const finder = new VmcoreinfoFinder();
  core.inspect = (p, page) => finder.inspect(p, page);
  const rounds: RoundStat[] = [];
  let pagesCopied = 0;
  let pagesWhilePaused = 0;
  let pausedByUs = false;
  let logDirtyOurs = false;
  let pausedMs = 0;
  let fallbackReason: string | undefined;
  let method: SnapshotResult['method'] = mode === 'stopped' ? 'already stopped' : 'log-dirty pre-copy';
  let cpus: VcpuSnapshot[] = [];
  const aborted = () => {
    if (o.signal?.aborted) throw new UserError(`interrupted (${String(o.signal.reason ?? 'signal')}): no file written; the guest runs on, log-dirty off`);
  };
  const bitmap = Buffer.alloc(Math.ceil(frames.pfnSpace / 8));
  const clean = (final: boolean): number[] => {
    const r = xc.shadowOp(domid, ShadowOp.clean, final ? SHADOW_LOGDIRTY_FINAL : 0, bitmap);
    return bitsSet(bitmap, Math.min(Number(r.pages), frames.pfnSpace));
  };
  const present = new Set(frames.pfns);
  const pause = () => {
    xc.pauseDomain(domid);
    pausedByUs = true;
    return now();
  };
  const unpause = (since: number) => {
    xc.unpauseDomain(domid);
    pausedByUs = false;
    pausedMs += now() - since;
  };
  const stoppedCopy = (round: number) => {
    const t = now();
    const s = copyPagesSync(xc.hc, domid, frames, core, frames.pfns);
    rounds.push({ round, pages: s.copied, ms: now() - t, paused: true });
    pagesCopied += s.copied;
    return s.copied;
  };
  try {
    if (mode === 'live') {
      try {
        xc.logDirtyEnable(domid);
        logDirtyOurs = true;
      } catch (e) {
        if (!(e instanceof XenError) || ![Errno.EOPNOTSUPP, Errno.EINVAL, Errno.EBUSY].includes(e.errno as 95)) throw e;
        method = 'paused copy';
        fallbackReason = e.errno === Errno.EOPNOTSUPP
          ? 'Xen refused log-dirty for this guest (EOPNOTSUPP: a PV guest on a hypervisor without CONFIG_SHADOW_PAGING)'
          : `Xen refused log-dirty (${e.message}: passthrough devices, or log-dirty already in use, e.g. a migration)`;
      }
    }
    if (method === 'log-dirty pre-copy') {
      // Round 0: everything, while the guest runs.
      let t = now();
      const between = (round: number, total: number) => async (done: number) => {
        o.onProgress?.({ round, done, total, paused: false });
        await o.betweenBatches?.();
        await new Promise((r) => setImmediate(r));
        aborted();
      };
      let s = await copyPages(xc.hc, domid, frames, core, frames.pfns, between(0, frames.pfns.length));
      rounds.push({ round: 0, pages: s.copied, ms: now() - t, paused: false });
      pagesCopied += s.copied;
      const maxRounds = o.maxRounds ?? 5;
      const minDirty = o.minDirty ?? 50;
      let prev = Infinity;
      for (let round = 1; round <= maxRounds; round++) {
        // PEEK (stats only) decides; the pages stay dirty for the final CLEAN if we stop here.
        const n = xc.shadowOp(domid, ShadowOp.peek).dirtyCount;
        if (n <= minDirty || n >= 0.9 * prev) break;
        prev = n;
        t = now();
        const dirty = clean(false).filter((p) => present.has(p));
        s = await copyPages(xc.hc, domid, frames, core, dirty, between(round, dirty.length));
        rounds.push({ round, pages: s.copied, ms: now() - t, paused: false });
        pagesCopied += s.copied;
      }
      aborted();
      // The last round: paused, as short as we can make it.
      const p0 = pause();
      const dirty = clean(true).filter((p) => present.has(p));
      s = copyPagesSync(xc.hc, domid, frames, core, dirty);
      cpus = readVcpus(xc, domid, vcpuSet, info.hvm, width, frames);
      unpause(p0);
      rounds.push({ round: rounds.length, pages: s.copied, ms: now() - p0, paused: true });
      pagesCopied += s.copied;
      pagesWhilePaused += s.copied;
      o.onProgress?.({ round: rounds.length - 1, done: dirty.length, total: dirty.length, paused: true });
    } else if (method === 'paused copy') {
      const p0 = pause();
      pagesWhilePaused += stoppedCopy(0);
      cpus = readVcpus(xc, domid, vcpuSet, info.hvm, width, frames);
      unpause(p0);
    } else {
      stoppedCopy(0);
      cpus = readVcpus(xc, domid, vcpuSet, info.hvm, width, frames);
    }
    if (logDirtyOurs) {
      xc.logDirtyOff(domid);
      logDirtyOurs = false;
    }
    if (cpus.length === 0) throw new UserError(`domain ${domid} has no VCPU that is up`);
    // The debugger's int3s: the original bytes go in the file.
    for (const p of o.patches ?? []) {
      const pfn = frames.pfnOfFrame(Number(p.frame));
      if (pfn === undefined || !core.present.has(pfn)) continue;
      const page = core.readPage(pfn);
      page[p.offset] = p.orig;
      core.writePages(pfn, page);
    }
    // Headers last: the kernel's mappings come from the snapshot's own page tables.
    const root = kernelWalkRoot(cpus, info.hvm, width, frames);
    // Only what the snapshot holds: the kernel also maps device memory (APIC, HPET) that is no RAM.
    const held = (f: number) => {
      const p = frames.pfnOfFrame(f);
      return p !== undefined && core.present.has(p) ? p : undefined;
    };
    const walk = root ? walkKernel({ ...root, pfnOfFrame: held, readPage: (p) => core.readPage(p) }) : [];
    // PV: p_paddr by machine frame and Xen's crash-info note, for crash (see layout.ts).
    const fll = frames.p2mFrameListList;
    const layout = buildLayout(width, core.present, walk, (p) => core.offsetOf(p), fll === undefined ? undefined : (p) => frames.frameOf(p));
    const notes = Buffer.concat([
      ...cpus.map((c) => prstatus(width, c.vcpu, c.state)),
      ...(width === 64 ? cpus.map((c) => qemuCpuNote(c.state)) : []),
      ...(finder.text ? [vmcoreinfoNote(finder.text)] : []),
      ...(fll === undefined ? [] : [xenCrashInfoNote(v.major, v.minor, fll)]),
    ]);
    core.writeHeader(buildHeaders(width, notes, layout.loads));
    const size = core.commit(Math.max(layout.end, HEADER_AREA));
    const allocated = fs.statSync(core.path).blocks * 512;
    return {
      file: core.path, size, allocated, pausedMs, totalMs: now() - t0, method, fallbackReason, rounds, pagesCopied, pagesWhilePaused,
      guestPages: core.present.size, vcpus: cpus.length, segments: layout.loads.length, width, hvm: info.hvm,
      vmcoreinfo: finder.text ? finder.entries() : undefined, kernelText: layout.kernelText, frames: frames.how,
    };
  } catch (e) {
    core.discard();
    throw explain(e, xc, domid, core);
  } finally {
    if (pausedByUs) {
      try { xc.unpauseDomain(domid); } catch { /* gone */ }
    }
    if (logDirtyOurs) {
      try { xc.logDirtyOff(domid); } catch { /* gone */ }
    }
  }
}

/** Pages per second and the like, for the summary. */
export function pageBytes(pages: number): number {
  return pages * PAGE;
}

export type { GuestFrames };
