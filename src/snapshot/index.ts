// Live snapshots: a consistent ELF core of a guest (see docs/snapshot.md).
export { snapshotDomain } from './snapshot';
export type { SnapshotOptions, SnapshotResult, SnapshotProgress, RoundStat } from './snapshot';
export { snapshotMain, summary } from './main';

import { XenControl } from '../xg/xenctl';
import { snapshotDomain } from './snapshot';
import { summary } from './main';

/**
 * `monitor snapshot <path>`: the debugger holds the guest stopped, so copy it as it stands
 * (no pre-copy, no pause of ours). `patches`: the debugger's int3s and the bytes they hide.
 * Returns the summary text for the gdb console.
 */
export async function snapshotStopped(xc: XenControl, domid: number, file: string,
  patches: readonly { frame: bigint; offset: number; orig: number }[]): Promise<string> {
  return summary(await snapshotDomain(xc, domid, file, { mode: 'stopped', patches }));
}
