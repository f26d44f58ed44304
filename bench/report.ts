// Writing the results: JSON (everything), Markdown (the tables) and SVG (two charts:
// each figure's cost over its limit, and the read throughputs side by side).
import fs from 'fs';
import path from 'path';
import { Figure, Measure, PathFigure, Results } from './model';

function num(x: number): string {
  if (!Number.isFinite(x)) return '–';
  const a = Math.abs(x);
  if (a >= 1000) return x.toFixed(0);
  if (a >= 100) return x.toFixed(1);
  if (a >= 10) return x.toFixed(2);
  if (a >= 1) return x.toFixed(2);
  return x.toFixed(3);
}

function fmt(m: Measure | undefined): string {
  if (!m || m.stats.n === 0) return '–';
  const s = m.stats;
  if (s.n === 1) return `${num(s.median)} ${m.unit}`;
  return `${num(s.median)} ${m.unit} <sub>[${num(s.p10)}–${num(s.p90)}] n=${s.n}</sub>`;
}

/** The reference gdbsx's cell: its figure, or what it cannot do (or why it was not run). */
export function refCellText(f: Figure): string {
  if (f.reference && f.reference.stats.n > 0) return fmt(f.reference);
  return f.referenceNote ? esc(f.referenceNote) : '–';
}

function ratio(x: number | undefined): string {
  return x === undefined || !Number.isFinite(x) ? '–' : `${num(x)}×`;
}

function mark(met: boolean | null | undefined): string {
  return met === true ? '✅ met' : met === false ? '❌ not met' : '–';
}

function esc(s: string): string {
  return s.replace(/\|/g, '\\|');
}

const LEVEL: Record<PathFigure['level'], string> = { direct: 'direct (Guest.readMemory)', gdb: 'through gdb' };

/** The page walk beside gdbsx_guestmemio, one table per environment. */
function pathTable(L: string[], paths: PathFigure[]): void {
  L.push('### Memory paths: page walk vs gdbsx_guestmemio', '');
  L.push('| Level | Read | page walk | gdbsx_guestmemio | page walk / gdbsx (time) | Goal: ≤ 1× |', '| --- | --- | --- | --- | --- | --- |');
  for (const f of paths) {
    L.push(`| ${LEVEL[f.level]} | ${esc(f.name)} | ${fmt(f.pagewalk)} | ${fmt(f.gdbsx)} | ${ratio(f.ratio)} | ${mark(f.target?.met)} |`);
  }
  L.push('');
  const notes = paths.map((f) => `**${LEVEL[f.level]}, ${f.name}**: ${f.what}.${f.notes.length ? ' ' + f.notes.join('; ') + '.' : ''}`);
  L.push('<details><summary>What each row measures</summary>', '', ...notes.map((n) => `- ${esc(n)}`), '', '</details>', '');
}

export function markdown(r: Results): string {
  const L: string[] = [];
  L.push('# gdbsx benchmark: latest run', '');
  L.push(`Run ${r.startedAt} (${r.durationSec} s) on ${r.host.hostname}: ${r.host.cpus} × ${r.host.cpuModel}, load average at start ${r.host.loadavgAtStart.join(' / ')}; ` +
    `commit ${r.host.commit}, Node ${r.host.node}, ${r.host.gdb}${r.host.gdbserver ? `, ${r.host.gdbserver}` : ''}.`);
  L.push(`Settings: ${Object.entries(r.config).map(([k, v]) => `${k}=${v}`).join(', ')}. How to read this: [docs/benchmark.md](../../docs/benchmark.md).`, '');
  L.push('Each figure: median, then [p10–p90] and the number of runs. "vs limit" is our time over the time of the same work done directly ' +
    'below the protocol (1× = no overhead); "vs gdbserver" is our time over Debian\'s gdbserver doing the same through the same gdb commands on a local process.', '');

  const paths = r.paths ?? [];
  const targeted = [
    ...r.figures.map((f) => ({ t: f.target, what: `${f.env}: ${f.group}, ${f.name}` })),
    ...r.figures.map((f) => ({ t: f.referenceTarget, what: `${f.env}: ${f.group}, ${f.name}, against the reference gdbsx` })),
    ...paths.map((f) => ({ t: f.target, what: `${f.env}: page walk vs gdbsx, ${LEVEL[f.level]}, ${f.name}` })),
  ].filter((x) => x.t);
  if (targeted.length) {
    L.push('## Targets', '');
    L.push('| Target | Applies | Figure | Measured | Result |', '| --- | --- | --- | --- | --- |');
    for (const { t, what } of targeted) {
      if (!t) continue;
      L.push(`| ${esc(t.text)} | ${t.applies === 'official' ? 'yes' : 'indicative (not the target\'s environment)'} | ${esc(what)} | ${esc(t.value)} | ${mark(t.met)} |`);
    }
    L.push('');
  }

  for (const env of ['sim', 'lab'] as const) {
    const figs = r.figures.filter((f) => f.env === env);
    const envPaths = paths.filter((f) => f.env === env);
    if (!figs.length && !envPaths.length) continue;
    L.push(env === 'sim' ? '## Simulated Xen' : '## Xen lab (QEMU/TCG)', '');
    // The reference (Xen's own gdbsx) is run in the lab only; its columns appear where it was.
    const withRef = figs.some((f) => f.reference || f.referenceNote);
    if (withRef) {
      L.push('"reference gdbsx" is Xen\'s own gdbsx (tools/debugger/gdbsx, built from the same Xen source as the hypervisor) in the same boot, on the same guest, ' +
        'through the same gdb; "ours / gdbsx" is our speed over its speed (its time over ours, medians: 2× = we take half its time).', '');
    }
    L.push(`| Group | Figure | gdb → our stub | Limit (below the protocol) | vs limit | gdbserver | vs gdbserver |${withRef ? ' reference gdbsx | ours / gdbsx (speed) |' : ''}`,
      `| --- | --- | --- | --- | --- | --- | --- |${withRef ? ' --- | --- |' : ''}`);
    for (const f of figs) {
      L.push(`| ${esc(f.group)} | ${esc(f.name)} | ${fmt(f.ours)} | ${fmt(f.limit)} | ${ratio(f.vsLimit)} | ${fmt(f.ceiling)} | ${ratio(f.vsCeiling)} |` +
        (withRef ? ` ${refCellText(f)} | ${ratio(f.vsReference)} |` : ''));
    }
    L.push('');
    const notes = figs.flatMap((f) => [
      `**${f.group}, ${f.name}**: ours = ${f.ours.what}${f.limit ? `; limit = ${f.limit.what}` : ''}${f.ceiling ? `; gdbserver = ${f.ceiling.what}` : ''}` +
        `${f.reference ? `; reference gdbsx = ${f.reference.what}` : ''}.${f.notes.length ? ' ' + f.notes.join('; ') + '.' : ''}`,
    ]);
    L.push('<details><summary>What each row measures</summary>', '', ...notes.map((n) => `- ${n}`), '', '</details>', '');
    if (envPaths.length) pathTable(L, envPaths);
  }

  const p = r.profile;
  L.push('## Where the time goes', '');
  if (p.dumps.length) {
    L.push('### Bulk reads, per packet', '');
    const o = (x: number | undefined) => (x === undefined ? '–' : num(x));
    const bound = (bytes: number, cpu: number | undefined) => (cpu ? num(bytes / (1 << 20) / (cpu / 1000)) : '–');
    L.push('| Env | Size | ms per dump | Packets | Bytes per request | ms per packet | of which hypercall | reply encoding | the rest (socket, gdb, event loop) | CPU ms per dump: gdb / stub process | MiB/s if only gdb\'s CPU counted |',
      '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
    for (const d of p.dumps) {
      L.push(`| ${d.env}${d.path ? ` (${d.path})` : ''} | ${d.bytes >> 20} MiB | ${num(d.ms)} | ${num(d.packets)} | ${d.requestBytes} | ${num(d.perPacketMs)} | ${o(d.hypercallMsPerPacket)} | ` +
        `${o(d.encodeMsPerPacket)} | ${o(d.restMsPerPacket)} | ${o(d.gdbCpuMs)} / ${o(d.stubCpuMs)} | ${bound(d.bytes, d.gdbCpuMs)} |`);
      const g = d.gdbserver;
      if (g) L.push(`| gdbserver | ${d.bytes >> 20} MiB | ${num(g.ms)} | ${num(g.packets)} | ${g.requestBytes} | ${num(g.perPacketMs)} | – | – | – | ${o(g.gdbCpuMs)} / ${o(g.gdbserverCpuMs)} | ${bound(d.bytes, g.gdbCpuMs)} |`);
    }
    L.push('');
  }
  const table = (title: string, rec: Record<string, number>, unit: string) => {
    const e = Object.entries(rec);
    if (!e.length) return;
    L.push(`### ${title}`, '', `| | ${unit} |`, '| --- | --- |', ...e.map(([k, v]) => `| ${esc(k)} | ${num(v)} |`), '');
  };
  table('Reply encoding in the stub, per 64 KiB read (µs)', p.encodeUsPer64KiB, 'µs (bytes for the size row)');
  table('Hypercalls (µs per call)', p.hypercallsUs, 'µs');
  table('Fixed cost of a round trip through gdb (ms)', p.roundTripMs, 'ms');
  table('What if: a change to the stub, tried in the benchmark\'s process', p.whatIf, 'value')
  if (p.sim?.length) {
    L.push('### The simulator\'s own speed', '', '| VCPUs | instructions/s (interpreter, while busy) | one scheduler slice (ms): the longest the stub waits for the event loop while the guest runs |', '| --- | --- | --- |');
    for (const s of p.sim) L.push(`| ${s.vcpus} | ${s.instructionsPerSec.toLocaleString('en-US')} | ${num(s.sliceMs)} |`);
    L.push('');
  }
  const dc = Object.entries(p.domctls);
  if (dc.length) {
    L.push('### Hypercalls per operation', '', '| Operation | domctls | their time (ms) | by domctl |', '| --- | --- | --- | --- |');
    for (const [k, d] of dc) L.push(`| ${esc(k)} | ${d.perOp} | ${num(d.msPerOp)} | ${Object.entries(d.byCmd).map(([a, b]) => `${a}×${b}`).join(', ')} |`);
    L.push('');
  }
  const pk = Object.entries(p.packets);
  if (pk.length) {
    L.push('### Packets gdb exchanges per operation', '', '| Operation | Sent | Bytes sent / received | By kind |', '| --- | --- | --- | --- |');
    for (const [k, t] of pk) {
      L.push(`| ${esc(k)} | ${t.sent} | ${t.bytesSent} / ${t.bytesReceived} | ${Object.entries(t.kinds).map(([a, b]) => `${esc(a)}×${b}`).join(', ')} |`);
    }
    L.push('');
  }
  if (p.notes.length) L.push(...p.notes.map((n) => `- ${n}`), '');
  if (r.skipped.length) L.push('## Skipped', '', ...r.skipped.map((s) => `- ${s}`), '');
  return L.join('\n');
}

/** A log scale's decade lines and labels (1×, 10×, ...) between y = top and bottom. */
function decadeGrid(decades: number, xOf: (v: number) => number, top: number, bottom: number): string[] {
  const out: string[] = [];
  for (let d = 0; d <= decades; d++) {
    const x = xOf(10 ** d);
    out.push(`<line x1="${x}" y1="${top}" x2="${x}" y2="${bottom}" stroke="#ddd"/>`);
    out.push(`<text x="${x}" y="${bottom + 14}" font-size="11" text-anchor="middle">${10 ** d}×</text>`);
  }
  return out;
}

function xml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Two charts: cost over the limit per figure (log scale) and read throughputs. */
export function svg(r: Results): string {
  const W = 960;
  const labelW = 380;
  const rowH = 22;
  const parts: string[] = [];
  let y = 30;
  parts.push(`<text x="10" y="${y}" font-size="16" font-weight="bold">gdbsx: cost over the limit below the protocol (× time, log scale; shorter is better)</text>`);
  y += 14;
  const rows = r.figures.filter((f) => f.vsLimit !== undefined && Number.isFinite(f.vsLimit));
  const maxR = Math.max(10, ...rows.map((f) => f.vsLimit as number));
  const decades = Math.ceil(Math.log10(maxR));
  const plotW = W - labelW - 80;
  const xOf = (v: number) => labelW + (Math.log10(Math.max(1, v)) / decades) * plotW;
  const top = y + 8;
  parts.push(...decadeGrid(decades, xOf, top, top + rows.length * rowH));
  rows.forEach((f, i) => {
    const yy = top + i * rowH;
    const v = f.vsLimit as number;
    const color = f.target ? (f.target.met ? '#3a9d5d' : f.target.met === false ? '#d0543f' : '#888') : f.env === 'lab' ? '#6b6bd6' : '#5b8fd6';
    parts.push(`<text x="${labelW - 6}" y="${yy + 15}" font-size="12" text-anchor="end">${xml(`${f.env}: ${f.group} · ${f.name}`.slice(0, 60))}</text>`);
    parts.push(`<rect x="${labelW}" y="${yy + 4}" width="${Math.max(2, xOf(v) - labelW)}" height="${rowH - 8}" fill="${color}"/>`);
    parts.push(`<text x="${xOf(v) + 4}" y="${yy + 15}" font-size="11">${num(v)}×</text>`);
    const goal = f.id.includes('.read.') ? 2 : f.id === 'sim.stepi' || f.id === 'lab.stepi' ? 1.5 : undefined;
    if (goal) parts.push(`<line x1="${xOf(goal)}" y1="${yy + 2}" x2="${xOf(goal)}" y2="${yy + rowH - 2}" stroke="#000" stroke-width="2" stroke-dasharray="3,2"/>`);
  });
  y = top + rows.length * rowH + 34;
  parts.push(`<text x="10" y="${y}" font-size="11" fill="#555">Green/red: a figure with a target (met / not met; dashed mark = the target's ratio). Blue: no target. Sim targets are indicative except the gdbserver one.</text>`);
  y += 30;

  // Throughput chart.
  const reads = r.figures.filter((f) => f.group === 'Bulk memory read');
  const pathReads = (r.paths ?? []).filter((f) => (f.pagewalk ?? f.gdbsx)?.unit === 'MiB/s');
  if (reads.length || pathReads.length) {
    parts.push(`<text x="10" y="${y}" font-size="16" font-weight="bold">Bulk read throughput, MiB/s (longer is better)</text>`);
    y += 12;
    const bars: { label: string; v: number; color: string }[] = [];
    for (const f of reads) {
      if (f.limit) bars.push({ label: `${f.env} ${f.name}: direct guestmemio`, v: f.limit.stats.median, color: '#999' });
      bars.push({ label: `${f.env} ${f.name}: gdb → our stub`, v: f.ours.stats.median, color: '#5b8fd6' });
      if (f.ceiling) bars.push({ label: `${f.env} ${f.name}: gdb → gdbserver`, v: f.ceiling.stats.median, color: '#e0a030' });
    }
    for (const f of pathReads) {
      const how = f.level === 'gdb' ? 'gdb → stub --memory ' : 'Guest.readMemory, ';
      if (f.pagewalk) bars.push({ label: `${f.env} ${f.name}: ${how}${f.level === 'gdb' ? 'pagewalk' : 'page walk'}`, v: f.pagewalk.stats.median, color: '#2a9d8f' });
      if (f.gdbsx) bars.push({ label: `${f.env} ${f.name}: ${how}${f.level === 'gdb' ? 'gdbsx' : 'guestmemio'}`, v: f.gdbsx.stats.median, color: '#b07aa1' });
    }
    const maxV = Math.max(...bars.map((b) => b.v));
    const logScale = maxV / Math.max(1e-9, Math.min(...bars.map((b) => b.v))) > 50;
    const scaleX = (v: number) => logScale ? (Math.log10(Math.max(1, v)) / Math.log10(maxV)) * plotW : (v / maxV) * plotW;
    bars.forEach((b, i) => {
      const yy = y + 8 + i * rowH;
      parts.push(`<text x="${labelW - 6}" y="${yy + 15}" font-size="12" text-anchor="end">${xml(b.label)}</text>`);
      parts.push(`<rect x="${labelW}" y="${yy + 4}" width="${Math.max(2, scaleX(b.v))}" height="${rowH - 8}" fill="${b.color}"/>`);
      parts.push(`<text x="${labelW + Math.max(2, scaleX(b.v)) + 4}" y="${yy + 15}" font-size="11">${num(b.v)}</text>`);
    });
    y += 8 + bars.length * rowH + 10;
    if (logScale) {
      parts.push(`<text x="10" y="${y + 6}" font-size="11" fill="#555">(log scale)</text>`);
      y += 14;
    }
  }
  y = pathChart(parts, r.paths ?? [], y, { W, labelW, rowH });
  y = refChart(parts, r.figures, y, { W, labelW, rowH });
  const H = y + 10;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">\n` +
    `<rect width="${W}" height="${H}" fill="#fff"/>\n${parts.join('\n')}\n</svg>\n`;
}

/** The page walk's time over gdbsx_guestmemio's per row (linear; the goal, 1×, dashed). Returns the next y. */
function pathChart(parts: string[], paths: PathFigure[], y: number, o: { W: number; labelW: number; rowH: number }): number {
  const rows = paths.filter((f) => f.ratio !== undefined && Number.isFinite(f.ratio));
  if (!rows.length) return y;
  const { W, labelW, rowH } = o;
  y += 16;
  parts.push(`<text x="10" y="${y}" font-size="16" font-weight="bold">Page walk vs gdbsx_guestmemio: the page walk's time over gdbsx's (shorter is better; goal ≤ 1×)</text>`);
  y += 8;
  const plotW = W - labelW - 80;
  const maxR = Math.max(2, ...rows.map((f) => f.ratio as number)) * 1.05;
  const xOf = (v: number) => labelW + (v / maxR) * plotW;
  const top = y + 4;
  rows.forEach((f, i) => {
    const yy = top + i * rowH;
    const v = f.ratio as number;
    const color = f.target?.met ? '#3a9d5d' : f.target?.met === false ? '#d0543f' : '#888';
    parts.push(`<text x="${labelW - 6}" y="${yy + 15}" font-size="12" text-anchor="end">${xml(`${f.env}: ${f.level === 'gdb' ? 'gdb' : 'direct'} · ${f.name}`.slice(0, 60))}</text>`);
    parts.push(`<rect x="${labelW}" y="${yy + 4}" width="${Math.max(2, xOf(v) - labelW)}" height="${rowH - 8}" fill="${color}"/>`);
    // Right of the goal line when the bar ends before it, so the line does not cross the text.
    parts.push(`<text x="${Math.max(xOf(v), xOf(1)) + 4}" y="${yy + 15}" font-size="11">${num(v)}×</text>`);
  });
  const x1 = xOf(1);
  parts.push(`<line x1="${x1}" y1="${top}" x2="${x1}" y2="${top + rows.length * rowH}" stroke="#000" stroke-width="2" stroke-dasharray="3,2"/>`);
  parts.push(`<text x="${x1}" y="${top + rows.length * rowH + 14}" font-size="11" text-anchor="middle">1× (goal)</text>`);
  y = top + rows.length * rowH + 34;
  parts.push(`<text x="10" y="${y}" font-size="11" fill="#555">Green/red: goal met / not met. Sim rows are indicative (the simulator's hypercalls cost nothing like Xen's); the lab's are the goal's.</text>`);
  return y + 10;
}

/** Our speed over the reference gdbsx's per figure (log scale; the issue's goals dashed). Returns the next y. */
function refChart(parts: string[], figs: Figure[], y: number, o: { W: number; labelW: number; rowH: number }): number {
  const rows = figs.filter((f) => (f.vsReference !== undefined && Number.isFinite(f.vsReference)) || f.referenceNote);
  if (!rows.length) return y;
  const { W, labelW, rowH } = o;
  y += 16;
  parts.push(`<text x="10" y="${y}" font-size="16" font-weight="bold">Ours vs the reference gdbsx: our speed over its speed (× , log scale; longer is better)</text>`);
  y += 8;
  const plotW = W - labelW - 80;
  const maxR = Math.max(10, ...rows.map((f) => f.vsReference ?? 1), ...rows.map((f) => (f.id === 'lab.read.1MiB' ? 1000 : 1)));
  const decades = Math.ceil(Math.log10(maxR));
  const xOf = (v: number) => labelW + (Math.log10(Math.max(1, v)) / decades) * plotW;
  const top = y + 4;
  parts.push(...decadeGrid(decades, xOf, top, top + rows.length * rowH));
  rows.forEach((f, i) => {
    const yy = top + i * rowH;
    parts.push(`<text x="${labelW - 6}" y="${yy + 15}" font-size="12" text-anchor="end">${xml(`${f.env}: ${f.group} · ${f.name}`.slice(0, 60))}</text>`);
    if (f.vsReference === undefined) {
      // What gdbsx cannot do is a row too, with its reason instead of a bar.
      parts.push(`<text x="${labelW + 4}" y="${yy + 15}" font-size="11" fill="#555">${xml((f.referenceNote ?? '').slice(0, 90))}</text>`);
      return;
    }
    const v = f.vsReference;
    const t = f.referenceTarget;
    const color = t ? (t.met ? '#3a9d5d' : t.met === false ? '#d0543f' : '#888') : '#6b6bd6';
    parts.push(`<rect x="${labelW}" y="${yy + 4}" width="${Math.max(2, xOf(v) - labelW)}" height="${rowH - 8}" fill="${color}"/>`);
    parts.push(`<text x="${xOf(v) + 4}" y="${yy + 15}" font-size="11">${num(v)}×</text>`);
    const goal = f.id === 'lab.read.1MiB' ? 1000 : f.id === 'lab.stepi' ? 4 : undefined;
    if (goal) parts.push(`<line x1="${xOf(goal)}" y1="${yy + 2}" x2="${xOf(goal)}" y2="${yy + rowH - 2}" stroke="#000" stroke-width="2" stroke-dasharray="3,2"/>`);
  });
  y = top + rows.length * rowH + 34;
  parts.push(`<text x="10" y="${y}" font-size="11" fill="#555">Green/red: the issue's goal (dashed: reads 1000×, stepi 4×) met / not met. Rows without a bar: what gdbsx cannot do there, or why it was not run.</text>`);
  return y + 10;
}

export function writeReports(r: Results, dir: string): string[] {
  fs.mkdirSync(dir, { recursive: true });
  const json = path.join(dir, 'latest.json');
  const md = path.join(dir, 'latest.md');
  const pic = path.join(dir, 'latest.svg');
  fs.writeFileSync(json, JSON.stringify(r, null, 2) + '\n');
  fs.writeFileSync(md, markdown(r) + (r.figures.length ? `\n![chart](latest.svg)\n` : ''));
  fs.writeFileSync(pic, svg(r));
  return [json, md, pic];
}

export type { Figure };
