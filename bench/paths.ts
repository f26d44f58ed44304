// The page-walk memory path beside gdbsx_guestmemio: the rows (PathFigure) built from
// what the sim and lab suites measured, the same way for both environments.
import type { MemPathName, PathReads } from './direct';
import { Measure, PathFigure, Results, measure, pathFigure, throughput } from './model';
import { judgePath } from './targets';
import { summarize } from './stats';

const MiB = 1 << 20;

const LABEL: Record<MemPathName, string> = { pagewalk: 'page walk', gdbsx: 'gdbsx_guestmemio' };

function calls(c: PathReads['calls'][string] | undefined): string {
  if (!c) return '?';
  return Object.entries(c.byCmd).map(([k, v]) => `${k}×${v}`).join(', ') || 'none';
}

/** "mapForeign×19 (0.42 ms in them, of 3.8 ms)": how much of a read its hypercalls are, means over the same cold reads (the rest is the stub's own work). */
function share(r: PathReads | undefined, key: string, samples: number[] | undefined): string {
  const c = r?.calls[key];
  if (!c) return '?';
  const mean = samples?.length ? summarize(samples).mean : undefined;
  return `${calls(c)}${mean !== undefined ? ` (${c.msPerOp.toFixed(3)} ms in them, of ${mean.toFixed(3)} ms; means)` : ''}`;
}

/**
 * The direct rows: bulk reads cold and warm per size, and the small read. `where`
 * names the guest in the lab ('' on the simulator), `sym` the small read's symbol.
 */
export function directPathFigures(env: 'sim' | 'lab', reads: Partial<Record<MemPathName, PathReads>>, sizes: number[], request: number, sym: string, where: string, res: Results): PathFigure[] {
  const applies = env === 'lab' ? 'official' : 'indicative';
  const out: PathFigure[] = [];
  const tag = where ? ` (${where})` : '';
  const chunks = (b: number) => (b <= request ? `one ${b / MiB} MiB call` : `${Math.ceil(b / request)} calls of ${request / MiB} MiB`);
  const m = (p: MemPathName, what: string, samples: number[] | undefined, unit: 'MiB/s' | 'µs', bytes: number): Measure | undefined => {
    const r = reads[p];
    if (!r || !samples?.length) return undefined;
    return measure(`Guest.readMemory through the ${r.path} (Guest.attach memory: '${p}'), ${what}`, unit, unit === 'µs' ? samples.map((x) => x * 1000) : throughput(bytes, samples));
  };
  for (const b of sizes) {
    for (const mode of ['cold', 'warm'] as const) {
      const what = `${b / MiB} MiB in ${chunks(b)}, ${mode === 'cold' ? 'mappings dropped before each run (the first read after a stop)' : 'mappings of the previous read kept (a second read while stopped)'}`;
      const notes = mode === 'cold'
        ? [`per cold read: page walk ${share(reads.pagewalk, String(b), reads.pagewalk?.bulk[`${b}.cold`])}; gdbsx ${share(reads.gdbsx, String(b), reads.gdbsx?.bulk[`${b}.cold`])}`]
        : [];
      const f = pathFigure({
        id: `${env}.path.direct.${b / MiB}MiB.${mode}`, env, level: 'direct', name: `${b / MiB} MiB, ${mode}${tag}`, what: `Guest.readMemory, ${what}`,
        pagewalk: m('pagewalk', what, reads.pagewalk?.bulk[`${b}.${mode}`], 'MiB/s', b),
        gdbsx: m('gdbsx', what, reads.gdbsx?.bulk[`${b}.${mode}`], 'MiB/s', b),
        notes,
      });
      f.target = judgePath(f, applies);
      out.push(f);
    }
  }
  const what = `8 bytes at ${sym} (one 64-byte line), line cache and mappings dropped before each read`;
  const f = pathFigure({
    id: `${env}.path.direct.small`, env, level: 'direct', name: `8 bytes at ${sym}, cold${tag}`, what: `Guest.readMemory, ${what}`,
    pagewalk: m('pagewalk', what, reads.pagewalk?.small, 'µs', 8),
    gdbsx: m('gdbsx', what, reads.gdbsx?.small, 'µs', 8),
    notes: [`per read: page walk ${share(reads.pagewalk, 'small', reads.pagewalk?.small)}; gdbsx ${share(reads.gdbsx, 'small', reads.gdbsx?.small)}`],
  });
  if (reads.pagewalk && reads.gdbsx && reads.pagewalk.smallBytes !== reads.gdbsx.smallBytes) {
    f.notes.push(`the paths disagree on the bytes at ${sym}: page walk ${reads.pagewalk.smallBytes}, gdbsx ${reads.gdbsx.smallBytes}`);
  }
  f.target = judgePath(f, applies);
  out.push(f);
  const rel = reads.pagewalk?.release;
  if (rel?.length) {
    res.profile.notes.push(`${env}${tag}: dropping the page walk's mappings after a cold ${Math.max(...sizes) / MiB} MiB read (each resume does it): ` +
      `${summarize(rel).median.toFixed(3)} ms (median of ${rel.length})`);
  }
  for (const p of ['pagewalk', 'gdbsx'] as const) {
    for (const [k, c] of Object.entries(reads[p]?.calls ?? {})) {
      const what = k === 'small' ? `8 bytes at ${sym}, cold` : `${Number(k) / MiB} MiB cold read`;
      res.profile.domctls[`${env}${tag} direct: ${LABEL[p]}, ${what}`] = c;
    }
  }
  return out;
}

/** The gdb rows: the same `dump binary memory` against a stub with each memory path. */
export function gdbPathFigures(env: 'sim' | 'lab', dumps: Partial<Record<MemPathName, Record<string, number[]>>>, sizes: number[], where: string): PathFigure[] {
  const applies = env === 'lab' ? 'official' : 'indicative';
  const tag = where ? ` (${where})` : '';
  const out: PathFigure[] = [];
  for (const b of sizes) {
    const m = (p: MemPathName) => {
      const s = dumps[p]?.[String(b)];
      return s?.length ? measure(`dump binary memory, ${b / MiB} MiB, gdb -> stub with --memory ${p} (${LABEL[p]})`, 'MiB/s', throughput(b, s)) : undefined;
    };
    const f = pathFigure({
      id: `${env}.path.gdb.${b / MiB}MiB`, env, level: 'gdb', name: `dump ${b / MiB} MiB${tag}`, pagewalk: m('pagewalk'), gdbsx: m('gdbsx'),
      what: `dump binary memory of ${b / MiB} MiB, gdb -> the stub with its default --memory pagewalk and a second one started with --memory gdbsx, alternating in blocks`,
      notes: ['repeated dumps of one range while the guest is stopped: after the first of each block (not counted) the page walk finds its mappings'],
    });
    f.target = judgePath(f, applies);
    out.push(f);
  }
  return out;
}
