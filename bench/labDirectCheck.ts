// A check of the lab's direct part without a lab: the arguments labSuite builds for
// labDirect.js go through the same shell quoting (into a stand-in script that echoes
// them), and labDirect itself runs on the simulated Xen with them. Usage (after
// `npm run build`): node dist/bench/labDirectCheck.js. Exits non-zero on a mismatch.
import { execFileSync } from 'child_process';
import { deepStrictEqual, ok } from 'assert';
import fs from 'fs';
import os from 'os';
import path from 'path';
import { startSimDemo } from '../src/simDemo';
import type { LabGuest } from '../test/lab/client';
import { GuestRun, labDirectArgs, labDirectCommand } from './labSuite';
import { LabDirectArgs, runLabDirect } from './labDirect';
import { directPathFigures } from './paths';
import { Results } from './model';
import { PACKET_SIZE } from '../src/gx/reply';

const MiB = 1 << 20;
const DOMID = 1;

function fakeGuest(): LabGuest {
  return {
    name: 'pv', xlName: 'lab-pv', type: 'pv', width: 64, domid: DOMID, vcpus: 2, memoryMiB: 64, kernel: '', ramdisk: null, cfg: '',
    consoleLog: '', symbols: null, gdb: '', stub: { port: 0, dom0Pid: null, log: '', running: true },
  };
}

/** The JSON as labDirect.js would receive it in dom0: through `sh -c` and the quoting of labDirectCommand. */
function throughShell(args: LabDirectArgs): LabDirectArgs {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gdbsx-labdirect-'));
  try {
    fs.writeFileSync(path.join(dir, 'labDirect.js'), 'process.stdout.write(process.argv[2])\n');
    return JSON.parse(execFileSync('sh', ['-c', labDirectCommand(dir, args)], { encoding: 'utf8' })) as LabDirectArgs;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const demo = startSimDemo({ domid: DOMID, vcpus: 2, width: 64, type: 'pv' });
  const addr = demo.sim.layout(DOMID).directMap + BigInt(32 * MiB);
  const tick = demo.sim.symbol(DOMID, 'demo_tick');
  const sizes = [MiB, 16 * MiB];
  const run: GuestRun = {
    g: fakeGuest(), parts: new Set(['read', 'step', 'stop', 'regs', 'attach']), addr,
    bp: { name: 'demo_tick', addr: tick }, sym: { name: 'demo_tick', addr: tick },
  };
  const args = labDirectArgs(run, DOMID, sizes, { runs: 2, readRuns: 2 }, 2, 'gdbsx');
  deepStrictEqual(args.paths, ['pagewalk', 'gdbsx']);
  deepStrictEqual(args.request, PACKET_SIZE / 2);
  deepStrictEqual(BigInt(args.smallAddr ?? '0'), tick);
  deepStrictEqual(BigInt(args.addr), addr);
  deepStrictEqual(labDirectArgs(run, DOMID, sizes, { runs: 2, readRuns: 2 }, 2, 'stock').paths, ['pagewalk']);
  deepStrictEqual(labDirectArgs({ ...run, parts: new Set(['step']) }, DOMID, sizes, { runs: 2, readRuns: 2 }, 2, 'gdbsx').paths, undefined);
  const received = throughShell(args);
  deepStrictEqual(received, JSON.parse(JSON.stringify(args)));

  const r = await runLabDirect(received, demo.hc);
  deepStrictEqual(r.errors, []);
  for (const p of ['pagewalk', 'gdbsx'] as const) {
    const pr = r.paths?.[p];
    ok(pr, `no ${p} reads`);
    for (const b of sizes) {
      for (const mode of ['cold', 'warm']) ok((pr.bulk[`${b}.${mode}`]?.length ?? 0) >= 2, `${p}: ${b}.${mode}: ${pr.bulk[`${b}.${mode}`]?.length} runs`);
      ok(pr.calls[String(b)], `${p}: no hypercall count for ${b}`);
    }
    ok(pr.small.length >= 2 && pr.calls.small, `${p}: small reads`);
  }
  deepStrictEqual(r.paths?.pagewalk?.path, 'page walk');
  deepStrictEqual(r.paths?.gdbsx?.path, 'gdbsx_guestmemio');
  deepStrictEqual(r.paths?.pagewalk?.smallBytes, r.paths?.gdbsx?.smallBytes);
  ok(r.read[String(16 * MiB)]?.length && r.step?.length && r.stops?.length && r.attach.length, 'the other direct figures');
  // What labSuite then makes of it.
  const res = { profile: { notes: [], domctls: {} } } as unknown as Results;
  const figs = directPathFigures('lab', r.paths ?? {}, sizes, PACKET_SIZE / 2, 'demo_tick', 'pv', res);
  deepStrictEqual(figs.length, 2 * sizes.length + 1);
  ok(figs.every((f) => f.ratio !== undefined && f.target?.applies === 'official'), 'every lab row has a ratio and an official goal');
  process.stdout.write(`labDirect check: ok (${figs.map((f) => `${f.name} ${f.ratio?.toFixed(2)}x`).join(', ')})\n`);
}

main().then(() => process.exit(0), (e: Error) => {
  process.stderr.write(`labDirect check: ${e.stack ?? e.message}\n`);
  process.exit(1);
});
