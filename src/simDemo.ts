// The embedded default: a simulated Xen with one demo guest, for `npm start`
// and the tests. The demo ELF (with symbols) is what gdb should load.
import path from 'path';
import { SimXen, SimXenOptions, defaultGuestImage } from './xg/sim';
import type { Backend } from './backend';
import { guestIntegrity } from './simIntegrity';

export interface SimDemoOptions {
  domid?: number;
  vcpus: number;
  width: 32 | 64;
  type: 'pv' | 'pvh';
  /** The simulated hypervisor: e.g. `{ gdbsx: false }` for a stock build, `{ mtf: true }` for Intel VMX. */
  xen?: SimXenOptions;
  /** The guest kernel handles its own int3 and #DB (as Linux does while patching its text). */
  guestTrapHandlers?: boolean;
  /** Guest RAM in MiB (default 64). */
  memMiB?: number;
  /** The demo never idles: its idle hlt becomes a nop (a busy guest, for profiles and the simulator's speed). */
  busy?: boolean;
}

/** The demo ELF (with symbols): the simulator's default guest image. */
export const demoImage = defaultGuestImage;

/** The demo never idles from now on: its idle hlt becomes a nop. */
export function keepBusy(sim: SimXen, domid: number): void {
  const hlt = sim.symbol(domid, 'demo_idle') + 1n;
  if (sim.readVirt(domid, hlt, 1)[0] !== 0xf4) throw new Error('demo_idle+1 is not the demo\'s hlt');
  sim.writeVirt(domid, hlt, Buffer.from([0x90]));
}

export function startSimDemo(o: SimDemoOptions): Backend & { sim: SimXen; domid: number } {
  const sim = new SimXen(o.xen ?? {});
  const image = demoImage(o.width);
  const domid = sim.createDomain({ domid: o.domid ?? 1, name: 'demo', vcpus: o.vcpus, width: o.width, type: o.type, image, guestTrapHandlers: o.guestTrapHandlers, memMiB: o.memMiB });
  if (o.busy) keepBusy(sim, domid);
  const close = () => {
    // For tests of the exit paths (signals): print what the stub left behind.
    if (process.env.GDBSX_SIM_EXIT_REPORT) process.stdout.write(`sim-exit-report ${JSON.stringify(guestIntegrity(sim, domid, image))}\n`);
    sim.close();
  };
  return { hc: sim, sim, domid, symbolFile: path.relative(process.cwd(), image) || image, xenstore: async () => sim.xenstore.transport(), close };
}
