// The file formats other tools open: folded stacks (flamegraph.pl, speedscope,
// inferno), speedscope's JSON (a sampled profile per VCPU) and pprof (gzipped
// profile.proto through pprof-format; `go tool pprof`, speedscope, Pyroscope).
import zlib from 'zlib';
import { Function as PFunction, Label, Line, Location, Mapping, Profile, Sample as PSample, StringTable, ValueType } from 'pprof-format';
import { ProfileData, Sample } from './profiler';
import { Naming, leafName, stackNames, tally } from './report';

/** A frame name as folded stacks allow it: no ';' and no whitespace. */
function foldSafe(s: string): string {
  return s.replace(/[;\s]/g, '_');
}

/** Root-first frames of a sample for the stack formats: VCPU, address space, then the code. */
function frames(n: Naming, s: Sample): { names: string[]; kernel: boolean[] } {
  const space = s.mode === 'kernel' || s.mode === 'user' ? `cr3=0x${s.cr3.toString(16)}` : s.mode;
  const code = s.mode === 'kernel' ? stackNames(n, s) : [leafName(n, s)];
  return {
    names: [`vcpu${s.vcpu}`, space, ...code],
    kernel: [false, false, ...code.map(() => s.mode === 'kernel')],
  };
}

/** `frame;frame;frame count` lines; kernel frames carry `_[k]` (flame graph palettes colour them). */
export function folded(p: ProfileData, n: Naming): string {
  const rows = tally(p.samples, (s) => {
    const f = frames(n, s);
    return f.names.map((x, i) => foldSafe(x) + (f.kernel[i] ? '_[k]' : '')).join(';');
  });
  return rows.map((r) => `${r.key} ${r.count}`).join('\n') + (rows.length ? '\n' : '');
}

export interface SpeedscopeFile {
  $schema: string;
  shared: { frames: { name: string }[] };
  profiles: {
    type: 'sampled';
    name: string;
    unit: 'nanoseconds';
    startValue: number;
    endValue: number;
    samples: number[][];
    weights: number[];
  }[];
  name: string;
  activeProfileIndex: number;
  exporter: string;
}

export function speedscope(p: ProfileData, n: Naming): SpeedscopeFile {
  const index = new Map<string, number>();
  const shared: { name: string }[] = [];
  const frameIndex = (name: string) => {
    let i = index.get(name);
    if (i === undefined) {
      i = shared.length;
      shared.push({ name });
      index.set(name, i);
    }
    return i;
  };
  const weight = Math.round(1e9 / p.hz);
  const profiles: SpeedscopeFile['profiles'] = [];
  for (let v = 0; v < p.vcpus; v++) {
    const mine = p.samples.filter((s) => s.vcpu === v);
    // Per VCPU, so the VCPU frame is the profile's name instead.
    const samples = mine.map((s) => frames(n, s).names.slice(1).map(frameIndex));
    profiles.push({
      type: 'sampled', name: `domain ${p.domid} VCPU ${v}`, unit: 'nanoseconds',
      startValue: 0, endValue: weight * samples.length, samples, weights: samples.map(() => weight),
    });
  }
  return {
    $schema: 'https://www.speedscope.app/file-format-schema.json',
    shared: { frames: shared },
    profiles,
    name: `gdbsx profile of domain ${p.domid}`,
    activeProfileIndex: 0,
    exporter: 'gdbsx profile',
  };
}

/** A gzipped pprof Profile: samples/count and cpu/nanoseconds per stack, labelled with vcpu, cr3 and mode. */
export function pprof(p: ProfileData, n: Naming, startedAtMs = Date.now() - p.elapsedMs): Buffer {
  const st = new StringTable();
  const functions = new Map<string, PFunction>();
  const locations = new Map<string, Location>();
  const fn = (name: string) => {
    let f = functions.get(name);
    if (!f) {
      f = new PFunction({ id: functions.size + 1, name: st.dedup(name), systemName: st.dedup(name) });
      functions.set(name, f);
    }
    return f;
  };
  // One location per distinct frame name (and leaf address where known), so pprof needs no symbolization.
  const loc = (name: string, address: bigint) => {
    const key = `${name}@${address}`;
    let l = locations.get(key);
    if (!l) {
      l = new Location({ id: locations.size + 1, mappingId: 1, address, line: [new Line({ functionId: fn(name).id })] });
      locations.set(key, l);
    }
    return l;
  };
  const period = Math.round(1e9 / p.hz);
  const kVcpu = st.dedup('vcpu');
  const kCr3 = st.dedup('cr3');
  const kMode = st.dedup('mode');
  const grouped = new Map<string, { ids: number[]; labels: Label[]; count: number }>();
  for (const s of p.samples) {
    const f = frames(n, s);
    const addrs = [0n, 0n, ...(s.mode === 'kernel' ? [...(s.callers ?? []).slice().reverse(), s.rip] : [0n])];
    // pprof wants the leaf first.
    const ids = f.names.map((name, i) => Number(loc(name, addrs[i] ?? 0n).id)).reverse();
    const key = ids.join(',') + `|${s.vcpu}|${s.cr3}|${s.mode}`;
    const g = grouped.get(key);
    if (g) g.count++;
    else {
      grouped.set(key, {
        ids, count: 1,
        labels: [
          new Label({ key: kVcpu, num: s.vcpu }),
          new Label({ key: kCr3, str: st.dedup('0x' + s.cr3.toString(16)) }),
          new Label({ key: kMode, str: st.dedup(s.mode) }),
        ],
      });
    }
  }
  const samples = [...grouped.values()].map((g) => new PSample({ locationId: g.ids, value: [g.count, g.count * period], label: g.labels }));
  const prof = new Profile({
    sampleType: [
      new ValueType({ type: st.dedup('samples'), unit: st.dedup('count') }),
      new ValueType({ type: st.dedup('cpu'), unit: st.dedup('nanoseconds') }),
    ],
    sample: samples,
    mapping: [new Mapping({ id: 1, memoryStart: 0, memoryLimit: 0, filename: st.dedup(`domain ${p.domid} (${n.symbolNote})`), hasFunctions: true })],
    location: [...locations.values()],
    function: [...functions.values()],
    stringTable: st,
    timeNanos: BigInt(Math.round(startedAtMs)) * 1000000n,
    durationNanos: Math.round(p.elapsedMs * 1e6),
    periodType: new ValueType({ type: st.dedup('cpu'), unit: st.dedup('nanoseconds') }),
    period,
  });
  return zlib.gzipSync(Buffer.from(prof.encode()));
}
