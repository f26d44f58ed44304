// The figures in the Xen lab (test/lab/lab.sh): the host's gdb against the stubs in
// dom0 (through QEMU's port forwards on 127.0.0.1), and the limit measured in dom0
// itself (bench/labDirect.ts, run through the lab's agent). Skipped, with the
// reason, when no lab is running.
//
// Which guest for what:
//  - bulk reads: the PV Linux guest's direct map (real, dense data), else a test kernel;
//  - stepi, registers, bt, attach: a test kernel (its VCPUs always run, it has symbols);
//  - breakpoints: a PV guest. Under QEMU/TCG the nested SVM does not intercept int3
//    (TCG checks the INTn intercept, Xen sets the #BP exception one), so an int3 in a
//    PVH/HVM guest goes to the guest, which crashes. PV int3s trap to Xen as usual.
import { execFileSync } from 'child_process';
import fs from 'fs';
import path from 'path';
import { LabClient, LabGuest, LabState, statePath } from '../test/lab/client';
import type { LabDirectArgs, LabDirectResult } from './labDirect';
import { MemPathName, PATH_NAME } from './direct';
import { dumpTimes, stubMemoryPath } from './gdbFigures';
import { directPathFigures, gdbPathFigures } from './paths';
import { PACKET_SIZE } from '../src/gx/reply';
import { Figure, Results, figure, measure, throughput } from './model';
import { REF_NAME, installReference, referenceMissing, runReference } from './reference';
import { procCpuMs, round3, summarize } from './stats';
import { emptyRuns, limit, reference, sharedFigures } from './catalogue';
import { Part, SessionEnv, gdbSession, memoryPathDumps } from './gdbSession';
import { RawRsp, TransportFloor, rawRsp, transportFloor } from './transport';
import { processAlive } from '../src/processAlive';

export interface LabConfig {
  runs: number;
  readRuns: number;
  log: (m: string) => void;
}

const MiB = 1 << 20;
/** Blocks the two memory paths' gdb dumps alternate in. */
const PATH_ROUNDS = 2;

/** Where bulk reads go, per lab guest: mapped RAM of at least 16 MiB. */
const READ_ADDR: Record<string, bigint> = {
  pv: 0xffff888000000000n, // Linux's direct map (PV guests have no KASLR)
  testkernel64: 0xffffffff80200000n, // phys 2 MiB.. (2 MiB pages), see test/lab/testkernel/layout.h
  testkernel32: 0xc0200000n,
};

/** Dense memory (kernel text: few zero blocks, so little for run-length encoding) per lab guest. */
const DENSE_ADDR: Record<string, bigint> = {
  pv: 0xffffffff81000000n, // the kernel's text (PV: no KASLR)
};

/** Functions a guest calls all the time (first one found is used), for continue-to-breakpoint. */
const HOT = ['tk_tick', 'ktime_get', '_raw_spin_lock', '__rcu_read_lock'];

function parseSymbols(text: string): Map<string, bigint> {
  const m = new Map<string, bigint>();
  for (const line of text.split('\n')) {
    const [a, , n] = line.trim().split(/\s+/);
    if (n && /^[0-9a-f]+$/.test(a) && !m.has(n)) m.set(n, BigInt('0x' + a));
  }
  return m;
}

/** The guest's symbols: its ELF (test kernels) or, for the PV Linux guest, dom0's kallsyms (same kernel). */
async function symbolsOf(g: LabGuest, agent: LabClient): Promise<Map<string, bigint>> {
  try {
    if (g.symbols) return parseSymbols(execFileSync('nm', [g.symbols], { encoding: 'utf8', maxBuffer: 64 << 20 }));
    if (g.type === 'pv') return parseSymbols((await agent.get('/proc/kallsyms')).toString('utf8'));
  } catch {
    // no symbols: no breakpoint figures
  }
  return new Map();
}

interface GuestRun {
  g: LabGuest;
  parts: Set<Part>;
  addr?: bigint;
  bp?: { name: string; addr: bigint };
  /** Where the reads' small-read row reads 8 bytes (a kernel function: what gdb reads at a stop). */
  sym?: { name: string; addr: bigint };
}

/** The memory paths this lab's Xen has: gdbsx_guestmemio only with CONFIG_GDBSX. */
export function labPaths(xen: LabState['xen']): MemPathName[] {
  return xen === 'stock' ? ['pagewalk'] : ['pagewalk', 'gdbsx'];
}

/** What labDirect.js is given for one guest (exported for bench/labDirectCheck.ts). */
export function labDirectArgs(run: GuestRun, domid: number, sizes: number[], cfg: { runs: number; readRuns: number }, frames: number, xen: LabState['xen']): LabDirectArgs {
  return {
    domid, width: run.g.width, addr: '0x' + (run.addr ?? 0n).toString(16), sizes, runs: cfg.runs, readRuns: cfg.readRuns,
    bp: run.bp ? '0x' + run.bp.addr.toString(16) : undefined, stopVcpu: 0, frames, parts: [...run.parts],
    paths: run.parts.has('read') ? labPaths(xen) : undefined, request: PACKET_SIZE / 2,
    smallAddr: run.sym ? '0x' + run.sym.addr.toString(16) : undefined,
  };
}

/** The shell command the agent runs in dom0 for labDirect (the JSON as one single-quoted argument). */
export function labDirectCommand(remoteDir: string, args: LabDirectArgs): string {
  return `node ${remoteDir}/labDirect.js '${JSON.stringify(args).replace(/'/g, "'\\''")}'`;
}

export type { GuestRun };

/** Returns undefined when done, or why the lab part was skipped. */
export async function runLabSuite(cfg: LabConfig, res: Results): Promise<string | undefined> {
  const { log } = cfg;
  const file = statePath();
  if (!fs.existsSync(file)) return `no Xen lab running (no state file ${file}; start one with \`npm run lab\`)`;
  let st: LabState;
  try {
    st = JSON.parse(fs.readFileSync(file, 'utf8')) as LabState;
  } catch (e) {
    return `cannot read the lab state file ${file}: ${(e as Error).message}`;
  }
  if (st.status !== 'ready') return `the lab in ${file} is '${st.status}', not ready`;
  if (!st.qemuPid || !processAlive(st.qemuPid)) return `the lab in ${file} is not running (QEMU pid ${st.qemuPid} is gone)`;
  const agent = new LabClient({ host: st.agent.host, port: st.agent.port });
  try {
    await agent.ping();
  } catch (e) {
    return `the lab's agent does not answer: ${(e as Error).message}`;
  }
  // Only this project's stub (the lab can run another one, LAB_STUB_CMD).
  const ours = (g: LabGuest) => process.env.BENCH_LAB_ANY_STUB === '1' || (g.stub.cmd ?? st.stub.cmd).includes('/opt/gdbsx/bin/gdbsx');
  const foreign = Object.values(st.guests).filter((g) => g.stub.running && !ours(g));
  if (foreign.length && foreign.length === Object.values(st.guests).filter((g) => g.stub.running).length) {
    return `the lab's stubs are not this project's (${foreign[0].stub.cmd ?? st.stub.cmd}); restart the lab with its default stub (BENCH_LAB_ANY_STUB=1 to measure it anyway)`;
  }
  const usable = (n: string | undefined): LabGuest | undefined => {
    const g = n ? st.guests[n] : undefined;
    return g && g.stub.running && g.domid !== null && ours(g) ? g : undefined;
  };
  const pick = (env: string, order: string[]) => {
    const want = process.env[env] ?? process.env.BENCH_LAB_GUEST;
    return want ? usable(want) : order.map(usable).find((g) => g);
  };
  const plan = new Map<string, GuestRun>();
  const add = (g: LabGuest | undefined, part: Part, why: string) => {
    if (!g) {
      res.skipped.push(`lab: ${why}`);
      return undefined;
    }
    const r = plan.get(g.name) ?? { g, parts: new Set<Part>() };
    r.parts.add(part);
    plan.set(g.name, r);
    return r;
  };
  // The reader and the stopper are often the same guest: read its symbols (dom0's kallsyms, megabytes) once.
  const symCache = new Map<string, Promise<Map<string, bigint>>>();
  const symbols = (g: LabGuest) => {
    let p = symCache.get(g.name);
    if (!p) symCache.set(g.name, (p = symbolsOf(g, agent)));
    return p;
  };
  const reader = add(pick('BENCH_LAB_READ_GUEST', ['pv', 'testkernel64', 'testkernel32']), 'read', 'bulk reads: no guest with a running stub and a known address');
  if (reader) {
    reader.addr = process.env.BENCH_LAB_ADDR ? BigInt(process.env.BENCH_LAB_ADDR) : READ_ADDR[reader.g.name];
    if (reader.addr === undefined) {
      reader.parts.delete('read');
      res.skipped.push(`lab: bulk reads: no known mapped address in guest '${reader.g.name}' (set BENCH_LAB_ADDR)`);
    } else {
      const syms = await symbols(reader.g);
      const name = HOT.find((n) => syms.has(n));
      if (name) reader.sym = { name, addr: syms.get(name) as bigint };
      else res.profile.notes.push(`lab: the small-read row reads at the bulk reads' address: none of ${HOT.join(', ')} in guest '${reader.g.name}''s symbols`);
    }
  }
  const stepper = pick('BENCH_LAB_STEP_GUEST', ['testkernel64', 'testkernel32', 'pv', 'pvh']);
  for (const p of ['step', 'regs', 'attach'] as const) add(stepper, p, `${p}: no guest with a running stub`);
  const stopsWanted = process.env.BENCH_LAB_STOPS !== '0';
  if (!stopsWanted) res.skipped.push('lab: stop latency: turned off (BENCH_LAB_STOPS=0)');
  const stopper = stopsWanted ? add(pick('BENCH_LAB_STOP_GUEST', ['pv']), 'stop', 'stop latency: no PV guest with a running stub (PVH breakpoints do not trap to Xen under QEMU/TCG)') : undefined;
  if (stopper) {
    const syms = await symbols(stopper.g);
    const name = process.env.BENCH_LAB_BP ?? HOT.find((n) => syms.has(n));
    const a = name ? syms.get(name) : undefined;
    if (name && a !== undefined) stopper.bp = { name, addr: a };
    else {
      stopper.parts.delete('stop');
      res.skipped.push(`lab: stop latency: none of ${process.env.BENCH_LAB_BP ?? HOT.join(', ')} in guest '${stopper.g.name}''s symbols (set BENCH_LAB_BP)`);
    }
  }
  res.config.labGuests = [...plan.values()].map((r) => `${r.g.name}:${[...r.parts].join('+')}`).join(' ');
  // The forward's own floor, on a forwarded port no guest uses.
  let floor: TransportFloor | undefined;
  const used = new Set(Object.values(st.guests).map((g) => g.stub.port));
  const spare = [...st.ports.forwarded].reverse().find((p) => p !== st.agent.port && !used.has(p));
  if (spare === undefined) res.skipped.push('lab: transport floor: no spare forwarded port');
  else {
    try {
      log(`lab: transport floor (TCP echo in dom0 on ${spare})`);
      floor = await transportFloor(agent, spare, cfg.runs);
      res.profile.roundTripMs['lab: 1-byte TCP echo in dom0 through the QEMU forward, every guest running'] = round3(summarize(floor.echoMs).median);
      res.profile.notes.push(`lab: the QEMU forward moves ${summarize(floor.mibPerS).median.toFixed(1)} MiB/s from dom0 to the host (1 MiB from a dom0 TCP server, median of ${floor.mibPerS.length})`);
    } catch (e) {
      res.skipped.push(`lab: transport floor failed: ${(e as Error).message}`);
    }
  }
  // Xen's own gdbsx, the reference: copied into dom0 once, run per guest after our stub's figures.
  let refReady = false;
  const missing = process.env.BENCH_LAB_REF === '0' ? 'turned off (BENCH_LAB_REF=0)' : referenceMissing(st);
  if (missing) res.skipped.push(`lab: ${REF_NAME}: ${missing}`);
  else if (spare === undefined) res.skipped.push(`lab: ${REF_NAME}: no spare forwarded port to run it on`);
  else {
    try {
      await installReference(agent, st);
      refReady = true;
    } catch (e) {
      res.skipped.push(`lab: ${REF_NAME}: copying it into dom0 failed: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  for (const run of plan.values()) {
    if (!run.parts.size) continue;
    try {
      await runGuest(run, agent, cfg, res, st, spare, refReady);
    } catch (e) {
      log(`lab: ${run.g.name}: ${(e as Error).stack ?? String(e)}`);
      res.skipped.push(`lab ${run.g.name}: failed: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  return undefined;
}

async function runGuest(run: GuestRun, agent: LabClient, cfg: LabConfig, res: Results, st: LabState, sparePort?: number, refReady = false): Promise<void> {
  const { g, parts } = run;
  const { runs, readRuns, log } = cfg;
  const domid = g.domid as number;
  const sizes = [MiB, 16 * MiB].filter((b) => b + 2 * MiB <= g.memoryMiB * MiB);
  const tag = `lab ${g.name}`;
  log(`lab: guest ${g.name} (dom${domid}, ${g.type} ${g.width}-bit, ${g.vcpus} VCPUs), stub on 127.0.0.1:${g.stub.port}: ${[...parts].join(', ')}`);

  // -- through gdb first (the direct part needs the stub detached, and the bt's frame count) --
  const gdbCpu: Record<string, number> = {};
  let dense: number[] = [];
  const denseAddr = DENSE_ADDR[g.name];
  let floor: TransportFloor | undefined;
  /** The lab stub's memory path (`monitor xen`): the page walk unless it fell back. */
  let stubPath: string | undefined;
  const addr = run.addr;
  const env: SessionEnv = {
    env: 'lab', tag, guest: g.name, via: 'host gdb -> stub in dom0', directWhere: 'in dom0', detail: { attach: 'through the QEMU forward' }, applies: 'official',
    stopVcpu: 0, breakpoint: run.bp && { name: run.bp.name, location: `*0x${run.bp.addr.toString(16)}` },
    port: g.stub.port, symbols: g.symbols ?? undefined, runs, readRuns, stopTimeoutMs: 120000, packetsOfRegisters: false, log,
    async attempt(what, fn) {
      try {
        await fn();
      } catch (e) {
        res.profile.notes.push(`${tag}: ${what} failed: ${(e as Error).message.split('\n')[0]}`);
        log(`lab: ${what} failed: ${(e as Error).message}`);
      }
    },
    counted: (_label, fn) => fn(),
    read: addr === undefined ? undefined : {
      addr, sizes,
      async check(gdb) {
        stubPath = await stubMemoryPath(gdb).catch(() => undefined);
      },
      async dumps(gdb, b, n) {
        const c0 = procCpuMs(gdb.pid);
        const ms = await dumpTimes(gdb, addr, b, n);
        gdbCpu[b] = (procCpuMs(gdb.pid) - c0) / (n + 1);
        return ms;
      },
      async more(gdb) {
        if (denseAddr === undefined) return;
        log('lab: dump 4 MiB of kernel text through gdb');
        await env.attempt(`dump of kernel text at 0x${denseAddr.toString(16)}`, async () => { dense = await dumpTimes(gdb, denseAddr, 4 * MiB, readRuns); });
      },
    },
    async beforeDetach() {
      // The floor under this guest's figures' conditions: it is stopped (gdb is attached),
      // the other guests run (a running TCG guest slows QEMU's forward too).
      if (sparePort === undefined) return;
      await env.attempt('transport floor', async () => {
        floor = await transportFloor(agent, sparePort, runs);
        res.profile.roundTripMs[`${tag}: 1-byte TCP echo in dom0 through the QEMU forward, this guest stopped`] = round3(summarize(floor.echoMs).median);
      });
    },
  };
  const ours = emptyRuns();
  try {
    await gdbSession(env, parts, res, ours);
  } catch (e) {
    res.profile.notes.push(`${tag}: through gdb: ${(e as Error).message.split('\n')[0]}`);
    log(`lab: ${g.name}: through gdb: ${(e as Error).message}`);
  }
  for (const b of sizes) {
    if (!ours.dumps[b]) continue;
    const ms = summarize(ours.dumps[b]).median;
    const req = Math.min(b, PACKET_SIZE / 2); // what gdb asks per m (the trace's 1 MiB dump is one request)
    const packets = Math.ceil(b / req);
    res.profile.dumps.push({ env: 'lab', bytes: b, ms: round3(ms), packets, requestBytes: req, perPacketMs: round3(ms / packets), gdbCpuMs: round3(gdbCpu[b]) });
  }

  // -- page walk vs gdbsx through gdb: the guest's stub and a second one with --memory gdbsx (on the spare port) --
  let memDumps: Partial<Record<MemPathName, Record<string, number[]>>> | undefined;
  if (parts.has('read') && addr !== undefined && Object.keys(ours.dumps).length) {
    if (st.xen === 'stock') res.skipped.push(`${tag}: page walk vs gdbsx through gdb: this lab's Xen is stock (no gdbsx_guestmemio)`);
    else if (sparePort === undefined) res.skipped.push(`${tag}: page walk vs gdbsx through gdb: no spare forwarded port for a second stub`);
    else if (stubPath !== undefined && stubPath !== PATH_NAME.pagewalk) res.skipped.push(`${tag}: page walk vs gdbsx through gdb: the lab's stub reads through ${stubPath}, not the page walk`);
    else memDumps = await pathDumps(env, addr, run, agent, st, sparePort, sizes.filter((b) => ours.dumps[b]), res);
  }

  // -- the reference gdbsx on this guest, the same gdb figures (on the spare port) --
  if (refReady && sparePort !== undefined) {
    log(`lab: ${REF_NAME} on ${g.name} (port ${sparePort}): ${[...parts].join(', ')}`);
    try {
      env.reference = await runReference(run, agent, sparePort, {
        runs, readRuns: Math.max(1, Math.min(readRuns, envRuns('BENCH_LAB_REF_READ_RUNS', 3))), timeoutMs: 180000, log,
      });
      for (const n of env.reference.notes) res.profile.notes.push(`${tag}: ${REF_NAME}: ${n}`);
    } catch (e) {
      res.skipped.push(`${tag}: ${REF_NAME} failed: ${(e as Error).message.split('\n')[0]}`);
    }
  }

  // -- our stub without gdb (raw RSP, the same m requests) --
  let raw: RawRsp | undefined;
  if (parts.has('read') && addr !== undefined && sizes.includes(16 * MiB)) {
    log('lab: raw RSP reads (no gdb)');
    try {
      raw = await rawRsp(g.stub.port, addr, 16 * MiB, runs, readRuns);
      res.profile.roundTripMs[`${tag}: raw RSP qC (no gdb)`] = round3(summarize(raw.qcMs).median);
      res.profile.roundTripMs[`${tag}: raw RSP m addr,1 (no gdb)`] = round3(summarize(raw.m1Ms).median);
    } catch (e) {
      res.profile.notes.push(`${tag}: raw RSP reads failed: ${(e as Error).message}`);
    }
  }

  // -- the limit, in dom0 --
  let direct: LabDirectResult | undefined;
  const remoteDir = '/opt/gdbsx/dist/bench';
  const haveSrc = (await agent.exec('test -f /opt/gdbsx/dist/src/xg/xenctl.js && test -f /opt/gdbsx/build/Release/xg.node', { timeoutMs: 20000 })).code === 0;
  if (!haveSrc) {
    res.skipped.push(`${tag}: direct figures: dom0 has no /opt/gdbsx/dist or no addon (restart the lab after \`npm run build\`)`);
  } else {
    await agent.exec(`mkdir -p ${remoteDir}`, { timeoutMs: 20000 });
    for (const f of ['labDirect.js', 'direct.js', 'stats.js', 'trace.js']) await agent.put(`${remoteDir}/${f}`, fs.readFileSync(path.join(__dirname, f)));
    const args = labDirectArgs(run, domid, sizes, cfg, ours.frames, st.xen);
    log(`lab: direct (below the protocol, in dom0) on ${g.name}`);
    const r = await agent.exec(labDirectCommand(remoteDir, args), { timeoutMs: 900000 });
    if (r.code !== 0) {
      res.skipped.push(`${tag}: direct figures failed in dom0 (${r.code ?? r.signal}): ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' / ')}`);
    } else {
      direct = JSON.parse(r.stdout.trim().split('\n').pop() as string) as LabDirectResult;
      for (const [k, v] of Object.entries(direct.hypercallsUs)) res.profile.hypercallsUs[`${tag} (dom0): ${k}`] = round3(v);
      for (const e of direct.errors) res.profile.notes.push(`${tag} direct: ${e}`);
      for (const [k, v] of Object.entries(direct.domctls ?? {})) res.profile.domctls[`${tag} direct (dom0): ${k}`] = v;
    }
  }

  // -- figures: the catalogue's, with this lab's own read rows after the bulk reads --
  for (const b of sizes) {
    const d = res.profile.dumps.find((x) => x.env === 'lab' && x.bytes === b);
    // The hypercall share: the request's bytes at the direct reads' own speed.
    const lim = direct?.read[String(b)];
    const mibps = lim?.length ? summarize(throughput(b, lim)).median : undefined;
    if (d && mibps) {
      d.hypercallMsPerPacket = round3((d.requestBytes / MiB / mibps) * 1000);
      d.restMsPerPacket = round3(d.perPacketMs - d.hypercallMsPerPacket);
    }
  }
  // Page walk vs gdbsx_guestmemio: below the protocol (dom0), and through gdb.
  if (direct?.paths) {
    res.paths = [...(res.paths ?? []), ...directPathFigures('lab', direct.paths, sizes, PACKET_SIZE / 2, run.sym?.name ?? `0x${(addr ?? 0n).toString(16)}`, g.name, res)];
  }
  if (memDumps) {
    const pf = gdbPathFigures('lab', memDumps, sizes.filter((b) => memDumps?.pagewalk?.[b] || memDumps?.gdbsx?.[b]), g.name);
    if (stubPath === undefined) pf.forEach((f) => f.notes.push('the lab\'s stubs did not name their memory path (monitor xen): taken at their --memory'));
    res.paths = [...(res.paths ?? []), ...pf];
  }
  const lim16 = direct?.read[String(16 * MiB)];
  const lim16Measure = (what: string) => limit(env, what, 'MiB/s', lim16 && throughput(16 * MiB, lim16));
  const own: Figure[] = [];
  if (raw) {
    own.push(figure({
      id: 'lab.read.raw.16MiB', env: 'lab', group: 'Bulk memory read', name: `16 MiB, no gdb (${g.name})`,
      ours: measure(`raw RSP client on the host: the ${raw.chunk / MiB} MiB m requests gdb sends, no gdb`, 'MiB/s', raw.readMiBps),
      limit: lim16Measure('gdbsx_guestmemio in 1 MiB calls'),
      ...reference(env, 'read.raw', ''),
    }));
  }
  if (dense.length && denseAddr !== undefined) {
    own.push(figure({
      id: 'lab.read.dense.4MiB', env: 'lab', group: 'Bulk memory read', name: `4 MiB of kernel text (${g.name})`,
      ours: measure(`dump binary memory, 4 MiB at 0x${denseAddr.toString(16)} (dense: little run-length encoding), host gdb -> stub`, 'MiB/s', throughput(4 * MiB, dense)),
      limit: lim16Measure('gdbsx_guestmemio in 1 MiB calls (the 16 MiB range: the hypercall does not care what the bytes are)'),
      ...reference(env, 'read.dense', ''),
    }));
  }
  if (direct?.read64k) res.profile.notes.push(`${tag} (dom0): direct reads at gdb's request size (64 KiB calls): ${summarize(throughput(16 * MiB, direct.read64k)).median.toFixed(1)} MiB/s`);
  res.figures.push(...sharedFigures(env, sizes, ours, direct, own));
  // How much of an operation the forward's floor alone accounts for: gdb's packets for
  // it times the echo round trip (a note, not a figure: both are medians of noisy runs).
  const floorMs = floor ? summarize(floor.echoMs).median : undefined;
  const share = (what: string, ms: number[], key: string, directMs?: number[]) => {
    const packets = res.profile.packets[`${tag}: ${key}`]?.sent;
    if (floorMs === undefined || !packets || !ms.length) return;
    const m = summarize(ms).median;
    const d = directMs?.length ? `; the same done directly in dom0: ${summarize(directMs).median.toFixed(2)} ms` : '';
    res.profile.notes.push(`${tag}: ${what} takes ${m.toFixed(2)} ms (median); gdb exchanges ${packets} packets for it, and ${packets} x the ${floorMs.toFixed(2)} ms echo floor is ${(packets * floorMs).toFixed(2)} ms (${Math.round((100 * packets * floorMs) / m)}%)${d}`);
  };
  share('a stepi', ours.stepi, 'stepi', direct?.step);
  if (run.bp) share('a continue to the breakpoint', ours.stops.map((x) => x.totalMs), 'continue to a breakpoint', direct?.stops?.map((x) => x.totalMs));
}

/**
 * A second stub for the guest, the lab's own command plus `--memory gdbsx`, on the
 * spare forwarded port (the guest's own stub stays up: a stub attaches only while gdb
 * is connected); the same dumps through the guest's stub (the page walk) and this one,
 * alternating (memoryPathDumps); then it is stopped.
 */
async function pathDumps(env: SessionEnv, addr: bigint, run: GuestRun, agent: LabClient, st: LabState, port: number, sizes: number[], res: Results): Promise<Partial<Record<MemPathName, Record<string, number[]>>> | undefined> {
  const { g } = run;
  const tag = `lab ${g.name}`;
  const log = `/var/log/stub-bench-gdbsx-${g.name}.log`;
  const stubEnv = { DOMID: String(g.domid), WIDTH: String(g.width), PORT: String(port), NAME: g.name };
  env.log(`lab: dumps through the stub (page walk) and a second one with --memory gdbsx on ${port}, alternating`);
  let pid: number | undefined;
  try {
    pid = (await agent.spawn(`${st.stub.cmd} --memory gdbsx`, { log, env: stubEnv, cwd: '/opt/gdbsx' })).pid;
    const w = await agent.waitListen(port, { pid, timeoutMs: 180000 });
    if (!w.met) {
      const tail = (await agent.exec(`tail -c 600 ${log}`, { timeoutMs: 20000 })).stdout.trim().split('\n').slice(-3).join(' / ');
      res.skipped.push(`${tag}: the --memory gdbsx stub did not listen on ${port}: ${tail}`);
      return undefined;
    }
    // An older stub in dom0 may not name its path: then it is taken at its flag.
    return await memoryPathDumps(env, addr, port, sizes, PATH_ROUNDS, false);
  } catch (e) {
    res.skipped.push(`${tag}: page walk vs gdbsx through gdb failed: ${(e as Error).message.split('\n')[0]}`);
    return undefined;
  } finally {
    // Only the process this run started (its own process group in dom0).
    if (pid !== undefined) await agent.kill(pid).catch(() => undefined);
  }
}

function envRuns(name: string, dflt: number): number {
  const n = Number(process.env[name]);
  return Number.isInteger(n) && n > 0 ? n : dflt;
}
