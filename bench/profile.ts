// Where the time goes: the stub's reply encoding per packet, the simulator's own
// speed, and the fixed cost of one packet round trip through gdb.
import { closeFrame, escapeBinary, frame, hexBlocksInto, hexRleInto, rleEncode } from '../src/gx/packet';
import { SimXen } from '../src/xg/sim';
import { keepBusy } from '../src/simDemo';
import { MiGdb } from '../test/support/mi';
import { now, summarize } from './stats';

/** µs per call: the median over batches, each batch long enough to time well. */
function timeLoop(fn: () => void, minMs = 150): number {
  fn();
  const per: number[] = [];
  const t0 = now();
  let calls = 0;
  while (now() - t0 < minMs || per.length < 5) {
    let batch = 0;
    const b0 = now();
    do {
      fn();
      batch++;
    } while (now() - b0 < 5);
    per.push(((now() - b0) / batch) * 1000);
    calls += batch;
    if (calls > 1e6) break;
  }
  return summarize(per).median;
}

/**
 * µs to turn a 64 KiB read into the framed `m` reply: the stub's path (hexBlocksInto
 * into a reused buffer + closeFrame, src/gx/session.ts hexReply), the path before it
 * (hex string -> latin1 Buffer -> rleEncode -> frame), the character-level RLE used for
 * small replies, and what a binary `x` reply (gdb >= 16) would cost.
 */
export function encodeCosts(data: Buffer, label: string): Record<string, number> {
  const out = Buffer.allocUnsafe(2 * data.length + 4);
  const r: Record<string, number> = {};
  r[`${label}: m reply path (hexBlocksInto + closeFrame, reused buffer)`] = timeLoop(() => {
    out[0] = 0x24;
    closeFrame(out, hexBlocksInto(data, out, 1));
  });
  r[`${label}: before: hex string, latin1, rleEncode, frame`] = timeLoop(() => { frame(rleEncode(Buffer.from(data.toString('hex'), 'latin1'))); });
  r[`${label}: character-level RLE (hexRleInto, small replies)`] = timeLoop(() => { hexRleInto(data, out, 1); });
  r[`${label}: binary x reply (escape + frame)`] = timeLoop(() => { frame(escapeBinary(data)); });
  out[0] = 0x24;
  r[`${label}: m reply bytes`] = closeFrame(out, hexBlocksInto(data, out, 1)).length;
  return r;
}

/**
 * The simulator's own speed: a domain like the benchmark's on a SimXen that runs only
 * when told (runSlice), so the figure is the interpreter's, not the guest's idling. The
 * demo halts after each timer tick's work: its hlt becomes a nop, so that it never idles.
 */
export function simSpeed(vcpus: number, width: 32 | 64, ms = 500): { instructionsPerSec: number; sliceMs: number } {
  const sim = new SimXen({ autoRun: false });
  try {
    const domid = sim.createDomain({ domid: 1, name: 'speed', vcpus, width, type: 'pv' });
    keepBusy(sim, domid);
    const count = () => sim.domainState(domid).instructions.reduce((a, b) => a + b, 0);
    for (let i = 0; i < 20; i++) sim.runSlice(); // warm up the interpreter (JIT)
    const i0 = count();
    const slices: number[] = [];
    const t0 = now();
    while (now() - t0 < ms || slices.length < 3) {
      const s0 = now();
      sim.runSlice();
      slices.push(now() - s0);
    }
    const dt = now() - t0;
    return { instructionsPerSec: ((count() - i0) / dt) * 1000, sliceMs: summarize(slices).median };
  } finally {
    sim.close();
  }
}

/** The fixed cost of one packet through gdb: `maint packet qC`, ms per run. */
export async function roundTrips(gdb: MiGdb, runs: number): Promise<number[]> {
  const out: number[] = [];
  await gdb.console('maintenance packet qC');
  for (let r = 0; r < runs; r++) {
    const res = await gdb.console('maintenance packet qC');
    out.push(res.done - res.sent);
  }
  return out;
}

/** The cost of a gdb command that sends no packet (`echo`): gdb and MI overhead, ms per run. */
export async function miBaseline(gdb: MiGdb, runs: number): Promise<number[]> {
  const out: number[] = [];
  await gdb.console('echo');
  for (let r = 0; r < runs; r++) {
    const res = await gdb.console('echo');
    out.push(res.done - res.sent);
  }
  return out;
}
