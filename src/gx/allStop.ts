// All-stop across the domains of one connection (gdb's `set schedule-multiple on`, or a
// vCont naming several processes): every domain resumed runs under its own run control,
// the first stop is the one reported, and it stops the others (Guest.halt). Their own
// stops are returned too: the session keeps those that are more than that halt.
import type { Guest, ResumePlan, StopEvent } from '../vcpu/guest';

export interface DomainStop {
  guest: Guest;
  ev: StopEvent;
}

/**
 * Resume every domain of `runs` at once; resolves when all have stopped, with the first
 * stop and the others'. A domain whose resume fails (a refused step, a hypercall error)
 * stops the others as a stop would, and the first failure is thrown once all have stopped.
 */
export function resumeTogether(runs: ReadonlyArray<readonly [Guest, ResumePlan]>, settled: (g: Guest) => void): Promise<{ first: DomainStop; others: [Guest, StopEvent][] }> {
  return new Promise((resolve, reject) => {
    let first: DomainStop | undefined;
    let failure: { e: unknown } | undefined;
    const others: [Guest, StopEvent][] = [];
    let left = runs.length;
    const done = (g: Guest, ev: StopEvent | undefined, e?: unknown) => {
      settled(g);
      const isFirst = first === undefined && failure === undefined;
      if (ev === undefined) {
        if (failure === undefined) failure = { e };
      } else if (first === undefined && failure === undefined) {
        first = { guest: g, ev };
      } else {
        others.push([g, ev]);
      }
      if (isFirst) for (const [o] of runs) if (o !== g) o.halt();
      if (--left > 0) return;
      if (failure !== undefined) reject(failure.e);
      else resolve({ first: first as DomainStop, others });
    };
    for (const [g, plan] of runs) g.resume(plan).then((ev) => done(g, ev), (e: unknown) => done(g, undefined, e));
  });
}
